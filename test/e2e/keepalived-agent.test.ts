// Issue 16 acceptance 6: keepalived is covered by the agent like HAProxy. One agent (--node-name node-a) serves an
// ACTIVE_STANDBY load balancer whose peer node never comes (so it is MASTER alone, DEGRADED): keepalived killed
// outright is started again, a config edited by hand is rewritten, and the agent SIGKILLed at every crash
// point of creating and of deleting a pair leaves, once a normal agent has run, exactly one keepalived (and one
// notify script) per desired load balancer and none for the others.
import { readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepalivedFiles } from '../../src/desired/state-dir.js';
import { HANDOVER_STALE_MS, HANDOVER_TABLE, renderSynDrop } from '../../src/drivers/keepalived/handover.js';
import { runCommand } from '../../src/exec/run.js';
import { Agent } from './agent.js';
import { httpGet, waitFor, type Host } from './harness.js';
import { inventoryProblems, killHaproxiesUnder } from './node-inventory.js';
import { listener, loadBalancer, member, ParityEnv, pool, sleep, type ApiDoc } from './parity-env.js';
import { nodeNames } from '../../src/desired/names.js';

const env = ParityEnv.create(9);
const RESYNC_S = 3;
const NODE = 'node-a';

interface KeepalivedProcs {
  /** Config path → parent PIDs (keepalived whose parent is not a keepalived of the same config). */
  parents: Map<string, number[]>;
  /** State file → notify script PIDs. */
  notifiers: Map<string, number[]>;
}

async function keepalivedProcesses(stateDir: string): Promise<KeepalivedProcs> {
  const under = `${resolve(stateDir)}/`;
  const procs: { pid: number; ppid: number; config: string }[] = [];
  const notifiers = new Map<string, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || stat === '') continue;
    if ((argv[0] ?? '').endsWith('keepalived') && !argv.includes('-t')) {
      const config = argv[argv.indexOf('-f') + 1] ?? '';
      if (config.startsWith(under)) procs.push({ pid: Number(entry), ppid: Number(fields[1]), config });
    }
    const at = argv.findIndex((a) => a.endsWith('/keepalived-notify.sh'));
    const stateFile = at < 0 ? undefined : argv[at + 1];
    if (stateFile?.startsWith(under)) notifiers.set(stateFile, [...(notifiers.get(stateFile) ?? []), Number(entry)]);
  }
  const parents = new Map<string, number[]>();
  for (const p of procs) {
    if (procs.some((q) => q.pid === p.ppid && q.config === p.config)) continue;
    parents.set(p.config, [...(parents.get(p.config) ?? []), p.pid]);
  }
  return { parents, notifiers };
}

