// Issue 21 acceptance 1, through the agent (file-watch mode): a UDP listener with two UDP echo members, forwarded
// by the kernel (nftables in the load balancer's namespace) and health-checked by HAProxy (UDP-CONNECT).
// ROUND_ROBIN alternates, SOURCE_IP and SOURCE_IP_PORT keep a client on its member, a member whose server stops
// is taken out by its monitor and comes back, weight 0 drains, the table emptied or deleted by hand is repaired
// within a resync, and with the agent stopped UDP keeps flowing. Deleting the load balancer removes it all.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/udp-agent.test.ts
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from './agent.js';
import { listNetns, runCommand, waitFor, type Host } from './harness.js';
import { FAST_MONITOR, healthMonitor, listener, loadBalancer, member, ParityEnv, pool, sleep, type ApiDoc, type Spec } from './parity-env.js';
import { startUdpEcho, startUdpLoop, udpAsk, type UdpAnswer, type UdpServer } from './udp-tools.js';

const env = ParityEnv.create(23);
const PORT = 5353;
const VIP_PORT = 53;
let m1: Host;
let m2: Host;
let client: Host;
const servers = new Map<string, UdpServer>();

const names = (answers: UdpAnswer[]) => answers.map((a) => a.name ?? `error:${a.error}`);

function docs(poolSpec: Spec = {}, members: Record<string, Spec> = {}): ApiDoc[] {
  return [
    loadBalancer('udp', { vip: { address: env.vip(1), prefixLength: 24 } }),
    listener('dns', { loadBalancer: 'udp', protocol: 'UDP', port: VIP_PORT, defaultPool: 'dns', timeouts: { clientData: 20000 } }),
    pool('dns', { loadBalancer: 'udp', protocol: 'UDP', lbAlgorithm: 'ROUND_ROBIN', ...poolSpec }),
    member('m1', { pool: 'dns', address: m1.address, port: PORT, ...members.m1 }),
    member('m2', { pool: 'dns', address: m2.address, port: PORT, ...members.m2 }),
    healthMonitor('dns-check', { pool: 'dns', type: 'UDP-CONNECT', ...FAST_MONITOR }),
  ];
}

async function echo(host: Host, name: string): Promise<void> {
  servers.set(name, await startUdpEcho(host, PORT, name));
}

async function stopEcho(name: string): Promise<void> {
  await servers.get(name)?.stop();
  servers.delete(name);
}

/** Forgets every flow in the load balancer's namespace, so that the next requests are balanced afresh. */
async function flushFlows(): Promise<void> {
  await runCommand(['ip', 'netns', 'exec', env.netnsOf('udp'), 'conntrack', '-F']).catch(() => undefined);
}

/** Requests from `ports` (one each), each answered; the member that answered each. */
async function fromPorts(ports: number[]): Promise<string[]> {
  const answers = await udpAsk(client, env.vip(1), VIP_PORT, ports.length, { sourcePorts: ports });
  return names(answers);
}

const ports = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

async function waitServing(expect2: string[] = ['m1', 'm2']): Promise<void> {
  await waitFor(
    async () => {
      const got = new Set(names(await udpAsk(client, env.vip(1), VIP_PORT, 6, { timeoutMs: 500 })));
      return expect2.every((n) => got.has(n)) && [...got].every((n) => expect2.includes(n));
    },
    { timeoutMs: 25_000, intervalMs: 300, message: `UDP answered by ${expect2.join(' and ')}` },
  );
}

