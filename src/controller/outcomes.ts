// What the engine knows about each load balancer it has reconciled: the outcome of its last reconcile, the model
// now on the node, the generations it serves, its HAProxy and HAProxy's last `show stat`. Written by the
// reconciler and the resync, read by the status publisher and /metrics.
import type { LbKey } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import type { DesiredLoadBalancer } from '../desired/model.js';
import type { StatRow } from '../plan/haproxy-stats.js';
import { hasKernelListeners, kernelHealthFromStats, kernelHealthSignature } from '../plan/kernel-model.js';
import type { PeerSession } from '../plan/haproxy-peers.js';
import type { NodeDriver } from '../plan/node-driver.js';
import type { ObservedVrrpState, VrrpState } from '../plan/observed.js';
import type { OutcomeView } from '../status/compute.js';
import type { LbStatsView } from '../status/traffic.js';

export interface LbOutcome extends OutcomeView {
  phase: 'pending' | 'active' | 'error';
  message?: string;
  applied?: DesiredLoadBalancer;
  appliedGenerations: Map<string, number>;
  stats?: StatRow[];
  /** When `stats` was answered (Date.now()). */
  statsAt?: number;
  /** The HAProxy master serving it, watched so that its exit is noticed at once. */
  pid?: number;
  /** Which members of its UDP and SCTP pools the last stats poll found DOWN (kernel-model.ts's signature). */
  kernelHealth?: string;
  /** ACTIVE_STANDBY: its keepalived, watched the same way (a keepalived killed outright cannot drop the VIP). */
  keepalivedPid?: number;
  vrrp?: ObservedVrrpState;
  /** ACTIVE_STANDBY: a keepalived runs this load balancer's config here (as of the last stats poll). */
  keepalivedUp?: boolean;
  peers?: PeerSession[];
}

export type Outcomes = Map<LbKey, LbOutcome>;

export function pendingOutcome(netns: string, iface: string): LbOutcome {
  return { phase: 'pending', appliedGenerations: new Map(), netns, iface };
}

/** Each load balancer on the node and its last `show stat`, for status.json and /metrics. */
export function statsViews(outcomes: Outcomes): LbStatsView[] {
  const views: LbStatsView[] = [];
  for (const [key, o] of outcomes) {
    if (o.applied === undefined) continue;
    const ha = o.applied.ha === undefined ? {} : { keepalivedUp: o.keepalivedUp === true, ...(o.vrrp === undefined ? {} : { vrrp: o.vrrp }) };
    views.push({ key, applied: o.applied, stats: o.stats, ...ha });
  }
  return views;
}

/**
 * How long the last `show stat` answer stands for a HAProxy that is still running but did not answer in time. On
 * a starved node (a drain of many pairs: bench (w)) a busy HAProxy misses the runtime socket's timeout now and
 * then; taking that as "no stats" made every object of its load balancer OFFLINE and the pair not ready, then
 * ONLINE again a second later: four status writes each way, hundreds per minute, which starved the node further.
 * A HAProxy that exited has no grace: its exit is watched, and its stats go at once.
 */
export const STATS_GRACE_MS = 10_000;

/**
 * A change of this node's VRRP state seen by a poll: `from` and `to` (undefined: keepalived not running), and how
 * many changes keepalived announced in between (more than one: it flipped and back between two polls).
 */
export interface VrrpChange {
  from?: VrrpState;
  to?: VrrpState;
  changes: number;
}

/**
 * What a poll saw change in the VRRP state, worth a log line: not a keepalived that starts BACKUP (every one does)
 * or one that stopped (the agent stopped it). The state file's count of changes tells flips between polls apart.
 */
export function vrrpChange(before: ObservedVrrpState | undefined, after: ObservedVrrpState | undefined): VrrpChange | undefined {
  if (after === undefined) return undefined;
  // A keepalived not running at the last poll: its first state, one change.
  if (before === undefined) return after.state === 'BACKUP' ? undefined : { to: after.state, changes: 1 };
  const changes = before.transitions !== undefined && after.transitions !== undefined ? after.transitions - before.transitions : undefined;
  if (before.state === after.state && (changes === undefined || changes <= 0)) return undefined;
  // The counter restarts with keepalived: a lower count is a new keepalived, at least one change.
  return { from: before.state, to: after.state, changes: changes !== undefined && changes > 0 ? changes : 1 };
}

