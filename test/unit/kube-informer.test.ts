// kube/informer.ts: an informer's stop() leaves no watch open, even one being opened at that moment (the
// client-node 1.x race that kept a SIGTERMed agent alive on a socket).
import { CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeInformer } from '../../src/kube/informer.js';
import type { FakeApiServer } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const PATH = '/apis/nslb.dev/v1alpha1/namespaces/inf/loadbalancers';
let api: FakeApiServer;
let kc: KubeConfig;

beforeAll(async () => {
  ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo' }));
});

afterAll(async () => {
  await api.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function informer() {
  const objects = kc.makeApiClient(CustomObjectsApi);
  const list = () =>
    objects.listNamespacedCustomObject({ group: 'nslb.dev', version: 'v1alpha1', namespace: 'inf', plural: 'loadbalancers' }) as Promise<{
      items: KubernetesObject[];
      metadata: { resourceVersion?: string };
    }>;
  return makeInformer<KubernetesObject>(kc, PATH, list as never);
}

describe('makeInformer', () => {
  it('stop() while a re-watch is in flight: the late watch is closed as soon as it opens', async () => {
    const i = informer();
    i.on('error', () => {});
    await i.start();
    await api.waitForWatches('loadbalancers', 1);
    // The server ends the stream (its watch timeout); the informer watches again, and that request waits.
    api.setRequestDelay(300);
    api.closeWatches();
    await sleep(100);
    expect(api.activeWatches('loadbalancers')).toBe(0);
    await i.stop();
    api.setRequestDelay(0);
    await sleep(600);
    expect(api.activeWatches('loadbalancers'), 'a watch opened after stop() stayed open').toBe(0);
    expect(i.openWatches).toBe(0);
  });

  it('stop() while the first list is in flight: no watch stays open', async () => {
    const i = informer();
    i.on('error', () => {});
    api.setRequestDelay(200);
    const started = i.start();
    await sleep(50);
    await i.stop();
    api.setRequestDelay(0);
    await started.catch(() => {});
    await sleep(400);
    expect(api.activeWatches('loadbalancers')).toBe(0);
  });

  it('start() after stop() watches again, and the next stop() closes it', async () => {
    const i = informer();
    i.on('error', () => {});
    await i.start();
    await api.waitForWatches('loadbalancers', 1);
    await i.stop();
    await sleep(100);
    expect(api.activeWatches('loadbalancers')).toBe(0);
    await i.start();
    await api.waitForWatches('loadbalancers', 1);
    expect(i.openWatches).toBe(1);
    await i.stop();
    await sleep(100);
    expect(api.activeWatches('loadbalancers')).toBe(0);
  });
});
