// Issue 5, acceptance 7: member changes go through HAProxy's runtime API (traffic changes, the worker PID
// does not), a change that needs a reload keeps serving and carries health state across (server-state file),
// a no-op resync spawns a constant handful of processes, and a HAProxy that dies is noticed at once.
// Speed itself is measured by bench/, never asserted here.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRuntime } from '../../src/drivers/haproxy/runtime-api.js';
import { startClientLoop } from './client-loop.js';
import { httpGetMany, waitFor, type Host } from './harness.js';
import { ParityEnv, healthMonitor, listener, loadBalancer, member, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(16);

interface Json {
  msg?: string;
  [k: string]: unknown;
}

function logLines(): Json[] {
  return (env.agent?.logs ?? []).flatMap((l) => {
    try {
      return [JSON.parse(l) as Json];
    } catch {
      return [];
    }
  });
}

async function workerPid(lb: string): Promise<number | undefined> {
  try {
    const m = /^Pid: (\d+)$/m.exec(await queryRuntime(join(env.lbDir(lb), 'haproxy.sock'), 'show info', 1_000));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

async function masterPid(lb: string): Promise<number> {
  return Number((await readFile(join(env.lbDir(lb), 'haproxy.pid'), 'utf8')).trim());
}

describe('hitless: runtime API for members, reloads that keep serving, batched resyncs', () => {
  let m1: Host, m2: Host, m3: Host, m4: Host, client: Host;
  const vip = (): string => env.vip(1);

  beforeAll(async () => {
    await env.start({ resync: 2 });
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    m3 = await env.host('m3', 13);
    m4 = await env.host('m4', 14); // no server: its member is DOWN
    client = await env.host('c', 100);
    for (const [h, name] of [
      [m1, 'member m1'],
      [m2, 'member m2'],
      [m3, 'member m3'],
    ] as const) {
      await env.server(h, { port: 8080, name });
    }
    await env.server(m3, { port: 8081, name: 'member m3 on 8081' });
  });

  afterAll(() => env.cleanup());

  type Member = { name: string; host: Host; port?: number; weight?: number; adminStateUp?: boolean };
  function lb(members: Member[], extra: { timeoutClient?: number } = {}): ApiDoc[] {
    return [
      loadBalancer('web', { vip: { address: vip() } }),
      listener('web-l', {
        loadBalancer: 'web',
        protocol: 'HTTP',
        port: 80,
        defaultPool: 'web-p',
        ...(extra.timeoutClient === undefined ? {} : { timeouts: { clientData: extra.timeoutClient } }),
      }),
      pool('web-p', { loadBalancer: 'web', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      healthMonitor('web-hm', { pool: 'web-p', type: 'HTTP', delay: 5, timeout: 2, maxRetries: 1, maxRetriesDown: 1 }),
      ...members.map((m) =>
        member(m.name, {
          pool: 'web-p',
          address: m.host.address,
          port: m.port ?? 8080,
          ...(m.weight === undefined ? {} : { weight: m.weight }),
          ...(m.adminStateUp === undefined ? {} : { adminStateUp: m.adminStateUp }),
        }),
      ),
    ];
  }

  async function bodies(n = 12): Promise<Set<string>> {
    return new Set(await httpGetMany(client, `http://${vip()}/`, n));
  }

  async function waitForBodies(expected: string[], what: string): Promise<void> {
    let last = new Set<string>();
    await waitFor(
      async () => {
        last = await bodies();
        return last.size === expected.length && expected.every((b) => last.has(b));
      },
      { timeoutMs: 10_000, intervalMs: 100, message: `${what}: expected ${expected.join(', ')}` },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last saw ${[...last].join(', ')}`);
    });
  }

  it('member add, weight, address/port, disable, enable and removal change traffic with the same HAProxy worker', async () => {
    await env.apply(
      'web.yaml',
      lb([
        { name: 'm1', host: m1 },
        { name: 'm2', host: m2 },
      ]),
    );
    await env.waitForResponse(client, `http://${vip()}/`, ['LoadBalancer/web']);
    await env.waitForActive(['LoadBalancer/web', 'Member/m1', 'Member/m2']);
    const worker = await workerPid('web');
    const master = await masterPid('web');
    expect(worker).toBeDefined();
    const loop = startClientLoop(client, `http://${vip()}/`, { intervalMs: 20 });
    await loop.waitForSuccesses(5);
    const logsBefore = logLines().length;

    const steps: [string, Member[], string[]][] = [
      [
        'add m3',
        [
          { name: 'm1', host: m1 },
          { name: 'm2', host: m2 },
          { name: 'm3', host: m3 },
        ],
        ['member m1', 'member m2', 'member m3'],
      ],
      [
        'weight 0 on m1',
        [
          { name: 'm1', host: m1, weight: 0 },
          { name: 'm2', host: m2 },
          { name: 'm3', host: m3 },
        ],
        ['member m2', 'member m3'],
      ],
      [
        'm3 to port 8081',
        [
          { name: 'm1', host: m1, weight: 0 },
          { name: 'm2', host: m2 },
          { name: 'm3', host: m3, port: 8081 },
        ],
        ['member m2', 'member m3 on 8081'],
      ],
      [
        'disable m2',
        [
          { name: 'm1', host: m1, weight: 0 },
          { name: 'm2', host: m2, adminStateUp: false },
          { name: 'm3', host: m3, port: 8081 },
        ],
        ['member m3 on 8081'],
      ],
      [
        'enable m2, weight 1 on m1',
        [
          { name: 'm1', host: m1 },
          { name: 'm2', host: m2 },
          { name: 'm3', host: m3, port: 8081 },
        ],
        ['member m1', 'member m2', 'member m3 on 8081'],
      ],
      [
        'remove m3',
        [
          { name: 'm1', host: m1 },
          { name: 'm2', host: m2 },
        ],
        ['member m1', 'member m2'],
      ],
    ];
    for (const [what, members, expected] of steps) {
      await env.apply('web.yaml', lb(members));
      await waitForBodies(expected, what);
      expect(await workerPid('web'), `${what}: the worker changed (a reload)`).toBe(worker);
      expect(await masterPid('web'), what).toBe(master);
    }
    await loop.waitForSuccesses(5);
    await loop.stop();
    expect(loop.failures()).toEqual([]);

    const applied = logLines()
      .slice(logsBefore)
      .filter((l) => l.msg === 'applying')
      .flatMap((l) => l.actions as string[]);
    expect(applied.some((a) => a.startsWith('haproxy runtime API'))).toBe(true);
    expect(applied.filter((a) => a.startsWith('haproxy reload') || a.startsWith('haproxy start'))).toEqual([]);
    // The file on disk follows, so that a restart gives the same servers.
    await waitFor(
      async () => {
        const cfg = await readFile(join(env.lbDir('web'), 'haproxy.cfg'), 'utf8');
        return !cfg.includes(`${m3.address}:`) && cfg.includes(`${m2.address}:8080`);
      },
      { timeoutMs: 5_000, message: 'config file never followed the runtime changes' },
    );
  });

  it('a change that needs a reload keeps serving, and a DOWN member stays DOWN across it (server state carried)', async () => {
    const members = [
      { name: 'm1', host: m1 },
      { name: 'm2', host: m2, adminStateUp: false },
      { name: 'm4', host: m4 },
    ];
    await env.apply('web.yaml', lb(members));
    await env.waitForOperating({ 'Member/m4': 'ERROR', 'Member/m1': 'ONLINE' });
    const worker = await workerPid('web');
    const loop = startClientLoop(client, `http://${vip()}/`, { intervalMs: 20 });
    await loop.waitForSuccesses(5);

    await env.apply('web.yaml', lb(members, { timeoutClient: 40_000 }));
    const next = await waitFor(
      async () => {
        const pid = await workerPid('web');
        return pid !== undefined && pid !== worker ? pid : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 10, message: 'no reload happened' },
    );
    // Right after the reload, before the new worker's first check (delay 5 s) could have run.
    const state = await queryRuntime(join(env.lbDir('web'), 'haproxy.sock'), 'show servers state pool.web-p');
    const m4Line = state.split('\n').find((l) => l.split(' ')[3] === 'm4');
    expect(m4Line, state).toBeDefined();
    // srv_op_state 0 = STOPPED (DOWN): without the state file it would start UP (2) and take traffic.
    expect(m4Line!.split(' ')[5], state).toBe('0');
    expect(next).not.toBe(worker);

    await loop.waitForSuccesses(10);

    // m2 was loaded `disabled` (config maintenance, which `set server … state ready` cannot lift): enabling it
    // still needs no reload.
    await env.apply(
      'web.yaml',
      lb(
        [
          { name: 'm1', host: m1 },
          { name: 'm2', host: m2 },
          { name: 'm4', host: m4 },
        ],
        { timeoutClient: 40_000 },
      ),
    );
    await waitForBodies(['member m1', 'member m2'], 'enable m2 after a reload');
    expect(await workerPid('web')).toBe(next);
    await loop.stop();
    expect(loop.failures()).toEqual([]);
  });

  it('a no-op resync spawns at most 5 processes and queues nothing', async () => {
    const before = logLines().length;
    const quiet = (l: Json): boolean => l.msg === 'resync' && l.changed === 0 && (l.loadBalancers as number) >= 1;
    // Two quiet resyncs in a row: the first may still read netns our own changes touched.
    const second = await waitFor(async () => logLines().slice(before).filter(quiet)[1], {
      timeoutMs: 15_000,
      intervalMs: 200,
      message: 'no two quiet resyncs logged',
    });
    expect(second.spawned as number, JSON.stringify(second)).toBeLessThanOrEqual(5);
    expect(second, JSON.stringify(second)).toMatchObject({ active: 1, pending: 0, error: 0 });
  });

  it('a HAProxy that dies is noticed at once and restarted', async () => {
    const master = await masterPid('web');
    const before = logLines().length;
    process.kill(master, 'SIGKILL');
    await waitFor(
      async () =>
        logLines()
          .slice(before)
          .some((l) => l.msg === 'haproxy exited; reconciling now'),
      {
        timeoutMs: 5_000,
        message: 'the exit was not noticed',
      },
    );
    await env.waitForResponse(client, `http://${vip()}/`, ['LoadBalancer/web']);
    expect(await masterPid('web')).not.toBe(master);
  });
});
