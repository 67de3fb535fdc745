// The provider's view of the cluster: one informer (list + watch) per kind it reads, each restarted with
// backoff when it stops on an error (client-node relists by itself after 410 Gone). Events only say which
// Service to look at again; the reconcile reads these caches.
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type Informer, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { makeInformer } from '../kube/informer.js';
import { ADDRESS_POOL_PLURAL } from '../api/v1alpha1/addresspool.js';
import type { Kind } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import { GROUP, PLURALS, VERSION } from '../api/v1alpha1/crds.js';
import type { EndpointSlice, Node, Service } from './kube.js';
import type { RawPool } from './ledger.js';
import { SERVICE_LABEL } from './names.js';
import type { ExistingObject } from './writer.js';

type Cacheable = KubernetesObject;
type ListFn = () => Promise<{ items: Cacheable[]; metadata?: { resourceVersion?: string } }>;
type CachingInformer = Informer<Cacheable> & { list(namespace?: string): readonly Cacheable[]; get(name: string, namespace?: string): Cacheable | undefined };

/** One informer and its cache, with the restart-on-error the agent's own source does. */
export class Cache<T> {
  readonly #informer: CachingInformer;
  readonly #what: string;
  readonly #logger: Logger;
  #restarts = 0;
  #stopped = false;
  #listed = false;

  constructor(
    kc: KubeConfig,
    what: string,
    path: string,
    list: ListFn,
    logger: Logger,
    onChange: (o: T, verb: 'add' | 'update' | 'delete') => void,
    labelSelector?: string,
  ) {
    this.#what = what;
    this.#logger = logger;
    const listed: ListFn = async () => {
      const r = await list();
      this.#restarts = 0;
      this.#listed = true;
      return r;
    };
    this.#informer = makeInformer<Cacheable>(kc, path, listed as never, labelSelector === undefined ? {} : { labelSelector }) as unknown as CachingInformer;
    for (const verb of ['add', 'update', 'delete'] as const) this.#informer.on(verb, (o) => onChange(o as T, verb));
    this.#informer.on('error', (err: unknown) => {
      if (this.#stopped) return;
      this.#restarts++;
      const delay = Math.min(30_000, 200 * 2 ** Math.min(this.#restarts - 1, 8));
      this.#logger.warn({ informer: this.#what, err: String(err), retryInMs: delay }, 'provider informer stopped; restarting');
      setTimeout(() => {
        if (!this.#stopped) this.#informer.start().catch(() => undefined);
      }, delay).unref();
    });
  }

  /** start() resolves even when the first list failed (the informer reports it and we retry): this does not. */
  get listed(): boolean {
    return this.#listed;
  }

  start(): Promise<void> {
    return this.#informer.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#informer.stop();
  }

  list(namespace?: string): T[] {
    return this.#informer.list(namespace) as unknown as T[];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#informer.get(name, namespace) as T | undefined;
  }
}

/** The kinds the provider makes for a Service; LoadBalancers are watched whole (their VIPs are taken). */
export const MADE_KINDS: readonly Kind[] = ['LoadBalancer', 'Listener', 'Pool', 'Member', 'HealthMonitor'];

export interface ProviderCaches {
  services: Cache<Service>;
  slices: Cache<EndpointSlice>;
  nodes: Cache<Node>;
  pools: Cache<RawPool>;
  /** Every LoadBalancer (the VIPs of users' own ones are taken too); the other kinds: ours only. */
  made: Map<Kind, Cache<ExistingObject>>;
}

export type ProviderEvent =
  | { kind: 'Service'; object: Service }
  | { kind: 'EndpointSlice'; object: EndpointSlice }
  | { kind: 'Node'; object: Node }
  | { kind: 'AddressPool'; object: RawPool }
  | { kind: Kind; object: ExistingObject };

export function makeCaches(kc: KubeConfig, namespace: string | undefined, logger: Logger, onChange: (e: ProviderEvent) => void): ProviderCaches {
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const nsPath = namespace === undefined ? '' : `/namespaces/${namespace}`;
  const services = new Cache<Service>(
    kc,
    'services',
    `/api/v1${nsPath}/services`,
    async () => (namespace === undefined ? core.listServiceForAllNamespaces() : core.listNamespacedService({ namespace })) as never,
    logger,
    (object) => onChange({ kind: 'Service', object }),
  );
  const slices = new Cache<EndpointSlice>(
    kc,
    'endpointslices',
    `/apis/discovery.k8s.io/v1${nsPath}/endpointslices`,
    async () => (namespace === undefined ? discovery.listEndpointSliceForAllNamespaces() : discovery.listNamespacedEndpointSlice({ namespace })) as never,
    logger,
    (object) => onChange({ kind: 'EndpointSlice', object }),
  );
  const nodes = new Cache<Node>(
    kc,
    'nodes',
    '/api/v1/nodes',
    async () => (await core.listNode()) as never,
    logger,
    (object) => onChange({ kind: 'Node', object }),
  );
  const pools = new Cache<RawPool>(
    kc,
    'addresspools',
    `/apis/${GROUP}/${VERSION}/${ADDRESS_POOL_PLURAL}`,
    async () => (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: ADDRESS_POOL_PLURAL })) as never,
    logger,
    (object) => onChange({ kind: 'AddressPool', object }),
  );
  const made = new Map<Kind, Cache<ExistingObject>>();
  for (const kind of MADE_KINDS) {
    const plural = PLURALS[kind];
    // Every LoadBalancer, in every namespace: a VIP is taken whoever wrote it, and a Service in one
    // namespace may not take an address a LoadBalancer in another serves.
    const selector = kind === 'LoadBalancer' ? undefined : SERVICE_LABEL;
    const scoped = kind === 'LoadBalancer' ? undefined : namespace;
    const path = `/apis/${GROUP}/${VERSION}${scoped === undefined ? '' : `/namespaces/${scoped}`}/${plural}`;
    const list = async () =>
      (scoped === undefined
        ? await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural, ...(selector === undefined ? {} : { labelSelector: selector }) })
        : await custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: scoped,
            plural,
            ...(selector === undefined ? {} : { labelSelector: selector }),
          })) as never;
    made.set(kind, new Cache<ExistingObject>(kc, plural, path, list, logger, (object) => onChange({ kind, object }), selector));
  }
  return { services, slices, nodes, pools, made };
}

export async function startCaches(c: ProviderCaches): Promise<void> {
  await Promise.all([c.services.start(), c.slices.start(), c.nodes.start(), c.pools.start(), ...[...c.made.values()].map((m) => m.start())]);
}

/** Every cache has listed once: before that an empty cache means "not known yet", not "none". */
export function cachesListed(c: ProviderCaches): boolean {
  return c.services.listed && c.slices.listed && c.nodes.listed && c.pools.listed && [...c.made.values()].every((m) => m.listed);
}

export async function stopCaches(c: ProviderCaches): Promise<void> {
  await Promise.all([c.services.stop(), c.slices.stop(), c.nodes.stop(), c.pools.stop(), ...[...c.made.values()].map((m) => m.stop())]);
}
