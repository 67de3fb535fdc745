// Kubernetes mode: the Secrets that Listeners and Pools name, and only those. Each is listed and watched by
// name (fieldSelector metadata.name) in its namespace, so the agent never holds any other Secret, and a
// Secret that is created, rotated (cert-manager renews in place) or deleted is seen within the watch's
// latency. Their contents go into the engine's TLS materials (desired/secrets.ts); the desired model then
// treats a rotated Secret like any other change: a checked config with the new bundle, a hitless reload.
//
// Key material stays in this module's cache and the materials map: it is never logged, and what this
// module reports (changes, errors) names Secrets, never their data.
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import { SECRET_KEYS, SECRETS_READABLE, secretMaterials, secretReadErrorKey, type SecretChange } from '../desired/secrets.js';
import { statusCode } from '../kube/errors.js';
import { makeInformer, type StoppableInformer } from '../kube/informer.js';

interface Watched {
  informer: StoppableInformer<V1Secret & KubernetesObject>;
  /** false until the first list answered (or failed): until then the Secret is neither there nor missing. */
  synced: boolean;
  /** Why it cannot be read (403: RBAC does not reach its namespace), or undefined. */
  error: string | undefined;
  /** Hash of the data keys nslb reads, to tell a rotation from a write that changed nothing we use. */
  digest: string | undefined;
  restarts: number;
}

export interface SecretWatcherOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** Something changed: build the snapshot again (its materials now differ). */
  onChange: (change: SecretChange) => void;
}

export class SecretWatcher {
  readonly #opts: SecretWatcherOptions;
  readonly #api: CoreV1Api;
  readonly #watched = new Map<string, Watched>();
  #stopped = false;

  constructor(opts: SecretWatcherOptions) {
    this.#opts = opts;
    this.#api = opts.kubeConfig.makeApiClient(CoreV1Api);
  }

  /** Watch exactly these Secrets (`namespace/name`): start the new ones, stop those no longer named. */
  want(keys: ReadonlySet<string>): void {
    if (this.#stopped) return;
    for (const [key, w] of this.#watched) {
      if (keys.has(key)) continue;
      this.#watched.delete(key);
      void w.informer.stop().catch(() => undefined);
    }
    for (const key of keys) if (!this.#watched.has(key)) this.#start(key);
  }

  /** Every wanted Secret has been listed once (found, missing or unreadable). */
  get synced(): boolean {
    return [...this.#watched.values()].every((w) => w.synced);
  }

  /** The TLS materials of the watched Secrets, plus the marker that Secrets are readable at all. */
  materials(): Map<string, string> {
    const out = new Map<string, string>([[SECRETS_READABLE, '1']]);
    for (const [key, w] of this.#watched) {
      const [namespace = '', name = ''] = key.split('/');
      if (w.error !== undefined) {
        out.set(secretReadErrorKey(namespace, name), w.error);
        continue;
      }
      const s = w.informer.get(name, namespace);
      if (s === undefined) continue;
      for (const [k, v] of secretMaterials({ namespace, name, type: s.type ?? 'Opaque', data: s.data ?? {} })) out.set(k, v);
    }
    return out;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const all = [...this.#watched.values()];
    this.#watched.clear();
    await Promise.all(all.map((w) => w.informer.stop().catch(() => undefined)));
  }

  #start(key: string): void {
    const [namespace = '', name = ''] = key.split('/');
    const path = `/api/v1/namespaces/${namespace}/secrets`;
    const fieldSelector = `metadata.name=${name}`;
    const list = async () => {
      const result = await this.#api.listNamespacedSecret({ namespace, fieldSelector });
      const w = this.#watched.get(key);
      if (w !== undefined) {
        w.restarts = 0;
        if (w.error !== undefined) {
          w.error = undefined;
          w.digest = undefined;
          queueMicrotask(() => this.#changed(key, w, true));
        }
      }
      return result as { items: (V1Secret & KubernetesObject)[]; metadata: { resourceVersion?: string } };
    };
    const informer = makeInformer<V1Secret & KubernetesObject>(this.#opts.kubeConfig, path, list, { fieldSelector });
    const w: Watched = { informer, synced: false, error: undefined, digest: undefined, restarts: 0 };
    this.#watched.set(key, w);
    informer.on('add', () => this.#changed(key, w));
    informer.on('update', () => this.#changed(key, w));
    informer.on('delete', () => this.#changed(key, w));
    informer.on('error', (err: unknown) => {
      if (this.#stopped || this.#watched.get(key) !== w) return;
      const code = statusCode(err);
      // Only what the API said: never the body of a response (it could echo a Secret).
      const message =
        code === 403
          ? `the agent may not read Secrets in namespace "${namespace}" (403 Forbidden; see the chart's secretNamespaces)`
          : `cannot read the Secret: ${code === undefined ? 'API server unreachable' : `HTTP ${code}`}`;
      // Unreachable: the last Secret read stays in force; refused: the objects naming it say why.
      if (code === 403 || code === 401 || !w.synced) {
        if (w.error !== message) {
          w.error = message;
          w.synced = true;
          this.#opts.onChange({ namespace, name, state: 'unreadable', rotated: false, message });
        }
      }
      w.restarts++;
      const delay = Math.min(30_000, 200 * 2 ** Math.min(w.restarts - 1, 8));
      this.#opts.logger.warn({ secret: key, status: code ?? null, retryInMs: delay }, 'secret watch stopped; restarting');
      setTimeout(() => {
        if (!this.#stopped && this.#watched.get(key) === w) informer.start().catch(() => undefined);
      }, delay).unref();
    });
    informer
      .start()
      .then(() => {
        if (this.#watched.get(key) !== w || w.synced) return;
        w.synced = true;
        this.#changed(key, w, true);
      })
      .catch(() => undefined);
  }

  #changed(key: string, w: Watched, first = false): void {
    const [namespace = '', name = ''] = key.split('/');
    const s = w.informer.get(name, namespace);
    const digest = s === undefined ? undefined : digestOf(s);
    const before = w.digest;
    w.digest = digest;
    if (!w.synced) return; // the first list's own adds: reported once it is done
    const rotated = digest !== undefined && before !== undefined && digest !== before;
    if (digest === before && !first) return;
    this.#opts.logger.info({ secret: key, present: digest !== undefined, rotated }, 'secret changed');
    this.#opts.onChange({ namespace, name, state: digest === undefined ? 'missing' : 'present', rotated });
  }
}

function digestOf(s: V1Secret): string {
  const h = createHash('sha256').update(s.type ?? '');
  for (const k of SECRET_KEYS) h.update(`\0${k}\0${s.data?.[k] ?? ''}`);
  return h.digest('hex');
}
