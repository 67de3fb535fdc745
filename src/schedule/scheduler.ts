// The scheduler's Kubernetes side (DESIGN §6): on the one agent holding the Lease `nslb-scheduler`, it watches
// the node Leases (membership), the Nodes (labels, drain) and the LoadBalancers, runs the pure schedule
// (schedule.ts) whenever one of them changes or a Lease runs out, and records each placement in
// `status.placement.nodes` with a merge patch of that field alone (the agents' status writes leave it alone).
// Every write first checks that this agent still leads: the elector stops leading before the Lease can be taken
// (kube/leader.ts), so two schedulers never write at once.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { makeApiClientWithTimeout, REQUEST_TIMEOUT_MS } from '../kube/http.js';
import { makeInformer } from '../kube/informer.js';
import { ANTI_AFFINITY_LABEL, DRAIN_LABEL, FINALIZER, GROUP, nodeLeaseName, PLURALS, SCHEDULER_LEASE, VERSION } from '../api/v1alpha1/crds.js';
import type { LbKey, Topology } from '../api/v1alpha1/types.js';
import { describeApiError, statusCode } from '../kube/errors.js';
import type { Logger } from '../log/logger.js';
import { Membership, type LeaseView, type Member } from './membership.js';
import { DRAIN_SWITCH_FIRST_MS, schedule, type LbView, type NodeView, type Schedule } from './schedule.js';

type Raw = KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };
type Cache = Informer<Raw> & { list(namespace?: string): Raw[] };
/** A cache that knows whether it has listed once (client-go's HasSynced): before that, empty means "not known yet". */
type SyncedCache = Cache & { readonly listed: boolean };

export interface SchedulerEvent {
  regarding: { apiVersion: string; kind: string; namespace: string; name: string };
  type: 'Normal' | 'Warning';
  reason: string;
  note: string;
}

export interface SchedulerOptions {
  kubeConfig: KubeConfig;
  /** LoadBalancers of this namespace only; all when undefined. */
  namespace?: string;
  /** Where the node Leases and the scheduler's Lease are (the agents' namespace). */
  leaseNamespace: string;
  failoverThreshold: number;
  /** A drain's bound on handovers at once (schedule.ts); undefined: none. */
  maxDrainMoves?: number;
  /** How long a draining MASTER's slot waits for its switch (schedule.ts switchFirstMs; default DRAIN_SWITCH_FIRST_MS). */
  switchFirstMs?: number;
  logger: Logger;
  /** Still the leader? Checked before every write. */
  leading: () => boolean;
  emit: (e: SchedulerEvent) => void;
  /**
   * A placement write not answered within this long is given up (and retried): one that hangs must neither hold
   * the run (the next leader's, too, waited on it) nor land long after this agent stopped leading. The elector's
   * renew deadline; REQUEST_TIMEOUT_MS when omitted.
   */
  writeTimeoutMs?: number;
  /** Writes in flight at once (default 16: a drain's round, --drain-concurrency's default, goes out together). */
  concurrency?: number;
  /**
   * The node Leases as this agent has watched them since it started (kubernetes-mode.ts): a new leader then
   * knows when each was last renewed. Without it, the scheduler watches them itself from its start.
   */
  leaseWatch?: NodeLeaseWatch;
  /** This agent's node. */
  nodeName?: string;
  /**
   * Called (once) instead of scheduling when this agent's node is labelled for drain while another node could
   * schedule: the drain's work on this node would starve the scheduler (kubernetes-mode.ts steps down).
   */
  onOwnNodeDraining?: () => void;
}

/** How long a placement written is trusted over a cache that does not show it yet. */
const WRITTEN_TTL_MS = 10_000;

const labelsOf = (o: Raw): Record<string, string> => (o.metadata?.labels ?? {}) as Record<string, string>;
const keyOf = (o: Raw): LbKey => `${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? ''}`;
const recordedOf = (o: Raw): string[] => {
  const nodes = (o.status?.placement as { nodes?: unknown } | undefined)?.nodes;
  return Array.isArray(nodes) ? nodes.filter((n): n is string => typeof n === 'string') : [];
};

