// Issue 16 acceptance 1–5 on the simulated cluster (scripts/sim-cluster.sh): three nodes watching one checkout
// serve two ACTIVE_STANDBY pairs (pa on node1+node2, pb on node2+node3) and a SINGLE load balancer placed on
// node3, each exactly where it is placed; the VIPs are sampled in every node's namespaces throughout and never
// held by two live nodes at once outside a partition. Then: the MASTER node killed (failover, the node comes
// back as BACKUP without preempting and the pair is redundant again), the MASTER's HAProxy killed, a partition
// and its heal, and a planned switchover (a placement change) under wrk with SOURCE_IP persistence kept.
// Times are printed, never asserted (bench/ measures them). NSLB_HA_KILLS sets the number of node kills.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusFile } from '../../src/status/status-file.js';
import { nodeNames } from '../../src/desired/names.js';
import { readStatus } from './agent.js';
import { percentile, startProbe, type Probe } from './ha-pair.js';
import { ensureNode, httpGet, REPO_ROOT, runCommand, startHttpServer, uniqueRun, waitFor, type Host, type HttpServerHandle } from './harness.js';
import { assertNoRig, cmdline, deleteProviderHost, inNode, nodePids, nodeStateDir, providerHost, SIM, SIM_DIR, sim, simStatus } from './sim-rig.js';
import { VipSampler } from './sim-vip-sampler.js';

const run = uniqueRun(23);
const KILLS = Number(process.env.NSLB_HA_KILLS ?? 3);
const RESYNC_S = 5;
const NODES = ['node1', 'node2', 'node3'];
const ip = (octet: number) => run.ip(octet);
const PA = { name: 'pa', vip: ip(10), vrrp: [ip(2), ip(3)], nodes: ['node1', 'node2'] };
const PB = { name: 'pb', vip: ip(20), vrrp: [ip(21), ip(22)], nodes: ['node2', 'node3'] };
const S3 = { name: 's3', vip: ip(30), nodes: ['node3'] };
const netnsOf = (name: string) => nodeNames('default', name).netns;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function docs(lb: { name: string; vip: string; vrrp?: string[]; nodes: string[] }): string {
  const spec: Record<string, unknown> = { vip: { address: lb.vip, prefixLength: 24 }, placement: { nodes: lb.nodes } };
  if (lb.vrrp !== undefined) Object.assign(spec, { topology: 'ACTIVE_STANDBY', vrrp: { addresses: lb.vrrp } });
  const objects = [
    { kind: 'LoadBalancer', metadata: { name: lb.name }, spec },
    { kind: 'Listener', metadata: { name: `${lb.name}-http` }, spec: { loadBalancer: lb.name, protocol: 'HTTP', port: 80, defaultPool: `${lb.name}-pool` } },
    { kind: 'Pool', metadata: { name: `${lb.name}-pool` }, spec: { loadBalancer: lb.name, protocol: 'HTTP', lbAlgorithm: 'SOURCE_IP' } },
    { kind: 'Member', metadata: { name: `${lb.name}-m1` }, spec: { pool: `${lb.name}-pool`, address: ip(11), port: 8080 } },
    { kind: 'Member', metadata: { name: `${lb.name}-m2` }, spec: { pool: `${lb.name}-pool`, address: ip(12), port: 8080 } },
  ];
  return objects.map((o) => yaml.dump({ apiVersion: 'nslb.dev/v1alpha1', ...o })).join('---\n');
}

/** Requests wrk saw fail: socket errors (connect, read, write, timeout) and non-2xx/3xx answers. */
function lostRequests(wrkOut: string): number {
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(wrkOut);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(wrkOut);
  return (socket === null ? 0 : socket.slice(1).reduce((n, v) => n + Number(v), 0)) + Number(non2xx?.[1] ?? 0);
}

const lbStatus = (file: StatusFile | undefined, name: string) => file?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === name)?.status;

