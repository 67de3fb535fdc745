// Phase (v): ACTIVE_STANDBY failover on the simulated cluster (scripts/sim-cluster.sh up 2), issue 16:
// - node kill: a client probes the VIP every 20 ms (new connection each); the MASTER node is SIGKILLed whole
//   (`sim-cluster.sh kill`); the figure is kill → first 200 of a request sent after it. Then the node is booted
//   again and the pair waits to be redundant (both nodes ready in both status.json) before the next kill.
// - HAProxy crash: the same, with only the MASTER's HAProxy processes SIGKILLed.
// - planned switchover: wrk (Connection: close, 4 connections) on the VIP while the MASTER is taken out of
//   the placement; failed requests (socket errors and non-2xx) counted.
// - 100 load balancers whose MASTER node dies: kill → every VIP answers 200 from the BACKUP.
// - keepalived memory per load balancer: Pss (and RSS) of keepalived's processes and the notify scripts on one
//   node, divided by the load balancers there (smaps_rollup).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { nodeNames } from '../../src/desired/names.js';
import { readStatus } from '../../test/e2e/agent.js';
import { startProbe, type Probe } from '../../test/e2e/ha-pair.js';
import { REPO_ROOT, runCommand, startHttpServer, type Host, type HttpServerHandle, type TestRun } from '../../test/e2e/harness.js';
import { stat } from 'node:fs/promises';
import { assertNoRig, cmdline, deleteProviderHost, nodePids, nodeStateDir, providerHost, sim, simStatus } from '../../test/e2e/sim-rig.js';
import { checkVips, log, sleep, type Cleanup } from './node-env.js';
import { parseWrk, type WrkSummary } from './report.js';

export interface HaResult {
  nodeKill: number[];
  haproxyKill: number[];
  switchover?: WrkSummary;
  /** The same under `nslb drain` on the MASTER (the pair stays, roles swapped). */
  drain?: WrkSummary;
  bulkN: number;
  /** Kill → every one of bulkN VIPs answered 200, ms (Infinity: not within the wait). */
  bulkFailover?: number;
  bulkAnswered?: number;
  keepalivedPssKiB?: number;
  keepalivedRssKiB?: number;
}

// 10.233.0.0/16 on sim-provider: hosts at .255.x, VIPs at .1.x, VRRP addresses at .2.x and .3.x.
const net: TestRun = {
  prefix: 'bha',
  subnet: '10.233.255',
  name: (s: string) => `bha${s}`,
  ip: (o: number) => `10.233.255.${o}`,
  cidr: (o: number) => `10.233.255.${o}/16`,
} as unknown as TestRun;
const vip = (i: number) => `10.233.1.${i + 1}`;
const vrrp = (i: number, slot: number) => `10.233.${2 + slot}.${i + 1}`;

