// The Service provider against the in-test API server, without a data plane: the engine's part (status of
// the nslb objects) is played by the test. What the provider writes, when, and what it never touches.
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ServiceProvider, type ServiceRef } from '../../src/provider/controller.js';
import type { FakeApiServer, JsonObject, Obj } from '../support/fake-apiserver.js';
import { addressPool, endpointSlice, node, service } from '../support/k8s-objects.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const V = 'nslb.dev/v1alpha1';

async function waitFor<T>(f: () => T | undefined | false, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const events: { ref: ServiceRef; type: string; reason: string; message: string }[] = [];
let api: FakeApiServer;
let provider: ServiceProvider;

const lbs = (ns = 'default'): Obj[] => api.list(V, 'loadbalancers', ns) as Obj[];
const of = (plural: string, ns = 'default'): Obj[] => api.list(V, plural, ns) as Obj[];
const svc = (name: string, ns = 'default'): Obj | undefined => api.get('v1', 'services', ns, name) as Obj | undefined;
const pool = (name: string): Obj => api.get(V, 'addresspools', '', name) as Obj;

/** What the engine would write once the node serves the load balancer. */
function engineServes(ns: string, name: string): void {
  for (const plural of ['loadbalancers', 'listeners']) {
    for (const o of of(plural, ns).filter((x) => x.metadata.labels?.['nslb.dev/service'] === name)) {
      api.updateStatus({
        ...o,
        status: {
          provisioningStatus: 'ACTIVE',
          operatingStatus: 'ONLINE',
          observedGeneration: o.metadata.generation,
          conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }],
          ...(plural === 'loadbalancers' ? { vip: o.spec.vip.address } : {}),
        },
      });
    }
  }
}

beforeAll(async () => {
  const started = await startFakeApiServer({ crds: 'repo' });
  api = started.server;
  provider = new ServiceProvider({
    kubeConfig: started.kubeConfig,
    withoutClass: false,
    members: 'Nodes',
    logger: pino({ level: 'silent' }),
    events: { emit: (ref, type, reason, message) => events.push({ ref, type, reason, message }) },
  });
  api.create(addressPool('pool-a', { addresses: ['10.9.0.10-10.9.0.12'], prefixLength: 24, gateway: '10.9.0.1', bridge: 'br-sim' }));
  api.create(node('n1', '192.168.7.1'));
  api.create(node('n2', '192.168.7.2'));
  await provider.start();
});

afterAll(async () => {
  await provider.stop();
  await api.stop();
});

beforeEach(() => {
  events.length = 0;
});

