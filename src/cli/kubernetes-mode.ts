// `nslb run --kubernetes`: the plumbing between the engine and the API server. Informers feed snapshots to the
// Manager; every status the Manager publishes goes to status.json at once and to the status subresources in the
// background (rate limited, coalesced); what happens to an object becomes an Event on it.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Manager, ManagerOptions } from '../controller/manager.js';
import type { ObjectProblem } from '../desired/build.js';
import { parseLbKey } from '../desired/names.js';
import type { AnyObject } from '../api/v1alpha1/types.js';
import { referencedSecrets } from '../desired/secrets.js';
import type { Logger } from '../log/logger.js';
import type { ProviderAgent, ProviderAgentOptions } from '../provider/agent.js';
import { SecretWatcher } from '../sources/kubernetes-secrets.js';
import { secretEvents } from '../status/secret-events.js';
import type { AgentMetrics } from '../metrics/metrics.js';
import { KubernetesSource, type InvalidObject } from '../sources/kubernetes.js';
import { deletedEvent, invalidObjectEvent, problemEvent, reconcileEvents, transitionEvents, type StatusMemory } from '../status/agent-events.js';
import { ApiRateLimiter, type RateLimit } from '../status/api-rate-limit.js';
import { KubernetesEventRecorder } from '../status/kubernetes-events.js';
import { KubernetesStatusWriter } from '../status/kubernetes-writer.js';
import type { StatusFile, StatusFileWriter } from '../status/status-file.js';

export interface KubernetesModeOptions {
  kubeConfig: KubeConfig;
  /** Only this namespace; all when undefined. */
  namespace?: string;
  nodeName: string;
  rateLimit: RateLimit;
  manager: Manager;
  logger: Logger;
  metrics: AgentMetrics;
  fileWriter: StatusFileWriter;
  /** Serve Services of type LoadBalancer too (src/provider): its settings; absent: off. */
  provider?: Pick<ProviderAgentOptions, 'withoutClass' | 'members' | 'leaseSeconds'>;
}

export interface KubernetesMode {
  start(): Promise<void>;
  refresh(): Promise<void>;
  /** Stops the informers, then gives the writes still queued a few seconds. */
  stop(): Promise<void>;
  /** The Manager's publish sink: status.json now, the API server in the background. */
  publish(file: StatusFile): Promise<void>;
  onRemoved(key: string): Promise<void>;
  onEvent: NonNullable<ManagerOptions['onEvent']>;
  onProblem(p: ObjectProblem): void;
  /** New --kube-api-qps / --kube-api-burst (SIGHUP). */
  setRateLimit(limit: RateLimit): void;
  readonly statusWriter: KubernetesStatusWriter;
  readonly events: KubernetesEventRecorder;
}

export function kubernetesMode(opts: KubernetesModeOptions): KubernetesMode {
  const { manager, logger, nodeName } = opts;
  const limiter = new ApiRateLimiter(opts.rateLimit);
  let invalid: InvalidObject[] = [];
  let reported = new Set<string>();
  // Secrets named by Listeners and Pools (tls.secretName, …): their contents are the snapshot's TLS materials; a
  // change of one builds the snapshot again, and is an Event on each object naming it.
  let objects: AnyObject[] = [];
  const secrets = new SecretWatcher({
    kubeConfig: opts.kubeConfig,
    logger,
    onChange: (change) => {
      void source.refresh();
      for (const e of secretEvents(change, objects, secrets.materials())) {
        events.emit({ regarding: { kind: e.kind, namespace: e.namespace, name: e.name }, type: e.type, reason: e.reason, action: 'ReadSecret', note: e.message });
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
      manager.setSnapshot(s.objects, [], secrets.materials());
      // A LoadBalancer being deleted whose node side is already gone still needs its finalizer dropped.
      for (const d of source.deleting()) manager.enqueue(`${d.namespace}/${d.name}`);
      source.ensureFinalizers().catch((err: unknown) => logger.warn({ err: String(err) }, 'cannot add finalizers; will retry'));
    },
  });
  const statusWriter = new KubernetesStatusWriter(opts.kubeConfig, source, { limiter, logger });
  const events = new KubernetesEventRecorder(opts.kubeConfig, source, { limiter, logger, node: nodeName });
  const memory: StatusMemory = new Map();
  // status.json, newest only and never in the publish's way: while the node is busy (hundreds of reconciles
  // queueing their own file work in libuv's pool) one write can take half a second, and the Manager spaces its
  // publishes by ten times what one took, which would hold the API server's Ready statuses back by seconds.
  let fileWriting: Promise<void> | undefined;
  let nextFile: StatusFile | undefined;
  const writeFileLatest = (file: StatusFile): void => {
    nextFile = file;
    fileWriting ??= (async () => {
      while (nextFile !== undefined) {
        const f = nextFile;
        nextFile = undefined;
        await opts.fileWriter.write(f).catch((err: unknown) => logger.error({ err }, 'cannot write status.json'));
      }
      fileWriting = undefined;
    })();
  };
  opts.metrics.addKubernetes({
    statusWrites: () => statusWriter.writes(),
    statusQueue: () => statusWriter.queue(),
    events: () => events.stats(),
  });

  let provider: ProviderAgent | undefined;
  return {
    statusWriter,
    events,
    async start() {
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
            events.emit({ regarding: { apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name, ...(ref.uid === undefined ? {} : { uid: ref.uid }) }, type, reason, action: 'ProvideLoadBalancer', note: message }),
        },
      });
    },
    async refresh() {
      await source.refresh();
      provider?.resync();
    },
    async stop() {
      await provider?.stop();
      await secrets.stop();
      await source.stop();
      await Promise.all([statusWriter.stop(), events.stop(), fileWriting]);
    },
    async publish(file) {
      // status.json is written in Kubernetes mode too: `nslb status` on the node works the same.
      writeFileLatest(file);
      statusWriter.write(file, invalid);
      for (const e of transitionEvents(memory, file)) events.emit(e);
    },
    async onRemoved(key) {
      events.emit(deletedEvent(key, nodeName));
      const { namespace, name } = parseLbKey(key);
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