/**
 * Asks the load balancer's HAProxy for `show stat` over its runtime socket (no process spawned); for ACTIVE_STANDBY,
 * reads this node's VRRP state too, and returns its change since the last poll, if any.
 */
export async function pollStats(node: NodeDriver, outcome: LbOutcome, now: () => number = Date.now): Promise<VrrpChange | undefined> {
  if (outcome.applied === undefined) return undefined;
  const both = outcome.applied.ha !== undefined && node.showStatAndPeers !== undefined;
  let peers: PeerSession[] | undefined;
  try {
    if (both) {
      const answer = await node.showStatAndPeers!(outcome.netns);
      outcome.stats = answer.stats;
      peers = answer.peers;
    } else {
      outcome.stats = await node.showStat(outcome.netns);
    }
    outcome.statsAt = now();
  } catch {
    const alive = outcome.pid !== undefined && node.processAlive(outcome.pid);
    if (!alive || outcome.statsAt === undefined || now() - outcome.statsAt > STATS_GRACE_MS) {
      delete outcome.stats;
      delete outcome.statsAt;
    }
  }
  if (outcome.applied.ha === undefined) return undefined;
  // ACTIVE_STANDBY: this node's VRRP state (a file read) and whether the peer's HAProxy talks to ours.
  const vrrp = node.vrrpState(outcome.netns);
  const change = vrrpChange(outcome.vrrp, vrrp);
  // A VRRP state is only read while its keepalived runs: one check of the process, not two.
  outcome.keepalivedUp = vrrp !== undefined || node.keepalivedPid(outcome.netns) !== undefined;
  if (vrrp === undefined) delete outcome.vrrp;
  else outcome.vrrp = vrrp;
  if (peers !== undefined) {
    outcome.peers = peers;
    return change;
  }
  // The combined query failed (or this node driver has none): as when `show peers` alone fails, the last answer
  // stands while the stats do.
  if (both) {
    if (outcome.stats === undefined) delete outcome.peers;
    return change;
  }
  try {
    outcome.peers = await node.showPeers(outcome.netns);
  } catch {
    // A HAProxy that answered `show stat` a moment ago and not this: the last answer stands for one poll.
    if (outcome.stats === undefined) delete outcome.peers;
  }
  return change;
}

/** Says a VRRP change in the log (a VIP that moves is what an operator looks for first): FAULT as a warning. */
export function logVrrpChange(logger: Pick<Logger, 'info' | 'warn'>, key: string, c: VrrpChange): void {
  const fields = { lb: key, from: c.from ?? null, to: c.to, ...(c.changes > 1 ? { changes: c.changes } : {}) };
  const what =
    c.to === 'MASTER'
      ? 'keepalived: this node holds the VIP now (MASTER)'
      : c.to === 'BACKUP'
        ? 'keepalived: this node is BACKUP (the peer holds the VIP, if it serves)'
        : c.to === 'FAULT'
          ? 'keepalived: FAULT, this node does not take the VIP'
          : 'keepalived: stopped';
  if (c.to === 'FAULT') logger.warn(fields, what);
  else logger.info(fields, what);
}

/**
 * Whether the last stats poll changed which UDP or SCTP members are DOWN since the one before: the kernel's
 * maps must follow. Remembers the new signature.
 */
export function kernelHealthChanged(outcome: LbOutcome): boolean {
  const lb = outcome.applied;
  if (lb === undefined || outcome.stats === undefined || !hasKernelListeners(lb)) return false;
  const signature = kernelHealthSignature(kernelHealthFromStats(lb, outcome.stats));
  const changed = outcome.kernelHealth !== undefined && outcome.kernelHealth !== signature;
  outcome.kernelHealth = signature;
  return changed;
}
