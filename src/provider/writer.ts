// The nslb objects of one Service, made to match the translation: a pure plan (create, update, delete, or a
// conflict with an object the provider does not own) and its idempotent application through the API. An
// object is the provider's when it carries the Service's label and an ownerReference to the Service's uid;
// one with the label but another uid was made for an earlier Service of the same name and goes. Objects
// nobody labelled are never touched: a name clash is reported, not resolved by force.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Kind } from '../api/v1alpha1/types.js';
import { GROUP, PLURALS, VERSION } from '../api/v1alpha1/crds.js';
import { statusCode } from '../kube/errors.js';
import { canonicalJson } from '../kube/json.js';
import type { Meta } from './kube.js';
import { SERVICE_LABEL } from './names.js';
import type { DesiredObject } from './translate.js';

export interface ExistingObject {
  apiVersion?: string;
  kind?: string;
  metadata?: Meta;
  spec?: unknown;
  status?: unknown;
}

export type WriteAction =
  | { op: 'create'; object: DesiredObject }
  | { op: 'update'; object: DesiredObject; resourceVersion: string }
  | { op: 'delete'; kind: Kind; namespace: string; name: string; uid?: string };

// Parents first when creating (a child before its parent is an ERROR until the parent comes), children first
// when deleting.
const ORDER: readonly Kind[] = ['LoadBalancer', 'Pool', 'Listener', 'HealthMonitor', 'Member', 'L7Policy', 'L7Rule'];
const rank = (k: Kind): number => ORDER.indexOf(k);

/** Made by a provider for a Service of this name (this one, or an earlier one of the same name). */
export function madeFor(o: ExistingObject, serviceName: string): boolean {
  return (
    o.metadata?.labels?.[SERVICE_LABEL] === serviceName &&
    (o.metadata.ownerReferences ?? []).some((r) => r.apiVersion === 'v1' && r.kind === 'Service' && r.name === serviceName)
  );
}

/** Made for this very Service (its uid). */
export function ownedBy(o: ExistingObject, serviceName: string, serviceUid: string): boolean {
  return madeFor(o, serviceName) && (o.metadata?.ownerReferences ?? []).some((r) => r.kind === 'Service' && r.uid === serviceUid);
}

function matches(want: DesiredObject, have: ExistingObject): boolean {
  return (
    canonicalJson(want.spec) === canonicalJson(have.spec ?? null) &&
    have.metadata?.labels?.[SERVICE_LABEL] === want.metadata.labels[SERVICE_LABEL] &&
    canonicalJson(want.metadata.ownerReferences) === canonicalJson(have.metadata?.ownerReferences ?? [])
  );
}

/**
 * Pure: what to do so that `existing` (every object made for a Service of this name, see madeFor) becomes
 * `desired`. Objects of an earlier Service of the same name are deleted; desired objects are created or
 * updated. Deletes come first (children first), then creates and updates (parents first). Objects that were
 * not made for the Service are never in `existing`, so never touched.
 */
export function planWrites(
  desired: readonly DesiredObject[],
  existing: ReadonlyMap<Kind, readonly ExistingObject[]>,
  serviceName: string,
  serviceUid: string,
): WriteAction[] {
  const deletes: WriteAction[] = [];
  const writes: WriteAction[] = [];
  const wanted = new Set(desired.map((d) => `${d.kind}/${d.metadata.name}`));
  for (const [kind, objects] of existing) {
    for (const o of objects) {
      if (!madeFor(o, serviceName)) continue;
      const name = o.metadata?.name ?? '';
      const mine = ownedBy(o, serviceName, serviceUid);
      if (mine && wanted.has(`${kind}/${name}`)) continue;
      if (o.metadata?.deletionTimestamp !== undefined) continue;
      deletes.push({
        op: 'delete',
        kind,
        namespace: o.metadata?.namespace ?? 'default',
        name,
        ...(o.metadata?.uid === undefined ? {} : { uid: o.metadata.uid }),
      });
    }
  }
  for (const d of desired) {
    const have = (existing.get(d.kind) ?? []).find((o) => o.metadata?.name === d.metadata.name);
    if (have === undefined || !ownedBy(have, serviceName, serviceUid)) writes.push({ op: 'create', object: d });
    else if (!matches(d, have)) writes.push({ op: 'update', object: d, resourceVersion: have.metadata?.resourceVersion ?? '' });
  }
  const kindOf = (a: WriteAction): Kind => (a.op === 'delete' ? a.kind : a.object.kind);
  deletes.sort((a, b) => rank(kindOf(b)) - rank(kindOf(a)));
  writes.sort((a, b) => rank(kindOf(a)) - rank(kindOf(b)));
  return [...deletes, ...writes];
}

