// The keepalived sub-driver of the node driver: observes and applies the keepalived.* actions of ACTIVE_STANDBY
// load balancers (keepalived.ts has the process and file habits, shared with the drivers-only tests).
// Observation reads /proc and the state dir only; a keepalived whose pidfile is gone (its state dir deleted, or
// a crash before keepalived wrote it) is found by its config path in /proc, so it is never started twice.
import { keepalivedFiles, type KeepalivedFiles } from '../../desired/state-dir.js';
import type { Runner } from '../../exec/run.js';
import type { Action } from '../../plan/actions.js';
import type { KeepalivedPaths } from '../../plan/keepalived-config.js';
import type { ObservedLoadBalancer, ObservedVrrpState } from '../../plan/observed.js';
import { cmdline, processAlive, statFields } from '../proc.js';
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
import { endHandover, HANDOVER_STALE_MS, handOverMarked, handoverStarted } from './handover.js';

export type KeepalivedAction = Extract<Action, { kind: `keepalived.${string}` }>;

export class KeepalivedDriver {
  /** keepalived processes started and reloads signalled, for /metrics. */
  readonly counters = { starts: 0, reloads: 0, handovers: 0, handoverCut: 0 };
  readonly #run: Runner;
  readonly #stateDir: string;

  constructor(run: Runner, stateDir: string) {
    this.#run = run;
    this.#stateDir = stateDir;
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
    const pid = keepalivedPid(files);
    if (pid === undefined || !processAlive(pid)) return undefined;
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
        await startKeepalived(this.#run, a.netns, files);
        this.counters.starts++;
        return markKeepalivedConfigLoaded(files);
      case 'keepalived.reload': {
        const pid = keepalivedPid(files);
        // Gone since it was observed: the next reconcile starts it with the config on disk.
        if (pid === undefined || !reloadKeepalived(pid, files)) throw new Error(`keepalived in ${a.netns} is not running; cannot reload it`);
        this.counters.reloads++;
        return markKeepalivedConfigLoaded(files);
      }
      case 'keepalived.stop': {
        const { pid } = a;
        if (a.handOver === true) {
          // Its /proc/PID/net tables are the netns's: the connections it still serves there.
          const result = await handOverMarked(this.#run, files, {
            netns: a.netns,
            vips: configVips(readKeepalivedConfig(files) ?? ''),
            pidInNetns: pid,
            release: () => stopKeepalived(pid, files),
            released: () => true,
          });
          this.counters.handovers++;
          this.counters.handoverCut += result.cut;
        } else {
          await stopKeepalived(pid, files);
        }
        await this.stopStrayNotifiers(a.netns);
        if (a.removeFiles === true) await deleteKeepalivedFiles(files);
        return;
      }
      case 'keepalived.removeFiles':
        await this.stopStrayNotifiers(a.netns);
        return deleteKeepalivedFiles(files);
      case 'keepalived.endHandover':
        return endHandover(this.#run, a.netns, files);
    }
  }

  /**
   * Notify scripts of this load balancer whose keepalived is gone (SIGKILLed, so it could not end them): found
   * in /proc by their argv (the script and this load balancer's state file), ended with SIGTERM.
   */
  async stopStrayNotifiers(netns: string): Promise<void> {
    const files = this.files(netns);
    for (const pid of await findNotifiers(files.stateFile)) {
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

/** Processes running scripts/keepalived-notify.sh for this state file (`sh SCRIPT STATEFILE FIFO`). */
async function findNotifiers(stateFile: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = cmdline(Number(entry));
    const at = argv.findIndex((a) => a.endsWith('/keepalived-notify.sh'));
    if (at >= 0 && argv[at + 1] === stateFile) found.push(Number(entry));
  }
  return found;
}

function parentOf(pid: number): number | undefined {
  try {
    const ppid = Number(statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}