export class Scheduler {
  readonly #opts: SchedulerOptions;
  readonly #logger: Logger;
  readonly #custom: CustomObjectsApi;
  readonly #leaseWatch: NodeLeaseWatch;
  readonly #ownLeaseWatch: boolean;
  #unsubscribe: (() => void) | undefined;
  readonly #caches: SyncedCache[] = [];
  #lbs!: SyncedCache;
  #nodes: SyncedCache | undefined;
  /**
   * Placements written and not yet seen back in the cache: the next run builds on them. Forgotten once seen, or
   * after a while (someone else wrote that status since: the cache is the truth again).
   */
  readonly #written = new Map<LbKey, { nodes: string[]; at: number }>();
  readonly #reported = new Map<LbKey, string>();
  #breakerOpen = false;
  /** Nodes whose death a read of their Lease from the API server confirmed (forgotten when alive again). */
  readonly #confirmedDead = new Set<string>();
  #steppedDown = false;
  /** When this scheduler first saw each node's drain label (a new leader starts the wait for the switch again). */
  readonly #drainingSince = new Map<string, number>();
  #switchTimer: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  /** Runs that wrote something, and placements written (tests, logs). */
  runs = 0;
  writes = 0;

  constructor(opts: SchedulerOptions) {
    this.#opts = opts;
    this.#logger = opts.logger.child({ component: 'scheduler' });
    this.#custom =
      opts.writeTimeoutMs === undefined
        ? opts.kubeConfig.makeApiClient(CustomObjectsApi)
        : makeApiClientWithTimeout(opts.kubeConfig, CustomObjectsApi, opts.writeTimeoutMs);
    this.#ownLeaseWatch = opts.leaseWatch === undefined;
    this.#leaseWatch = opts.leaseWatch ?? new NodeLeaseWatch(opts.kubeConfig, opts.leaseNamespace, opts.logger);
  }

