// `nslb run --kubernetes`: the plumbing between the engine and the API server. Informers feed snapshots to the
// controller; every status the controller publishes goes to status.json at once and to the status subresources in
// the background (rate limited, coalesced); what happens to an object becomes an Event on it. With
// --metrics-listen, /metrics is also served over HTTPS to callers the API server authorizes (metrics-server.ts).
import type { KubeConfig } from '@kubernetes/client-node';
import type { Server } from 'node:https';
import { parseLbKey } from '../desired/names.js';
import type { Runner } from '../exec/run.js';
import type { AnyObject } from '../api/v1alpha1/types.js';
import { referencedSecrets } from '../desired/secrets.js';
import type { Logger } from '../log/logger.js';
import type { ProviderAgent, ProviderAgentOptions } from '../provider/agent.js';
import { agentNamespace, LeaderElector } from '../kube/leader.js';
import { nodeLeaseRenewer } from '../kube/node-lease-thread.js';
import { SCHEDULER_LEASE } from '../api/v1alpha1/crds.js';
import type { NodeLeaseWatch, Scheduler } from '../schedule/scheduler.js';
import { SecretWatcher } from '../sources/kubernetes-secrets.js';
import { secretEvents } from '../status/secret-events.js';
import { KubernetesSource, type InvalidObject } from '../sources/kubernetes.js';
import { deletedEvent, invalidObjectEvent, problemEvent, reconcileEvents, transitionEvents, type StatusMemory } from '../status/agent-events.js';
import { ApiRateLimiter, type RateLimit } from '../status/api-rate-limit.js';
import { KubernetesEventRecorder } from '../status/kubernetes-events.js';
import { KubernetesStatusWriter } from '../status/kubernetes-writer.js';
import { reportedToApi } from '../status/pair-reporter.js';
import type { LatestStatusFile } from '../status/status-file.js';
import type { AgentMode, Engine } from './agent-mode.js';
import type { RunFlags } from './flags.js';
import { DEFAULTS } from './options.js';

export interface KubernetesModeOptions {
  kubeConfig: KubeConfig;
  /** Only this namespace; all when undefined. */
  namespace?: string;
  nodeName: string;
  rateLimit: RateLimit;
  engine: () => Engine;
  logger: Logger;
  /** status.json (in Kubernetes mode too: `nslb status` on the node works the same). */
  statusFile: LatestStatusFile;
  /** Serve Services of type LoadBalancer too (src/provider): its settings; absent: off. */
  provider?: Pick<ProviderAgentOptions, 'withoutClass' | 'members' | 'leaseSeconds'>;
  /** Membership and scheduling (DESIGN §6): the Leases' durations and the circuit breaker. */
  placement: PlacementOptions;
  /** --metrics-listen: /metrics over HTTPS; `run` makes its certificate, `stateDir` keeps it. */
  secureMetrics?: { listen: string; stateDir: string; run: Runner };
}

export interface PlacementOptions {
  /** The node Lease nslb-node-<node>: its duration, and the one its last renewal asks for on a clean stop. */
  nodeLeaseSeconds: number;
  restartGraceSeconds: number;
  /** The Lease nslb-scheduler. */
  schedulerLeaseSeconds: number;
  /** The circuit breaker: the share of known nodes that may die at once and still be failed over. */
  failoverThreshold: number;
  /** A drain hands over at most this many load balancers at once (schedule.ts, maxDrainMoves). */
  drainConcurrency: number;
}

export interface KubernetesMode extends AgentMode {
  readonly statusWriter: KubernetesStatusWriter;
  readonly events: KubernetesEventRecorder;
}

// @kubernetes/client-node is loaded in Kubernetes mode only: in file mode it would cost about a second of
// start-up and tens of MB of memory for nothing. Its API clients read responses through kube/http.ts.
export async function loadKubeConfig(kubeconfig: string | undefined): Promise<KubeConfig> {
  const { AgentKubeConfig } = await import('../kube/http.js');
  const kc = new AgentKubeConfig();
  if (kubeconfig !== undefined) kc.loadFromFile(kubeconfig);
  else kc.loadFromCluster();
  return kc;
}

