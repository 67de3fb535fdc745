// Issue 6 item 1, crash anywhere: the agent SIGKILLs itself at an injected crash point (NSLB_CRASH_AT=N: one
// before and one after every action it applies) while it creates, updates and deletes a batch of load
// balancers. A normal agent is then started on the same state dir, and the node must converge to the desired
// state with zero orphans, zero duplicates and no PENDING_* status; a load balancer that is never changed
// serves throughout (a client loop against it sees no failure).
//
// The desired states cycle  S0 (steady only) → S1 (create a, b, c) → S2 (update them: a member added and the
// listener moved to another port) → S3 (delete c, add d) → S0 (delete a, b, d) → S1 … and every transition is
// applied by a crashing agent, at a different crash point each cycle. The crashing agent runs with
// --concurrency 1 so that crash point N names exactly one action: the ceil(N/2)-th it applies, before it
// (odd N) or after it (even N).
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { Agent } from './agent.js';
import { startClientLoop, type ClientLoop } from './client-loop.js';
import { httpGet, waitFor, type Host } from './harness.js';
import { inventoryProblems, killHaproxiesUnder } from './node-inventory.js';
import { listener, loadBalancer, member, ParityEnv, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(8);
const RESYNC_S = 3;
const CYCLES = 8;

type Version = 'v1' | 'v2';
/** The batch's load balancers in each state, with their version: v1 = port 80, one member; v2 = port 81, two. */
const STATES: Record<string, Version>[] = [{}, { a: 'v1', b: 'v1', c: 'v1' }, { a: 'v2', b: 'v2', c: 'v2' }, { a: 'v2', b: 'v2', d: 'v1' }];
const TRANSITIONS = ['create a,b,c', 'update a,b,c', 'delete c, add d', 'delete a,b,d'];
/** Crash points per transition: 2 per action (create 6 actions, update 2, delete 4). */
const POINTS = [3 * 12, 3 * 4, 8 + 12, 3 * 8];
const VIP_INDEX: Record<string, number> = { s: 1, a: 2, b: 3, c: 4, d: 5 };
const LB_NAMES = Object.keys(VIP_INDEX);
const portOf = (v: Version) => (v === 'v1' ? 80 : 81);

interface Row {
  run: number;
  transition: string;
  n: number;
  what: string;
  convergedMs: number;
}

describe('crash anywhere (issue 6 item 1)', () => {
  let m1: Host, m2: Host, client: Host;
  let steady: ClientLoop | undefined;
  let agent: Agent | undefined;
  const rows: Row[] = [];

  const lbDocs = (name: string, v: Version): ApiDoc[] => [
    loadBalancer(name, { vip: { address: env.vip(VIP_INDEX[name]!), prefixLength: 24 } }),
    listener(`${name}-l`, { loadBalancer: name, protocol: 'HTTP', port: portOf(v), defaultPool: `${name}-p` }),
    pool(`${name}-p`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    member(`${name}-m1`, { pool: `${name}-p`, address: m1.address, port: 8080 }),
    ...(v === 'v2' ? [member(`${name}-m2`, { pool: `${name}-p`, address: m2.address, port: 8080 })] : []),
  ];

  /** Makes the watched directory say `state`: one file per load balancer. */
  async function writeState(state: Record<string, Version>): Promise<void> {
    for (const name of ['a', 'b', 'c', 'd']) {
      const v = state[name];
      if (v === undefined) await env.removeWatched(`${name}.yaml`);
      else await env.apply(`${name}.yaml`, lbDocs(name, v));
    }
  }

  const startAgent = (extra: { env?: Record<string, string>; concurrency?: number } = {}): Agent =>
    new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: RESYNC_S, ...extra });

  async function stopAgent(): Promise<void> {
    const a = agent;
    agent = undefined;
    env.agent = undefined;
    if (a !== undefined) expect(await a.stop()).toBe(0);
  }

  /** Everything that must hold once the node has converged on `state`; '' when it all does. */
  async function notConverged(state: Record<string, Version>, a: Agent): Promise<string> {
    if (!a.logs.some((l) => l.includes('initial sync done'))) return 'agent: initial sync not done';
    const desired = { s: 'v2' as Version, ...state };
    const names = Object.keys(desired);
    const problems = await inventoryProblems(
      env.stateDir,
      LB_NAMES.map((n) => env.netnsOf(n)),
      names.map((n) => nodeNames(env.namespace, n)),
    );
    const status = await env.status();
    const objects = status?.objects ?? [];
    const lbs = new Set(objects.filter((o) => o.kind === 'LoadBalancer').map((o) => o.name));
    if (lbs.size !== names.length || names.some((n) => !lbs.has(n))) problems.push(`status.json load balancers: ${[...lbs].join(',')}`);
    for (const o of objects) if (o.status.provisioningStatus !== 'ACTIVE') problems.push(`${o.kind}/${o.name} ${o.status.provisioningStatus}`);
    if (problems.length > 0) return problems.join('; ');
    for (const [name, v] of Object.entries(desired)) {
      const r = await httpGet(client, `http://${env.vip(VIP_INDEX[name]!)}:${portOf(v)}/`, { timeoutMs: 1_000 });
      if (r.status !== 200) return `${name}: VIP answered ${r.status} ${r.error ?? ''}`;
    }
    return '';
  }

  /** What crash point n interrupted, from the crashing agent's "applying" lines (it ran with concurrency 1). */
  function crashedAt(n: number, logs: readonly string[]): string {
    const applied: { lb: string; action: string }[] = [];
    for (const line of logs) {
      if (!line.includes('"applying"')) continue;
      const entry = JSON.parse(line) as { lb: string; actions: string[] };
      for (const action of entry.actions) applied.push({ lb: entry.lb.split('/')[1] ?? entry.lb, action });
    }
    const i = Math.ceil(n / 2) - 1;
    const a = applied[i];
    if (a === undefined) return `?? only ${applied.length} actions logged`;
    const short = a.action
      .replace(/nslb-[0-9a-f]{12}/g, 'NS')
      .replace(/nslb[0-9a-f]{11}/g, 'IF')
      .replace(/\(internal, mac [^)]*\)/, '');
    return `${n % 2 === 1 ? 'before' : 'after '} ${a.lb}: ${short.slice(0, 60)}`;
  }

  beforeAll(async () => {
    await env.start();
    agent = env.agent;
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'm1' });
    await env.server(m2, { port: 8080, name: 'm2' });
    await env.apply('s.yaml', lbDocs('s', 'v2'));
    await env.waitForResponse(client, `http://${env.vip(1)}:81/`, ['LoadBalancer/s']);
    steady = startClientLoop(client, `http://${env.vip(1)}:81/`, { intervalMs: 100, timeoutMs: 2_000 });
    await steady.waitForSuccesses(5);
  });

  afterAll(async () => {
    await steady?.stop().catch(() => {});
    if (agent !== undefined && agent !== env.agent) await agent.kill().catch(() => {});
    await env.cleanup();
    await killHaproxiesUnder(env.stateDir).catch(() => {});
    await rm(env.root, { recursive: true, force: true }).catch(() => {});
    if (rows.length > 0) {
      const table = rows.map(
        (r) => `${String(r.run).padStart(3)}  ${r.transition.padEnd(16)} N=${String(r.n).padEnd(3)} ${r.what.padEnd(72)} ${r.convergedMs} ms`,
      );
      console.log(`crash points (run, transition, N, what the crash interrupted, restart → converged):\n${table.join('\n')}`);
    }
  });

  it(`converges after a SIGKILL at ${CYCLES * 4} crash points, with no orphan, no duplicate and the steady load balancer serving`, async () => {
    await stopAgent();
    let state = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (let t = 0; t < TRANSITIONS.length; t++) {
        const points = POINTS[t]!;
        // Spread over 1..points, odd and even (before and after an action) alike.
        const n = 1 + Math.round((cycle * (points - 1)) / (CYCLES - 1));
        const next = (state + 1) % STATES.length;
        await writeState(STATES[next]!);

        const crashing = startAgent({ env: { NSLB_CRASH_AT: String(n) }, concurrency: 1 });
        const died = await Promise.race([crashing.exited.then(() => true), new Promise((r) => setTimeout(r, 30_000, false))]);
        if (!died) await crashing.kill();
        expect(crashing.child.signalCode, `${TRANSITIONS[t]} N=${n}: the agent did not crash (${crashing.logs.slice(-3).join(' | ')})`).toBe('SIGKILL');
        expect(
          crashing.logs.some((l) => l.includes('initial sync done')),
          `${TRANSITIONS[t]} N=${n}: crashed after the sync`,
        ).toBe(false);
        // 'exit' can come before the last lines are read from its pipes.
        await Promise.race([crashing.closed, new Promise((r) => setTimeout(r, 2_000))]);
        const what = crashedAt(n, crashing.logs);

        const restarted = Date.now();
        agent = startAgent();
        env.agent = agent;
        let last = '';
        try {
          const converged = async (): Promise<boolean> => {
            last = await notConverged(STATES[next]!, agent!);
            return last === '';
          };
          await waitFor(converged, {
            timeoutMs: 20_000,
            intervalMs: 200,
            message: 'convergence',
          });
        } catch (error) {
          const errors = agent.logs
            .filter((l) => /"level":(40|50|60)/.test(l))
            .slice(-3)
            .join('\n');
          throw new Error(`${TRANSITIONS[t]} N=${n} (${what}): not converged: ${last}\nagent warnings:\n${errors}`, { cause: error });
        }
        rows.push({ run: rows.length + 1, transition: TRANSITIONS[t]!, n, what, convergedMs: Date.now() - restarted });
        expect(steady!.failures(), `steady load balancer failed during ${TRANSITIONS[t]} N=${n}`).toEqual([]);
        await stopAgent();
        state = next;
      }
    }
    expect(new Set(rows.map((r) => `${r.transition}/${r.n}`)).size).toBeGreaterThanOrEqual(30);
    expect(steady!.ok()).toBeGreaterThan(100);
    expect(steady!.failures()).toEqual([]);
  }, 240_000);
});