  /** Lists everything once (nothing is placed before the caches hold what was placed before), then schedules. */
  async start(): Promise<void> {
    const kc = this.#opts.kubeConfig;
    const core = kc.makeApiClient(CoreV1Api);
    const ns = this.#opts.namespace;
    this.#unsubscribe = this.#leaseWatch.onChange(() => this.kick());
    this.#lbs = this.#cache(
      `/apis/${GROUP}/${VERSION}/${ns === undefined ? '' : `namespaces/${ns}/`}${PLURALS.LoadBalancer}`,
      () =>
        (ns === undefined
          ? this.#custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURALS.LoadBalancer })
          : this.#custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURALS.LoadBalancer })) as never,
    );
    // Node labels are optional: without Nodes (an API server that serves none, or RBAC that grants none) every
    // member is a node without labels, and only a nodeSelector keeps a load balancer from it.
    try {
      await core.listNode({ limit: 1 });
      this.#nodes = this.#cache('/api/v1/nodes', () => core.listNode() as never);
    } catch (err) {
      this.#logger.warn({ err: describeApiError(err) }, 'cannot list Nodes: node selectors and the drain label are not seen');
    }
    await Promise.all([...this.#caches.map((c) => c.start()), ...(this.#ownLeaseWatch ? [this.#leaseWatch.start()] : [])]);
    this.kick();
  }

  /**
   * No longer leading: the run in progress ends (its writes check leading() first) and nothing more is written,
   * but the caches stay up, so that leading again (a Lease lost under load and taken back) schedules at once
   * instead of listing everything first.
   */
  async pause(): Promise<void> {
    clearTimeout(this.#timer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#switchTimer);
    await this.#running;
  }

  /** Leading again after pause(): what this agent wrote before may have been overwritten since; schedule now. */
  resume(): void {
    this.#written.clear();
    this.#confirmedDead.clear();
    this.#steppedDown = false;
    this.kick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#switchTimer);
    this.#unsubscribe?.();
    await Promise.all([...this.#caches.map((c) => c.stop()), ...(this.#ownLeaseWatch ? [this.#leaseWatch.stop()] : [])]);
    await this.#running;
  }

  /** Something changed: schedule again soon (changes within the debounce are one run). */
  kick(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), 50);
    this.#timer.unref();
  }

  #cache(path: string, list: () => Promise<{ items: Raw[] }>): SyncedCache {
    const informer = restartingInformer(
      this.#opts.kubeConfig,
      path,
      list,
      this.#logger,
      () => this.#stopped,
      () => this.kick(),
    );
    for (const verb of ['add', 'update', 'delete'] as const) informer.on(verb, () => this.kick());
    this.#caches.push(informer);
    return informer;
  }

  #run(): void {
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#running = this.#once()
      .catch((err: unknown) => this.#logger.error({ err: String(err) }, 'scheduling failed; will retry'))
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  /** The inputs of the pure schedule, from the caches (and the placements written but not yet seen). */
  inputs(now = Date.now()): { nodes: NodeView[]; lbs: LbView[]; nextExpiry: number | undefined } {
    const members = this.#leaseWatch.observe(now);
    const nodeObjects = new Map((this.#nodes?.list() ?? []).map((n) => [n.metadata?.name ?? '', n]));
    const nodes: NodeView[] = members.map((m) => {
      const labels = nodeObjects.get(m.node) === undefined ? {} : labelsOf(nodeObjects.get(m.node)!);
      // This agent's own node is alive: it is running this. Its Lease can look expired when this process was
      // starved for longer than a Lease (its renewal and this run wake up late together).
      const alive = m.alive || (m.node === this.#opts.nodeName && this.#opts.leading());
      const draining = labels[DRAIN_LABEL] === 'true';
      if (!draining) this.#drainingSince.delete(m.node);
      else if (!this.#drainingSince.has(m.node)) this.#drainingSince.set(m.node, now);
      return { name: m.node, labels, alive, draining, ...(draining ? { drainingSince: this.#drainingSince.get(m.node)! } : {}) };
    });
    const lbs: LbView[] = [];
    for (const o of this.#lbs.list()) {
      if (o.metadata?.deletionTimestamp !== undefined) continue;
      const key = keyOf(o);
      const spec = o.spec ?? {};
      const placement = (spec.placement ?? {}) as { nodes?: string[]; nodeSelector?: Record<string, string> };
      const recorded = recordedOf(o);
      const written = this.#written.get(key);
      if (written !== undefined && (written.nodes.join(',') === recorded.join(',') || now - written.at > WRITTEN_TTL_MS)) this.#written.delete(key);
      const reported = Array.isArray(o.status?.nodes) ? (o.status.nodes as { name?: unknown; role?: unknown; ready?: unknown }[]) : [];
      const master = reported.find((n) => n.role === 'MASTER' && typeof n.name === 'string')?.name as string | undefined;
      const ready = reported.filter((n) => n.ready === true && typeof n.name === 'string').map((n) => n.name as string);
      lbs.push({
        key,
        topology: (spec.topology === 'ACTIVE_STANDBY' ? 'ACTIVE_STANDBY' : 'SINGLE') as Topology,
        ...(placement.nodes !== undefined && placement.nodes.length > 0 ? { explicit: placement.nodes } : {}),
        ...(placement.nodeSelector === undefined ? {} : { nodeSelector: placement.nodeSelector }),
        ...(labelsOf(o)[ANTI_AFFINITY_LABEL] === undefined ? {} : { antiAffinity: labelsOf(o)[ANTI_AFFINITY_LABEL]! }),
        recorded: this.#written.get(key)?.nodes ?? recorded,
        ...(master === undefined ? {} : { master }),
        ...(ready.length === 0 ? {} : { ready }),
        ...(o.status?.provisioningStatus === 'ERROR' ? { failed: true } : {}),
      });
    }
    return { nodes, lbs, nextExpiry: Membership.nextExpiry(members, now) };
  }

  /** Every cache has listed once (WaitForCacheSync): until then a missing Lease is not a dead node. */
  get synced(): boolean {
    return this.#leaseWatch.listed && this.#caches.every((c) => c.listed);
  }

  async #once(): Promise<void> {
    // Not synced: nothing is decided (a Lease list that failed would read as every node dead; each list that
    // succeeds kicks a run).
    if (!this.#opts.leading() || this.#stopped || !this.synced) return;
    let { nodes, lbs, nextExpiry } = this.inputs();
    // A node is dead only once the API server itself says so: each death is confirmed once by reading the Lease
    // there (a lagging watch showed live nodes dead while the API server was loaded: issue 17, CI of 26a78b6).
    for (const n of nodes) {
      if (n.alive && this.#confirmedDead.delete(n.name)) this.#logger.info({ node: n.name }, 'node Lease renewed again: the node is alive to the scheduler');
    }
    const unconfirmed = nodes.filter((n) => !n.alive && !this.#confirmedDead.has(n.name)).map((n) => n.name);
    if (unconfirmed.length > 0) {
      try {
        await this.#leaseWatch.confirm(unconfirmed, this.#opts.writeTimeoutMs ?? REQUEST_TIMEOUT_MS);
      } catch (err) {
        this.#logger.warn({ nodes: unconfirmed, err: describeApiError(err) }, 'cannot read the Leases of nodes that look dead; will retry');
        setTimeout(() => this.kick(), 1_000).unref();
        return;
      }
      if (!this.#opts.leading() || this.#stopped) return;
      ({ nodes, lbs, nextExpiry } = this.inputs());
      for (const n of nodes) {
        if (n.alive || !unconfirmed.includes(n.name)) continue;
        this.#confirmedDead.add(n.name);
        // Said once per death (forgotten when the node renews again), with how long ago its Lease ran out.
        const member = this.#leaseWatch.observe().find((m) => m.node === n.name);
        this.#logger.warn(
          { node: n.name, ...(member === undefined ? {} : { expiredMsAgo: Date.now() - member.expiresAt }) },
          'node Lease expired (read from the API server): the node is dead to the scheduler',
        );
      }
      // Dead meanwhile, not confirmed yet: the next run reads it.
      if (nodes.some((n) => !n.alive && !this.#confirmedDead.has(n.name))) this.kick();
      nodes = nodes.map((n) => (n.alive || this.#confirmedDead.has(n.name) ? n : { ...n, alive: true }));
    }
    if (this.#ownNodeDraining(nodes)) return;
    clearTimeout(this.#expiryTimer);
    if (nextExpiry !== undefined) {
      // A Lease running out changes nothing in the caches: wake up when it does.
      this.#expiryTimer = setTimeout(() => this.kick(), Math.max(0, nextExpiry - Date.now()) + 10);
      this.#expiryTimer.unref();
    }
    const result = schedule(nodes, lbs, {
      failoverThreshold: this.#opts.failoverThreshold,
      ...(this.#opts.maxDrainMoves === undefined ? {} : { maxDrainMoves: this.#opts.maxDrainMoves }),
      switchFirstMs: this.#opts.switchFirstMs ?? DRAIN_SWITCH_FIRST_MS,
      now: Date.now(),
    });
    clearTimeout(this.#switchTimer);
    if (result.switchDeadline !== undefined) {
      // A slot held for its MASTER's switch: nothing in the caches changes when its wait runs out.
      this.#switchTimer = setTimeout(() => this.kick(), Math.max(0, result.switchDeadline - Date.now()) + 10);
      this.#switchTimer.unref();
    }
    this.#report(result);
    await this.#releaseFinalizers(new Set(nodes.filter((n) => n.alive).map((n) => n.name)));
    if (result.changes.length === 0) return;
    this.runs++;
    this.#logger.info(
      { changes: result.changes.length, byReason: countBy(result.changes.map((c) => c.reason)), alive: nodes.filter((n) => n.alive).map((n) => n.name) },
      'placing load balancers',
    );
    const queue = [...result.changes];
    const worker = async (): Promise<void> => {
      for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
        if (!this.#opts.leading() || this.#stopped) return;
        await this.#write(c.key, c.to, c.from, c.reason);
      }
    };
    await Promise.all(Array.from({ length: this.#opts.concurrency ?? 16 }, worker));
  }

  /**
   * This agent's node is labelled for drain and another live node is not: it hands scheduling over before it
   * writes the drain's placements (the node that leaves is the busiest one while they are carried out).
   */
  #ownNodeDraining(nodes: readonly NodeView[]): boolean {
    const { nodeName, onOwnNodeDraining } = this.#opts;
    if (nodeName === undefined || onOwnNodeDraining === undefined) return false;
    const own = nodes.find((n) => n.name === nodeName);
    if (own?.draining !== true || !nodes.some((n) => n.name !== nodeName && n.alive && !n.draining)) return false;
    if (!this.#steppedDown) {
      this.#steppedDown = true;
      this.#logger.info({ node: nodeName }, 'this node is being drained: another agent schedules');
      onOwnNodeDraining();
    }
    return true;
  }

  async #write(key: LbKey, nodes: string[], from: readonly string[], reason: string): Promise<void> {
    const [namespace = 'default', name = ''] = key.split('/');
    try {
      await this.#custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace, plural: PLURALS.LoadBalancer, name, body: { status: { placement: { nodes } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.#written.set(key, { nodes, at: Date.now() });
      this.writes++;
      const moved = from.length > 0;
      this.#opts.emit({
        regarding: { apiVersion: `${GROUP}/${VERSION}`, kind: 'LoadBalancer', namespace, name },
        type: 'Normal',
        reason: moved ? 'Rescheduled' : 'Scheduled',
        note: moved ? `placed on ${nodes.join(', ')} (was ${from.join(', ')}: ${reason})` : `placed on ${nodes.join(', ')}`,
      });
    } catch (err) {
      if (statusCode(err) !== 404) this.#logger.warn({ lb: key, err: describeApiError(err) }, 'cannot record the placement; will retry');
      this.#written.delete(key);
      if (statusCode(err) !== 404) setTimeout(() => this.kick(), 1_000).unref();
    }
  }

  /** Unschedulable load balancers and the breaker, each said once when it starts (and the breaker when it ends). */
  #report(result: Schedule): void {
    const now = new Map(result.unschedulable.map((u) => [u.key, u.message]));
    for (const [key, message] of now) {
      if (this.#reported.get(key) === message) continue;
      const [namespace = 'default', name = ''] = key.split('/');
      this.#logger.warn({ lb: key }, `cannot place: ${message}`);
      this.#opts.emit({
        regarding: { apiVersion: `${GROUP}/${VERSION}`, kind: 'LoadBalancer', namespace, name },
        type: 'Warning',
        reason: 'FailedScheduling',
        note: message,
      });
    }
    this.#reported.clear();
    for (const [k, v] of now) this.#reported.set(k, v);
    const { breaker } = result;
    if (breaker.open === this.#breakerOpen) return;
    this.#breakerOpen = breaker.open;
    const regarding = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: this.#opts.leaseNamespace, name: SCHEDULER_LEASE };
    if (breaker.open) {
      const note =
        `${breaker.dead.length} of ${breaker.known} nodes are dead (${breaker.dead.join(', ')}), more than the failover threshold ` +
        `${this.#opts.failoverThreshold}: load balancers on them are not moved (${breaker.held.length} held) until enough nodes are back`;
      this.#logger.error({ dead: breaker.dead, known: breaker.known, held: breaker.held.length }, `circuit breaker open: ${note}`);
      this.#opts.emit({ regarding, type: 'Warning', reason: 'FailoverSuppressed', note });
    } else {
      this.#logger.info({ known: breaker.known }, 'circuit breaker closed: load balancers on dead nodes are placed again');
      this.#opts.emit({ regarding, type: 'Normal', reason: 'FailoverResumed', note: 'enough nodes are alive again: failover resumed' });
    }
  }

  /**
   * A LoadBalancer being deleted waits for the node that serves it to clean up and drop the finalizer; when no
   * live node serves it (never placed, or its nodes are dead), nobody would: the scheduler drops it. A dead
   * node's agent removes what it kept when it comes back (its markers name a load balancer that no longer is).
   */
  async #releaseFinalizers(alive: ReadonlySet<string>): Promise<void> {
    for (const o of this.#lbs.list()) {
      if (o.metadata?.deletionTimestamp === undefined || !(o.metadata.finalizers ?? []).includes(FINALIZER)) continue;
      const explicit = ((o.spec?.placement ?? {}) as { nodes?: string[] }).nodes ?? [];
      const placed = explicit.length > 0 ? explicit : recordedOf(o);
      if (placed.some((n) => alive.has(n)) || !this.#opts.leading()) continue;
      const namespace = o.metadata.namespace ?? 'default';
      const name = o.metadata.name ?? '';
      const finalizers = (o.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
      try {
        await this.#custom.patchNamespacedCustomObject(
          {
            group: GROUP,
            version: VERSION,
            namespace,
            plural: PLURALS.LoadBalancer,
            name,
            body: { metadata: { finalizers, resourceVersion: o.metadata.resourceVersion } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.#logger.info({ lb: `${namespace}/${name}`, placed }, 'deleted load balancer served by no live node: finalizer dropped');
      } catch (err) {
        if (statusCode(err) !== 404 && statusCode(err) !== 409)
          this.#logger.warn({ lb: `${namespace}/${name}`, err: describeApiError(err) }, 'cannot drop the finalizer');
      }
    }
  }
}

function countBy(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/**
 * An informer that starts again after an error (an API server outage, a 410 it cannot recover from), with
 * backoff, until stopped. Only a list that worked ends an outage (start() resolves even when its list failed).
 */
function restartingInformer(
  kubeConfig: KubeConfig,
  path: string,
  list: () => Promise<{ items: Raw[] }>,
  logger: Logger,
  stopped: () => boolean,
  onListed: () => void,
  selectors: { fieldSelector?: string } = {},
): SyncedCache {
  let restarts = 0;
  let everListed = false;
  const listed = async (): Promise<{ items: Raw[] }> => {
    const r = await list();
    restarts = 0;
    if (!everListed) {
      everListed = true;
      // After the informer has taken the items in (an empty list emits no add).
      setImmediate(onListed);
    }
    return r;
  };
  const informer = makeInformer<Raw>(kubeConfig, path, listed as never, selectors) as Cache;
  Object.defineProperty(informer, 'listed', { get: () => everListed });
  informer.on('error', (err: unknown) => {
    if (stopped()) return;
    restarts++;
    const delay = Math.min(10_000, 200 * 2 ** Math.min(restarts - 1, 8));
    // Info, not warn: the agent's own informers already warn of an API server outage, and the scheduler stops
    // at its renew deadline anyway; a refusal (403: RBAC) is the scheduler's alone.
    const level = statusCode(err) === 403 ? 'warn' : 'info';
    if (restarts === 1) logger[level]({ path, err: String(err), retryInMs: delay }, 'scheduler informer stopped; restarting');
    setTimeout(() => {
      if (!stopped())
        informer.start().then(
          () => (restarts = 0),
          () => undefined,
        );
    }, delay).unref();
  });
  return informer as SyncedCache;
}

/**
 * The node Leases (membership), watched by every agent from its start, leader or not. A Lease is judged on the
 * observer's own clock from the renewals it saw (membership.ts), so a scheduler that began watching only when it
 * took over waited one more node Lease before it called a silent node dead: when the node that died also held
 * the scheduler, that came on top of the scheduler Lease. Watched all along, a new leader knows at once.
 */
/** A restarting informer that a watch class owns: started and stopped for good with it. */
class InformerWatch {
  protected stopped = false;
  /** Made by the subclass's constructor. */
  protected informer!: SyncedCache;

  start(): Promise<void> {
    this.stopped = false;
    return this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }
}

export class NodeLeaseWatch extends InformerWatch {
  readonly #membership = new Membership();
  readonly #listeners = new Set<() => void>();

  readonly #kubeConfig: KubeConfig;
  readonly #namespace: string;

  constructor(kubeConfig: KubeConfig, namespace: string, logger: Logger) {
    super();
    this.#kubeConfig = kubeConfig;
    this.#namespace = namespace;
    const coord = kubeConfig.makeApiClient(CoordinationV1Api);
    this.informer = restartingInformer(
      kubeConfig,
      `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      () => coord.listNamespacedLease({ namespace }) as never,
      logger.child({ component: 'scheduler' }),
      () => this.stopped,
      () => this.#changed(),
    );
    for (const verb of ['add', 'update', 'delete'] as const) {
      this.informer.on(verb, () => {
        // Every renewal is counted from the moment it is seen here, whoever leads.
        this.observe();
        this.#changed();
      });
    }
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }

  /** The Leases have been listed once. */
  get listed(): boolean {
    return this.informer.listed;
  }

  /** Calls fn on every change of a node Lease; returns the function that stops it. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Which nodes are alive now. */
  observe(now = Date.now()): Member[] {
    return this.#membership.observe(this.informer.list().map(leaseView), now);
  }

  /**
   * Reads the Leases of nodes that look dead from the API server itself, not from the watch: a watch that lags (a
   * loaded API server sends its events late) shows no renewal while the node renews. A renewal found this way
   * counts from now. Throws when the API server does not answer (then nothing is known).
   */
  async confirm(nodes: readonly string[], timeoutMs: number): Promise<void> {
    const coord = makeApiClientWithTimeout(this.#kubeConfig, CoordinationV1Api, timeoutMs);
    await Promise.all(
      nodes.map(async (node) => {
        try {
          const lease = await coord.readNamespacedLease({ name: nodeLeaseName(node), namespace: this.#namespace });
          this.#membership.saw(leaseView(lease), Date.now());
        } catch (err) {
          // Gone: a node removed; the watch says so too.
          if (statusCode(err) !== 404) throw err;
        }
      }),
    );
  }
}

/**
 * This agent's own Node, for the drain label: a drained node gives up the MASTER role of its pairs before the
 * scheduler moves its slots (kubernetes-mode.ts). One object through a field selector, whatever the cluster's size.
 * Without Nodes (an API server that serves none, RBAC that grants none) the node is never drained here, and the
 * scheduler moves its slots as a handover at deletion after its wait (schedule.ts, switchFirstMs).
 */
export class OwnNodeWatch extends InformerWatch {
  readonly #onChange: () => void;
  #draining = false;

  constructor(kubeConfig: KubeConfig, nodeName: string, logger: Logger, onChange: () => void) {
    super();
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const fieldSelector = `metadata.name=${nodeName}`;
    this.#onChange = onChange;
    this.informer = restartingInformer(
      kubeConfig,
      '/api/v1/nodes',
      () => core.listNode({ fieldSelector }) as never,
      logger.child({ component: 'node-watch' }),
      () => this.stopped,
      () => this.#changed(),
      { fieldSelector },
    );
    for (const verb of ['add', 'update', 'delete'] as const) this.informer.on(verb, () => this.#changed());
  }

  /** Labelled nslb.dev/drain=true, as last seen. */
  get draining(): boolean {
    return this.#draining;
  }

  #changed(): void {
    const node = this.informer.list()[0];
    const draining = node !== undefined && labelsOf(node)[DRAIN_LABEL] === 'true';
    if (draining === this.#draining) return;
    this.#draining = draining;
    this.#onChange();
  }
}

function leaseView(l: { metadata?: { name?: string }; spec?: { holderIdentity?: unknown; renewTime?: unknown; leaseDurationSeconds?: unknown } }): LeaseView {
  return {
    name: l.metadata?.name ?? '',
    ...(typeof l.spec?.holderIdentity === 'string' ? { holderIdentity: l.spec.holderIdentity } : {}),
    ...(l.spec?.renewTime === undefined ? {} : { renewTime: String(l.spec.renewTime instanceof Date ? l.spec.renewTime.toISOString() : l.spec.renewTime) }),
    ...(typeof l.spec?.leaseDurationSeconds === 'number' ? { leaseDurationSeconds: l.spec.leaseDurationSeconds } : {}),
  };
}