export function kubernetesMode(opts: KubernetesModeOptions): KubernetesMode {
  const { engine, logger, nodeName } = opts;
  const limiter = new ApiRateLimiter(opts.rateLimit);
  let invalid: InvalidObject[] = [];
  let reported = new Set<string>();
  // Secrets named by Listeners and Pools (tls.secretName, …): their contents are the snapshot's TLS materials; a
  // change of one builds the snapshot again, and is an Event on each object naming it.
  let objects: AnyObject[] = [];
  let placements: ReturnType<KubernetesSource['placements']> = new Map();
  const secrets = new SecretWatcher({
    kubeConfig: opts.kubeConfig,
    logger,
    onChange: (change) => {
      void source.refresh();
      for (const e of secretEvents(change, objects, secrets.materials())) {
        events.emit({
          regarding: { kind: e.kind, namespace: e.namespace, name: e.name },
          type: e.type,
          reason: e.reason,
          action: 'ReadSecret',
          note: e.message,
        });
      }
    },
  });
  const source: KubernetesSource = new KubernetesSource({
    kubeConfig: opts.kubeConfig,
    ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
    logger,
    onSnapshot: (s) => {
      invalid = s.invalid;
      objects = s.objects;
      // An object the schema refuses is reported once when it becomes invalid (or its message changes).
      const now = new Set<string>();
      for (const o of s.invalid) {
        const key = `${o.kind}/${o.namespace}/${o.name}\0${o.message}`;
        now.add(key);
        if (!reported.has(key)) events.emit(invalidObjectEvent(o));
      }
      reported = now;
      secrets.want(referencedSecrets(s.objects));
      // Until every named Secret has been listed once it is neither there nor missing: wait (the listing calls
      // back), rather than report a Listener ERROR that is not true.
      if (!secrets.synced) return;
      // Served here: what spec.placement.nodes or the scheduler (status.placement.nodes) places on this node.
      placements = source.placements();
      const draining = ownNode.draining;
      engine().setSnapshot(s.objects, [], secrets.materials(), {
        served: (key) => servesHere(placements.get(key), nodeName),
        scheduled: scheduledOf(placements),
        leaveMaster: (key) => leavesMaster(placements.get(key), nodeName, draining),
      });
      // A LoadBalancer being deleted whose node side is already gone still needs its finalizer dropped.
      for (const d of source.deleting()) engine().enqueue(`${d.namespace}/${d.name}`);
      source.ensureFinalizers().catch((err: unknown) => logger.warn({ err: String(err) }, 'cannot add finalizers; will retry'));
    },
  });
  const statusWriter = new KubernetesStatusWriter(opts.kubeConfig, source, { limiter, logger });
  const events = new KubernetesEventRecorder(opts.kubeConfig, source, { limiter, logger, node: nodeName });
  const memory: StatusMemory = new Map();
  let provider: ProviderAgent | undefined;
  let secureMetrics: Server | undefined;
  const leaseNamespace = agentNamespace(opts.kubeConfig);
  // Renewed from a thread of its own where built (node-lease-thread.ts): a busy main thread is not a dead node.
  const nodeLease = nodeLeaseRenewer({
    kubeConfig: opts.kubeConfig,
    namespace: leaseNamespace,
    node: nodeName,
    leaseSeconds: opts.placement.nodeLeaseSeconds,
    restartGraceSeconds: opts.placement.restartGraceSeconds,
    logger,
  });
  // Every agent is a candidate; the one holding nslb-scheduler places load balancers (schedule/scheduler.ts).
  // Every agent watches the node Leases from its start, so that a new leader knows who died already.
  let leaseWatch: NodeLeaseWatch | undefined;
  // Labelled for drain: this node's pairs hand their MASTER role to their peers (the snapshot is built again).
  let ownNode: { draining: boolean; stop(): Promise<void> } = { draining: false, stop: async () => undefined };
  // Made at the first leadership and kept (paused while not leading): its caches stay warm for the next one.
  let scheduler: Scheduler | undefined;
  let scheduling = false;
  const elector = new LeaderElector({
    kubeConfig: opts.kubeConfig,
    role: 'scheduler',
    namespace: leaseNamespace,
    name: SCHEDULER_LEASE,
    identity: nodeName,
    leaseSeconds: opts.placement.schedulerLeaseSeconds,
    logger,
    onStartedLeading: async () => {
      scheduling = true;
      if (scheduler !== undefined) {
        scheduler.resume();
        return;
      }
      const { Scheduler } = await import('../schedule/scheduler.js');
      const s: Scheduler = new Scheduler({
        kubeConfig: opts.kubeConfig,
        ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
        leaseNamespace,
        failoverThreshold: opts.placement.failoverThreshold,
        maxDrainMoves: opts.placement.drainConcurrency,
        writeTimeoutMs: elector.renewDeadlineMs,
        logger,
        ...(leaseWatch === undefined ? {} : { leaseWatch }),
        nodeName,
        // Not awaited: stepping down pauses this scheduler, which waits for the run that calls this.
        onOwnNodeDraining: () => void elector.stepDown(),
        leading: (): boolean => elector.leading && scheduling && scheduler === s,
        emit: (e) =>
          events.emit({
            // A LoadBalancer by kind only: the recorder adds its uid, which `kubectl describe` selects Events by.
            regarding: e.regarding.kind === 'LoadBalancer' ? { kind: 'LoadBalancer', namespace: e.regarding.namespace, name: e.regarding.name } : e.regarding,
            type: e.type,
            reason: e.reason,
            action: 'Schedule',
            note: e.note,
          }),
      });
      scheduler = s;
      // Not awaited: start() lists everything first, and the Lease must be renewed meanwhile.
      void s.start().catch((err: unknown) => logger.error({ err: String(err) }, 'scheduler: cannot start'));
    },
    onStoppedLeading: async () => {
      scheduling = false;
      await scheduler?.pause();
    },
  });
  return {
    describe: { kubernetes: opts.namespace ?? 'all namespaces' },
    statusWriter,
    events,
    async addMetrics(metrics) {
      metrics.addKubernetes({
        statusWrites: () => statusWriter.writes(),
        statusQueue: () => statusWriter.queue(),
        events: () => events.stats(),
      });
      if (opts.secureMetrics === undefined) return;
      const { serveSecureMetrics } = await import('./metrics-server.js');
      secureMetrics = await serveSecureMetrics({ ...opts.secureMetrics, kubeConfig: opts.kubeConfig, logger, render: () => metrics.render() });
    },
    watchedPaths: () => undefined,
    async start() {
      // A member before anything is served: the scheduler places load balancers on live nodes only.
      await nodeLease.start();
      const { NodeLeaseWatch, OwnNodeWatch } = await import('../schedule/scheduler.js');
      leaseWatch = new NodeLeaseWatch(opts.kubeConfig, leaseNamespace, logger);
      await leaseWatch.start();
      const nodeWatch = new OwnNodeWatch(opts.kubeConfig, nodeName, logger, () => {
        logger.info(
          { node: nodeName, draining: nodeWatch.draining },
          nodeWatch.draining ? 'this node is drained: its pairs hand the MASTER role to their peers' : 'this node is no longer drained',
        );
        source.refresh();
      });
      ownNode = nodeWatch;
      await nodeWatch.start();
      elector.start();
      await source.start();
      if (opts.provider === undefined) return;
      const { startProviderAgent } = await import('../provider/agent.js');
      provider = startProviderAgent({
        kubeConfig: opts.kubeConfig,
        ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
        nodeName,
        ...opts.provider,
        logger,
        // The provider's Events are about Services.
        events: {
          emit: (ref, type, reason, message) =>
            events.emit({
              regarding: {
                apiVersion: ref.apiVersion,
                kind: ref.kind,
                namespace: ref.namespace,
                name: ref.name,
                ...(ref.uid === undefined ? {} : { uid: ref.uid }),
              },
              type,
              reason,
              action: 'ProvideLoadBalancer',
              note: message,
            }),
        },
      });
    },
    async refresh() {
      await source.refresh();
      provider?.resync();
    },
    async stop() {
      secureMetrics?.close();
      await elector.stop();
      await scheduler?.stop();
      await leaseWatch?.stop();
      await ownNode.stop();
      await nodeLease.stop();
      await provider?.stop();
      await secrets.stop();
      await source.stop();
      await Promise.all([statusWriter.stop(), events.stop(), opts.statusFile.settled()]);
    },
    async publish(file) {
      // status.json is written in Kubernetes mode too: `nslb status` on the node works the same.
      opts.statusFile.write(file);
      // A pair's status is written by the node that holds its VIP (status/pair-reporter.ts); status.json keeps this
      // node's own view of everything.
      const reported = reportedToApi(file, nodeName);
      statusWriter.write(reported, invalid);
      // Health transitions are told by the same node that writes the status: both nodes of a pair see a member go
      // down, one Event is enough.
      for (const e of transitionEvents(memory, reported)) events.emit(e);
    },
    async onRemoved(key) {
      const { namespace, name } = parseLbKey(key);
      // Placed elsewhere now (it moved, or was never here): the node is clean, the object lives on.
      if (!source.deleting().some((d) => d.namespace === namespace && d.name === name)) return;
      // Being deleted: the node that serves it lets it go (any node, when none is named).
      const placed = placements.get(key)?.nodes ?? [];
      if (placed.length > 0 && !placed.includes(nodeName)) return;
      events.emit(deletedEvent(key, nodeName));
      await source.removeFinalizer(namespace, name);
    },
    onEvent(e) {
      for (const event of reconcileEvents(e, nodeName)) events.emit(event);
    },
    onProblem(p) {
      events.emit(problemEvent(p));
    },
    setRateLimit(limit) {
      limiter.set(limit);
    },
  };
}

