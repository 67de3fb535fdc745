// HAProxy's health as keepalived sees it, judged by the agent in-process: for every ACTIVE_STANDBY load balancer on
// this node, whether its HAProxy serves, written into the load balancer's health track file (`0` serves, `1` does
// not: FAULT, the MASTER lets go of the VIP). keepalived watches the file with inotify, so a verdict reaches it
// at once, and no process is forked per check: a vrrp_script is a fork and exec every run, in every keepalived,
// which at a hundred load balancers on a node cost a core (bench/README.md, issue 17).
//
// Two checks, the ones scripts/haproxy-vrrp-check.sh made when keepalived ran it every second and every 5 s:
// - every second, HAProxy's master is alive: the PID in its pidfile has a /proc/PID/stat whose state is not Z or
//   X (a zombie is dead: a daemon's parent here may reap it late or never; see proc.ts). One failure fails it,
//   two successes in a row are needed after that (a HAProxy that flaps does not bounce the VIP); the first
//   check after the monitor learns of a load balancer needs one. The stat file is held open (one read a check)
//   and the pidfile read again only when the master looks dead, and with each API check.
// - every 5 s, its runtime API answers `show info` (a live master whose worker is hung, or in wait mode after a
//   failed reload, does not serve either): up to 5 attempts over about 1.5 s, since a reload hands the socket to
//   the new worker; two failures in a row fail it (API_FALL), one success passes. The checks of different load balancers are
//   spread over the 5 s, in slots of 100 ms, so that a hundred sockets are not asked in the same millisecond.
//
// The file is written only when its content differs from the verdict. It is read again at the next PID check
// when inotify reports a change in its directory (fs.watch), and after every API check: a hand edit (or a
// deletion, which keepalived reads as 0) is repaired within a second. With no verdict yet (HAProxy alive, its API
// not asked yet) the file is left as it is: an agent that restarts does not take the VIP from a MASTER that
// serves. If the agent is down, keepalived's own backstop script (the pidfile check, every 5 s) still moves the
// VIP away from a dead HAProxy; see src/plan/keepalived-config.ts.
import { closeSync, existsSync, type FSWatcher, openSync, readdirSync, readSync, renameSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { keepalivedFiles, lbPaths, lbRoot } from '../../desired/state-dir.js';
import { queryRuntime } from '../haproxy/runtime-api.js';

export const PID_CHECK_MS = 1_000;
export const API_CHECK_MS = 5_000;
/** The API checks' slots: API_CHECK_MS / SLOT_MS of them, each load balancer in one. */
const SLOT_MS = 100;
const SLOTS = API_CHECK_MS / SLOT_MS;
const PID_EVERY = PID_CHECK_MS / SLOT_MS;
/** First checks (a load balancer just learnt of, a HAProxy back from the dead) asked per slot, beyond its own. */
const FIRST_CHECKS_PER_SLOT = 5;
const API_ATTEMPTS = 5;
const API_RETRY_MS = 300;
const API_TIMEOUT_MS = 1_000;
/**
 * Failed API checks in a row before the verdict is "does not serve" (Octavia's `vrrp_fail_count` 2): one check
 * can fail on a node too busy to read the answer in time (79 false FAULTs in a drain at load average 30, with
 * both nodes of a pair in FAULT at once), and a hung HAProxy is still caught within two intervals. A dead master
 * is the PID check's, within a second.
 */
export const API_FALL = 2;

export const PID_RISE = 2;
export const PID_FALL = 1;

/**
 * keepalived's counter of a track script's results (vrrp_track.c), for the PID check: 0 … rise+fall-1, passing
 * from `rise` up. A success adds one below rise-1 and jumps to the top from there; a failure takes one off above
 * rise and drops to 0 from there. `init_fail` starts at rise-1: the first success passes.
 */
export function nextScore(score: number, ok: boolean, rise = PID_RISE, fall = PID_FALL): number {
  if (ok) return score < rise - 1 ? score + 1 : rise + fall - 1;
  return score > rise ? score - 1 : 0;
}

export function scorePasses(score: number, rise = PID_RISE): boolean {
  return score >= rise;
}

/** What the health file should say: '0' serves, '1' does not, undefined when there is no verdict yet. */
export function healthVerdict(pidChecked: boolean, pidScore: number, api: boolean | undefined): '0' | '1' | undefined {
  if (pidChecked && !scorePasses(pidScore)) return '1';
  if (api === false) return '1';
  return pidChecked && api === true ? '0' : undefined;
}

// One buffer for every read of a tick: no allocation per file. The command name in /proc/PID/stat is at most 15
// bytes, so its last ')' is in the first 64; a pidfile and a health file are shorter.
const BUF = Buffer.allocUnsafe(64);

function readHead(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return -1;
  }
  try {
    return readSync(fd, BUF, 0, BUF.length, 0);
  } catch {
    return -1;
  } finally {
    closeSync(fd);
  }
}

