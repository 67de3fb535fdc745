// Phase (i): how far one node goes. N = 2,000 load balancers (the benchmark's one shape) brought up by a fresh
// agent; then what they cost: the agent's peak memory, each HAProxy's private memory (master and worker, from
// /proc/PID/smaps_rollup), the kernel's memory growth (/proc/meminfo), whether every VIP answers 200 within 30 s;
// then member changes and no-op resyncs at that size. Phase (j), where the agent's time went per load balancer
// during that convergence, is read from the same agent (its /metrics and /proc/PID/stat).
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BenchAgent } from './agent.js';
import { NAMESPACE, waitActive, writeFleet } from './fleet.js';
import { lbYaml } from './manifests.js';
import { type BenchNode, type Cleanup, log, nslbMember, now, PREFIX, Probe, sleep, type VipsAnswering, vipsAnsweringWithin } from './node-env.js';
import { firstSeen, median, ms, type Row, verdict } from './report.js';

const THIRD = 60;
const OCTAVIA_AMPHORA_MB = 1024;

export interface HaproxyMemory {
  /** Per load balancer (master + workers), in KiB. */
  pss: number[];
  pssAnon: number[];
  privateKiB: number[];
}

export interface DensityResult {
  n: number;
  convergeMs: number;
  within30s: VipsAnswering;
  peakMiB?: number;
  rssMiB?: number;
  haproxy: HaproxyMemory;
  /** /proc/meminfo growth (KiB): Slab, KernelStack, PageTables, Percpu together, and MemAvailable's drop. */
  kernelKiB: number;
  availableDropKiB: number;
  memberChanges: number[];
  resyncs: { spawned?: number; ms?: number; changed?: number }[];
  breakdown?: Breakdown;
}

export interface Breakdown {
  n: number;
  convergeMs: number;
  /** Agent CPU (ms): its own, and its children's (ip, ovs-vsctl, haproxy's foreground start). */
  cpuSelfMs: number;
  cpuChildrenMs: number;
  /** Wall time (s, summed over concurrent ones) and count, by node action. */
  actions: Map<string, { seconds: number; count: number }>;
  /** Wall time (s) and count of processes, by program. */
  tools: Map<string, { seconds: number; count: number }>;
  observeS: number;
  publishS: number;
}

async function meminfo(): Promise<Map<string, number>> {
  const text = await readFile('/proc/meminfo', 'utf8');
  return new Map(text.split('\n').flatMap((l) => (/^(\w+):\s+(\d+)/.exec(l) === null ? [] : [[/^(\w+):/.exec(l)![1]!, Number(/(\d+)/.exec(l)![1])]])));
}

const kernelPart = (m: Map<string, number>) => ['Slab', 'KernelStack', 'PageTables', 'Percpu'].reduce((sum, k) => sum + (m.get(k) ?? 0), 0);

