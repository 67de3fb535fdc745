// Development tool (not a figure of the table): the "100 pairs" step of phase (v) alone, with a record of what
// the machine does meanwhile. Boots 2 simulated nodes in file mode as bench/lib/ha-phase.ts does, writes N pair
// files (ACTIVE_STANDBY, placement node1,node2) and every INTERVAL ms records the load average, the process
// counts by command name, the processes in R/D/Z, and how many pairs each node calls ready; keeps the agents'
// logs. Run under the data-plane lock, after `npm run build` (the rig runs dist/):
//   flock -o /tmp/nslb-dataplane.lock npx tsx bench/dev-v100.ts [--n 100] [--timeout-s 300] [--out DIR] [--interval-ms 3000]
//     [--steady-s S]   (once all are redundant: S seconds of the steady state, CPU seconds by command name)
//   NSLB_SIM_NODE_FLAGS='--cpu-prof --cpu-prof-dir=DIR' NSLB_DEV_TERM_AGENTS=1: the agents' CPU profiles (SIGTERM at the end)
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStatus } from '../test/e2e/agent.js';
import { processTicks } from './lib/proc-ticks.js';
import { lbYaml } from './lib/ha-phase.js';
import { assertNoRig, nodeStateDir, SIM_DIR, sim, stopAgents } from '../test/e2e/sim-rig.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const N = Number(arg('--n', '100'));
const TIMEOUT_MS = Number(arg('--timeout-s', '300')) * 1_000;
const INTERVAL_MS = Number(arg('--interval-ms', '3000'));
/** Once all are redundant: this many seconds of the steady state, with CPU seconds by command name. */
const STEADY_S = Number(arg('--steady-s', '0'));
const OUT = arg('--out', `/tmp/dev-v100-${Date.now()}`);
const AGENT_FLAGS = (process.env.NSLB_DEV_AGENT_FLAGS ?? '--resync 10').split(' ').filter(Boolean);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per node: pairs whose status lists 2 nodes, all ready; and the roles this node reports for itself. */
async function pairState(node: string, names: string[]) {
  const file = await readStatus(nodeStateDir(node)).catch(() => undefined);
  let redundant = 0;
  let present = 0;
  const roles: Record<string, number> = {};
  const states: Record<string, number> = {};
  for (const name of names) {
    const lb = file?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === name)?.status;
    if (lb === undefined) continue;
    present++;
    const nodes = lb.nodes ?? [];
    if (nodes.length === 2 && nodes.every((n) => n.ready)) redundant++;
    const own = nodes.find((n) => n.name === node);
    const role = String(own?.role ?? 'none');
    roles[role] = (roles[role] ?? 0) + 1;
    const st = `${String((lb as { operatingStatus?: string }).operatingStatus ?? '?')}/${String((lb as { provisioningStatus?: string }).provisioningStatus ?? '?')}`;
    states[st] = (states[st] ?? 0) + 1;
  }
  return { present, redundant, roles, states };
}

async function procSnapshot() {
  const byComm: Record<string, number> = {};
  const byState: Record<string, Record<string, number>> = { R: {}, D: {}, Z: {} };
  const wchans: Record<string, number> = {};
  const zparents: Record<string, number> = {};
  const stacks: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const m = /^\d+ \((.*)\) (\S)/s.exec(stat);
    if (!m) continue;
    const comm = m[1]!;
    const st = m[2]!;
    byComm[comm] = (byComm[comm] ?? 0) + 1;
    if (st in byState) byState[st]![comm] = (byState[st]![comm] ?? 0) + 1;
    if (st === 'D') {
      const wchan = await readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '?');
      const k = `${comm}@${wchan}`;
      wchans[k] = (wchans[k] ?? 0) + 1;
      if (stacks.length < 3) stacks.push(`${comm}: ${(await readFile(`/proc/${pid}/stack`, 'utf8').catch(() => '?')).replaceAll('\n', ' | ')}`);
    }
    if (st === 'Z') {
      const ppid = /^\d+ \(.*\) \S (\d+)/s.exec(stat)?.[1] ?? '?';
      const pcomm = (await readFile(`/proc/${ppid}/comm`, 'utf8').catch(() => '?')).trim();
      const k = `${comm}<-${pcomm}`;
      zparents[k] = (zparents[k] ?? 0) + 1;
    }
  }
  const top = Object.fromEntries(
    Object.entries(byComm)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12),
  );
  return { top, R: byState.R, D: byState.D, Z: byState.Z, wchans, zparents, stacks };
}