/**
 * Whether this node serves a load balancer placed there: either node of an ACTIVE_STANDBY pair (keepalived
 * decides which one holds the VIP; the pair's VRRP side is built from the placement in force and spec.vrrp).
 */
export function servesHere(placement: { nodes: readonly string[]; topology: 'SINGLE' | 'ACTIVE_STANDBY' } | undefined, nodeName: string): boolean {
  return placement?.nodes.includes(nodeName) ?? false;
}

/**
 * Whether this node gives up the MASTER role of a load balancer: its Node is drained, the load balancer is a pair
 * placed here (by the scheduler or spec.placement.nodes), and the other node of the pair is reported ready, so that
 * the VIP has somewhere to go (as `nslb drain` refuses a peer that is not). The scheduler moves this node's slot
 * once the peer reports itself MASTER (schedule.ts).
 */
export function leavesMaster(
  placement: { nodes: readonly string[]; topology: 'SINGLE' | 'ACTIVE_STANDBY'; ready?: readonly string[] } | undefined,
  nodeName: string,
  draining: boolean,
): boolean {
  if (!draining || placement?.topology !== 'ACTIVE_STANDBY' || !placement.nodes.includes(nodeName)) return false;
  return placement.nodes.some((n) => n !== nodeName && (placement.ready ?? []).includes(n));
}

