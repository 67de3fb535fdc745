// Development only, not a figure of the table: `tsx bench/dev-bulk.ts [--n 500] [--bare 500] [--rounds 1] [--order nb]
// [--variants base,xfoo,c64] [--perf FILE] [--node-perf 1] [--micro 1]` (as root, under the data-plane lock). It runs
// nslb's cold convergence of N as phase (c) does (an agent started on N files; the clock stops when status.json says
// every one is ACTIVE; then every VIP is asked once) and the bare serial shell loop of phase (g), interleaved, `rounds`
// times, and prints each time with the load average, the CPU of the agent, of its children, of ovs-vswitchd and of
// ovsdb-server, the machine's busy share and the (j) breakdown. Variants compare builds of the same tree in one run:
// `xNAME` starts the agent with NSLB_EXP_NAME=1 (for an experiment behind that variable in a working tree), `cNN`
// with --concurrency NN. `--perf FILE` records the first round system-wide (`perf record -a -g`, the agent with
// --perf-basic-prof-only-functions so that its JavaScript frames have names), `--micro 1` times entering a netns
// (`ip netns exec` against `nsenter --net`) once N netns exist. The agent's log goes to /tmp/devb/agent-*.log with
// every process it started (NSLB_TRACE_SPAWN). The real figures come from `npm run bench -- --phases c,g`.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { deleteBridge, NSLB_CLI, runCommand } from '../test/e2e/harness.js';
import { BenchAgent } from './lib/agent.js';
import { runBareLoop } from './lib/bare-loop.js';
import { deleteBaselineLbs, type BaselineLb } from './lib/baseline.js';
import { readBreakdown, breakdownRows } from './lib/density.js';
import { waitActive, writeFleet } from './lib/fleet.js';
import { checkVips, Cleanup, createBenchNode, log, type BenchNode } from './lib/node-env.js';

const ROOT = '/tmp/nslb-devbulk';
const LOGS = '/tmp/devb';
const BRIDGE = 'nslbdevb';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
}

async function ticksOf(pid: string): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (stat === '') return 0;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
async function pidOf(file: string): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).trim();
}
async function ovsTicks(): Promise<{ vswitchd: number; db: number }> {
  return {
    vswitchd: await ticksOf(await pidOf('/var/run/openvswitch/ovs-vswitchd.pid')),
    db: await ticksOf(await pidOf('/var/run/openvswitch/ovsdb-server.pid')),
  };
}
async function busyTicks(): Promise<{ busy: number; total: number }> {
  const cpu = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - cpu[3]! - cpu[4]!, total };
}
const load = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');