/** Pair `ha<i>`'s documents (the (v) phase's and bench/dev-v100.ts's). */
export function lbYaml(i: number, nodes: string[]): string {
  const name = `ha${i}`;
  const objects = [
    {
      kind: 'LoadBalancer',
      metadata: { name },
      spec: { vip: { address: vip(i), prefixLength: 16 }, topology: 'ACTIVE_STANDBY', placement: { nodes }, vrrp: { addresses: [vrrp(i, 0), vrrp(i, 1)] } },
    },
    { kind: 'Listener', metadata: { name: `${name}-l` }, spec: { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` } },
    { kind: 'Pool', metadata: { name: `${name}-p` }, spec: { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'SOURCE_IP' } },
    { kind: 'Member', metadata: { name: `${name}-m1` }, spec: { pool: `${name}-p`, address: net.ip(11), port: 8080 } },
    { kind: 'Member', metadata: { name: `${name}-m2` }, spec: { pool: `${name}-p`, address: net.ip(12), port: 8080 } },
  ];
  return objects.map((o) => yaml.dump({ apiVersion: 'nslb.dev/v1alpha1', ...o })).join('---\n');
}

const lbOf = async (node: string, name: string) =>
  (await readStatus(nodeStateDir(node)))?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === name)?.status;

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; ; await sleep(100)) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`(v): ${what} not within ${timeoutMs} ms`);
  }
}

/** The node whose own status says MASTER, waited for (status.json follows keepalived every status interval). */
async function masterOf(name: string): Promise<string | undefined> {
  for (const end = Date.now() + 30_000; Date.now() < end; await sleep(100)) {
    for (const node of ['node1', 'node2']) {
      const nodes = (await lbOf(node, name).catch(() => undefined))?.nodes;
      if (nodes?.find((n) => n.name === node)?.role === 'MASTER') return node;
    }
  }
  return undefined;
}

/**
 * Boots a killed node and waits until its new agent is ready and has written status.json itself: the file the
 * killed agent left says what was true before the kill (its node MASTER, both ready), and a pair judged
 * redundant or a MASTER picked from it would be wrong (a "failover" of 0 ms, the BACKUP killed).
 */
async function startNode(node: string): Promise<void> {
  const startedAt = Date.now();
  await sim('start', node);
  const { listen } = (await simStatus())[node]!;
  await until(
    `${node}'s agent ready`,
    async () =>
      await runCommand(['curl', '-fsS', '-m', '2', `http://${listen}/readyz`])
        .then(() => true)
        .catch(() => false),
    60_000,
  );
  await until(
    `${node}'s own status.json`,
    async () => ((await stat(join(nodeStateDir(node), 'status.json')).catch(() => undefined))?.mtimeMs ?? 0) > startedAt,
    60_000,
  );
}

async function redundant(names: string[]): Promise<boolean> {
  for (const node of ['node1', 'node2']) {
    const file = await readStatus(nodeStateDir(node));
    for (const name of names) {
      const nodes = file?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === name)?.status.nodes ?? [];
      if (nodes.length !== 2 || !nodes.every((n) => n.ready)) return false;
    }
  }
  return true;
}

/**
 * The outage in ms: from the first request that failed after `since` (a kill through the rig takes a moment to
 * land, and requests sent before it are answered by the old MASTER) to the end of the first 200 of a request
 * sent after that one. Undefined until there is such a 200.
 */
function recovery(probe: Probe, since: number): number | undefined {
  const results = probe.results().sort((a, b) => a.at - b.at);
  const failed = results.find((r) => !r.ok && r.at >= since);
  if (failed === undefined) return undefined;
  const first = results.find((r) => r.ok && r.at > failed.at);
  return first === undefined ? undefined : first.done - failed.at;
}

/** Waits for the outage to end; 0 when nothing failed within 3 s of the kill (another path was already serving). */
async function measure(probe: Probe, since: number): Promise<number> {
  for (const end = since + 15_000; Date.now() < end; await sleep(20)) {
    const ms = recovery(probe, since);
    if (ms !== undefined) return ms;
    if (Date.now() > since + 3_000 && !probe.results().some((r) => !r.ok && r.at >= since)) return 0;
  }
  return Number.POSITIVE_INFINITY;
}

async function keepalivedMemory(node: string): Promise<{ pss: number; rss: number }> {
  let pss = 0;
  let rss = 0;
  for (const pid of await nodePids(node)) {
    const c = await cmdline(pid);
    if (!c.startsWith('keepalived ') && !c.includes('keepalived-notify.sh')) continue;
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
    pss += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    rss += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
  }
  return { pss, rss };
}

export async function phaseHa(opts: { kills: number; bulkN: number; cleanup: Cleanup }): Promise<HaResult> {
  const result: HaResult = { nodeKill: [], haproxyKill: [], bulkN: opts.bulkN };
  await assertNoRig();
  const watch = await mkdtemp(join(tmpdir(), 'nslb-bench-ha-'));
  opts.cleanup.add('simulated cluster', async () => {
    await sim('down');
    await rm(watch, { recursive: true, force: true });
  });
  log('(v): booting 2 simulated nodes');
  await sim('up', '2', '--watch', watch, '--', '--resync', '10');
  const servers: HttpServerHandle[] = [];
  const hosts: Host[] = [];
  for (const [i, octet] of [11, 12].entries()) {
    const m = await providerHost(net, `m${i + 1}`, octet);
    hosts.push(m);
    opts.cleanup.add(`host ${m.name}`, () => deleteProviderHost(m));
    const server = await startHttpServer(m, { port: 8080, name: `m${i + 1}`, bindAddress: '0.0.0.0' });
    servers.push(server);
    opts.cleanup.add(`server in ${m.name}`, () => server.stop());
  }
  const client = await providerHost(net, 'c', 100);
  opts.cleanup.add(`host ${client.name}`, () => deleteProviderHost(client));

  // One pair for the kills and the switchover.
  let placement = ['node1', 'node2'];
  await writeFile(join(watch, 'ha0.yaml'), lbYaml(0, placement));
  await until('ha0 redundant', () => redundant(['ha0']), 60_000);
  const probe = startProbe(client, `http://${vip(0)}/`, 20, 1_000);
  try {
    for (let k = 0; k < opts.kills; k++) {
      await until('ha0 redundant', () => redundant(['ha0']), 60_000);
      const m = await masterOf('ha0');
      if (m === undefined) throw new Error('(v): no MASTER of ha0');
      await sleep(300 + Math.random() * 500);
      const at = Date.now();
      await sim('kill', m);
      result.nodeKill.push(await measure(probe, at));
      await startNode(m);
      log(`(v): node kill ${k + 1}/${opts.kills}: ${result.nodeKill.at(-1)} ms`);
    }
    for (let k = 0; k < opts.kills; k++) {
      await until('ha0 redundant', () => redundant(['ha0']), 60_000);
      const m = await masterOf('ha0');
      if (m === undefined) throw new Error('(v): no MASTER of ha0');
      await sleep(300 + Math.random() * 1_000);
      const config = join(nodeStateDir(m), 'lb', nodeNames('default', 'ha0').netns, 'haproxy.cfg');
      const pids: number[] = [];
      for (const pid of await nodePids(m)) if ((await cmdline(pid)).startsWith('haproxy') && (await cmdline(pid)).includes(config)) pids.push(pid);
      const at = Date.now();
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      result.haproxyKill.push(await measure(probe, at));
      log(`(v): HAProxy kill ${k + 1}/${opts.kills}: ${result.haproxyKill.at(-1)} ms`);
    }
  } finally {
    await probe.stop();
  }

  // Planned switchover by `nslb drain` on the MASTER: the pair stays, the roles swap.
  await until('ha0 redundant', () => redundant(['ha0']), 60_000);
  const drained = (await masterOf('ha0')) ?? 'node1';
  const drainWrk = runCommand(
    ['ip', 'netns', 'exec', client.netns, 'wrk', '-t1', '-c4', '-d8s', '--timeout', '3s', '-H', 'Connection: close', `http://${vip(0)}/`],
    { timeoutMs: 30_000 },
  );
  await sleep(3_000);
  await sim('exec', drained, '--', process.execPath, join(REPO_ROOT, 'dist/cli/main.js'), 'drain', drained, '--state-dir', nodeStateDir(drained));
  result.drain = parseWrk((await drainWrk).stdout);
  log(`(v): nslb drain: ${result.drain.requests} requests, socket errors ${JSON.stringify(result.drain.socketErrors)}, non-2xx ${result.drain.non2xx3xx}`);

  // Planned switchover: the MASTER leaves the placement.
  await until('ha0 redundant', () => redundant(['ha0']), 60_000);
  const m = (await masterOf('ha0')) ?? 'node1';
  const wrk = runCommand(
    ['ip', 'netns', 'exec', client.netns, 'wrk', '-t1', '-c4', '-d10s', '--timeout', '3s', '-H', 'Connection: close', `http://${vip(0)}/`],
    {
      timeoutMs: 30_000,
    },
  );
  await sleep(3_000);
  // node3 takes the MASTER's slot: the BACKUP keeps its slot and VRRP address (node3 does not exist here, so
  // the pair runs DEGRADED afterwards).
  placement = placement.map((n) => (n === m ? 'node3' : n));
  await writeFile(join(watch, 'ha0.yaml'), lbYaml(0, placement));
  result.switchover = parseWrk((await wrk).stdout);
  log(
    `(v): switchover: ${result.switchover.requests} requests, socket errors ${JSON.stringify(result.switchover.socketErrors)}, non-2xx ${result.switchover.non2xx3xx}`,
  );
  await rm(join(watch, 'ha0.yaml'));

  // 100 pairs, preferred MASTER node1; node1 dies.
  log(`(v): ${opts.bulkN} pairs`);
  for (let i = 1; i <= opts.bulkN; i++) await writeFile(join(watch, `ha${i}.yaml`), lbYaml(i, ['node1', 'node2']));
  const names = Array.from({ length: opts.bulkN }, (_, i) => `ha${i + 1}`);
  await until(`${opts.bulkN} pairs redundant`, () => redundant(names), 600_000);
  const memory = await keepalivedMemory('node2');
  result.keepalivedPssKiB = memory.pss / opts.bulkN;
  result.keepalivedRssKiB = memory.rss / opts.bulkN;
  const ips = names.map((_, i) => vip(i + 1));
  const at = Date.now();
  await sim('kill', 'node1');
  const pending = new Set(ips);
  let last = at;
  for (const end = at + 30_000; pending.size > 0 && Date.now() < end; ) {
    const failed = new Set((await checkVips(client, [...pending])).failed.map((f) => f.ip));
    for (const ip of [...pending]) if (!failed.has(ip)) pending.delete(ip);
    last = Date.now();
  }
  result.bulkAnswered = opts.bulkN - pending.size;
  result.bulkFailover = pending.size === 0 ? last - at : Number.POSITIVE_INFINITY;
  log(`(v): ${opts.bulkN} pairs failed over in ${result.bulkFailover} ms (${result.bulkAnswered} answered)`);
  // Down now, not at the end of the run: the phases after this one measure a quiet machine.
  for (const server of servers) await server.stop().catch(() => undefined);
  for (const h of [...hosts, client]) await deleteProviderHost(h);
  await sim('down');
  return result;
}