/**
 * The scheduler's placements (status.placement.nodes) of the load balancers without spec.placement.nodes: the
 * desired model builds a scheduler-placed pair's VRRP side from them (slot i owns spec.vrrp.addresses[i]).
 */
export function scheduledOf(placements: ReadonlyMap<string, { nodes: readonly string[]; explicit?: boolean }>): Map<string, readonly string[]> {
  const scheduled = new Map<string, readonly string[]>();
  for (const [key, p] of placements) if (p.explicit !== true && p.nodes.length > 0) scheduled.set(key, p.nodes);
  return scheduled;
}

/** Kubernetes mode as the flags of `nslb run --kubernetes` set it up. */
export async function kubernetesModeFor(
  flags: RunFlags,
  wiring: { engine: () => Engine; statusFile: LatestStatusFile; run: Runner; logger: Logger },
): Promise<KubernetesMode> {
  return kubernetesMode({
    kubeConfig: await loadKubeConfig(flags.kubeconfig),
    ...(flags.namespace === undefined ? {} : { namespace: flags.namespace }),
    nodeName: flags.nodeName,
    rateLimit: { qps: flags.kubeApiQps, burst: flags.kubeApiBurst },
    placement: {
      nodeLeaseSeconds: flags.nodeLease ?? 6,
      restartGraceSeconds: flags.restartGrace ?? 30,
      schedulerLeaseSeconds: flags.schedulerLease ?? 10,
      failoverThreshold: flags.failoverThreshold ?? 0.5,
      drainConcurrency: flags.drainConcurrency ?? DEFAULTS.drainConcurrency,
    },
    engine: wiring.engine,
    logger: wiring.logger,
    statusFile: wiring.statusFile,
    ...(flags.serviceProvider === true
      ? {
          provider: {
            withoutClass: flags.servicesWithoutClass === true,
            members: flags.serviceMembers === 'endpoints' ? 'Endpoints' : 'Nodes',
            leaseSeconds: flags.providerLease ?? 15,
          },
        }
      : {}),
    ...(flags.metricsListen === undefined ? {} : { secureMetrics: { listen: flags.metricsListen, stateDir: flags.stateDir, run: wiring.run } }),
  });
}
