// The engine's clock: the periodic resync (drift repair and garbage collection), the HAProxy exit watch, the
// stats poll, and the kernel-limit checks that go with them. A resync observes the whole node in one go (a
// constant number of processes), plans every load balancer against it, and queues only those with work to do,
// and every orphan; it logs one summary line.
import type { LbKey } from '../api/v1alpha1/types.js';
import { vipAddresses, type DesiredLoadBalancer } from '../desired/model.js';
import { netnsOfKey, orphanKey } from '../desired/names.js';
import { explain } from '../exec/hints.js';
import type { Logger } from '../log/logger.js';
import { nodeLoadOf, type Family } from '../plan/kernel-limits.js';
import { hasKernelListeners } from '../plan/kernel-model.js';
import type { NodeDriver, ObserveTarget } from '../plan/node-driver.js';
import type { ObservedNode } from '../plan/observed.js';
import { planLoadBalancer } from '../plan/plan.js';
import type { KernelLimits } from './kernel-limits.js';
import { kernelHealthChanged, logVrrpChange, pollStats, type Outcomes } from './outcomes.js';
import { planInput, type LbEvent, type Reconciler } from './reconciler.js';
import { fingerprint, type DesiredSnapshot } from './snapshot.js';
import { sleep } from '../loop/wait.js';

/** How often the periodic work runs; changed live on SIGHUP (`--resync`, `--status-interval`). */
export interface Periods {
  resyncSeconds: number;
  statusIntervalMs: number;
}

export interface ResyncOptions {
  node: NodeDriver;
  stateDir: string;
  logger: Logger;
  snapshot: DesiredSnapshot;
  outcomes: Outcomes;
  reconciler: Reconciler;
  /** Status may have changed: publish it (coalesced). */
  publish: () => Promise<void>;
  onEvent?: (e: LbEvent) => void;
  /** The node's kernel limits, checked against the load on every snapshot and resync (absent in tests). */
  kernelLimits?: KernelLimits;
  /** Files and directories the source watches (one inotify watch each); undefined when it watches none. */
  watchedPaths?: () => number | undefined;
  /** Processes started so far (the summary line says how many a resync cost). */
  spawned?: () => number;
}

/** A HAProxy that exits is noticed within this long, instead of at the next resync. */
const EXIT_WATCH_MS = 1_000;

/** How long a periodic resync waits, at most, for planned handovers to end (see `#tick`). */
export const HANDOVER_QUIET_MAX_MS = 10_000;

/** The address families a load balancer listens on (its VIP and additional VIPs). */
function lbFamilies(lb: DesiredLoadBalancer): Family[] {
  return [...new Set(vipAddresses(lb.vip).map((a) => (a.family === 4 ? 'ipv4' : 'ipv6') as Family))];
}

export class Resync {
  readonly #opts: ResyncOptions;
  /** Load balancers told (by an Event) that their node refuses neighbours of their family. */
  #refusedLbs = new Set<LbKey>();
  #timers: NodeJS.Timeout[] = [];
  #refresh: (() => Promise<void>) | undefined;
  #polling: Promise<void> | undefined;
  /** The periodic resync (re-read + resync) still running, if one is. */
  #ticking: Promise<void> | undefined;
  /** Periodic ticks skipped because the last resync was still running (said in the next summary line). */
  #skipped = 0;

  constructor(opts: ResyncOptions) {
    this.#opts = opts;
  }