export function describeAction(a: WriteAction): string {
  return a.op === 'delete' ? `delete ${a.kind} ${a.namespace}/${a.name}` : `${a.op} ${a.object.kind} ${a.object.metadata.namespace}/${a.object.metadata.name}`;
}

/** A desired object's name is taken by an object the provider does not own. */
export class NameConflictError extends Error {
  constructor(
    readonly kind: Kind,
    readonly namespace: string,
    readonly objectName: string,
  ) {
    super(
      `${kind} ${namespace}/${objectName} exists and was not made by nslb for this Service (no ${SERVICE_LABEL} label and Service ownerReference); rename or remove it`,
    );
    this.name = 'NameConflictError';
  }
}

export class ObjectWriter {
  readonly #api: CustomObjectsApi;
  /** Requests made, by verb; tests and the bench read them. */
  readonly counts = { create: 0, update: 0, delete: 0, conflicts: 0 };

  constructor(kubeConfig: KubeConfig) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
  }

  /**
   * Applies the plan in order. A create that finds the object already there (our informer had not seen it
   * yet) is fine when the object is ours; an update that meets a 409 or a delete that meets a 404 leaves the
   * rest to the next reconcile, which the informer event of whoever wrote it queues. Returns whether
   * everything was written as planned.
   */
  async apply(actions: readonly WriteAction[], serviceName: string, serviceUid: string): Promise<boolean> {
    // Deletes, then creates and updates, each group at once: the engine reads a snapshot a few ms after the
    // first change, and a load balancer whose objects arrive one by one is reconciled (and reloaded) twice.
    const deletes = actions.filter((a) => a.op === 'delete');
    const writes = actions.filter((a) => a.op !== 'delete');
    const results = [
      ...(await Promise.all(deletes.map((a) => this.#applyOne(a, serviceName, serviceUid)))),
      ...(await Promise.all(writes.map((a) => this.#applyOne(a, serviceName, serviceUid)))),
    ];
    return results.every(Boolean);
  }

  async #applyOne(a: WriteAction, serviceName: string, serviceUid: string): Promise<boolean> {
    {
      const kind = a.op === 'delete' ? a.kind : a.object.kind;
      const plural = PLURALS[kind];
      const namespace = a.op === 'delete' ? a.namespace : a.object.metadata.namespace;
      try {
        if (a.op === 'create') {
          this.counts.create++;
          await this.#api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, body: a.object });
        } else if (a.op === 'update') {
          this.counts.update++;
          const body = { ...a.object, metadata: { ...a.object.metadata, resourceVersion: a.resourceVersion } };
          await this.#api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name: a.object.metadata.name, body });
        } else {
          this.counts.delete++;
          await this.#api.deleteNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural,
            name: a.name,
            body: a.uid === undefined ? {} : { preconditions: { uid: a.uid } },
          });
        }
      } catch (err) {
        const code = statusCode(err);
        if (a.op === 'delete' && (code === 404 || code === 409)) return true;
        if (a.op === 'create' && code === 409) {
          const current = (await this.#api
            .getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name: a.object.metadata.name })
            .catch(() => undefined)) as ExistingObject | undefined;
          if (current !== undefined && !madeFor(current, serviceName)) {
            throw new NameConflictError(kind, namespace, a.object.metadata.name);
          }
          // Ours, or an earlier Service's that is being deleted: the next reconcile sees it in the cache.
          return current !== undefined && ownedBy(current, serviceName, serviceUid);
        }
        if (a.op === 'update' && (code === 409 || code === 404)) {
          this.counts.conflicts++;
          return false;
        }
        throw err;
      }
    }
    return true;
  }
}
