// The in-test API server (test/support/fake-apiserver.ts) proven through @kubernetes/client-node itself: the
// same client, call shapes and informer the agent uses. If these pass, tests built on the fake exercise the
// paths a real apiserver would (409s, 410s, status subresource, finalizers), not a stub that accepts anything.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeApiServer, type JsonObject } from '../support/fake-apiserver.js';
import { failure, startFakeApiServer } from '../support/fake-apiserver-client.js';

const group = 'nslb.dev';
const version = 'v1alpha1';
const namespace = 'default';
const plural = 'loadbalancers';
const AV = `${group}/${version}`;

type Obj = KubernetesObject & {
  spec?: JsonObject;
  status?: JsonObject;
  metadata: NonNullable<KubernetesObject['metadata']> & { deletionTimestamp?: unknown; deletionGracePeriodSeconds?: number };
};

function lb(name: string, extra: JsonObject = {}): JsonObject {
  return { apiVersion: AV, kind: 'LoadBalancer', metadata: { name, namespace }, spec: { vip: { address: '10.0.0.10' } }, ...extra };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A raw watch stream (global fetch), for wire-level assertions. */
async function rawWatch(url: string): Promise<{ status: number; next(timeoutMs?: number): Promise<JsonObject | 'end'>; close(): void }> {
  const ac = new AbortController();
  const res = await fetch(url, { signal: ac.signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let ended = false;
  return {
    status: res.status,
    async next(timeoutMs = 2000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          return JSON.parse(line) as JsonObject;
        }
        if (ended) return 'end';
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('no watch event in time');
        const r = await Promise.race([reader.read(), sleep(left).then(() => undefined)]);
        if (r === undefined) throw new Error('no watch event in time');
        if (r.done) ended = true;
        else buf += decoder.decode(r.value, { stream: true });
      }
    },
    close() {
      ac.abort();
    },
  };
}

let fake: FakeApiServer;
let kc: KubeConfig;
let api: CustomObjectsApi;

beforeEach(async () => {
  ({ server: fake, kubeConfig: kc } = await startFakeApiServer());
  api = kc.makeApiClient(CustomObjectsApi);
});

afterEach(async () => {
  await fake.stop();
});

describe('CRUD through CustomObjectsApi', () => {
  it('creates, gets and lists with server-set metadata; 409 AlreadyExists; 404 NotFound', async () => {
    const created = (await api.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: lb('lb1', { status: { provisioningStatus: 'ACTIVE' } }),
    })) as Obj;
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata.generation).toBe(1);
    expect(created.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(created.status).toBeUndefined(); // status subresource: dropped on create

    const got = (await api.getNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1' })) as Obj;
    expect(got).toEqual(created);

    const dup = await failure(api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') }));
    expect(dup.code).toBe(409);
    expect(dup.status).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'AlreadyExists', code: 409 });

    const missing = await failure(api.getNamespacedCustomObject({ group, version, namespace, plural, name: 'nope' }));
    expect(missing.code).toBe(404);
    expect(missing.status).toMatchObject({ reason: 'NotFound', message: 'loadbalancers.nslb.dev "nope" not found' });

    await api.createNamespacedCustomObject({ group, version, namespace: 'other', plural, body: lb('lb2', { metadata: { name: 'lb2', namespace: 'other' } }) });
    const all = (await api.listClusterCustomObject({ group, version, plural })) as { kind: string; metadata: { resourceVersion: string }; items: Obj[] };
    expect(all.kind).toBe('LoadBalancerList');
    expect(all.metadata.resourceVersion).toBe(fake.resourceVersion);
    expect(all.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['default/lb1', 'other/lb2']);
    const inDefault = (await api.listNamespacedCustomObject({ group, version, namespace, plural })) as { items: Obj[] };
    expect(inDefault.items.map((o) => o.metadata.name)).toEqual(['lb1']);
  });

  it('refuses what the apiserver refuses: wrong kind, namespace mismatch, resourceVersion on create, bad name', async () => {
    expect((await failure(api.createNamespacedCustomObject({ group, version, namespace, plural, body: { ...lb('x'), kind: 'Pool' } }))).code).toBe(400);
    expect((await failure(api.createNamespacedCustomObject({ group, version, namespace: 'a', plural, body: lb('x') }))).code).toBe(400);
    const withRv = lb('x', { metadata: { name: 'x', resourceVersion: '5' } });
    expect((await failure(api.createNamespacedCustomObject({ group, version, namespace, plural, body: withRv }))).code).toBe(500);
    const badName = await failure(api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('Bad_Name') }));
    expect(badName.code).toBe(422);
    expect(badName.status.reason).toBe('Invalid');
  });

  it('replace: 409 on a stale resourceVersion, 422 without one; generation moves only with spec; status in the body is ignored', async () => {
    const v1 = (await api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') })) as Obj;

    // Labels only: new resourceVersion, same generation.
    const v2 = (await api.replaceNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: { ...v1, metadata: { ...v1.metadata, labels: { a: 'b' } } },
    })) as Obj;
    expect(Number(v2.metadata.resourceVersion)).toBeGreaterThan(Number(v1.metadata.resourceVersion));
    expect(v2.metadata.generation).toBe(1);

    // The old resourceVersion is stale now.
    const stale = await failure(
      api.replaceNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1', body: { ...v1, spec: { vip: { address: '10.0.0.11' } } } }),
    );
    expect(stale.code).toBe(409);
    expect(stale.status).toMatchObject({ reason: 'Conflict', code: 409 });
    expect(stale.status.message).toContain('the object has been modified');

    // No resourceVersion at all: custom resources refuse unconditional updates.
    const { resourceVersion: _rv, ...noRv } = v2.metadata;
    const unconditional = await failure(api.replaceNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1', body: { ...v2, metadata: noRv } }));
    expect(unconditional.code).toBe(422);

    // Spec change: generation 2. Status in a main-resource PUT is ignored.
    const v3 = (await api.replaceNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: { ...v2, spec: { vip: { address: '10.0.0.11' } }, status: { provisioningStatus: 'ACTIVE' } },
    })) as Obj;
    expect(v3.metadata.generation).toBe(2);
    expect(v3.spec).toEqual({ vip: { address: '10.0.0.11' } });
    expect(v3.status).toBeUndefined();

    // Nothing changed: no write at all (same resourceVersion), as etcd3 does.
    const v4 = (await api.replaceNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1', body: v3 })) as Obj;
    expect(v4.metadata.resourceVersion).toBe(v3.metadata.resourceVersion);

    // A status written through the subresource survives main-resource writes that carry another (or none).
    const v5 = (await api.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: { ...v4, status: { provisioningStatus: 'ACTIVE' } },
    })) as Obj;
    const { status: _s, ...noStatus } = v5;
    const v6 = (await api.replaceNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: { ...noStatus, spec: { vip: { address: '10.0.0.13' } } },
    })) as Obj;
    expect(v6.status).toEqual({ provisioningStatus: 'ACTIVE' });
    expect(v6.metadata.generation).toBe(3);
    const v7 = (await api.replaceNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: { ...v6, status: { provisioningStatus: 'ERROR' } },
    })) as Obj;
    expect(v7.status).toEqual({ provisioningStatus: 'ACTIVE' });
    expect(v7.metadata.resourceVersion).toBe(v6.metadata.resourceVersion);
  });

  it('status subresource: replaceStatus changes only status, never spec or generation; stale → 409', async () => {
    const v1 = (await api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') })) as Obj;
    const v2 = (await api.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: {
        ...v1,
        spec: { vip: { address: '192.0.2.1' } },
        metadata: { ...v1.metadata, finalizers: ['x/y'] },
        status: { provisioningStatus: 'ACTIVE', observedGeneration: 1 },
      },
    })) as Obj;
    expect(v2.status).toEqual({ provisioningStatus: 'ACTIVE', observedGeneration: 1 });
    expect(v2.spec).toEqual(v1.spec);
    expect(v2.metadata.finalizers).toBeUndefined();
    expect(v2.metadata.generation).toBe(1);
    expect(Number(v2.metadata.resourceVersion)).toBeGreaterThan(Number(v1.metadata.resourceVersion));

    const stale = await failure(
      api.replaceNamespacedCustomObjectStatus({ group, version, namespace, plural, name: 'lb1', body: { ...v1, status: { provisioningStatus: 'ERROR' } } }),
    );
    expect(stale.code).toBe(409);

    const viaStatusGet = (await api.getNamespacedCustomObjectStatus({ group, version, namespace, plural, name: 'lb1' })) as Obj;
    expect(viaStatusGet.status).toEqual(v2.status);
    expect(fake.statusWrites('LoadBalancer')).toBe(2);
    expect(fake.statusWrites('pools')).toBe(0);
  });

  it('patch: merge patch via setHeaderOptions, JSON patch by default; resourceVersion in the patch is a precondition', async () => {
    const v1 = (await api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') })) as Obj;
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

    const v2 = (await api.patchNamespacedCustomObject(
      { group, version, namespace, plural, name: 'lb1', body: { spec: { vip: { address: '10.0.0.12' } }, status: { provisioningStatus: 'ERROR' } } },
      mergePatch,
    )) as Obj;
    expect(v2.spec).toEqual({ vip: { address: '10.0.0.12' } });
    expect(v2.status).toBeUndefined();
    expect(v2.metadata.generation).toBe(2);
    expect(fake.requestLog().at(-1)).toMatchObject({ method: 'PATCH', contentType: 'application/merge-patch+json' });

    // Without options client-node 1.3 sends application/json-patch+json: the body must be an operation list.
    const v3 = (await api.patchNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: [{ op: 'add', path: '/metadata/labels', value: { tier: 'edge' } }],
    })) as Obj;
    expect(v3.metadata.labels).toEqual({ tier: 'edge' });
    expect(v3.metadata.generation).toBe(2);
    expect(fake.requestLog().at(-1)).toMatchObject({ contentType: 'application/json-patch+json' });

    // A failed JSON-patch test op is 422.
    const testOp = await failure(
      api.patchNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        name: 'lb1',
        body: [
          { op: 'test', path: '/metadata/resourceVersion', value: v1.metadata.resourceVersion },
          { op: 'remove', path: '/metadata/labels' },
        ],
      }),
    );
    expect(testOp.code).toBe(422);

    // Stale resourceVersion carried by a merge patch → 409; the current one → applied.
    const stale = await failure(
      api.patchNamespacedCustomObject(
        { group, version, namespace, plural, name: 'lb1', body: { metadata: { resourceVersion: v1.metadata.resourceVersion, finalizers: ['a/b'] } } },
        mergePatch,
      ),
    );
    expect(stale.code).toBe(409);
    const v4 = (await api.patchNamespacedCustomObject(
      { group, version, namespace, plural, name: 'lb1', body: { metadata: { resourceVersion: v3.metadata.resourceVersion, finalizers: ['a/b'] } } },
      mergePatch,
    )) as Obj;
    expect(v4.metadata.finalizers).toEqual(['a/b']);

    // Status patch: status only, generation unchanged.
    const v5 = (await api.patchNamespacedCustomObjectStatus(
      { group, version, namespace, plural, name: 'lb1', body: { spec: { vip: { address: '1.1.1.1' } }, status: { provisioningStatus: 'ACTIVE' } } },
      mergePatch,
    )) as Obj;
    expect(v5.status).toEqual({ provisioningStatus: 'ACTIVE' });
    expect(v5.spec).toEqual({ vip: { address: '10.0.0.12' } });
    expect(v5.metadata.generation).toBe(2);

    // Strategic merge patch does not exist for custom resources.
    const smp = await failure(
      api.patchNamespacedCustomObject(
        { group, version, namespace, plural, name: 'lb1', body: { spec: {} } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
    );
    expect(smp.code).toBe(415);
  });

  it('failNextStatusWriteWithConflict: one 409, then the retry goes through; counted', async () => {
    const v1 = (await api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') })) as Obj;
    fake.failNextStatusWriteWithConflict();
    const first = await failure(
      api.replaceNamespacedCustomObjectStatus({ group, version, namespace, plural, name: 'lb1', body: { ...v1, status: { provisioningStatus: 'ACTIVE' } } }),
    );
    expect(first.code).toBe(409);
    expect(first.status.reason).toBe('Conflict');
    expect(fake.get(AV, plural, namespace, 'lb1')?.status).toBeUndefined();
    await api.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace,
      plural,
      name: 'lb1',
      body: { ...v1, status: { provisioningStatus: 'ACTIVE' } },
    });
    expect(fake.get(AV, plural, namespace, 'lb1')?.status).toEqual({ provisioningStatus: 'ACTIVE' });
    expect(fake.statusWrites()).toBe(2);
  });
});

