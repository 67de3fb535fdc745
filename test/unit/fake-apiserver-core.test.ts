// The in-test API server's Services, EndpointSlices, Nodes and cluster-scoped custom resources (AddressPools),
// through @kubernetes/client-node: the registry semantics a type=LoadBalancer provider depends on.
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeApiServer, JsonObject, Obj } from '../support/fake-apiserver.js';
import { addressPool, endpointSlice, node, service } from '../support/k8s-objects.js';
import { failure, startFakeApiServer } from '../support/fake-apiserver-client.js';

let api: FakeApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo' }));
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});

afterAll(async () => {
  await api.stop();
});

describe('Services', () => {
  it('defaults and allocations: type, protocol, targetPort, ClusterIP, NodePorts, healthCheckNodePort; status dropped on create', async () => {
    const created = await core.createNamespacedService({
      namespace: 'default',
      body: {
        ...(service('a', { ports: [{ port: 80 }], externalTrafficPolicy: 'Local' }) as object),
        status: { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } },
      },
    });
    const spec = created.spec!;
    expect(spec.ports![0]).toMatchObject({ port: 80, protocol: 'TCP', targetPort: 80 });
    expect(spec.ports![0]!.nodePort).toBeGreaterThanOrEqual(30000);
    expect(spec.healthCheckNodePort).toBeGreaterThanOrEqual(30000);
    expect(spec.healthCheckNodePort).not.toBe(spec.ports![0]!.nodePort);
    expect(spec.clusterIP).toMatch(/^10\.96\./);
    expect(spec.ipFamilies).toEqual(['IPv4']);
    expect(spec.allocateLoadBalancerNodePorts).toBe(true);
    expect(created.status?.loadBalancer?.ingress).toBeUndefined();
  });

  it('a NodePort already given is refused (422); an update that omits it keeps it; a type change drops it', async () => {
    const a = await core.readNamespacedService({ name: 'a', namespace: 'default' });
    const taken = a.spec!.ports![0]!.nodePort!;
    const f = await failure(core.createNamespacedService({ namespace: 'default', body: service('b', { ports: [{ port: 80, nodePort: taken }] }) as never }));
    expect(f.code).toBe(422);
    expect(f.status.message).toMatch(/provided port is already allocated/);
    const b = await core.createNamespacedService({ namespace: 'default', body: service('b', { ports: [{ port: 80 }] }) as never });
    const port = b.spec!.ports![0]!.nodePort;
    api.apply(service('b', { ports: [{ port: 80, targetPort: 8080 }] }));
    expect((api.get('v1', 'services', 'default', 'b') as Obj).spec.ports[0]).toMatchObject({ nodePort: port, targetPort: 8080 });
    api.apply(service('b', { type: 'ClusterIP', loadBalancerClass: null, ports: [{ port: 80, targetPort: 8080 }] }));
    const c = api.get('v1', 'services', 'default', 'b') as Obj;
    expect(c.spec.ports[0].nodePort).toBeUndefined();
    expect(c.spec.loadBalancerClass).toBeUndefined();
  });

  it('loadBalancerClass may not change once set; source ranges must be CIDRs; ports must be named when several', async () => {
    const a = api.get('v1', 'services', 'default', 'a') as Obj;
    expect(() => api.update({ ...a, spec: { ...a.spec, loadBalancerClass: 'example.com/other' } })).toThrow(
      /loadBalancerClass: Invalid value: "example.com\/other": may not change once set/,
    );
    expect(() => api.create(service('c', { loadBalancerSourceRanges: ['10.0.0.0/33'] }))).toThrow(/loadBalancerSourceRanges\[0\]/);
    expect(() => api.create(service('d', { ports: [{ port: 80 }, { port: 81 }] }))).toThrow(/spec.ports\[0\].name: Required value/);
  });

  it('status subresource: ingress and conditions only through /status, validated', async () => {
    const opts = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await core.patchNamespacedServiceStatus(
      { name: 'a', namespace: 'default', body: { status: { loadBalancer: { ingress: [{ ip: '10.0.0.5', ipMode: 'VIP' }] } } } },
      opts,
    );
    expect((api.get('v1', 'services', 'default', 'a') as Obj).status.loadBalancer.ingress).toEqual([{ ip: '10.0.0.5', ipMode: 'VIP' }]);
    // A main-resource write cannot change status.
    await core.patchNamespacedService({ name: 'a', namespace: 'default', body: { status: { loadBalancer: {} }, metadata: { labels: { x: 'y' } } } }, opts);
    expect((api.get('v1', 'services', 'default', 'a') as Obj).status.loadBalancer.ingress).toHaveLength(1);
    const bad = await failure(
      core.patchNamespacedServiceStatus({ name: 'a', namespace: 'default', body: { status: { loadBalancer: { ingress: [{ ip: 'not-an-ip' }] } } } }, opts),
    );
    expect(bad.code).toBe(422);
    const badCondition = await failure(
      core.patchNamespacedServiceStatus(
        {
          name: 'a',
          namespace: 'default',
          body: {
            status: { conditions: [{ type: 'nslb.dev/X', status: 'True', reason: 'has space', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
          },
        },
        opts,
      ),
    );
    expect(badCondition.status.message).toMatch(/reason/);
    // A stale resourceVersion in a patch is a 409.
    const stale = await failure(
      core.patchNamespacedServiceStatus({ name: 'a', namespace: 'default', body: { metadata: { resourceVersion: '1' }, status: {} } }, opts),
    );
    expect(stale.code).toBe(409);
  });

  it('field selectors: spec.type and metadata.name; an unknown field label is a 400', async () => {
    const lbs = await core.listServiceForAllNamespaces({ fieldSelector: 'spec.type=LoadBalancer' });
    expect(lbs.items.map((s) => s.metadata!.name)).toEqual(['a']);
    const f = await failure(core.listServiceForAllNamespaces({ fieldSelector: 'spec.ports=80' }));
    expect(f.code).toBe(400);
  });
});

describe('Nodes (cluster-scoped)', () => {
  it('are created with their status, listed without a namespace, and 404 under one', async () => {
    await core.createNode({ body: node('n1', '10.1.0.1') as never });
    const n = await core.readNode({ name: 'n1' });
    expect(n.metadata?.namespace).toBeUndefined();
    expect(n.status?.addresses?.[0]).toEqual({ type: 'InternalIP', address: '10.1.0.1' });
    expect((await core.listNode()).items).toHaveLength(1);
    const r = await fetch(`${api.url}/api/v1/namespaces/default/nodes/n1`);
    expect(r.status).toBe(404);
    expect((await core.listNode({ fieldSelector: 'spec.unschedulable=false' })).items).toHaveLength(1);
  });

  it('an informer sees a status change (Ready → NotReady)', async () => {
    const seen: string[] = [];
    const inf = makeInformer<KubernetesObject & { status?: Obj }>(kc, '/api/v1/nodes', () => core.listNode() as never);
    inf.on('update', (o) => seen.push(o.status?.conditions?.[0]?.status));
    await inf.start();
    const cur = api.get('v1', 'nodes', '', 'n1') as JsonObject;
    api.updateStatus({ ...cur, status: (node('n1', '10.1.0.1', false) as Obj).status });
    for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(20);
    await inf.stop();
    expect(seen).toEqual(['False']);
  });
});

describe('AddressPools (a cluster-scoped CRD from crds/)', () => {
  it('cluster paths only, schema-validated, status through /status with optimistic concurrency', async () => {
    const created = (await custom.createClusterCustomObject({
      group: 'nslb.dev',
      version: 'v1alpha1',
      plural: 'addresspools',
      body: addressPool('p1', { addresses: ['10.2.0.0/24'] }),
    })) as Obj;
    expect(created.metadata.namespace).toBeUndefined();
    const r = await fetch(`${api.url}/apis/nslb.dev/v1alpha1/namespaces/default/addresspools/p1`);
    expect(r.status).toBe(404);
    const bad = await failure(
      custom.createClusterCustomObject({
        group: 'nslb.dev',
        version: 'v1alpha1',
        plural: 'addresspools',
        body: addressPool('p2', { addresses: ['10.3.0.0/24'], vlan: 5000 }),
      }),
    );
    expect(bad.code).toBe(422);
    const body = {
      ...created,
      status: { allocations: [{ address: '10.2.0.1', service: 'default/a', serviceUid: 'u', since: '2026-01-01T00:00:00Z' }], assigned: 1 },
    };
    await custom.replaceClusterCustomObjectStatus({ group: 'nslb.dev', version: 'v1alpha1', plural: 'addresspools', name: 'p1', body });
    const again = await failure(custom.replaceClusterCustomObjectStatus({ group: 'nslb.dev', version: 'v1alpha1', plural: 'addresspools', name: 'p1', body }));
    expect(again.code).toBe(409);
    expect((api.get('nslb.dev/v1alpha1', 'addresspools', '', 'p1') as Obj).status.assigned).toBe(1);
  });
});

describe('EndpointSlices', () => {
  it('validated by addressType; watched by the kubernetes.io/service-name label', async () => {
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const bad = await failure(discovery.createNamespacedEndpointSlice({ namespace: 'default', body: endpointSlice('web', [{ address: 'fd00::1' }]) as never }));
    expect(bad.code).toBe(422);
    const seen: string[] = [];
    const sel = 'kubernetes.io/service-name=web';
    const inf = makeInformer<KubernetesObject>(
      kc,
      '/apis/discovery.k8s.io/v1/endpointslices',
      () => discovery.listEndpointSliceForAllNamespaces({ labelSelector: sel }) as never,
      sel,
    );
    inf.on('add', (o) => seen.push(o.metadata!.name!));
    await inf.start();
    api.create(endpointSlice('other', [{ address: '10.0.0.2' }]));
    api.create(endpointSlice('web', [{ address: '10.0.0.1' }]));
    for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(20);
    await sleep(50);
    await inf.stop();
    expect(seen).toEqual(['web-abcde']);
    expect((api.get('discovery.k8s.io/v1', 'endpointslices', 'default', 'web-abcde') as Obj).ports[0].protocol).toBe('TCP');
  });
});
