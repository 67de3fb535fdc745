// Issue 6 item 3, dependencies missing or broken: the OVS bridge missing, `haproxy` not installed, a port
// already bound on the VIP, Open vSwitch not running. The affected load balancer goes ERROR with a message
// that says what to do, the agent keeps running (retrying with backoff), the other load balancers keep
// serving, and everything converges once the cause is fixed.
//
// One story, in order: A serves throughout (a client loop counts failures) while B, then C, hit a missing
// dependency; at the end OVS itself is stopped, which takes every VIP on the node down, and started again.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { Agent } from './agent.js';
import { startClientLoop, type ClientLoop } from './client-loop.js';
import { createBridge, deleteBridge, ensureNode, httpGet, runCommand, tcpConnects, waitFor, type Host } from './harness.js';
import { inventoryProblems, killHaproxiesUnder } from './node-inventory.js';
import { listener, loadBalancer, member, ParityEnv, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(8);
const RESYNC_S = 2;
const OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl';
/** Backoff (200 ms doubling) plus a resync: how long a fixed cause may take to be noticed. */
const CONVERGE_MS = 20_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const ovsRunning = async (): Promise<boolean> =>
  (await runCommand(['ovs-vsctl', '--timeout=3', 'show'], { allowFailure: true }).catch(() => ({ exitCode: 1 }))).exitCode === 0 &&
  (await runCommand(['ovs-appctl', '--timeout=3', '-t', 'ovs-vswitchd', 'version'], { allowFailure: true }).catch(() => ({ exitCode: 1 }))).exitCode === 0;

async function startOvs(): Promise<void> {
  await runCommand([OVS_CTL, '--no-ovs-vswitchd', 'start'], { timeoutMs: 60_000 });
  await runCommand([OVS_CTL, '--no-ovsdb-server', '--no-monitor', 'start'], { timeoutMs: 60_000 });
  await waitFor(ovsRunning, { timeoutMs: 20_000, message: 'Open vSwitch to run again' });
}

describe('dependencies missing or broken (issue 6 item 3)', () => {
  let m1: Host, client: Host;
  let loop: ClientLoop | undefined;
  let squatter: ChildProcess | undefined;
  let listen = '';
  const missingBridge = `bx-${env.run.prefix}`;
  const vipA = env.vip(1);
  const vipC = env.vip(3);

  const lb = (name: string, vip: string, extra: Record<string, unknown> = {}): ApiDoc[] => [
    loadBalancer(name, { vip: { address: vip, prefixLength: 24, ...extra } }),
    listener(`${name}-l`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` }),
    pool(`${name}-p`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    member(`${name}-m1`, { pool: `${name}-p`, address: m1.address, port: 8080 }),
  ];

  const startAgent = (extraEnv?: Record<string, string>): Agent => {
    env.agent = new Agent({
      watch: env.watchDir,
      stateDir: env.stateDir,
      bridge: env.bridge,
      resync: RESYNC_S,
      listen,
      ...(extraEnv === undefined ? {} : { env: extraEnv }),
    });
    return env.agent;
  };

  async function restartAgent(extraEnv?: Record<string, string>): Promise<Agent> {
    expect(await env.agent?.stop()).toBe(0);
    return startAgent(extraEnv);
  }

  /** Waits for `name`'s load balancer to be ERROR with a Ready message matching `hint`; returns the message. */
  async function waitForError(name: string, hint: RegExp): Promise<string> {
    let message = '';
    try {
      await waitFor(
        async () => {
          const o = (await env.status())?.objects.find((x) => x.kind === 'LoadBalancer' && x.name === name);
          message = o?.status.conditions.find((c) => c.type === 'Ready')?.message ?? '';
          return o?.status.provisioningStatus === 'ERROR' && hint.test(message);
        },
        { timeoutMs: 15_000, intervalMs: 200, message: `LoadBalancer ${name} ERROR matching ${hint}` },
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; nslb reports: ${await env.describe([`LoadBalancer/${name}`])}`, { cause: error });
    }
    return message;
  }

  const agentAlive = async (): Promise<boolean> => {
    const agent = env.agent;
    if (agent === undefined || agent.child.exitCode !== null || agent.child.signalCode !== null) return false;
    const res = await fetch(`http://${listen}/healthz`).catch(() => undefined);
    return res?.status === 200;
  };

  const haproxyPid = async (name: string): Promise<number> => Number((await readFile(join(env.lbDir(name), 'haproxy.pid'), 'utf8')).trim());

  beforeAll(async () => {
    await ensureNode();
    listen = `127.0.0.1:${await freePort()}`;
    await env.start({ resync: RESYNC_S });
    await env.agent?.stop();
    startAgent();
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'm1' });
    await env.apply('a.yaml', lb('a', vipA));
    await env.waitForResponse(client, `http://${vipA}/`, ['LoadBalancer/a']);
    loop = startClientLoop(client, `http://${vipA}/`);
    await loop.waitForSuccesses(3);
  });

  afterAll(async () => {
    squatter?.kill('SIGKILL');
    await loop?.stop().catch(() => {});
    if (!(await ovsRunning())) await startOvs().catch(() => {});
    await env.cleanup();
    await killHaproxiesUnder(env.stateDir).catch(() => {});
    await deleteBridge(missingBridge).catch(() => {});
  });

  it('(a) a vip.bridge that does not exist: ERROR saying to create it; A unaffected; creating the bridge converges', async () => {
    await env.apply('b.yaml', lb('b', env.vip(2), { bridge: missingBridge }));
    const message = await waitForError('b', new RegExp(`bridge ${missingBridge} does not exist: create it \\(ovs-vsctl add-br ${missingBridge}\\)`));
    expect(message).toMatch(/or set vip\.bridge/);
    expect(await agentAlive()).toBe(true);
    // Retried with backoff, not given up on.
    await waitFor(() => env.agent!.logs.filter((l) => l.includes('will retry with backoff') && l.includes(`/b"`)).length >= 3, {
      timeoutMs: 10_000,
      message: 'B to be retried',
    });

    await createBridge(missingBridge);
    await env.waitForActive(['LoadBalancer/b', 'Listener/b-l', 'Member/b-m1'], CONVERGE_MS);
    const ports = await runCommand(['ovs-vsctl', '--timeout=5', 'list-ports', missingBridge]);
    expect(ports.stdout.split('\n')).toContain(nodeNames(env.namespace, 'b').iface);
    expect(loop!.failures()).toEqual([]);
  });

  it('(b) haproxy not installed: a new load balancer goes ERROR saying so; A keeps its HAProxy and serves; drift of A is still repaired', async () => {
    const pidA = await haproxyPid('a');
    await env.agent!.stop();
    await env.apply('c.yaml', lb('c', vipC));
    const agent = startAgent({ NSLB_HAPROXY: '/nonexistent/haproxy' });
    await waitForError('c', /haproxy is not installed or not on PATH \(apt-get install haproxy, or set NSLB_HAPROXY\)/);
    expect(await agentAlive()).toBe(true);

    // The agent's periodic resync keeps repairing the other load balancers while C waits in backoff: an
    // extra address on A's VIP port (harmless to traffic) is removed within a resync.
    const { netns, iface } = nodeNames(env.namespace, 'a');
    const from = agent.logs.length;
    await runCommand(['ip', '-n', netns, 'addr', 'add', `${env.vip(30)}/24`, 'dev', iface]);
    await waitFor(async () => !(await runCommand(['ip', '-n', netns, '-br', 'addr', 'show', 'dev', iface])).stdout.includes(env.vip(30)), {
      timeoutMs: (RESYNC_S + 4) * 1000,
      message: "A's extra address to be removed while C is in backoff",
    }).catch(async (error: unknown) => {
      throw new Error(`${(error as Error).message}; agent log: ${agent.logs.slice(from).slice(-5).join('\n')}`, { cause: error });
    });

    expect(await haproxyPid('a')).toBe(pidA);
    expect((await httpGet(client, `http://${vipA}/`)).status).toBe(200);
    expect(loop!.failures()).toEqual([]);
  });

  /** A process inside C's netns holding VIP:port, as an operator's debugging tool or a stray daemon would. */
  async function squat(port: number): Promise<void> {
    const { netns } = nodeNames(env.namespace, 'c');
    const server = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end('squatter\\n'); }).listen(${port}, '${vipC}')`;
    squatter = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', server], { stdio: 'ignore' });
    await waitFor(() => tcpConnects({ name: netns, netns } as Host, vipC, port), { timeoutMs: 10_000, message: 'the squatter to listen' });
  }

  it('(c) a port already bound on the VIP when HAProxy starts: ERROR saying so; freeing it converges', async () => {
    // While haproxy was "missing", C's netns and VIP were made; a squatter takes C's port 80 before its HAProxy.
    await squat(80);
    await restartAgent();
    await waitForError('c', /a VIP port is already in use in the load balancer's netns: another process is bound to it/);
    expect(await agentAlive()).toBe(true);

    squatter?.kill('SIGKILL');
    squatter = undefined;
    await env.waitForActive(['LoadBalancer/c', 'Listener/c-l', 'Member/c-m1'], CONVERGE_MS);
    await env.waitForResponse(client, `http://${vipC}/`, ['LoadBalancer/c'], { body: 'm1' });
    expect(loop!.failures()).toEqual([]);
  });

  it('(c) a listener moved to a port already bound on the VIP (a reload that cannot bind): ERROR saying so; freeing it converges', async () => {
    await squat(8081);
    await env.apply(
      'c.yaml',
      lb('c', vipC).map((d) => (d.kind === 'Listener' ? { ...d, spec: { ...d.spec, port: 8081 } } : d)),
    );
    await waitForError('c', /a VIP port is already in use in the load balancer's netns: another process is bound to it/);
    expect(await agentAlive()).toBe(true);

    squatter?.kill('SIGKILL');
    squatter = undefined;
    await env.waitForActive(['LoadBalancer/c', 'Listener/c-l'], CONVERGE_MS);
    await env.waitForResponse(client, `http://${vipC}:8081/`, ['LoadBalancer/c'], { body: 'm1' });
    const names = ['a', 'b', 'c'].map((n) => nodeNames(env.namespace, n));
    expect(
      await inventoryProblems(
        env.stateDir,
        names.map((n) => n.netns),
        names,
      ),
    ).toEqual([]);
    expect(loop!.failures()).toEqual([]);
  });

  it('(d) Open vSwitch not running: ERROR saying so, the agent stays up; starting OVS again converges and traffic flows', async () => {
    // Stopping OVS takes every VIP on the node down (their ports are OVS devices): A's loop ends here.
    await loop!.stop();
    expect(loop!.failures()).toEqual([]);
    loop = undefined;
    const agent = env.agent!;
    await runCommand([OVS_CTL, 'stop'], { timeoutMs: 60_000 });
    try {
      // Any change makes the agent look at the node (and so at OVS): A gets a second listener.
      await env.apply('a.yaml', [...lb('a', vipA), listener('a-l2', { loadBalancer: 'a', protocol: 'HTTP', port: 8000, defaultPool: 'a-p' })]);
      await waitForError('a', /Open vSwitch is not running: start ovsdb-server and ovs-vswitchd/);
      await new Promise((r) => setTimeout(r, (RESYNC_S + 1) * 1000)); // a resync with OVS down
      expect(await agentAlive()).toBe(true);
      expect(agent.logs.filter((l) => l.includes('will retry with backoff')).length).toBeGreaterThanOrEqual(2);
    } finally {
      await startOvs();
    }
    await env.waitForActive(['LoadBalancer/a', 'Listener/a-l2', 'LoadBalancer/b', 'LoadBalancer/c'], CONVERGE_MS);
    for (const [vip, port] of [
      [vipA, 80],
      [vipA, 8000],
      [vipC, 8081],
    ] as const) {
      await env.waitForResponse(client, `http://${vip}:${port}/`, ['LoadBalancer/a', 'LoadBalancer/c'], { body: 'm1' });
    }
    expect(env.agent).toBe(agent); // the same agent process all along
    const names = ['a', 'b', 'c'].map((n) => nodeNames(env.namespace, n));
    expect(
      await inventoryProblems(
        env.stateDir,
        names.map((n) => n.netns),
        names,
      ),
    ).toEqual([]);
  });
});