describe('test helpers (no HTTP, same semantics)', () => {
  it('apply() creates, then replaces spec and keeps finalizers and status; update() bumps generation; errors are ApiError', () => {
    const a = fake.apply(lb('lb1', { metadata: { name: 'lb1', namespace, finalizers: ['nslb.dev/cleanup'] } }));
    expect((a.metadata as JsonObject).generation).toBe(1);
    fake.patchStatus(AV, plural, namespace, 'lb1', { status: { provisioningStatus: 'ACTIVE' } });
    const b = fake.apply(lb('lb1', { spec: { vip: { address: '10.0.0.99' } } }));
    expect(b).toMatchObject({
      spec: { vip: { address: '10.0.0.99' } },
      status: { provisioningStatus: 'ACTIVE' },
      metadata: { generation: 2, finalizers: ['nslb.dev/cleanup'] },
    });
    const c = fake.update({ ...b, spec: { vip: { address: '10.0.0.98' } } });
    expect((c.metadata as JsonObject).generation).toBe(3);
    expect(() => fake.update({ ...b, spec: {} })).toThrow(expect.objectContaining({ code: 409, reason: 'Conflict' }));
    expect(() => fake.create(lb('lb1'))).toThrow(expect.objectContaining({ code: 409, reason: 'AlreadyExists' }));
    expect(fake.delete(AV, plural, namespace, 'lb1')).toMatchObject({ metadata: { deletionTimestamp: expect.any(String) } });
    expect(fake.patch(AV, plural, namespace, 'lb1', [{ op: 'remove', path: '/metadata/finalizers' }], 'json')).toBeDefined();
    expect(fake.get(AV, plural, namespace, 'lb1')).toBeUndefined();
  });
});

