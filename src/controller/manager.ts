// The engine (DESIGN §4): snapshots from a source become a desired state; changed load balancers are queued;
// reconcile(key) observes, plans and applies; status is recomputed and published. A periodic resync re-reads
// the source, queues every load balancer (drift repair) and every orphan (garbage collection).
import { createHash, randomUUID } from 'node:crypto';
import type { AnyObject, Condition, LbKey, ObjectStatus } from '../api/v1alpha1/types.js';
import { objectId } from '../api/v1alpha1/types.js';
import { buildDesired, type DesiredState, type ObjectProblem } from '../desired/build.js';
import { vipAddresses, type DesiredLoadBalancer } from '../desired/model.js';
import { nodeNames, parseLbKey } from '../desired/names.js';
import type { Runner } from '../exec/run.js';
import { lbPaths } from '../drivers/haproxy/haproxy.js';
import { parseShowStat, queryRuntime } from '../drivers/haproxy/stats.js';
import { explain } from '../drivers/hints.js';
import { applyAction, ifaceForNetns, observeNode, writeOwner, type NodeContext, type ObserveTarget } from '../drivers/node.js';
import type { ObservedNode } from '../drivers/observed.js';
import { haproxyPid, processAlive } from '../drivers/haproxy/haproxy.js';
import { spawnCounter } from '../exec/run.js';
import type { Logger } from '../log/logger.js';
import { formatAction, type Action } from '../plan/actions.js';
import { renderHaproxyConfig } from '../plan/haproxy-config.js';
import { planLoadBalancer } from '../plan/plan.js';
import { nodeLoadOf, type Family } from '../plan/kernel-limits.js';
import type { FileIssue } from '../sources/parse.js';
import { computeStatuses, type LbOutcome } from '../status/compute.js';
import { renderStatusFile, type NodeStatus, type StatusFile } from '../status/status-file.js';
import type { LbStatsView } from '../status/traffic.js';
import { crashPoint } from './crash-points.js';
import { KERNEL_LIMITS_CONDITION, type KernelLimits } from './kernel-limits.js';
import { servedHere } from './placement.js';
import { WorkQueue } from './queue.js';

export interface ManagerOptions {
  run: Runner;
  stateDir: string;
  bridge: string;
  nodeName: string;
  concurrency: number;
  logger: Logger;
  /** Receives the status file whenever it may have changed (the writer drops repeats). */
  publish: (file: StatusFile) => Promise<void>;
  /** A load balancer that is no longer desired is gone from the node (Kubernetes: drop the finalizer). */
  onRemoved?: (key: LbKey) => Promise<void>;
  /** Provisioning milestones and failures, for Kubernetes Events; `actions`: what a reconcile did. */
  onEvent?: (e: { key: LbKey; type: 'Normal' | 'Warning'; reason: string; message: string; actions?: readonly Action[] }) => void;
  /** A problem of one desired object (invalid spec, dangling reference) when it appears, for Kubernetes Events. */
  onProblem?: (p: ObjectProblem) => void;
  /** After each reconcile of a key: how it ended and how long it took (for /metrics). */
  onReconciled?: (key: LbKey, result: 'ok' | 'error', seconds: number) => void;
  /** The node's kernel limits, checked against the load on every snapshot and resync (absent in tests). */
  kernelLimits?: KernelLimits;
  /** Files and directories the source watches (one inotify watch each); undefined when it watches none. */
  watchedPaths?: () => number | undefined;
}

const ORPHAN_PREFIX = 'orphan:';
const PUBLISH_GAP_MS = 100;
const PUBLISH_COST_FACTOR = 10;

export function netnsOfKey(key: string): string {
  if (key.startsWith(ORPHAN_PREFIX)) return key.slice(ORPHAN_PREFIX.length);
  const { namespace, name } = parseLbKey(key);
  return nodeNames(namespace, name).netns;
}

/** Plans one load balancer against the node, changing nothing: the heart of both reconcile and `nslb plan`. */
export async function planKey(
  ctx: NodeContext,
  key: string,
  desired: DesiredLoadBalancer | undefined,
): Promise<Action[]> {
  const netns = desired?.names.netns ?? netnsOfKey(key);
  const iface = desired?.names.iface ?? ifaceForNetns(netns);
  const observed = await observeNode(ctx, [{ netns, iface }], netnsOfKey);
  const o = observed.lbs.get(netns) ?? { ifaceInHost: false, stateDir: false };
  const config = desired === undefined ? undefined : renderHaproxyConfig(desired, lbPaths(ctx.stateDir, netns));
  return planLoadBalancer({
    netns,
    iface,
    ...(desired === undefined ? {} : { desired }),
    ...(config === undefined ? {} : { config }),
    observed: o,
  });
}

