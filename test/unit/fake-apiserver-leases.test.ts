// The in-test API server's Leases and Nodes, as membership, leader election and the scheduler use them
// (src/kube/node-lease.ts, src/kube/leader.ts, src/schedule/scheduler.ts): list and watch from a
// resourceVersion, 410 after compaction, 409 on a stale write, validation (422), label and field selectors,
// and Node labels (the drain label, node selectors) seen by an informer.
import {
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Lease,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeApiServer, JsonObject, Obj } from '../support/fake-apiserver.js';
import { node } from '../support/k8s-objects.js';
import { failure, startFakeApiServer } from '../support/fake-apiserver-client.js';

let api: FakeApiServer;
let kc: KubeConfig;
let coord: CoordinationV1Api;
let core: CoreV1Api;
const namespace = 'nslb-system';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => new Date().toISOString().replace('Z', '000Z');
const lease = (name: string, spec: JsonObject = {}, labels?: Record<string, string>): V1Lease =>
  ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(labels === undefined ? {} : { labels }) },
    spec: { holderIdentity: name, leaseDurationSeconds: 6, renewTime: now(), ...spec },
  }) as unknown as V1Lease;

/** The lines of one watch request (global fetch), until `count` arrived or the stream ended. */
async function watchLines(url: string, count: number, act: () => Promise<void>): Promise<Obj[]> {
  const ac = new AbortController();
  const res = await fetch(url, { signal: ac.signal });
  const reader = res.body!.getReader();
  const out: Obj[] = [];
  let buf = '';
  await act();
  const deadline = Date.now() + 3_000;
  while (out.length < count && Date.now() < deadline) {
    const r = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => undefined)]);
    if (r === undefined || r.done) break;
    buf += new TextDecoder().decode(r.value);
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      out.push(JSON.parse(buf.slice(0, nl)) as Obj);
      buf = buf.slice(nl + 1);
    }
  }
  ac.abort();
  return out;
}

beforeAll(async () => {
  ({ server: api, kubeConfig: kc } = await startFakeApiServer());
  coord = kc.makeApiClient(CoordinationV1Api);
  core = kc.makeApiClient(CoreV1Api);
});

afterAll(async () => {
  await api.stop();
});

