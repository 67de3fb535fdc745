// Phase (h): how fast load balancers go. N load balancers brought up by an agent, then
//   1. every file removed at once → the clock stops when every netns, OVS port and HAProxy of them is gone;
//   2. the same N brought up again, the agent stopped (its load balancers keep serving), and `nslb cleanup
//      --scope state-dir` run → the clock is the command's run, then nothing of them may be left.
import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { NSLB_CLI, runCommand } from '../../test/e2e/harness.js';
import { BenchAgent } from './agent.js';
import { type Breakdown, breakdownRows, breakdownSince, readBreakdown } from './density.js';
import { fleetIfaces, leftovers, type Leftovers, waitActive, waitGone, waitStatusGone, writeFleet } from './fleet.js';
import { type Cleanup, log, now } from './node-env.js';
import { ms, type Row, verdict } from './report.js';

export interface TeardownResult {
  n: number;
  /** Files removed → nothing left; undefined when it did not get there. */
  deleteMs?: number;
  deleteLeft: Leftovers;
  /** Processes the agent spawned for the deletion (its /metrics). */
  deleteSpawned?: number;
  cleanupMs?: number;
  cleanupExit?: number;
  cleanupLeft?: Leftovers;
  /** Why the cleanup was not timed (the fleet was not all there before it). */
  cleanupNotMeasured?: string;
  /** Where the agent's time went during the deletion. */
  deleteBreakdown?: Breakdown;
}

const describeLeft = (l: Leftovers) => `${l.netns} netns, ${l.ports} ports, ${l.haproxies} HAProxies left`;

const THIRD = 40;
const TARGET_MS = 10_000;

export async function phaseH(opts: {
  n: number;
  root: string;
  bridge: string;
  resyncS: number;
  cleanup: Cleanup;
  nslbCleanup: (stateDir: string) => Promise<void>;
}): Promise<TeardownResult> {
  const { n, root, bridge } = opts;
  const fleet = await writeFleet(root, 'h', n, THIRD);
  opts.cleanup.add(`nslb cleanup ${fleet.stateDir}`, () => opts.nslbCleanup(fleet.stateDir));
  const agent = new BenchAgent({ watch: fleet.watch, stateDir: fleet.stateDir, bridge, resyncS: opts.resyncS });
  opts.cleanup.add('agent (h)', () => agent.stop());
  log(`(h) N=${n}: agent started (pid ${agent.pid}); waiting for ${n} ACTIVE`);
  log(`(h) N=${n}: ACTIVE after ${ms(await waitActive(agent, fleet, '(h) create', agent.startedAt))}; removing every file`);

  const spawnedBefore = (await agent.metrics())?.get('nslb_processes_spawned_total');
  const breakdownBefore = await readBreakdown(agent, n, 0);
  // As `git rm` would: the files go, the directory stays.
  const t0 = now();
  await Promise.all(fleet.names.map((x) => unlink(join(fleet.watch, `${x}.yaml`))));
  const gone = await waitGone(fleet, bridge, t0, '(h) delete');
  const spawnedAfter = (await agent.metrics())?.get('nslb_processes_spawned_total');
  const breakdownAfter = await readBreakdown(agent, n, gone.ms ?? 0);
  const result: TeardownResult = { n, deleteLeft: gone.left };
  if (gone.ms !== undefined) result.deleteMs = gone.ms;
  if (spawnedBefore !== undefined && spawnedAfter !== undefined) result.deleteSpawned = spawnedAfter - spawnedBefore;
  if (breakdownBefore !== undefined && breakdownAfter !== undefined) result.deleteBreakdown = breakdownSince(breakdownBefore, breakdownAfter);
  log(`(h) N=${n}: deletion ${gone.ms === undefined ? `did not finish: ${JSON.stringify(gone.left)}` : `done after ${ms(gone.ms)}`}`);
  if (gone.ms === undefined) {
    await agent.stop();
    return result;
  }

  const statusFrom = now();
  await waitStatusGone(fleet, '(h) delete');
  log(`(h) N=${n}: status.json without them ${ms(now() - statusFrom)} after the node was clean`);
  await writeFleet(root, 'h', n, THIRD);
  const again = now();
  log(`(h) N=${n}: the same ${n} written again; ACTIVE after ${ms(await waitActive(agent, fleet, '(h) re-create', again))}`);
  await agent.stop();
  // What the cleanup is timed on: all N of them on the node (a HAProxy is a master and its worker: two processes).
  const before = await leftovers(fleet, bridge, fleetIfaces(fleet));
  if (before.netns !== n || before.ports !== n || before.haproxies < n) {
    result.cleanupNotMeasured = `before it, ${describeLeft(before).replace(' left', '')} on the node, not all ${n}`;
    log(`(h) N=${n}: nslb cleanup not measured: ${result.cleanupNotMeasured}`);
    await opts.nslbCleanup(fleet.stateDir);
    return result;
  }
  log(`(h) N=${n}: agent stopped; nslb cleanup --scope state-dir`);
  const t1 = now();
  const r = await runCommand([process.execPath, process.env.NSLB_BENCH_CLI ?? NSLB_CLI, 'cleanup', '--scope', 'state-dir', '--state-dir', fleet.stateDir], {
    allowFailure: true,
    timeoutMs: 15 * 60_000,
  });
  result.cleanupMs = now() - t1;
  result.cleanupExit = r.exitCode ?? -1;
  result.cleanupLeft = await leftovers(fleet, bridge, fleetIfaces(fleet));
  log(`(h) N=${n}: nslb cleanup exited ${r.exitCode} after ${ms(result.cleanupMs)}; left ${JSON.stringify(result.cleanupLeft)}`);
  if (r.exitCode !== 0) log(`(h) nslb cleanup stderr: ${r.stderr.trim().slice(-500)}`);
  if (existsSync(fleet.stateDir)) await opts.nslbCleanup(fleet.stateDir);
  return result;
}

