// Issue 19, acceptance 5 and the provider's crash safety: 200 Services created at once get 200 distinct
// addresses and all serve, with the agent killed and restarted midway; the agent killed at each of the
// provider's crash points (NSLB_PROVIDER_CRASH_AT) leaves no duplicate and no leak.
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { FakeApiServer, loadCrdFiles } from '../support/fake-apiserver.js';
import { addressPool, service } from '../support/k8s-objects.js';
import { Agent, cli } from './agent.js';
import { REPO_ROOT, createBridge, createHost, deleteBridge, deleteHost, httpGet, listNetns, uniqueRun, waitFor, type Host } from './harness.js';
import { createSimNode, deleteSimNode, nodeObject, type SimNode } from './k8s-nodes.js';
import type { Obj } from '../support/fake-apiserver.js';

const run = uniqueRun(20);
const BRIDGE = `br-${run.prefix}`;
const NS = run.prefix;
const V = 'nslb.dev/v1alpha1';
const POOL = `pool-${NS}`;
const stateDir = join(tmpdir(), `nslb-svcscale-${run.prefix}`);
const N = 200;

describe('the Service provider at scale and across crashes, on a real node', () => {
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  const nodes: SimNode[] = [];
  let client: Host;
  let agent: Agent | undefined;
  const services = (): Obj[] => api.list('v1', 'services', NS) as Obj[];
  const allocations = (): Obj[] => ((api.get(V, 'addresspools', '', POOL) as Obj).status?.allocations ?? []) as Obj[];
  const ingress = (s: Obj): string | undefined => s.status?.loadBalancer?.ingress?.[0]?.ip;
  const start = (env: Record<string, string> = {}): Agent =>
    new Agent({
      kubeconfig: api.writeKubeconfig(),
      namespace: NS,
      stateDir,
      bridge: BRIDGE,
      resync: 5,
      extraArgs: ['--service-provider', '--provider-lease', '3'],
      env: { POD_NAMESPACE: 'nslb-system', ...env },
    });

  /** No address twice, none leaked: every allocation is a live Service's, one per Service, and its LB's VIP. */
  function checkLedger(): void {
    const allocs = allocations();
    const addresses = allocs.map((a) => a.address);
    expect(new Set(addresses).size, 'an address recorded twice').toBe(addresses.length);
    const byUid = new Map(services().map((s) => [s.metadata.uid as string, s]));
    for (const a of allocs) expect(byUid.has(a.serviceUid), `address ${a.address} leaked (its Service is gone)`).toBe(true);
    expect(new Set(allocs.map((a) => a.serviceUid)).size, 'a Service holds two addresses').toBe(allocs.length);
    const vips = (api.list(V, 'loadbalancers', NS) as Obj[]).map((l) => l.spec.vip.address);
    expect(new Set(vips).size, 'two LoadBalancers with one VIP').toBe(vips.length);
    for (const l of api.list(V, 'loadbalancers', NS) as Obj[]) {
      const uid = l.metadata.ownerReferences[0].uid;
      expect(allocs.find((a) => a.serviceUid === uid)?.address, `LoadBalancer ${l.metadata.name} serves an address not recorded for it`).toBe(
        l.spec.vip.address,
      );
    }
  }

  beforeAll(async () => {
    await createBridge(BRIDGE);
    for (const [i, n] of ['n1', 'n2'].entries()) nodes.push(await createSimNode(run, n, 2 + i, BRIDGE));
    client = await createHost({ name: run.name('c'), bridge: BRIDGE, address: run.cidr(254) });
    await api.start();
    api.create(addressPool(POOL, { addresses: [`${run.subnet}.10-${run.subnet}.240`], prefixLength: 24, bridge: BRIDGE }));
    for (const n of nodes) api.create(nodeObject(n));
  });

  afterAll(async () => {
    await agent?.stop().catch(() => {});
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await api.stop().catch(() => {});
    for (const n of nodes) await deleteSimNode(n);
    await deleteHost(client.name).catch(() => {});
    await deleteBridge(BRIDGE).catch(() => {});
    await rm(stateDir, { recursive: true, force: true });
  });

  it(`5. ${N} Services created at once get ${N} distinct addresses and all serve; the agent killed midway and restarted leaves no duplicate and no leak`, async () => {
    agent = start();
    await waitFor(async () => agent!.logs.some((l) => l.includes('provider: started')), { timeoutMs: 20_000, message: 'provider never started' });
    for (let i = 0; i < N; i++) api.create(service(`s${i}`, { namespace: NS, ports: [{ port: 80, targetPort: 8080 }] }));
    await waitFor(async () => (api.list(V, 'loadbalancers', NS) as Obj[]).length >= N / 3, {
      timeoutMs: 60_000,
      message: 'provider too slow to start the bulk',
    });
    await agent.kill();
    const midway = (api.list(V, 'loadbalancers', NS) as Obj[]).length;
    const served = services().filter((s) => ingress(s) !== undefined).length;
    console.log(`agent killed with ${midway} LoadBalancers made, ${served} Services served, ${allocations().length} addresses recorded`); // eslint-disable-line no-console
    expect(served).toBeLessThan(N);
    checkLedger();
    agent = start();
    await waitFor(async () => services().filter((s) => ingress(s) !== undefined).length === N, {
      timeoutMs: 240_000,
      intervalMs: 500,
      message: `not every Service got an ingress IP (killed with ${midway} LoadBalancers made)`,
    });
    const ips = services().map((s) => ingress(s)!);
    expect(new Set(ips).size).toBe(N);
    checkLedger();
    expect(allocations()).toHaveLength(N);
    // All serve: every ingress IP answers through the load balancer, from the client.
    const failed: string[] = [];
    for (let i = 0; i < ips.length; i += 10) {
      const batch = ips.slice(i, i + 10);
      const answers = await Promise.all(
        batch.map(async (ip) => {
          for (let attempt = 0; attempt < 3; attempt++) if ((await httpGet(client, `http://${ip}/`, { timeoutMs: 2000 })).status === 200) return true;
          return false;
        }),
      );
      for (const [j, ip] of batch.entries()) if (!answers[j]) failed.push(ip);
    }
    expect(failed).toEqual([]);
    // Its own waits (60 s + 240 s + the checks) bound it; on a loaded machine it outlasts the default minute.
  }, 400_000);

  it(`deleting the ${N} Services returns every address and removes every netns`, async () => {
    for (const s of services()) api.delete('v1', 'services', NS, s.metadata.name);
    await waitFor(async () => services().length === 0, { timeoutMs: 240_000, intervalMs: 500, message: 'Services never went' });
    expect(allocations()).toEqual([]);
    expect(api.list(V, 'loadbalancers', NS)).toEqual([]);
    const mine = new Set(Array.from({ length: N }, (_, i) => nodeNames(NS, `s${i}`).netns));
    expect((await listNetns()).filter((n) => mine.has(n))).toEqual([]);
  }, 300_000);

  // The provider's crash points, for a Service being created: 1 before the address is recorded, 2 after the
  // objects are written, 3 before the first status write, 4 before the status with the ingress IP.
  for (const at of [1, 2, 3, 4]) {
    it(`killed at the provider's crash point ${at} while creating a Service: after a restart it serves with one address, recorded once`, async () => {
      await agent?.stop();
      agent = start({ NSLB_PROVIDER_CRASH_AT: String(at) });
      await waitFor(async () => agent!.logs.some((l) => l.includes('provider: started')), { timeoutMs: 20_000, message: 'provider never started' });
      const name = `crash${at}`;
      api.create(service(name, { namespace: NS, ports: [{ port: 80, targetPort: 8080 }] }));
      const exit = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r('alive'), 15_000))]);
      expect(exit, 'the agent did not crash where asked').toBe(null);
      checkLedger();
      agent = start();
      const s = await waitFor(async () => services().find((x) => x.metadata.name === name && ingress(x) !== undefined), {
        timeoutMs: 30_000,
        message: `${name} never served`,
      });
      expect((await httpGet(client, `http://${ingress(s)!}/`, { timeoutMs: 2000 })).status).toBe(200);
      checkLedger();
      expect(allocations().filter((a) => a.serviceUid === s.metadata.uid)).toHaveLength(1);
      // Its own waits add up to 65 s (20 + 15 + 30), more than the default minute.
    }, 90_000);
  }

  // While deleting (once its LoadBalancer is gone): 1 before its addresses are released, 2 before the pool's
  // record is written, 3 before the finalizer is removed.
  for (const at of [1, 2, 3]) {
    it(`killed at the provider's crash point ${at} while deleting a Service: after a restart it is gone and its address is free`, async () => {
      const name = `crash${at}`;
      await agent?.stop();
      agent = start({ NSLB_PROVIDER_CRASH_AT: String(at) });
      await waitFor(async () => agent!.logs.some((l) => l.includes('provider: started')), { timeoutMs: 20_000, message: 'provider never started' });
      const uid = services().find((x) => x.metadata.name === name)!.metadata.uid;
      api.delete('v1', 'services', NS, name);
      const exit = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r('alive'), 15_000))]);
      expect(exit, 'the agent did not crash where asked').toBe(null);
      agent = start();
      await waitFor(async () => !services().some((x) => x.metadata.name === name), { timeoutMs: 30_000, message: `${name} never went` });
      expect(allocations().some((a) => a.serviceUid === uid)).toBe(false);
      checkLedger();
      expect(await listNetns()).not.toContain(nodeNames(NS, name).netns);
    });
  }
});
