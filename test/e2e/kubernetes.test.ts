// Kubernetes mode end to end: the real engine and node, driven by an in-test API server with the semantics of
// a real one (list/watch with resourceVersion, status subresource, finalizers, 409s). Issue 4's acceptance.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { FakeApiServer, loadCrdFiles } from '../support/fake-apiserver.js';
import { Agent } from './agent.js';
import {
  REPO_ROOT,
  httpGet,
  httpGetMany,
  exampleObjects,
  listNetns,
  MemberHosts,
  ovsPorts,
  uniqueRun,
  waitFor,
  type Host,
  type HttpServerHandle,
} from './harness.js';
import { cli } from './agent.js';
import type { Obj } from '../support/fake-apiserver.js';

const run = uniqueRun(9);
const BRIDGE = `br-${run.prefix}`;
const NS = run.prefix;
const VIP = run.ip(10);
const { netns: NETNS } = nodeNames(NS, 'web');
const stateDir = join(tmpdir(), `nslb-k8s-${run.prefix}`);
const V = 'nslb.dev/v1alpha1';
const KUBECTL = (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, 'kubectl')));
const PLURAL: Record<string, string> = {
  LoadBalancer: 'loadbalancers',
  Listener: 'listeners',
  Pool: 'pools',
  Member: 'members',
  HealthMonitor: 'healthmonitors',
};

