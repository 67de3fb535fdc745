// The simulated cluster in Kubernetes mode (issue 17's rig part): `up N --kubeconfig FILE` runs every agent as
// the DaemonSet does (run --kubernetes, NODE_NAME), the in-test API server, listening on this machine's
// 127.0.0.1 only, is reached from inside every node at the URL of its kubeconfig (through the rig's relay),
// each node renews its kubelet-like Lease kube-node-lease/nodeK and stops when the node is killed, and a load
// balancer applied through the API is placed on one node and serves from inside it.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleObjects, httpGet, runCommand, uniqueRun, waitFor, type Host } from './harness.js';
import { KubeSimRig } from './sim-kube-rig.js';
import { cmdline, inNode, nodePids, SIM_DIR, sim, simStatus } from './sim-rig.js';
import type { Obj } from '../support/fake-apiserver.js';

const run = uniqueRun(18);
const NS = run.prefix;
const VIP = run.ip(10);
const V = 'nslb.dev/v1alpha1';

/** The example with one member and no health monitor: the simulated nodes reach one member host. */
async function oneMemberExample(): Promise<Obj[]> {
  return ((await exampleObjects(run, NS)) as Obj[]).filter((d) => d.kind !== 'HealthMonitor' && d.metadata.name !== 'web-m2');
}

describe('scripts/sim-cluster.sh up --kubeconfig: agents in Kubernetes mode on simulated nodes', () => {
  const rig = new KubeSimRig(run, { nodes: 2, agentFlags: ['--resync', '2'] });
  const { api } = rig;
  let client: Host;
  const lease = (node: string) => api.get('coordination.k8s.io/v1', 'leases', 'kube-node-lease', node) as Obj | undefined;

  beforeAll(async () => {
    await rig.start();
    ({ client } = rig);
    expect(api.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  }, 240_000);

  afterAll(() => rig.stop(), 300_000);

  it('every agent reaches the API server at its kubeconfig URL from inside its node, and syncs', async () => {
    const status = await simStatus();
    for (const node of ['node1', 'node2']) {
      expect(status[node]).toMatchObject({ state: 'running', agent: 'up' });
      // The same URL, from inside the node, where 127.0.0.1 is the node's own loopback.
      const list = JSON.parse(await inNode(node, 'curl', '-fsS', '-m', '2', `${api.url}/apis/${V}/loadbalancers`)) as Obj;
      expect(list.kind).toBe('LoadBalancerList');
      await waitFor(
        async () => (await runCommand(['curl', '-fsS', '-m', '2', `http://${status[node]!.listen}/readyz`], { allowFailure: true })).exitCode === 0,
        {
          timeoutMs: 20_000,
          message: `${node}'s agent ready (its initial list through the relay)`,
        },
      );
    }
    // Run as the DaemonSet runs it.
    const argv = await inNode('node1', 'ps', '-o', 'args=', '-C', 'node');
    expect(argv).toMatch(/main\.js run --kubernetes --kubeconfig \S+ --node-name node1/);
    const agentPid = (await Promise.all((await nodePids('node1')).map(async (pid) => ((await cmdline(pid)).includes('main.js run') ? pid : 0)))).find(Boolean);
    const environ = (await readFile(`/proc/${agentPid}/environ`, 'utf8')).split('\0');
    expect(environ).toContain('NODE_NAME=node1');
    // The rig's __spawn returns once its child has exec'd, starting no process while it waits: the kubelet helper's
    // spawn, just before the agent's, once waited for an agent's command line and so ran all its 1,000 tries, three
    // processes each (10 s and more per node), and the agent came up with a PID in the thousands inside its node.
    for (const node of ['node1', 'node2']) {
      const pidInNode = Number((await readFile(join(SIM_DIR, node, 'agent.pid'), 'utf8')).trim());
      expect(pidInNode, `${node}'s agent PID inside its node`).toBeLessThan(1000);
    }
  });

  it('each node holds its Lease in kube-node-lease and renews it while it lives', async () => {
    const first = await waitFor(() => lease('node1'), { timeoutMs: 10_000, message: 'the Lease of node1' });
    expect(first.spec).toMatchObject({ holderIdentity: 'node1', leaseDurationSeconds: 40 });
    expect(lease('node2')?.spec.holderIdentity).toBe('node2');
    const renewed = await waitFor(() => lease('node1')?.spec.renewTime !== first.spec.renewTime && lease('node1'), {
      timeoutMs: 15_000,
      message: "a renewal of node1's Lease",
    });
    expect(Date.parse(renewed.spec.renewTime)).toBeGreaterThan(Date.parse(first.spec.renewTime));

    await sim('kill', 'node1');
    const frozen = lease('node1')!.spec.renewTime;
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    expect(lease('node1')!.spec.renewTime).toBe(frozen); // a dead node renews nothing
    await sim('start', 'node1');
    await waitFor(() => lease('node1')!.spec.renewTime !== frozen, { timeoutMs: 10_000, message: 'renewals after start' });
  }, 60_000);

  it('a load balancer applied through the API is placed on one node and serves a client on sim-provider from inside it', async () => {
    for (const o of await oneMemberExample()) api.create(o);
    await waitFor(async () => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1_000 })).body.trim() === 'member m1', {
      timeoutMs: 30_000,
      message: 'member m1 through the VIP',
    });
    await waitFor(() => (api.get(V, 'loadbalancers', NS, 'web') as Obj | undefined)?.status?.provisioningStatus === 'ACTIVE', {
      timeoutMs: 15_000,
      message: 'the LoadBalancer ACTIVE in the API',
    });
    // Served where the scheduler placed it, and only there.
    const placed = (api.get(V, 'loadbalancers', NS, 'web') as Obj).status.placement.nodes as string[];
    expect(placed).toHaveLength(1);
    expect((api.get(V, 'loadbalancers', NS, 'web') as Obj).status.node).toBe(placed[0]);
    for (const node of ['node1', 'node2']) {
      const netns = await inNode(node, 'ip', 'netns', 'list');
      expect(netns.includes('nslb-'), node).toBe(node === placed[0]);
    }
  }, 60_000);
});