/** The PID at the start of the pidfile, 0 if there is none. */
function readPidHead(path: string): number {
  const n = readHead(path);
  let pid = 0;
  for (let i = 0; i < n; i++) {
    const c = BUF[i]!;
    if (c < 0x30 || c > 0x39) break;
    pid = pid * 10 + (c - 0x30);
    if (pid > 0x3fffffff) return 0;
  }
  return pid;
}

/**
 * The master's /proc/PID/stat, held open: a read of it is one syscall, where a read by path is three. Once the
 * process is reaped the read fails (ESRCH), and it keeps failing if the PID is reused: the fd is of that process,
 * not of its number. -1 when the PID names no process.
 */
function openStat(pid: number): number {
  if (pid <= 0) return -1;
  try {
    return openSync(`/proc/${pid}/stat`, 'r');
  } catch {
    return -1;
  }
}

/** The process lives and its state (after the command name's last ')') is neither Z nor X. */
function statAlive(fd: number): boolean {
  if (fd < 0) return false;
  let n: number;
  try {
    n = readSync(fd, BUF, 0, BUF.length, 0);
  } catch {
    return false;
  }
  if (n <= 0) return false;
  const close = BUF.lastIndexOf(0x29, n - 1);
  if (close < 0 || close + 2 >= n) return false;
  const state = BUF[close + 2];
  return state !== 0x5a && state !== 0x58 && state !== 0x20;
}

/** The file holds exactly the verdict and its newline. */
function fileSays(path: string, verdict: '0' | '1'): boolean {
  return readHead(path) === 2 && BUF[0] === verdict.charCodeAt(0) && BUF[1] === 0x0a;
}

/**
 * Writes the verdict next to the file, then renames it over the file. keepalived watches the directory for
 * IN_CLOSE_WRITE and IN_MOVED_TO of the file's name and reads it on either; the rename is the one of the two that
 * never shows a half-written file: keepalived reads an empty file as 0 (serves), which an in-place write shows
 * between its truncation and its write if the agent dies in between.
 */
export function writeHealthFile(path: string, verdict: '0' | '1'): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${verdict}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

interface Entry {
  netns: string;
  pidfile: string;
  socket: string;
  health: string;
  config: string;
  pid: number;
  /** The master's /proc/PID/stat, open (see openStat); closed when the entry is forgotten. */
  statFd: number;
  /**
   * The health file may differ from `said`: set by an inotify event in its directory (any write, ours included, or
   * a deletion), by each API check, and when the directory cannot be watched; cleared when the file is read.
   */
  dirty: boolean;
  watcher: FSWatcher | undefined;
  /** The last PID check passed (for a HAProxy back from the dead: its API is asked at once). */
  pidOk: boolean;
  pidChecked: boolean;
  pidScore: number;
  api: boolean | undefined;
  /** API checks failed in a row. */
  apiFails: number;
  apiBusy: boolean;
  slot: number;
  /** The last verdict written or found in the file: what it says while not `dirty`. */
  said: '0' | '1' | undefined;
}

export interface HealthLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface HaproxyHealthOptions {
  stateDir: string;
}

export class HaproxyHealthMonitor {
  /** Health file writes, API checks asked, PID passes (/metrics: nslb_haproxy_health_*; bench/dev-kcheck.ts). */
  readonly counters = { writes: 0, apiChecks: 0, pidPasses: 0 };
  readonly #stateDir: string;
  #logger: HealthLogger | undefined;
  readonly #entries = new Map<string, Entry>();
  /** Load balancers whose keepalived the agent stopped: the scan leaves them alone (see stopped()). */
  readonly #parked = new Set<string>();
  readonly #slots: Entry[][] = Array.from({ length: SLOTS }, () => []);
  readonly #due: Entry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #tick = 0;