describe('Leases (coordination.k8s.io/v1)', () => {
  it('create, 409 AlreadyExists, renew with the resourceVersion, 409 Conflict on a stale one, unconditional PUT allowed', async () => {
    const l1 = await coord.createNamespacedLease({ namespace, body: lease('nslb-node-a') });
    expect(l1.metadata?.resourceVersion).toMatch(/^\d+$/);
    expect((await failure(coord.createNamespacedLease({ namespace, body: lease('nslb-node-a') }))).code).toBe(409);
    const l2 = await coord.replaceNamespacedLease({ name: 'nslb-node-a', namespace, body: { ...l1, spec: { ...l1.spec, renewTime: now() as never } } });
    expect(Number(l2.metadata?.resourceVersion)).toBeGreaterThan(Number(l1.metadata?.resourceVersion));
    const stale = await failure(coord.replaceNamespacedLease({ name: 'nslb-node-a', namespace, body: { ...l1, spec: { ...l1.spec, holderIdentity: 'b' } } }));
    expect(stale.code).toBe(409);
    expect(stale.status).toMatchObject({ kind: 'Status', reason: 'Conflict' });
    // Built-in kinds take a PUT without resourceVersion (client-go's leaderelection never sends one without).
    const { resourceVersion: _, ...meta } = l2.metadata!;
    const l3 = await coord.replaceNamespacedLease({
      name: 'nslb-node-a',
      namespace,
      body: { ...l2, metadata: meta, spec: { ...l2.spec, holderIdentity: 'c' } },
    });
    expect(l3.spec?.holderIdentity).toBe('c');
    // A write that changes nothing is no new revision.
    const l4 = await coord.replaceNamespacedLease({ name: 'nslb-node-a', namespace, body: l3 });
    expect(l4.metadata?.resourceVersion).toBe(l3.metadata?.resourceVersion);
  });

  it('validation: duration > 0, transitions ≥ 0, RFC 3339 times (422 with the field)', async () => {
    for (const [spec, field] of [
      [{ leaseDurationSeconds: 0 }, 'spec.leaseDurationSeconds'],
      [{ leaseDurationSeconds: -5 }, 'spec.leaseDurationSeconds'],
      [{ leaseTransitions: -1 }, 'spec.leaseTransitions'],
      [{ renewTime: 'yesterday' }, 'spec.renewTime'],
    ] as const) {
      const f = await failure(coord.createNamespacedLease({ namespace, body: lease('bad', spec) }));
      expect(f.code, field).toBe(422);
      expect(f.status.details.causes.map((c: Obj) => c.field)).toEqual([field]);
    }
    const l = await coord.readNamespacedLease({ name: 'nslb-node-a', namespace });
    const f = await failure(coord.replaceNamespacedLease({ name: 'nslb-node-a', namespace, body: { ...l, spec: { ...l.spec, leaseDurationSeconds: 0 } } }));
    expect(f.code).toBe(422);
  });

  it('label selectors; field selectors metadata.name only (400 for any other)', async () => {
    await coord.createNamespacedLease({ namespace, body: lease('nslb-node-b', {}, { 'nslb.dev/node': 'b' }) });
    await coord.createNamespacedLease({ namespace, body: lease('nslb-scheduler', { holderIdentity: 'b', leaseDurationSeconds: 15 }) });
    await coord.createNamespacedLease({ namespace: 'kube-node-lease', body: { ...lease('b'), metadata: { name: 'b', namespace: 'kube-node-lease' } } });
    const names = (r: { items: V1Lease[] }) => r.items.map((l) => l.metadata?.name).sort();
    expect(names(await coord.listNamespacedLease({ namespace }))).toEqual(['nslb-node-a', 'nslb-node-b', 'nslb-scheduler']);
    expect(names(await coord.listNamespacedLease({ namespace, labelSelector: 'nslb.dev/node=b' }))).toEqual(['nslb-node-b']);
    expect(names(await coord.listNamespacedLease({ namespace, labelSelector: 'nslb.dev/node' }))).toEqual(['nslb-node-b']);
    expect(names(await coord.listNamespacedLease({ namespace, fieldSelector: 'metadata.name=nslb-scheduler' }))).toEqual(['nslb-scheduler']);
    expect(names(await coord.listLeaseForAllNamespaces({ fieldSelector: 'metadata.namespace=kube-node-lease' }))).toEqual(['b']);
    expect((await failure(coord.listNamespacedLease({ namespace, fieldSelector: 'spec.holderIdentity=b' }))).code).toBe(400);
  });

  it('watch from a resourceVersion: every renewal is a MODIFIED event; after compaction an old one is 410 Expired', async () => {
    const from = api.resourceVersion;
    const base = `${api.url}/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases?watch=true`;
    const events = await watchLines(`${base}&resourceVersion=${from}`, 2, async () => {
      for (let i = 0; i < 2; i++) {
        const l = await coord.readNamespacedLease({ name: 'nslb-node-b', namespace });
        await coord.replaceNamespacedLease({ name: 'nslb-node-b', namespace, body: { ...l, spec: { ...l.spec, renewTime: now() as never } } });
        await sleep(2);
      }
    });
    expect(events.map((e) => [e.type, e.object.metadata.name])).toEqual([
      ['MODIFIED', 'nslb-node-b'],
      ['MODIFIED', 'nslb-node-b'],
    ]);
    expect(Number(events[1]!.object.metadata.resourceVersion)).toBeGreaterThan(Number(events[0]!.object.metadata.resourceVersion));
    api.compact();
    const expired = await watchLines(`${base}&resourceVersion=${from}`, 1, async () => {});
    expect(expired[0]).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
  });

  it('a merge patch with a stale resourceVersion is a 409 too (a precondition), a deletion a DELETED event', async () => {
    const l = await coord.readNamespacedLease({ name: 'nslb-node-b', namespace });
    await coord.patchNamespacedLease(
      { name: 'nslb-node-b', namespace, body: { spec: { holderIdentity: 'x' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const f = await failure(
      coord.patchNamespacedLease(
        { name: 'nslb-node-b', namespace, body: { metadata: { resourceVersion: l.metadata?.resourceVersion }, spec: { holderIdentity: 'y' } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect(f.code).toBe(409);
    const events = await watchLines(
      `${api.url}/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases?watch=true&resourceVersion=${api.resourceVersion}`,
      1,
      async () => {
        await coord.deleteNamespacedLease({ name: 'nslb-node-b', namespace });
      },
    );
    expect(events.map((e) => [e.type, e.object.metadata.name])).toEqual([['DELETED', 'nslb-node-b']]);
  });
});

describe('Nodes: labels as the scheduler reads them', () => {
  it('label selectors (equality, existence) and an informer that sees the drain label come and go', async () => {
    await core.createNode({ body: node('net1', '10.1.0.1', true, { zone: 'a' }) as never });
    await core.createNode({ body: node('net2', '10.1.0.2', true, { zone: 'b', ssd: 'true' }) as never });
    const names = async (labelSelector: string) => (await core.listNode({ labelSelector })).items.map((n) => n.metadata?.name).sort();
    expect(await names('zone=b')).toEqual(['net2']);
    expect(await names('ssd')).toEqual(['net2']);
    expect(await names('zone')).toEqual(['net1', 'net2']);

    const seen: string[] = [];
    const inf = makeInformer<KubernetesObject>(kc, '/api/v1/nodes', () => core.listNode() as never);
    inf.on('update', (n) => seen.push(`${n.metadata?.name}:${n.metadata?.labels?.['nslb.dev/drain'] ?? '-'}`));
    await inf.start();
    await core.patchNode(
      { name: 'net1', body: { metadata: { labels: { 'nslb.dev/drain': 'true' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await core.patchNode(
      { name: 'net1', body: { metadata: { labels: { 'nslb.dev/drain': null } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    for (let i = 0; i < 50 && seen.length < 2; i++) await sleep(20);
    await inf.stop();
    expect(seen).toEqual(['net1:true', 'net1:-']);
  });

  it('a stale Node update is 409; a label change through /status is ignored (status only)', async () => {
    const n = await core.readNode({ name: 'net2' });
    await core.replaceNode({ name: 'net2', body: { ...n, metadata: { ...n.metadata, labels: { ...n.metadata?.labels, rack: 'r1' } } } });
    expect((await failure(core.replaceNode({ name: 'net2', body: { ...n, metadata: { ...n.metadata, labels: { rack: 'r2' } } } }))).code).toBe(409);
    const fresh = await core.readNode({ name: 'net2' });
    await core.replaceNodeStatus({ name: 'net2', body: { ...fresh, metadata: { ...fresh.metadata, labels: { rack: 'r3' } } } });
    expect((await core.readNode({ name: 'net2' })).metadata?.labels?.rack).toBe('r1');
  });
});
