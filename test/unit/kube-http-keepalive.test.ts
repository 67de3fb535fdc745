// The agent's API clients (src/kube/http.ts) reuse their connections: client-node makes an http(s).Agent per
// request, so each request was a new connection (a TLS handshake against a real API server); AgentKubeConfig keeps
// one keep-alive agent per set of connection options.
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeApiClientWithTimeout } from '../../src/kube/http.js';
import type { FakeApiServer } from '../support/fake-apiserver.js';
import { agentKubeConfig, startFakeApiServer } from '../support/fake-apiserver-client.js';

let api: FakeApiServer;
let url: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ server: api, url, close } = await startFakeApiServer());
});
afterAll(() => close());

describe("the agent's API clients", () => {
  it('send one request after another over one connection, across clients of the same kubeconfig', async () => {
    const kc = agentKubeConfig(url);
    const a = kc.makeApiClient(CoordinationV1Api);
    const b = makeApiClientWithTimeout(kc, CoordinationV1Api, 5_000);
    const before = api.connections;
    for (let i = 0; i < 5; i++) {
      await a.listNamespacedLease({ namespace: 'default' });
      await b.listNamespacedLease({ namespace: 'default' });
    }
    // Before: 10 connections, one per request.
    expect(api.connections - before).toBe(1);
  });

  it('open more connections only for requests at once', async () => {
    const kc = agentKubeConfig(url);
    const a = kc.makeApiClient(CoordinationV1Api);
    const before = api.connections;
    await Promise.all(Array.from({ length: 4 }, () => a.listNamespacedLease({ namespace: 'default' })));
    await Promise.all(Array.from({ length: 4 }, () => a.listNamespacedLease({ namespace: 'default' })));
    expect(api.connections - before).toBeLessThanOrEqual(4);
  });
});