async function killKeepalivedUnder(stateDir: string): Promise<void> {
  const { parents, notifiers } = await keepalivedProcesses(stateDir);
  for (const pid of [...parents.values(), ...notifiers.values()].flat()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

describe('keepalived under the agent (issue 16 acceptance 6)', () => {
  let client: Host;
  let m1: Host;
  let agent: Agent | undefined;
  const startAgent = (extra: { env?: Record<string, string>; concurrency?: number } = {}): Agent =>
    new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: RESYNC_S, extraArgs: ['--node-name', NODE], ...extra });

  const pairDocs = (name: string, vip: number): ApiDoc[] => [
    loadBalancer(name, {
      vip: { address: env.vip(vip), prefixLength: 24 },
      topology: 'ACTIVE_STANDBY',
      placement: { nodes: [NODE, 'node-b'] },
      vrrp: { addresses: [env.vip(vip + 1), env.vip(vip + 2)], advertIntervalMs: 100 },
    }),
    listener(`${name}-l`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` }),
    pool(`${name}-p`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'SOURCE_IP' }),
    member(`${name}-m1`, { pool: `${name}-p`, address: m1.address, port: 8080 }),
  ];
  const files = (name: string) => keepalivedFiles(resolve(env.stateDir), env.netnsOf(name));

  /** '' when the node has exactly these pairs (and their keepalived, once each) and nothing else of ours. */
  async function notConverged(names: readonly string[], a: Agent): Promise<string> {
    if (!a.logs.some((l) => l.includes('initial sync done'))) return 'agent: initial sync not done';
    const problems = await inventoryProblems(
      env.stateDir,
      ['ha', 'hb'].map((n) => env.netnsOf(n)),
      names.map((n) => nodeNames(env.namespace, n)),
    );
    const { parents, notifiers } = await keepalivedProcesses(env.stateDir);
    for (const n of ['ha', 'hb']) {
      const want = names.includes(n) ? 1 : 0;
      const k = parents.get(files(n).config) ?? [];
      const s = notifiers.get(files(n).stateFile) ?? [];
      if (k.length !== want) problems.push(`${n}: ${k.length} keepalived (want ${want})`);
      if (s.length > want) problems.push(`${n}: ${s.length} notify scripts (want at most ${want})`);
      // The agent's verdict on HAProxy for keepalived: 0 where it serves, no file left where the pair is gone.
      const health = await readFile(files(n).health, 'utf8').catch(() => undefined);
      if (want === 1 && health !== '0\n') problems.push(`${n}: health file ${JSON.stringify(health)} (want "0\\n")`);
      if (want === 0 && health !== undefined) problems.push(`${n}: health file left behind`);
    }
    const objects = (await env.status())?.objects ?? [];
    for (const o of objects) if (o.status.provisioningStatus !== 'ACTIVE') problems.push(`${o.kind}/${o.name} ${o.status.provisioningStatus}`);
    return problems.join('; ');
  }

  beforeAll(async () => {
    await env.start({ resync: RESYNC_S });
    await env.agent?.stop();
    env.agent = undefined;
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'm1' });
    agent = startAgent();
    env.agent = agent;
    await env.apply('ha.yaml', pairDocs('ha', 1));
  }, 60_000);

  afterAll(async () => {
    await agent?.kill().catch(() => {});
    env.agent = undefined;
    await killKeepalivedUnder(env.stateDir).catch(() => {});
    await env.cleanup();
    await killHaproxiesUnder(env.stateDir).catch(() => {});
    await killKeepalivedUnder(env.stateDir).catch(() => {});
    await rm(env.root, { recursive: true, force: true }).catch(() => {});
  }, 60_000);

  it('serves a pair whose peer never comes as MASTER alone, DEGRADED, one keepalived', async () => {
    await waitFor(async () => (await httpGet(client, `http://${env.vip(1)}/`, { timeoutMs: 1_000 })).status === 200, {
      timeoutMs: 30_000,
      intervalMs: 200,
      message: 'the VIP answers',
    });
    await waitFor(async () => (await env.status())?.objects.find((o) => o.kind === 'LoadBalancer')?.status.nodes?.[0]?.role === 'MASTER', {
      timeoutMs: 15_000,
      intervalMs: 200,
      message: 'status.nodes says MASTER',
    });
    const lb = (await env.status())?.objects.find((o) => o.kind === 'LoadBalancer');
    expect(lb?.status).toMatchObject({
      provisioningStatus: 'ACTIVE',
      operatingStatus: 'DEGRADED',
      nodes: [
        { name: NODE, role: 'MASTER', ready: true },
        { name: 'node-b', ready: false },
      ],
    });
    expect(await notConverged(['ha'], agent!)).toBe('');
    expect((await readFile(files('ha').config, 'utf8')).length).toBeGreaterThan(0);
  }, 60_000);

  it('keepalived killed outright (every process at once) is started again by the agent', async () => {
    const before = (await keepalivedProcesses(env.stateDir)).parents.get(files('ha').config) ?? [];
    expect(before).toHaveLength(1);
    const { parents, notifiers } = await keepalivedProcesses(env.stateDir);
    const pids = [...(parents.get(files('ha').config) ?? []), ...(notifiers.get(files('ha').stateFile) ?? [])];
    // Its VRRP child too (a child of the parent): stopped first so that nothing cleans up after the others.
    const children: number[] = [];
    for (const entry of await readdir('/proc')) {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      if (before.includes(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))) children.push(Number(entry));
    }
    for (const pid of [...pids, ...children]) process.kill(pid, 'SIGSTOP');
    const killedAt = Date.now();
    for (const pid of [...pids, ...children]) process.kill(pid, 'SIGKILL');
    await waitFor(async () => ((await keepalivedProcesses(env.stateDir)).parents.get(files('ha').config) ?? []).some((p) => !before.includes(p)), {
      timeoutMs: RESYNC_S * 1000 + 5_000,
      intervalMs: 100,
      message: 'a new keepalived',
    });
    console.log(`keepalived killed by hand: a new one ran ${Date.now() - killedAt} ms later`);
    await waitFor(async () => (await notConverged(['ha'], agent!)) === '', {
      timeoutMs: 10_000,
      intervalMs: 200,
      message: 'one keepalived, one notify script',
    });
    await waitFor(async () => (await httpGet(client, `http://${env.vip(1)}/`, { timeoutMs: 1_000 })).status === 200, {
      timeoutMs: 15_000,
      intervalMs: 200,
      message: 'the VIP answers again',
    });
  }, 60_000);

  it('a keepalived.conf edited by hand is rewritten within a resync, and keepalived reloaded, not restarted', async () => {
    const good = await readFile(files('ha').config, 'utf8');
    const pid = (await keepalivedProcesses(env.stateDir)).parents.get(files('ha').config)?.[0];
    await writeFile(files('ha').config, good.replace('nopreempt', '# nopreempt removed by hand'));
    await waitFor(async () => (await readFile(files('ha').config, 'utf8')) === good, {
      timeoutMs: RESYNC_S * 1000 + 5_000,
      intervalMs: 200,
      message: 'the config rewritten',
    });
    await sleep(500);
    expect((await keepalivedProcesses(env.stateDir)).parents.get(files('ha').config)).toEqual([pid]);
    expect(agent!.logs.some((l) => l.includes('keepalived reload in'))).toBe(true);
  }, 30_000);

  it('what a handover killed midway leaves (the SYN drop, the release file at 1, its marker) is undone within a resync once the marker is stale', async () => {
    // As a process SIGKILLed between the steps of handOverMarked / switchOver leaves it: the VIP held off and let
    // go, the marker naming a dead process. The agent plans keepalived.endHandover for a marker older than
    // HANDOVER_STALE_MS (30 s): here its mtime is set back instead of waiting.
    const netns = env.netnsOf('ha');
    const f = files('ha');
    await runCommand(['ip', 'netns', 'exec', netns, 'nft', '-f', '-'], { input: renderSynDrop([env.vip(1)]) });
    await writeFile(f.release, '1\n');
    await writeFile(f.handover, '999999\n', { mode: 0o600 });
    const old = new Date(Date.now() - HANDOVER_STALE_MS - 10_000);
    await utimes(f.handover, old, old);
    const dropGone = async () => (await runCommand(['ip', 'netns', 'exec', netns, 'nft', 'list', 'tables']).catch(() => ({ stdout: '' }))).stdout;
    expect(await dropGone()).toContain(HANDOVER_TABLE);
    const leftAt = Date.now();
    await waitFor(
      async () =>
        !(await dropGone()).includes(HANDOVER_TABLE) &&
        (await readFile(f.release, 'utf8').catch(() => '')) === '0\n' &&
        (await readFile(f.handover, 'utf8').catch(() => undefined)) === undefined,
      { timeoutMs: RESYNC_S * 1000 + 10_000, intervalMs: 200, message: 'the SYN drop removed, the release file at 0, the marker gone' },
    );
    console.log(`an unfinished handover undone ${Date.now() - leftAt} ms after it was left`);
    expect(agent!.logs.some((l) => l.includes('end the unfinished handover in'))).toBe(true);
    // keepalived is MASTER again (alone, nothing preempts it) and the VIP answers.
    await waitFor(async () => (await httpGet(client, `http://${env.vip(1)}/`, { timeoutMs: 1_000 })).status === 200, {
      timeoutMs: 15_000,
      intervalMs: 200,
      message: 'the VIP answers again',
    });
    await waitFor(async () => (await notConverged(['ha'], agent!)) === '', { timeoutMs: 10_000, intervalMs: 200, message: 'converged' });
  }, 60_000);

  // Creating a pair is 8 actions (netns, port, move, link, HAProxy config and start, keepalived config and
  // start) and deleting one 5: crash points 1–16 and 1–10, before and after each.
  const CREATE_POINTS = 16;
  const DELETE_POINTS = 10;

  it(`converges with no orphan or duplicate keepalived after a SIGKILL at each of the ${CREATE_POINTS + DELETE_POINTS} crash points of creating and deleting a pair`, async () => {
    await agent?.stop();
    agent = undefined;
    env.agent = undefined;
    const rows: string[] = [];
    for (const [transition, points, want] of [
      ['create hb', CREATE_POINTS, ['ha', 'hb']],
      ['delete hb', DELETE_POINTS, ['ha']],
    ] as const) {
      for (let n = 1; n <= points; n++) {
        // From the state before the transition.
        if (transition === 'create hb') await env.removeWatched('hb.yaml');
        else await env.apply('hb.yaml', pairDocs('hb', 4));
        const settle = startAgent();
        try {
          await waitFor(async () => (await notConverged(transition === 'create hb' ? ['ha'] : ['ha', 'hb'], settle)) === '', {
            timeoutMs: 30_000,
            intervalMs: 200,
            message: `${transition} N=${n}: the state before`,
          });
        } catch (error) {
          // Not left running after the test (afterAll knows only the file's main agent): it would rebuild the
          // load balancers under the state dir that afterAll cleans up.
          await settle.kill();
          throw error;
        }
        expect(await settle.stop()).toBe(0);
        if (transition === 'create hb') await env.apply('hb.yaml', pairDocs('hb', 4));
        else await env.removeWatched('hb.yaml');

        const crashing = startAgent({ env: { NSLB_CRASH_AT: String(n) }, concurrency: 1 });
        const died = await Promise.race([crashing.exited.then(() => true), sleep(30_000).then(() => false)]);
        if (!died) await crashing.kill();
        expect(crashing.child.signalCode, `${transition} N=${n}: the agent did not crash`).toBe('SIGKILL');
        await Promise.race([crashing.closed, sleep(2_000)]);
        const applying = crashing.logs.filter((l) => l.includes('"applying"') && l.includes('/hb"')).map((l) => JSON.parse(l) as { actions: string[] });
        const actions = applying.flatMap((e) => e.actions);
        const what = actions[Math.ceil(n / 2) - 1]?.replace(/nslb-[0-9a-f]{12}/g, 'NS').slice(0, 50) ?? '?';

        const restarted = Date.now();
        const recovering = startAgent();
        let last = '';
        try {
          await waitFor(
            async () => {
              last = await notConverged(want, recovering);
              return last === '';
            },
            { timeoutMs: 30_000, intervalMs: 200, message: 'convergence' },
          );
        } catch (error) {
          await recovering.kill();
          throw new Error(`${transition} N=${n} (${n % 2 === 1 ? 'before' : 'after'} ${what}): ${last}`, { cause: error });
        }
        rows.push(`${transition} N=${String(n).padEnd(3)} ${n % 2 === 1 ? 'before' : 'after '} ${what.padEnd(52)} ${Date.now() - restarted} ms`);
        expect(await recovering.stop()).toBe(0);
      }
    }
    console.log(`keepalived crash points (restart → converged):\n${rows.join('\n')}`);
    expect(rows).toHaveLength(CREATE_POINTS + DELETE_POINTS);
  }, 900_000);
});
