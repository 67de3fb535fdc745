// A planned switchover that loses no request. When keepalived simply lets go of the VIP (SIGTERM, or FAULT),
// connections still open on this node die: the peer takes the VIP and announces it, the client's next packet
// of such a connection reaches the peer, which knows nothing of it and answers with a reset. And whichever
// order the two nodes act in, packets of an open connection reach exactly one of them. So a MASTER that hands
// over first stops taking new connections without refusing them (their SYNs are dropped, so the client's
// kernel sends them again: after 1 s, by then to the peer), waits until the connections it serves have ended,
// and only then lets go of the VIP. A SYN that reaches it after that finds no VIP and is dropped the same way.
// Connections that outlast the wait are cut as in any failover (long-lived ones: see docs/ha.md).
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { KeepalivedFiles } from '../../desired/state-dir.js';
import type { Runner } from '../../exec/run.js';
import { sleep, waitUntil } from '../../loop/wait.js';
import type { VrrpState } from '../../plan/observed.js';
import { readSmall } from '../proc.js';
import { configAdvertMs, configVips, keepalivedPid, parseVrrpState } from './keepalived.js';
import { NFT_BIN } from '../nft/nft.js';
import { epochMs, trace, tracing } from '../../log/trace.js';

/** The table that holds the SYN drop, apart from the load balancer's own `inet nslb` (which the agent owns). */
export const HANDOVER_TABLE = 'nslb-handover';

/**
 * How long a MASTER waits for its open connections to end before it lets go anyway. Below the client's first
 * SYN retransmission (1 s) minus the peer's takeover (a fraction of an advert interval), so that the SYNs
 * dropped meanwhile reach the peer when they are sent again.
 */
export const DEFAULT_DRAIN_MS = 600;

// /proc/net/tcp states of a connection that is still being served: SYN_RECV, ESTABLISHED, FIN_WAIT1 (our FIN
// and maybe the last bytes of the answer not acknowledged yet), CLOSE_WAIT, LAST_ACK, CLOSING. FIN_WAIT2 and
// TIME_WAIT are done: the client has everything.
const SERVING = new Set(['01', '03', '04', '08', '09', '0B']);
/**
 * Closing states in which our FIN has gone out: FIN_WAIT1, LAST_ACK, CLOSING. One with nothing unacknowledged but
 * that FIN (tx_queue ≤ 1: the FIN takes one sequence number) has given the client every byte: it is not served any
 * more, only its last ACK is on its way (slow on a loaded node; cutting it then loses nothing).
 */
const FIN_SENT = new Set(['04', '09', '0B']);
/** LISTEN in /proc/net/tcp. */
const LISTEN = '0A';

/** The address as /proc/net/tcp{,6} spells a local address: hex, each 32-bit word in host (little-endian) order. */
export function procNetAddress(address: string): string {
  if (isIP(address) === 4) {
    return address
      .split('.')
      .reverse()
      .map((o) => Number(o).toString(16).padStart(2, '0'))
      .join('')
      .toUpperCase();
  }
  const groups = expandIpv6(address);
  let hex = '';
  for (let w = 0; w < 4; w++) {
    const word = groups[2 * w]! + groups[2 * w + 1]!;
    hex += word.match(/../g)!.reverse().join('');
  }
  return hex.toUpperCase();
}

function expandIpv6(address: string): string[] {
  const [head = '', tail] = address.split('::');
  const a = head === '' ? [] : head.split(':');
  const b = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : Array<string>(8 - a.length - b.length).fill('0');
  return [...a, ...fill, ...b].map((g) => g.padStart(4, '0').toLowerCase());
}

/**
 * Connections to the VIPs that this node still serves, counted in /proc/PID/net/tcp{,6} of a process inside
 * the load balancer's netns (the table is per netns; no process is spawned). Listening sockets do not count,
 * nor connections HAProxy opened itself (to members, its peer): only those to a port it listens on.
 */
export function connectionsServed(pid: number, vips: readonly string[]): number {
  const tables: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    try {
      tables.push(readFileSync(`/proc/${pid}/net/${table}`, 'utf8'));
    } catch {
      // no such table (IPv6 off) or the process is gone
    }
  }
  return countServed(tables, vips);
}