describe('ACTIVE_STANDBY on simulated nodes (issue 16 acceptance 1–5)', () => {
  let watchDir: string;
  let client: Host;
  const members: Host[] = [];
  const servers: HttpServerHandle[] = [];
  const sampler = new VipSampler(100);
  let weMadeTheRig = false;
  const dead = new Set<string>();

  const holders = (lb: { name: string; vip: string }) => sampler.holders(netnsOf(lb.name), lb.vip);
  /** Who holds the VIP as sampled from now on by both nodes of the pair (holders() may be empty while the sampler lags). */
  const holdersNow = (lb: { name: string; vip: string; nodes: string[] }) => sampler.holdersNow(netnsOf(lb.name), lb.vip, lb.nodes);

  /** Waits until exactly one node holds the VIP and its keepalived says MASTER in its status.json; returns it. */
  async function master(lb: { name: string; vip: string; nodes: string[] }, timeoutMs = 20_000): Promise<string> {
    return waitFor(
      async () => {
        const h = holders(lb);
        if (h.length !== 1) return false;
        const nodes = lbStatus(await readStatus(nodeStateDir(h[0]!)), lb.name)?.nodes;
        return nodes?.find((n) => n.name === h[0])?.role === 'MASTER' ? h[0] : false;
      },
      { timeoutMs, intervalMs: 100, message: `one MASTER of ${lb.name}` },
    );
  }

  /** Both nodes of the pair say, in their own status.json, that both are ready. */
  async function redundant(lb: { name: string; nodes: string[] }): Promise<boolean> {
    for (const node of lb.nodes) {
      const nodes = lbStatus(await readStatus(nodeStateDir(node)), lb.name)?.nodes ?? [];
      if (nodes.length !== 2 || !nodes.every((n) => n.ready)) return false;
    }
    return true;
  }

  async function killNode(node: string): Promise<void> {
    dead.add(node);
    sampler.stop(node);
    await sim('kill', node);
  }

  /** Boots the node again; samples it once its agent has converged (a restarted OVS leaves dead devices behind until then). */
  async function startNode(node: string, lbs: { name: string }[]): Promise<void> {
    await sim('start', node);
    // status.json from before the kill is still there: the new agent's own says so only after /readyz.
    const { listen } = (await simStatus())[node]!;
    await waitFor(async () => (await runCommand(['curl', '-fsS', '-m', '2', `http://${listen}/readyz`], { allowFailure: true })).exitCode === 0, {
      timeoutMs: 60_000,
      intervalMs: 200,
      message: `${node}'s agent ready`,
    });
    await waitFor(
      async () => {
        const file = await readStatus(nodeStateDir(node));
        return lbs.every((lb) => lbStatus(file, lb.name)?.provisioningStatus === 'ACTIVE');
      },
      { timeoutMs: 60_000, intervalMs: 200, message: `${node} converged after start` },
    );
    dead.delete(node);
    sampler.start(node);
  }

  const url = (lb: { vip: string }) => `http://${lb.vip}/`;
  // Under wrk during a switchover: each answer takes 100 ms, so that requests are in flight on the old MASTER
  // when the VIP moves (a fast answer leaves that to chance): they are what a careless handover loses.
  const SLOW = (lb: { vip: string }) => `http://${lb.vip}/__slow?ms=100`;

  /**
   * The outage a kill caused, in ms: from the first request that failed after `since` (the node was dead by
   * then: a kill through the rig takes a moment to land) to the end of the first 200 of a request sent after
   * that one. Undefined until there is such a 200; 0 if nothing failed.
   */
  function recovery(probe: Probe, since: number, until = Date.now()): number | undefined {
    const results = probe.results().sort((a, b) => a.at - b.at);
    const failed = results.find((r) => !r.ok && r.at >= since);
    if (failed === undefined) return results.some((r) => r.ok && r.at >= until - 200) ? 0 : undefined;
    const first = results.find((r) => r.ok && r.at > failed.at);
    return first === undefined ? undefined : first.done - failed.at;
  }

  beforeAll(async () => {
    await ensureNode();
    await assertNoRig();
    watchDir = await mkdtemp(join(tmpdir(), 'nslb-sim-ha-'));
    weMadeTheRig = true;
    await sim('up', '3', '--watch', watchDir, '--', '--resync', String(RESYNC_S));
    for (const [i, octet] of [11, 12].entries()) {
      const m = await providerHost(run, `m${i + 1}`, octet);
      members.push(m);
      servers.push(await startHttpServer(m, { port: 8080, name: `m${i + 1}`, bindAddress: '0.0.0.0' }));
    }
    client = await providerHost(run, 'c', 100);
    for (const node of NODES) sampler.start(node);
    for (const lb of [PA, PB, S3]) await writeFile(join(watchDir, `${lb.name}.yaml`), docs(lb));
  }, 240_000);

  afterAll(async () => {
    sampler.stopAll();
    for (const s of servers) await s.stop().catch(() => undefined);
    for (const h of [...members, ...(client === undefined ? [] : [client])]) await deleteProviderHost(h);
    if (weMadeTheRig) await sim('down');
    if (watchDir) await rm(watchDir, { recursive: true, force: true });
  }, 120_000);

  it('1: every load balancer is served exactly where it is placed; each pair has one MASTER', async () => {
    for (const lb of [PA, PB, S3]) {
      await waitFor(async () => (await httpGet(client, url(lb), { timeoutMs: 1_000 })).status === 200, {
        timeoutMs: 60_000,
        intervalMs: 250,
        message: `${lb.name} answers`,
      });
    }
    // One MASTER each, one of its two nodes. Usually the preferred one, but with nopreempt whichever node's
    // keepalived was up first (its HAProxy checked twice) keeps the role.
    expect(PA.nodes).toContain(await master(PA));
    expect(PB.nodes).toContain(await master(PB));
    for (const node of NODES) {
      const namespaces = await inNode(node, 'ip', 'netns', 'list');
      for (const lb of [PA, PB, S3]) {
        const placed = lb.nodes.includes(node);
        expect(namespaces.includes(netnsOf(lb.name)), `${lb.name} netns on ${node}`).toBe(placed);
      }
      // status.json is published after the node converges, and a pair answers as soon as one node of it does:
      // the other node's file may not list it yet (CI of fdf82a2: "pa in node1's status.json").
      await waitFor(
        async () => {
          const file = await readStatus(nodeStateDir(node));
          return [PA, PB, S3].every((lb) => (lbStatus(file, lb.name) !== undefined) === lb.nodes.includes(node));
        },
        { timeoutMs: 20_000, message: `${node}'s status.json lists exactly what is placed on it` },
      );
    }
    await waitFor(async () => (await redundant(PA)) && (await redundant(PB)), { timeoutMs: 20_000, message: 'both pairs redundant' });
    const paMaster = await master(PA);
    const paBackup = PA.nodes.find((n) => n !== paMaster)!;
    await waitFor(async () => lbStatus(await readStatus(nodeStateDir(paBackup)), 'pa')?.nodes?.[0]?.role === 'MASTER', {
      timeoutMs: 15_000,
      message: 'roles in status',
    });
    for (const node of PA.nodes) {
      expect(lbStatus(await readStatus(nodeStateDir(node)), 'pa'), node).toMatchObject({
        provisioningStatus: 'ACTIVE',
        operatingStatus: 'ONLINE',
        nodes: [
          { name: paMaster, role: 'MASTER', ready: true },
          { name: paBackup, role: 'BACKUP', ready: true },
        ],
      });
    }
    expect(lbStatus(await readStatus(nodeStateDir('node3')), 's3')?.nodes).toEqual([{ name: 'node3', role: 'STANDALONE', ready: true }]);
    // nslb status in a node, as an operator runs it there (status.json is republished every status interval).
    const pattern = new RegExp(`loadbalancer default/pa\\s+ACTIVE\\s+ONLINE\\s+${paMaster} MASTER, ${paBackup} BACKUP`);
    let table = '';
    await waitFor(
      async () => {
        table = await inNode(paBackup, process.execPath, join(REPO_ROOT, 'dist/cli/main.js'), 'status', '--state-dir', nodeStateDir(paBackup));
        return pattern.test(table);
      },
      { timeoutMs: 20_000, intervalMs: 500, message: `nslb status with NODES (last:\n${table})` },
    );
    console.log(table);
  }, 120_000);

  it(
    `2, 4: the MASTER node killed (${KILLS} times): the BACKUP serves; the node comes back as BACKUP, never preempts, and the pair is redundant again`,
    async () => {
      const times: number[] = [];
      const back: number[] = [];
      const probe = startProbe(client, url(PA), 20, 1_000);
      try {
        for (let k = 0; k < KILLS; k++) {
          const m = await master(PA);
          const backup = PA.nodes.find((n) => n !== m)!;
          await sleep(300 + Math.random() * 500);
          const killedAt = Date.now();
          await killNode(m);
          let ms: number | undefined;
          for (const until = Date.now() + 10_000; ms === undefined && Date.now() < until; await sleep(50)) ms = recovery(probe, killedAt);
          expect(ms, 'the BACKUP answers through the VIP').toBeDefined();
          times.push(ms!);
          expect(await master(PA)).toBe(backup);
          const startedAt = Date.now();
          await startNode(m, m === 'node2' ? [PA, PB] : [PA]);
          await waitFor(() => redundant(PA), { timeoutMs: RESYNC_S * 1000 + 10_000, intervalMs: 200, message: 'both nodes ready again' });
          back.push(Date.now() - startedAt);
          // nopreempt: the preferred node, back, stays BACKUP.
          await sleep(2_000);
          expect(await holdersNow(PA)).toEqual([backup]);
          const nodes = lbStatus(await readStatus(nodeStateDir(m)), 'pa')?.nodes;
          expect(nodes?.find((n) => n.name === m)?.role).toBe('BACKUP');
        }
      } finally {
        await probe.stop();
      }
      console.log(
        `failover, MASTER node killed: ${times.join(' ')} ms; p50 ${percentile(times, 50)} ms, p99 ${percentile(times, 99)} ms; ` +
          `node back → pair redundant: ${back.join(' ')} ms (resync ${RESYNC_S} s)`,
      );
      if (await redundant(PB)) await master(PB);
    },
    120_000 + KILLS * 90_000,
  );

  it(
    "2: the MASTER's HAProxy killed: served again within a moment, the agent restarts HAProxy, the pair is redundant again",
    async () => {
      const times: number[] = [];
      const serving: string[] = [];
      const probe = startProbe(client, url(PA), 20, 1_000);
      try {
        for (let k = 0; k < KILLS; k++) {
          const m = await master(PA);
          const backup = PA.nodes.find((n) => n !== m)!;
          await waitFor(() => redundant(PA), { timeoutMs: 20_000, message: 'redundant before the kill' });
          await sleep(300 + Math.random() * 1_000);
          const config = join(nodeStateDir(m), 'lb', netnsOf('pa'), 'haproxy.cfg');
          const pids: number[] = [];
          for (const pid of await nodePids(m)) {
            const c = await cmdline(pid);
            if (c.startsWith('haproxy') && c.includes(config)) pids.push(pid);
          }
          expect(pids.length).toBeGreaterThan(0);
          const killedAt = Date.now();
          for (const pid of pids) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // Gone since it was listed: an old worker finishing after a reload, or a `haproxy -c` of the agent.
            }
          }
          let ms: number | undefined;
          for (const until = Date.now() + 10_000; ms === undefined && Date.now() < until; await sleep(50)) ms = recovery(probe, killedAt, killedAt + 3_000);
          expect(ms, 'an answer through the VIP').toBeDefined();
          times.push(ms!);
          await waitFor(() => redundant(PA), { timeoutMs: 20_000, intervalMs: 200, message: 'the pair redundant again' });
          // keepalived's master check (every second) and the agent's exit watch (every second) race: the VIP moves to
          // the BACKUP, or stays where HAProxy is back first.
          serving.push((await master(PA)) === backup ? 'moved' : 'stayed');
        }
      } finally {
        await probe.stop();
      }
      console.log(`failover, MASTER HAProxy killed: ${times.join(' ')} ms; p50 ${percentile(times, 50)} ms; VIP ${serving.join(' ')}`);
    },
    60_000 + KILLS * 40_000,
  );

  it('5: a partition makes two MASTERs; after it heals there is one within a few advert intervals', async () => {
    const m = await master(PA);
    const backup = PA.nodes.find((n) => n !== m)!;
    const cutAt = Date.now();
    await sim('cut', backup);
    await waitFor(() => holders(PA).length === 2, { timeoutMs: 10_000, intervalMs: 50, message: 'both nodes MASTER while partitioned' });
    const healAt = Date.now();
    await sim('heal', backup);
    const one = await waitFor(() => (holders(PA).length === 1 ? Date.now() : false), {
      timeoutMs: 10_000,
      intervalMs: 20,
      message: 'one holder after the heal',
    });
    sampler.exempt(cutAt, one + 500);
    console.log(`partition healed: one VIP holder ${one - healAt} ms after the heal (sampled every ${sampler.intervalMs} ms)`);
    // The preferred node (slot 0) wins the tie: the lower priority steps down. (Seen once, 2026-12-06: node2 held
    // the VIP after the heal; what each node's status said then goes into the message.)
    const winner = await master(PA);
    const said = await Promise.all(PA.nodes.map(async (n) => `${n}: ${JSON.stringify(lbStatus(await readStatus(nodeStateDir(n)), PA.name)?.nodes)}`));
    expect(winner, `one holder ${one - healAt} ms after the heal, cut at -${healAt - cutAt} ms; ${said.join('; ')}`).toBe('node1');
    // The next tests start from a settled pair: the same single holder for 3 s. (CI of 31e5e2c: the drain test
    // right after this one found node2 MASTER, then BACKUP 2.5 s later.) How it settled is printed.
    const seen: string[] = [];
    let since = Date.now();
    let last = '';
    await waitFor(
      () => {
        const now = holders(PA).join(',');
        if (now !== last) {
          seen.push(`+${Date.now() - healAt} ms ${now || 'none'}`);
          last = now;
          since = Date.now();
        }
        return holders(PA).length === 1 && Date.now() - since >= 3_000;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: 'one holder for 3 s after the heal' },
    );
    console.log(`after the heal, VIP holders: ${seen.join('; ')}`);
  }, 60_000);

  it('3: nslb drain NODE under wrk hands every MASTER role it holds to the peer, loses no request and keeps SOURCE_IP persistence', async () => {
    await waitFor(async () => (await redundant(PA)) && (await redundant(PB)), { timeoutMs: 30_000, message: 'both pairs redundant before the drain' });
    const m = await master(PA);
    const other = PA.nodes.find((n) => n !== m)!;
    const pbMasterBefore = await master(PB);
    const sticky = (await httpGet(client, url(PA))).body.trim();
    const wrk = runCommand(['ip', 'netns', 'exec', client.netns, 'wrk', '-t1', '-c4', '-d8s', '--timeout', '3s', '-H', 'Connection: close', SLOW(PA)], {
      timeoutMs: 30_000,
    });
    await sleep(2_500);
    const drainedAt = Date.now();
    // As an operator runs it on the node: its state dir, its name.
    const table = await inNode(m, process.execPath, join(REPO_ROOT, 'dist/cli/main.js'), 'drain', m, '--state-dir', nodeStateDir(m));
    const drainMs = Date.now() - drainedAt;
    const out = await wrk;
    console.log(`nslb drain ${m} (${drainMs} ms):\n${table}\n${out.stdout}`);
    const lost = lostRequests(out.stdout);
    console.log(`switchover by nslb drain: lost ${lost} of ${/(\d+) requests in/.exec(out.stdout)?.[1]} requests`);
    expect(table).toMatch(new RegExp(`default/pa\\s+moved\\s+MASTER → ${other}; this node BACKUP; no connection cut`));
    // A pair whose MASTER was elsewhere is left alone; node3's SINGLE s3 is not on this node.
    if (PB.nodes.includes(m) && pbMasterBefore !== m) expect(table).toMatch(/default\/pb\s+not MASTER\s+this node is BACKUP/);
    expect(lost).toBe(0);
    expect(Number(/(\d+) requests in/.exec(out.stdout)?.[1] ?? 0)).toBeGreaterThan(100);
    expect(await holdersNow(PA)).toEqual([other]);
    // The drained node stays in the pair as BACKUP (nopreempt: it takes nothing back), and the pair is redundant.
    await waitFor(() => redundant(PA), { timeoutMs: 20_000, message: 'redundant after the drain' });
    expect(lbStatus(await readStatus(nodeStateDir(m)), 'pa')?.nodes).toEqual([
      { name: other, role: 'MASTER', ready: true },
      { name: m, role: 'BACKUP', ready: true },
    ]);
    await sleep(1_000);
    expect(await holdersNow(PA)).toEqual([other]);
    expect((await httpGet(client, url(PA))).body.trim()).toBe(sticky);
    // s3 is SINGLE on node3: drained, it says it stays.
    const single = await inNode(
      'node3',
      process.execPath,
      join(REPO_ROOT, 'dist/cli/main.js'),
      'drain',
      'node3',
      '--dry-run',
      '--state-dir',
      nodeStateDir('node3'),
    );
    expect(single).toMatch(/default\/s3\s+stays\s+SINGLE: no other node serves it/);
    // Another node's name is refused: file mode has no channel between nodes.
    const wrong = await runCommand(
      [SIM, 'exec', 'node3', '--', process.execPath, join(REPO_ROOT, 'dist/cli/main.js'), 'drain', 'node1', '--state-dir', nodeStateDir('node3')],
      { allowFailure: true },
    );
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toMatch(/is node node3, not node1/);
  }, 90_000);

  it('3: a planned switchover (placement change) under wrk loses no request and keeps SOURCE_IP persistence', async () => {
    await waitFor(() => redundant(PA), { timeoutMs: 20_000, message: 'redundant before the switchover' });
    const m = await master(PA);
    const other = PA.nodes.find((n) => n !== m)!;
    const sticky = (await httpGet(client, url(PA))).body.trim();
    // The MASTER leaves the placement, node3 takes its slot (so the BACKUP keeps its slot and VRRP address):
    // the leaving agent stops keepalived first, which hands the VIP over at once.
    const moved = { ...PA, nodes: PA.nodes.map((n) => (n === m ? 'node3' : n)) };
    const wrk = runCommand(['ip', 'netns', 'exec', client.netns, 'wrk', '-t1', '-c4', '-d12s', '--timeout', '3s', '-H', 'Connection: close', SLOW(PA)], {
      timeoutMs: 30_000,
    });
    await sleep(3_000);
    const switchedAt = Date.now();
    // Each node's VRRP state as its notify script records it, every 50 ms, to say how the VIP moved.
    const states: string[] = [];
    let watching = true;
    const watchStates = (async () => {
      const last = new Map<string, string>();
      while (watching) {
        for (const node of ['node1', 'node2', 'node3']) {
          const state = (await readFile(join(nodeStateDir(node), 'lb', netnsOf('pa'), 'keepalived.state'), 'utf8').catch(() => 'none')).trim();
          if (last.get(node) !== state) states.push(`+${Date.now() - switchedAt} ms ${node} ${state}`);
          last.set(node, state);
        }
        await sleep(50);
      }
    })();
    await writeFile(join(watchDir, 'pa.yaml'), docs(moved));
    const out = await wrk;
    watching = false;
    await watchStates;
    console.log(`VRRP states during the switchover:\n${states.join('\n')}`);
    const agentLog = await readFile(join(SIM_DIR, other, 'agent.log'), 'utf8').catch(() => '');
    console.log(
      `${other}'s agent during the switchover:\n${agentLog
        .split('\n')
        .filter((l) => l.includes('default/pa') && /applying|exited|failed/.test(l))
        .slice(-8)
        .join('\n')}`,
    );
    console.log(out.stdout);
    console.log(`switchover by placement change: lost ${lostRequests(out.stdout)} of ${/(\d+) requests in/.exec(out.stdout)?.[1]} requests`);
    await waitFor(async () => !(await inNode(m, 'ip', 'netns', 'list')).includes(netnsOf('pa')), { timeoutMs: 20_000, message: `pa gone from ${m}` });
    console.log(`switchover from ${m}: VIP on ${holders(PA).join(',')} ${Date.now() - switchedAt} ms after the change`);
    // The node that stayed is MASTER; the newcomer in the other slot came up as its BACKUP (it heard the
    // adverts: its VRRP address was announced when its port came up) and took nothing.
    expect(await holdersNow({ ...PA, nodes: [other, 'node3'] })).toEqual([other]);
    await waitFor(async () => lbStatus(await readStatus(nodeStateDir('node3')), 'pa')?.nodes?.find((n) => n.name === 'node3')?.role === 'BACKUP', {
      timeoutMs: 20_000,
      message: 'node3 BACKUP',
    });
    expect(await holdersNow({ ...PA, nodes: [other, 'node3'] })).toEqual([other]);
    expect(out.stdout).not.toMatch(/Socket errors|Non-2xx/);
    expect(Number(/(\d+) requests in/.exec(out.stdout)?.[1] ?? 0)).toBeGreaterThan(100);
    expect((await httpGet(client, url(PA))).body.trim()).toBe(sticky);
    PA.nodes = moved.nodes;
  }, 90_000);

  it('1: no VIP was ever held by two live nodes at once outside the partition', () => {
    for (const lb of [PA, PB, S3]) expect(sampler.dualHolders(netnsOf(lb.name), lb.vip), lb.name).toEqual([]);
    expect(sampler.samples.length).toBeGreaterThan(100);
  });
});