  constructor(o: HaproxyHealthOptions) {
    this.#stateDir = o.stateDir;
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts the checks of every load balancer with a keepalived config in the state dir. Unref'd: it keeps no process alive. */
  start(logger?: HealthLogger): void {
    if (this.#timer !== undefined) return;
    if (logger !== undefined) this.#logger = logger;
    this.#stopped = false;
    this.scan();
    this.#timer = setInterval(() => this.#onSlot(), SLOT_MS);
    this.#timer.unref();
  }

  /**
   * Stops the checks and forgets what they found (a start judges afresh, as a new agent would); the health files
   * stay as they are (keepalived's backstop script covers the agent's absence).
   */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stopped = true;
    for (const netns of [...this.#entries.keys()]) this.forget(netns);
  }

  /** The netns of the load balancers watched. */
  watched(): string[] {
    return [...this.#entries.keys()];
  }

  /** What the monitor would write now for this load balancer (undefined: not watched, or no verdict yet). */
  verdict(netns: string): '0' | '1' | undefined {
    const e = this.#entries.get(netns);
    return e === undefined ? undefined : healthVerdict(e.pidChecked, e.pidScore, e.api);
  }

  /** Watches this load balancer (idempotent); its API is asked within a slot or a few. */
  watch(netns: string): void {
    this.#parked.delete(netns);
    this.#add(netns);
  }

  /**
   * The agent stopped this load balancer's keepalived (a teardown, or a move off this node): nothing follows the
   * health file any more, so it is neither judged nor written, and the scan does not watch it again while its
   * config is still on disk (the rest of the teardown stops HAProxy next, which was logged as a FAULT verdict).
   * A keepalived started again (beforeStart, watch) is watched again.
   */
  stopped(netns: string): void {
    this.forget(netns);
    this.#parked.add(netns);
  }

  #add(netns: string): void {
    if (this.#entries.has(netns)) return;
    const k = keepalivedFiles(this.#stateDir, netns);
    const h = lbPaths(this.#stateDir, netns);
    let slot = 0;
    for (let i = 1; i < SLOTS; i++) if (this.#slots[i]!.length < this.#slots[slot]!.length) slot = i;
    const e: Entry = {
      netns,
      pidfile: h.pidfile,
      socket: h.socket,
      health: k.health,
      config: k.config,
      pid: 0,
      statFd: -1,
      dirty: true,
      watcher: undefined,
      pidOk: false,
      pidChecked: false,
      pidScore: PID_RISE - 1,
      api: undefined,
      apiFails: 0,
      apiBusy: false,
      slot,
      said: undefined,
    };
    this.#entries.set(netns, e);
    this.#slots[slot]!.push(e);
    this.#due.push(e);
    this.#watchFile(e);
  }

  /**
   * Drift is found by inotify, not by reading every file every second: an event in the load balancer's directory
   * that names the health file (or names none) marks it to be read at the next PID check. Not persistent: it keeps
   * no process alive. A directory that cannot be watched (gone, or out of inotify watches) is read every time.
   */
  #watchFile(e: Entry): void {
    const name = basename(e.health);
    try {
      e.watcher = watch(dirname(e.health), { persistent: false }, (_event, file) => {
        if (file === null || file === name) e.dirty = true;
      });
      e.watcher.on('error', () => {
        e.watcher?.close();
        e.watcher = undefined;
      });
    } catch {
      e.watcher = undefined;
    }
  }

  forget(netns: string): void {
    const e = this.#entries.get(netns);
    if (e === undefined) return;
    this.#entries.delete(netns);
    this.#setPid(e, 0);
    e.watcher?.close();
    e.watcher = undefined;
    const slot = this.#slots[e.slot]!;
    slot.splice(slot.indexOf(e), 1);
    const due = this.#due.indexOf(e);
    if (due >= 0) this.#due.splice(due, 1);
  }

  /**
   * Before keepalived starts for this load balancer: the health file says the verdict if there is one, else 1, so
   * that a keepalived started before the agent judged HAProxy cannot be MASTER. Then watched.
   */
  beforeStart(netns: string): void {
    this.watch(netns);
    const e = this.#entries.get(netns)!;
    const verdict = healthVerdict(e.pidChecked, e.pidScore, e.api) ?? '1';
    if (fileSays(e.health, verdict)) {
      e.said = verdict;
      e.dirty = e.watcher === undefined;
    } else this.#write(e, verdict);
  }

  /**
   * Before a running keepalived re-reads its config: `init_file` leaves an existing health file alone on a reload
   * but writes its 1 into a missing one (a config of an older agent had no health file, or a hand deleted it),
   * which would take the VIP from a MASTER that serves. A missing file gets the verdict of checks made now.
   */
  async beforeReload(netns: string): Promise<void> {
    this.watch(netns);
    const e = this.#entries.get(netns)!;
    if (existsSync(e.health)) return;
    if (healthVerdict(e.pidChecked, e.pidScore, e.api) === undefined) {
      this.#checkPid(e);
      await this.#checkApi(e);
    }
    this.#write(e, healthVerdict(e.pidChecked, e.pidScore, e.api) ?? '1');
  }

  /** Watches what has a keepalived config in the state dir and forgets what has none any more. */
  scan(): void {
    let dirs: string[];
    try {
      dirs = readdirSync(lbRoot(this.#stateDir));
    } catch {
      dirs = [];
    }
    const found = new Set<string>();
    for (const netns of dirs) {
      const known = this.#entries.get(netns);
      if (existsSync(known?.config ?? keepalivedFiles(this.#stateDir, netns).config)) {
        found.add(netns);
        if (known === undefined && !this.#parked.has(netns)) this.#add(netns);
      }
    }
    for (const netns of [...this.#entries.keys()]) if (!found.has(netns)) this.forget(netns);
    for (const netns of [...this.#parked]) if (!found.has(netns)) this.#parked.delete(netns);
  }

  #onSlot(): void {
    const tick = this.#tick++;
    const slot = tick % SLOTS;
    if (slot === 0 && tick > 0) this.scan();
    if (tick % PID_EVERY === 0) this.checkPids();
    for (const e of this.#slots[slot]!) void this.#checkApi(e);
    for (let i = 0; i < FIRST_CHECKS_PER_SLOT && this.#due.length > 0; i++) void this.#checkApi(this.#due.shift()!);
  }

  /** One PID check of every load balancer watched, and the health files made to say the verdicts. */
  checkPids(): void {
    this.counters.pidPasses++;
    for (const e of this.#entries.values()) {
      this.#checkPid(e);
      this.#judge(e);
    }
  }

  #checkPid(e: Entry): void {
    let ok = statAlive(e.statFd);
    if (!ok) {
      // Gone, a zombie, or a new master (a restart): the pidfile says which. Read again only then (and with each
      // API check), and the new master's /proc/PID/stat opened.
      this.#setPid(e, readPidHead(e.pidfile));
      ok = statAlive(e.statFd);
    }
    // A HAProxy back from the dead: its API is asked in the next slot, not up to API_CHECK_MS later.
    if (ok && !e.pidOk && e.pidChecked && !this.#due.includes(e)) this.#due.push(e);
    // A dead master's API is not asked: it fails with it (the script's check did the same).
    if (!ok) e.api = false;
    e.pidOk = ok;
    e.pidChecked = true;
    e.pidScore = nextScore(e.pidScore, ok);
  }

  #setPid(e: Entry, pid: number): void {
    if (e.statFd >= 0) closeSync(e.statFd);
    e.pid = pid;
    e.statFd = openStat(pid);
  }

  /** One API check of this load balancer, if watched; its verdict written. */
  async checkApi(netns: string): Promise<void> {
    const e = this.#entries.get(netns);
    if (e !== undefined) await this.#checkApi(e);
  }

  /** Up to API_ATTEMPTS asks of `show info`; the verdict written. */
  async #checkApi(e: Entry): Promise<void> {
    if (e.apiBusy) return;
    e.apiBusy = true;
    try {
      // The pidfile again, so that a recycled PID is not trusted for more than one interval.
      const pid = readPidHead(e.pidfile);
      if (pid !== e.pid) this.#setPid(e, pid);
      let ok = false;
      if (statAlive(e.statFd)) {
        for (let attempt = 1; attempt <= API_ATTEMPTS && !ok; attempt++) {
          if (attempt > 1) await unrefSleep(API_RETRY_MS);
          if (this.#entries.get(e.netns) !== e || this.#stopped) return;
          this.counters.apiChecks++;
          ok = await queryRuntime(e.socket, 'show info', API_TIMEOUT_MS).then(
            (answer) => answer.includes('Pid: '),
            () => false,
          );
        }
      }
      if (this.#entries.get(e.netns) !== e || this.#stopped) return;
      // A dead master is not asked (ok is false, and the PID check already failed it): no need of API_FALL.
      e.apiFails = ok ? 0 : e.apiFails + 1;
      if (ok) e.api = true;
      else if (e.apiFails >= API_FALL || !statAlive(e.statFd)) e.api = false;
      // The file read again at least every API_CHECK_MS, whatever inotify said.
      e.dirty = true;
      this.#judge(e);
    } finally {
      e.apiBusy = false;
    }
  }

  #judge(e: Entry): void {
    const verdict = healthVerdict(e.pidChecked, e.pidScore, e.api);
    if (verdict === undefined) return;
    // Unchanged since it was found or written to say this: nothing to read.
    if (verdict === e.said && !e.dirty) return;
    // Cleared before the read: an event that comes after it marks the file again.
    e.dirty = e.watcher === undefined;
    if (fileSays(e.health, verdict)) {
      e.said = verdict;
      return;
    }
    const before = e.said;
    try {
      this.#write(e, verdict);
    } catch (error) {
      // The state dir is gone (the load balancer is being deleted): the next scan forgets it.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#logger?.warn({ netns: e.netns, error: String(error) }, 'cannot write the HAProxy health file');
      }
      return;
    }
    if (verdict !== before) {
      const why = { netns: e.netns, pid: e.pid, pidOk: e.pidOk, api: e.api };
      if (verdict === '1') this.#logger?.warn(why, 'HAProxy does not serve: keepalived goes to FAULT');
      else this.#logger?.info(why, 'HAProxy serves: keepalived may be MASTER');
    }
  }

  #write(e: Entry, verdict: '0' | '1'): void {
    writeHealthFile(e.health, verdict);
    this.counters.writes++;
    e.said = verdict;
  }
}

function unrefSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