/** The address families a load balancer listens on (its VIP and additional VIPs). */
function lbFamilies(lb: DesiredLoadBalancer): Family[] {
  return [...new Set(vipAddresses(lb.vip).map((a) => (a.family === 4 ? 'ipv4' : 'ipv6') as Family))];
}

const fingerprints = new WeakMap<DesiredLoadBalancer, string>();

/** A hash of the desired model, computed once per model object (a resync compares hundreds of them). */
function fingerprint(d: DesiredLoadBalancer | undefined): string {
  if (d === undefined) return '';
  let fp = fingerprints.get(d);
  if (fp === undefined) {
    fp = createHash('sha256').update(JSON.stringify(d)).digest('hex');
    fingerprints.set(d, fp);
  }
  return fp;
}

export class Manager {
  readonly #opts: ManagerOptions;
  readonly #ctx: NodeContext;
  readonly #queue: WorkQueue;
  #objects: AnyObject[] = [];
  #issues: FileIssue[] = [];
  #desired: DesiredState = { lbs: new Map(), blocked: new Map(), problems: [], owners: new Map() };
  /** The objects of each load balancer, from #objects and #desired; rebuilt on first use after a snapshot. */
  #byOwner: Map<LbKey, AnyObject[]> | undefined;
  readonly #outcomes = new Map<LbKey, LbOutcome>();
  readonly #fingerprints = new Map<LbKey, string>();
  readonly #generations = new Map<string, { spec: string; generation: number }>();
  #statuses = new Map<string, ObjectStatus>();
  #publishing: Promise<void> = Promise.resolve();
  #publishQueued: Promise<void> | undefined;
  #lastPublished = 0;
  #lastPublishCost = 0;
  /** Ends the wait of a queued publish; with #urgent, none waits (the initial sync's status goes out at once). */
  #wakePublish: (() => void) | undefined;
  #urgent = false;
  #synced = false;
  #loggedProblems = new Set<string>();
  #sourceError: string | undefined;
  /** The node's own condition (kernel limits), with its lastTransitionTime kept while its status holds. */
  #nodeCondition: Condition | undefined;
  /** Load balancers told (by an Event) that their node refuses neighbours of their family. */
  #refusedLbs = new Set<LbKey>();