describe('finalizers and deletionTimestamp', () => {
  it('delete marks, the last finalizer removed deletes; no new finalizers while deleting', async () => {
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await api.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: lb('lb1', { metadata: { name: 'lb1', finalizers: ['nslb.dev/cleanup', 'other.io/keep'] } }),
    });
    const watch = await rawWatch(`${fake.url}/apis/${AV}/namespaces/${namespace}/${plural}?watch=true&resourceVersion=${fake.resourceVersion}`);

    const marked = (await api.deleteNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1' })) as Obj;
    expect(marked.metadata.deletionTimestamp).toEqual(expect.any(String));
    expect(marked.metadata.deletionGracePeriodSeconds).toBe(0);
    expect(fake.get(AV, plural, namespace, 'lb1')).toBeDefined();
    const ev1 = await watch.next();
    expect(ev1).toMatchObject({ type: 'MODIFIED', object: { metadata: { name: 'lb1', deletionTimestamp: marked.metadata.deletionTimestamp } } });

    // Deleting again changes nothing.
    const again = (await api.deleteNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1' })) as Obj;
    expect(again.metadata.resourceVersion).toBe(marked.metadata.resourceVersion);

    const add = await failure(
      api.patchNamespacedCustomObject(
        { group, version, namespace, plural, name: 'lb1', body: { metadata: { finalizers: ['nslb.dev/cleanup', 'other.io/keep', 'new.io/x'] } } },
        mergePatch,
      ),
    );
    expect(add.code).toBe(422);
    expect(add.status.message).toContain('no new finalizers can be added if the object is being deleted');

    // Status still writable while deleting.
    await api.patchNamespacedCustomObjectStatus(
      { group, version, namespace, plural, name: 'lb1', body: { status: { provisioningStatus: 'PENDING_DELETE' } } },
      mergePatch,
    );
    expect(await watch.next()).toMatchObject({ type: 'MODIFIED', object: { status: { provisioningStatus: 'PENDING_DELETE' } } });

    // Remove ours, keep the other's (guarded by resourceVersion): still there.
    const cur = fake.get(AV, plural, namespace, 'lb1')!;
    await api.patchNamespacedCustomObject(
      {
        group,
        version,
        namespace,
        plural,
        name: 'lb1',
        body: { metadata: { resourceVersion: (cur.metadata as JsonObject).resourceVersion, finalizers: ['other.io/keep'] } },
      },
      mergePatch,
    );
    expect(fake.get(AV, plural, namespace, 'lb1')).toBeDefined();
    expect(await watch.next()).toMatchObject({ type: 'MODIFIED', object: { metadata: { finalizers: ['other.io/keep'] } } });

    // The last one goes: the object goes, one DELETED event.
    await api.patchNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1', body: { metadata: { finalizers: null } } }, mergePatch);
    expect((await failure(api.getNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1' }))).code).toBe(404);
    const del = await watch.next();
    expect(del).toMatchObject({ type: 'DELETED', object: { metadata: { name: 'lb1' } } });
    expect((del as { object: { metadata: { resourceVersion: string } } }).object.metadata.resourceVersion).toBe(fake.resourceVersion);
    watch.close();
  });

  it('delete without finalizers removes at once and answers a Success Status', async () => {
    const created = (await api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') })) as Obj;
    const res = (await api.deleteNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1' })) as JsonObject;
    expect(res).toMatchObject({ kind: 'Status', status: 'Success', details: { name: 'lb1', uid: created.metadata.uid } });
    expect(fake.get(AV, plural, namespace, 'lb1')).toBeUndefined();
    expect((await failure(api.deleteNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1' }))).code).toBe(404);
  });

  it('delete preconditions are checked', async () => {
    await api.createNamespacedCustomObject({ group, version, namespace, plural, body: lb('lb1') });
    const r = await failure(
      api.deleteNamespacedCustomObject({ group, version, namespace, plural, name: 'lb1', body: { preconditions: { resourceVersion: '1' } } }),
    );
    expect(r.code).toBe(409);
  });
});

describe('watch on the wire', () => {
  const base = (): string => `${fake.url}/apis/${AV}/namespaces/${namespace}/${plural}`;

  it('without resourceVersion starts with synthetic ADDED; from N replays only later events', async () => {
    fake.create(lb('a'));
    const rvAfterA = fake.resourceVersion;
    fake.create(lb('b'));
    const w1 = await rawWatch(`${base()}?watch=true`);
    expect(w1.status).toBe(200);
    expect(((await w1.next()) as { object: Obj }).object.metadata.name).toBe('a');
    expect(((await w1.next()) as { object: Obj }).object.metadata.name).toBe('b');
    w1.close();

    const w2 = await rawWatch(`${base()}?watch=1&resourceVersion=${rvAfterA}`);
    expect(await w2.next()).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'b' } } });
    fake.patch(AV, plural, namespace, 'a', { spec: { vip: { address: '10.9.9.9' } } });
    expect(await w2.next()).toMatchObject({ type: 'MODIFIED', object: { metadata: { name: 'a', generation: 2 } } });
    fake.delete(AV, plural, namespace, 'b');
    expect(await w2.next()).toMatchObject({ type: 'DELETED', object: { metadata: { name: 'b' } } });
    w2.close();
  });

  it('a resourceVersion older than the history is an ERROR event with a 410 Expired Status, then the stream ends', async () => {
    fake.create(lb('a'));
    const old = fake.resourceVersion;
    fake.create(lb('b'));
    fake.compact();
    const w = await rawWatch(`${base()}?watch=true&resourceVersion=${old}`);
    expect(w.status).toBe(200);
    expect(await w.next()).toMatchObject({
      type: 'ERROR',
      object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 },
    });
    expect(await w.next()).toBe('end');
    // The current resourceVersion is still fine.
    const ok = await rawWatch(`${base()}?watch=true&resourceVersion=${fake.resourceVersion}`);
    fake.create(lb('c'));
    expect(await ok.next()).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'c' } } });
    ok.close();
  });

  it('bookmarks only when asked; timeoutSeconds ends the stream; closeWatches ends them all', async () => {
    const withBm = await rawWatch(`${base()}?watch=true&resourceVersion=${fake.resourceVersion}&allowWatchBookmarks=true`);
    const without = await rawWatch(`${base()}?watch=true&resourceVersion=${fake.resourceVersion}&timeoutSeconds=1`);
    fake.create(lb('other', { metadata: { name: 'other', namespace: 'elsewhere' } })); // another namespace: not on these watches
    fake.sendBookmarks();
    expect(await withBm.next()).toEqual({
      type: 'BOOKMARK',
      object: { kind: 'LoadBalancer', apiVersion: AV, metadata: { resourceVersion: fake.resourceVersion } },
    });
    expect(await without.next(3000)).toBe('end'); // nothing but the end after 1s
    expect(fake.closeWatches()).toBe(1);
    expect(await withBm.next()).toBe('end');
  });

  it('periodic bookmarks with bookmarkIntervalMs', async () => {
    await fake.stop();
    fake = new FakeApiServer({ bookmarkIntervalMs: 50 });
    await fake.start();
    const w = await rawWatch(`${base()}?watch=true&resourceVersion=${fake.resourceVersion}&allowWatchBookmarks=true`);
    expect(await w.next()).toMatchObject({ type: 'BOOKMARK' });
    expect(await w.next()).toMatchObject({ type: 'BOOKMARK' });
    w.close();
  });

  it('unknown paths are a 404 Status; discovery lists the kinds', async () => {
    const r = await fetch(`${fake.url}/apis/nslb.dev/v1alpha1/namespaces/default/widgets`);
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404 });
    const d = (await (await fetch(`${fake.url}/apis/nslb.dev/v1alpha1`)).json()) as { resources: { name: string }[] };
    expect(d.resources.map((x) => x.name)).toContain('loadbalancers/status');
  });
});

