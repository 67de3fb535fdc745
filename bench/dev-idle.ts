// Development only, not a figure of the table: `tsx bench/dev-idle.ts [--n 100] [--seconds 30] [--prof DIR]
// [--status-interval MS]` (as root,
// under the data-plane lock). An agent converges N load balancers (phase (c)'s shape), then sits idle: its CPU over
// `seconds` (utime + stime from /proc, and its children's), so that what a quiet agent costs per load balancer is
// visible. `--prof DIR`: the agent runs with --cpu-prof into DIR (written when it exits; the idle part is the
// profile's samples after the convergence, which this prints as an offset).
import { readFile, rm } from 'node:fs/promises';
import { statFields } from '../src/drivers/proc.js';
import { NSLB_CLI, runCommand } from '../test/e2e/harness.js';
import { BenchAgent } from './lib/agent.js';
import { waitActive, writeFleet } from './lib/fleet.js';
import { Cleanup, createBenchNode, log } from './lib/node-env.js';

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
  const at = Date.now();
  log(`idle from ${((at - agent.startedAt) / 1000).toFixed(1)} s after the agent started`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const t1 = await cpuTicks(agent.pid);
  const s = (Date.now() - at) / 1000;
  const user = (t1[0] - t0[0]) / 100 / s;
  const system = (t1[1] - t0[1]) / 100 / s;
  const cpu = user + system;
  log(
    `idle agent CPU: ${(cpu * 100).toFixed(1)} % of one core (user ${(user * 100).toFixed(1)} %, system ${(system * 100).toFixed(1)} %) for ${n} load balancers (${((cpu * 1000) / n).toFixed(2)} ms per load balancer per second)`,
  );
} finally {
  await cleanup.run();
}
