// `npm run bench [-- --quick]`: sets up a real node (its own OVS bridge, member and client hosts), runs the
// agent as an operator would, measures issue 5's figures (a)–(f) and a naive neutron-lbaas-style baseline,
// and prints one table (also written to bench/last-run.md). What each figure means: bench/README.md.
//
// Options:
//   --quick            small N and few runs (development; about 2–3 minutes); verdicts that need the full
//                      sizes are shown as "info"
//   --phases a,b,e,c,k,s,h,v,w only these groups (a: new LB, b: member changes, e: wrk, c: bulk with d and f,
//                      k: Kubernetes mode against the in-test API server, s: a Service of type LoadBalancer →
//                      ingress IP and traffic, g: the bare serial shell loop at the largest bulk N, h: deletion
//                      and nslb cleanup of N, i: density at N = 2,000 with (j), where the agent's time goes,
//                      v: ACTIVE_STANDBY failover on the simulated cluster, w: ACTIVE_STANDBY placed by the
//                      scheduler in Kubernetes mode: redundancy after a MASTER node dies, drain)
//   --no-setup         skip scripts/setup-node.sh (and its build)
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nodeNames } from '../src/desired/names.js';
import { trace } from '../src/log/trace.js';
import { phaseHa, type HaResult } from './lib/ha-phase.js';
import { phaseSched, type SchedResult } from './lib/sched-phase.js';
import { deleteBridge, deleteHost, HarnessCommandError, NSLB_CLI, REPO_ROOT, runCommand } from '../test/e2e/harness.js';
import { BenchAgent, loadBalancerStatuses, untilInForce, workerPid } from './lib/agent.js';
import { kubeRows, phaseK, type KubeResult } from './lib/kube-phase.js';
import { baselineLb, createBaselineLb, deleteBaselineLbs, type BaselineLb } from './lib/baseline.js';
import { prepareBareOne, runBareLoop } from './lib/bare-loop.js';
import { lbYaml, type BenchLb, type BenchMember } from './lib/manifests.js';
import { phaseServices, type ServicesResult } from './lib/services.js';
import { phaseH, teardownRows, type TeardownResult } from './lib/teardown.js';
import { type Breakdown, breakdownRows, densityRows, phaseI, readBreakdown, type DensityResult } from './lib/density.js';
import {
  checkInterrupted,
  checkVips,
  Cleanup,
  interruption,
  createBenchNode,
  log,
  MEMBERS,
  nslbMember,
  now,
  PREFIX,
  Probe,
  sleep,
  startWrk,
  vipOf,
  vipsAnsweringWithin,
  type BenchNode,
  type MemberName,
  type VipCheck,
  type VipsAnswering,
} from './lib/node-env.js';
import {
  firstSeen,
  goneFor,
  inRotation,
  median,
  ms,
  percentile,
  renderTable,
  socketErrorTotal,
  verdict,
  type Row,
  type ServerState,
  type Verdict,
  type WrkSummary,
} from './lib/report.js';

const execFileP = promisify(execFile);
const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = '/tmp/nslb-bench';
const BRIDGE = 'nslbbench';
const NAMESPACE = 'bench';
const HOSTS = ['bnch-cli', ...Object.keys(MEMBERS).map((m) => `bnch-${m}`)];
/** Consecutive responses without a member that say it is out of rotation. */
const GONE_K = 10;

interface Settings {
  quick: boolean;
  phases: Set<string>;
  setup: boolean;
  aRuns: number;
  /** Iterations of (add m3, remove m3, toggle m1's weight). */
  bRounds: number;
  eMemberChanges: number;
  eReloadChanges: number;
  bulk: number[];
  bulkResyncS: number;
  sRuns: number;
  /** Load balancers applied at once in phase (k). */
  kubeN: number;
  /** Load balancers deleted, then cleaned up, in phase (h). */
  teardownN: number;
  /** Load balancers on the node in phase (i). */
  densityN: number;
  /** Phase (v): node kills and HAProxy kills each, and the pairs whose MASTER node dies at once. */
  haKills: number;
  haBulk: number;
  schedKills: number;
  schedDrainN: number;
}

const ALL_PHASES = ['a', 'b', 'e', 'c', 'g', 'k', 's', 'h', 'i', 'v', 'w'];

