// Kubernetes mode's source: one informer (list + watch) per nslb kind, cluster-wide or in one namespace.
// Events only say "something changed"; after a short debounce the informers' caches become one snapshot, the
// same shape file mode produces, so the engine does not know where objects come from.
// No snapshot before every kind has been listed once (controller-runtime's WaitForCacheSync): a cache not listed
// yet is not "no objects". The engine would otherwise remove what the node serves (an agent started while the API
// server is unreachable, or whose LoadBalancer list failed), and report every Listener, Pool and Member of the
// cluster as naming a load balancer that does not exist (the other lists answer first).
// LoadBalancers carry a finalizer so that deleting one cleans the node before the object goes.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type Informer, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { AnyObject, Kind } from '../api/v1alpha1/types.js';
import { API_VERSION, KINDS } from '../api/v1alpha1/types.js';
import { FINALIZER, GROUP, PLURALS, VERSION } from '../api/v1alpha1/crds.js';
import { validateObject } from '../api/v1alpha1/validate.js';
import { statusCode } from '../kube/errors.js';
import { makeInformer } from '../kube/informer.js';
import type { Logger } from '../log/logger.js';

/** An object the API server holds that our schema refuses (the CRD schema is looser in places). */
export interface InvalidObject {
  kind: Kind;
  namespace: string;
  name: string;
  message: string;
}

/** Where a LoadBalancer is placed, and which of its nodes status.nodes reports ready. */
export interface Placement {
  nodes: string[];
  topology: 'SINGLE' | 'ACTIVE_STANDBY';
  explicit: boolean;
  ready: string[];
}

export interface KubernetesSnapshot {
  objects: AnyObject[];
  invalid: InvalidObject[];
}

type RawObject = KubernetesObject & { spec?: unknown; status?: unknown; metadata?: KubernetesObject['metadata'] & { deletionTimestamp?: unknown } };

/** status.placement.nodes of a LoadBalancer as the informer holds it. */
function placedOn(o: RawObject): string[] {
  const nodes = ((o.status ?? {}) as { placement?: { nodes?: unknown } }).placement?.nodes;
  return Array.isArray(nodes) ? nodes.filter((n): n is string => typeof n === 'string') : [];
}

/** The nodes status.nodes of a LoadBalancer reports ready (each node writes its own entry). */
function readyOn(o: RawObject): string[] {
  const nodes = ((o.status ?? {}) as { nodes?: unknown }).nodes;
  if (!Array.isArray(nodes)) return [];
  return (nodes as { name?: unknown; ready?: unknown }[]).filter((n) => n.ready === true && typeof n.name === 'string').map((n) => n.name as string);
}

/** An informer restarted this long ago without an error since is taken as running. */
const HEALTHY_AFTER_MS = 1_000;

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  /** Only this namespace; all namespaces when undefined. */
  namespace?: string;
  logger: Logger;
  debounceMs?: number;
  onSnapshot: (s: KubernetesSnapshot) => void;
}

export class KubernetesSource {
  readonly #opts: KubernetesSourceOptions;
  readonly #api: CustomObjectsApi;
  readonly #informers = new Map<
    Kind,
    Informer<RawObject> & { list(namespace?: string): RawObject[]; get(name: string, namespace?: string): RawObject | undefined }
  >();
  readonly #restarts = new Map<Kind, number>();
  readonly #failedAt = new Map<Kind, number>();
  /** What the engine reads of each object (all but status), to tell a status-only update from a change. */
  readonly #seen = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The pass of ensureFinalizers() in flight, and whether a call came during it. */
  #finalizing: Promise<void> | undefined;
  #finalizeAgain = false;
  /** Kinds listed at least once; snapshots wait for all of them. */
  readonly #listed = new Set<Kind>();
  #allListed: (() => void) | undefined;

  constructor(opts: KubernetesSourceOptions) {
    this.#opts = opts;
    this.#api = opts.kubeConfig.makeApiClient(CustomObjectsApi);
  }

