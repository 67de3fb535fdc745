// The agent's API clients (kube/http.ts): a response cut before its end is an error, not a request that never
// settles (client-node 1.x's node-fetch 2 waits for ever on a Content-Length body cut short); one that does not
// come is abandoned after the timeout; everything else reads as with client-node's own HTTP library (status codes,
// bodies, headers set by middleware) against the in-test API server.
import { CoordinationV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeApiError, statusCode } from '../../src/kube/errors.js';
import { makeApiClientWithTimeout, type AgentKubeConfig } from '../../src/kube/http.js';
import type { FakeApiServer } from '../support/fake-apiserver.js';
import { agentKubeConfig, startFakeApiServer } from '../support/fake-apiserver-client.js';

const V = 'nslb.dev/v1alpha1';

/** An HTTP server whose every answer is written by `answer`. */
async function rawServer(answer: (res: ServerResponse) => void): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => answer(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, server };
}

const list = (kc: AgentKubeConfig) =>
  kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({ group: 'nslb.dev', version: 'v1alpha1', plural: 'loadbalancers' });

describe('a response that does not arrive whole', () => {
  it('cut before its Content-Length: rejected at once, as unreachable (no HTTP status)', async () => {
    const { url, server } = await rawServer((res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100000' });
      res.write('{"kind":"LoadBalancerList","items":[');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const started = Date.now();
    const err = await list(agentKubeConfig(url)).then(
      () => undefined,
      (e: unknown) => e,
    );
    server.close();
    expect(err).toMatchObject({ name: 'ApiRequestError', code: 'ECONNRESET' });
    expect(statusCode(err)).toBeUndefined();
    expect(describeApiError(err)).toMatch(/^request to http:\/\/127\.0\.0\.1:\d+\/apis\/nslb\.dev\/v1alpha1\/loadbalancers failed, reason: /);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('cut before its last chunk: rejected too', async () => {
    const { url, server } = await rawServer((res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"kind":"LoadBalancerList","items":[');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    await expect(list(agentKubeConfig(url))).rejects.toMatchObject({ code: 'ECONNRESET' });
    server.close();
  });

  it('no answer within the request timeout: abandoned', async () => {
    const { url, server } = await rawServer(() => {});
    const started = Date.now();
    await expect(list(agentKubeConfig(url, { requestTimeoutMs: 300 }))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(Date.now() - started).toBeLessThan(5_000);
    server.closeAllConnections();
    server.close();
  });

  it("a Lease client's own, shorter timeout (makeApiClientWithTimeout): a hung renewal is given up, not waited on for a minute", async () => {
    const { url, server } = await rawServer(() => {});
    const started = Date.now();
    const coord = makeApiClientWithTimeout(agentKubeConfig(url), CoordinationV1Api, 300);
    await expect(coord.readNamespacedLease({ name: 'l', namespace: 'n' })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(Date.now() - started).toBeLessThan(5_000);
    server.closeAllConnections();
    server.close();
  });

  it('nobody listening: rejected with the system error', async () => {
    const { url, server } = await rawServer(() => {});
    server.close();
    await expect(list(agentKubeConfig(url))).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('against the in-test API server', () => {
  let api: FakeApiServer;
  let kc: AgentKubeConfig;
  beforeAll(async () => {
    ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo', client: 'agent' }));
  });
  afterAll(async () => {
    await api.stop();
  });

  it('creates, reads, lists, merge-patches and reports 404 and 409 as client-node does', async () => {
    const custom = kc.makeApiClient(CustomObjectsApi);
    const body = { apiVersion: V, kind: 'LoadBalancer', metadata: { name: 'web', namespace: 'ns1' }, spec: { vip: { address: '10.0.0.10' } } };
    const created = (await custom.createNamespacedCustomObject({
      group: 'nslb.dev',
      version: 'v1alpha1',
      namespace: 'ns1',
      plural: 'loadbalancers',
      body,
    })) as {
      metadata: { uid: string };
    };
    expect(created.metadata.uid).toBeTruthy();
    const got = (await custom.getNamespacedCustomObject({
      group: 'nslb.dev',
      version: 'v1alpha1',
      namespace: 'ns1',
      plural: 'loadbalancers',
      name: 'web',
    })) as {
      metadata: { uid: string };
    };
    expect(got.metadata.uid).toBe(created.metadata.uid);
    const listed = (await list(kc)) as { items: unknown[] };
    expect(listed.items).toHaveLength(1);
    await custom.patchNamespacedCustomObject(
      { group: 'nslb.dev', version: 'v1alpha1', namespace: 'ns1', plural: 'loadbalancers', name: 'web', body: { metadata: { labels: { a: 'b' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect((api.get(V, 'loadbalancers', 'ns1', 'web') as { metadata: { labels?: unknown } } | undefined)?.metadata.labels).toEqual({ a: 'b' });
    const missing = await custom
      .getNamespacedCustomObject({ group: 'nslb.dev', version: 'v1alpha1', namespace: 'ns1', plural: 'loadbalancers', name: 'nope' })
      .catch((e: unknown) => e);
    expect(statusCode(missing)).toBe(404);
    expect(describeApiError(missing)).toMatch(/^HTTP 404: .*nope/);
    const twice = await custom
      .createNamespacedCustomObject({ group: 'nslb.dev', version: 'v1alpha1', namespace: 'ns1', plural: 'loadbalancers', body })
      .catch((e: unknown) => e);
    expect(statusCode(twice)).toBe(409);
  });

  it('typed clients work the same (a Lease, created and replaced)', async () => {
    const coord = kc.makeApiClient(CoordinationV1Api);
    const lease = await coord.createNamespacedLease({
      namespace: 'agents',
      body: {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: 'l1', namespace: 'agents' },
        spec: { holderIdentity: 'n1', leaseDurationSeconds: 6 },
      },
    });
    expect(lease.spec?.holderIdentity).toBe('n1');
    const replaced = await coord.replaceNamespacedLease({ name: 'l1', namespace: 'agents', body: { ...lease, spec: { ...lease.spec, holderIdentity: 'n2' } } });
    expect(replaced.spec?.holderIdentity).toBe('n2');
    expect(replaced.metadata?.resourceVersion).not.toBe(lease.metadata?.resourceVersion);
  });
});
