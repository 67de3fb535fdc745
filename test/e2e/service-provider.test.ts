// Issue 19: Services of type LoadBalancer served by nslb, end to end on a real node. The agent runs in
// Kubernetes mode with --service-provider against the in-test API server; the "nodes" are namespaces whose
// NodePorts reach a small server (k8s-nodes.ts); a client namespace curls the ingress IP.
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { queryRuntime } from '../../src/drivers/haproxy/runtime-api.js';
import { FakeApiServer, loadCrdFiles, type JsonObject } from '../support/fake-apiserver.js';
import { addressPool, endpointSlice, service } from '../support/k8s-objects.js';
import { Agent, cli } from './agent.js';
import {
  REPO_ROOT,
  createBridge,
  createHost,
  deleteBridge,
  deleteHost,
  httpGet,
  httpGetMany,
  listNetns,
  ovsPorts,
  uniqueRun,
  waitFor,
  type Host,
} from './harness.js';
import { createSimNode, deleteSimNode, nodeObject, setNodeReady, type SimNode } from './k8s-nodes.js';
import type { Obj } from '../support/fake-apiserver.js';

const run = uniqueRun(19);
const BRIDGE = `br-${run.prefix}`;
const NS = run.prefix;
const V = 'nslb.dev/v1alpha1';
const stateDir = join(tmpdir(), `nslb-svc-${run.prefix}`);

