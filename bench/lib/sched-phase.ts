// Phase (w): issue 17's ACTIVE_STANDBY figures on the simulated cluster in Kubernetes mode (scripts/sim-cluster.sh
// up 3 --kubeconfig, the in-test API server in this process), load balancers placed by the scheduler:
// - redundancy restored after a MASTER node dies: a pair's MASTER node SIGKILLed whole; the figure is kill → the
//   LoadBalancer's status says redundant again (placed on two live nodes, one MASTER and one BACKUP, both ready),
//   the new BACKUP on the third node. The killed node is booted again before the next kill.
// - drain of a node that is MASTER for some of N pairs (BACKUP for others): the Node labelled nslb.dev/drain=true;
//   duration (label → every pair off the node and redundant again) and failed requests of clients probing the VIPs
//   of the pairs it was MASTER of (every 20 ms each, new connection per request). Beside it, label → the node
//   serves nothing: every pair placed off it and let go by its agent (the pair's state dir gone on that node).
import { existsSync, readdirSync } from 'node:fs';
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { request as httpRequest } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { nodeNames } from '../../src/desired/names.js';
import { FakeApiServer, loadCrdFiles, type Obj } from '../../test/support/fake-apiserver.js';
import { percentile, startProbe, type Probe } from '../../test/e2e/ha-pair.js';
import { REPO_ROOT, startHttpServer, type Host, type TestRun } from '../../test/e2e/harness.js';
import { assertNoRig, deleteProviderHost, nodeStateDir, providerHost, SIM_DIR, sim, simStatus, stopAgents, raiseControlPlane } from '../../test/e2e/sim-rig.js';
import { log, sleep, startWrk, type Cleanup } from './node-env.js';
import { processTicks } from './proc-ticks.js';
import { socketErrorTotal, type WrkSummary } from './report.js';

export interface SchedResult {
  /** Kill of a pair's MASTER node → redundant again on live nodes, ms. */
  redundancy: number[];
  drainN: number;
  /** Pairs the drained node was MASTER of. */
  drainMasterOf?: number;
  drainMs?: number;
  drainRequests?: number;
  drainFailed?: number;
  /** wrk on the first VIP the drained node was MASTER of (its failures are in drainFailed too). */
  drainWrk?: WrkSummary;
  /** Label → the pair placed off the drained node, and → redundant again: p50 and the last, ms. */
  drainPlaced?: { p50: number; max: number };
  drainRedundant?: { p50: number; max: number };
  /**
   * Label → the drained node let the pair go (placed off it, and its agent has torn it down: keepalived and HAProxy
   * stopped, port and netns deleted, the state dir lb/<netns> removed last): p50 and the last, ms. The last is
   * when the node serves nothing.
   */
  drainReleased?: { p50: number; max: number };
  /** When each pair the drained node was MASTER of reported another node MASTER (status.nodes). */
  drainMasterOff?: { p50: number; max: number; n: number };
  /**
   * A drain that did not end within its timeout: how far it got (pairs placed off the node, redundant again, let
   * go by it, of those on it). The figures of the kills before it stay in the table.
   */
  drainTimedOut?: { afterMs: number; on: number; placed: number; redundant: number; released: number };
  /**
   * The control probe over the same time: the member straight from the client, no load balancer on the way. Not
   * counted in drainFailed; when it fails too, the client, the member or the machine failed those requests.
   */
  drainControl?: { failed: number; total: number };
}

// 10.234.0.0/16 on sim-provider: hosts at .255.x, VIPs at .1.x, VRRP addresses at .2.x and .3.x.
const net: TestRun = {
  prefix: 'bsc',
  subnet: '10.234.255',
  name: (s: string) => `bsc${s}`,
  ip: (o: number) => `10.234.255.${o}`,
  cidr: (o: number) => `10.234.255.${o}/16`,
} as unknown as TestRun;
const NS = 'bench-sched';
const V = 'nslb.dev/v1alpha1';
const vip = (i: number) => `10.234.1.${i + 1}`;