function parseArgs(argv: string[]): Settings {
  const quick = argv.includes('--quick');
  const phasesArg =
    argv.find((a) => a.startsWith('--phases='))?.slice('--phases='.length) ?? (argv.includes('--phases') ? argv[argv.indexOf('--phases') + 1] : undefined);
  for (const a of argv) {
    if (a.startsWith('--') && !['--quick', '--phases', '--no-setup'].includes(a) && !a.startsWith('--phases=')) {
      throw new Error(`unknown option ${a} (known: --quick, --phases ${ALL_PHASES.join(',')}, --no-setup)`);
    }
  }
  const phases = new Set((phasesArg ?? ALL_PHASES.join(',')).split(',').map((p) => p.trim()));
  for (const p of phases) if (!ALL_PHASES.includes(p)) throw new Error(`--phases takes ${ALL_PHASES.join(',')}; got ${p}`);
  return {
    quick,
    phases,
    setup: !argv.includes('--no-setup'),
    aRuns: quick ? 5 : 20,
    bRounds: quick ? 5 : 20,
    eMemberChanges: quick ? 20 : 100,
    eReloadChanges: quick ? 5 : 20,
    bulk: quick ? [20, 50] : [100, 500],
    bulkResyncS: quick ? 5 : 10,
    sRuns: quick ? 5 : 20,
    kubeN: quick ? 20 : 100,
    teardownN: quick ? 50 : 500,
    densityN: quick ? 100 : 2000,
    haKills: quick ? 5 : 20,
    haBulk: quick ? 20 : 100,
    // NSLB_BENCH_W_KILLS / NSLB_BENCH_W_DRAIN: other sizes for (w) while developing (the command line in the
    // table does not show them: not for figures).
    schedKills: Number(process.env.NSLB_BENCH_W_KILLS ?? (quick ? 3 : 10)),
    schedDrainN: Number(process.env.NSLB_BENCH_W_DRAIN ?? (quick ? 10 : 100)),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Files the agent watches

async function writeAtomically(path: string, text: string): Promise<number> {
  await writeFile(`${path}.tmp`, text);
  const t = now();
  await rename(`${path}.tmp`, path);
  return t;
}

const members = (...names: MemberName[]): BenchMember[] => names.map((m) => ({ name: m, address: nslbMember(m) }));

function lbNetns(name: string): string {
  return nodeNames(NAMESPACE, name).netns;
}

async function netnsPresent(): Promise<Set<string>> {
  return new Set(await readdir('/run/netns').catch(() => [] as string[]));
}

async function waitUntil(what: string, fn: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<number> {
  const start = now();
  for (;;) {
    if (await fn()) return now() - start;
    if (now() - start > timeoutMs) throw new Error(`timed out after ${ms(timeoutMs)} waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Results

interface Results {
  v?: HaResult;
  w?: SchedResult;
  a?: { create: number[]; remove: number[]; bare: number[]; warm: number[] };
  b?: {
    /** In force in HAProxy: the runtime socket says its rotation has the change. */
    add: number[];
    remove: number[];
    weight: number[];
    /** On traffic: the probe's responses show it (add and weight 0 → 1 also wait for the member's turn). */
    traffic: { add: number[]; remove: number[]; weight: number[] };
    pidBefore?: number;
    pidAfter?: number;
    pids: number;
    probeErrors: number;
    probeRequests: number;
    engine?: EngineCounts;
  };
  e?: {
    /** The same load with no change at all: what the client sees when nothing happens. */
    control: WrkSummary;
    members: WrkSummary;
    reloads: WrkSummary;
    memberPids: number;
    reloadPids: number;
    membersEngine?: EngineCounts;
    reloadsEngine?: EngineCounts;
  };
  bulk: Map<number, { nslb?: BulkResult; baseline?: BulkResult; bare?: BulkResult; nslbRemoveMs?: number }>;
  d?: { resyncs: { spawned?: number; ms?: number; changed?: number }[] };
  /** Things outside the benchmark that happened during a phase (another session restarting Open vSwitch). */
  disturbances: string[];
  /** Phases that failed before their end (watched): each a FAIL row. */
  failed: { what: string; message: string }[];
  f?: { rssMiB: number; peakMiB: number; n: number };
  s?: ServicesResult;
  k?: KubeResult;
  h?: TeardownResult;
  i?: DensityResult;
}

interface BulkResult {
  ms: number;
  check: VipCheck;
  /** VIPs answering 200 within 30 s after the tool said done (asked again once a second). */
  within30s?: VipsAnswering;
  errors?: number;
  engine?: EngineCounts;
  /** (j) over this convergence. */
  breakdown?: Breakdown;
}

/** What the agent's /metrics counted over a phase. */
interface EngineCounts {
  reloads: number;
  runtimeUpdates: number;
  runtimeFallbacks: number;
  spawned: number;
}

const COUNTERS = {
  reloads: 'nslb_haproxy_reloads_total',
  runtimeUpdates: 'nslb_haproxy_runtime_updates_total',
  runtimeFallbacks: 'nslb_haproxy_runtime_fallbacks_total',
  spawned: 'nslb_processes_spawned_total',
} as const;

/** Counters now; call done() at the end of the phase for the difference (undefined without /metrics). */
async function countersFrom(agent: BenchAgent): Promise<{ done: () => Promise<EngineCounts | undefined> }> {
  const before = await agent.metrics();
  return {
    async done() {
      const after = await agent.metrics();
      if (before === undefined || after === undefined) return undefined;
      const d = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      return {
        reloads: d(COUNTERS.reloads),
        runtimeUpdates: d(COUNTERS.runtimeUpdates),
        runtimeFallbacks: d(COUNTERS.runtimeFallbacks),
        spawned: d(COUNTERS.spawned),
      };
    },
  };
}

function describeCounts(c: EngineCounts | undefined): string {
  if (c === undefined) return '';
  return `; agent's /metrics: ${c.reloads} reloads, ${c.runtimeUpdates} runtime-API updates, ${c.runtimeFallbacks} runtime fallbacks to a reload`;
}

// ---------------------------------------------------------------------------------------------------------
// Phase: the main agent (a, b, e)

async function mainPhases(s: Settings, node: BenchNode, cleanup: Cleanup, results: Results): Promise<void> {
  const watch = join(ROOT, 'watch-main');
  const stateDir = join(ROOT, 'state-main');
  await mkdir(watch, { recursive: true });
  const lbB: BenchLb = { namespace: NAMESPACE, name: 'bench-b', vip: '10.230.2.10', prefixLength: PREFIX, members: members('m1', 'm2') };
  const lbE: BenchLb = { namespace: NAMESPACE, name: 'bench-e', vip: '10.230.2.20', prefixLength: PREFIX, members: members('m1', 'm2') };
  await writeAtomically(join(watch, 'b.yaml'), lbYaml(lbB));
  await writeAtomically(join(watch, 'e.yaml'), lbYaml(lbE));

  cleanup.add(`nslb cleanup ${stateDir}`, () => nslbCleanup(stateDir));
  const agent = new BenchAgent({ watch, stateDir, bridge: BRIDGE, resyncS: 30 });
  cleanup.add('agent (main)', () => agent.stop());
  log(`agent (main) started, pid ${agent.pid}; waiting for bench-b and bench-e`);
  await waitUntil(
    'bench-b and bench-e ACTIVE',
    async () => {
      if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
      const st = await loadBalancerStatuses(stateDir, NAMESPACE);
      return st.get('bench-b')?.provisioningStatus === 'ACTIVE' && st.get('bench-e')?.provisioningStatus === 'ACTIVE';
    },
    120_000,
  );
  const ready = await checkVips(node.client, [lbB.vip, lbE.vip]);
  if (ready.ok !== 2) throw new Error(`bench-b/bench-e VIPs do not answer: ${JSON.stringify(ready.failed)}`);

  if (s.phases.has('a')) results.a = await phaseA(s, node, watch, agent, cleanup);
  if (s.phases.has('b')) {
    const counters = await countersFrom(agent);
    results.b = await phaseB(s, node, watch, stateDir, lbB);
    const engine = await counters.done();
    if (engine !== undefined) results.b.engine = engine;
  }
  if (s.phases.has('e')) results.e = await phaseE(s, node, watch, stateDir, lbE, agent);

  await agent.stop();
  await nslbCleanup(stateDir);
}

function traceBench(name: string, t0: number, took: number | undefined): void {
  trace('bench', name, 't0', t0, 'took', took ?? -1);
}

/**
 * (a)'s floor on this machine, measured in the same run: the bare steps for one load balancer (the (g) loop's
 * script for N = 1: netns, port, link, address, `haproxy -D`; nothing else), bash spawned → first 200 through its
 * VIP, the same probe. One after each of nslb's runs, so that both see the same load.
 */
async function bareOne(node: BenchNode, i: number, cleanup: Cleanup, warm: boolean): Promise<number> {
  const { lb, script, plumb, rest } = await prepareBareOne(join(ROOT, warm ? 'bare-aw' : 'bare-a'), warm ? 100 + i : i, BRIDGE);
  await appendFile(join(ROOT, 'baseline.journal'), `${lb.netns} ${lb.port} ${lb.dir}\n`);
  cleanup.add(`bare (a) ${lb.netns}`, () => deleteBaselineLbs(BRIDGE, [lb]));
  if (warm) await runCommand(['bash', plumb], { timeoutMs: 60_000 });
  const probe = new Probe(node.client, `http://${lb.vip}/`);
  await sleep(100);
  const t0 = now();
  const run = runCommand(['bash', warm ? rest : script], { allowFailure: true, timeoutMs: 60_000 });
  const took = await probe.until((r) => firstSeen(r, t0, (x) => x.s === 200), 30_000);
  await probe.stop();
  const r = await run;
  if (r.exitCode !== 0) log(`(a) bare ${lb.netns}: exit ${r.exitCode}: ${r.stderr.trim().slice(-300)}`);
  await deleteBaselineLbs(BRIDGE, [lb]);
  return took;
}

async function phaseA(
  s: Settings,
  node: BenchNode,
  watch: string,
  agent: BenchAgent,
  cleanup: Cleanup,
): Promise<{ create: number[]; remove: number[]; bare: number[]; warm: number[] }> {
  const create: number[] = [];
  const remove: number[] = [];
  const bare: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < s.aRuns; i++) {
    const name = `a-${String(i).padStart(3, '0')}`;
    const lb: BenchLb = { namespace: NAMESPACE, name, vip: vipOf(230, 1, i), prefixLength: PREFIX, members: members('m1', 'm2') };
    const probe = new Probe(node.client, `http://${lb.vip}/`);
    await sleep(100);
    const file = join(watch, `${name}.yaml`);
    const t0 = await writeAtomically(file, lbYaml(lb));
    const took = await probe.until((r) => firstSeen(r, t0, (x) => x.s === 200), 30_000);
    await probe.stop();
    create.push(took);
    // For bench/trace-breakdown.mjs (with NSLB_TRACE_ACTIONS set for the agent too): when the file was written.
    traceBench(name, t0, took);
    // Removal, for the record: file deleted → its netns gone.
    const netns = lbNetns(name);
    const t1 = now();
    await rm(file);
    try {
      await waitUntil(`${name} removed`, async () => !(await netnsPresent()).has(netns), 30_000, 20);
      remove.push(now() - t1);
    } catch {
      remove.push(Infinity);
    }
    await sleep(300);
    bare.push(await bareOne(node, i, cleanup, false));
    warm.push(await bareOne(node, i, cleanup, true));
    log(
      `(a) ${i + 1}/${s.aRuns}: first 200 after ${ms(took)}; removed in ${ms(remove.at(-1))}; the bare steps: first 200 after ${ms(bare.at(-1))}, ${ms(warm.at(-1))} with netns and port made before`,
    );
    if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
    await sleep(300);
  }
  return { create, remove, bare, warm };
}

async function phaseB(s: Settings, node: BenchNode, watch: string, stateDir: string, base: BenchLb): Promise<NonNullable<Results['b']>> {
  const socket = join(stateDir, 'lb', lbNetns(base.name), 'haproxy.sock');
  const file = join(watch, 'b.yaml');
  // HAProxy's names for the pool and its members (plan/haproxy-backend.ts).
  const backend = `pool.${base.name}-pool`;
  const server = (m: MemberName) => `${base.name}-${m}`;
  const add: number[] = [];
  const remove: number[] = [];
  const weight: number[] = [];
  const traffic = { add: [] as number[], remove: [] as number[], weight: [] as number[] };
  const pids = new Set<number>();
  const pidBefore = await workerPid(socket);
  if (pidBefore !== undefined) pids.add(pidBefore);
  const probe = new Probe(node.client, `http://${base.vip}/`);
  await sleep(300);
  let m1Weight = 1;
  const write = (withM3: boolean) =>
    writeAtomically(
      file,
      lbYaml({
        ...base,
        members: [
          { name: 'm1', address: nslbMember('m1'), weight: m1Weight },
          { name: 'm2', address: nslbMember('m2') },
          ...(withM3 ? [{ name: 'm3', address: nslbMember('m3') }] : []),
        ],
      }),
    );
  const step = async (
    what: string,
    change: () => Promise<number>,
    inForce: (servers: Map<string, ServerState>) => boolean,
    visible: (since: number) => number | undefined,
    kind: 'add' | 'remove' | 'weight',
  ) => {
    probe.forget(now());
    const t0 = await change();
    const [held, seen] = await Promise.all([untilInForce(socket, backend, t0, inForce, 20_000), probe.until(() => visible(t0), 20_000)]);
    ({ add, remove, weight })[kind].push(held);
    traffic[kind].push(seen);
    const pid = await workerPid(socket);
    if (pid !== undefined) pids.add(pid);
    log(`(b) ${what}: in force after ${ms(held)}, on traffic after ${ms(seen)}${pid === pidBefore ? '' : ` (worker pid now ${pid})`}`);
    await sleep(300);
  };
  let probeErrors = 0;
  let probeRequests = 0;
  const countErrors = () => {
    probeErrors += probe.responses.filter((r) => r.s !== 200).length;
    probeRequests += probe.responses.length;
  };
  for (let i = 0; i < s.bRounds; i++) {
    await step(
      `${i + 1}/${s.bRounds} add m3`,
      () => write(true),
      (servers) => inRotation(servers.get(server('m3'))),
      (t0) => firstSeen(probe.responses, t0, (r) => r.s === 200 && r.b === 'm3'),
      'add',
    );
    countErrors();
    await step(
      `${i + 1}/${s.bRounds} remove m3`,
      () => write(false),
      (servers) => !inRotation(servers.get(server('m3'))),
      (t0) => goneFor(probe.responses, t0, GONE_K, (r) => r.b === 'm3'),
      'remove',
    );
    countErrors();
    m1Weight = m1Weight === 1 ? 0 : 1;
    const toZero = m1Weight === 0;
    await step(
      `${i + 1}/${s.bRounds} m1 weight → ${m1Weight}`,
      () => write(false),
      (servers) => inRotation(servers.get(server('m1'))) !== toZero,
      (t0) => (toZero ? goneFor(probe.responses, t0, GONE_K, (r) => r.b === 'm1') : firstSeen(probe.responses, t0, (r) => r.s === 200 && r.b === 'm1')),
      'weight',
    );
    countErrors();
  }
  await probe.stop();
  const pidAfter = await workerPid(socket);
  if (pidAfter !== undefined) pids.add(pidAfter);
  return {
    add,
    remove,
    weight,
    traffic,
    ...(pidBefore === undefined ? {} : { pidBefore }),
    ...(pidAfter === undefined ? {} : { pidAfter }),
    pids: pids.size,
    probeErrors,
    probeRequests,
  };
}

async function phaseE(s: Settings, node: BenchNode, watch: string, stateDir: string, base: BenchLb, agent: BenchAgent): Promise<NonNullable<Results['e']>> {
  const socket = join(stateDir, 'lb', lbNetns(base.name), 'haproxy.sock');
  const file = join(watch, 'e.yaml');
  const url = `http://${base.vip}/`;

  // 0. The control: the same load and nothing changing. Errors here are the setup's, not the changes'.
  const control = await startWrk(node.client, url, s.quick ? 5 : 10).result;
  log(`(e) control: ${control.requests} requests, ${control.non2xx3xx} non-2xx/3xx, socket errors ${JSON.stringify(control.socketErrors)}`);

  // 1. Member changes under load: add m3, m1 weight 2, remove m3, m1 weight 1, … every 300 ms.
  const memberCadenceMs = 300;
  const memberPids = new Set<number>();
  const memberCounters = await countersFrom(agent);
  const wrk1 = startWrk(node.client, url, Math.ceil(2 + (s.eMemberChanges * memberCadenceMs) / 1000 + 3));
  await sleep(2_000);
  for (let i = 0; i < s.eMemberChanges; i++) {
    const phase = i % 4;
    const withM3 = phase === 0 || phase === 1;
    const m1Weight = phase === 1 || phase === 2 ? 2 : 1;
    await writeAtomically(
      file,
      lbYaml({
        ...base,
        members: [
          { name: 'm1', address: nslbMember('m1'), weight: m1Weight },
          { name: 'm2', address: nslbMember('m2') },
          ...(withM3 ? [{ name: 'm3', address: nslbMember('m3') }] : []),
        ],
      }),
    );
    const pid = await workerPid(socket);
    if (pid !== undefined) memberPids.add(pid);
    if ((i + 1) % 20 === 0) log(`(e) member change ${i + 1}/${s.eMemberChanges}`);
    await sleep(memberCadenceMs);
  }
  const members = await wrk1.result;
  const membersEngine = await memberCounters.done();
  log(`(e) member changes: ${members.requests} requests, ${members.non2xx3xx} non-2xx/3xx, socket errors ${JSON.stringify(members.socketErrors)}`);
  await writeAtomically(file, lbYaml(base));
  await sleep(1_000);

  // 2. Changes that need a reload: the listener's client timeout and the pool's algorithm, in turn, every 1.5 s.
  const reloadCadenceMs = 1_500;
  const reloadPids = new Set<number>();
  const reloadCounters = await countersFrom(agent);
  const wrk2 = startWrk(node.client, url, Math.ceil(2 + (s.eReloadChanges * reloadCadenceMs) / 1000 + 3));
  await sleep(2_000);
  let timeout = 50_000;
  let algorithm: 'ROUND_ROBIN' | 'LEAST_CONNECTIONS' = 'ROUND_ROBIN';
  for (let i = 0; i < s.eReloadChanges; i++) {
    const pid = await workerPid(socket);
    if (pid !== undefined) reloadPids.add(pid);
    if (i % 2 === 0) timeout = timeout === 50_000 ? 51_000 : 50_000;
    else algorithm = algorithm === 'ROUND_ROBIN' ? 'LEAST_CONNECTIONS' : 'ROUND_ROBIN';
    await writeAtomically(file, lbYaml({ ...base, clientDataTimeoutMs: timeout, lbAlgorithm: algorithm }));
    if ((i + 1) % 5 === 0) log(`(e) reload change ${i + 1}/${s.eReloadChanges}`);
    await sleep(reloadCadenceMs);
  }
  const reloads = await wrk2.result;
  const reloadsEngine = await reloadCounters.done();
  const last = await workerPid(socket);
  if (last !== undefined) reloadPids.add(last);
  log(`(e) reload changes: ${reloads.requests} requests, ${reloads.non2xx3xx} non-2xx/3xx, socket errors ${JSON.stringify(reloads.socketErrors)}`);
  return {
    control,
    members,
    reloads,
    memberPids: memberPids.size,
    reloadPids: reloadPids.size,
    ...(membersEngine === undefined ? {} : { membersEngine }),
    ...(reloadsEngine === undefined ? {} : { reloadsEngine }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Phase: bulk (c, with d and f at the largest N)

async function bulkNslb(s: Settings, node: BenchNode, n: number, cleanup: Cleanup, results: Results, measureSteady: boolean): Promise<void> {
  const watch = join(ROOT, `watch-bulk-${n}`);
  const stateDir = join(ROOT, `state-bulk-${n}`);
  await rm(watch, { recursive: true, force: true });
  await mkdir(watch, { recursive: true });
  const names: string[] = [];
  const vips: string[] = [];
  for (let i = 0; i < n; i++) {
    checkInterrupted();
    const name = `lb-${String(i).padStart(4, '0')}`;
    const vip = vipOf(230, 10, i);
    names.push(name);
    vips.push(vip);
    await writeFile(join(watch, `${name}.yaml`), lbYaml({ namespace: NAMESPACE, name, vip, prefixLength: PREFIX, members: members('m1', 'm2') }));
  }
  cleanup.add(`nslb cleanup ${stateDir}`, () => nslbCleanup(stateDir));
  const agent = new BenchAgent({ watch, stateDir, bridge: BRIDGE, resyncS: s.bulkResyncS });
  cleanup.add(`agent (bulk ${n})`, () => agent.stop());
  log(`(c) nslb N=${n}: agent started (pid ${agent.pid}) on ${n} load balancers`);
  // The agent's counters start at zero: what /metrics says once converged is the cost of converging.
  let lastProgress = now();
  let active = 0;
  let errored = 0;
  let seen = -1;
  await waitUntil(
    `${n} load balancers ACTIVE`,
    async () => {
      if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
      // status.json grows to megabytes at N = 500: parse it only when it was rewritten.
      const mtime = (await stat(join(stateDir, 'status.json')).catch(() => undefined))?.mtimeMs ?? -1;
      if (mtime === seen) return false;
      seen = mtime;
      const st = await loadBalancerStatuses(stateDir, NAMESPACE);
      active = names.filter((x) => st.get(x)?.provisioningStatus === 'ACTIVE').length;
      errored = names.filter((x) => st.get(x)?.provisioningStatus === 'ERROR').length;
      if (now() - lastProgress > 5_000) {
        lastProgress = now();
        log(`(c) nslb N=${n}: ${active}/${n} ACTIVE, ${errored} ERROR (${ms(now() - agent.startedAt)})`);
      }
      return active === n;
    },
    20 * 60_000,
    250,
  );
  const took = now() - agent.startedAt;
  log(`(c) nslb N=${n}: all ACTIVE after ${ms(took)}; checking every VIP from the client`);
  const doneAt = now();
  const breakdown = await readBreakdown(agent, n, took);
  const check = await checkVips(node.client, vips);
  log(
    `(c) nslb N=${n}: ${check.http}/${n} VIPs answer HTTP, ${check.ok} with 200${check.failed.length > 0 ? ` (first failures: ${JSON.stringify(check.failed.slice(0, 3))})` : ''}`,
  );
  const within30s = await vipsAnsweringWithin(node.client, vips, doneAt);
  log(
    `(c) nslb N=${n}: ${within30s.ok}/${n} VIPs answered 200 within 30 s of ACTIVE${within30s.allByMs === undefined ? ` (first failures: ${JSON.stringify(within30s.failed.slice(0, 3))})` : ` (all by ${ms(within30s.allByMs)})`}`,
  );
  const entry = results.bulk.get(n) ?? {};
  entry.nslb = { ms: took, check, within30s, errors: agent.errors, ...(breakdown === undefined ? {} : { breakdown }) };
  const totals = await agent.metrics();
  if (totals !== undefined) {
    entry.nslb.engine = {
      reloads: totals.get(COUNTERS.reloads) ?? 0,
      runtimeUpdates: totals.get(COUNTERS.runtimeUpdates) ?? 0,
      runtimeFallbacks: totals.get(COUNTERS.runtimeFallbacks) ?? 0,
      spawned: totals.get(COUNTERS.spawned) ?? 0,
    };
  }
  results.bulk.set(n, entry);

  if (measureSteady) {
    // (d): the periodic resyncs once everything is converged; (f): the agent's memory then.
    const after = Date.now();
    const want = 3;
    log(`(d) waiting for ${want} periodic resyncs (every ${s.bulkResyncS} s)`);
    const waitStart = now();
    const deadline = waitStart + (want + 2) * s.bulkResyncS * 1000 + 60_000;
    while (agent.resyncs.filter((r) => r.time >= after).length < want && now() < deadline) {
      if (agent.exited()) break;
      // The line only exists once the engine logs it; do not wait the whole budget for nothing.
      if (agent.resyncs.length === 0 && now() - waitStart > 2 * s.bulkResyncS * 1000 + 15_000) break;
      await sleep(500);
    }
    const steady = agent.resyncs.filter((r) => r.time >= after);
    results.d = {
      resyncs: steady.map((r) => ({
        ...(r.spawned === undefined ? {} : { spawned: r.spawned }),
        ...(r.ms === undefined ? {} : { ms: r.ms }),
        ...(r.changed === undefined ? {} : { changed: r.changed }),
      })),
    };
    log(`(d) resync lines after convergence: ${steady.length === 0 ? 'none (the agent does not log "resync" lines)' : JSON.stringify(steady)}`);
    const mem = await agent.memory();
    if (mem !== undefined) results.f = { ...mem, n };
    log(`(f) agent memory at N=${n}: ${mem === undefined ? 'n/a' : `RSS ${mem.rssMiB.toFixed(0)} MiB, peak ${mem.peakMiB.toFixed(0)} MiB`}`);
  }

  // Tear down through the agent (all files deleted at once); the clock here is for the record only.
  log(`(c) nslb N=${n}: deleting the ${n} files; waiting for the agent to remove them`);
  const netnss = new Set(names.map(lbNetns));
  const t0 = now();
  await rm(watch, { recursive: true, force: true });
  await mkdir(watch);
  let removed = false;
  lastProgress = now();
  try {
    await waitUntil(
      `${n} load balancers removed`,
      async () => {
        const present = [...(await netnsPresent())].filter((x) => netnss.has(x)).length;
        if (now() - lastProgress > 5_000) {
          lastProgress = now();
          log(`(c) nslb N=${n}: ${n - present}/${n} removed (${ms(now() - t0)})`);
        }
        return present === 0;
      },
      10 * 60_000,
      200,
    );
    removed = true;
  } catch (err) {
    log(`(c) nslb N=${n}: ${(err as Error).message}; nslb cleanup takes over`);
  }
  if (removed) entry.nslbRemoveMs = now() - t0;
  await agent.stop();
  await nslbCleanup(stateDir);
}

async function bulkBaseline(node: BenchNode, n: number, cleanup: Cleanup, results: Results): Promise<void> {
  const dir = join(ROOT, `baseline-${n}`);
  const lbs: BaselineLb[] = [];
  cleanup.add(`baseline ${n}`, () => deleteBaselineLbs(BRIDGE, lbs));
  log(`(c) baseline N=${n}: creating ${n} load balancers one after the other`);
  const t0 = now();
  let lastProgress = now();
  for (let i = 0; i < n; i++) {
    checkInterrupted();
    const lb = baselineLb(dir, i);
    lbs.push(lb);
    await appendFile(join(ROOT, 'baseline.journal'), `${lb.netns} ${lb.port} ${lb.dir}\n`);
    await createBaselineLb(BRIDGE, lb);
    if (now() - lastProgress > 5_000) {
      lastProgress = now();
      log(`(c) baseline N=${n}: ${i + 1}/${n} (${ms(now() - t0)})`);
    }
  }
  const took = now() - t0;
  log(`(c) baseline N=${n}: done after ${ms(took)}; checking every VIP from the client`);
  const check = await checkVips(
    node.client,
    lbs.map((lb) => lb.vip),
  );
  log(
    `(c) baseline N=${n}: ${check.http}/${n} VIPs answer HTTP, ${check.ok} with 200${check.failed.length > 0 ? ` (first failures: ${JSON.stringify(check.failed.slice(0, 3))})` : ''}`,
  );
  const entry = results.bulk.get(n) ?? {};
  entry.baseline = { ms: took, check };
  results.bulk.set(n, entry);
  await deleteBaselineLbs(BRIDGE, lbs.splice(0));
}

async function bulkBare(node: BenchNode, n: number, cleanup: Cleanup, results: Results): Promise<void> {
  const lbs: BaselineLb[] = [];
  cleanup.add(`bare loop ${n}`, () => deleteBaselineLbs(BRIDGE, lbs));
  const dir = join(ROOT, `bare-${n}`);
  const run = await runBareLoop(dir, BRIDGE, n, lbs);
  for (const lb of lbs) await appendFile(join(ROOT, 'baseline.journal'), `${lb.netns} ${lb.port} ${lb.dir}\n`);
  log(`(g) bare loop N=${n}: exit ${run.exitCode} after ${ms(run.ms)}; checking every VIP from the client`);
  if (run.exitCode !== 0) log(`(g) bare loop stderr: ${run.stderr.trim().slice(-500)}`);
  const check = await checkVips(
    node.client,
    lbs.map((lb) => lb.vip),
  );
  log(`(g) bare loop N=${n}: ${check.http}/${n} VIPs answer HTTP, ${check.ok} with 200`);
  const entry = results.bulk.get(n) ?? {};
  entry.bare = { ms: run.ms, check };
  results.bulk.set(n, entry);
  await deleteBaselineLbs(BRIDGE, lbs.splice(0));
}

// ---------------------------------------------------------------------------------------------------------
// Setup, leftovers, cleanup

/** ovs-vswitchd's PID: a different one later means Open vSwitch was restarted meanwhile (by anyone). */
async function vswitchdPid(): Promise<string> {
  return (await readFile('/var/run/openvswitch/ovs-vswitchd.pid', 'utf8').catch(() => '?')).trim();
}

/**
 * Runs one phase and notes whether ovs-vswitchd was restarted during it. A restarted userspace switch
 * recreates internal ports in the root namespace: the baseline does not notice, nslb repairs it; either way
 * that phase's figures are not comparable, and the table says so.
 */
/**
 * Runs one phase. A phase that fails (a rig command, a wait that runs out) becomes a FAIL row of the table and the run
 * goes on with the next phase once what this one set up is undone (the cleanup steps it added): one phase that cannot
 * finish on this machine no longer takes every later phase's figures with it. An interruption still ends the run.
 */
async function watched<T>(what: string, results: Results, cleanup: Cleanup, phase: () => Promise<T>): Promise<T | undefined> {
  const before = await vswitchdPid();
  const mark = cleanup.mark();
  try {
    return await phase();
  } catch (err) {
    if (interruption.signal.aborted) throw err;
    const message = err instanceof Error ? err.message : String(err);
    log(`${what} failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
    // The message keeps the last 800 characters of a command's stderr; the rig's say more (the agent's log, the
    // node's processes) before its last line.
    if (err instanceof HarnessCommandError && err.stderr.length > 800) log(`the command's whole stderr:\n${err.stderr}`);
    results.failed.push({ what, message: message.split('\n')[0] ?? '' });
    log(`undoing what ${what} set up; the run goes on with the next phase`);
    await cleanup.runSince(mark);
    return undefined;
  } finally {
    const after = await vswitchdPid();
    if (after !== before) results.disturbances.push(`Open vSwitch was restarted (ovs-vswitchd pid ${before} → ${after}) during ${what}`);
  }
}

async function nslbCleanup(stateDir: string): Promise<void> {
  if (!existsSync(stateDir)) return;
  const r = await runCommand([process.execPath, NSLB_CLI, 'cleanup', '--scope', 'state-dir', '--state-dir', stateDir], {
    allowFailure: true,
    timeoutMs: 15 * 60_000,
  });
  if (r.exitCode !== 0) log(`nslb cleanup --state-dir ${stateDir} exited ${r.exitCode}: ${r.stderr.trim().slice(-500)}`);
}

/** A previous run that died (SIGKILL, machine trouble) may have left its things: they are ours, remove them. */
async function removeLeftovers(): Promise<void> {
  if (!existsSync(ROOT)) return;
  log(`removing what an earlier run left in ${ROOT}`);
  for (const entry of await readdir(ROOT)) {
    if (entry.startsWith('state-')) await nslbCleanup(join(ROOT, entry));
  }
  const journal = await readFile(join(ROOT, 'baseline.journal'), 'utf8').catch(() => '');
  const lbs = journal
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [netns = '', port = '', dir = ''] = line.split(' ');
      return { index: 0, netns, port, vip: '', dir };
    });
  await deleteBaselineLbs(BRIDGE, lbs);
  for (const h of HOSTS) await deleteHost(h);
  await deleteBridge(BRIDGE);
  await rm(ROOT, { recursive: true, force: true });
}

const LOCK = '/tmp/nslb-bench.lock';

async function lock(): Promise<void> {
  const path = LOCK;
  const held = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
  if (Number.isInteger(held) && held > 0 && held !== process.pid) {
    try {
      process.kill(held, 0);
      throw new Error(`another benchmark (pid ${held}) is running; it uses the same bridge, hosts and addresses`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  await writeFile(path, `${process.pid}\n`);
}

async function machine(): Promise<string[]> {
  const out = async (argv: string[]) => {
    try {
      const r = await runCommand(argv, { allowFailure: true });
      return `${r.stdout}${r.stderr}`.split('\n')[0]?.trim() ?? '';
    } catch {
      return 'n/a';
    }
  };
  const commit = await out(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = (
    await runCommand(['git', '-C', REPO_ROOT, 'status', '--porcelain', '--', 'src'], { allowFailure: true }).catch(() => ({ stdout: '' }))
  ).stdout.trim();
  const load = (await readFile('/proc/loadavg', 'utf8').catch(() => 'n/a')).split(' ').slice(0, 3).join(' ');
  return [
    `nproc ${cpus().length}; kernel ${await out(['uname', '-r'])}; ${await out(['haproxy', '-v'])}; node ${process.version}`,
    `nslb ${commit}${dirty === '' ? '' : ' with uncommitted changes in src/'}; load average at start ${load}`,
  ];
}

// ---------------------------------------------------------------------------------------------------------
// The table

function schedRows(w: SchedResult, sized: (v: Verdict) => Verdict): Row[] {
  const p50 = percentile(w.redundancy, 50);
  const rows: Row[] = [
    {
      figure: '(w) ACTIVE_STANDBY placed by the scheduler: MASTER node killed → redundancy restored (new BACKUP on the third node ready)',
      value: `p50 ${ms(p50)}, p99 ${ms(percentile(w.redundancy, 99))} (n=${w.redundancy.length})`,
      target: 'p50 ≤ 20 s',
      verdict: sized(verdict(p50 === undefined ? undefined : p50 <= 20_000)),
    },
  ];
  // The control beside the drain's failures: requests that failed without a load balancer on the way.
  const control =
    w.drainControl === undefined
      ? ''
      : `; control (the member straight from the client, not counted): ${w.drainControl.failed} failed of ${w.drainControl.total}`;
  if (w.drainMs !== undefined) {
    rows.push({
      figure:
        `(w) drain of a node that is MASTER for ${w.drainMasterOf} of ${w.drainN} pairs: label → every pair off it and redundant; failed requests ` +
        '(wrk -c4, Connection: close, on one VIP it was MASTER of; probes every 20 ms on up to 4 more)',
      value:
        `${ms(w.drainMs)}; ${w.drainFailed} failed of ${w.drainRequests}` +
        (w.drainWrk === undefined
          ? ' (wrk gave no summary)'
          : ` (wrk: ${socketErrorTotal(w.drainWrk)} socket errors, ${w.drainWrk.non2xx3xx} non-2xx of ${w.drainWrk.requests})`) +
        (w.drainPlaced === undefined || w.drainRedundant === undefined
          ? ''
          : (w.drainMasterOff === undefined
              ? ''
              : `; the MASTER role off it by ${ms(w.drainMasterOff.max)} (p50 ${ms(w.drainMasterOff.p50)}, ${w.drainMasterOff.n} of ${w.drainMasterOf})`) +
            `; pairs placed off it by ${ms(w.drainPlaced.max)} (p50 ${ms(w.drainPlaced.p50)})` +
            (w.drainReleased === undefined ? '' : `, the node serving nothing by ${ms(w.drainReleased.max)} (p50 ${ms(w.drainReleased.p50)})`) +
            `, redundant p50 ${ms(w.drainRedundant.p50)}`) +
        control,
      target: '≤ 10 s, 0 failed',
      verdict: sized(verdict(w.drainMs <= 10_000 && w.drainFailed === 0)),
    });
  } else if (w.drainTimedOut !== undefined) {
    const t = w.drainTimedOut;
    rows.push({
      figure: `(w) drain of a node that is MASTER for ${w.drainMasterOf} of ${w.drainN} pairs: label → every pair off it and redundant; failed requests`,
      value:
        `not within ${ms(t.afterMs)}: of the ${t.on} pairs on it, ${w.drainMasterOff?.n ?? 0} of the ${w.drainMasterOf} it was MASTER of switched, ` +
        `${t.placed} placed off it, ${t.redundant} redundant again, ${t.released} let go by it; ` +
        `${w.drainFailed} failed of ${w.drainRequests}${control}`,
      target: '≤ 10 s, 0 failed',
      verdict: 'FAIL',
    });
  }
  return rows;
}

function haRows(v: HaResult, sized: (v: Verdict) => Verdict): Row[] {
  const p = (values: readonly number[], q: number) => percentile(values, q);
  const kill = v.nodeKill;
  const crash = v.haproxyKill;
  const rows: Row[] = [
    {
      figure: '(v) ACTIVE_STANDBY: MASTER node killed → first 200 from the BACKUP (probe every 20 ms)',
      value: `p50 ${ms(p(kill, 50))}, p99 ${ms(p(kill, 99))} (n=${kill.length})`,
      target: 'p50 ≤ 1.5 s, p99 ≤ 3 s',
      verdict: sized(verdict(p(kill, 50) === undefined ? undefined : p(kill, 50)! <= 1500 && p(kill, 99)! <= 3000)),
    },
    {
      figure: "(v) ACTIVE_STANDBY: MASTER's HAProxy killed → first 200 from the BACKUP",
      value: `p50 ${ms(p(crash, 50))}, p99 ${ms(p(crash, 99))} (n=${crash.length})`,
      target: 'p50 ≤ 2 s',
      verdict: sized(verdict(p(crash, 50) === undefined ? undefined : p(crash, 50)! <= 2000)),
    },
  ];
  if (v.drain !== undefined) {
    const e = v.drain.socketErrors;
    const failed = e.connect + e.read + e.write + e.timeout + v.drain.non2xx3xx;
    rows.push({
      figure: '(v) planned switchover (`nslb drain` on the MASTER) under wrk, 4 connections, Connection: close',
      value: `${failed} failed of ${v.drain.requests} (connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}, non-2xx ${v.drain.non2xx3xx})`,
      target: '0 failed',
      verdict: verdict(failed === 0),
    });
  }
  if (v.switchover !== undefined) {
    const e = v.switchover.socketErrors;
    const failed = e.connect + e.read + e.write + e.timeout + v.switchover.non2xx3xx;
    rows.push({
      figure: '(v) planned switchover (MASTER taken out of the placement) under wrk, 4 connections, Connection: close',
      value: `${failed} failed of ${v.switchover.requests} (connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}, non-2xx ${v.switchover.non2xx3xx})`,
      target: '0 failed',
      verdict: verdict(failed === 0),
    });
  }
  if (v.bulkFailover !== undefined) {
    rows.push({
      figure: `(v) ${v.bulkN} ACTIVE_STANDBY load balancers, their MASTER node killed → every VIP answers 200`,
      value: `${ms(v.bulkFailover)} (${v.bulkAnswered}/${v.bulkN} answered)`,
      target: '≤ 5 s',
      verdict: sized(verdict(Number.isFinite(v.bulkFailover) && v.bulkFailover <= 5000)),
    });
  }
  if (v.keepalivedPssKiB !== undefined) {
    rows.push({
      figure: `(v) keepalived memory per load balancer per node (${v.bulkN} pairs; keepalived, its VRRP child and the notify script)`,
      value: `Pss ${(v.keepalivedPssKiB / 1024).toFixed(2)} MiB, RSS ${((v.keepalivedRssKiB ?? 0) / 1024).toFixed(1)} MiB`,
      target: '—',
      verdict: 'info',
    });
  }
  return rows;
}

function buildRows(s: Settings, r: Results): Row[] {
  const rows: Row[] = [];
  const sized = (v: Verdict): Verdict => (s.quick && v !== 'n/a' ? 'info' : v);
  const pp = (values: readonly number[]) => {
    const timeouts = values.filter((v) => !Number.isFinite(v)).length;
    return `p50 ${ms(percentile(values, 50))}, p95 ${ms(percentile(values, 95))} (n=${values.length}${timeouts > 0 ? `, ${timeouts} timed out` : ''})`;
  };
  const p50 = (values: readonly number[]) => percentile(values, 50);
  if (r.a) {
    rows.push({
      figure: '(a) new load balancer: file written → first 200 through the VIP',
      value: pp(r.a.create),
      target: 'p50 ≤ 80 ms',
      verdict: verdict(p50(r.a.create) === undefined ? undefined : p50(r.a.create)! <= 80),
    });
    const floor = p50(r.a.bare);
    const ratio = floor === undefined || p50(r.a.create) === undefined ? '' : `; nslb's p50 / this p50: ${(p50(r.a.create)! / floor).toFixed(2)}`;
    rows.push({
      figure: "(a) this machine's floor, same run: the bare steps for one load balancer ((g)'s script for N = 1) → first 200",
      value: `${pp(r.a.bare)}${ratio}`,
      target: '—',
      verdict: 'info',
    });
    rows.push({
      figure: '(a) the same bare steps with the netns and port made beforehand (what a warm pool would leave): address, up, haproxy -D → first 200',
      value: pp(r.a.warm),
      target: '—',
      verdict: 'info',
    });
    rows.push({ figure: '(a) load balancer deleted: file removed → netns gone', value: pp(r.a.remove), target: '—', verdict: 'info' });
  }
  if (r.b) {
    const row = (what: string, values: number[], how: string) => {
      const v = p50(values);
      rows.push({
        figure: `(b) ${what} → effective (in HAProxy's rotation: ${how}, runtime socket)`,
        value: pp(values),
        target: 'p50 ≤ 20 ms',
        verdict: verdict(v === undefined ? undefined : v <= 20),
      });
    };
    row('member add', r.b.add, 'the new member up');
    row('member remove', r.b.remove, 'the member out');
    row('member weight change', r.b.weight, 'its new weight');
    const trafficRow = (what: string, values: number[], how: string) =>
      rows.push({ figure: `(b) ${what} → seen on traffic (${how})`, value: pp(values), target: '—', verdict: 'info' });
    trafficRow('member add', r.b.traffic.add, 'its first response: includes round robin reaching the new member');
    trafficRow('member remove', r.b.traffic.remove, 'the first of 10 responses without it');
    trafficRow('member weight change', r.b.traffic.weight, '1 → 0 as remove, 0 → 1 as add');
    const unchanged = r.b.pidBefore !== undefined && r.b.pidBefore === r.b.pidAfter && r.b.pids === 1;
    rows.push({
      figure: '(b) HAProxy worker PID across all member changes (show info)',
      value:
        (r.b.pidBefore === undefined
          ? 'n/a (runtime socket did not answer)'
          : unchanged
            ? `unchanged (${r.b.pidBefore})`
            : `changed: ${r.b.pidBefore} → ${r.b.pidAfter ?? '?'}, ${r.b.pids} worker PIDs seen`) + describeCounts(r.b.engine),
      target: 'no reload',
      verdict: r.b.pidBefore === undefined ? 'n/a' : verdict(unchanged),
    });
    rows.push({
      figure: '(b) probe requests that failed during the member changes',
      value: `${r.b.probeErrors} of ${r.b.probeRequests}`,
      target: '—',
      verdict: 'info',
    });
  }
  for (const n of s.bulk) {
    const b = r.bulk.get(n);
    if (b === undefined) continue;
    const side = (who: string, x: BulkResult | undefined) => {
      if (x === undefined) return;
      rows.push({
        figure: `${who.startsWith('(') ? who : `(c) ${who}`}, N=${n}: cold converge (clock stops when the tool says done)`,
        value: `${ms(x.ms)}, ${(n / (x.ms / 1000)).toFixed(1)} LB/s; after it ${x.check.http}/${n} VIPs answer HTTP, ${x.check.ok} with 200${x.engine === undefined ? '' : `; ${x.engine.spawned} processes spawned`}`,
        target: 'every VIP answers',
        verdict: verdict(x.check.http === n),
      });
    };
    side('nslb', b.nslb);
    if (b.nslb?.breakdown !== undefined && n === s.bulk.at(-1)) rows.push(...breakdownRows(b.nslb.breakdown));
    if (b.nslb?.within30s !== undefined) {
      const w = b.nslb.within30s;
      rows.push({
        figure: `(c) nslb, N=${n}: VIPs answering 200 within 30 s after ACTIVE (node as nslb leaves it, no bench tuning)`,
        value: `${w.ok}/${n}${w.allByMs === undefined ? '' : `, the last after ${ms(w.allByMs)}`}`,
        target: 'every VIP',
        verdict: verdict(w.ok === n),
      });
    }
    side('baseline (serial, neutron-lbaas style)', b.baseline);
    side('(g) bare serial shell loop (netns, port, link, haproxy -D; nothing else)', b.bare);
    if (b.nslb !== undefined && b.bare !== undefined) {
      const ratio = b.bare.ms / b.nslb.ms;
      const isTarget = n === 500;
      rows.push({
        figure: `(c)+(g) N=${n}: bare shell loop time / nslb time`,
        value: `${ratio.toFixed(2)}×`,
        target: isTarget ? '≥ 4× at N=500' : '—',
        verdict: isTarget ? verdict(ratio >= 4) : 'info',
      });
    }
    if (b.nslb !== undefined && b.baseline !== undefined) {
      const ratio = b.baseline.ms / b.nslb.ms;
      const isTarget = n === 500;
      rows.push({
        figure: `(c) N=${n}: baseline time / nslb time`,
        value: `${ratio.toFixed(2)}×`,
        target: isTarget ? '≥ 3× at N=500' : '—',
        verdict: isTarget ? verdict(ratio >= 3) : 'info',
      });
    }
    if (b.nslbRemoveMs !== undefined) {
      rows.push({ figure: `(c) nslb, N=${n}: all files deleted → every netns gone`, value: ms(b.nslbRemoveMs), target: '—', verdict: 'info' });
    }
  }
  const steadyN = s.bulk.at(-1) ?? 0;
  if (r.d) {
    const noop = r.d.resyncs.filter((x) => x.changed === undefined || x.changed === 0);
    const spawned = noop.map((x) => x.spawned).filter((x): x is number => x !== undefined);
    const wall = noop.map((x) => x.ms).filter((x): x is number => x !== undefined);
    const others = r.d.resyncs.filter((x) => x.changed !== undefined && x.changed > 0);
    const noNoop =
      r.d.resyncs.length === 0
        ? 'n/a (no "resync" log line)'
        : `n/a (no no-op resync seen; ${others.map((x) => `changed ${x.changed}, spawned ${x.spawned ?? '?'}, ${ms(x.ms)}`).join('; ')})`;
    const sp = median(spawned);
    const wm = median(wall);
    rows.push({
      figure: `(d) no-op periodic resync at N=${steadyN}: processes spawned`,
      value: sp === undefined ? noNoop : `p50 ${sp} (max ${Math.max(...spawned)}, n=${spawned.length})`,
      target: '≤ 5',
      verdict: sized(verdict(sp === undefined ? undefined : sp <= 5)),
    });
    rows.push({
      figure: `(d) no-op periodic resync at N=${steadyN}: wall time`,
      value: wm === undefined ? noNoop : `p50 ${ms(wm)} (max ${ms(Math.max(...wall))}, n=${wall.length})`,
      target: '< 1 s',
      verdict: sized(verdict(wm === undefined ? undefined : wm < 1000)),
    });
  }
  if (r.e) {
    const row = (what: string, w: WrkSummary, pids: number, engine: EngineCounts | undefined) => {
      const failed = w.non2xx3xx + socketErrorTotal(w);
      const e = w.socketErrors;
      rows.push({
        figure: `(e) failed requests under wrk -c8 during ${what}`,
        value: `${failed} of ${w.requests} (non-2xx/3xx ${w.non2xx3xx}; socket errors connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}); worker PID changed ${pids - 1}×${describeCounts(engine)}`,
        target: '0',
        verdict: verdict(failed === 0),
      });
    };
    const c = r.e.control;
    const controlFailed = c.non2xx3xx + socketErrorTotal(c);
    rows.push({
      figure: '(e) control: failed requests under the same wrk with no change',
      value: `${controlFailed} of ${c.requests} (${c.requestsPerSec.toFixed(0)} req/s, latency p50 ${ms(c.latencyP50Ms)}, p99 ${ms(c.latencyP99Ms)})`,
      target: '0 (else the setup, not nslb, fails requests)',
      verdict: controlFailed === 0 ? 'info' : 'FAIL',
    });
    row(`${s.eMemberChanges} member changes`, r.e.members, r.e.memberPids, r.e.membersEngine);
    row(`${s.eReloadChanges} listener/pool changes that need a reload`, r.e.reloads, r.e.reloadPids, r.e.reloadsEngine);
  }
  if (r.f) {
    rows.push({
      figure: `(f) agent memory at N=${r.f.n}`,
      value: `peak RSS ${r.f.peakMiB.toFixed(0)} MiB; RSS at steady state ${r.f.rssMiB.toFixed(0)} MiB`,
      target: 'peak < 250 MB',
      verdict: sized(verdict(r.f.peakMiB * 1.048576 < 250)),
    });
  }
  if (r.h) rows.push(...teardownRows(r.h, sized));
  if (r.i) rows.push(...densityRows(r.i, sized));
  if (r.k) rows.push(...kubeRows(r.k));
  if (r.v) rows.push(...haRows(r.v, sized));
  if (r.w) rows.push(...schedRows(r.w, sized));
  if (r.s) {
    // Both must have happened: the address in status, and traffic through it.
    const both = r.s.ingress.map((v, i) => Math.max(v, r.s!.traffic[i] ?? Infinity));
    const v = p50(both);
    rows.push({
      figure: '(s) Service of type LoadBalancer applied → ingress IP in status and first 200 through it',
      value: `${pp(both)}; ingress in status alone p50 ${ms(p50(r.s.ingress))}${r.s.unexpected > 0 ? `; ${r.s.unexpected} runs got another address than the pool's next` : ''}`,
      target: 'p50 ≤ 1 s',
      verdict: verdict(v === undefined ? undefined : v <= 1000),
    });
  }
  // A phase that stopped before its end: its figures are missing above (or partial), and that is a failure.
  for (const f of r.failed)
    rows.push({ figure: `${f.what}: the phase did not finish`, value: f.message.slice(0, 400), target: 'runs to its end', verdict: 'FAIL' });
  return rows;
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const s = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (netns, OVS, HAProxy): run it as root');
  if (s.setup) {
    log('scripts/setup-node.sh (packages, OVS, npm run build)');
    await execFileP('bash', [join(REPO_ROOT, 'scripts', 'setup-node.sh')], { maxBuffer: 16 * 1024 * 1024 }).catch((err: Error & { stderr?: string }) => {
      throw new Error(`setup-node.sh failed: ${err.stderr ?? err.message}`);
    });
  }
  await lock();
  await removeLeftovers();
  await mkdir(ROOT, { recursive: true, mode: 0o700 });
  const header = await machine();
  const started = now();

  const cleanup = new Cleanup();
  // A signal stops the run at its next wait (sleep throws); the finally below cleans up. Should the run not
  // get there (a command hanging), the cleanup starts anyway after a minute.
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruption.signal.aborted) {
      log(`${signal}: already cleaning up`);
      return;
    }
    log(`${signal}: stopping and cleaning up; this takes a moment`);
    interruption.abort(signal);
    setTimeout(() => {
      log('the run did not stop in time; cleaning up now');
      void cleanup
        .run()
        .then(() => rm(ROOT, { recursive: true, force: true }))
        .finally(() => process.exit(130));
    }, 60_000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const results: Results = { bulk: new Map(), disturbances: [], failed: [] };
  let aborted: string | undefined;
  try {
    log(`setting up bridge ${BRIDGE}, member hosts and a client`);
    const node = await createBenchNode(BRIDGE, cleanup);
    if (s.phases.has('a') || s.phases.has('b') || s.phases.has('e')) {
      await watched('(a), (b) and (e)', results, cleanup, () => mainPhases(s, node, cleanup, results));
    }
    if (s.phases.has('k')) {
      await watched(`Kubernetes mode N=${s.kubeN}`, results, cleanup, async () => {
        results.k = await phaseK({ n: s.kubeN, node, bridge: BRIDGE, root: ROOT, resyncS: s.bulkResyncS, cleanup, nslbCleanup });
      });
    }
    if (s.phases.has('s')) {
      const sr = await watched('(s)', results, cleanup, () => phaseServices(s.sRuns, node, ROOT, cleanup));
      if (sr !== undefined) results.s = sr;
      await nslbCleanup(join(ROOT, 'state-services'));
    }
    if (s.phases.has('v')) {
      const vr = await watched('(v)', results, cleanup, () => phaseHa({ kills: s.haKills, bulkN: s.haBulk, cleanup }));
      if (vr !== undefined) results.v = vr;
    }
    if (s.phases.has('w')) {
      const wr = await watched('(w)', results, cleanup, () => phaseSched({ kills: s.schedKills, drainN: s.schedDrainN, cleanup }));
      if (wr !== undefined) results.w = wr;
    }
    if (s.phases.has('c')) {
      for (const n of s.bulk) {
        await watched(`nslb N=${n}${n === s.bulk.at(-1) ? ', (d) and (f)' : ''}`, results, cleanup, () =>
          bulkNslb(s, node, n, cleanup, results, n === s.bulk.at(-1)),
        );
        await watched(`baseline N=${n}`, results, cleanup, () => bulkBaseline(node, n, cleanup, results));
      }
    }
    if (s.phases.has('g')) {
      // NSLB_BENCH_G_N: another size for the bare loop alone (how far this machine's switch goes without nslb);
      // not for the table's figures, whose (c)+(g) ratio compares the same N.
      const n = Number(process.env.NSLB_BENCH_G_N ?? s.bulk.at(-1)!);
      await watched(`(g) bare loop N=${n}`, results, cleanup, () => bulkBare(node, n, cleanup, results));
    }
    if (s.phases.has('h')) {
      const hr = await watched(`(h) N=${s.teardownN}`, results, cleanup, () =>
        phaseH({ n: s.teardownN, root: ROOT, bridge: BRIDGE, resyncS: s.bulkResyncS, cleanup, nslbCleanup }),
      );
      if (hr !== undefined) results.h = hr;
    }
    if (s.phases.has('i')) {
      const ir = await watched(`(i) N=${s.densityN}`, results, cleanup, () =>
        phaseI({ n: s.densityN, root: ROOT, bridge: BRIDGE, node, changes: s.quick ? 3 : 10, resyncS: s.quick ? 5 : 20, cleanup, nslbCleanup }),
      );
      if (ir !== undefined) results.i = ir;
    }
  } catch (err) {
    if (interruption.signal.aborted) {
      aborted = `interrupted by ${String(interruption.signal.reason)}`;
    } else {
      aborted = err instanceof Error ? err.message : String(err);
      log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : aborted}`);
    }
  } finally {
    log('cleaning up');
    await cleanup.run();
    await rm(ROOT, { recursive: true, force: true });
    await rm(LOCK, { force: true });
  }

  const rows = buildRows(s, results);
  const command = s.quick ? 'npm run bench -- --quick' : 'npm run bench';
  const failed = rows.filter((r) => r.verdict === 'FAIL').length;
  const text = [
    `Command: \`${command}${s.phases.size < ALL_PHASES.length ? ` --phases ${[...s.phases].join(',')}` : ''}\` — ${new Date().toISOString()}, ${ms(now() - started)}`,
    '',
    ...header.map((h) => `${h}  `),
    ...(s.quick ? ['', 'Quick run: fewer runs and smaller N than the targets assume; size-dependent verdicts are "info".'] : []),
    ...(aborted === undefined ? [] : ['', `**Aborted**: ${aborted.split('\n')[0]} — the table holds what was measured before.`]),
    '',
    renderTable(rows),
    `${rows.filter((r) => r.verdict === 'pass').length} pass, ${failed} FAIL, ${rows.filter((r) => r.verdict === 'n/a').length} n/a`,
    ...(results.disturbances.length === 0 ? [] : ['', 'Not comparable (outside the benchmark):', ...results.disturbances.map((d) => `- ${d}`)]),
    '',
  ].join('\n');
  process.stdout.write(`\n${text}`);
  await writeFile(join(BENCH_DIR, 'last-run.md'), `# Last benchmark run\n\n${text}`);
  log(`table written to ${join('bench', 'last-run.md')}`);
  return interruption.signal.aborted ? 130 : aborted === undefined && results.failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
