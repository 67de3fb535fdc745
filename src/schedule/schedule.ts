// Pure: where each load balancer runs (DESIGN §6), given the nodes Kubernetes knows and what was decided
// before. The Kubernetes side (scheduler.ts) feeds it the Leases, Nodes and LoadBalancers it watches and writes
// back what changed; everything that decides lives here, so that it is deterministic and tested without an API
// server.
//
// The rules, in the order they apply:
// - an explicit `spec.placement.nodes` wins and is recorded as it is;
// - a recorded placement stays while its nodes live (stable: the node selector and the anti-affinity are
//   checked when a slot is filled, not afterwards, as Kubernetes' IgnoredDuringExecution);
// - ACTIVE_STANDBY placements are slot-stable: slot i owns spec.vrrp.addresses[i] and its keepalived priority,
//   so a node never changes slot (that would move its VRRP address under a serving pair); a slot changes node,
//   the other stays where it is;
// - a slot on a dead node is filled again on a live one (ACTIVE_STANDBY: the survivor, whose keepalived has
//   taken the VIP, keeps its own slot, and the new BACKUP takes the dead node's slot and VRRP address; with no
//   node to take it, the dead node stays recorded in its slot, the pair DEGRADED), unless the circuit breaker
//   is open;
// - a slot on a draining node moves (SINGLE: at once; ACTIVE_STANDBY: once the other node of the pair is ready
//   to carry the VIP alone, and with both on draining nodes the one not MASTER first). A draining MASTER first
//   hands the role to its peer (its agent, seeing its Node drained: a planned switchover, keepalived staying up),
//   and its slot moves once the pair reports the peer MASTER, as a BACKUP's; until every pair there has switched,
//   no pair slot moves off that node, a BACKUP's neither (switchFirstMs); a pair that reports no MASTER (the
//   draining node FAULT, the peer not MASTER yet) counts as one still switching. Should that not
//   happen in time, the slot moves anyway and the draining node's agent hands the VIP over when it lets the pair
//   go (its keepalived first, then its HAProxy). Only the moves that take a VIP from its node are paced
//   (maxDrainMoves); a draining BACKUP's slot moves at once;
// - an empty slot goes to the eligible node (alive, not draining, labels matching the selector, not already
//   in this load balancer) with the fewest load balancers of the same anti-affinity group, then the fewest
//   load balancers, then the smallest name.
import type { LbKey, Topology } from '../api/v1alpha1/types.js';

export interface NodeView {
  name: string;
  /** The labels of its Node object (none when the API server has no Node of that name). */
  labels: Readonly<Record<string, string>>;
  /** Its Lease is held and not expired. */
  alive: boolean;
  /** Labelled nslb.dev/drain=true. */
  draining: boolean;
  /** When the scheduler first saw the drain label (epoch ms): the MASTER's switch is waited for from then. */
  drainingSince?: number;
}

export interface LbView {
  key: LbKey;
  topology: Topology;
  /** spec.placement.nodes. */
  explicit?: readonly string[];
  nodeSelector?: Readonly<Record<string, string>>;
  /** Its anti-affinity group (the label nslb.dev/anti-affinity). */
  antiAffinity?: string;
  /** status.placement.nodes as recorded. */
  recorded: readonly string[];
  /** ACTIVE_STANDBY: the node that reports itself MASTER (status.nodes), when known. */
  master?: string;
  /** ACTIVE_STANDBY: the nodes status.nodes says are ready. */
  ready?: readonly string[];
  /** status.provisioningStatus is ERROR: broken where it is, not on its way anywhere (the drain's pacing skips it). */
  failed?: boolean;
}