export function teardownRows(h: TeardownResult, sized: (v: ReturnType<typeof verdict>) => ReturnType<typeof verdict>): Row[] {
  const nothingLeft = (l: Leftovers | undefined) => l !== undefined && l.netns + l.ports + l.haproxies === 0;
  const rows: Row[] = [
    {
      figure: `(h) N=${h.n} files removed at once → every netns, OVS port and HAProxy of them gone`,
      value:
        h.deleteMs === undefined
          ? `not done: ${describeLeft(h.deleteLeft)}`
          : `${ms(h.deleteMs)}, ${(h.n / (h.deleteMs / 1000)).toFixed(1)} LB/s${h.deleteSpawned === undefined ? '' : `; ${h.deleteSpawned} processes spawned`}`,
      target: '≤ 10 s',
      verdict: h.deleteMs === undefined ? 'FAIL' : sized(verdict(h.deleteMs <= TARGET_MS)),
    },
  ];
  if (h.deleteBreakdown !== undefined) {
    rows.push(...breakdownRows(h.deleteBreakdown).map((r) => ({ ...r, figure: r.figure.replace('(j)', '(h)').replace('the convergence', 'the deletion') })));
  }
  if (h.cleanupNotMeasured !== undefined) {
    rows.push({
      figure: `(h) nslb cleanup of N=${h.n} (agent stopped, load balancers serving): command start → exit, then nothing left`,
      value: `not measured: ${h.cleanupNotMeasured}`,
      target: '≤ 10 s, nothing left',
      verdict: 'FAIL',
    });
  }
  if (h.cleanupMs !== undefined) {
    const clean = nothingLeft(h.cleanupLeft) && h.cleanupExit === 0;
    rows.push({
      figure: `(h) nslb cleanup of N=${h.n} (agent stopped, load balancers serving): command start → exit, then nothing left`,
      value: `${ms(h.cleanupMs)}; exit ${h.cleanupExit}; ${h.cleanupLeft === undefined ? '?' : describeLeft(h.cleanupLeft)}`,
      target: '≤ 10 s, nothing left',
      verdict: clean ? sized(verdict(h.cleanupMs <= TARGET_MS)) : 'FAIL',
    });
  }
  return rows;
}