  /**
   * Starts the clock: every `resyncSeconds` the source is re-read (`refresh`) and the node resynced, every
   * `statusIntervalMs` HAProxy's stats are polled, and every second the HAProxy processes are checked.
   */
  start(periods: Periods, refresh: () => Promise<void>): void {
    this.#refresh = refresh;
    const exits = setInterval(() => this.#checkExits(), EXIT_WATCH_MS);
    exits.unref();
    this.#timers = [exits];
    this.setPeriods(periods);
  }

  setPeriods(periods: Periods): void {
    const refresh = this.#refresh;
    if (refresh === undefined) return;
    const [exits] = this.#timers;
    for (const t of this.#timers.slice(1)) clearInterval(t);
    const resync = setInterval(() => void this.#tick(refresh), periods.resyncSeconds * 1000);
    const poll = setInterval(() => {
      this.pollStats().catch((err: unknown) => this.#opts.logger.error({ err }, 'stats poll failed'));
    }, periods.statusIntervalMs);
    this.#timers = [...(exits === undefined ? [] : [exits]), resync, poll];
  }

  /**
   * One periodic resync. A tick that comes while the last one still runs (after a bulk creation the first
   * resync can outlast the period) is skipped, not started beside it: two resyncs at once slow each other and
   * observe the same node twice. The next summary line counts the skipped ticks.
   */
  #tick(refresh: () => Promise<void>): Promise<void> {
    if (this.#ticking !== undefined) {
      this.#skipped++;
      this.#opts.logger.debug({ skipped: this.#skipped }, 'resync still running; this tick is skipped');
      return this.#ticking;
    }
    this.#ticking = (async () => {
      await this.#handoversEnded();
      await refresh();
      await this.once();
    })()
      .catch((err: unknown) => this.#opts.logger.error({ err }, 'resync failed'))
      .finally(() => {
        this.#ticking = undefined;
      });
    return this.#ticking;
  }

  /**
   * A leaving MASTER holds new connections off (their SYNs dropped) from the moment its drop is in until its
   * VIP has moved, and every step of that wait is on the event loop. A resync observes the whole node, seconds
   * on a node busy with a drain, much of it on that same loop: the handover's window grew by as much (a drain
   * of 30 pairs here: 1.9 s of a 600 ms wait, during a resync's 2.8 s observe). The periodic resync, which only
   * repairs drift, starts once no handover is under way, or after HANDOVER_QUIET_MAX_MS whatever happens.
   */
  async #handoversEnded(): Promise<void> {
    const { node } = this.#opts;
    const until = Date.now() + HANDOVER_QUIET_MAX_MS;
    while ((node.handoversInFlight?.() ?? 0) > 0 && Date.now() < until) await sleep(100);
  }

  stop(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#refresh = undefined;
  }

  /**
   * One resync: observe the whole node once (a constant number of processes: one `ovs-vsctl`, one
   * `ip netns list`; the netns themselves come from the event-fed cache unless something changed in them),
   * plan every load balancer against it, and queue only those with work to do, and every orphan.
   */
  async once(): Promise<void> {
    const { node, snapshot, outcomes, reconciler, logger } = this.#opts;
    const { desired } = snapshot;
    const started = Date.now();
    const spawnedBefore = this.#opts.spawned?.() ?? 0;
    this.checkKernelLimits();
    const wanted = new Set<string>();
    const targets: ObserveTarget[] = [];
    // Load balancers queued or being reconciled are not looked into: their reconcile observes them anyway,
    // and during a bulk creation these are the netns just made (each would cost an `ip` read).
    const busy = new Set<string>();
    for (const [key, lb] of desired.lbs) {
      wanted.add(lb.names.netns);
      if (reconciler.busy(key)) busy.add(key);
      else if (!desired.blocked.has(key)) targets.push({ netns: lb.names.netns, iface: lb.names.iface, ...(hasKernelListeners(lb) ? { nft: true } : {}) });
    }
    for (const key of desired.blocked.keys()) {
      wanted.add(netnsOfKey(key));
      reconciler.add(key);
    }
    await this.#keepDaemonsInCgroup();
    let changed = 0;
    let observed: ObservedNode;
    let observedAt = started;
    try {
      observed = await node.observe(targets, { scope: 'mine', nodeWide: true });
      observedAt = Date.now();
    } catch (err) {
      // The node cannot be observed (Open vSwitch down): each load balancer's reconcile reports why.
      logger.warn({ err: explain(err) }, 'resync cannot observe the node; reconciling every load balancer');
      for (const key of desired.lbs.keys()) reconciler.add(key);
      return;
    }
    for (const [key, lb] of desired.lbs) {
      if (desired.blocked.has(key) || busy.has(key)) continue;
      const o = observed.lbs.get(lb.names.netns) ?? { ifaceInHost: false, stateDir: false };
      const outcome = outcomes.get(key);
      const fresh = outcome?.phase === 'active' && outcome.applied !== undefined && fingerprint(outcome.applied) === fingerprint(lb);
      const actions = planLoadBalancer(planInput(node, this.#opts.stateDir, lb.names.netns, lb.names.iface, lb, o));
      if (actions.length === 0 && o.haproxy !== undefined) {
        // Already right on the node: adopt it (an agent restart) or keep it, without a reconcile.
        if (!fresh) reconciler.converged(key, lb, o.haproxy.pid);
        else if (outcome !== undefined) outcome.pid = o.haproxy.pid;
        continue;
      }
      changed++;
      reconciler.add(key);
    }
    for (const [netns, o] of observed.lbs) {
      if (wanted.has(netns)) continue;
      // An owner we no longer want, or one we cannot even name: both are ours by marker, both go.
      const key = o.lbKey !== undefined && netnsOfKey(o.lbKey) === netns ? o.lbKey : orphanKey(netns);
      changed++;
      reconciler.add(key);
    }
    const counts = { active: 0, pending: 0, error: 0 };
    for (const key of new Set([...desired.lbs.keys(), ...desired.blocked.keys()])) {
      // A load balancer with invalid objects is in error even while it keeps serving its last good config.
      const phase = desired.blocked.has(key) ? 'error' : (outcomes.get(key)?.phase ?? 'pending');
      counts[phase]++;
    }
    void this.#opts.publish();
    const skipped = this.#skipped;
    this.#skipped = 0;
    logger.info(
      {
        loadBalancers: counts.active + counts.pending + counts.error,
        ...counts,
        changed,
        ...(skipped > 0 ? { skippedTicks: skipped } : {}),
        spawned: (this.#opts.spawned?.() ?? 0) - spawnedBefore,
        ms: Date.now() - started,
        observeMs: observedAt - started,
      },
      'resync',
    );
  }

  /** A daemon moved out of `--daemon-cgroup` would die with the container it was moved into: put it back. */
  async #keepDaemonsInCgroup(): Promise<void> {
    try {
      const moved = (await this.#opts.node.keepDaemonsInCgroup?.()) ?? [];
      if (moved.length > 0) this.#opts.logger.warn({ pids: moved }, 'daemons found outside --daemon-cgroup were moved back');
    } catch (err) {
      this.#opts.logger.warn({ err: explain(err) }, 'cannot move daemons back into --daemon-cgroup');
    }
  }

  /**
   * Notices a HAProxy that exited (crashed, killed) within a second, instead of at the next resync: its load
   * balancer is queued at once. Reads /proc only; no process is spawned.
   */
  #checkExits(): void {
    for (const [key, outcome] of this.#opts.outcomes) {
      if (outcome.phase !== 'active') continue;
      if (outcome.pid !== undefined && !this.#opts.node.processAlive(outcome.pid)) {
        this.#opts.logger.warn({ lb: key, pid: outcome.pid }, 'haproxy exited; reconciling now');
        delete outcome.pid;
        this.#opts.reconciler.add(key);
      }
      // keepalived killed outright leaves its VIPs behind while the peer takes them too: the sooner a new one
      // starts (as BACKUP, removing them), the shorter both nodes hold the VIP.
      if (outcome.keepalivedPid !== undefined && !this.#opts.node.processAlive(outcome.keepalivedPid)) {
        this.#opts.logger.warn({ lb: key, pid: outcome.keepalivedPid }, 'keepalived exited; reconciling now');
        delete outcome.keepalivedPid;
        this.#opts.reconciler.add(key);
      }
    }
  }

  /**
   * Ask every running HAProxy for `show stat` over its runtime socket (no process spawned). A poll still running
   * when the next is due is not doubled: on a busy node the polls would pile up on HAProxies already late.
   */
  pollStats(): Promise<void> {
    this.#polling ??= this.#pollStats().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #pollStats(): Promise<void> {
    if (this.#opts.kernelLimits?.pollNeighbours() === true) this.#afterKernelLimits();
    await Promise.all(
      [...this.#opts.outcomes].map(async ([key, outcome]) => {
        const change = await pollStats(this.#opts.node, outcome);
        if (change !== undefined) logVrrpChange(this.#opts.logger, key, change);
      }),
    );
    // A UDP or SCTP member that went DOWN or came back changes the kernel's maps: its load balancer is queued,
    // and its reconcile observes the health again and applies the one transaction that follows.
    for (const [key, outcome] of this.#opts.outcomes) {
      if (kernelHealthChanged(outcome)) this.#opts.reconciler.add(key);
    }
    await this.#opts.publish();
  }

  /** What this agent's load balancers need from the kernel, checked (and raised) now. */
  checkKernelLimits(): void {
    const limits = this.#opts.kernelLimits;
    if (limits === undefined) return;
    const { desired } = this.#opts.snapshot;
    const lbs = [...desired.lbs.values()];
    // A load balancer with invalid objects keeps serving what was applied last: it still needs its share.
    for (const key of desired.blocked.keys()) {
      const applied = this.#opts.outcomes.get(key)?.applied;
      if (applied !== undefined && !desired.lbs.has(key)) lbs.push(applied);
    }
    let running = 0;
    for (const o of this.#opts.outcomes.values()) if (o.pid !== undefined) running++;
    if (limits.check(nodeLoadOf(lbs, running, this.#opts.watchedPaths?.()))) this.#afterKernelLimits();
  }

  /** The kernel-limit report changed: tell the load balancers it now affects (Kubernetes Events) and publish. */
  #afterKernelLimits(): void {
    const report = this.#opts.kernelLimits?.report;
    const refusing = new Set<Family>(report?.refusing ?? []);
    const affected = new Set<LbKey>();
    for (const [key, lb] of this.#opts.snapshot.desired.lbs) if (lbFamilies(lb).some((f) => refusing.has(f))) affected.add(key);
    for (const key of affected) {
      if (this.#refusedLbs.has(key)) continue;
      this.#opts.onEvent?.({ key, type: 'Warning', reason: 'KernelLimitTooLow', message: report?.condition.message ?? '' });
    }
    this.#refusedLbs = affected;
    void this.#opts.publish();
  }
}