describe('UDP listeners through the agent (issue 21 acceptance 1)', () => {
  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    client = await env.host('c', 100);
    await echo(m1, 'm1');
    await echo(m2, 'm2');
    await env.apply('udp.yaml', docs());
    await env.waitForActive(['LoadBalancer/udp', 'Listener/dns', 'Pool/dns', 'Member/m1', 'Member/m2']);
    await waitServing();
  }, 60_000);

  afterAll(async () => {
    for (const s of servers.values()) await s.stop().catch(() => undefined);
    await env.cleanup();
    await rm(env.root, { recursive: true, force: true }).catch(() => undefined);
  });

  it('ROUND_ROBIN alternates between the members; status says the listener and both members are ONLINE', async () => {
    await env.waitForOperating({ 'Listener/dns': 'ONLINE', 'Member/m1': 'ONLINE', 'Member/m2': 'ONLINE', 'LoadBalancer/udp': 'ONLINE' });
    const got = names(await udpAsk(client, env.vip(1), VIP_PORT, 20));
    expect(
      got.every((n) => n === 'm1' || n === 'm2'),
      got.join(','),
    ).toBe(true);
    // numgen inc over a table filled by smooth weighted round robin: one, then the other.
    let alternations = 0;
    for (let i = 1; i < got.length; i++) if (got[i] !== got[i - 1]) alternations++;
    expect(alternations, got.join(',')).toBeGreaterThanOrEqual(17);
    // The members see the load balancer, not the client (one-arm: masquerade).
    const seen = (await udpAsk(client, env.vip(1), VIP_PORT, 2)).map((a) => a.seenFrom);
    expect(
      seen.every((s) => s === env.vip(1)),
      seen.join(','),
    ).toBe(true);
  });

  it('SOURCE_IP keeps a client on one member, whatever its source port', async () => {
    await env.apply('udp.yaml', docs({ lbAlgorithm: 'SOURCE_IP' }));
    await waitFor(
      async () => {
        await flushFlows();
        return new Set(await fromPorts(ports(42000, 12))).size === 1;
      },
      { timeoutMs: 15_000, intervalMs: 500, message: 'SOURCE_IP applied' },
    );
    for (let round = 0; round < 3; round++) {
      await flushFlows();
      const got = await fromPorts(ports(43000 + 100 * round, 12));
      expect(new Set(got).size, got.join(',')).toBe(1);
    }
  });

  it('SOURCE_IP_PORT keeps each source port on its member, and spreads the ports over both', async () => {
    await env.apply('udp.yaml', docs({ lbAlgorithm: 'SOURCE_IP_PORT' }));
    const sports = ports(44000, 24);
    let first: string[] = [];
    await waitFor(
      async () => {
        await flushFlows();
        first = await fromPorts(sports);
        return new Set(first).size === 2;
      },
      { timeoutMs: 15_000, intervalMs: 500, message: 'SOURCE_IP_PORT applied' },
    );
    // Flows forgotten, the same ports asked in another order: each hashes to the same member again (round
    // robin would hand out members by position, not by port).
    const byPort = new Map(sports.map((p, i) => [p, first[i]]));
    for (const order of [[...sports].reverse(), sports.filter((_, i) => i % 2 === 0).concat(sports.filter((_, i) => i % 2 === 1))]) {
      await flushFlows();
      const again = await fromPorts(order);
      expect(
        order.map((p, i) => again[i] === byPort.get(p)),
        again.join(','),
      ).toEqual(order.map(() => true));
    }
  });

  it('a member whose server stops is taken out by its monitor (ERROR) and comes back (ONLINE)', async () => {
    await env.apply('udp.yaml', docs());
    await sleep(500);
    await stopEcho('m2');
    await env.waitForOperating({ 'Member/m2': 'ERROR', 'Member/m1': 'ONLINE', 'Pool/dns': 'DEGRADED' });
    // The kernel's map follows HAProxy's verdict: every new flow goes to m1.
    await waitFor(async () => names(await udpAsk(client, env.vip(1), VIP_PORT, 8, { timeoutMs: 500 })).every((n) => n === 'm1'), {
      timeoutMs: 10_000,
      intervalMs: 300,
      message: 'm2 out of the map',
    });
    await echo(m2, 'm2');
    await env.waitForOperating({ 'Member/m2': 'ONLINE', 'Pool/dns': 'ONLINE' });
    await waitServing();
  });

  it('weight 0 drains: no new flows to the member, its existing flow goes on (DRAINING)', async () => {
    // One flow from a fixed port, pinned by conntrack to whichever member it hashed to.
    await flushFlows();
    const loop = startUdpLoop(client, env.vip(1), VIP_PORT, { sourcePorts: [45000], intervalMs: 100, timeoutMs: 1000 });
    await waitFor(() => loop.answers.length >= 3, { timeoutMs: 10_000, message: 'pinned flow answered' });
    const pinned = loop.answers[0]?.name ?? '';
    expect(['m1', 'm2']).toContain(pinned);
    const other = pinned === 'm1' ? 'm2' : 'm1';
    await env.apply('udp.yaml', docs({}, { [pinned]: { weight: 0 } }));
    await env.waitForOperating({ [`Member/${pinned}`]: 'DRAINING' });
    await waitFor(async () => names(await udpAsk(client, env.vip(1), VIP_PORT, 8, { timeoutMs: 500 })).every((n) => n === other), {
      timeoutMs: 10_000,
      intervalMs: 300,
      message: `new flows to ${other} only`,
    });
    const before = loop.answers.length;
    await sleep(1_000);
    const answers = await loop.stop();
    const after = answers.slice(before);
    expect(after.length).toBeGreaterThan(3);
    expect(new Set(names(after)), names(after).join(',')).toEqual(new Set([pinned]));
    await env.apply('udp.yaml', docs());
    await waitServing();
  });

  it('the nft table emptied or deleted by hand is repaired within a resync', async () => {
    const ns = env.netnsOf('udp');
    const repairsSince = (n: number) => env.agent!.logs.slice(n).filter((l) => l.includes('"applying"') && l.includes('inet nslb'));
    for (const verb of ['flush', 'delete']) {
      // Whatever the previous step queued has run: the repair below is the resync's.
      await sleep(1_000);
      const logged = env.agent!.logs.length;
      await flushFlows();
      await runCommand(['ip', 'netns', 'exec', ns, 'nft', verb, 'table', 'inet', 'nslb']);
      // Nothing forwards now: a new flow meets no rule (or no table) and goes unanswered.
      const lost = await udpAsk(client, env.vip(1), VIP_PORT, 1, { timeoutMs: 300 });
      expect(failures(lost), `${verb}: ${JSON.stringify(lost)}; agent: ${env.agent!.logs.slice(logged).join(' | ').slice(0, 1500)}`).toBe(1);
      await waitServing();
      expect(repairsSince(logged).length, `${verb}: repaired by the agent`).toBeGreaterThanOrEqual(1);
    }
  });

  it('with the agent stopped, UDP keeps flowing (no nslb process handles a packet)', async () => {
    await env.agent!.stop();
    const got = names(await udpAsk(client, env.vip(1), VIP_PORT, 10));
    expect(new Set(got)).toEqual(new Set(['m1', 'm2']));
    // HAProxy only checks; with it gone too, the kernel still forwards.
    const pids = (await runCommand(['ip', 'netns', 'pids', env.netnsOf('udp')])).stdout.split('\n').filter(Boolean);
    for (const pid of pids) await runCommand(['kill', '-STOP', pid]);
    try {
      expect(new Set(names(await udpAsk(client, env.vip(1), VIP_PORT, 10)))).toEqual(new Set(['m1', 'm2']));
    } finally {
      for (const pid of pids) await runCommand(['kill', '-CONT', pid]).catch(() => undefined);
    }
    env.agent = new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: 3 });
    await env.waitForOperating({ 'Member/m1': 'ONLINE', 'Member/m2': 'ONLINE' });
  });

  it('deleting the load balancer removes its namespace (and table) and its state, marker included', async () => {
    const ns = env.netnsOf('udp');
    expect(existsSync(join(env.lbDir('udp'), 'nft-table'))).toBe(true);
    await env.removeWatched('udp.yaml');
    await waitFor(async () => !(await listNetns()).includes(ns) && !existsSync(env.lbDir('udp')), {
      timeoutMs: 20_000,
      message: 'namespace and state dir gone',
    });
  });
});

function failures(answers: UdpAnswer[]): number {
  return answers.filter((a) => a.name === undefined).length;
}