  constructor(opts: ManagerOptions) {
    this.#opts = opts;
    this.#ctx = { run: opts.run, stateDir: opts.stateDir };
    this.#queue = new WorkQueue((key) => this.#reconcile(key), {
      concurrency: opts.concurrency,
      ...(opts.onReconciled === undefined ? {} : { onProcessed: opts.onReconciled }),
    });
  }

  get synced(): boolean {
    return this.#synced;
  }

  get statuses(): ReadonlyMap<string, ObjectStatus> {
    return this.#statuses;
  }

  /** Read-only, for /metrics: keys waiting for a worker, and retries scheduled so far. */
  get queueStats(): { depth: number; retries: number } {
    return { depth: this.#queue.depth, retries: this.#queue.retries };
  }

  /** Read-only, for /metrics and status.json: each load balancer on the node and its last `show stat`. */
  loadBalancerStats(): LbStatsView[] {
    const views: LbStatsView[] = [];
    for (const [key, o] of this.#outcomes) if (o.applied !== undefined) views.push({ key, applied: o.applied, stats: o.stats });
    return views;
  }

  /** A new snapshot of the desired objects: queue every load balancer whose desired model changed. */
  setSnapshot(objects: AnyObject[], issues: FileIssue[], materials: ReadonlyMap<string, string> = new Map()): void {
    this.#objects = objects.map((o) => this.#stampGeneration(o));
    this.#issues = issues;
    this.#desired = buildDesired(this.#objects, { defaultBridge: this.#opts.bridge, materials });
    this.#byOwner = undefined;
    for (const [key, lb] of this.#desired.lbs) if (!servedHere(lb, this.#opts.nodeName)) this.#desired.lbs.delete(key);
    // Before anything is queued: a limit raised now is raised before the load balancers that need it exist.
    this.#checkKernelLimits();
    const keys = new Set<LbKey>([...this.#desired.lbs.keys(), ...this.#desired.blocked.keys(), ...this.#fingerprints.keys()]);
    for (const key of keys) {
      const fp = this.#desired.blocked.has(key) ? `blocked:${fingerprint(this.#desired.lbs.get(key))}` : fingerprint(this.#desired.lbs.get(key));
      if (this.#fingerprints.get(key) === fp && this.#outcomes.get(key)?.phase === 'active') continue;
      this.#fingerprints.set(key, fp);
      this.#queue.add(key);
    }
    // Logged when they change, not on every resync's re-read.
    const problems = new Set(this.#desired.problems.map((p) => `${p.kind}/${p.namespace}/${p.name}: ${p.message}`));
    for (const p of this.#desired.problems) {
      const text = `${p.kind}/${p.namespace}/${p.name}: ${p.message}`;
      if (this.#loggedProblems.has(text)) continue;
      this.#opts.logger.warn({ object: `${p.kind}/${p.namespace}/${p.name}`, reason: p.reason }, p.message);
      this.#opts.onProblem?.(p);
    }
    this.#loggedProblems = problems;
    void this.#publish();
  }

  /**
   * The source cannot be read (the watched directory vanished or became unreadable). Nothing is torn down:
   * the last snapshot stays in force, and status.json says why. Undefined clears it.
   */
  setSourceError(message: string | undefined): void {
    if (message === this.#sourceError) return;
    this.#sourceError = message;
    void this.#publish();
  }

  /** Load balancers reconciled at once; changed live on SIGHUP (`--concurrency` in the --config file). */
  setConcurrency(n: number): void {
    this.#queue.setConcurrency(n);
  }

  /** Queue one load balancer (e.g. one being deleted whose finalizer is still ours to remove). */
  enqueue(key: LbKey): void {
    this.#queue.add(key);
  }

  /**
   * The periodic resync: observe the whole node once (a constant number of processes: one `ovs-vsctl`, one
   * `ip netns list`; the netns themselves come from the event-fed cache unless something changed in them),
   * plan every load balancer against it, and queue only those with work to do, and every orphan. Logs one
   * summary line.
   */
  async resync(): Promise<void> {
    const started = Date.now();
    const spawnedBefore = spawnCounter.count;
    this.#checkKernelLimits();
    const wanted = new Set<string>();
    const targets: ObserveTarget[] = [];
    // Load balancers queued or being reconciled are not looked into: their reconcile observes them anyway,
    // and during a bulk creation these are the netns just made (each would cost an `ip` read).
    const busy = new Set<string>();
    for (const [key, lb] of this.#desired.lbs) {
      wanted.add(lb.names.netns);
      if (this.#queue.busy(key)) busy.add(key);
      else if (!this.#desired.blocked.has(key)) targets.push({ netns: lb.names.netns, iface: lb.names.iface });
    }
    for (const key of this.#desired.blocked.keys()) {
      wanted.add(netnsOfKey(key));
      this.#queue.add(key);
    }
    let changed = 0;
    let observed: ObservedNode;
    let observedAt = started;
    try {
      observed = await observeNode(this.#ctx, targets, netnsOfKey, 'mine', { nodeWide: true });
      observedAt = Date.now();
    } catch (err) {
      // The node cannot be observed (Open vSwitch down): each load balancer's reconcile reports why.
      this.#opts.logger.warn({ err: explain(err) }, 'resync cannot observe the node; reconciling every load balancer');
      for (const key of this.#desired.lbs.keys()) this.#queue.add(key);
      return;
    }
    for (const [key, lb] of this.#desired.lbs) {
      if (this.#desired.blocked.has(key) || busy.has(key)) continue;
      const o = observed.lbs.get(lb.names.netns) ?? { ifaceInHost: false, stateDir: false };
      const outcome = this.#outcomes.get(key);
      const fresh = outcome?.phase === 'active' && outcome.applied !== undefined && fingerprint(outcome.applied) === fingerprint(lb);
      const actions = planLoadBalancer({
        netns: lb.names.netns,
        iface: lb.names.iface,
        desired: lb,
        config: renderHaproxyConfig(lb, lbPaths(this.#opts.stateDir, lb.names.netns)),
        observed: o,
      });
      if (actions.length === 0 && o.haproxy !== undefined) {
        // Already right on the node: adopt it (an agent restart) or keep it, without a reconcile.
        if (!fresh) this.#converged(key, lb, o.haproxy.pid);
        else if (outcome !== undefined) outcome.pid = o.haproxy.pid;
        continue;
      }
      changed++;
      this.#queue.add(key);
    }
    for (const [netns, o] of observed.lbs) {
      if (wanted.has(netns)) continue;
      // An owner we no longer want, or one we cannot even name: both are ours by marker, both go.
      const key = o.lbKey !== undefined && netnsOfKey(o.lbKey) === netns ? o.lbKey : `${ORPHAN_PREFIX}${netns}`;
      changed++;
      this.#queue.add(key);
    }
    const counts = { active: 0, pending: 0, error: 0 };
    for (const key of new Set([...this.#desired.lbs.keys(), ...this.#desired.blocked.keys()])) {
      // A load balancer with invalid objects is in error even while it keeps serving its last good config.
      const phase = this.#desired.blocked.has(key) ? 'error' : (this.#outcomes.get(key)?.phase ?? 'pending');
      counts[phase]++;
    }
    void this.#publish();
    this.#opts.logger.info(
      {
        loadBalancers: counts.active + counts.pending + counts.error,
        ...counts,
        changed,
        spawned: spawnCounter.count - spawnedBefore,
        ms: Date.now() - started,
        observeMs: observedAt - started,
      },
      'resync',
    );
  }

  /** The load balancer is on the node as desired: ACTIVE, with the generations it now serves. */
  #converged(key: LbKey, desired: DesiredLoadBalancer, pid: number | undefined): void {
    const outcome: LbOutcome = this.#outcomes.get(key) ?? {
      phase: 'pending',
      appliedGenerations: new Map(),
      netns: desired.names.netns,
      iface: desired.names.iface,
    };
    outcome.phase = 'active';
    delete outcome.message;
    outcome.applied = desired;
    if (pid !== undefined) outcome.pid = pid;
    if (!this.#desired.blocked.has(key)) outcome.appliedGenerations = this.#generationsOf(key);
    this.#outcomes.set(key, outcome);
  }

  /**
   * Notices a HAProxy that exited (crashed, killed) within a second, instead of at the next resync: its load
   * balancer is queued at once. Reads /proc only; no process is spawned.
   */
  watchHaproxyExits(intervalMs = 1_000): () => void {
    const timer = setInterval(() => {
      void (async () => {
        for (const [key, outcome] of this.#outcomes) {
          if (outcome.pid === undefined || outcome.phase !== 'active') continue;
          if (await processAlive(outcome.pid)) continue;
          this.#opts.logger.warn({ lb: key, pid: outcome.pid }, 'haproxy exited; reconciling now');
          delete outcome.pid;
          this.#queue.add(key);
        }
      })();
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Nothing queued or running, and the status of it all published. */
  async idle(): Promise<void> {
    await this.#queue.idle();
    await this.#published();
  }

  /** Every load balancer and orphan has been reconciled once (those that failed keep retrying in backoff). */
  async initialSyncDone(): Promise<void> {
    await this.resync();
    await this.#queue.quiet();
    // Its status published at once, not after the gap between publishes.
    this.#urgent = true;
    void this.#publish();
    this.#wakePublish?.();
    await this.#published();
    this.#urgent = false;
    this.#synced = true;
  }

  /** Until the publishes asked for so far are done. */
  async #published(): Promise<void> {
    while (this.#publishQueued !== undefined) await this.#publishQueued;
    await this.#publishing;
  }

  async stop(): Promise<void> {
    await this.#queue.stop();
    await this.#publishing;
  }

  /** Ask every running HAProxy for `show stat` over its runtime socket (no process spawned). */
  async pollStats(): Promise<void> {
    if (this.#opts.kernelLimits?.pollNeighbours() === true) this.#afterKernelLimits();
    await Promise.all([...this.#outcomes.values()].map((outcome) => this.#pollOne(outcome)));
    await this.#publish();
  }

  async #pollOne(outcome: LbOutcome): Promise<void> {
    if (outcome.applied === undefined) return;
    try {
      outcome.stats = parseShowStat(await queryRuntime(lbPaths(this.#opts.stateDir, outcome.netns).socket, 'show stat'));
    } catch {
      delete outcome.stats;
    }
  }

  /** What this agent's load balancers need from the kernel, checked (and raised) now. */
  #checkKernelLimits(): void {
    const limits = this.#opts.kernelLimits;
    if (limits === undefined) return;
    const lbs = [...this.#desired.lbs.values()];
    // A load balancer with invalid objects keeps serving what was applied last: it still needs its share.
    for (const key of this.#desired.blocked.keys()) {
      const applied = this.#outcomes.get(key)?.applied;
      if (applied !== undefined && !this.#desired.lbs.has(key)) lbs.push(applied);
    }
    let running = 0;
    for (const o of this.#outcomes.values()) if (o.pid !== undefined) running++;
    if (limits.check(nodeLoadOf(lbs, running, this.#opts.watchedPaths?.()))) this.#afterKernelLimits();
  }

  /** The kernel-limit report changed: tell the load balancers it now affects (Kubernetes Events) and publish. */
  #afterKernelLimits(): void {
    const report = this.#opts.kernelLimits?.report;
    const refusing = new Set<Family>(report?.refusing ?? []);
    const affected = new Set<LbKey>();
    for (const [key, lb] of this.#desired.lbs) if (lbFamilies(lb).some((f) => refusing.has(f))) affected.add(key);
    for (const key of affected) {
      if (this.#refusedLbs.has(key)) continue;
      this.#opts.onEvent?.({ key, type: 'Warning', reason: 'KernelLimitTooLow', message: report?.condition.message ?? '' });
    }
    this.#refusedLbs = affected;
    void this.#publish();
  }

  /** status.json's `node`: this node's name and conditions, and the kernel limits as last checked. */
  #nodeStatus(now: string): NodeStatus {
    const report = this.#opts.kernelLimits?.report;
    const node: NodeStatus = { name: this.#opts.nodeName, conditions: [] };
    if (report === undefined) return node;
    const previous = this.#nodeCondition;
    this.#nodeCondition = {
      ...report.condition,
      lastTransitionTime: previous !== undefined && previous.status === report.condition.status ? previous.lastTransitionTime : now,
    };
    node.conditions.push(this.#nodeCondition);
    node.kernelLimits = { mode: report.mode, limits: report.limits, neighbours: report.neighbours };
    return node;
  }

  #stampGeneration(o: AnyObject): AnyObject {
    if (o.metadata.generation !== undefined) return o;
    // File mode has no API server to count generations: count spec changes ourselves.
    const id = objectId(o);
    const spec = JSON.stringify(o.spec);
    const prev = this.#generations.get(id);
    const generation = prev === undefined ? 1 : prev.spec === spec ? prev.generation : prev.generation + 1;
    this.#generations.set(id, { spec, generation });
    return { ...o, metadata: { ...o.metadata, generation } } as AnyObject;
  }

  async #reconcile(key: LbKey): Promise<void> {
    const log = this.#opts.logger.child({ lb: key, reconcileId: randomUUID().slice(0, 8) });
    const blocked = this.#desired.blocked.get(key);
    let desired = this.#desired.lbs.get(key);
    const previous = this.#outcomes.get(key);
    if (blocked !== undefined) {
      // Keep serving what was last applied; without it, touch nothing and let status say why.
      desired = previous?.applied;
      if (desired === undefined) {
        log.warn({ problems: blocked.length }, 'load balancer has invalid objects; nothing applied');
        return;
      }
    }
    const netns = desired?.names.netns ?? netnsOfKey(key);
    const started = Date.now();
    const outcome: LbOutcome = previous ?? {
      phase: 'pending',
      appliedGenerations: new Map(),
      netns,
      iface: ifaceForNetns(netns),
    };
    if (desired !== undefined) this.#outcomes.set(key, outcome);
    let actions: Action[] = [];
    try {
      // Inside the try: a node that cannot even be observed (Open vSwitch down) is an error to report on the
      // load balancer, with its hint, not a silent retry behind a stale ACTIVE.
      actions = await planKey(this.#ctx, key, desired);
      if (actions.length > 0) {
        outcome.phase = 'pending';
        // Not awaited: a member change must not wait for status.json of every load balancer to be written.
        void this.#publish();
        log.info({ actions: actions.map(formatAction) }, 'applying');
      }
      if (desired !== undefined && !key.startsWith(ORPHAN_PREFIX)) await writeOwner(this.#ctx, netns, key);
      for (const action of actions) {
        crashPoint();
        await applyAction(this.#ctx, action);
        crashPoint();
      }
    } catch (cause) {
      const err = explain(cause);
      outcome.phase = 'error';
      outcome.message = err.message;
      log.error({ err }, 'reconcile failed; will retry with backoff');
      this.#opts.onEvent?.({ key, type: 'Warning', reason: 'ReconcileFailed', message: outcome.message });
      void this.#publish();
      throw err;
    }
    if (desired === undefined) {
      this.#outcomes.delete(key);
      this.#fingerprints.delete(key);
      if (actions.length > 0) log.info({ ms: Date.now() - started }, 'removed');
      if (!key.startsWith(ORPHAN_PREFIX)) await this.#opts.onRemoved?.(key);
    } else {
      const created = outcome.applied === undefined;
      this.#converged(key, desired, await haproxyPid(this.#opts.stateDir, netns));
      if (actions.length > 0) {
        log.info({ ms: Date.now() - started }, 'converged');
        this.#opts.onEvent?.({
          key,
          type: 'Normal',
          reason: created ? 'Provisioned' : 'Updated',
          message: `${created ? 'serving' : 'updated'} on ${this.#opts.nodeName} in ${Date.now() - started} ms: ${actions.length} actions`,
          actions,
        });
      }
      await this.#pollOne(outcome);
    }
    // Not awaited: at hundreds of load balancers a publish waits its turn for up to a few seconds (see
    // #publish), and a reconcile that waited with it would hold its place in the queue, idle.
    void this.#publish();
  }

  #generationsOf(key: LbKey): Map<string, number> {
    // Indexed once per snapshot: looking through every object for each load balancer that converges made
    // a bulk creation O(N²).
    if (this.#byOwner === undefined) {
      this.#byOwner = new Map();
      for (const o of this.#objects) {
        const owner = this.#desired.owners.get(objectId(o));
        if (owner === undefined) continue;
        let list = this.#byOwner.get(owner);
        if (list === undefined) this.#byOwner.set(owner, (list = []));
        list.push(o);
      }
    }
    const result = new Map<string, number>();
    for (const o of this.#byOwner.get(key) ?? []) result.set(objectId(o), o.metadata.generation ?? 1);
    return result;
  }

  /**
   * Recomputes and publishes every status. Calls that arrive while one is waiting to start share it: N load
   * balancers converging at once cost a few publishes, not N (each is O(objects)).
   */
  #publish(): Promise<void> {
    if (this.#publishQueued !== undefined) return this.#publishQueued;
    const next = this.#publishing.then(async () => {
      // At most one publish per PUBLISH_GAP_MS: hundreds of load balancers converging at once must not spend
      // the CPU rewriting status.json back to back (each publish costs O(objects)).
      // The gap also grows with what a publish costs (×PUBLISH_COST_FACTOR), so that at any scale status
      // takes a bounded share of the agent's time (500 load balancers: ~30 ms each, every ~300 ms).
      const gap = Math.max(PUBLISH_GAP_MS, this.#lastPublishCost * PUBLISH_COST_FACTOR);
      const wait = this.#urgent ? 0 : this.#lastPublished + gap - Date.now();
      if (wait > 0) {
        await new Promise<void>((r) => {
          const timer = setTimeout(r, wait);
          this.#wakePublish = () => {
            clearTimeout(timer);
            r();
          };
        });
        this.#wakePublish = undefined;
      }
      this.#publishQueued = undefined;
      const started = Date.now();
      await this.#publishNow();
      this.#lastPublished = Date.now();
      this.#lastPublishCost = this.#lastPublished - started;
    });
    this.#publishQueued = next;
    this.#publishing = next;
    return next;
  }

  async #publishNow(): Promise<void> {
    {
      const now = new Date().toISOString();
      const node = this.#nodeStatus(now);
      const report = this.#opts.kernelLimits?.report;
      this.#statuses = computeStatuses({
        objects: this.#objects,
        desired: this.#desired,
        outcomes: this.#outcomes,
        previous: this.#statuses,
        now,
        node: this.#opts.nodeName,
        ...(report === undefined || report.refusing.length === 0
          ? {}
          : { refusing: { families: new Set(report.refusing), condition: { ...report.condition, type: KERNEL_LIMITS_CONDITION } } }),
      });
      const errors = this.#issues.map((i) => ({
        file: i.file,
        document: i.document,
        message: i.path === '' ? i.message : `${i.path}: ${i.message}`,
      }));
      if (this.#sourceError !== undefined) errors.unshift({ file: '.', document: 0, message: this.#sourceError });
      try {
        await this.#opts.publish(renderStatusFile(this.#objects, this.#statuses, errors, node));
      } catch (err) {
        this.#opts.logger.error({ err }, 'cannot publish status');
      }
    }
  }
}