describe('informer (makeInformer + ListWatch)', () => {
  let informer: Informer<Obj> & { list(ns?: string): readonly Obj[]; latestResourceVersion(): string };
  let seen: string[];
  let errors: unknown[];
  let connects: number;

  beforeEach(() => {
    seen = [];
    errors = [];
    connects = 0;
    informer = makeInformer<Obj>(kc, `/apis/${AV}/${plural}`, () => api.listClusterCustomObject({ group, version, plural })) as typeof informer;
    informer.on('add', (o) => seen.push(`add ${o.metadata.name}`));
    informer.on('update', (o) => seen.push(`update ${o.metadata.name}`));
    informer.on('delete', (o) => seen.push(`delete ${o.metadata.name}`));
    informer.on('error', (e) => errors.push(e));
    informer.on('connect', () => (connects += 1));
  });

  afterEach(async () => {
    await informer.stop();
  });

  it('lists, then receives ADDED/MODIFIED/DELETED from the watch', async () => {
    fake.create(lb('lb1'));
    await informer.start();
    expect(seen).toEqual(['add lb1']);
    await fake.waitForWatches(plural);
    fake.create(lb('lb2'));
    fake.patchStatus(AV, plural, namespace, 'lb1', { status: { provisioningStatus: 'ACTIVE' } });
    fake.delete(AV, plural, namespace, 'lb2');
    await vi.waitFor(() => expect(seen).toEqual(['add lb1', 'add lb2', 'update lb1', 'delete lb2']));
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['lb1']);
    expect(informer.list()[0]?.status).toEqual({ provisioningStatus: 'ACTIVE' });
    expect(errors).toEqual([]);
  });

  it('re-watches from its resourceVersion, without a relist, when the server closes the stream', async () => {
    fake.create(lb('lb1'));
    await informer.start();
    await fake.waitForWatches(plural);
    const rv = informer.latestResourceVersion();
    fake.clearRequestLog();
    expect(fake.closeWatches()).toBe(1);
    await fake.waitForWatches(plural);
    fake.create(lb('lb2'));
    await vi.waitFor(() => expect(seen).toEqual(['add lb1', 'add lb2']));
    const log = fake.requestLog();
    expect(log.filter((e) => !e.watch)).toEqual([]); // no list
    expect(log.filter((e) => e.watch)).toEqual([expect.objectContaining({ method: 'GET', query: { watch: 'true', resourceVersion: rv }, status: 200 })]);
    expect(connects).toBe(2);
    expect(errors).toEqual([]);
  });

  it('relists after 410 Gone (compacted history), firing delete/add for what it missed', async () => {
    fake.create(lb('lb1'));
    fake.create(lb('lb2'));
    await informer.start();
    await fake.waitForWatches(plural);
    const rv = informer.latestResourceVersion();
    // While the informer is away, lb1 goes, lb3 comes, and the history is compacted.
    await informer.stop();
    fake.delete(AV, plural, namespace, 'lb1');
    fake.create(lb('lb3'));
    fake.compact();
    fake.clearRequestLog();
    errors.length = 0; // stop() aborts the watch; client-node reports that AbortError on 'error'
    seen.length = 0;
    await informer.start();
    await vi.waitFor(() => expect(seen.sort()).toEqual(['add lb3', 'delete lb1']));
    await fake.waitForWatches(plural);
    const log = fake.requestLog();
    expect(log.map((e) => (e.watch ? `watch ${e.query.resourceVersion}` : 'list'))).toEqual([`watch ${rv}`, 'list', `watch ${fake.resourceVersion}`]);
    expect(errors).toEqual([]);
  });

  it('relists after 410 when a closed stream comes back with an expired resourceVersion (writes to other kinds moved the revision)', async () => {
    fake.create(lb('lb1'));
    await informer.start();
    await fake.waitForWatches(plural);
    // Another kind moves the global revision; the LoadBalancer watch does not see it (no bookmarks).
    fake.create({ apiVersion: AV, kind: 'Pool', metadata: { name: 'p', namespace }, spec: {} });
    fake.compact();
    fake.clearRequestLog();
    fake.closeWatches();
    await vi.waitFor(() => expect(fake.requestLog().filter((e) => !e.watch)).toHaveLength(1)); // the relist
    await fake.waitForWatches(plural);
    expect(informer.latestResourceVersion()).toBe(fake.resourceVersion);
    fake.create(lb('lb2'));
    await vi.waitFor(() => expect(seen).toEqual(['add lb1', 'add lb2']));
    expect(errors).toEqual([]);
  });

  it('stops on any other error (server gone): the caller must restart it with start()', async () => {
    fake.create(lb('lb1'));
    await informer.start();
    await fake.waitForWatches(plural);
    await fake.stop();
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0));
    await fake.start(); // same port
    fake.create(lb('lb2'));
    await sleep(300);
    expect(seen).toEqual(['add lb1']); // nobody re-watched
    await informer.start();
    await vi.waitFor(() => expect(seen).toEqual(['add lb1', 'add lb2']));
  });
});