describe('Services of type LoadBalancer, served by nslb on a real node', () => {
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  const nodes: SimNode[] = [];
  let client: Host, outsider: Host;
  let agent: Agent | undefined;
  const svc = (name: string): Obj | undefined => api.get('v1', 'services', NS, name) as Obj | undefined;
  const ingress = (name: string): string | undefined => svc(name)?.status?.loadBalancer?.ingress?.[0]?.ip;
  const condition = (name: string, type: string): Obj | undefined => svc(name)?.status?.conditions?.find((c: Obj) => c.type === type);
  const events = (name: string): Obj[] => (api.events(NS) as Obj[]).filter((e) => e.involvedObject?.kind === 'Service' && e.involvedObject?.name === name);
  const socket = (name: string): string => join(stateDir, 'lb', nodeNames(NS, name).netns, 'haproxy.sock');
  const workerPid = async (name: string): Promise<number | undefined> => {
    const m = /^Pid: (\d+)$/m.exec(await queryRuntime(socket(name), 'show info', 1_000).catch(() => ''));
    return m === null ? undefined : Number(m[1]);
  };
  const answers = async (ip: string, n: number, from = client): Promise<Set<string>> =>
    new Set(await httpGetMany(from, `http://${ip}/`, n, { timeoutMs: 2000 }));

  beforeAll(async () => {
    await createBridge(BRIDGE);
    for (const [i, n] of ['n1', 'n2', 'n3', 'n4'].entries()) nodes.push(await createSimNode(run, n, 21 + i, BRIDGE));
    client = await createHost({ name: run.name('c'), bridge: BRIDGE, address: run.cidr(100) });
    outsider = await createHost({ name: run.name('o'), bridge: BRIDGE, address: run.cidr(101) });
    await api.start();
    api.create(addressPool(`pool-${NS}`, { addresses: [`${run.subnet}.200-${run.subnet}.219`], prefixLength: 24, bridge: BRIDGE }));
    api.create(addressPool(`tiny-${NS}`, { addresses: [`${run.subnet}.230/32`], prefixLength: 24, bridge: BRIDGE, autoAssign: false }));
    for (const n of nodes.slice(0, 3)) api.create(nodeObject(n));
    agent = new Agent({
      kubeconfig: api.writeKubeconfig(),
      namespace: NS,
      stateDir,
      bridge: BRIDGE,
      resync: 3,
      extraArgs: ['--service-provider', '--provider-lease', '3', '--scheduler-lease', '3'],
      env: { POD_NAMESPACE: 'nslb-system' },
    });
    await waitFor(async () => agent!.logs.some((l) => l.includes('provider: started')), { timeoutMs: 20_000, message: 'provider never started' });
  });

  afterAll(async () => {
    await agent?.stop().catch(() => {});
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await api.stop().catch(() => {});
    for (const n of nodes) await deleteSimNode(n);
    for (const h of ['c', 'o']) await deleteHost(run.name(h)).catch(() => {});
    await deleteBridge(BRIDGE).catch(() => {});
    await rm(stateDir, { recursive: true, force: true });
  });

  it('1. a Service of class nslb.dev/haproxy gets an ingress IP from the pool, and traffic reaches every Ready node through it', async () => {
    const t0 = Date.now();
    api.create(service('web', { namespace: NS, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    const ip = await waitFor(async () => ingress('web'), { timeoutMs: 15_000, intervalMs: 20, message: 'no ingress IP' });
    const tIngress = Date.now() - t0;
    await waitFor(async () => (await httpGet(client, `http://${ip}/`, { timeoutMs: 1000 })).status === 200, {
      timeoutMs: 10_000,
      intervalMs: 20,
      message: 'no traffic',
    });
    console.log(`service applied → ingress ${tIngress} ms, → first 200 ${Date.now() - t0} ms`); // eslint-disable-line no-console
    expect(ip.startsWith(`${run.subnet}.2`)).toBe(true);
    expect(svc('web')!.status.loadBalancer.ingress).toEqual([{ ip, ipMode: 'VIP' }]);
    expect(condition('web', 'nslb.dev/LoadBalancerReady')).toMatchObject({ status: 'True', reason: 'Serving' });
    expect(await answers(ip, 9)).toEqual(new Set(['node n1', 'node n2', 'node n3']));
    const lb = api.get(V, 'loadbalancers', NS, 'web') as Obj;
    expect(lb.status).toMatchObject({ provisioningStatus: 'ACTIVE', vip: ip });
    expect(events('web').map((e) => e.reason)).toEqual(expect.arrayContaining(['EnsuringLoadBalancer', 'EnsuredLoadBalancer']));
  });

  it('2. a node going NotReady leaves the pool, a new node joins it: member changes only, no HAProxy reload', async () => {
    const ip = ingress('web')!;
    const worker = await workerPid('web');
    expect(worker).toBeDefined();
    setNodeReady(api, nodes[2]!, false);
    await waitFor(async () => !(await answers(ip, 6)).has('node n3'), { timeoutMs: 10_000, message: 'n3 still gets traffic' });
    api.create(nodeObject(nodes[3]!));
    await waitFor(async () => (await answers(ip, 8)).has('node n4'), { timeoutMs: 10_000, message: 'n4 never got traffic' });
    setNodeReady(api, nodes[2]!, true);
    await waitFor(async () => (await answers(ip, 12)).size === 4, { timeoutMs: 10_000, message: 'n3 never came back' });
    expect(await workerPid('web'), 'the HAProxy worker changed: a reload').toBe(worker);
  });

  it('3. externalTrafficPolicy Local: only nodes with a ready local endpoint get traffic; a scaled endpoint moves it without a reload', async () => {
    api.create(service('local', { namespace: NS, externalTrafficPolicy: 'Local', ports: [{ port: 80, targetPort: 8080 }] }));
    api.create(endpointSlice('local', [{ address: '10.244.2.5', nodeName: 'n2' }], { namespace: NS }));
    const ip = await waitFor(async () => ingress('local'), { timeoutMs: 15_000, message: 'no ingress for local' });
    await waitFor(async () => (await httpGet(client, `http://${ip}/`, { timeoutMs: 1000 })).status === 200, {
      timeoutMs: 10_000,
      message: 'local never served',
    });
    expect(await answers(ip, 6)).toEqual(new Set(['node n2']));
    const hm = api.get(V, 'healthmonitors', NS, 'local-tcp-80') as Obj;
    expect(hm.spec).toMatchObject({ type: 'HTTP', urlPath: '/healthz' });
    const worker = await workerPid('local');
    const slice = api.get('discovery.k8s.io/v1', 'endpointslices', NS, 'local-abcde') as JsonObject;
    api.update({
      ...slice,
      endpoints: [
        { addresses: ['10.244.2.5'], conditions: { ready: true }, nodeName: 'n2' },
        { addresses: ['10.244.1.8'], conditions: { ready: true }, nodeName: 'n1' },
      ],
    });
    await waitFor(async () => (await answers(ip, 8)).has('node n1'), { timeoutMs: 10_000, message: 'n1 never got traffic' });
    expect(await answers(ip, 8)).toEqual(new Set(['node n1', 'node n2']));
    expect(await workerPid('local')).toBe(worker);
  });

  it('3. loadBalancerSourceRanges: a client inside the ranges gets through, one outside is refused', async () => {
    api.create(service('ranged', { namespace: NS, loadBalancerSourceRanges: [`${client.address}/32`], ports: [{ port: 80, targetPort: 8080 }] }));
    const ip = await waitFor(async () => ingress('ranged'), { timeoutMs: 15_000, message: 'no ingress for ranged' });
    await waitFor(async () => (await httpGet(client, `http://${ip}/`, { timeoutMs: 1000 })).status === 200, {
      timeoutMs: 10_000,
      message: 'the client inside the range was never served',
    });
    const refused = await httpGet(outsider, `http://${ip}/`, { timeoutMs: 1500 });
    expect(refused.status).toBe(0);
    expect((api.get(V, 'listeners', NS, 'ranged-tcp-80') as Obj).spec.allowedCidrs).toEqual([`${client.address}/32`]);
  });

  it('4. pool exhausted: the Service stays pending with an Event saying so; nothing else is disturbed; deleting a Service frees its address and removes netns, port and HAProxy', async () => {
    const pool = `tiny-${NS}`;
    api.create(service('first', { namespace: NS, annotations: { 'nslb.dev/address-pool': pool }, ports: [{ port: 80, targetPort: 8080 }] }));
    const ip = await waitFor(async () => ingress('first'), { timeoutMs: 15_000, message: 'no ingress for first' });
    expect(ip).toBe(`${run.subnet}.230`);
    api.create(service('second', { namespace: NS, annotations: { 'nslb.dev/address-pool': pool }, ports: [{ port: 80, targetPort: 8080 }] }));
    await waitFor(async () => events('second').some((e) => e.reason === 'PoolExhausted' && e.type === 'Warning'), {
      timeoutMs: 10_000,
      message: 'no PoolExhausted Event',
    });
    expect(condition('second', 'nslb.dev/AddressAssigned')).toMatchObject({ status: 'False', reason: 'PoolExhausted' });
    expect(svc('second')!.status.loadBalancer?.ingress).toBeUndefined();
    expect((await answers(ip, 3)).size).toBeGreaterThan(0);
    expect((await httpGet(client, `http://${ingress('web')!}/`)).status).toBe(200);

    const { netns, iface } = nodeNames(NS, 'first');
    expect(await listNetns()).toContain(netns);
    api.delete('v1', 'services', NS, 'first');
    await waitFor(async () => svc('first') === undefined, { timeoutMs: 15_000, message: 'first never went' });
    // Its finalizer went only after the node side: netns, port and HAProxy are gone already.
    expect(await listNetns()).not.toContain(netns);
    expect(await ovsPorts(BRIDGE)).not.toContain(iface);
    expect((await httpGet(client, `http://${ip}/`, { timeoutMs: 1000 })).status).toBe(0);
    // The address went back to the pool, and to the Service that was waiting for it.
    const next = await waitFor(async () => ingress('second'), { timeoutMs: 15_000, message: 'second never got the freed address' });
    expect(next).toBe(ip);
  });

  it('a UDP port is served beside the TCP port of the same Service (issue 21): no refusal, no Event', async () => {
    api.create(
      service('dns', {
        namespace: NS,
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'http', port: 80, targetPort: 8080 },
        ],
      }),
    );
    const ip = await waitFor(async () => ingress('dns'), { timeoutMs: 15_000, message: 'no ingress for dns' });
    expect((await httpGet(client, `http://${ip}/`)).status).toBe(200);
    expect(condition('dns', 'nslb.dev/PortsServed')).toMatchObject({ status: 'True', reason: 'AllPortsServed' });
    expect(events('dns').some((e) => e.reason === 'PortNotServed')).toBe(false);
    // Every port served: the ingress carries no per-port list (only refusals are listed there).
    expect(svc('dns')!.status.loadBalancer.ingress[0].ports).toBeUndefined();
    expect((api.list(V, 'listeners', NS) as { spec: { protocol: string; port: number } }[]).some((l) => l.spec.protocol === 'UDP' && l.spec.port === 53)).toBe(
      true,
    );
  });

  it('6. a Service of another class, and one without a class (flag off), are never touched', async () => {
    api.clearRequestLog();
    api.create(service('other', { namespace: NS, loadBalancerClass: 'example.com/other', ports: [{ port: 80 }] }));
    api.create(service('plain', { namespace: NS, loadBalancerClass: null, ports: [{ port: 80 }] }));
    await new Promise((r) => setTimeout(r, 4000)); // past a resync
    const writes = api.requestLog().filter((e) => e.method !== 'GET' && /\/(other|plain)(\/|$)/.test(e.path));
    expect(writes).toEqual([]);
    for (const n of ['other', 'plain']) {
      expect(svc(n)!.metadata.finalizers).toBeUndefined();
      expect(svc(n)!.status?.conditions).toBeUndefined();
      expect(svc(n)!.status?.loadBalancer?.ingress).toBeUndefined();
      expect(api.get(V, 'loadbalancers', NS, n)).toBeUndefined();
    }
  });
  it('one provider at a time: a second agent waits; when the first is killed, it takes the Lease over and serves', async () => {
    const ns2 = `${NS}b`;
    const stateDir2 = `${stateDir}-b`;
    const second = new Agent({
      kubeconfig: api.writeKubeconfig(),
      namespace: ns2,
      stateDir: stateDir2,
      bridge: BRIDGE,
      resync: 3,
      extraArgs: ['--service-provider', '--provider-lease', '3', '--scheduler-lease', '3', '--node-name', 'other-node'],
      env: { POD_NAMESPACE: 'nslb-system' },
    });
    try {
      await waitFor(async () => second.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 20_000, message: 'second agent never synced' });
      api.create(service('standby', { namespace: ns2, ports: [{ port: 80, targetPort: 8080 }] }));
      await new Promise((r) => setTimeout(r, 3000));
      // The first agent's provider watches its own namespace only, and the second is not the provider. Both run
      // with a 3 s scheduler Lease: once the first dies, the second must also take over scheduling (issue 17)
      // before the Service's LoadBalancer is placed and served.
      expect(second.logs.some((l) => l.includes('provider: leading'))).toBe(false);
      expect((api.get('v1', 'services', ns2, 'standby') as Obj).metadata.finalizers).toBeUndefined();
      const lease = api.get('coordination.k8s.io/v1', 'leases', 'nslb-system', 'nslb-provider') as Obj;
      expect(lease.spec.holderIdentity).toBe('e2e-node');
      const killedAt = Date.now();
      await agent!.kill();
      const ip = await waitFor(async () => (api.get('v1', 'services', ns2, 'standby') as Obj).status?.loadBalancer?.ingress?.[0]?.ip as string | undefined, {
        timeoutMs: 20_000,
        message: 'the second agent never took over',
      });
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual(2500);
      expect((api.get('coordination.k8s.io/v1', 'leases', 'nslb-system', 'nslb-provider') as Obj).spec.holderIdentity).toBe('other-node');
      await waitFor(async () => (await httpGet(client, `http://${ip}/`, { timeoutMs: 1000 })).status === 200, {
        timeoutMs: 10_000,
        message: 'standby never served',
      });
      // The Services of the first namespace keep serving: their load balancers outlive the dead agent.
      expect((await httpGet(client, `http://${ingress('web')!}/`)).status).toBe(200);
    } finally {
      await second.stop().catch(() => {});
      await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir2, '--bridge', BRIDGE]).catch(() => {});
      await rm(stateDir2, { recursive: true, force: true });
    }
  });
});