describe('a Service of class nslb.dev/haproxy', () => {
  it('gets a finalizer, an address recorded in its pool, and one LoadBalancer, Listener, Pool, monitor and a Member per Ready node', async () => {
    api.create(service('web', { ports: [{ port: 80, nodePort: 30080 }] }));
    const lb = await waitFor(() => lbs().find((l) => l.metadata.name === 'web'), 'LoadBalancer web');
    expect(lb.spec.vip).toEqual({ address: '10.9.0.10', prefixLength: 24, gateway: '10.9.0.1', bridge: 'br-sim' });
    expect(lb.metadata.labels).toEqual({ 'nslb.dev/service': 'web' });
    expect(lb.metadata.ownerReferences).toEqual([
      { apiVersion: 'v1', kind: 'Service', name: 'web', uid: svc('web')!.metadata.uid, controller: true, blockOwnerDeletion: true },
    ]);
    expect(svc('web')!.metadata.finalizers).toEqual(['nslb.dev/load-balancer-cleanup']);
    expect(pool('pool-a').status.allocations).toMatchObject([{ address: '10.9.0.10', service: 'default/web', serviceUid: svc('web')!.metadata.uid }]);
    const members = await waitFor(() => (of('members').length === 2 ? of('members') : undefined), 'two members');
    expect(members.map((m) => `${m.spec.address}:${m.spec.port}`).sort()).toEqual(['192.168.7.1:30080', '192.168.7.2:30080']);
    expect(of('listeners').map((l) => l.spec)).toEqual([{ loadBalancer: 'web', protocol: 'TCP', port: 80, defaultPool: 'web-tcp-80' }]);
    expect(of('healthmonitors').map((h) => h.spec.type)).toEqual(['TCP']);
    // No ingress before the node serves.
    expect(svc('web')!.status?.loadBalancer?.ingress).toBeUndefined();
    const ready = await waitFor(() => svc('web')!.status?.conditions?.find((c: Obj) => c.type === 'nslb.dev/LoadBalancerReady'), 'Ready condition');
    expect(ready).toMatchObject({ status: 'False', reason: 'Provisioning' });
  });

  it('shows the ingress IP once the LoadBalancer and its Listener are ACTIVE, and keeps it through a member change', async () => {
    engineServes('default', 'web');
    await waitFor(() => svc('web')!.status?.loadBalancer?.ingress?.[0]?.ip === '10.9.0.10', 'ingress');
    expect(svc('web')!.status.loadBalancer.ingress).toEqual([{ ip: '10.9.0.10', ipMode: 'VIP' }]);
    expect(events.some((e) => e.reason === 'EnsuredLoadBalancer')).toBe(true);

    // A node goes NotReady: only its Member goes; the LoadBalancer and Listener are not written.
    const writesBefore = api.writes('loadbalancers') + api.writes('listeners') + api.writes('pools');
    const n2 = api.get('v1', 'nodes', '', 'n2') as Obj;
    api.updateStatus({ ...n2, status: { ...n2.status, conditions: [{ type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: '' }] } });
    await waitFor(() => of('members').length === 1, 'member of n2 removed');
    expect(of('members')[0]!.spec.address).toBe('192.168.7.1');
    expect(api.writes('loadbalancers') + api.writes('listeners') + api.writes('pools')).toBe(writesBefore);
    // The LoadBalancer going PENDING_UPDATE meanwhile does not take the ingress away.
    const lb = lbs().find((l) => l.metadata.name === 'web')!;
    api.updateStatus({ ...lb, status: { ...lb.status, provisioningStatus: 'PENDING_UPDATE' } });
    await new Promise((r) => setTimeout(r, 200));
    expect(svc('web')!.status.loadBalancer.ingress).toEqual([{ ip: '10.9.0.10', ipMode: 'VIP' }]);
    api.updateStatus({ ...(api.get('v1', 'nodes', '', 'n2') as Obj), status: n2.status });
    await waitFor(() => of('members').length === 2, 'member of n2 back');
  });

  it('serves UDP ports (forwarded by the kernel) beside the TCP ones', async () => {
    api.create(
      service('dns', {
        ports: [
          { name: 'dns-udp', port: 53, protocol: 'UDP', nodePort: 30053 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', nodePort: 30054 },
        ],
      }),
    );
    await waitFor(() => of('listeners').find((l) => l.metadata.name === 'dns-tcp-53'), 'TCP listener');
    const udp = await waitFor(() => of('listeners').find((l) => l.metadata.name === 'dns-udp-53'), 'UDP listener');
    expect(udp.spec).toMatchObject({ protocol: 'UDP', port: 53 });
    const cond = await waitFor(() => svc('dns')!.status?.conditions?.find((c: Obj) => c.type === 'nslb.dev/PortsServed'), 'PortsServed');
    expect(cond).toMatchObject({ status: 'True', reason: 'AllPortsServed' });
    expect(events.some((e) => e.reason === 'PortNotServed' && e.ref.name === 'dns')).toBe(false);
  });

  it('pool exhausted: the Service stays pending with an Event; nothing else is disturbed', async () => {
    // pool-a has three addresses: web and dns hold two.
    api.create(service('third', { ports: [{ port: 80, nodePort: 30090 }] }));
    await waitFor(() => lbs().find((l) => l.metadata.name === 'third'), 'third');
    const before = JSON.stringify(lbs().map((l) => l.spec));
    api.create(service('fourth', { ports: [{ port: 80, nodePort: 30091 }] }));
    const cond = await waitFor(() => svc('fourth')!.status?.conditions?.find((c: Obj) => c.type === 'nslb.dev/AddressAssigned'), 'AddressAssigned');
    expect(cond).toMatchObject({ status: 'False', reason: 'PoolExhausted' });
    expect(events.some((e) => e.reason === 'PoolExhausted' && e.ref.name === 'fourth')).toBe(true);
    expect(lbs().some((l) => l.metadata.name === 'fourth')).toBe(false);
    expect(JSON.stringify(lbs().map((l) => l.spec))).toBe(before);
  });

  it('deleting a Service removes its objects, then (once its LoadBalancer is gone) frees the address and the finalizer', async () => {
    const third = svc('third')!.metadata.uid as string;
    api.delete('v1', 'services', 'default', 'third');
    await waitFor(() => of('listeners').every((l) => l.metadata.labels['nslb.dev/service'] !== 'third'), 'children deleted');
    // Our LoadBalancers carry the engine's finalizer in real life: here nothing holds them, so they go at once.
    await waitFor(() => svc('third') === undefined, 'service gone');
    await waitFor(() => !pool('pool-a').status.allocations.some((a: Obj) => a.serviceUid === third), "third's address released");
    // The freed address goes to the Service that was waiting.
    const lb = await waitFor(() => lbs().find((l) => l.metadata.name === 'fourth'), 'fourth served');
    expect(lb.spec.vip.address).toBe('10.9.0.12');
  });

  it('a Service being deleted keeps its finalizer while its LoadBalancer still exists (the VIP may still answer)', async () => {
    const lb = lbs().find((l) => l.metadata.name === 'fourth')!;
    api.update({ ...lb, metadata: { ...lb.metadata, finalizers: ['nslb.dev/cleanup'] } });
    api.delete('v1', 'services', 'default', 'fourth');
    await waitFor(() => lbs().find((l) => l.metadata.name === 'fourth')?.metadata.deletionTimestamp, 'LB being deleted');
    await new Promise((r) => setTimeout(r, 300));
    expect(svc('fourth')?.metadata.finalizers).toEqual(['nslb.dev/load-balancer-cleanup']);
    expect(pool('pool-a').status.allocations.map((a: Obj) => a.address)).toContain('10.9.0.12');
    const held = lbs().find((l) => l.metadata.name === 'fourth')!;
    api.update({ ...held, metadata: { ...held.metadata, finalizers: [] } });
    await waitFor(() => svc('fourth') === undefined, 'service gone after the LB');
    expect(pool('pool-a').status.allocations.map((a: Obj) => a.address)).not.toContain('10.9.0.12');
  });
});

describe("a Service that stops being the provider's", () => {
  it('type changed to ClusterIP: its objects go, the ingress IP is cleared, the address released, the finalizer removed', async () => {
    const s = svc('web')!;
    expect(s.status.loadBalancer.ingress).toHaveLength(1);
    api.update({ ...s, spec: { ...s.spec, type: 'ClusterIP' } });
    await waitFor(() => (svc('web')!.metadata.finalizers === undefined ? true : undefined), 'finalizer removed');
    const after = svc('web')!;
    expect(after.status.loadBalancer?.ingress).toBeUndefined();
    expect((after.status.conditions ?? []).filter((c: Obj) => c.type.startsWith('nslb.dev/'))).toEqual([]);
    expect(lbs().some((l) => l.metadata.name === 'web')).toBe(false);
    expect(of('members').some((m) => m.metadata.labels['nslb.dev/service'] === 'web')).toBe(false);
    expect(pool('pool-a').status.allocations.some((a: Obj) => a.serviceUid === s.metadata.uid)).toBe(false);
  });
});

describe("Services that are not the provider's", () => {
  it('another class, no class (flag off), and other types are never touched: no write at all', async () => {
    api.clearRequestLog();
    api.create(service('metallb', { loadBalancerClass: 'metallb.io/metallb', ports: [{ port: 80, nodePort: 30100 }] }));
    api.create(service('classless', { loadBalancerClass: null, ports: [{ port: 80, nodePort: 30101 }] }));
    api.create(service('internal', { type: 'ClusterIP', loadBalancerClass: null, ports: [{ port: 80 }] }));
    await new Promise((r) => setTimeout(r, 500));
    await provider.idle();
    const touched = api.requestLog().filter((e) => e.method !== 'GET' && /metallb|classless|internal/.test(e.path) && !e.path.endsWith('/services'));
    expect(touched).toEqual([]);
    for (const n of ['metallb', 'classless', 'internal']) {
      expect(svc(n)!.metadata.finalizers).toBeUndefined();
      expect(svc(n)!.status?.conditions).toBeUndefined();
      expect(lbs().some((l) => l.metadata.name === n)).toBe(false);
    }
  });
});

describe('endpoints as members, externalTrafficPolicy Local, source ranges', () => {
  it('allocateLoadBalancerNodePorts: false → the ready endpoints are the members; scaling changes Members only', async () => {
    api.create(addressPool('pool-b', { addresses: ['10.9.1.0/28'], namespaces: ['team-b'] }));
    api.create(
      service('api', {
        namespace: 'team-b',
        allocateLoadBalancerNodePorts: false,
        ports: [{ port: 443, targetPort: 8443 }],
        annotations: { 'nslb.dev/address-pool': 'pool-b' },
      }),
    );
    api.create(
      endpointSlice(
        'api',
        [
          { address: '10.244.1.5', nodeName: 'n1' },
          { address: '10.244.2.7', nodeName: 'n2', ready: false },
        ],
        { namespace: 'team-b', port: 8443 },
      ),
    );
    const members = await waitFor(() => (of('members', 'team-b').length === 1 ? of('members', 'team-b') : undefined), 'one ready endpoint');
    expect(members[0]!.spec).toMatchObject({ address: '10.244.1.5', port: 8443 });
    // The /28's network address is never given.
    expect(lbs('team-b')[0]!.spec.vip.address).toBe('10.9.1.1');
    const slice = api.get('discovery.k8s.io/v1', 'endpointslices', 'team-b', 'api-abcde') as JsonObject;
    api.update({
      ...slice,
      endpoints: [
        { addresses: ['10.244.1.5'], conditions: { ready: true } },
        { addresses: ['10.244.2.7'], conditions: { ready: true } },
        { addresses: ['10.244.3.9'], conditions: { ready: true } },
      ],
    });
    await waitFor(() => of('members', 'team-b').length === 3, 'three members');
  });

  it('a pool limited to other namespaces is not used; the Service says why', async () => {
    api.create(service('lonely', { namespace: 'team-c', ports: [{ port: 80, nodePort: 30110 }], annotations: { 'nslb.dev/address-pool': 'pool-b' } }));
    const cond = await waitFor(() => svc('lonely', 'team-c')?.status?.conditions?.find((c: Obj) => c.type === 'nslb.dev/AddressAssigned'), 'condition');
    expect(cond).toMatchObject({ status: 'False', reason: 'PoolNotAllowed' });
  });

  it('externalTrafficPolicy Local: only nodes with a ready local endpoint, an HTTP monitor on healthCheckNodePort; source ranges become allowedCidrs', async () => {
    api.create(
      service('local', {
        externalTrafficPolicy: 'Local',
        ports: [{ port: 80, nodePort: 30120 }],
        loadBalancerSourceRanges: ['10.50.0.0/16'],
        annotations: { 'nslb.dev/address-pool': 'pool-a', 'nslb.dev/loadBalancerIPs': '10.9.0.11' },
      }),
    );
    // 10.9.0.11 is dns's: refused, named.
    const cond = await waitFor(() => svc('local')?.status?.conditions?.find((c: Obj) => c.type === 'nslb.dev/AddressAssigned'), 'condition');
    expect(cond).toMatchObject({ status: 'False', reason: 'AddressInUse' });
    expect(cond.message).toMatch(/default\/dns/);
    const s = svc('local')!;
    api.update({ ...s, metadata: { ...s.metadata, annotations: { 'nslb.dev/address-pool': 'pool-a' } } });
    api.create(endpointSlice('local', [{ address: '10.244.1.9', nodeName: 'n2' }]));
    const hc = s.spec.healthCheckNodePort as number;
    expect(hc).toBeGreaterThanOrEqual(30000);
    const members = await waitFor(() => {
      const m = of('members').filter((x) => x.metadata.labels['nslb.dev/service'] === 'local');
      return m.length === 1 ? m : undefined;
    }, 'one member: n2');
    expect(members[0]!.spec).toEqual({ pool: 'local-tcp-80', address: '192.168.7.2', port: 30120, monitorPort: hc });
    expect(of('healthmonitors').find((h) => h.metadata.name === 'local-tcp-80')!.spec).toMatchObject({
      type: 'HTTP',
      urlPath: '/healthz',
      expectedCodes: '200',
    });
    expect(of('listeners').find((l) => l.metadata.name === 'local-tcp-80')!.spec.allowedCidrs).toEqual(['10.50.0.0/16']);
  });
});

describe('drift and hostile edits', () => {
  it('an owned object edited or deleted by hand is put back', async () => {
    const listener = of('listeners').find((l) => l.metadata.name === 'dns-tcp-53')!;
    api.update({ ...listener, spec: { ...listener.spec, port: 8053 } });
    await waitFor(() => of('listeners').find((l) => l.metadata.name === 'dns-tcp-53')?.spec.port === 53, 'listener restored');
    api.delete(V, 'pools', 'default', 'dns-tcp-53');
    await waitFor(() => of('pools').find((p) => p.metadata.name === 'dns-tcp-53'), 'pool recreated');
  });

  it('a name taken by a user-written LoadBalancer is a NameConflict, never overwritten', async () => {
    api.create({ apiVersion: V, kind: 'LoadBalancer', metadata: { name: 'mine', namespace: 'default' }, spec: { vip: { address: '10.77.0.1' } } });
    api.create(service('mine', { ports: [{ port: 80, nodePort: 30130 }], annotations: { 'nslb.dev/address-pool': 'pool-b' }, namespace: 'default' }));
    // pool-b is for team-b only: use an explicit address from a fresh pool instead.
    api.create(addressPool('pool-c', { addresses: ['10.9.2.10/32'] }));
    const s = svc('mine')!;
    api.update({ ...s, metadata: { ...s.metadata, annotations: { 'nslb.dev/address-pool': 'pool-c' } } });
    const cond = await waitFor(
      () => svc('mine')?.status?.conditions?.find((c: Obj) => c.type === 'nslb.dev/LoadBalancerReady' && c.reason === 'NameConflict'),
      'conflict',
    );
    expect(cond.message).toMatch(/LoadBalancer default\/mine exists and was not made by nslb/);
    expect(lbs().find((l) => l.metadata.name === 'mine')!.spec.vip.address).toBe('10.77.0.1');
  });
});

describe('objects nobody made for a Service', () => {
  it('a user-written object that merely carries the label is neither deleted nor overwritten', async () => {
    api.create({
      apiVersion: V,
      kind: 'LoadBalancer',
      metadata: { name: 'labelled', namespace: 'default', labels: { 'nslb.dev/service': 'labelled' } },
      spec: { vip: { address: '10.78.0.1' } },
    });
    api.create(service('labelled', { loadBalancerClass: 'example.com/other', ports: [{ port: 80, nodePort: 30140 }] }));
    await new Promise((r) => setTimeout(r, 300));
    expect(lbs().find((l) => l.metadata.name === 'labelled')?.spec.vip.address).toBe('10.78.0.1');
    const s = svc('labelled')!;
    api.delete('v1', 'services', 'default', 'labelled');
    api.create(addressPool('pool-d', { addresses: ['10.9.3.10/32'] }));
    api.create(service('labelled', { ports: [{ port: 80, nodePort: 30141 }], annotations: { 'nslb.dev/address-pool': 'pool-d' } }));
    const cond = await waitFor(() => svc('labelled')?.status?.conditions?.find((c: Obj) => c.reason === 'NameConflict'), 'conflict');
    expect(cond.type).toBe('nslb.dev/LoadBalancerReady');
    expect(lbs().find((l) => l.metadata.name === 'labelled')?.spec.vip.address).toBe('10.78.0.1');
    expect(s.metadata.finalizers).toBeUndefined();
  });
});

describe("members from the pool's setting", () => {
  it('an AddressPool with members: Endpoints serves its Services from the ready endpoints, though they have node ports', async () => {
    api.create(addressPool('pool-e', { addresses: ['10.9.4.10/32'], members: 'Endpoints' }));
    api.create(service('pods', { ports: [{ port: 80, targetPort: 8080, nodePort: 30150 }], annotations: { 'nslb.dev/address-pool': 'pool-e' } }));
    api.create(endpointSlice('pods', [{ address: '10.244.9.1' }, { address: '10.244.9.2' }]));
    const members = await waitFor(() => {
      const m = of('members').filter((x) => x.metadata.labels['nslb.dev/service'] === 'pods');
      return m.length === 2 ? m : undefined;
    }, 'two endpoint members');
    expect(members.map((m) => `${m.spec.address}:${m.spec.port}`).sort()).toEqual(['10.244.9.1:8080', '10.244.9.2:8080']);
  });
});
