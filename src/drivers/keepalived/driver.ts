// The keepalived sub-driver of the node driver: observes and applies the keepalived.* actions of ACTIVE_STANDBY
// load balancers (keepalived.ts has the process and file habits, shared with the drivers-only tests).
// Observation reads /proc and the state dir only; a keepalived whose pidfile is gone (its state dir deleted, or
// a crash before keepalived wrote it) is found by its config path in /proc, so it is never started twice.
import { keepalivedFiles, type KeepalivedFiles } from '../../desired/state-dir.js';
import type { Runner } from '../../exec/run.js';
import type { Action } from '../../plan/actions.js';
import type { KeepalivedPaths } from '../../plan/keepalived-config.js';
import type { ObservedLoadBalancer, ObservedVrrpState } from '../../plan/observed.js';
import { readSmall, statFields } from '../proc.js';
import { readdir } from 'node:fs/promises';
import {
  configVips,
  deleteKeepalivedFiles,
  findKeepalivedByConfig,
  inNetns,
  isOurKeepalived,
  keepalivedConfigPaths,
  keepalivedPid,
  markKeepalivedConfigLoaded,
  observeKeepalived,
  observeKeepalivedReloadPending,
  parseVrrpState,
  readKeepalivedConfig,
  reloadKeepalived,
  startKeepalived,
  stopKeepalived,
  writeCheckedKeepalivedConfig,
} from './keepalived.js';
import { readFileSync } from 'node:fs';
import { endHandover, HANDOVER_STALE_MS, handOverMarked, handoverStarted, beginSwitchOver, SWITCHOVERS_AT_ONCE, writeRelease } from './handover.js';
import { Slots } from '../../loop/slots.js';
import { HaproxyHealthMonitor } from './haproxy-health.js';

export type KeepalivedAction = Extract<Action, { kind: `keepalived.${string}` }>;

/** After a drained node's switchover that the peer did not take, how long before it is tried again. */
export const SWITCHOVER_RETRY_MS = 60_000;

/** A drained node's switchover keeps it FAULT this long at least (handover.ts switchOver faultMs). */
export const DRAIN_FAULT_MS = 10_000;

export class KeepalivedDriver {
  /** keepalived processes started and reloads signalled, for /metrics. */
  readonly counters = { starts: 0, reloads: 0, handovers: 0, handoverCut: 0 };
  /** Handovers under way (`NodeDriver.handoversInFlight`). */
  handoversInFlight = 0;
  /** Bounds the switchovers' windows (SYN drop → released) at once: many at once on a busy node outlast the clients' SYN retry. */
  readonly #switchOvers = new Slots(SWITCHOVERS_AT_ONCE);
  readonly #switchOverFailed = new Map<string, { at: number; message: string }>();
  /** Switchovers whose rest (handover.ts beginSwitchOver `done`) still runs, by netns. */
  readonly #switchOverRest = new Map<string, Promise<void>>();
  readonly #run: Runner;
  readonly #stateDir: string;
  readonly #notifiers = new NotifierScan();
  /** Writes the health track file keepalived follows; started by the agent only (see startWatching). */
  readonly health: HaproxyHealthMonitor;

  readonly #faultMs: number;
  readonly #now: () => number;

  /** `opts`: for tests, the switchover's FAULT time (DRAIN_FAULT_MS) and the clock of its retry guard. */
  constructor(run: Runner, stateDir: string, opts: { faultMs?: number; now?: () => number } = {}) {
    this.#run = run;
    this.#stateDir = stateDir;
    this.health = new HaproxyHealthMonitor({ stateDir });
    this.#faultMs = opts.faultMs ?? DRAIN_FAULT_MS;
    this.#now = opts.now ?? Date.now;
  }

