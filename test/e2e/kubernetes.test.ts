// Kubernetes mode end to end: the real engine and node, driven by an in-test API server with the semantics of
// a real one (list/watch with resourceVersion, status subresource, finalizers, 409s). Issue 4's acceptance.
import { readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { FakeApiServer, loadCrdFiles } from '../support/fake-apiserver.js';
import { Agent } from './agent.js';
import {
  REPO_ROOT,
  createBridge,
  createHost,
  deleteBridge,
  deleteHost,
  ensureNode,
  httpGet,
  httpGetMany,
  listNetns,
  ovsPorts,
  startHttpServer,
  uniqueRun,
  waitFor,
  type Host,
  type HttpServerHandle,
} from './harness.js';
import { cli } from './agent.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const run = uniqueRun(9);
const BRIDGE = `br-${run.prefix}`;
const NS = run.prefix;
const VIP = run.ip(10);
const { netns: NETNS } = nodeNames(NS, 'web');
const stateDir = join(tmpdir(), `nslb-k8s-${run.prefix}`);
const V = 'nslb.dev/v1alpha1';
const PLURAL: Record<string, string> = {
  LoadBalancer: 'loadbalancers', Listener: 'listeners', Pool: 'pools', Member: 'members', HealthMonitor: 'healthmonitors',
};

/** The repository's example, on this run's subnet and in this run's namespace. */
async function exampleObjects(): Promise<Obj[]> {
  const text = (await readFile(join(REPO_ROOT, 'examples', 'http-lb.yaml'), 'utf8')).replaceAll('10.200.0.', `${run.subnet}.`);
  return (yaml.loadAll(text) as Obj[]).filter((d) => d !== null).map((d) => ({ ...d, metadata: { ...d.metadata, namespace: NS } }));
}

describe('Kubernetes mode against an in-test API server, on a real node', () => {
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  let m1: Host, m2: Host, client: Host;
  const servers: HttpServerHandle[] = [];
  let agent: Agent | undefined;
  const get = (kind: string, name: string): Obj | undefined => api.get(V, PLURAL[kind]!, NS, name) as Obj | undefined;
  const serving = async (): Promise<boolean> => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1000 })).status === 200;

  beforeAll(async () => {
    await ensureNode();
    await createBridge(BRIDGE);
    m1 = await createHost({ name: run.name('m1'), bridge: BRIDGE, address: run.cidr(11) });
    m2 = await createHost({ name: run.name('m2'), bridge: BRIDGE, address: run.cidr(12) });
    client = await createHost({ name: run.name('c'), bridge: BRIDGE, address: run.cidr(100) });
    servers.push(await startHttpServer(m1, { port: 8080, name: 'member m1' }), await startHttpServer(m2, { port: 8080, name: 'member m2' }));
    await api.start();
    agent = new Agent({ kubeconfig: api.writeKubeconfig(), stateDir, bridge: BRIDGE, resync: 2 });
    await waitFor(async () => agent!.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 15_000, message: 'agent never synced' });
  });

  afterAll(async () => {
    await agent?.stop().catch(() => {});
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await api.stop().catch(() => {});
    for (const s of servers) await s.stop().catch(() => {});
    for (const h of ['m1', 'm2', 'c']) await deleteHost(run.name(h)).catch(() => {});
    await deleteBridge(BRIDGE).catch(() => {});
    await rm(stateDir, { recursive: true, force: true });
  });

  it('3. a child applied before its parent shows ERROR with a clear message and heals when the parent appears', async () => {
    const objects = await exampleObjects();
    for (const o of objects.filter((x) => x.kind !== 'LoadBalancer')) api.create(o);
    await waitFor(async () => {
      const s = get('Listener', 'web-http')?.status;
      return s?.provisioningStatus === 'ERROR' && /web/.test(s.conditions?.[0]?.message ?? '');
    }, { timeoutMs: 10_000, message: 'listener never reported its missing load balancer' });
    expect(get('Listener', 'web-http')?.status.conditions[0]).toMatchObject({ type: 'Ready', status: 'False', reason: 'InvalidReference' });

    api.create(objects.find((x) => x.kind === 'LoadBalancer')!);
    await waitFor(serving, { timeoutMs: 15_000, message: 'never served after the parent appeared' });
  });

  it('2. traffic flows through the VIP; every object is ACTIVE/ONLINE, Ready=True, observedGeneration = generation', async () => {
    expect(new Set(await httpGetMany(client, `http://${VIP}/`, 6))).toEqual(new Set(['member m1', 'member m2']));
    await waitFor(async () => ['LoadBalancer/web', 'Listener/web-http', 'Pool/web-pool', 'Member/web-m1', 'Member/web-m2', 'HealthMonitor/web-hm'].every((id) => {
      const [kind, name] = id.split('/') as [string, string];
      const o = get(kind, name);
      return o?.status?.provisioningStatus === 'ACTIVE' && o.status.operatingStatus === 'ONLINE' &&
        o.status.observedGeneration === o.metadata.generation && o.status.conditions?.[0]?.status === 'True';
    }), { timeoutMs: 15_000, message: 'statuses never reached ACTIVE/ONLINE with observedGeneration' });
    const lb = get('LoadBalancer', 'web')!;
    expect(lb.metadata.finalizers).toContain('nslb.dev/cleanup');
    expect(lb.status).toMatchObject({ vip: VIP, netns: NETNS, node: 'e2e-node' });
    expect(api.events(NS).some((e: Obj) => e.reason === 'Provisioned' && e.involvedObject?.name === 'web')).toBe(true);

    // A spec change bumps generation; status follows with the new observedGeneration.
    const member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 0 } });
    await waitFor(async () => {
      const m = get('Member', 'web-m2')!;
      return m.metadata.generation === 2 && m.status.observedGeneration === 2 && m.status.operatingStatus === 'DRAINING';
    }, { timeoutMs: 10_000, message: 'generation 2 never observed' });
    await waitFor(async () => (await httpGetMany(client, `http://${VIP}/`, 4)).every((b) => b === 'member m1'), { timeoutMs: 10_000, message: 'weight 0 never drained' });
  });

  it('4. no status write when nothing changed, over several resyncs', async () => {
    await new Promise((r) => setTimeout(r, 1500)); // let the last change settle
    const before = api.statusWrites();
    await new Promise((r) => setTimeout(r, 5000)); // two resyncs and many stats polls
    expect(api.statusWrites() - before).toBe(0);
  });

  it('a 409 on a status write is re-read and retried', async () => {
    api.failNextStatusWriteWithConflict(1);
    const member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 1 } });
    await waitFor(async () => get('Member', 'web-m2')?.status?.observedGeneration === 3, { timeoutMs: 10_000, message: 'status never caught up after a 409' });
  });

  it('relists after 410 Gone and restarts an informer that stopped on an error', async () => {
    api.compact();
    api.closeWatches();
    let member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 2 } });
    await waitFor(async () => get('Member', 'web-m2')?.status?.observedGeneration === member.metadata.generation + 1,
      { timeoutMs: 10_000, message: 'change after a 410 never observed' });

    api.failNext({ plural: 'members', watch: true, code: 500 }, 1);
    api.closeWatches();
    member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 1 } });
    await waitFor(async () => get('Member', 'web-m2')?.status?.observedGeneration === member.metadata.generation + 1,
      { timeoutMs: 10_000, message: 'change after an informer error never observed' });
    expect(agent!.logs.some((l) => l.includes('informer stopped; restarting'))).toBe(true);
  });

  it('2. deleting the LoadBalancer removes netns, port and HAProxy, then the finalizer, then the object', async () => {
    const pid = Number((await readFile(join(stateDir, 'lb', NETNS, 'haproxy.pid'), 'utf8')).trim());
    const lb = get('LoadBalancer', 'web')!;
    api.update({ ...lb, metadata: { ...lb.metadata, finalizers: [...lb.metadata.finalizers, 'example.com/keep'] } });
    api.delete(V, 'loadbalancers', NS, 'web');
    await waitFor(async () => !(await listNetns()).includes(NETNS), { timeoutMs: 10_000, message: 'netns never removed' });
    expect((await ovsPorts(BRIDGE)).includes(nodeNames(NS, 'web').iface)).toBe(false);
    await waitFor(async () => {
      const o = get('LoadBalancer', 'web');
      return o !== undefined && !o.metadata.finalizers.includes('nslb.dev/cleanup');
    }, { timeoutMs: 10_000, message: 'our finalizer never removed' });
    // Another controller's finalizer is kept; the object goes only when that one is gone too.
    const o = get('LoadBalancer', 'web')!;
    expect(o.metadata.finalizers).toEqual(['example.com/keep']);
    expect(await stat(join(stateDir, 'lb', NETNS)).then(() => true, () => false)).toBe(false);
    const procStat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    expect(procStat === '' || procStat.slice(procStat.lastIndexOf(')') + 2, procStat.lastIndexOf(')') + 3) === 'Z').toBe(true);
    expect(await serving()).toBe(false);
    api.update({ ...o, metadata: { ...o.metadata, finalizers: [] } });
    expect(get('LoadBalancer', 'web')).toBeUndefined();
  });
});