/**
 * NSLB_BENCH_W_ADVERT_MS=MS (development, not part of the figures): the pairs' spec.vrrp.advertIntervalMs, for
 * seeing whether a drain's failures are VRRP adverts that miss the master-down interval.
 */
const advertMs = process.env.NSLB_BENCH_W_ADVERT_MS === undefined ? undefined : Number(process.env.NSLB_BENCH_W_ADVERT_MS);

function pair(i: number): Obj[] {
  const name = `w${i}`;
  const meta = (n: string) => ({ name: n, namespace: NS });
  const vrrp = { addresses: [`10.234.2.${i + 1}`, `10.234.3.${i + 1}`], ...(advertMs === undefined ? {} : { advertIntervalMs: advertMs }) };
  return [
    {
      apiVersion: V,
      kind: 'LoadBalancer',
      metadata: meta(name),
      spec: { vip: { address: vip(i), prefixLength: 16 }, topology: 'ACTIVE_STANDBY', vrrp },
    },
    { apiVersion: V, kind: 'Listener', metadata: meta(`${name}-l`), spec: { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` } },
    { apiVersion: V, kind: 'Pool', metadata: meta(`${name}-p`), spec: { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' } },
    { apiVersion: V, kind: 'Member', metadata: meta(`${name}-m`), spec: { pool: `${name}-p`, address: net.ip(11), port: 8080 } },
  ];
}

/** Failed probe requests, in runs of consecutive failures: [first sent, last sent, count], ms from `at`. */
function failureRuns(results: readonly { ok: boolean; at: number; detail?: string; body?: string }[], at: number): [number, number, number, string][] {
  // [first sent, last sent, how many, what failed: the distinct errors or non-200 bodies of the run]
  const runs: [number, number, number, string][] = [];
  let open = false;
  const what = (r: { detail?: string; body?: string }) => (r.detail ?? `non-200: ${(r.body ?? '').slice(0, 40)}`).slice(0, 60);
  for (const r of [...results].sort((a, b) => a.at - b.at)) {
    if (r.ok) {
      open = false;
      continue;
    }
    const last = runs.at(-1);
    if (open && last !== undefined) {
      last[1] = r.at - at;
      last[2]++;
      if (!last[3].split(' | ').includes(what(r))) last[3] += ` | ${what(r)}`;
    } else runs.push([r.at - at, r.at - at, 1, what(r)]);
    open = true;
  }
  return runs;
}

/** The load balancers' state dirs a node holds (none: no lb/ dir). */
function lbDirs(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function until<T>(what: string, fn: () => T | Promise<T>, timeoutMs: number): Promise<NonNullable<T>> {
  for (const end = Date.now() + timeoutMs; ; await sleep(100)) {
    const v = await fn();
    if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`(w): ${what} not within ${timeoutMs} ms`);
  }
}

/** `until`, but a timeout is handed to `timedOut` instead of thrown: the phase goes on to its summary. */
async function untilOrRecord<T>(what: string, fn: () => T | Promise<T>, timeoutMs: number, timedOut: (err: Error) => void): Promise<void> {
  try {
    await until(what, fn, timeoutMs);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.includes(' not within ')) throw err;
    timedOut(err);
  }
}

/** The machine's idle share from /proc/stat's first line: [idle + iowait, total] in ticks. */
async function cpuTotals(): Promise<[number, number]> {
  const f = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  return [(f[3] ?? 0) + (f[4] ?? 0), f.reduce((a, b) => a + b, 0)];
}

/** What kind of process a PID is, for settle(): the daemon's name, or for Node which script it runs. */
async function kindOf(pid: number, comm: string): Promise<string> {
  if (pid === process.pid) return 'bench (API server, probes)';
  if (comm !== 'node' && comm !== 'MainThread') return comm;
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  if (argv.some((a) => a.endsWith('cli/main.js'))) return 'nslb agent';
  const script = argv.slice(1).find((a) => !a.startsWith('-')) ?? '';
  return `node ${script.split('/').at(-1) ?? ''}`.trim();
}

/** NSLB_BENCH_W_SETTLE_S: wait, then log the CPU (cores) by kind of process and the machine's busy share. */
async function settle(seconds: number): Promise<void> {
  const before = await processTicks();
  const [idle0, total0] = await cpuTotals();
  const load0 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  await sleep(seconds * 1_000);
  const after = await processTicks();
  const [idle1, total1] = await cpuTotals();
  const load1 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  // A process's own CPU, and apart the CPU of what it forked and reaped meanwhile (keepalived's check scripts).
  const byKind = new Map<string, { ticks: number; n: number }>();
  const add = (kind: string, ticks: number, n: number) => {
    const e = byKind.get(kind) ?? { ticks: 0, n: 0 };
    byKind.set(kind, { ticks: e.ticks + ticks, n: e.n + n });
  };
  for (const [pid, a] of after) {
    const b = before.get(pid);
    const same = b?.comm === a.comm;
    const kind = await kindOf(pid, a.comm);
    add(kind, a.ticks - (same ? b.ticks : 0), 1);
    // A node's init reaps whatever died in it (the nodes' orphans): counted under its own kind too.
    if (same && a.children > b.children) add(`${kind}: reaped children`, a.children - b.children, 0);
  }
  const cores = (t: number) => (t / 100 / seconds).toFixed(3);
  const rows = [...byKind].sort((x, y) => y[1].ticks - x[1].ticks).slice(0, 12);
  const busy = total1 - total0 === 0 ? 0 : 1 - (idle1 - idle0) / (total1 - total0);
  log(`(w): settled ${seconds} s before the drain: load ${load0} → ${load1}, the machine ${(busy * 100).toFixed(0)} % busy; CPU in cores by kind:`);
  for (const [kind, e] of rows) log(`(w):   ${cores(e.ticks).padStart(6)}  ${kind} (${e.n})`);
}

/**
 * Development aids (not for the figures): NSLB_BENCH_W_LOGS=DIR copies each node's agent.log there before the rig
 * goes down, with drain.json (each pair's MASTER moved / placed off / redundant, the load average each second, and
 * every API request from 2 s before the label on: method, path, status, arrival and answer time); NSLB_BENCH_W_AGENT_FLAGS='--flag value …' goes to every agent.
 */
async function keepLogs(timeline: unknown, file = 'drain.json'): Promise<void> {
  const to = process.env.NSLB_BENCH_W_LOGS;
  if (to === undefined || to === '') return;
  const from = process.env.NSLB_SIM_DIR ?? '/var/lib/nslb-sim';
  await mkdir(to, { recursive: true });
  await writeFile(join(to, file), JSON.stringify(timeline));
  for (const d of await readdir(from).catch(() => [] as string[]))
    if (/^node\d+$/.test(d)) {
      await cp(join(from, d, 'agent.log'), join(to, `${d}.log`)).catch(() => undefined);
      await cp(join(from, d, 'ovs', 'log', 'ovs-vswitchd.log'), join(to, `${d}-ovs-vswitchd.log`)).catch(() => undefined);
    }
  log(`(w): agent logs copied to ${to}`);
}

/**
 * The API server is in this process: for this phase it runs as the rig's control plane does (raiseControlPlane in
 * test/e2e/sim-rig.ts: every thread and the session's autogroup at nice -10), restored after.
 */
export async function phaseSched(opts: { kills: number; drainN: number; cleanup: Cleanup }): Promise<SchedResult> {
  let restore: () => void = () => {};
  try {
    restore = raiseControlPlane();
  } catch (err) {
    log(`(w): cannot raise the API server's priority (${String(err)}); measuring without`);
  }
  try {
    return await phaseSchedAt(opts);
  } catch (err) {
    // The phase stopped before its end (a rig command failed, a wait ran out): the nodes' logs are what tells why,
    // and the cleanup takes the rig down right after this.
    await keepLogs({ error: err instanceof Error ? err.message : String(err) }, 'error.json').catch(() => undefined);
    throw err;
  } finally {
    restore();
  }
}

/** ms from asking to the whole answer, or undefined when none came within 30 s. */
function timedGet(target: { url: string; socketPath?: string }): Promise<number | undefined> {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = httpRequest(
      target.url,
      { agent: false, timeout: 30_000, ...(target.socketPath === undefined ? {} : { socketPath: target.socketPath }) },
      (res) => {
        res.resume();
        res.on('end', () => resolve(Date.now() - started));
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

const execFileP = promisify(execFile);

/**
 * The pairs' one member: a HAProxy answering every request itself (`http-request return`), in the member's
 * namespace, on port 8080 as scripts/member-server.mjs would. It stands for a server farm that keeps up: the
 * drain's figures are about the load balancers, and with the one Node process as every VIP's only member, that
 * process answered 1.9-3.5 s late during the drains of 2026-12-06 (the kernel ACKed at once; no listen overflow)
 * and every path failed with it, the control too. NSLB_BENCH_W_MEMBER=node puts member-server.mjs back.
 */
async function startHaproxyMember(host: Host): Promise<{ stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'nslb-bench-w-member-'));
  const cfg = join(dir, 'haproxy.cfg');
  const pidfile = join(dir, 'haproxy.pid');
  await writeFile(
    cfg,
    [
      'global',
      '  maxconn 4000',
      'defaults',
      '  mode http',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 30s',
      'frontend m1',
      '  bind 0.0.0.0:8080',
      '  http-request return status 200 content-type text/plain string "member m1"',
      '',
    ].join('\n'),
  );
  await execFileP('ip', ['netns', 'exec', host.netns, 'haproxy', '-D', '-f', cfg, '-p', pidfile]);
  const pid = Number((await readFile(pidfile, 'utf8')).trim());
  return {
    stop: async () => {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function phaseSchedAt(opts: { kills: number; drainN: number; cleanup: Cleanup }): Promise<SchedResult> {
  const result: SchedResult = { redundancy: [], drainN: opts.drainN };
  await assertNoRig();
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  await api.start();
  const kubeconfig = api.writeKubeconfig();
  opts.cleanup.add('simulated cluster (w)', async () => {
    await sim('down');
    await api.stop().catch(() => undefined);
    await rm(dirname(kubeconfig), { recursive: true, force: true });
  });
  log('(w): booting 3 simulated nodes in Kubernetes mode');
  const extra = (process.env.NSLB_BENCH_W_AGENT_FLAGS ?? '').split(' ').filter((f) => f !== '');
  await sim('up', '3', '--kubeconfig', kubeconfig, '--', '--resync', '10', ...extra);
  const member = await providerHost(net, 'm1', 11);
  opts.cleanup.add(`host ${member.name}`, () => deleteProviderHost(member));
  const server =
    process.env.NSLB_BENCH_W_MEMBER === 'node'
      ? await startHttpServer(member, { port: 8080, name: 'm1', bindAddress: '0.0.0.0' })
      : await startHaproxyMember(member);
  opts.cleanup.add(`server in ${member.name}`, () => server.stop());
  const client: Host = await providerHost(net, 'c', 100);
  opts.cleanup.add(`host ${client.name}`, () => deleteProviderHost(client));

  // Each poll reads each load balancer once, without a copy: the in-test API server copies an object on every get,
  // and the drain's 100 ms poll asking up to 7 times per pair made this process (the API server) spend 50 s of a
  // 125 s drain cloning, its event loop stalled up to 5.8 s, every agent's request waiting behind it (22 s and
  // 5.2 s still with one get per pair per poll).
  let polled: Map<number, Obj | undefined> | undefined;
  const lb = (i: number): Obj | undefined => {
    if (polled?.has(i)) return polled.get(i);
    const o = api.peek(V, 'loadbalancers', NS, `w${i}`) as Obj | undefined;
    polled?.set(i, o);
    return o;
  };
  const onePoll =
    <T>(fn: () => T) =>
    (): T => {
      polled = new Map();
      try {
        return fn();
      } finally {
        polled = undefined;
      }
    };
  const placement = (i: number): string[] => [...(lb(i)?.status?.placement?.nodes ?? [])];
  const reported = (i: number): { name: string; role?: string; ready: boolean }[] => lb(i)?.status?.nodes ?? [];
  const masterOf = (i: number) => reported(i).find((n) => n.role === 'MASTER')?.name;
  const redundant = (i: number): boolean => {
    const placed = placement(i);
    const nodes = reported(i);
    return (
      placed.length === 2 &&
      nodes.length === 2 &&
      nodes.every((n) => n.ready && placed.includes(n.name)) &&
      nodes.some((n) => n.role === 'MASTER') &&
      nodes.some((n) => n.role === 'BACKUP')
    );
  };
  const allUp = async () => Object.values(await simStatus()).every((s) => s.agent === 'up');

  // Redundancy restored after a MASTER node dies.
  let restartedAt = 0;
  for (const o of pair(0)) api.create(o);
  for (let k = 0; k < opts.kills; k++) {
    await until('all nodes up', allUp, 120_000);
    await until('w0 redundant', () => redundant(0), 120_000);
    const master = masterOf(0)!;
    const before = placement(0);
    await sleep(500 + Math.random() * 500);
    const at = Date.now();
    await sim('kill', master);
    await until('w0 redundant on live nodes', () => redundant(0) && !placement(0).includes(master), 120_000);
    result.redundancy.push(Date.now() - at);
    log(`(w): MASTER ${master} killed (${before.join(',')} → ${placement(0).join(',')}): redundant again in ${result.redundancy.at(-1)} ms`);
    restartedAt = Date.now();
    await sim('start', master);
  }

  // Drain of a node that is MASTER for some of N pairs.
  await until('all nodes up', allUp, 120_000);
  // Up is not yet a member: an agent answers /healthz before its first node Lease renewal lands, and the scheduler
  // sees that renewal through its watch a moment later. Pairs created in between went to the two other nodes, all 100
  // of them (placement is stable: nothing moves them back), and the drain then moved 100 slots instead of ~67.
  await until(
    'every node a member again (its node Lease renewed since the last restart)',
    () =>
      ['node1', 'node2', 'node3'].every((n) => {
        const renewed = (api.peek('coordination.k8s.io/v1', 'leases', 'nslb-system', `nslb-node-${n}`) as Obj | undefined)?.spec?.renewTime;
        return renewed !== undefined && Date.parse(renewed) > restartedAt;
      }),
    60_000,
  );
  await sleep(2_000);
  const createdAt = Date.now();
  for (let i = 1; i <= opts.drainN; i++) for (const o of pair(i)) api.create(o);
  const ids = Array.from({ length: opts.drainN }, (_, i) => i + 1);
  try {
    await until(
      `${opts.drainN} pairs redundant`,
      onePoll(() => ids.every(redundant)),
      600_000,
    );
  } catch (err) {
    // Say which pairs are not redundant and what their status says (phaseSched keeps the agents' logs).
    const stuck = onePoll(() => ids.filter((i) => !redundant(i)).map((i) => ({ i, placement: placement(i), nodes: reported(i) })))();
    log(`(w): ${stuck.length} of ${opts.drainN} pairs not redundant; the first ten: ${JSON.stringify(stuck.slice(0, 10))}`);
    throw err;
  }
  log(`(w): ${opts.drainN} pairs created → all redundant (MASTER and BACKUP ready) in ${Date.now() - createdAt} ms`);
  const masters = new Map<string, number[]>();
  for (const i of ids) masters.set(masterOf(i)!, [...(masters.get(masterOf(i)!) ?? []), i]);
  const [drained, mastered] = [...masters].sort((a, b) => b[1].length - a[1].length)[0]!;
  result.drainMasterOf = mastered.length;
  const on = ids.filter((i) => placement(i).includes(drained));
  // NSLB_BENCH_W_SETTLE_S=S (development): wait S seconds before the drain and say where the CPU went meanwhile,
  // by kind of process: the steady state of N pairs on this machine, against which the drain runs.
  const settleS = Number(process.env.NSLB_BENCH_W_SETTLE_S ?? 0);
  if (settleS > 0) await settle(settleS);
  // wrk (1 thread, 4 connections, Connection: close: a new connection per request, as a planned switchover
  // promises to keep) on the first VIP it is MASTER of, and the 20 ms probes on the next four.
  const wrk = startWrk(client, `http://${vip(mastered[0]!)}/`, 3_600, 4, { timeoutS: 3, close: true });
  const probes: Probe[] = mastered.slice(1, 5).map((i) => startProbe(client, `http://${vip(i)}/`, 20, 3_000));
  // A control, not counted: the member itself, straight from the client (no load balancer on the way). When it
  // fails too, the client, the member or the provider segment failed, not the drain.
  const control = startProbe(client, `http://${net.ip(11)}:8080/`, 20, 3_000);
  // NSLB_BENCH_W_PCAP=FILE (development): the client's ARP and TCP SYN/RST frames, with MACs, for the drain.
  const pcapFile = process.env.NSLB_BENCH_W_PCAP;
  // scripts/setup-node.sh does not install tcpdump (a development aid): say so rather than capture nothing.
  const tcpdump = pcapFile !== undefined && ['/usr/bin/tcpdump', '/usr/sbin/tcpdump'].some((f) => existsSync(f));
  if (pcapFile !== undefined && !tcpdump) log('(w): NSLB_BENCH_W_PCAP needs tcpdump (apt-get install tcpdump): no capture');
  const pcap =
    pcapFile === undefined || !tcpdump
      ? undefined
      : spawn(
          'ip',
          ['netns', 'exec', client.netns, 'tcpdump', '-i', 'eth0', '-nn', '-e', '-U', '-w', pcapFile, 'arp or tcp[tcpflags] & (tcp-syn|tcp-rst) != 0'],
          {
            stdio: 'ignore',
          },
        );
  await sleep(1_000);
  const at = Date.now();
  const node = api.get('v1', 'nodes', '', drained) as Obj;
  api.update({ ...node, metadata: { ...node.metadata, labels: { ...node.metadata.labels, 'nslb.dev/drain': 'true' } } });
  // When each pair left the drained node (placement) and was redundant again: where the time goes.
  const placedAt = new Map<number, number>();
  const redundantAt = new Map<number, number>();
  // When the drained node's agent had let each pair go (its state dir gone there, after the placement left).
  const releasedAt = new Map<number, number>();
  const lbDir = join(nodeStateDir(drained), 'lb');
  const netnsOf = new Map(on.map((i) => [i, nodeNames(NS, `w${i}`).netns]));
  // Development aid (NSLB_BENCH_W_LOGS): when each pair's MASTER left the drained node, and the load average.
  const masterMovedAt = new Map<number, number>();
  const loads: [number, string][] = [];
  const loadTimer = setInterval(() => void readFile('/proc/loadavg', 'utf8').then((l) => loads.push([Date.now() - at, l.split(' ')[0] ?? ''])), 1_000);
  // Where an agent's request waits: a GET of one Lease every second straight to the API server (this process's event
  // loop) and through the rig's relay (its Unix socket, as every node's forwarder reaches it), and this process's
  // event-loop delay.
  const roundTrips: { t: number; direct?: number; relay?: number }[] = [];
  const loopDelay = monitorEventLoopDelay({ resolution: 20 });
  loopDelay.enable();
  const rtTimer = setInterval(() => {
    const row: { t: number; direct?: number; relay?: number } = { t: Date.now() - at };
    roundTrips.push(row);
    const path = '/apis/coordination.k8s.io/v1/namespaces/nslb-system/leases/nslb-scheduler';
    void timedGet({ url: `${api.url}${path}` }).then((ms) => {
      if (ms !== undefined) row.direct = ms;
    });
    void timedGet({ socketPath: join(SIM_DIR, 'api.sock'), url: `http://localhost${path}` }).then((ms) => {
      if (ms !== undefined) row.relay = ms;
    });
  }, 1_000);
  // NSLB_BENCH_W_DRAIN_TIMEOUT_S: a shorter wait while developing.
  const drainTimeoutMs = Number(process.env.NSLB_BENCH_W_DRAIN_TIMEOUT_S ?? 300) * 1000;
  try {
    await untilOrRecord(
      `every pair off ${drained}`,
      onePoll(() => {
        const held = new Set(lbDirs(lbDir));
        for (const i of on) {
          if (!placedAt.has(i) && placement(i).length > 0 && !placement(i).includes(drained)) placedAt.set(i, Date.now() - at);
          if (!masterMovedAt.has(i) && masterOf(i) !== undefined && masterOf(i) !== drained) masterMovedAt.set(i, Date.now() - at);
          if (placedAt.has(i) && !redundantAt.has(i) && redundant(i)) redundantAt.set(i, Date.now() - at);
          if (placedAt.has(i) && !releasedAt.has(i) && !held.has(netnsOf.get(i)!)) releasedAt.set(i, Date.now() - at);
        }
        // The verdict's clock: every pair off the node and redundant again.
        if (result.drainMs === undefined && redundantAt.size === on.length) result.drainMs = Date.now() - at;
        // Then (if the node still holds some) until its agent has let every pair go, 30 s at most.
        const waited = Date.now() - at;
        return result.drainMs !== undefined && (releasedAt.size === on.length || waited > result.drainMs + 30_000 || waited > drainTimeoutMs - 500);
      }),
      drainTimeoutMs,
      (err) => {
        result.drainTimedOut = { afterMs: drainTimeoutMs, on: on.length, placed: placedAt.size, redundant: redundantAt.size, released: releasedAt.size };
        log(`${err.message}: ${JSON.stringify(result.drainTimedOut)}`);
      },
    );
    await sleep(3_000);
  } finally {
    const summary = await wrk.finish().catch((err: unknown) => {
      log(`(w): wrk: ${String(err)}`);
      return undefined;
    });
    if (summary !== undefined) result.drainWrk = summary;
    for (const p of [...probes, control]) await p.stop();
    pcap?.kill('SIGINT');
    clearInterval(loadTimer);
    clearInterval(rtTimer);
    loopDelay.disable();
    const rt = (k: 'direct' | 'relay') => roundTrips.map((r) => r[k]).filter((x): x is number => x !== undefined);
    log(
      `(w): round trips of a Lease GET during the drain: direct p50 ${percentile(rt('direct'), 50)} ms, max ${Math.max(0, ...rt('direct'))} ms; ` +
        `through the relay p50 ${percentile(rt('relay'), 50)} ms, max ${Math.max(0, ...rt('relay'))} ms (${roundTrips.length} asked); ` +
        `this process's event-loop delay max ${Math.round(loopDelay.max / 1e6)} ms, p99 ${Math.round(loopDelay.percentile(99) / 1e6)} ms`,
    );
    // Also when the drain did not end: that is when the timeline matters most.
    await keepLogs({
      drained,
      at,
      drainMs: result.drainMs,
      loads,
      roundTrips,
      pairs: on.map((i) => ({
        i,
        master: mastered.includes(i),
        masterMoved: masterMovedAt.get(i),
        placed: placedAt.get(i),
        released: releasedAt.get(i),
        redundant: redundantAt.get(i),
      })),
      status: on.map((i) => ({ i, placement: placement(i), nodes: reported(i) })),
      // Each probe's failed requests as runs [first sent, last sent, how many] (ms from the label): which VIP, when.
      probeFailures: probes.map((p, k) => ({ i: mastered[k + 1], runs: failureRuns(p.results(), at) })),
      controlFailures: failureRuns(control.results(), at),
      requests: api
        .requestLog()
        .filter((e) => e.at >= at - 2_000 && !e.watch)
        .map((e) => ({ m: e.method, p: e.path, s: e.status, t: e.at - at, ms: e.endedAt === 0 ? -1 : e.endedAt - e.at })),
    });
  }
  const spread = (m: Map<number, number>) => {
    const v = [...m.values()].sort((a, b) => a - b);
    return { p50: v[Math.floor((v.length - 1) / 2)] ?? 0, max: v.at(-1) ?? 0 };
  };
  result.drainPlaced = spread(placedAt);
  result.drainRedundant = spread(redundantAt);
  result.drainReleased = spread(releasedAt);
  const masterOff = new Map([...masterMovedAt].filter(([i]) => mastered.includes(i)));
  if (masterOff.size > 0) result.drainMasterOff = { ...spread(masterOff), n: masterOff.size };
  const results = probes.flatMap((p) => p.results().filter((r) => r.at >= at - 1_000));
  const wrkFailed = result.drainWrk === undefined ? 0 : socketErrorTotal(result.drainWrk) + result.drainWrk.non2xx3xx;
  result.drainRequests = results.length + (result.drainWrk?.requests ?? 0);
  const failed = results.filter((r) => !r.ok);
  result.drainFailed = failed.length + wrkFailed;
  const controlResults = control.results().filter((r) => r.at >= at - 1_000);
  result.drainControl = { failed: controlResults.filter((r) => !r.ok).length, total: controlResults.length };
  log(`(w): control (the member straight from the client, not counted): ${controlResults.filter((r) => !r.ok).length} failed of ${controlResults.length}`);
  for (const f of failed.slice(0, 5)) log(`(w): failed: sent +${f.at - at} ms, ended +${f.done - at} ms: ${f.detail ?? `HTTP answer ${f.body ?? ''}`}`);
  if (result.drainWrk !== undefined)
    log(
      `(w): wrk on ${vip(mastered[0]!)}: ${result.drainWrk.requests} requests, socket errors ${JSON.stringify(result.drainWrk.socketErrors)}, non-2xx ${result.drainWrk.non2xx3xx}`,
    );
  log(
    `(w): drained ${drained} (MASTER of ${mastered.length}, on ${on.length} of ${opts.drainN} pairs) in ${result.drainMs} ms; ${result.drainFailed} failed of ${result.drainRequests}; ` +
      `placed off it p50 ${result.drainPlaced.p50} ms, last ${result.drainPlaced.max} ms; let go by it (serves nothing) p50 ${result.drainReleased.p50} ms, ` +
      `last ${result.drainReleased.max} ms; redundant p50 ${result.drainRedundant.p50} ms, last ${result.drainRedundant.max} ms`,
  );
  // What the API server (in this process) was asked during the drain: where its time went.
  const during = (pred: (e: { method: string; path: string; watch: boolean }) => boolean) =>
    api.countRequests((e) => e.at >= at && e.at <= at + (result.drainMs ?? drainTimeoutMs) && !e.watch && pred(e));
  const writing = (m: string) => m === 'PUT' || m === 'PATCH' || m === 'POST';
  log(
    `(w): API requests during the drain: ${during(() => true)}; status writes ${during((e) => writing(e.method) && e.path.endsWith('/status'))}, ` +
      `Events ${during((e) => writing(e.method) && e.path.includes('/events'))}, Lease reads and writes ${during((e) => e.path.includes('/leases'))}`,
  );
  // Development aid: with NSLB_SIM_NODE_FLAGS=--cpu-prof (scripts/lib/sim-node.sh), an agent writes its profile only when it exits by itself (the
  // rig's `down` SIGKILLs): NSLB_BENCH_W_TERM_AGENTS=1 SIGTERMs each one first and waits for it.
  if (process.env.NSLB_BENCH_W_TERM_AGENTS === '1') await stopAgents(['node1', 'node2', 'node3'], (m) => log(`(w): ${m}`));
  await server.stop().catch(() => undefined);
  for (const h of [member, client]) await deleteProviderHost(h);
  await sim('down');
  await api.stop().catch(() => undefined);
  await rm(dirname(kubeconfig), { recursive: true, force: true });
  return result;
}
