// Issue 17 on the simulated cluster, agents in Kubernetes mode against the in-test API server: the scheduler
// spreads load balancers without spec.placement.nodes over three nodes, each served exactly where status says;
// a SINGLE load balancer whose node is hard-killed is served again from another node (time measured); killing
// the scheduling agent moves leadership, and nothing is placed anew while no node dies.
//
// NSLB_SCHED_LBS sets how many load balancers the spread test makes (300 by default: acceptance 1);
// NSLB_SCHED_ROUNDS how many kill-and-restart rounds acceptance 2 makes (3). With NSLB_SIM_KEEP=1 a failed run leaves
// the rig up to be looked at (agent logs, state dirs, namespaces; `scripts/sim-cluster.sh down` afterwards) and
// keeps the in-test API server for NSLB_SIM_KEEP_SECONDS more.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { netnsOfKey } from '../../src/desired/names.js';
import type { Obj } from '../support/fake-apiserver.js';
import { httpGet, uniqueRun, waitFor, type Host } from './harness.js';
import { KubeSimRig } from './sim-kube-rig.js';
import { inNode, sim, SIM_DIR, simStatus } from './sim-rig.js';

const run = uniqueRun(23);
const NS = run.prefix;
const V = 'nslb.dev/v1alpha1';
const AGENTS = 'nslb-system';
const NODES = ['node1', 'node2', 'node3'];
const COUNT = Number(process.env.NSLB_SCHED_LBS ?? 300);
const ROUNDS = Number(process.env.NSLB_SCHED_ROUNDS ?? 3);
// The VIPs live in the /16 around the run's /24 (a /24 holds fewer than 300); member and client route it.
const [a, b, c] = run.subnet.split('.');
const wide = `${a}.${b}.0.0/16`;
const vipOf = (i: number) => `${a}.${b}.${(Number(c) + 1 + Math.floor(i / 200)) % 256}.${10 + (i % 200)}`;