describe('built-in kinds the agent touches', () => {
  it('core Events: CoreV1Api.createNamespacedEvent, generateName, validation, list', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const now = new Date();
    const ev = await core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: 'lb1.' },
        involvedObject: { apiVersion: AV, kind: 'LoadBalancer', name: 'lb1', namespace, uid: 'u-1' },
        reason: 'Provisioned',
        message: 'HAProxy is serving',
        type: 'Normal',
        source: { component: 'nslb' },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
    expect(ev.metadata.name).toMatch(/^lb1\.[a-z0-9]{5}$/);
    expect(ev.kind).toBe('Event');
    const list = await core.listNamespacedEvent({ namespace });
    expect(list.items.map((e) => e.reason)).toEqual(['Provisioned']);
    expect(fake.events(namespace)).toHaveLength(1);
    const bad = await failure(
      core.createNamespacedEvent({
        namespace,
        body: { metadata: { name: 'x' }, involvedObject: { name: 'lb1', namespace: 'elsewhere' }, type: 'Fatal' },
      }),
    );
    expect(bad.code).toBe(422);
  });

  it('events.k8s.io/v1 Events are validated as the real apiserver does', async () => {
    const events = kc.makeApiClient(EventsV1Api);
    const micro = '2026-01-02T03:04:05.123456Z';
    const bad = await failure(
      events.createNamespacedEvent({ namespace, body: { metadata: { name: 'e1' }, eventTime: micro as never, reason: 'X', type: 'Normal' } }),
    );
    expect(bad.code).toBe(422);
    expect(bad.status.message).toContain('reportingController: Required value');
    const body = {
      metadata: { name: 'e1' },
      eventTime: micro as never,
      reportingController: 'nslb.dev/agent',
      reportingInstance: 'node-1',
      action: 'Provision',
      reason: 'Provisioned',
      type: 'Normal',
      note: 'ok',
      regarding: { apiVersion: AV, kind: 'LoadBalancer', name: 'lb1', namespace, uid: 'u-1' },
    };
    // A Date goes out with milliseconds, which metav1.MicroTime cannot parse.
    const millis = await failure(events.createNamespacedEvent({ namespace, body: { ...body, eventTime: new Date() } }));
    expect(millis.code).toBe(400);
    expect(millis.status.message).toContain('MicroTime');
    // The legacy fields are core/v1's business.
    const legacy = await failure(events.createNamespacedEvent({ namespace, body: { ...body, deprecatedCount: 3 } }));
    expect(legacy.status.message).toContain('deprecatedCount: Invalid value: "": needs to be unset');
    const lone = await failure(events.createNamespacedEvent({ namespace, body: { ...body, series: { count: 1, lastObservedTime: micro as never } } }));
    expect(lone.status.message).toContain('series.count');
    const ok = await events.createNamespacedEvent({ namespace, body });
    expect(ok.metadata?.resourceVersion).toBe(fake.resourceVersion);
  });

  it('one Event store behind both APIs: written as events.k8s.io/v1, read as core/v1 (what kubectl describe lists)', async () => {
    const events = kc.makeApiClient(EventsV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const micro = '2026-01-02T03:04:05.123456Z';
    await events.createNamespacedEvent({
      namespace,
      body: {
        metadata: { name: 'm1.1' },
        eventTime: micro as never,
        reportingController: 'nslb.dev/agent',
        reportingInstance: 'nslb.dev/agent-node-1',
        action: 'Validate',
        reason: 'InvalidReference',
        type: 'Warning',
        note: 'spec.pool: pool "p" does not exist',
        regarding: { apiVersion: AV, kind: 'Member', name: 'm1', namespace, uid: 'u-m1' },
      },
    });
    const seen = await core.listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.kind=Member,involvedObject.name=m1,involvedObject.uid=u-m1' });
    expect(seen.items).toHaveLength(1);
    expect(seen.items[0]).toMatchObject({
      message: 'spec.pool: pool "p" does not exist',
      reportingComponent: 'nslb.dev/agent',
      type: 'Warning',
      involvedObject: { name: 'm1' },
    });
    expect((await core.listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.name=other' })).items).toHaveLength(0);
    expect((await events.listNamespacedEvent({ namespace, fieldSelector: 'regarding.name=m1,reportingController=nslb.dev/agent' })).items).toHaveLength(1);
    expect((await failure(core.listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.colour=red' }))).code).toBe(400);

    // A series: merge patch of series; the note and the reference are immutable through events.k8s.io/v1.
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await events.patchNamespacedEvent({ name: 'm1.1', namespace, body: { series: { count: 5, lastObservedTime: '2026-01-02T03:05:00.000000Z' } } }, merge);
    expect(fake.events(namespace, 'involvedObject.name=m1')[0]).toMatchObject({ series: { count: 5 } });
    const immutable = await failure(events.patchNamespacedEvent({ name: 'm1.1', namespace, body: { note: 'something else' } }, merge));
    expect(immutable.code).toBe(422);
    expect(immutable.status.message).toContain('note: Invalid value: field is immutable');
  });

  it('eventsV1: false stands for a server with core/v1 Events only', async () => {
    const old = new FakeApiServer({ eventsV1: false });
    await old.start();
    try {
      const res = await fetch(`${old.url}/apis/events.k8s.io/v1/namespaces/default/events`);
      expect(res.status).toBe(404);
      const groups = (await (await fetch(`${old.url}/apis`)).json()) as { groups: { name: string }[] };
      expect(groups.groups.map((g) => g.name)).not.toContain('events.k8s.io');
    } finally {
      await old.stop();
    }
  });

  it('a request delay is waited per request: requests made together are in flight together, one after another they chain', async () => {
    fake.setRequestDelay(20);
    const api = kc.makeApiClient(CustomObjectsApi);
    for (let i = 0; i < 10; i++) fake.create(lb(`c${i}`));
    fake.clearRequestLog();
    await Promise.all(Array.from({ length: 10 }, (_, i) => api.getNamespacedCustomObject({ group, version, namespace, plural, name: `c${i}` })));
    const gets = (e: { method: string }) => e.method === 'GET';
    expect(fake.peakConcurrency(gets)).toBe(10);
    expect(fake.longestChain(gets)).toBe(1);
    fake.clearRequestLog();
    for (let i = 0; i < 5; i++) await api.getNamespacedCustomObject({ group, version, namespace, plural, name: `c${i}` });
    expect(fake.peakConcurrency(gets)).toBe(1);
    expect(fake.longestChain(gets)).toBe(5);
    fake.setRequestDelay(0);
  });

  it('Leases: create, read, replace with optimistic concurrency', async () => {
    const coord = kc.makeApiClient(CoordinationV1Api);
    const l1 = await coord.createNamespacedLease({ namespace, body: { metadata: { name: 'nslb' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } } });
    const l2 = await coord.replaceNamespacedLease({ name: 'nslb', namespace, body: { ...l1, spec: { ...l1.spec, holderIdentity: 'b' } } });
    expect(l2.spec?.holderIdentity).toBe('b');
    const stale = await failure(coord.replaceNamespacedLease({ name: 'nslb', namespace, body: { ...l1, spec: { holderIdentity: 'c' } } }));
    expect(stale.code).toBe(409);
    expect((await coord.readNamespacedLease({ name: 'nslb', namespace })).spec?.holderIdentity).toBe('b');
  });
});

describe('CRD schemas (crds option)', () => {
  const crd = {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'listeners.nslb.dev' },
    spec: {
      group,
      scope: 'Namespaced',
      names: { kind: 'Listener', plural: 'listeners', singular: 'listener', listKind: 'ListenerList' },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object', properties: { name: { type: 'string', maxLength: 20 } } },
                spec: {
                  type: 'object',
                  required: ['port'],
                  properties: {
                    port: { type: 'integer', minimum: 1, maximum: 65535 },
                    protocol: { type: 'string', enum: ['TCP', 'HTTP'], default: 'TCP' },
                    allowedCidrs: { type: 'array', items: { type: 'string', format: 'cidr' } },
                    extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                  },
                },
                status: { type: 'object', properties: { provisioningStatus: { type: 'string' } } },
              },
            },
          },
        },
      ],
    },
  };

  it('prunes unknown fields, applies defaults, validates (422 with field paths)', async () => {
    await fake.stop();
    ({ server: fake, kubeConfig: kc } = await startFakeApiServer({ crds: [crd] }));
    api = kc.makeApiClient(CustomObjectsApi);
    const lp = 'listeners';
    const created = (await api.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: lp,
      body: { apiVersion: AV, kind: 'Listener', metadata: { name: 'l1' }, spec: { port: 80, bogus: 1, extra: { anything: true } }, junk: 'x' },
    })) as Obj & { junk?: unknown };
    expect(created.spec).toEqual({ port: 80, protocol: 'TCP', extra: { anything: true } });
    expect(created.junk).toBeUndefined();
    expect(
      fake
        .prunedFields()
        .map((p) => p.field)
        .sort(),
    ).toEqual(['junk', 'spec.bogus']);

    const bad = await failure(
      api.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural: lp,
        body: { apiVersion: AV, kind: 'Listener', metadata: { name: 'l2' }, spec: { protocol: 'UDP', allowedCidrs: ['10.0.0.0/33'] } },
      }),
    );
    expect(bad.code).toBe(422);
    expect(bad.status.message).toContain('spec.port: Required value');
    expect(bad.status.message).toContain('spec.protocol: Unsupported value: "UDP"');
    expect(bad.status.message).toContain('spec.allowedCidrs[0]');

    const longName = await failure(
      api.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural: lp,
        body: { apiVersion: AV, kind: 'Listener', metadata: { name: 'a'.repeat(30) }, spec: { port: 1 } },
      }),
    );
    expect(longName.code).toBe(422);

    // Status fields the schema does not declare are pruned too.
    const st = (await api.patchNamespacedCustomObjectStatus(
      { group, version, namespace, plural: lp, name: 'l1', body: { status: { provisioningStatus: 'ACTIVE', notDeclared: 1 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as Obj;
    expect(st.status).toEqual({ provisioningStatus: 'ACTIVE' });

    // Strict field validation refuses instead of pruning.
    const strict = await failure(
      api.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural: lp,
        fieldValidation: 'Strict',
        body: { apiVersion: AV, kind: 'Listener', metadata: { name: 'l3' }, spec: { port: 1, nope: 2 } },
      }),
    );
    expect(strict.code).toBe(422);
    expect(strict.status.message).toContain('unknown field "spec.nope"');

    // Kinds without a CRD do not exist on this server.
    expect((await failure(api.listClusterCustomObject({ group, version, plural: 'pools' }))).code).toBe(404);
  });
});
