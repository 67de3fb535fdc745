// Development only, not a figure of the table: `tsx bench/dev-idle.ts [--n 100] [--seconds 30] [--prof DIR]
// [--status-interval MS]` (as root,
// under the data-plane lock). An agent converges N load balancers (phase (c)'s shape), then sits idle: its CPU over
// `seconds` (utime + stime from /proc, and its children's), so that what a quiet agent costs per load balancer is
// visible. `--prof DIR`: the agent runs with --cpu-prof into DIR (written when it exits; the idle part is the
// profile's samples after the convergence, which this prints as an offset).
import { readdir, readFile, rm } from 'node:fs/promises';
import { statFields } from '../src/drivers/proc.js';
import { NSLB_CLI, runCommand } from '../test/e2e/harness.js';
import { BenchAgent } from './lib/agent.js';
import { waitActive, writeFleet } from './lib/fleet.js';
import { Cleanup, createBenchNode, log } from './lib/node-env.js';
import { processTicks, statTicks } from './lib/proc-ticks.js';

const ROOT = '/tmp/nslb-devidle';
const BRIDGE = 'nslbdevi';
const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
};
const n = Number(arg('n', '100'));
const seconds = Number(arg('seconds', '30'));
const prof = arg('prof', '');
/** The agent's --status-interval (its default, 1000 ms, when not given): what the stats poll costs, by difference. */
const statusInterval = arg('status-interval', '');

/** utime and stime of a process, in clock ticks (1/100 s). */
async function cpuTicks(pid: number): Promise<[user: number, system: number]> {
  const f = statFields(await readFile(`/proc/${pid}/stat`, 'utf8'));
  return [Number(f[11]), Number(f[12])];
}

/** Each thread's utime + stime in ticks, by thread name (comm) and id: where in the process the CPU goes. */
async function threadTicks(pid: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    try {
      const ticks = statTicks(await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      const comm = (await readFile(`/proc/${pid}/task/${tid}/comm`, 'utf8')).trim();
      out.set(`${comm} (${tid})`, ticks);
    } catch {
      // A thread that ended in between.
    }
  }
  return out;
}

/** utime + stime in ticks of every process named `name` on the machine (the bench node's HAProxies). */
async function commTicks(name: string): Promise<number> {
  let sum = 0;
  for (const p of (await processTicks()).values()) if (p.comm === name) sum += p.ticks;
  return sum;
}

const cleanup = new Cleanup();
try {
  await createBenchNode(BRIDGE, cleanup);
  const fleet = await writeFleet(ROOT, 'idle', n, 90);
  const nodeArgs = prof === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${prof}`];
  const args = statusInterval === '' ? [] : ['--status-interval', statusInterval];
  const agent = new BenchAgent({ watch: fleet.watch, stateDir: fleet.stateDir, bridge: BRIDGE, resyncS: 20, nodeArgs, args });
  cleanup.add('fleet', async () => {
    await agent.stop();
    await runCommand(['node', NSLB_CLI, 'cleanup', '--state-dir', fleet.stateDir, '--scope', 'state-dir'], { allowFailure: true });
    await rm(ROOT, { recursive: true, force: true });
  });
  const ms = await waitActive(agent, fleet, 'idle', agent.startedAt);
  log(`converged ${n} in ${ms} ms; settling 10 s`);
  await new Promise((r) => setTimeout(r, 10_000));
  const t0 = await cpuTicks(agent.pid);
  const threads0 = await threadTicks(agent.pid);
  const haproxy0 = await commTicks('haproxy');
  const at = Date.now();
  log(`idle from ${((at - agent.startedAt) / 1000).toFixed(1)} s after the agent started`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const t1 = await cpuTicks(agent.pid);
  const threads1 = await threadTicks(agent.pid);
  const haproxy1 = await commTicks('haproxy');
  const s = (Date.now() - at) / 1000;
  const user = (t1[0] - t0[0]) / 100 / s;
  const system = (t1[1] - t0[1]) / 100 / s;
  const cpu = user + system;
  log(
    `idle agent CPU: ${(cpu * 100).toFixed(1)} % of one core (user ${(user * 100).toFixed(1)} %, system ${(system * 100).toFixed(1)} %) for ${n} load balancers (${((cpu * 1000) / n).toFixed(2)} ms per load balancer per second)`,
  );
  const byThread = [...threads1]
    .map(([name, ticks]) => [name, (ticks - (threads0.get(name) ?? 0)) / 100 / s] as const)
    .filter(([, share]) => share > 0)
    .sort((a, b) => b[1] - a[1]);
  log(`the ${n} HAProxies meanwhile: ${(((haproxy1 - haproxy0) / 100 / s) * 100).toFixed(1)} % of one core`);
  log(`by thread: ${byThread.map(([name, share]) => `${name} ${(share * 100).toFixed(1)} %`).join(', ')}`);
} finally {
  await cleanup.run();
}