/** Clock ticks (USER_HZ) of the process: its own and its waited-for children's. */
async function cpuTicks(pid: number): Promise<{ self: number; children: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14–17 of stat (utime, stime, cutime, cstime) are 11–14 after the command name.
  return { self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
}
const TICK_MS = 10;

/** Prometheus text → value by metric name and label value (the one label these families have; '' without). */
export function labelled(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\w+)(?:\{\w+="([^"]*)"\})? ([\d.eE+-]+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

async function metricsText(agent: BenchAgent): Promise<string | undefined> {
  if (agent.listen === undefined) return undefined;
  try {
    const res = await fetch(`http://${agent.listen}/metrics`, { signal: AbortSignal.timeout(30_000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

export async function readBreakdown(agent: BenchAgent, n: number, convergeMs: number): Promise<Breakdown | undefined> {
  const text = await metricsText(agent);
  if (text === undefined) return undefined;
  const cpu = await cpuTicks(agent.pid);
  const pair = (secondsName: string, countName: string) => {
    const seconds = labelled(text, secondsName);
    const counts = labelled(text, countName);
    return new Map([...seconds].map(([k, s]) => [k, { seconds: s, count: counts.get(k) ?? 0 }]));
  };
  return {
    n,
    convergeMs,
    cpuSelfMs: cpu.self * TICK_MS,
    cpuChildrenMs: cpu.children * TICK_MS,
    actions: pair('nslb_node_action_seconds_total', 'nslb_node_actions_total'),
    tools: pair('nslb_process_seconds_total', 'nslb_processes_spawned_total'),
    observeS: labelled(text, 'nslb_node_observe_seconds_total').get('') ?? 0,
    publishS: labelled(text, 'nslb_status_publish_seconds_total').get('') ?? 0,
  };
}

/** What happened between two readings of the same agent. */
export function breakdownSince(a: Breakdown, b: Breakdown): Breakdown {
  const diff = (x: Map<string, { seconds: number; count: number }>, y: Map<string, { seconds: number; count: number }>) =>
    new Map(
      [...y]
        .map(([k, v]) => [k, { seconds: v.seconds - (x.get(k)?.seconds ?? 0), count: v.count - (x.get(k)?.count ?? 0) }] as const)
        .filter(([, v]) => v.count > 0 || v.seconds > 0),
    );
  return {
    n: b.n,
    convergeMs: b.convergeMs,
    cpuSelfMs: b.cpuSelfMs - a.cpuSelfMs,
    cpuChildrenMs: b.cpuChildrenMs - a.cpuChildrenMs,
    actions: diff(a.actions, b.actions),
    tools: diff(a.tools, b.tools),
    observeS: b.observeS - a.observeS,
    publishS: b.publishS - a.publishS,
  };
}

/** KiB of each field of smaps_rollup. */
async function rollup(pid: number): Promise<Map<string, number>> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  return new Map(text.split('\n').flatMap((l) => (/^(\w+):\s+(\d+) kB/.exec(l) === null ? [] : [[/^(\w+):/.exec(l)![1]!, Number(/(\d+) kB/.exec(l)![1])]])));
}

/** Master + workers of every HAProxy under the state dir, grouped by config file (one group per load balancer). */
export async function haproxyMemory(stateDir: string): Promise<HaproxyMemory> {
  const groups = new Map<string, number[]>();
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv.some((a) => a.endsWith('haproxy'))) continue;
    const config = argv[argv.indexOf('-f') + 1];
    if (config === undefined || !config.startsWith(`${stateDir}/`)) continue;
    groups.set(config, [...(groups.get(config) ?? []), Number(entry)]);
  }
  const out: HaproxyMemory = { pss: [], pssAnon: [], privateKiB: [] };
  for (const pids of groups.values()) {
    let pss = 0;
    let anon = 0;
    let priv = 0;
    for (const pid of pids) {
      const r = await rollup(pid);
      pss += r.get('Pss') ?? 0;
      anon += r.get('Pss_Anon') ?? r.get('Anonymous') ?? 0;
      priv += (r.get('Private_Clean') ?? 0) + (r.get('Private_Dirty') ?? 0);
    }
    out.pss.push(pss);
    out.pssAnon.push(anon);
    out.privateKiB.push(priv);
  }
  return out;
}

export async function phaseI(opts: {
  n: number;
  root: string;
  bridge: string;
  node: BenchNode;
  changes: number;
  resyncS: number;
  cleanup: Cleanup;
  nslbCleanup: (stateDir: string) => Promise<void>;
}): Promise<DensityResult> {
  const { n, root, bridge, node } = opts;
  const before = await meminfo();
  const fleet = await writeFleet(root, 'i', n, THIRD);
  opts.cleanup.add(`nslb cleanup ${fleet.stateDir}`, () => opts.nslbCleanup(fleet.stateDir));
  const agent = new BenchAgent({ watch: fleet.watch, stateDir: fleet.stateDir, bridge, resyncS: opts.resyncS });
  opts.cleanup.add('agent (i)', () => agent.stop());
  log(`(i) N=${n}: agent started (pid ${agent.pid})`);
  // 10 minutes, not waitActive's 30: where the node cannot hold N (ovs-vswitchd's userspace datapath past ~1,000
  // ports here) the rest of the run is not held up by it; the run then says what was measured before.
  const convergeMs = await waitActive(agent, fleet, '(i) converge', agent.startedAt, 10 * 60_000);
  const doneAt = now();
  log(`(i) N=${n}: all ACTIVE after ${ms(convergeMs)}`);
  const breakdown = await readBreakdown(agent, n, convergeMs);
  const within30s = await vipsAnsweringWithin(node.client, fleet.vips, doneAt);
  log(
    `(i) N=${n}: ${within30s.ok}/${n} VIPs answered 200 within 30 s${within30s.failed.length > 0 ? ` (first failures ${JSON.stringify(within30s.failed.slice(0, 3))})` : ''}`,
  );
  const after = await meminfo();
  const haproxy = await haproxyMemory(fleet.stateDir);
  log(`(i) N=${n}: ${haproxy.pss.length} HAProxies; Pss p50 ${median(haproxy.pss)} KiB, anonymous p50 ${median(haproxy.pssAnon)} KiB`);

  // Member changes at that size: m3 added to, then removed from, one load balancer; the clock stops at m3's
  // first response (add) or at the status file's next rewrite without it (remove is (b)'s business).
  const memberChanges: number[] = [];
  const target = fleet.names[Math.floor(n / 2)]!;
  const vip = fleet.vips[Math.floor(n / 2)]!;
  const probe = new Probe(node.client, `http://${vip}/`);
  await sleep(300);
  const file = join(fleet.watch, `${target}.yaml`);
  const write = async (withM3: boolean): Promise<number> => {
    const members = (withM3 ? (['m1', 'm2', 'm3'] as const) : (['m1', 'm2'] as const)).map((m) => ({ name: m, address: nslbMember(m) }));
    await writeFile(`${file}.tmp`, lbYaml({ namespace: NAMESPACE, name: target, vip, prefixLength: PREFIX, members }));
    const t = now();
    await rename(`${file}.tmp`, file);
    return t;
  };
  for (let i = 0; i < opts.changes; i++) {
    probe.forget(now());
    const t0 = await write(true);
    const took = await probe.until(() => firstSeen(probe.responses, t0, (r) => r.s === 200 && r.b === 'm3'), 20_000);
    memberChanges.push(took);
    log(`(i) member add at N=${n}: ${ms(took)}`);
    await sleep(300);
    await write(false);
    await sleep(500);
  }
  await probe.stop();

  // No-op resyncs at that size: two after the changes settled.
  const since = Date.now();
  const deadline = now() + 3 * opts.resyncS * 1000 + 30_000;
  while (agent.resyncs.filter((r) => r.time >= since).length < 2 && now() < deadline) await sleep(500);
  const resyncs = agent.resyncs
    .filter((r) => r.time >= since)
    .map((r) => ({
      ...(r.spawned === undefined ? {} : { spawned: r.spawned }),
      ...(r.ms === undefined ? {} : { ms: r.ms }),
      ...(r.changed === undefined ? {} : { changed: r.changed }),
    }));
  log(`(i) resyncs at N=${n}: ${JSON.stringify(resyncs)}`);
  const mem = await agent.memory();
  await agent.stop();
  log(`(i) N=${n}: removing (nslb cleanup)`);
  await opts.nslbCleanup(fleet.stateDir);
  return {
    n,
    convergeMs,
    within30s,
    ...(mem === undefined ? {} : { peakMiB: mem.peakMiB, rssMiB: mem.rssMiB }),
    haproxy,
    kernelKiB: kernelPart(after) - kernelPart(before),
    availableDropKiB: (before.get('MemAvailable') ?? 0) - (after.get('MemAvailable') ?? 0),
    memberChanges,
    resyncs,
    ...(breakdown === undefined ? {} : { breakdown }),
  };
}

const mib = (kib: number | undefined) => (kib === undefined ? '?' : `${(kib / 1024).toFixed(1)} MiB`);
/** The target is in MB (10^6 bytes), close to the figure: KiB, exact, beside the MiB. */
const kib = (k: number | undefined) => (k === undefined ? '?' : `${k.toLocaleString('en')} KiB`);

export function densityRows(d: DensityResult, sized: (v: ReturnType<typeof verdict>) => ReturnType<typeof verdict>): Row[] {
  const rows: Row[] = [];
  rows.push({
    figure: `(i) N=${d.n}: cold converge (agent spawned → every one ACTIVE)`,
    value: `${ms(d.convergeMs)}, ${(d.n / (d.convergeMs / 1000)).toFixed(1)} LB/s`,
    target: 'converges',
    verdict: 'pass',
  });
  rows.push({
    figure: `(i) N=${d.n}: VIPs answering 200 within 30 s after ACTIVE`,
    value: `${d.within30s.ok}/${d.n}${d.within30s.allByMs === undefined ? '' : `, the last after ${ms(d.within30s.allByMs)}`}`,
    target: 'every VIP',
    verdict: verdict(d.within30s.ok === d.n),
  });
  rows.push({
    figure: `(i) N=${d.n}: agent memory`,
    value: d.peakMiB === undefined ? 'n/a' : `peak RSS ${d.peakMiB.toFixed(0)} MiB; RSS after ${(d.rssMiB ?? 0).toFixed(0)} MiB`,
    target: 'peak < 300 MB',
    verdict: d.peakMiB === undefined ? 'n/a' : sized(verdict(d.peakMiB * 1.048576 < 300)),
  });
  const h = d.haproxy;
  const pssP50 = median(h.pss);
  rows.push({
    figure: `(i) N=${d.n}: HAProxy memory per load balancer (master + worker, /proc smaps_rollup; ${h.pss.length} found)`,
    value: `Pss p50 ${mib(pssP50)} = ${kib(pssP50)} (max ${mib(Math.max(...h.pss))}), of it anonymous ${kib(median(h.pssAnon))}; private ${kib(median(h.privateKiB))}; an Octavia amphora: ${OCTAVIA_AMPHORA_MB} MiB of VM`,
    target: '≤ 6 MB',
    verdict: pssP50 === undefined ? 'n/a' : verdict(pssP50 * 1024 <= 6_000_000),
  });
  rows.push({
    figure: `(i) N=${d.n}: kernel memory growth (Slab + KernelStack + PageTables + Percpu)`,
    value: `${mib(d.kernelKiB)} (${(d.kernelKiB / d.n).toFixed(0)} KiB per load balancer); MemAvailable dropped ${mib(d.availableDropKiB)}`,
    target: '—',
    verdict: 'info',
  });
  rows.push({
    figure: `(i) N=${d.n}: member add → effective on traffic`,
    value: `p50 ${ms(median(d.memberChanges))} (n=${d.memberChanges.length})`,
    target: '—',
    verdict: 'info',
  });
  const noop = d.resyncs.filter((r) => r.changed === undefined || r.changed === 0);
  const sp = median(noop.map((r) => r.spawned ?? Number.NaN));
  const wm = median(noop.map((r) => r.ms ?? Number.NaN));
  rows.push({
    figure: `(i) N=${d.n}: no-op periodic resync`,
    value: noop.length === 0 ? `n/a (${JSON.stringify(d.resyncs)})` : `p50 ${sp} processes, ${ms(wm)} (n=${noop.length})`,
    target: '≤ 5 processes, < 2 s',
    verdict: sp === undefined || wm === undefined ? 'n/a' : sized(verdict(sp <= 5 && wm < 2000)),
  });
  if (d.breakdown !== undefined) rows.push(...breakdownRows(d.breakdown));
  return rows;
}

/** (j): the agent's CPU and where its wall time went, per load balancer, during the convergence. */
export function breakdownRows(b: Breakdown): Row[] {
  const per = (x: number) => `${(x / b.n).toFixed(2)} ms`;
  const rows: Row[] = [
    {
      figure: `(j) N=${b.n}: agent CPU per load balancer over the convergence (${ms(b.convergeMs)})`,
      value: `own ${per(b.cpuSelfMs)}; its processes' (ip, ovs-vsctl, haproxy until it daemonizes) ${per(b.cpuChildrenMs)}`,
      target: '—',
      verdict: 'info',
    },
  ];
  const actions = [...b.actions].sort((x, y) => y[1].seconds - x[1].seconds);
  rows.push({
    figure: `(j) N=${b.n}: wall time per load balancer by node action (summed over concurrent reconciles)`,
    value: actions.map(([k, v]) => `${k} ${per(v.seconds * 1000)} (${v.count}×)`).join('; ') || 'n/a',
    target: '—',
    verdict: 'info',
  });
  const tools = [...b.tools].sort((x, y) => y[1].seconds - x[1].seconds);
  rows.push({
    figure: `(j) N=${b.n}: processes per load balancer (spawn → exit wall time, by program)`,
    value: tools.map(([k, v]) => `${k} ${(v.count / b.n).toFixed(2)}× ${per(v.seconds * 1000)}`).join('; ') || 'n/a',
    target: '—',
    verdict: 'info',
  });
  rows.push({
    figure: `(j) N=${b.n}: observation and status per load balancer`,
    value: `observe ${per(b.observeS * 1000)}; status publish ${per(b.publishS * 1000)}`,
    target: '—',
    verdict: 'info',
  });
  return rows;
}
