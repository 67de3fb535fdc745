// Issue 20: load balancers created or removed together share their node work (one OVS transaction for their port
// additions or deletions, one `ip -batch` for their netns additions or deletions, HAProxy starts 8 per `ip -batch`),
// and `nslb cleanup` removes many at once the same way. The crash safety of issue 6 must hold on those paths:
// the agent (at its default concurrency, so that the work is merged) or `nslb cleanup` SIGKILLs itself at an
// injected crash point (NSLB_CRASH_AT=N), and what runs next converges with no orphan and no duplicate, while a
// load balancer nobody touches serves throughout. Drift (pieces removed by hand) in the middle of a batched
// deletion converges too.
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { Agent, CLI, cli } from './agent.js';
import { startClientLoop, type ClientLoop } from './client-loop.js';
import { httpGet, runCommand, waitFor, type Host } from './harness.js';
import { haproxyProcesses, inventoryProblems, killHaproxiesUnder } from './node-inventory.js';
import { listener, loadBalancer, member, ParityEnv, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(19);
const RESYNC_S = 3;
/** The load balancers created and removed together (VIP index 2…7); `s` (VIP 1) is never touched. */
const BATCH = ['x1', 'x2', 'x3', 'x4', 'x5', 'x6'];
const VIP_INDEX: Record<string, number> = Object.fromEntries([['s', 1], ...BATCH.map((n, i) => [n, i + 2])]);
const ALL = Object.keys(VIP_INDEX);
/** Crash points: 2 per action; a creation is 6 actions, a deletion 4. */
const CREATE_POINTS = 2 * 6 * BATCH.length;
const DELETE_POINTS = 2 * 4 * BATCH.length;
const CYCLES = 5;

describe('batched creation, deletion and cleanup survive a crash anywhere (issue 20)', () => {
  let m1: Host, client: Host;
  let steady: ClientLoop | undefined;
  let agent: Agent | undefined;

  const lbDocs = (name: string): ApiDoc[] => [
    loadBalancer(name, { vip: { address: env.vip(VIP_INDEX[name]!), prefixLength: 24 } }),
    listener(`${name}-l`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` }),
    pool(`${name}-p`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    member(`${name}-m1`, { pool: `${name}-p`, address: m1.address, port: 8080 }),
  ];

  async function writeBatch(present: boolean): Promise<void> {
    for (const name of BATCH) {
      if (present) await env.apply(`${name}.yaml`, lbDocs(name));
      else await env.removeWatched(`${name}.yaml`);
    }
  }

  const startAgent = (extra: { env?: Record<string, string> } = {}): Agent =>
    new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: RESYNC_S, ...extra });

  async function stopAgent(): Promise<void> {
    const a = agent;
    agent = undefined;
    env.agent = undefined;
    if (a !== undefined) expect(await a.stop()).toBe(0);
  }

  /** '' once the node holds exactly `names`, all ACTIVE and serving. */
  async function notConverged(names: readonly string[], a: Agent | undefined): Promise<string> {
    if (a !== undefined && !a.logs.some((l) => l.includes('initial sync done'))) return 'agent: initial sync not done';
    const problems = await inventoryProblems(
      env.stateDir,
      ALL.map((n) => env.netnsOf(n)),
      names.map((n) => nodeNames(env.namespace, n)),
    );
    if (problems.length > 0) return problems.join('; ');
    if (a === undefined) return '';
    const objects = (await env.status())?.objects ?? [];
    const lbs = objects.filter((o) => o.kind === 'LoadBalancer').map((o) => o.name);
    if (lbs.length !== names.length || names.some((n) => !lbs.includes(n))) return `status.json load balancers: ${lbs.join(',')}`;
    for (const o of objects) if (o.status.provisioningStatus !== 'ACTIVE') return `${o.kind}/${o.name} ${o.status.provisioningStatus}`;
    for (const name of names) {
      const r = await httpGet(client, `http://${env.vip(VIP_INDEX[name]!)}/`, { timeoutMs: 1_000 });
      if (r.status !== 200) return `${name}: VIP answered ${r.status} ${r.error ?? ''}`;
    }
    return '';
  }

  async function waitConverged(names: readonly string[], a: Agent | undefined, what: string): Promise<void> {
    let last = '';
    try {
      await waitFor(
        async () => {
          last = await notConverged(names, a);
          return last === '';
        },
        { timeoutMs: 30_000, intervalMs: 200, message: what },
      );
    } catch (error) {
      const warnings = (a?.logs ?? []).filter((l) => /"level":(40|50|60)/.test(l)).slice(-3);
      throw new Error(`${what}: not converged: ${last}\nagent warnings:\n${warnings.join('\n')}`, { cause: error });
    }
  }

  /** `nslb cleanup --scope state-dir` with more environment; its exit code, or the signal that ended it. */
  function cleanupWith(extraEnv: Record<string, string>): Promise<{ code: number | null; signal: string | null; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, 'cleanup', '--scope', 'state-dir', '--state-dir', env.stateDir],
        { env: { ...process.env, ...extraEnv }, timeout: 60_000 },
        (err, _stdout, stderr) => {
          const e = err as (Error & { code?: number; signal?: string }) | null;
          resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stderr });
        },
      );
    });
  }

  beforeAll(async () => {
    await env.start({ resync: RESYNC_S });
    agent = env.agent;
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'm1' });
    await env.apply('s.yaml', lbDocs('s'));
    await env.waitForResponse(client, `http://${env.vip(1)}/`, ['LoadBalancer/s']);
    steady = startClientLoop(client, `http://${env.vip(1)}/`, { intervalMs: 100, timeoutMs: 2_000 });
    await steady.waitForSuccesses(5);
    await stopAgent();
  });

  // A test that failed midway leaves its agent running: the next one's agent would refuse the state dir.
  afterEach(async () => {
    const a = agent;
    agent = undefined;
    env.agent = undefined;
    if (a !== undefined && a.child.exitCode === null && a.child.signalCode === null) await a.kill();
  });

  afterAll(async () => {
    await steady?.stop().catch(() => {});
    if (agent !== undefined && agent !== env.agent) await agent.kill().catch(() => {});
    await env.cleanup();
    await killHaproxiesUnder(env.stateDir).catch(() => {});
    await rm(env.root, { recursive: true, force: true }).catch(() => {});
  });

  it('removes load balancers deleted together with fewer OVS and ip processes than deletions, drift included', async () => {
    agent = startAgent({ env: { NSLB_TRACE_SPAWN: '1' } });
    env.agent = agent;
    await writeBatch(true);
    await waitConverged(ALL, agent, 'create');
    // Drift among the ones about to go: x1's netns deleted by hand (its HAProxy and port stay), x2's port deleted,
    // x3's HAProxy killed. Each plan then differs, and they still go together.
    await runCommand(['ip', 'netns', 'delete', env.netnsOf('x1')]);
    await runCommand(['ovs-vsctl', '--timeout=5', 'del-port', nodeNames(env.namespace, 'x2').iface]);
    for (const p of await haproxyProcesses(env.lbDir('x3'))) process.kill(p.pid, 'SIGKILL');
    const from = agent.logs.length;
    await writeBatch(false);
    await waitConverged(['s'], agent, 'delete');
    // Five ports and five netns were left to delete (x2's port and x1's netns went by hand). The first of each
    // goes at once; those that reach the step while it runs share the next process.
    const spawns = agent.logs.slice(from).filter((l) => l.startsWith('spawn: '));
    const portDeletions = spawns.filter((l) => l.includes('del-port'));
    const netnsDeletions = spawns.filter((l) => / ip netns delete | ip -batch -$/.test(l));
    expect(portDeletions.length, spawns.join('\n')).toBeLessThan(5);
    expect(netnsDeletions.length, spawns.join('\n')).toBeLessThan(5);
    expect(steady!.failures()).toEqual([]);
    await stopAgent();
  }, 120_000);

  it(`converges after a SIGKILL at ${CYCLES * 2} crash points of batched creations and deletions`, async () => {
    const rows: string[] = [];
    let present = false;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (const create of [true, false]) {
        const points = create ? CREATE_POINTS : DELETE_POINTS;
        const n = 1 + Math.round((cycle * (points - 1)) / (CYCLES - 1));
        const what = `${create ? 'create' : 'delete'} ${BATCH.length} N=${n}`;
        await writeBatch(create);
        const crashing = startAgent({ env: { NSLB_CRASH_AT: String(n) } });
        const died = await Promise.race([crashing.exited.then(() => true), new Promise((r) => setTimeout(r, 30_000, false))]);
        if (!died) await crashing.kill();
        expect(crashing.child.signalCode, `${what}: the agent did not crash (${crashing.logs.slice(-3).join(' | ')})`).toBe('SIGKILL');
        present = create;
        const restarted = Date.now();
        agent = startAgent();
        env.agent = agent;
        await waitConverged(present ? ALL : ['s'], agent, what);
        rows.push(`${what}: converged ${Date.now() - restarted} ms after the restart`);
        expect(steady!.failures(), `steady load balancer failed during ${what}`).toEqual([]);
        await stopAgent();
      }
    }
    console.log(rows.join('\n'));
    expect(steady!.ok()).toBeGreaterThan(50);
  }, 360_000);

  it('nslb cleanup removes everything after a SIGKILL anywhere in its merged work', async () => {
    // From here on nothing serves: cleanup removes every load balancer of the state dir, `s` included.
    await steady?.stop();
    steady = undefined;
    const points = 2 * 4 * ALL.length;
    for (const n of [1, 8, 19, 30, 41, points]) {
      agent = startAgent();
      env.agent = agent;
      await writeBatch(true);
      await waitConverged(ALL, agent, `cleanup N=${n}: create`);
      await stopAgent();
      const crashed = await cleanupWith({ NSLB_CRASH_AT: String(n) });
      expect(crashed.signal, `cleanup N=${n} did not crash: exit ${crashed.code} ${crashed.stderr}`).toBe('SIGKILL');
      const again = await cli(['cleanup', '--scope', 'state-dir', '--state-dir', env.stateDir]);
      expect(again.code, again.stderr).toBe(0);
      expect(await notConverged([], undefined), `cleanup N=${n}`).toBe('');
      // The next round starts from the load balancer `s` again.
      await env.apply('s.yaml', lbDocs('s'));
    }
  }, 240_000);
});