/**
 * A row of /proc/net/tcp{,6} in a state that matters here (LISTEN, or one of SERVING): local address, local port,
 * state, tx_queue. The rows of a busy VIP are mostly TIME_WAIT (thousands: each connection a client closed leaves
 * one for a minute), and the handover reads the table every 5 ms; the regex skips them without splitting them.
 */
const ROW = /^ *\d+: ([0-9A-F]+):([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} (0[1348AB9]) ([0-9A-Fa-f]{8}):/gm;

/** connectionsServed over the text of /proc/net/tcp{,6} tables. */
export function countServed(tables: readonly string[], vips: readonly string[]): number {
  const local = new Set(vips.map(procNetAddress));
  const rows: [address: string, port: string, state: string, tx: string][] = [];
  for (const text of tables) for (const m of text.matchAll(ROW)) rows.push([m[1]!, m[2]!, m[3]!, m[4]!]);
  // Only connections a client opened: their local port is one HAProxy listens on. A connection HAProxy opened
  // itself (a health check, a backend connection, the peers session) has an ephemeral local port, whatever source
  // address the kernel picked for it.
  const listening = new Set<string>();
  for (const [, port, state] of rows) if (state === LISTEN) listening.add(port);
  let n = 0;
  for (const [address, port, state, tx] of rows) {
    if (!local.has(address) || !listening.has(port) || !SERVING.has(state)) continue;
    if (FIN_SENT.has(state) && Number.parseInt(tx, 16) <= 1) continue;
    n++;
  }
  return n;
}

/** nft's input: a table in the netns that drops new TCP connections (a SYN without ACK) to the VIPs. */
export function renderSynDrop(vips: readonly string[]): string {
  const v4 = vips.filter((v) => isIP(v) === 4);
  const v6 = vips.filter((v) => isIP(v) === 6);
  // Before conntrack (-200): a dropped SYN leaves no half-open entry behind.
  const rules = [
    ...(v4.length === 0 ? [] : [`    ip daddr { ${v4.join(', ')} } tcp flags & (syn | ack) == syn drop`]),
    ...(v6.length === 0 ? [] : [`    ip6 daddr { ${v6.join(', ')} } tcp flags & (syn | ack) == syn drop`]),
  ];
  return [`table inet ${HANDOVER_TABLE} {`, '  chain syn {', '    type filter hook prerouting priority -300; policy accept;', ...rules, '  }', '}', ''].join(
    '\n',
  );
}

const inNetns = (netns: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', netns, ...argv];

/** Idempotent: a netns without the table is already open (nft 1.0.6 has no `destroy`: the failure is that). */
export async function removeSynDrop(run: Runner, netns: string): Promise<void> {
  try {
    await run(inNetns(netns, [NFT_BIN, 'delete', 'table', 'inet', HANDOVER_TABLE]));
  } catch {
    // no such table
  }
}

export interface HandOverOptions {
  netns: string;
  /** The VIPs (every address keepalived holds there); only IPs, validated by the caller's model or config. */
  vips: readonly string[];
  /** A process in the netns (HAProxy's master) whose /proc/PID/net tables are the netns's. */
  pidInNetns: number | undefined;
  /** Lets go of the VIP (SIGTERM to keepalived, or FAULT through its release file). */
  release: () => Promise<void>;
  /** The VIP has left this node (keepalived no longer MASTER). */
  released: () => boolean;
  drainMs?: number;
  /**
   * A handover that went through leaves the SYN drop in place (removing it is a process, seconds on a busy node):
   * the netns is deleted next (the load balancer leaves this node) and the drop goes with it, or the caller removes
   * it after steps of its own (switchOver, outside its bound on handovers at once). It is still removed when the
   * handover fails.
   */
  keepDrop?: boolean;
}

export interface HandOverResult {
  /** Connections still open when the wait ended (0: nothing was cut). */
  cut: number;
  /** How long the wait for open connections took. */
  drainedMs: number;
  /** The VIP left this node within 5 s of the release. */
  released: boolean;
}

/**
 * Hands the VIP over without losing a request: new connections held off, open ones finished, then `release`.
 * The SYN drop goes once the VIP has left (or on any failure: it must never outlive the handover).
 */
export async function handOver(run: Runner, o: HandOverOptions): Promise<HandOverResult> {
  const vips = o.vips.filter((v) => isIP(v) !== 0);
  const started = Date.now();
  let cut = 0;
  let done = false;
  // NSLB_TRACE_ACTIONS (src/log/trace.ts): each step's start and end, for where a handover's window goes.
  let at = epochMs();
  const step = (name: string): void => {
    if (!tracing) return;
    const end = epochMs();
    trace('step', `handover.${name}`, o.netns, at, end);
    at = end;
  };
  try {
    if (vips.length > 0 && o.pidInNetns !== undefined) {
      await run(inNetns(o.netns, [NFT_BIN, '-f', '-']), { input: renderSynDrop(vips) });
      step('synDrop');
      const pid = o.pidInNetns;
      await waitUntil(() => connectionsServed(pid, vips) === 0, { intervalMs: 5, timeoutMs: o.drainMs ?? DEFAULT_DRAIN_MS });
      cut = connectionsServed(pid, vips);
      step('connections');
    }
    const drainedMs = Date.now() - started;
    await o.release();
    step('release');
    const released = await waitUntil(o.released, { intervalMs: 10, timeoutMs: 5_000 });
    step('released');
    done = true;
    return { cut, drainedMs, released };
  } finally {
    if (vips.length > 0 && o.pidInNetns !== undefined && !(done && o.keepDrop === true)) {
      await removeSynDrop(run, o.netns);
      step('synDropRemoved');
    }
  }
}

/** A handover marker older than this belongs to a process that died in it (a handover takes a few seconds). */
export const HANDOVER_STALE_MS = 30_000;

/** The state dir says a handover began and has not ended (see `handOverMarked`). */
export function handoverStarted(files: KeepalivedFiles): Date | undefined {
  try {
    return statSync(files.handover).mtime;
  } catch {
    return undefined;
  }
}

/**
 * `handOver`, bracketed by a marker in the state dir: written before the SYN drop (and the release file's 1),
 * removed once both are gone, so that what a process killed in between leaves is found and undone
 * (`endHandover`, planned by the agent for a marker older than HANDOVER_STALE_MS). With `keepDrop` the
 * marker stays with the drop: the netns and the state dir are deleted next, and should the load balancer be
 * placed here again before that (a crash, then an undrain), the stale marker has the drop removed.
 */
export async function handOverMarked(run: Runner, files: KeepalivedFiles, o: HandOverOptions): Promise<HandOverResult> {
  await writeFile(files.handover, `${process.pid}\n`, { mode: 0o600 });
  const result = await handOver(run, o);
  if (o.keepDrop !== true) await rm(files.handover, { force: true });
  return result;
}

/** Undoes what an unfinished handover left: the SYN drop, a release file at 1, the marker. Idempotent. */
export async function endHandover(run: Runner, netns: string, files: KeepalivedFiles): Promise<void> {
  await removeSynDrop(run, netns);
  if (existsSync(files.release)) await writeRelease(files, false);
  await rm(files.handover, { force: true });
}

/**
 * keepalived reads the track file when it is modified (inotify): written in place, one number. Synchronously: two
 * bytes, inside a handover's window (new connections held off), where a write through libuv's thread pool waited
 * 0.6–1.3 s behind the other file work of a busy node (bench (w), 2026-12-06, sixth session).
 */
export async function writeRelease(files: KeepalivedFiles, release: boolean): Promise<void> {
  writeFileSync(files.release, release ? '1\n' : '0\n');
}

export interface SwitchOverResult extends HandOverResult {
  /** This node's VRRP state after the switchover (BACKUP when the peer took the role). */
  after: VrrpState | undefined;
}

/** Planned switchovers whose window (SYN drop → VIP released) runs at once on a node (`nslb drain`, a drained node's agent). */
export const SWITCHOVERS_AT_ONCE = 16;

/**
 * Moves the MASTER role of one load balancer to its peer, keepalived staying up on both nodes (`nslb drain`, and
 * the agent of a drained node before its slots move): the handover above, released through the track file (FAULT
 * drops the VIP and sends a priority-0 advert), then, once the peer has had time to take the VIP even if that
 * advert was lost (the master-down interval: 3 adverts and a skew), the release file back to 0: this node is
 * BACKUP again and, with `nopreempt`, stays so while its peer serves. If the peer never took over, this node
 * becomes MASTER again on its own.
 *
 * `window` runs the part in which new connections are held off (SYN drop to released), so that a caller can bound
 * how many run at once; the wait for the peer and the drop's removal come after it.
 */
export async function switchOver(run: Runner, netns: string, files: KeepalivedFiles, o: SwitchOverOptions = {}): Promise<SwitchOverResult> {
  const { done } = await beginSwitchOver(run, netns, files, o);
  return done;
}

export interface SwitchOverOptions {
  drainMs?: number;
  window?: <T>(fn: () => Promise<T>) => Promise<T>;
  /**
   * How long this node stays FAULT at least (beyond the master-down interval) before it is BACKUP again: a peer
   * starved of CPU takes the VIP late, and a node BACKUP again before that takes it back (with `nopreempt` a node
   * that hears no MASTER becomes one), and the VIP flaps between the two.
   */
  faultMs?: number;
}

/**
 * switchOver in two parts: the handover (awaited: the VIP has left this node, or the release did not show within
 * 5 s), and `done`, the rest (this node FAULT for the master-down interval or `faultMs`, then the SYN drop removed
 * and BACKUP again), which a caller may leave running: the agent does, so that a pair leaving a drained node is
 * not held up by it (its teardown, and so its new BACKUP elsewhere, which waits for the VRRP address it frees).
 * `done` never rejects for want of the state dir (the load balancer removed meanwhile): its last writes are
 * best-effort then.
 */
export async function beginSwitchOver(
  run: Runner,
  netns: string,
  files: KeepalivedFiles,
  o: SwitchOverOptions = {},
): Promise<{ handover: HandOverResult; done: Promise<SwitchOverResult> }> {
  const config = readFileSync(files.config, 'utf8');
  const pid = keepalivedPid(files);
  const state = (): VrrpState | undefined => (keepalivedPid(files) === undefined ? undefined : parseVrrpState(readSmall(files.stateFile))?.state);
  const window = o.window ?? (<T>(fn: () => Promise<T>): Promise<T> => fn());
  const end = async (): Promise<void> => {
    try {
      await writeRelease(files, false);
    } catch {
      // the state dir is gone: so is the load balancer here
    }
    await rm(files.handover, { force: true });
  };
  await writeFile(files.handover, `${process.pid}\n`, { mode: 0o600 });
  let handover: HandOverResult;
  try {
    handover = await window(() =>
      handOver(run, {
        netns,
        vips: configVips(config),
        pidInNetns: pid,
        release: () => writeRelease(files, true),
        released: () => state() === 'FAULT',
        keepDrop: true,
        ...(o.drainMs === undefined ? {} : { drainMs: o.drainMs }),
      }),
    );
  } catch (err) {
    await end();
    throw err;
  }
  // Fresh again for the rest: a reconcile meanwhile must not take a marker older than HANDOVER_STALE_MS (a long
  // window on a busy node) for a dead process's and undo the release early.
  await writeFile(files.handover, `${process.pid}\n`, { mode: 0o600 }).catch(() => undefined);
  const done = (async (): Promise<SwitchOverResult> => {
    try {
      await sleep(Math.max(o.faultMs ?? 0, 4 * (configAdvertMs(config) ?? 1000) + 200));
      // This node may be MASTER again once the file is 0 (the peer gone meanwhile): the drop goes first.
      await removeSynDrop(run, netns);
      if (existsSync(files.release)) await writeRelease(files, false);
      await waitUntil(() => state() === 'BACKUP' || state() === 'MASTER', { intervalMs: 20, timeoutMs: 5_000 });
      return { ...handover, after: state() };
    } finally {
      await end();
    }
  })();
  return { handover, done };
}