export interface ScheduleOptions {
  /**
   * The circuit breaker (Octavia's failover_threshold, as a share): when more than this share of the known
   * nodes is dead at once, nothing is moved off a dead node; new load balancers are still placed.
   */
  failoverThreshold: number;
  /**
   * A drain paces only what costs the serving side: at most this many handovers at once. A handover is a move
   * that takes a load balancer from the node serving it: a pair's slot on the draining node while that node is
   * its MASTER (in flight from the placement write until the pair reports another node MASTER: the leaving agent
   * let the VIP go and the peer took it), or a SINGLE load balancer, or a pair whose MASTER is not known (in flight
   * until it is ready where it is placed).
   * Each planned switchover must end within a client's SYN retransmission, and many at once on one node made them
   * outlast it. A pair whose draining node is its BACKUP (the other node MASTER and ready) moves at once, unpaced:
   * its VIP stays where it is. A load balancer in ERROR does not count (it is broken where it is). A node that dies
   * is not paced. Undefined: no bound.
   */
  maxDrainMoves?: number;
  /**
   * "Switch MASTER first, then re-place": a pair whose draining node is its MASTER (the other node ready and not
   * draining) keeps its slot while the draining node's agent hands the MASTER role to the peer (kubernetes-mode.ts
   * leavesMaster), until the pair reports the other node MASTER; then the slot moves at once, unpaced, as a
   * BACKUP's. After this long from the label the slot moves anyway, as a handover at deletion (paced). Undefined:
   * no wait (the slot moves as a handover at once).
   */
  switchFirstMs?: number;
  /** The clock for switchFirstMs (epoch ms). */
  now?: number;
}

/** The default of ScheduleOptions.switchFirstMs. */
export const DRAIN_SWITCH_FIRST_MS = 30_000;

export type ChangeReason = 'new' | 'explicit' | 'node-dead' | 'drain' | 'incomplete';

export interface PlacementChange {
  key: LbKey;
  from: readonly string[];
  to: string[];
  reason: ChangeReason;
}

export interface Schedule {
  /** Every load balancer's placement (MASTER first); missing: nowhere to place it, and never placed. */
  placements: Map<LbKey, string[]>;
  /** What differs from the recorded placements: the writes to make. */
  changes: PlacementChange[];
  /** Load balancers with a slot no eligible node can take, and why. */
  unschedulable: { key: LbKey; message: string }[];
  /** The earliest time a slot held for its MASTER's switch moves anyway (epoch ms): schedule again then. */
  switchDeadline?: number;
  /** The breaker: open, with the dead nodes and how many nodes are known; `held`: what stays on dead nodes. */
  breaker: { open: boolean; dead: string[]; known: number; held: LbKey[] };
}

function slotsOf(topology: Topology): number {
  return topology === 'ACTIVE_STANDBY' ? 2 : 1;
}