  /** Resolves once every kind has been listed (a list that fails is retried with backoff), with the first snapshot. */
  async start(): Promise<void> {
    const listed = new Promise<void>((resolve) => {
      this.#allListed = resolve;
    });
    await Promise.all(KINDS.map((kind) => this.#startInformer(kind)));
    if (!this.synced) await listed;
    this.#emit();
  }

  /** Every kind has been listed once: the snapshots are the cluster's, not a part of it. */
  get synced(): boolean {
    return this.#listed.size === KINDS.length;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#allListed?.();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await Promise.all([...this.#informers.values()].map((i) => i.stop()));
  }

  /** Read the caches again now (the periodic resync; events may have been merged away). */
  refresh(): void {
    this.#emit();
  }

  async #startInformer(kind: Kind): Promise<void> {
    const plural = PLURALS[kind];
    const ns = this.#opts.namespace;
    const path = `/apis/${GROUP}/${VERSION}/${ns === undefined ? '' : `namespaces/${ns}/`}${plural}`;
    // Set by a list that answered; the kind counts as listed once the informer's start() that ran it returns (its
    // items are in the cache then).
    let listedOnce = false;
    const started = (): void => {
      if (listedOnce) this.#markListed(kind);
    };
    const list = async () => {
      const result = (
        ns === undefined
          ? await this.#api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
          : await this.#api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural })
      ) as {
        items: RawObject[];
        metadata: { resourceVersion?: string };
      };
      // A list that worked is the sign of health that ends a backoff ('connect' fires before every attempt).
      if ((this.#restarts.get(kind) ?? 0) > 0) this.#opts.logger.info({ kind }, 'informer running again');
      this.#restarts.set(kind, 0);
      listedOnce = true;
      return result;
    };
    const informer = makeInformer<RawObject>(this.#opts.kubeConfig, path, list as never) as Informer<RawObject> & {
      list(namespace?: string): RawObject[];
      get(name: string, namespace?: string): RawObject | undefined;
    };
    const id = (o: RawObject): string => `${kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
    // A write to the status subresource (ours, hundreds during a bulk apply) changes nothing a snapshot holds:
    // it must not cost one (each is O(objects)).
    // A LoadBalancer's status.placement is the exception: it says which node serves it.
    const fingerprint = (o: RawObject): string =>
      JSON.stringify({
        ...o,
        status: kind === 'LoadBalancer' ? placedOn(o) : undefined,
        metadata: { ...o.metadata, resourceVersion: undefined, managedFields: undefined },
      });
    informer.on('add', (o) => {
      this.#seen.set(id(o), fingerprint(o));
      this.#changed();
    });
    informer.on('update', (o) => {
      const f = fingerprint(o);
      if (this.#seen.get(id(o)) === f) return;
      this.#seen.set(id(o), f);
      this.#changed();
    });
    informer.on('delete', (o) => {
      this.#seen.delete(id(o));
      this.#changed();
    });
    // client-node relists by itself after 410 Gone and re-watches when a stream ends; any other error stops
    // the informer, and restarting it is ours to do, with backoff.
    informer.on('error', (err: unknown) => {
      if (this.#stopped) return;
      this.#failedAt.set(kind, Date.now());
      const n = (this.#restarts.get(kind) ?? 0) + 1;
      this.#restarts.set(kind, n);
      // Capped at 10 s: after an API server outage, spec changes are seen again within seconds.
      const delay = Math.min(10_000, 200 * 2 ** Math.min(n - 1, 8));
      // Once per outage, not once per retry: an API server down for minutes must not fill the log.
      const level = n === 1 ? 'warn' : 'debug';
      this.#opts.logger[level]({ kind, err: String(err), retryInMs: delay }, 'informer stopped; restarting');
      setTimeout(() => {
        if (this.#stopped) return;
        const restartedAt = Date.now();
        informer.start().then(started, () => undefined);
        // A restart re-watches from the informer's resourceVersion: no list says it worked. One that has not
        // failed within a moment is running, and the next failure is a new outage, backed off from the start.
        setTimeout(() => {
          if ((this.#failedAt.get(kind) ?? 0) < restartedAt) this.#restarts.set(kind, 0);
        }, HEALTHY_AFTER_MS).unref();
      }, delay).unref();
    });
    this.#informers.set(kind, informer);
    await informer.start();
    started();
  }

  #markListed(kind: Kind): void {
    if (this.#listed.has(kind)) return;
    this.#listed.add(kind);
    if (this.synced) this.#allListed?.();
  }

  #changed(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#emit(), this.#opts.debounceMs ?? 50);
  }

  #emit(): void {
    if (!this.synced || this.#stopped) return;
    this.#opts.onSnapshot(this.snapshot());
  }

  /** The informers' caches as desired objects. A LoadBalancer being deleted is left out: that is the delete. */
  snapshot(): KubernetesSnapshot {
    const objects: AnyObject[] = [];
    const invalid: InvalidObject[] = [];
    for (const [kind, informer] of this.#informers) {
      for (const raw of informer.list()) {
        const namespace = raw.metadata?.namespace ?? 'default';
        const name = raw.metadata?.name ?? '';
        if (kind === 'LoadBalancer' && raw.metadata?.deletionTimestamp !== undefined) continue;
        const result = validateObject({
          apiVersion: API_VERSION,
          kind,
          metadata: { name, namespace, ...(raw.metadata?.generation === undefined ? {} : { generation: raw.metadata.generation }) },
          spec: raw.spec,
        });
        if (result.ok) objects.push(result.object);
        else invalid.push({ kind, namespace, name, message: result.issues.map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`)).join('; ') });
      }
    }
    return { objects, invalid };
  }

  /** The object as the informer last saw it (with resourceVersion, uid and status). */
  cached(kind: Kind, namespace: string, name: string): RawObject | undefined {
    // A map lookup: the status writer asks for every object on every publish.
    return this.#informers.get(kind)?.get(name, namespace);
  }

  /**
   * Where each LoadBalancer is placed (DESIGN §6): spec.placement.nodes, else status.placement.nodes (the
   * scheduler's); a load balancer not placed yet has none.
   */
  placements(): Map<string, Placement> {
    const result = new Map<string, Placement>();
    for (const o of this.#informers.get('LoadBalancer')?.list() ?? []) {
      const spec = (o.spec ?? {}) as { placement?: { nodes?: unknown }; topology?: unknown };
      const explicit = Array.isArray(spec.placement?.nodes) ? (spec.placement.nodes as unknown[]).filter((n): n is string => typeof n === 'string') : [];
      result.set(`${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? ''}`, {
        nodes: explicit.length > 0 ? explicit : placedOn(o),
        topology: spec.topology === 'ACTIVE_STANDBY' ? 'ACTIVE_STANDBY' : 'SINGLE',
        explicit: explicit.length > 0,
        ready: readyOn(o),
      });
    }
    return result;
  }

  /** LoadBalancers that are being deleted and still carry our finalizer. */
  deleting(): { namespace: string; name: string }[] {
    return (this.#informers.get('LoadBalancer')?.list() ?? [])
      .filter((o) => o.metadata?.deletionTimestamp !== undefined && (o.metadata.finalizers ?? []).includes(FINALIZER))
      .map((o) => ({ namespace: o.metadata?.namespace ?? 'default', name: o.metadata?.name ?? '' }));
  }

  /**
   * Add our finalizer to every LoadBalancer that lacks it (and is not being deleted). One pass at a time: a call
   * while a pass runs asks for one more pass after it and shares its promise. Callers call on every snapshot;
   * before, each call started its own pass, so while the API server was slow (each read-modify-write taking
   * seconds) hundreds of passes walked the same objects at once, and their reads and conflicting writes were 94 %
   * of a drain's requests (bench (w), 2026-12-05: 199 GETs of one object within 3 ms, 198 of its PATCHes 409).
   */
  ensureFinalizers(): Promise<void> {
    if (this.#finalizing !== undefined) {
      this.#finalizeAgain = true;
      return this.#finalizing;
    }
    const passes = async (): Promise<void> => {
      try {
        do {
          this.#finalizeAgain = false;
          await this.#ensureFinalizersOnce();
        } while (this.#finalizeAgain && !this.#stopped);
      } finally {
        this.#finalizing = undefined;
      }
    };
    this.#finalizing = passes();
    return this.#finalizing;
  }

  async #ensureFinalizersOnce(): Promise<void> {
    const informer = this.#informers.get('LoadBalancer');
    const lacking = (o: RawObject | undefined): boolean =>
      o !== undefined && o.metadata?.deletionTimestamp === undefined && !(o.metadata?.finalizers ?? []).includes(FINALIZER);
    for (const o of informer?.list() ?? []) {
      if (this.#stopped) return;
      const namespace = o.metadata?.namespace ?? 'default';
      const name = o.metadata?.name ?? '';
      // The cache as it is now: another agent (or an earlier pass) may have added it while this pass waited.
      if (!lacking(informer?.get(name, namespace))) continue;
      await this.#setFinalizers(namespace, name, (f) => (f.includes(FINALIZER) ? f : [...f, FINALIZER]));
    }
  }

  /** The node is clean: let the object go. Other controllers' finalizers are kept. */
  async removeFinalizer(namespace: string, name: string): Promise<void> {
    await this.#setFinalizers(namespace, name, (f) => f.filter((x) => x !== FINALIZER));
  }

  /**
   * Read-modify-write of metadata.finalizers, guarded by resourceVersion: a merge patch replaces the whole
   * list, so without the guard we could drop a finalizer someone added meanwhile. On 409, read and retry.
   */
  async #setFinalizers(namespace: string, name: string, change: (f: string[]) => string[]): Promise<void> {
    const plural = PLURALS.LoadBalancer;
    for (let attempt = 0; attempt < 5; attempt++) {
      let current: RawObject;
      try {
        current = (await this.#api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name })) as RawObject;
      } catch (err) {
        if (statusCode(err) === 404) return;
        throw err;
      }
      const before = current.metadata?.finalizers ?? [];
      const after = change(before);
      if (after.length === before.length && after.every((f, i) => f === before[i])) return;
      try {
        await this.#api.patchNamespacedCustomObject(
          {
            group: GROUP,
            version: VERSION,
            namespace,
            plural,
            name,
            body: { metadata: { finalizers: after, resourceVersion: current.metadata?.resourceVersion } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        return;
      } catch (err) {
        if (statusCode(err) === 404) return;
        if (statusCode(err) !== 409) throw err;
      }
    }
    throw new Error(`could not update finalizers of ${namespace}/${name}: conflicts kept happening`);
  }
}
