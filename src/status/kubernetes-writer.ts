// Kubernetes mode's status sink: each object's status goes through its status subresource, only when it
// differs from what the API server already holds (no write when nothing changed). A 409 means our copy was
// stale: read the object again and retry. Events go to the LoadBalancer they are about.
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Kind, ObjectStatus } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import { GROUP, PLURALS, VERSION, statusCode, type InvalidObject, type KubernetesSource } from '../sources/kubernetes.js';
import type { StatusFile } from './status-file.js';

/** JSON with sorted keys: the API server need not keep our key order, and we must not see that as a change. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function invalidStatus(o: InvalidObject, previous: ObjectStatus | undefined, now: string): ObjectStatus {
  const before = previous?.conditions.find((c) => c.type === 'Ready');
  return {
    provisioningStatus: 'ERROR',
    operatingStatus: 'ERROR',
    conditions: [{
      type: 'Ready',
      status: 'False',
      reason: 'InvalidSpec',
      message: o.message,
      lastTransitionTime: before?.status === 'False' ? before.lastTransitionTime : now,
    }],
  };
}

export class KubernetesStatusWriter {
  readonly #api: CustomObjectsApi;
  readonly #source: KubernetesSource;
  readonly #logger: Logger;
  /** Status writes made, by kind; tests count them. */
  readonly writes = new Map<Kind, number>();

  constructor(kubeConfig: KubeConfig, source: KubernetesSource, logger: Logger) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#source = source;
    this.#logger = logger;
  }

  async write(file: StatusFile, invalid: readonly InvalidObject[]): Promise<void> {
    const now = new Date().toISOString();
    const wanted: { kind: Kind; namespace: string; name: string; status: ObjectStatus }[] = [
      ...file.objects.map((o) => ({ kind: o.kind as Kind, namespace: o.namespace, name: o.name, status: o.status })),
      ...invalid.map((o) => ({
        ...o,
        status: invalidStatus(o, this.#source.cached(o.kind, o.namespace, o.name)?.status as ObjectStatus | undefined, now),
      })),
    ];
    for (const w of wanted) {
      try {
        await this.#writeOne(w.kind, w.namespace, w.name, w.status);
      } catch (err) {
        this.#logger.warn({ object: `${w.kind}/${w.namespace}/${w.name}`, err: String(err) }, 'cannot write status; will retry on the next change');
      }
    }
  }

  async #writeOne(kind: Kind, namespace: string, name: string, status: ObjectStatus): Promise<void> {
    let current = this.#source.cached(kind, namespace, name);
    const want = canonicalJson(status);
    for (let attempt = 0; attempt < 4; attempt++) {
      if (current === undefined) return; // gone, or not seen yet: the next change brings it
      if (canonicalJson(current.status ?? null) === want) return;
      const plural = PLURALS[kind];
      try {
        await this.#api.replaceNamespacedCustomObjectStatus({
          group: GROUP, version: VERSION, namespace, plural, name, body: { ...current, status },
        });
        this.writes.set(kind, (this.writes.get(kind) ?? 0) + 1);
        return;
      } catch (err) {
        const code = statusCode(err);
        if (code === 404) return;
        if (code !== 409) throw err;
        current = (await this.#api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name })) as typeof current;
      }
    }
  }
}

export interface ObjectEvent {
  namespace: string;
  name: string;
  kind: Kind;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** Kubernetes Events, with repeats of the same event on the same object merged for a minute. */
export class KubernetesEvents {
  readonly #api: CoreV1Api;
  readonly #source: KubernetesSource;
  readonly #node: string;
  readonly #recent = new Map<string, number>();

  constructor(kubeConfig: KubeConfig, source: KubernetesSource, node: string) {
    this.#api = kubeConfig.makeApiClient(CoreV1Api);
    this.#source = source;
    this.#node = node;
  }

  /**
   * An Event about any object (the Service provider's Events are about Services). The seam through which the
   * provider reports (src/provider/controller.ts ProviderEvents); same merging of repeats as emit().
   */
  async emitAbout(involved: { apiVersion: string; kind: string; namespace: string; name: string; uid?: string }, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const key = `${involved.kind}/${involved.namespace}/${involved.name}/${reason}/${message}`;
    const now = Date.now();
    if ((this.#recent.get(key) ?? 0) > now - 60_000) return;
    this.#recent.set(key, now);
    await this.#api
      .createNamespacedEvent({
        namespace: involved.namespace,
        body: {
          metadata: { generateName: `${involved.name}.` },
          involvedObject: involved,
          type,
          reason,
          message,
          source: { component: 'nslb', host: this.#node },
          firstTimestamp: new Date(now),
          lastTimestamp: new Date(now),
          count: 1,
          reportingComponent: 'nslb.dev/agent',
          reportingInstance: this.#node,
        },
      })
      .catch(() => undefined);
  }

  async emit(e: ObjectEvent): Promise<void> {
    const key = `${e.kind}/${e.namespace}/${e.name}/${e.reason}/${e.message}`;
    const now = Date.now();
    if ((this.#recent.get(key) ?? 0) > now - 60_000) return;
    this.#recent.set(key, now);
    const obj = this.#source.cached(e.kind, e.namespace, e.name);
    await this.#api
      .createNamespacedEvent({
        namespace: e.namespace,
        body: {
          metadata: { generateName: `${e.name}.` },
          involvedObject: { apiVersion: `${GROUP}/${VERSION}`, kind: e.kind, name: e.name, namespace: e.namespace, ...(obj?.metadata?.uid === undefined ? {} : { uid: obj.metadata.uid }) },
          type: e.type,
          reason: e.reason,
          message: e.message,
          source: { component: 'nslb', host: this.#node },
          firstTimestamp: new Date(now),
          lastTimestamp: new Date(now),
          count: 1,
          reportingComponent: 'nslb.dev/agent',
          reportingInstance: this.#node,
        },
      })
      .catch(() => undefined);
  }
}
