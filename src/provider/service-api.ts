// The provider's writes to Services: merge patches of the object (finalizers) and of its status subresource.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { statusCode } from '../kube/errors.js';
import type { Service } from './kube.js';

export class ServiceApi {
  readonly #core: CoreV1Api;

  constructor(kubeConfig: KubeConfig) {
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
  }

  /**
   * Merge patches guarded by the resourceVersion we decided from. A 409 means the Service changed since: the
   * watch event of that change queues it again, and that reconcile decides with the new version.
   */
  async patchStatus(svc: Service, status: object): Promise<{ resourceVersion?: string } | undefined> {
    return this.#merge(svc, { metadata: { resourceVersion: svc.metadata?.resourceVersion }, status }, true);
  }

  async patch(svc: Service, body: { metadata: object }): Promise<{ resourceVersion?: string } | undefined> {
    return this.#merge(svc, { ...body, metadata: { ...body.metadata, resourceVersion: svc.metadata?.resourceVersion } }, false);
  }

  async #merge(svc: Service, body: object, status: boolean): Promise<{ resourceVersion?: string } | undefined> {
    const req = { name: svc.metadata?.name ?? '', namespace: svc.metadata?.namespace ?? 'default', body };
    const opts = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    try {
      const out = status ? await this.#core.patchNamespacedServiceStatus(req, opts) : await this.#core.patchNamespacedService(req, opts);
      return { ...(out.metadata?.resourceVersion === undefined ? {} : { resourceVersion: out.metadata.resourceVersion }) };
    } catch (err) {
      const code = statusCode(err);
      if (code === 404 || code === 409) return undefined;
      throw err;
    }
  }
}