  files(netns: string): KeepalivedFiles {
    return keepalivedFiles(this.#stateDir, netns);
  }

  /** What the rendered config names: the scripts shipped in the package and the files under the state dir. */
  configPaths(netns: string): KeepalivedPaths {
    return keepalivedConfigPaths(this.#stateDir, netns);
  }

  observe(netns: string, e: ObservedLoadBalancer): void {
    const files = this.files(netns);
    const k = observeKeepalived(files, netns);
    if (k !== undefined) e.keepalived = k;
    if (!e.stateDir) return;
    const config = readKeepalivedConfig(files);
    if (config !== undefined) e.keepalivedConfig = config;
    if (config !== undefined && observeKeepalivedReloadPending(files)) e.keepalivedReloadPending = true;
    const handover = handoverStarted(files);
    if (handover !== undefined && Date.now() - handover.getTime() > HANDOVER_STALE_MS) e.keepalivedHandoverStale = true;
  }

  /** keepalived running these load balancers' configs though no pidfile names it (one read of /proc for all). */
  async observeByConfig(lbs: readonly (readonly [string, ObservedLoadBalancer])[]): Promise<void> {
    if (lbs.length === 0) return;
    const byConfig = await findKeepalivedByConfig(new Set(lbs.map(([netns]) => this.files(netns).config)));
    for (const [netns, e] of lbs) {
      const pid = byConfig.get(this.files(netns).config);
      if (pid !== undefined) e.keepalived = { pid, inNetns: inNetns(pid, netns), vrrpAlive: false };
    }
  }

  pid(netns: string): number | undefined {
    return keepalivedPid(this.files(netns));
  }

  /** The last VRRP state of the load balancer's keepalived, trusted only while the keepalived that wrote it runs. */
  vrrpState(netns: string): ObservedVrrpState | undefined {
    const files = this.files(netns);
    // keepalivedPid finds it alive, or not at all.
    if (keepalivedPid(files) === undefined) return undefined;
    try {
      return parseVrrpState(readFileSync(files.stateFile, 'utf8'));
    } catch {
      return undefined;
    }
  }

  async apply(a: KeepalivedAction): Promise<void> {
    const files = this.files(a.netns);
    switch (a.kind) {
      case 'keepalived.writeConfig':
        return writeCheckedKeepalivedConfig(this.#run, a.netns, files, a.config);
      case 'keepalived.start':
        // A keepalived killed outright leaves its notify script waiting on the FIFO: it would read the next
        // keepalived's events too, or linger for ever.
        await this.stopStrayNotifiers(a.netns);
        // The health file before keepalived: 1 unless HAProxy was judged already, so that a keepalived that
        // starts before the agent judged HAProxy cannot be MASTER. Not under a keepalived that runs (a start
        // that went through before a crash): its 0 is a MASTER's.
        if (keepalivedPid(files) === undefined) this.health.beforeStart(a.netns);
        else this.health.watch(a.netns);
        await startKeepalived(this.#run, a.netns, files);
        // Its notify script is not in a scan made before it started.
        this.#notifiers.forget();
        this.counters.starts++;
        return markKeepalivedConfigLoaded(files);
      case 'keepalived.reload': {
        const pid = keepalivedPid(files);
        // Gone since it was observed: the next reconcile starts it with the config on disk.
        if (pid === undefined) throw new Error(`keepalived in ${a.netns} is not running; cannot reload it`);
        await this.health.beforeReload(a.netns);
        if (!reloadKeepalived(pid, files)) throw new Error(`keepalived in ${a.netns} is not running; cannot reload it`);
        this.counters.reloads++;
        return markKeepalivedConfigLoaded(files);
      }
      case 'keepalived.stop': {
        const { pid } = a;
        if (a.handOver === true) {
          // Its /proc/PID/net tables are the netns's: the connections it still serves there.
          this.handoversInFlight++;
          try {
            const result = await handOverMarked(this.#run, files, {
              netns: a.netns,
              vips: configVips(readKeepalivedConfig(files) ?? ''),
              pidInNetns: pid,
              // FAULT through the release file first: keepalived's VRRP process follows it with inotify and drops
              // the VIP and sends the priority-0 advert itself, where SIGTERM reaches it only through its parent (on
              // a busy node, one more process to wait for). Then it is stopped. The file stays at 1: the state dir
              // is deleted next, and a keepalived started here later resets it (`init_file 0 overwrite`).
              release: async () => {
                await writeRelease(files, true);
                await stopKeepalived(pid, files);
              },
              released: () => true,
              // Only a load balancer that leaves this node is handed over when stopped (plan.ts planDelete): its
              // netns is deleted next.
              keepDrop: true,
            });
            this.counters.handovers++;
            this.counters.handoverCut += result.cut;
          } finally {
            this.handoversInFlight--;
          }
        } else {
          await stopKeepalived(pid, files);
        }
        this.health.stopped(a.netns);
        await this.stopStrayNotifiers(a.netns);
        if (a.removeFiles === true) await this.#removeFiles(a.netns, files);
        return;
      }
      case 'keepalived.removeFiles':
        await this.stopStrayNotifiers(a.netns);
        return this.#removeFiles(a.netns, files);
      case 'keepalived.endHandover':
        return endHandover(this.#run, a.netns, files);
      case 'keepalived.switchOver':
        return this.#switchOver(a.netns, files);
    }
  }

  /**
   * A drained node's MASTER gives the role to its peer (plan.ts). A switchover that ended with this node MASTER
   * again (the peer did not take the VIP: it was not there after all) is not tried again for SWITCHOVER_RETRY_MS:
   * each try leaves the VIP unserved for the master-down interval.
   */
  async #switchOver(netns: string, files: KeepalivedFiles): Promise<void> {
    const failed = this.#switchOverFailed.get(netns);
    if (failed !== undefined && this.#now() - failed.at < SWITCHOVER_RETRY_MS) {
      throw new Error(`${failed.message} (${Math.round((this.#now() - failed.at) / 1000)} s ago); tried again ${SWITCHOVER_RETRY_MS / 1000} s after that`);
    }
    // In flight for the resync (which waits for handovers) only while new connections are held off.
    const window = <T>(fn: () => Promise<T>): Promise<T> =>
      this.#switchOvers.run(async () => {
        this.handoversInFlight++;
        try {
          return await fn();
        } finally {
          this.handoversInFlight--;
        }
      });
    // The last switchover's rest still running (FAULT, then BACKUP again): this one after it.
    await this.#switchOverRest.get(netns);
    // FAULT for 10 s at least: the node leaves the pair soon anyway, and a BACKUP again before a starved peer took
    // the VIP would take it back (bench (w), 100 pairs: the peer's takeover 6 s and more after the release).
    const { handover, done } = await beginSwitchOver(this.#run, netns, files, { window, faultMs: this.#faultMs });
    this.counters.handovers++;
    this.counters.handoverCut += handover.cut;
    // The rest runs on after the action (its teardown, should the pair leave the node now, is not held up by it).
    // Only a node that is MASTER again at its end failed: the peer did not take the VIP. A FAULT reported late (a
    // busy node's notify script) or a state not reported yet is not a failure: the next reconcile looks again.
    const rest = done.then(
      (r) => {
        if (r.after !== 'MASTER') this.#switchOverFailed.delete(netns);
        else {
          const message = `the peer did not take the VIP: this drained node was MASTER again after its switchover${r.released ? '' : ' (its FAULT was not reported within 5 s)'}`;
          this.#switchOverFailed.set(netns, { at: this.#now(), message });
        }
      },
      (err: unknown) => {
        this.#switchOverFailed.set(netns, { at: this.#now(), message: `the switchover failed: ${String(err)}` });
      },
    );
    this.#switchOverRest.set(netns, rest);
    void rest.finally(() => {
      if (this.#switchOverRest.get(netns) === rest) this.#switchOverRest.delete(netns);
    });
  }

  /**
   * keepalived's files, the health file with them, and the load balancer out of the health monitor: forgotten
   * again after the deletion, since a scan of the monitor in between still found the config.
   */
  async #removeFiles(netns: string, files: KeepalivedFiles): Promise<void> {
    this.health.forget(netns);
    await deleteKeepalivedFiles(files);
    this.health.forget(netns);
  }

  /**
   * Notify scripts of this load balancer whose keepalived is gone (SIGKILLed, so it could not end them): found
   * in /proc by their argv (the script and this load balancer's state file), ended with SIGTERM.
   */
  async stopStrayNotifiers(netns: string): Promise<void> {
    const files = this.files(netns);
    for (const pid of await this.#notifiers.find(files.stateFile)) {
      // keepalived's VRRP child starts it; one whose keepalived still runs this config is not a stray.
      const parent = parentOf(pid);
      if (parent !== undefined && parent > 1 && isOurKeepalived(parent, files.config)) continue;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone already
      }
    }
  }
}

/** The state file a process running scripts/keepalived-notify.sh reports to (`sh SCRIPT STATEFILE FIFO`). */
function notifierStateFile(argv: readonly string[]): string | undefined {
  const at = argv.findIndex((a) => a.endsWith('/keepalived-notify.sh'));
  return at >= 0 ? argv[at + 1] : undefined;
}

/** How long one /proc scan for notify scripts serves the load balancers stopped after it. */
export const NOTIFIER_SCAN_FRESH_MS = 2_000;

/**
 * The notify scripts running, by state file: one /proc scan (a cmdline read per process, a thousand and more on a
 * node with a hundred pairs) serves every load balancer stopped within NOTIFIER_SCAN_FRESH_MS of it, instead of
 * three scans per load balancer (keepalived.stop, removeFiles, stateDir.delete): a drain's stops made them a
 * visible share of the agent's event loop (bench (w), issue-17-f: 6.4 s). A script started after the scan is not
 * in it: the driver forgets the scan when it starts a keepalived (whose VRRP child starts the script). Each pid
 * found is checked again before it is returned (it may have ended, and its pid been reused).
 */
export class NotifierScan {
  #scan: Promise<Map<string, number[]>> | undefined;
  #at = 0;
  readonly #now: () => number;
  readonly #procDir: string;

  constructor(opts: { now?: () => number; procDir?: string } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#procDir = opts.procDir ?? '/proc';
  }

  forget(): void {
    this.#scan = undefined;
  }

  async find(stateFile: string): Promise<number[]> {
    if (this.#scan === undefined || this.#now() - this.#at > NOTIFIER_SCAN_FRESH_MS) {
      this.#at = this.#now();
      this.#scan = this.#scanAll();
    }
    const candidates = (await this.#scan).get(stateFile) ?? [];
    return candidates.filter((pid) => notifierStateFile(this.#argv(pid)) === stateFile);
  }

  #argv(pid: number): string[] {
    return (readSmall(`${this.#procDir}/${pid}/cmdline`) ?? '').split('\0');
  }

  async #scanAll(): Promise<Map<string, number[]>> {
    const found = new Map<string, number[]>();
    for (const entry of await readdir(this.#procDir).catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const file = notifierStateFile(this.#argv(Number(entry)));
      if (file !== undefined) found.set(file, [...(found.get(file) ?? []), Number(entry)]);
    }
    return found;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const ppid = Number(statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}