describe('Kubernetes mode against an in-test API server, on a real node', () => {
  // A realistic latency on every request (the agent's writes go in parallel; a serial writer would crawl).
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')), requestDelayMs: 20 });
  const hosts = new MemberHosts(run, 2);
  let client: Host;
  const server = (i: number): HttpServerHandle => hosts.servers.get(`member m${i}`)!;
  let agent: Agent | undefined;
  const get = (kind: string, name: string): Obj | undefined => api.get(V, PLURAL[kind]!, NS, name) as Obj | undefined;
  const serving = async (): Promise<boolean> => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1000 })).status === 200;

  beforeAll(async () => {
    client = (await hosts.create()).client;
    await api.start();
    agent = new Agent({ kubeconfig: api.writeKubeconfig(), stateDir, bridge: BRIDGE, resync: 2 });
    await waitFor(async () => agent!.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 15_000, message: 'agent never synced' });
  });

  afterAll(async () => {
    await agent?.stop().catch(() => {});
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await api.stop().catch(() => {});
    await hosts.remove();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('3. a child applied before its parent shows ERROR with a clear message and heals when the parent appears', async () => {
    const objects = (await exampleObjects(run, NS)) as Obj[];
    for (const o of objects.filter((x) => x.kind !== 'LoadBalancer')) api.create(o);
    await waitFor(
      async () => {
        const s = get('Listener', 'web-http')?.status;
        return s?.provisioningStatus === 'ERROR' && /web/.test(s.conditions?.[0]?.message ?? '');
      },
      { timeoutMs: 10_000, message: 'listener never reported its missing load balancer' },
    );
    expect(get('Listener', 'web-http')?.status.conditions[0]).toMatchObject({ type: 'Ready', status: 'False', reason: 'InvalidReference' });
    // And an Event on the Listener itself, naming the field.
    await waitFor(
      async () =>
        api
          .events(NS, 'involvedObject.kind=Listener,involvedObject.name=web-http,reason=InvalidReference')
          .some((e: Obj) => e.type === 'Warning' && String(e.message).startsWith('spec.loadBalancer: ')),
      { timeoutMs: 10_000, message: 'no InvalidReference Event on the Listener' },
    );

    api.create(objects.find((x) => x.kind === 'LoadBalancer')!);
    await waitFor(serving, { timeoutMs: 15_000, message: 'never served after the parent appeared' });
  });

  it('2. traffic flows through the VIP; every object is ACTIVE/ONLINE, Ready=True, observedGeneration = generation', async () => {
    expect(new Set(await httpGetMany(client, `http://${VIP}/`, 6))).toEqual(new Set(['member m1', 'member m2']));
    await waitFor(
      async () =>
        ['LoadBalancer/web', 'Listener/web-http', 'Pool/web-pool', 'Member/web-m1', 'Member/web-m2', 'HealthMonitor/web-hm'].every((id) => {
          const [kind, name] = id.split('/') as [string, string];
          const o = get(kind, name);
          return (
            o?.status?.provisioningStatus === 'ACTIVE' &&
            o.status.operatingStatus === 'ONLINE' &&
            o.status.observedGeneration === o.metadata.generation &&
            o.status.conditions?.[0]?.status === 'True'
          );
        }),
      { timeoutMs: 15_000, message: 'statuses never reached ACTIVE/ONLINE with observedGeneration' },
    );
    if (KUBECTL) {
      // What a GitOps pipeline runs: it returns as soon as every object's Ready condition is True.
      const { stdout } = await promisify(execFile)('kubectl', [
        '--kubeconfig',
        api.writeKubeconfig(),
        'wait',
        '--for=condition=Ready',
        'lb,lbl,lbp,lbm,lbhm',
        '--all',
        '-n',
        NS,
        '--timeout=20s',
      ]);
      expect(stdout.trim().split('\n')).toHaveLength(6);
    }
    const lb = get('LoadBalancer', 'web')!;
    expect(lb.metadata.finalizers).toContain('nslb.dev/cleanup');
    expect(lb.status).toMatchObject({ vip: VIP, netns: NETNS, node: 'e2e-node' });
    expect(api.events(NS).some((e: Obj) => e.reason === 'Provisioned' && e.involvedObject?.name === 'web')).toBe(true);

    // A spec change bumps generation; status follows with the new observedGeneration.
    const member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 0 } });
    await waitFor(
      async () => {
        const m = get('Member', 'web-m2')!;
        return m.metadata.generation === 2 && m.status.observedGeneration === 2 && m.status.operatingStatus === 'DRAINING';
      },
      { timeoutMs: 10_000, message: 'generation 2 never observed' },
    );
    await waitFor(async () => (await httpGetMany(client, `http://${VIP}/`, 4)).every((b) => b === 'member m1'), {
      timeoutMs: 10_000,
      message: 'weight 0 never drained',
    });
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

  it('Events on the object they are about: dangling pool (kubectl describe), runtime-API change, member down and up', async () => {
    api.create({ apiVersion: V, kind: 'Member', metadata: { name: 'bad', namespace: NS }, spec: { pool: 'nope', address: run.ip(13), port: 8080 } });
    await waitFor(async () => api.events(NS, 'involvedObject.kind=Member,involvedObject.name=bad').length > 0, {
      timeoutMs: 10_000,
      message: 'no Event on Member bad',
    });
    const [bad] = api.events(NS, 'involvedObject.kind=Member,involvedObject.name=bad');
    expect(bad).toMatchObject({ type: 'Warning', reason: 'InvalidReference', message: `spec.pool: pool "nope" does not exist in namespace "${NS}"` });
    expect(api.list('events.k8s.io/v1', 'events', NS, 'regarding.name=bad')[0]).toMatchObject({
      reportingController: 'nslb.dev/agent',
      reportingInstance: 'nslb.dev/agent-e2e-node',
    });
    if (KUBECTL) {
      const { stdout } = await promisify(execFile)('kubectl', ['--kubeconfig', api.writeKubeconfig(), 'describe', 'lbm', 'bad', '-n', NS]);
      expect(stdout).toMatch(/Warning\s+InvalidReference\s+\S+\s+nslb\.dev\/agent\s+spec\.pool: pool "nope" does not exist/);
    }
    api.delete(V, 'members', NS, 'bad');

    const member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 3 } });
    await waitFor(
      async () =>
        api.events(NS, 'involvedObject.name=web-m2,reason=RuntimeUpdated').some((e: Obj) => /weight set to 3 .*without a reload/.test(String(e.message))),
      { timeoutMs: 10_000, message: 'no RuntimeUpdated Event on web-m2' },
    );

    await server(2).setHealthy(false);
    await waitFor(async () => api.events(NS, 'involvedObject.name=web-m2,reason=MemberDown,type=Warning').length === 1, {
      timeoutMs: 20_000,
      message: 'no MemberDown Event',
    });
    await waitFor(async () => get('Member', 'web-m2')?.status?.operatingStatus === 'ERROR' && get('Pool', 'web-pool')?.status?.operatingStatus === 'DEGRADED', {
      timeoutMs: 10_000,
      message: 'member ERROR / pool DEGRADED never written',
    });
    await server(2).setHealthy(true);
    await waitFor(async () => api.events(NS, 'involvedObject.name=web-m2,reason=MemberUp').length === 1, { timeoutMs: 20_000, message: 'no MemberUp Event' });
    await waitFor(async () => get('Member', 'web-m2')?.status?.operatingStatus === 'ONLINE', { timeoutMs: 10_000, message: 'member never ONLINE again' });
  });

  it('API server stopped for 30 s while members change: the newest status when it returns, and no error loop', async () => {
    // A spec change the agent receives just before the API server goes, and applies while it is away.
    const member = get('Member', 'web-m1')!;
    api.update({ ...member, spec: { ...member.spec, weight: 7 } });
    await new Promise((r) => setTimeout(r, 300));
    const logsBefore = agent!.logs.length;
    await api.stop();
    const stoppedAt = Date.now();
    // Members change while it is down: m2 fails its health check, then m1 too, then m1 comes back.
    await server(2).setHealthy(false);
    await server(1).setHealthy(false);
    await new Promise((r) => setTimeout(r, 12_000));
    await server(1).setHealthy(true);
    const quietFrom = agent!.logs.length;
    await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - stoppedAt))));
    const outage = agent!.logs.slice(logsBefore).map((l) => JSON.parse(l) as { level: number; msg: string });
    const quiet = agent!.logs.slice(quietFrom).map((l) => JSON.parse(l) as { level: number; msg: string });
    await api.start();

    // Newest: m1 weight 7 observed and ONLINE again, m2 ERROR, the pool DEGRADED.
    await waitFor(
      async () => {
        const m1 = get('Member', 'web-m1')?.status;
        return (
          m1?.observedGeneration === member.metadata.generation + 1 &&
          m1.operatingStatus === 'ONLINE' &&
          get('Member', 'web-m2')?.status?.operatingStatus === 'ERROR' &&
          get('Pool', 'web-pool')?.status?.operatingStatus === 'DEGRADED'
        );
      },
      { timeoutMs: 20_000, message: 'statuses never caught up after the API server came back' },
    );
    // Warnings when it went (one per informer, one for status writes, one for Events, one for the node Lease, one
    // when the scheduler stops at its renew deadline), then silence: the last 18 s of the outage logged nothing at
    // warn or above.
    const loud = outage.filter((l) => l.level >= 40);
    expect(loud.length).toBeLessThanOrEqual(12);
    expect(quiet.filter((l) => l.level >= 40)).toEqual([]);
    expect(loud.filter((l) => l.msg.startsWith('cannot write status'))).toHaveLength(1);
    await waitFor(async () => agent!.logs.some((l) => l.includes('the API server answers again')), { timeoutMs: 5_000, message: 'no recovery line' });
    // The informers are back within their backoff's cap (10 s): a spec change made now is applied.
    const m1 = get('Member', 'web-m1')!;
    api.update({ ...m1, spec: { ...m1.spec, weight: 1 } });
    await waitFor(async () => get('Member', 'web-m1')?.status?.observedGeneration === m1.metadata.generation + 1, {
      timeoutMs: 20_000,
      message: 'a spec change after the API server came back was never applied',
    });
    await server(2).setHealthy(true);
    await waitFor(async () => get('Member', 'web-m2')?.status?.operatingStatus === 'ONLINE', { timeoutMs: 20_000, message: 'm2 never ONLINE again' });
  });

  it('relists after 410 Gone and restarts an informer that stopped on an error', async () => {
    api.compact();
    api.closeWatches();
    let member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 2 } });
    await waitFor(async () => get('Member', 'web-m2')?.status?.observedGeneration === member.metadata.generation + 1, {
      timeoutMs: 10_000,
      message: 'change after a 410 never observed',
    });

    api.failNext({ plural: 'members', watch: true, code: 500 }, 1);
    api.closeWatches();
    member = get('Member', 'web-m2')!;
    api.update({ ...member, spec: { ...member.spec, weight: 1 } });
    await waitFor(async () => get('Member', 'web-m2')?.status?.observedGeneration === member.metadata.generation + 1, {
      timeoutMs: 10_000,
      message: 'change after an informer error never observed',
    });
    expect(agent!.logs.some((l) => l.includes('informer stopped; restarting'))).toBe(true);
  });

  it('an agent restarted while the API server is down touches nothing until it has listed every kind, then adopts what runs', async () => {
    const pidFile = join(stateDir, 'lb', NETNS, 'haproxy.pid');
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    await agent!.stop();
    await api.stop();
    agent = new Agent({ kubeconfig: api.writeKubeconfig(), stateDir, bridge: BRIDGE, resync: 2 });
    // Several resync periods without an API server: nothing listed, so nothing is known to be unwanted.
    await new Promise((r) => setTimeout(r, 8_000));
    expect(agent.logs.filter((l) => /"msg":"(initial sync done|applying|removed)"/.test(l))).toEqual([]);
    expect(await listNetns()).toContain(NETNS);
    expect(await serving()).toBe(true);
    await api.start();
    await waitFor(async () => agent!.logs.some((l) => l.includes('initial sync done')), {
      timeoutMs: 30_000,
      message: 'agent never synced once the API server was back',
    });
    expect(agent.logs.filter((l) => l.includes('"adopted the running HAProxy without a restart"') && l.includes(`"lb":"${NS}/web"`))).toHaveLength(1);
    expect(Number((await readFile(pidFile, 'utf8')).trim())).toBe(pid);
    expect(await serving()).toBe(true);
  }, 120_000);

  it('2. deleting the LoadBalancer removes netns, port and HAProxy, then the finalizer, then the object', async () => {
    const pid = Number((await readFile(join(stateDir, 'lb', NETNS, 'haproxy.pid'), 'utf8')).trim());
    const lb = get('LoadBalancer', 'web')!;
    api.update({ ...lb, metadata: { ...lb.metadata, finalizers: [...lb.metadata.finalizers, 'example.com/keep'] } });
    api.delete(V, 'loadbalancers', NS, 'web');
    await waitFor(async () => !(await listNetns()).includes(NETNS), { timeoutMs: 10_000, message: 'netns never removed' });
    expect((await ovsPorts(BRIDGE)).includes(nodeNames(NS, 'web').iface)).toBe(false);
    await waitFor(
      async () => {
        const o = get('LoadBalancer', 'web');
        return o !== undefined && !o.metadata.finalizers.includes('nslb.dev/cleanup');
      },
      { timeoutMs: 10_000, message: 'our finalizer never removed' },
    );
    // Deletion done, said on the LoadBalancer before the finalizer went.
    expect(api.events(NS, 'involvedObject.kind=LoadBalancer,involvedObject.name=web,reason=Deleted')).toHaveLength(1);
    // Another controller's finalizer is kept; the object goes only when that one is gone too.
    const o = get('LoadBalancer', 'web')!;
    expect(o.metadata.finalizers).toEqual(['example.com/keep']);
    expect(
      await stat(join(stateDir, 'lb', NETNS)).then(
        () => true,
        () => false,
      ),
    ).toBe(false);
    const procStat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    expect(procStat === '' || procStat.slice(procStat.lastIndexOf(')') + 2, procStat.lastIndexOf(')') + 3) === 'Z').toBe(true);
    expect(await serving()).toBe(false);
    api.update({ ...o, metadata: { ...o.metadata, finalizers: [] } });
    expect(get('LoadBalancer', 'web')).toBeUndefined();
  });
});