/** CPU seconds by command name over `seconds` of the steady state (processes that lived through it, and new ones). */
async function steady(seconds: number): Promise<string> {
  const a = await processTicks();
  const l0 = (await readFile('/proc/loadavg', 'utf8')).trim();
  await sleep(seconds * 1_000);
  const b = await processTicks();
  const byComm = new Map<string, number>();
  for (const [pid, x] of b) byComm.set(x.comm, (byComm.get(x.comm) ?? 0) + (x.ticks - (a.get(pid)?.ticks ?? 0)) / 100);
  const total = [...byComm.values()].reduce((s, v) => s + v, 0);
  const top = [...byComm].sort((x, y) => y[1] - x[1]).slice(0, 15);
  return [
    `steady state ${seconds} s: load ${l0} -> ${(await readFile('/proc/loadavg', 'utf8')).trim()}; user+system CPU of processes ${total.toFixed(1)} s (${((100 * total) / seconds).toFixed(0)} % of one core)`,
    ...top.map(([c, v]) => `  ${c}: ${v.toFixed(2)} s`),
  ].join('\n');
}

async function main() {
  await mkdir(OUT, { recursive: true });
  const record = join(OUT, 'record.jsonl');
  await assertNoRig();
  const watch = await mkdtemp(join(tmpdir(), 'nslb-dev-v100-'));
  const t0 = Date.now();
  const say = (s: string) => console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`);
  try {
    say(`up 2 --watch ${watch} -- ${AGENT_FLAGS.join(' ')}`);
    await sim('up', '2', '--watch', watch, '--', ...AGENT_FLAGS);
    say('up');
    const names = Array.from({ length: N }, (_, i) => `ha${i + 1}`);
    const w0 = Date.now();
    for (let i = 1; i <= N; i++) await writeFile(join(watch, `ha${i}.yaml`), lbYaml(i, ['node1', 'node2']));
    say(`${N} files written`);
    let done = false;
    for (const end = w0 + TIMEOUT_MS; Date.now() < end; await sleep(INTERVAL_MS)) {
      const load = (await readFile('/proc/loadavg', 'utf8')).trim();
      const p = await procSnapshot();
      const n1 = await pairState('node1', names);
      const n2 = await pairState('node2', names);
      const row = { t: (Date.now() - w0) / 1000, load, node1: n1, node2: n2, procs: p };
      await writeFile(record, `${JSON.stringify(row)}\n`, { flag: 'a' });
      say(
        `load ${load.split(' ')[0]} R=${JSON.stringify(p.R)} D=${JSON.stringify(p.D)} Z=${JSON.stringify(p.zparents)} Dwchan=${JSON.stringify(p.wchans)} n1 ${n1.present}/${n1.redundant} ${JSON.stringify(n1.roles)} n2 ${n2.present}/${n2.redundant} ${JSON.stringify(n2.roles)}`,
      );
      if (n1.redundant === N && n2.redundant === N) {
        done = true;
        break;
      }
    }
    say(done ? `${N} pairs redundant in ${Date.now() - w0} ms` : `${N} pairs NOT redundant within ${TIMEOUT_MS} ms`);
    if (done && STEADY_S > 0) say(await steady(STEADY_S));
    // With NSLB_SIM_NODE_FLAGS=--cpu-prof, an agent writes its profile only when it exits by itself:
    // SIGTERM each one (the rig's `down` SIGKILLs), and wait for it to exit.
    if (process.env.NSLB_DEV_TERM_AGENTS === '1') await stopAgents(['node1', 'node2'], say, 10_000);
  } finally {
    for (const node of ['node1', 'node2']) {
      await copyFile(join(SIM_DIR, node, 'agent.log'), join(OUT, `${node}-agent.log`)).catch(() => undefined);
      await copyFile(join(nodeStateDir(node), 'status.json'), join(OUT, `${node}-status.json`)).catch(() => undefined);
    }
    await sim('down').catch((e) => console.error(e));
    await rm(watch, { recursive: true, force: true });
    say(`logs in ${OUT}`);
  }
}

await main();