function matches(labels: Readonly<Record<string, string>>, selector: Readonly<Record<string, string>> | undefined): boolean {
  if (selector === undefined) return true;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

export function schedule(nodes: readonly NodeView[], lbs: readonly LbView[], opts: ScheduleOptions): Schedule {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const alive = (n: string): boolean => byName.get(n)?.alive === true;
  const usable = (n: string): boolean => alive(n) && byName.get(n)?.draining !== true;
  const dead = nodes.filter((n) => !n.alive).map((n) => n.name);
  const open = nodes.length > 0 && dead.length / nodes.length > opts.failoverThreshold;
  const held: LbKey[] = [];
  const now = opts.now ?? Date.now();
  /**
   * The slots of a placement on draining nodes that may move now: SINGLE's at once; a pair's only while the other
   * node is alive, reported ready and not draining itself (with both draining, the one not MASTER goes first), one
   * slot at a time, so the pair never loses its last ready node to a drain.
   */
  const drainable = (lb: LbView, placed: readonly (string | undefined)[], slots: number): number[] => {
    const draining = (n: string | undefined): n is string => n !== undefined && alive(n) && !usable(n);
    if (slots === 1) return draining(placed[0]) ? [0] : [];
    for (const i of [1, 0]) {
      const n = placed[i];
      const other = placed[1 - i];
      if (!draining(n) || other === undefined || !alive(other) || !(lb.ready ?? []).includes(other)) continue;
      // Its node still hands MASTER roles over: every pair slot there waits (see `switching`).
      if (switching.has(n)) continue;
      if (usable(other) || lb.master === other || (lb.master === undefined && i === 1)) return [i];
    }
    return [];
  };
  // MASTER first, then re-place: the draining nodes whose agents still hand MASTER roles over (a pair whose MASTER
  // is there, its other node ready and not draining), until switchFirstMs after the label. No slot of a pair moves
  // off such a node meanwhile, a BACKUP's neither: the re-placement's work (the node's teardowns, the other nodes'
  // HAProxy reloads and new BACKUPs) would take the CPU the switchovers need (bench (w): a drain's SYN drops took
  // 4 s to install beside it).
  const switching = new Set<string>();
  let switchDeadline: number | undefined;
  if (opts.switchFirstMs !== undefined) {
    for (const lb of lbs) {
      const placed = lb.explicit !== undefined && lb.explicit.length > 0 ? lb.explicit : lb.recorded;
      if (slotsOf(lb.topology) !== 2) continue;
      // The MASTER, or, while no node reports itself MASTER, either draining node of the pair: a draining node in
      // the middle of its switchover is FAULT (the VIP released) until the peer announces itself MASTER, a few
      // adverts later, and moving the slot then would start the re-placement beside the peer's takeover.
      const candidates = lb.master === undefined ? placed : placed.filter((n) => n === lb.master);
      for (const m of candidates) {
        if (!alive(m) || usable(m)) continue;
        const other = placed.find((x) => x !== m);
        if (other === undefined || !usable(other) || !(lb.ready ?? []).includes(other)) continue;
        const deadline = (byName.get(m)?.drainingSince ?? now) + opts.switchFirstMs;
        if (now >= deadline) continue;
        switching.add(m);
        switchDeadline = Math.min(switchDeadline ?? deadline, deadline);
      }
    }
  }

  // Keys in one order, whatever order the caches listed them in: the same inputs give the same schedule.
  const ordered = [...lbs].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  // The drain's budget: the handovers that may start now, given those still in flight.
  const handingOver = (lb: LbView): boolean => {
    if (lb.explicit !== undefined || lb.failed === true || lb.recorded.length === 0) return false;
    // SINGLE, or a pair whose MASTER is not known (moved as a handover, below): until ready where it is placed.
    if (slotsOf(lb.topology) === 1 || lb.master === undefined) return lb.recorded.some((n) => !(lb.ready ?? []).includes(n));
    return alive(lb.master) && !usable(lb.master) && !lb.recorded.includes(lb.master);
  };
  /** A move off a draining node that takes the VIP from where it is served (or might: the MASTER not known). */
  const handsOver = (lb: LbView, placed: readonly (string | undefined)[], moving: readonly number[]): boolean =>
    slotsOf(lb.topology) === 1 || lb.master === undefined || !(lb.ready ?? []).includes(lb.master) || moving.some((i) => placed[i] === lb.master);
  let drainBudget = opts.maxDrainMoves === undefined ? Infinity : opts.maxDrainMoves - ordered.filter(handingOver).length;
  const load = new Map<string, number>(nodes.map((n) => [n.name, 0]));
  const groupLoad = new Map<string, number>();
  const count = (node: string, group: string | undefined): void => {
    load.set(node, (load.get(node) ?? 0) + 1);
    if (group !== undefined) groupLoad.set(`${group}\0${node}`, (groupLoad.get(`${group}\0${node}`) ?? 0) + 1);
  };

  // First what stays (explicit, and the slots that keep their node), so that the load every choice below
  // compares is the load that will be.
  const kept = new Map<LbKey, { nodes: (string | undefined)[]; reason: ChangeReason | undefined; before: readonly (string | undefined)[] }>();
  for (const lb of ordered) {
    if (lb.explicit !== undefined && lb.explicit.length > 0) {
      const nodesOf = [...lb.explicit];
      for (const n of nodesOf) count(n, lb.antiAffinity);
      kept.set(lb.key, { nodes: nodesOf, reason: 'explicit', before: nodesOf });
      continue;
    }
    const slots = slotsOf(lb.topology);
    let nodesOf: (string | undefined)[] = lb.recorded.slice(0, slots);
    let reason: ChangeReason | undefined = lb.recorded.length > slots ? 'incomplete' : undefined;
    const lost = nodesOf.some((n) => n !== undefined && !alive(n));
    if (lost && open) {
      // Breaker open: what is on dead nodes stays recorded there; only live slots are looked after.
      held.push(lb.key);
    } else if (lost) {
      // The slot is emptied where it is (the other keeps its index: a pair's slots own its VRRP addresses).
      nodesOf = nodesOf.map((n) => (n !== undefined && alive(n) ? n : undefined));
      reason = 'node-dead';
    }
    const moving = drainable(lb, nodesOf, slots);
    const costly = moving.length > 0 && handsOver(lb, nodesOf, moving);
    if (moving.length > 0 && (!costly || drainBudget > 0)) {
      if (costly) drainBudget--;
      for (const i of moving) nodesOf[i] = undefined;
      reason ??= 'drain';
    }
    while (nodesOf.length < slots) nodesOf.push(undefined);
    if (reason === undefined && nodesOf.some((n) => n === undefined)) reason = lb.recorded.length === 0 ? 'new' : 'incomplete';
    for (const n of nodesOf) if (n !== undefined) count(n, lb.antiAffinity);
    kept.set(lb.key, { nodes: nodesOf, reason, before: lb.recorded.slice(0, slots) });
  }

  const placements = new Map<LbKey, string[]>();
  const changes: PlacementChange[] = [];
  const unschedulable: { key: LbKey; message: string }[] = [];
  for (const lb of ordered) {
    const k = kept.get(lb.key)!;
    const chosen: string[] = [];
    let missing = 0;
    for (const [slot, n] of k.nodes.entries()) {
      if (n !== undefined) {
        chosen.push(n);
        continue;
      }
      const candidate = nodes
        .filter((n) => usable(n.name) && matches(n.labels, lb.nodeSelector) && !k.nodes.includes(n.name) && !chosen.includes(n.name))
        .map((n) => n.name)
        .sort((a, b) => {
          const g = (x: string): number => (lb.antiAffinity === undefined ? 0 : (groupLoad.get(`${lb.antiAffinity}\0${x}`) ?? 0));
          return g(a) - g(b) || (load.get(a) ?? 0) - (load.get(b) ?? 0) || (a < b ? -1 : a > b ? 1 : 0);
        })[0];
      if (candidate === undefined) {
        missing++;
        // Nobody can take the slot: the node that held it keeps it (dead, or draining), so that the other slot
        // keeps its index; a slot that never had a node stays empty.
        const before = k.before[slot];
        if (before !== undefined) chosen.push(before);
        continue;
      }
      chosen.push(candidate);
      count(candidate, lb.antiAffinity);
    }
    if (missing > 0) {
      const eligible = nodes.filter((n) => usable(n.name) && matches(n.labels, lb.nodeSelector)).length;
      const selector =
        lb.nodeSelector === undefined
          ? ''
          : ` matching ${Object.entries(lb.nodeSelector)
              .map(([a, b]) => `${a}=${b}`)
              .join(',')}`;
      unschedulable.push({
        key: lb.key,
        message: `${slotsOf(lb.topology)} node(s) needed, ${eligible} live node(s)${selector} not draining`,
      });
    }
    // Nowhere at all, or (a pair) not on as many nodes as it needs and never placed: what was recorded stays (a
    // dead node's placement is better than none to read); a half-placed pair is not written (it would have no
    // peer, and its one node would have to change slot later).
    if (chosen.length === 0 || (lb.recorded.length === 0 && chosen.length < slotsOf(lb.topology))) {
      if (lb.recorded.length > 0) placements.set(lb.key, [...lb.recorded]);
      continue;
    }
    placements.set(lb.key, chosen);
    if (!same(chosen, lb.recorded)) changes.push({ key: lb.key, from: lb.recorded, to: chosen, reason: k.reason ?? 'incomplete' });
  }
  return {
    placements,
    changes,
    unschedulable,
    breaker: { open, dead, known: nodes.length, held },
    ...(switchDeadline === undefined ? {} : { switchDeadline }),
  };
}