async function nslbRound(node: BenchNode, n: number, tag: string, variant: string): Promise<string> {
  const f = await writeFleet(ROOT, tag, n, 10);
  const l0 = await load();
  const o0 = await ovsTicks();
  const b0 = await busyTicks();
  const perfOut = arg('perf', '');
  const perf = perfOut === '' || tag !== 'r0v0' ? undefined : spawn('perf', ['record', '-a', '-F', '199', '-g', '-o', perfOut], { stdio: 'ignore' });
  const prof = arg('node-perf', '');
  if (prof !== '' && tag === 'r0v0') process.env.NODE_OPTIONS = '--perf-basic-prof-only-functions';
  // A variant: base, xNAME (NSLB_EXP_NAME=1), cNN (--concurrency NN), or several joined by '+'.
  const parts = variant.split('+');
  for (const p of parts) if (p.startsWith('x')) process.env[`NSLB_EXP_${p.slice(1).toUpperCase()}`] = '1';
  process.env.NSLB_TRACE_SPAWN = '1';
  const conc = parts.find((p) => /^c\d+$/.test(p));
  const agent = new BenchAgent({
    watch: f.watch,
    stateDir: f.stateDir,
    bridge: BRIDGE,
    resyncS: 60,
    ...(conc === undefined ? {} : { concurrency: Number(conc.slice(1)) }),
  });
  delete process.env.NODE_OPTIONS;
  const logFile = createWriteStream(`${LOGS}/agent-${tag}-${variant}.log`);
  agent.child.stderr?.pipe(logFile);
  for (const k of Object.keys(process.env)) if (k.startsWith('NSLB_EXP_') || k === 'NSLB_TRACE_SPAWN') delete process.env[k];
  let line = '';
  try {
    const took = await waitActive(agent, f, `nslb ${n}`, agent.startedAt, 10 * 60_000);
    if (perf !== undefined) {
      perf.kill('SIGINT');
      await new Promise((r) => perf.once('exit', r));
    }
    const o1 = await ovsTicks();
    const b1 = await busyTicks();
    const br = await readBreakdown(agent, n, took);
    const check = await checkVips(node.client, f.vips);
    if (arg('micro', '') !== '' && tag === 'r0v0') {
      const ns = [...f.netns][0]!;
      for (const argv of [
        ['ip', 'netns', 'exec', ns, 'true'],
        ['nsenter', `--net=/run/netns/${ns}`, 'true'],
        ['ip', 'netns', 'exec', ns, 'sysctl', '-q', 'net.ipv4.ip_forward'],
        ['nsenter', `--net=/run/netns/${ns}`, 'sysctl', '-q', 'net.ipv4.ip_forward'],
        ['ip', '-n', ns, 'link', 'show', 'lo'],
        ['true'],
      ]) {
        const r = await runCommand(['perf', 'stat', '-r', '30', ...argv], { allowFailure: true });
        const clock = /([\d.]+) msec task-clock/.exec(r.stderr)?.[1];
        const el = /([\d.]+) \+- [\d.]+ seconds time elapsed/.exec(r.stderr)?.[1];
        log(`micro: ${argv.join(' ')}: ${clock} ms cpu, ${el} s elapsed`);
      }
    }
    line =
      `nslb[${variant}] N=${n}: ${(took / 1000).toFixed(2)} s; load ${l0}; ${check.ok}/${n} 200 right after; ` +
      `cpu agent ${br?.cpuSelfMs} ms + children ${br?.cpuChildrenMs} ms; ovs-vswitchd ${(o1.vswitchd - o0.vswitchd) * 10} ms, ovsdb ${(o1.db - o0.db) * 10} ms; ` +
      `machine busy ${(((b1.busy - b0.busy) / (b1.total - b0.total)) * 100).toFixed(0)}%`;
    if (br !== undefined) for (const r of breakdownRows(br)) line += `\n   ${r.figure}: ${r.value}`;
  } finally {
    await agent.stop();
    const r = await runCommand([process.execPath, NSLB_CLI, 'cleanup', '--scope', 'state-dir', '--state-dir', f.stateDir], {
      allowFailure: true,
      timeoutMs: 600_000,
    });
    if (r.exitCode !== 0) log(`cleanup exited ${r.exitCode}: ${r.stderr.slice(-300)}`);
  }
  return line;
}

async function bareRound(n: number): Promise<string> {
  const lbs: BaselineLb[] = [];
  const l0 = await load();
  try {
    const r = await runBareLoop(join(ROOT, 'bare'), BRIDGE, n, lbs);
    return `bare N=${n}: ${(r.ms / 1000).toFixed(2)} s (exit ${r.exitCode}); load ${l0}`;
  } finally {
    await deleteBaselineLbs(BRIDGE, lbs);
  }
}

async function main(): Promise<void> {
  const n = Number(arg('n', '500'));
  const bare = Number(arg('bare', '0'));
  const rounds = Number(arg('rounds', '1'));
  const order = arg('order', 'nb');
  const variants = arg('variants', 'base').split(',');
  await rm(ROOT, { recursive: true, force: true });
  await mkdir(LOGS, { recursive: true });
  await deleteBridge(BRIDGE).catch(() => undefined);
  const cleanup = new Cleanup();
  const lines: string[] = [];
  try {
    const node = await createBenchNode(BRIDGE, cleanup);
    for (let r = 0; r < rounds; r++) {
      for (const step of order) {
        if (step === 'n' && n > 0) {
          for (const [vi, v] of variants.entries()) {
            lines.push(await nslbRound(node, n, `r${r}v${vi}`, v));
            log(lines.at(-1) ?? '');
          }
          continue;
        }
        if (step === 'b' && bare > 0) lines.push(await bareRound(bare));
        log(lines.at(-1) ?? '');
      }
    }
  } finally {
    await cleanup.run();
    await rm(ROOT, { recursive: true, force: true });
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
