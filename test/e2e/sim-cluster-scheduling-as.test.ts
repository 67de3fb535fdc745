// Issue 17 acceptance 3 and 4 on the simulated cluster, agents in Kubernetes mode against the in-test API server:
// an ACTIVE_STANDBY load balancer without spec.placement.nodes is placed by the scheduler on two nodes, which build
// their VRRP sides from status.placement.nodes (slot i holds spec.vrrp.addresses[i]) and serve it; its MASTER node
// hard-killed → the BACKUP takes the VIP (its keepalived never restarted) and the dead node's slot goes to the
// third node, which comes up as the new BACKUP; its MASTER node drained (Node label nslb.dev/drain=true) with a
// client probing every 20 ms → the VIP moves to the other node and the drained slot to a third, 0 failed requests.
// Times are printed, never asserted (bench/ measures them).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsOfKey } from '../../src/desired/names.js';
import type { Obj } from '../support/fake-apiserver.js';
import { startProbe, type Probe } from './ha-pair.js';
import { httpGet, uniqueRun, waitFor, type Host } from './harness.js';
import { KubeSimRig } from './sim-kube-rig.js';
import { inNode, nodeStateDir, sim, simStatus } from './sim-rig.js';

const run = uniqueRun(23);
const NS = run.prefix;
const V = 'nslb.dev/v1alpha1';
const AGENTS = 'nslb-system';
const NODES = ['node1', 'node2', 'node3'];
const NAME = 'pair';
const VIP = run.ip(10);
const VRRP = [run.ip(2), run.ip(3)];
const NETNS = netnsOfKey(`${NS}/${NAME}`);
const DRAIN = 'nslb.dev/drain';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function objects(member: string): Obj[] {
  const meta = (n: string) => ({ name: n, namespace: NS });
  return [
    {
      apiVersion: V,
      kind: 'LoadBalancer',
      metadata: meta(NAME),
      spec: { vip: { address: VIP, prefixLength: 24 }, topology: 'ACTIVE_STANDBY', vrrp: { addresses: VRRP } },
    },
    { apiVersion: V, kind: 'Listener', metadata: meta(`${NAME}-l`), spec: { loadBalancer: NAME, protocol: 'HTTP', port: 80, defaultPool: `${NAME}-p` } },
    { apiVersion: V, kind: 'Pool', metadata: meta(`${NAME}-p`), spec: { loadBalancer: NAME, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' } },
    { apiVersion: V, kind: 'Member', metadata: meta(`${NAME}-m`), spec: { pool: `${NAME}-p`, address: member, port: 8080 } },
  ];
}

/**
 * The outage a probe saw after `since`, in ms: from the first request sent after it that failed or stalled (over
 * 300 ms: a SYN sent to a dead node is retransmitted a second later, to whoever holds the VIP then) to the end of
 * the first quick 200 of a request sent after that one; 0 when none failed or stalled (once the kill has surely
 * landed); undefined until then.
 */
function outage(probe: Probe, since: number): number | undefined {
  const results = probe
    .results()
    .filter((r) => r.at >= since)
    .sort((a, b) => a.at - b.at);
  const hit = results.find((r) => !r.ok || r.done - r.at > 300);
  if (hit === undefined) return Date.now() - since > 3_000 ? 0 : undefined;
  const back = results.find((r) => r.ok && r.at > hit.at && r.done - r.at <= 300);
  return back === undefined ? undefined : back.done - hit.at;
}

describe('ACTIVE_STANDBY placed by the scheduler (Kubernetes mode, issue 17 acceptance 3 and 4)', () => {
  const rig = new KubeSimRig(run, { nodes: 3, agentFlags: ['--resync', '5'], waitFor: { leasesIn: AGENTS } });
  const { api } = rig;
  let member: Host, client: Host;
  const killed = new Set<string>();
  const lb = () => api.get(V, 'loadbalancers', NS, NAME) as Obj | undefined;
  const placement = (): string[] => lb()?.status?.placement?.nodes ?? [];
  const reported = (): { name: string; role?: string; ready: boolean }[] => lb()?.status?.nodes ?? [];
  const masterOf = () => reported().find((n) => n.role === 'MASTER')?.name;
  /** status (written by the node speaking for the pair) says: placed on two nodes, one MASTER and one BACKUP, both ready. */
  const redundant = (): boolean => {
    const nodes = reported();
    const placed = placement();
    return (
      lb()?.status?.provisioningStatus === 'ACTIVE' &&
      placed.length === 2 &&
      nodes.length === 2 &&
      nodes.every((n) => n.ready && placed.includes(n.name)) &&
      nodes.some((n) => n.role === 'MASTER') &&
      nodes.some((n) => n.role === 'BACKUP')
    );
  };
  const serves = async () => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1_000 })).body.trim() === 'member m1';
  /** The addresses on the load balancer's port in a node's netns. */
  const addressesOn = async (node: string): Promise<string[]> =>
    (await inNode(node, 'ip', '-n', NETNS, '-o', '-4', 'addr', 'show'))
      .split('\n')
      .map((l) => /inet (\S+)\//.exec(l)?.[1])
      .filter((a): a is string => a !== undefined && a !== '127.0.0.1');
  const keepalivedPid = async (node: string): Promise<string> =>
    (await readFile(join(nodeStateDir(node), 'lb', NETNS, 'keepalived.pid'), 'utf8').catch(() => '')).trim();
  const setDrain = (node: string, on: boolean) => {
    const n = api.get('v1', 'nodes', '', node) as Obj;
    const labels = { ...n.metadata.labels };
    if (on) labels[DRAIN] = 'true';
    else delete labels[DRAIN];
    api.update({ ...n, metadata: { ...n.metadata, labels } });
  };

  beforeAll(async () => {
    await rig.start();
    ({ member, client } = rig);
  }, 240_000);

  afterAll(() => rig.stop(), 300_000);

  it('a scheduler-placed pair serves: each node holds the VRRP address of its slot, one holds the VIP', async () => {
    const started = Date.now();
    for (const o of objects(member.address)) api.create(o);
    await waitFor(async () => redundant() && (await serves()), { timeoutMs: 120_000, intervalMs: 250, message: 'the pair redundant and serving' });
    console.log(JSON.stringify({ test: 'as-placed', placement: placement(), nodes: reported(), readyMs: Date.now() - started }));
    expect(lb()?.spec?.placement).toBeUndefined();
    const placed = placement();
    const holders: string[] = [];
    for (const [slot, node] of placed.entries()) {
      const addresses = await addressesOn(node);
      expect(addresses, `${node} holds slot ${slot}'s VRRP address`).toContain(VRRP[slot]);
      expect(addresses).not.toContain(VRRP[1 - slot]);
      if (addresses.includes(VIP)) holders.push(node);
    }
    expect(holders).toEqual([masterOf()]);
    // The third node serves nothing of it.
    const third = NODES.find((n) => !placed.includes(n))!;
    expect(await inNode(third, 'ip', 'netns', 'list')).not.toContain(NETNS);
  }, 180_000);

  it('acceptance 3: MASTER node killed → the BACKUP holds the VIP, keeps its slot and keepalived; the dead slot goes to the third node', async () => {
    await waitFor(redundant, { timeoutMs: 60_000, message: 'redundant before the kill' });
    const before = placement();
    const master = masterOf()!;
    const survivor = before.find((n) => n !== master)!;
    const third = NODES.find((n) => !before.includes(n))!;
    const survivorKeepalived = await keepalivedPid(survivor);
    const leaderBefore = (api.get('coordination.k8s.io/v1', 'leases', AGENTS, 'nslb-scheduler') as Obj | undefined)?.spec?.holderIdentity;
    expect(survivorKeepalived).not.toBe('');
    const probe = startProbe(client, `http://${VIP}/`, 20, 2_000);
    await sleep(1_000);
    await sim('kill', master);
    killed.add(master);
    const at = Date.now();
    const { ms: vipBack } = await waitFor(
      () => {
        const ms = outage(probe, at);
        return ms === undefined ? undefined : { ms };
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'served again from the BACKUP' },
    );
    const after = await waitFor(() => redundant() && placement().includes(third) && placement(), {
      timeoutMs: 120_000,
      intervalMs: 100,
      message: `a new BACKUP on ${third}, ready`,
    });
    const redundantMs = Date.now() - at;
    await sleep(1_000);
    await probe.stop();
    const failedAfterTakeover = probe.results().filter((r) => !r.ok && r.at > at + vipBack + 1_500).length;
    const failed = probe.results().filter((r) => !r.ok && r.at >= at).length;
    console.log(
      JSON.stringify({
        test: 'as-master-killed',
        killed: master,
        survivor,
        newBackup: third,
        vipBackMs: vipBack,
        failed,
        redundantMs,
        schedulerWasOnKilledNode: leaderBefore === master,
        before,
        after,
        failedAfterTakeover,
      }),
    );
    // Slot-stable: the new node in the dead node's slot, the survivor in its own, still MASTER, same keepalived.
    expect(after[before.indexOf(master)]).toBe(third);
    expect(after[before.indexOf(survivor)]).toBe(survivor);
    expect(masterOf()).toBe(survivor);
    expect(await keepalivedPid(survivor)).toBe(survivorKeepalived);
    expect(await addressesOn(third)).toContain(VRRP[before.indexOf(master)]);
    // Once the BACKUP had the VIP it kept it: the new node joining did not take it back.
    expect(failedAfterTakeover).toBe(0);
    // The killed node comes back and lets go of what it no longer serves.
    await sim('start', master);
    killed.delete(master);
    await waitFor(async () => (await simStatus())[master]?.agent === 'up', { timeoutMs: 60_000, message: `${master} back` });
    await waitFor(async () => !(await inNode(master, 'ip', 'netns', 'list')).includes(NETNS), { timeoutMs: 60_000, message: `${NETNS} gone from ${master}` });
  }, 300_000);

  it('acceptance 4: draining the MASTER node under a probing client: the VIP moves first, then the slot, 0 failed requests', async () => {
    await waitFor(redundant, { timeoutMs: 60_000, message: 'redundant before the drain' });
    const before = placement();
    const master = masterOf()!;
    const other = before.find((n) => n !== master)!;
    const third = NODES.find((n) => !before.includes(n))!;
    // The node Leases of all three are live again (the killed node came back).
    await waitFor(async () => (await simStatus())[third]?.agent === 'up', { timeoutMs: 60_000, message: `${third} up` });
    const probe = startProbe(client, `http://${VIP}/`, 20, 3_000);
    await sleep(2_000);
    const at = Date.now();
    // Every state the LoadBalancer goes through, in the order the API server stored them (a watch): polling every
    // 100 ms can miss a status that said the other node was MASTER for less than that (a drained node in FAULT
    // writes "no MASTER" once, after it), and then sees the slot moved first.
    const kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig());
    let seq = 0;
    let switchedSeq: number | undefined;
    let placedSeq: number | undefined;
    const watch = await new Watch(kc).watch(
      `/apis/${V}/namespaces/${NS}/loadbalancers`,
      {},
      (_type, o: Obj) => {
        if (o.metadata?.name !== NAME) return;
        seq++;
        if (switchedSeq === undefined && (o.status?.nodes ?? []).find((n: { role?: string }) => n.role === 'MASTER')?.name === other) switchedSeq = seq;
        const placed: string[] = o.status?.placement?.nodes ?? [];
        if (placedSeq === undefined && placed.length > 0 && !placed.includes(master)) placedSeq = seq;
      },
      () => undefined,
    );
    setDrain(master, true);
    try {
      // MASTER first, then re-place: the drained node's agent hands the role to the other node (status says so)
      // before the scheduler moves its slot.
      let switchedAt: number | undefined;
      let placedAt: number | undefined;
      const after = await waitFor(
        () => {
          switchedAt ??= masterOf() === other ? Date.now() - at : undefined;
          placedAt ??= placement().includes(master) ? undefined : Date.now() - at;
          return redundant() && !placement().includes(master) && placement();
        },
        {
          timeoutMs: 120_000,
          intervalMs: 100,
          message: `the pair off ${master} and redundant again`,
        },
      );
      const drainedMs = Date.now() - at;
      await waitFor(async () => !(await inNode(master, 'ip', 'netns', 'list')).includes(NETNS), { timeoutMs: 30_000, message: `${NETNS} gone from ${master}` });
      await sleep(2_000);
      await probe.stop();
      const results = probe.results().filter((r) => r.at >= at - 1_000);
      const failed = results.filter((r) => !r.ok);
      const slowest = Math.max(...results.map((r) => r.done - r.at));
      console.log(
        JSON.stringify({
          test: 'as-drain-master',
          drained: master,
          before,
          after,
          drainedMs,
          switchedAt,
          placedAt,
          switchedSeq,
          placedSeq,
          requests: results.length,
          failed: failed.length,
          slowestMs: slowest,
        }),
      );
      if (failed.length > 0) console.log(JSON.stringify(failed.slice(0, 5)));
      expect(after[before.indexOf(master)]).toBe(third);
      expect(after[before.indexOf(other)]).toBe(other);
      expect(masterOf()).toBe(other);
      expect(switchedAt).toBeDefined();
      // The scheduler moved the slot only once status said the other node was MASTER (a pair that reports no MASTER,
      // the drained node FAULT and the peer not announced yet, is held too; the wait runs out after 30 s).
      watch.abort();
      expect(switchedSeq).toBeDefined();
      expect(placedSeq).toBeDefined();
      expect(placedSeq!).toBeGreaterThanOrEqual(switchedSeq!);
      // The drained node's agent switched the pair over itself (keepalived.switchOver) before it let the pair go
      // (keepalived stop, once the slot moved).
      const agentLog = await readFile(join(nodeStateDir(master), '..', 'agent.log'), 'utf8');
      const switchedLine = agentLog.indexOf(`keepalived hand the MASTER role in ${NETNS} to the peer`);
      const stopLine = agentLog.indexOf(`keepalived stop in ${NETNS}`, switchedLine);
      expect(switchedLine).toBeGreaterThanOrEqual(0);
      expect(stopLine).toBeGreaterThan(switchedLine);
      expect(results.length).toBeGreaterThan(100);
      expect(failed).toEqual([]);
    } finally {
      watch.abort();
      setDrain(master, false);
    }
  }, 300_000);

  it('a drained node does not schedule: the agent holding nslb-scheduler hands it to another node when its node is drained', async () => {
    const holder = () => (api.get('coordination.k8s.io/v1', 'leases', AGENTS, 'nslb-scheduler') as Obj | undefined)?.spec?.holderIdentity as string | undefined;
    const leader = await waitFor(() => NODES.find((n) => n === holder()), { timeoutMs: 60_000, message: 'a scheduler' });
    setDrain(leader, true);
    try {
      const next = await waitFor(() => NODES.find((n) => n !== leader && n === holder()), { timeoutMs: 60_000, message: `nslb-scheduler off ${leader}` });
      // Stable: the drained node does not take it back while it is drained and another node schedules.
      await sleep(3_000);
      expect(holder()).toBe(next);
    } finally {
      setDrain(leader, false);
    }
  }, 120_000);
});