function lbObjects(name: string, vip: string, member: string, extra: { healthMonitor?: boolean; spec?: Obj } = {}): Obj[] {
  const meta = (n: string) => ({ name: n, namespace: NS });
  return [
    { apiVersion: V, kind: 'LoadBalancer', metadata: meta(name), spec: { vip: { address: vip, prefixLength: 16 }, ...extra.spec } },
    { apiVersion: V, kind: 'Listener', metadata: meta(`${name}-l`), spec: { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` } },
    { apiVersion: V, kind: 'Pool', metadata: meta(`${name}-p`), spec: { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' } },
    { apiVersion: V, kind: 'Member', metadata: meta(`${name}-m`), spec: { pool: `${name}-p`, address: member, port: 8080 } },
    // HAProxy's checks leave from the VIP: the provider bridge learns the VIP's new port from them.
    ...(extra.healthMonitor === true
      ? [{ apiVersion: V, kind: 'HealthMonitor', metadata: meta(`${name}-hm`), spec: { pool: `${name}-p`, type: 'TCP', delay: 1, timeout: 1, maxRetries: 1 } }]
      : []),
  ];
}

/** A node's agent log lines that name one of `needles`, and since its last start its resyncs, changes and warnings. */
async function dumpAgentLog(node: string, needles: string[]): Promise<void> {
  const lines = (await readFile(join(SIM_DIR, node, 'agent.log'), 'utf8').catch(() => '')).split('\n');
  const lastStart = lines.findLastIndex((l) => l.includes(`"msg":"nslb starting"`));
  const picked = lines.filter(
    (l, i) =>
      needles.some((n) => l.includes(n)) ||
      (i >= lastStart && (/"msg":"(nslb starting|resync|initial sync done|applying|removed)"/.test(l) || /"level":[456]0/.test(l))),
  );
  console.log(`--- ${node}/agent.log (${lines.length} lines; last start at line ${lastStart}): ${picked.length} lines ---\n${picked.slice(-200).join('\n')}`);
}

describe('scheduling across simulated nodes (Kubernetes mode)', () => {
  const rig = new KubeSimRig(run, { nodes: 3, agentFlags: ['--resync', '10'], routes: [wide], waitFor: { leasesIn: AGENTS, scheduler: true } });
  const { api } = rig;
  let member: Host, client: Host;
  let failed = false;
  const keep = () => failed && process.env.NSLB_SIM_KEEP === '1';
  const lb = (name: string) => api.get(V, 'loadbalancers', NS, name) as Obj | undefined;
  const placementOf = (name: string): string[] => lb(name)?.status?.placement?.nodes ?? [];
  const leader = (): string | undefined => (api.get('coordination.k8s.io/v1', 'leases', AGENTS, 'nslb-scheduler') as Obj | undefined)?.spec?.holderIdentity;
  const placements = () =>
    new Map((api.list(V, 'loadbalancers', NS) as Obj[]).map((o) => [o.metadata.name as string, (o.status?.placement?.nodes ?? []).join(',')]));
  /** The load balancers' namespaces on a node (what it really serves). */
  const netnsOn = async (node: string) =>
    new Set(
      (await inNode(node, 'ip', 'netns', 'list'))
        .split('\n')
        .map((l) => l.split(' ')[0]!)
        .filter((n) => n.startsWith('nslb-')),
    );
  const serves = async (vip: string) => (await httpGet(client, `http://${vip}/`, { timeoutMs: 1_000 })).body.trim() === 'member m1';

  beforeAll(async () => {
    await rig.start();
    ({ member, client } = rig);
  }, 240_000);

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      failed = true;
    });
  });

  afterAll(() => rig.stop({ keep: keep() }), 300_000);

  it(`acceptance 1: ${COUNT} load balancers without placement on 3 nodes, each served where status says, ≤ 110 per node, none on two`, async () => {
    const started = Date.now();
    for (let i = 0; i < COUNT; i++) for (const o of lbObjects(`lb${String(i).padStart(3, '0')}`, vipOf(i), member.address)) api.create(o);
    const names = Array.from({ length: COUNT }, (_, i) => `lb${String(i).padStart(3, '0')}`);
    await waitFor(
      () => names.every((n) => lb(n)?.status?.provisioningStatus === 'ACTIVE' && placementOf(n).length === 1 && lb(n)?.status?.node === placementOf(n)[0]),
      { timeoutMs: 600_000, intervalMs: 1_000, message: 'every load balancer ACTIVE on the node it is placed on' },
    );
    const converged = Date.now() - started;
    const byNode = new Map<string, string[]>(NODES.map((n) => [n, []]));
    for (const n of names) byNode.get(placementOf(n)[0]!)!.push(n);
    const spread = Object.fromEntries([...byNode].map(([k, v]) => [k, v.length]));
    console.log(JSON.stringify({ test: 'spread', loadBalancers: COUNT, spread, convergedMs: converged }));
    if ([...byNode.values()].some((l) => l.length > Math.ceil((COUNT * 110) / 300))) {
      // Why: the scheduler's runs (which nodes it counted alive) and every node's Lease and leadership lines.
      const needles = /placing load balancers|Lease|dead|alive|leading|stepping down|nslb starting|initial sync done/;
      for (const node of NODES) {
        const lines = (await readFile(join(SIM_DIR, node, 'agent.log'), 'utf8').catch(() => '')).split('\n').filter((l) => needles.test(l));
        console.log(`--- ${node}/agent.log: ${lines.length} lines about membership and scheduling ---\n${lines.slice(-150).join('\n')}`);
      }
    }
    for (const [, list] of byNode) expect(list.length).toBeLessThanOrEqual(Math.ceil((COUNT * 110) / 300));
    // Served where status says, and nowhere else: each node's namespaces are exactly those placed on it.
    const seen = new Set<string>();
    for (const [node, list] of byNode) {
      const here = await netnsOn(node);
      const expected = new Set(list.map((n) => netnsOfKey(`${NS}/${n}`)));
      expect(
        [...here].filter((x) => !expected.has(x)),
        `${node} serves only what is placed on it`,
      ).toEqual([]);
      expect(
        [...expected].filter((x) => !here.has(x)),
        `${node} serves everything placed on it`,
      ).toEqual([]);
      for (const x of here) {
        expect(seen.has(x), `${x} on two nodes`).toBe(false);
        seen.add(x);
      }
    }
    // No node looked dead while 300 load balancers converged (the node Leases were renewed in time): nothing moved.
    const moved = (api.events(NS) as Obj[]).filter((e) => e.reason === 'Rescheduled');
    expect(moved.map((e) => `${e.involvedObject?.name}: ${e.message}`)).toEqual([]);
    // Traffic through a sample on every node.
    for (const [, list] of byNode) for (const n of list.slice(0, 3)) expect(await serves(vipOf(names.indexOf(n)))).toBe(true);
  }, 900_000);

  it('acceptance 5: nothing is placed anew while no node dies; killing the scheduling agent moves leadership within one Lease duration', async () => {
    const before = placements();
    await new Promise((r) => setTimeout(r, 20_000));
    expect(placements()).toEqual(before);
    const old = leader()!;
    const heldBefore = api.get('coordination.k8s.io/v1', 'leases', AGENTS, 'nslb-scheduler') as Obj;
    await sim('kill', old);
    const killed = Date.now();
    const next = await waitFor(() => leader() !== old && leader(), { timeoutMs: 40_000, intervalMs: 100, message: 'a new scheduler' });
    const movedMs = Date.now() - killed;
    console.log(JSON.stringify({ test: 'leader-kill', from: old, to: next, movedMs, leaseSeconds: heldBefore.spec.leaseDurationSeconds }));
    // One Lease duration, plus the candidates' retry period (client-go's bound: they judge expiry on their own clock).
    expect(movedMs).toBeLessThanOrEqual(heldBefore.spec.leaseDurationSeconds * 1000 + 2 * 2_000 + 1_000);
    // What the dead node served moves; nothing else does.
    const onOld = [...before].filter(([, n]) => n === old).map(([k]) => k);
    await waitFor(() => onOld.every((k) => placementOf(k)[0] !== old), { timeoutMs: 60_000, message: `everything off ${old}` });
    for (const [k, n] of placements()) if (!onOld.includes(k)) expect(n, k).toBe(before.get(k));
    await sim('start', old);
  }, 180_000);

  it(
    'acceptance 2: a SINGLE load balancer whose node is hard-killed serves again from another node (measured)',
    async () => {
      const times: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const name = `fo${round}`;
        const vip = vipOf(COUNT + round);
        // Measured apart from leader election: on the two nodes that do not schedule (a label on their Nodes).
        const scheduling = leader()!;
        for (const node of NODES) {
          const n = api.get('v1', 'nodes', '', node) as Obj;
          const labels = { ...n.metadata.labels };
          if (node === scheduling) delete labels['e2e.nslb.dev/failover'];
          else labels['e2e.nslb.dev/failover'] = 'yes';
          api.update({ ...n, metadata: { ...n.metadata, labels } });
        }
        const spec = { placement: { nodeSelector: { 'e2e.nslb.dev/failover': 'yes' } } };
        for (const o of lbObjects(name, vip, member.address, { healthMonitor: true, spec })) api.create(o);
        await waitFor(async () => lb(name)?.status?.provisioningStatus === 'ACTIVE' && (await serves(vip)), { timeoutMs: 60_000, message: `${name} serving` });
        const node = placementOf(name)[0]!;
        await sim('kill', node);
        const killed = Date.now();
        await waitFor(async () => (await httpGet(client, `http://${vip}/`, { timeoutMs: 300 })).body.trim() === 'member m1', {
          timeoutMs: 60_000,
          intervalMs: 100,
          message: `${name} served again after ${node} was killed`,
        });
        const ms = Date.now() - killed;
        times.push(ms);
        expect(placementOf(name)[0]).not.toBe(node);
        console.log(JSON.stringify({ test: 'single-failover', round, from: node, to: placementOf(name)[0], ms }));
        await sim('start', node);
        await waitFor(async () => (await simStatus())[node]?.agent === 'up', { timeoutMs: 60_000, message: `${node} back` });
        // The node that comes back removes what moved away: one node per load balancer.
        const back = Date.now();
        await waitFor(async () => !(await netnsOn(node)).has(netnsOfKey(`${NS}/${name}`)), { timeoutMs: 60_000, message: `${name} gone from ${node}` }).catch(
          async (err: unknown) => {
            await dumpAgentLog(node, [`${NS}/${name}`, netnsOfKey(`${NS}/${name}`)]);
            throw err;
          },
        );
        console.log(JSON.stringify({ test: 'single-failover', round, goneFrom: node, msAfterAgentUp: Date.now() - back }));
      }
      const sorted = [...times].sort((x, y) => x - y);
      console.log(JSON.stringify({ test: 'single-failover', p50Ms: sorted[Math.floor(sorted.length / 2)], maxMs: sorted.at(-1) }));
      // Measured and printed, not asserted: timings belong to bench/ (issue 17's target is p50 ≤ 10 s). The test
      // asserts the behaviour: each round was served again from another node (its waits above are bounded).
      expect(sorted).toHaveLength(ROUNDS);
    },
    600_000 + Math.max(0, ROUNDS - 3) * 150_000,
  );
});
