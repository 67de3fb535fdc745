// Issue 21 acceptance 3, through the agent (file-watch mode): members on a second segment, reached through a
// member network (an extra OVS port of the load balancer, on another bridge). The port deleted by hand comes back
// within a resync; removing the network from the spec removes its port; a route of the network deleted by hand,
// and forwarding turned off by hand in the namespace (UDP), come back within a resync; SIGKILL at every crash point while a
// load balancer with a member network and a UDP listener is created and deleted leaves no orphan port, no
// duplicate, and the node converges.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/member-network.test.ts
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberNetworkIface } from '../../src/desired/names.js';
import { Agent } from './agent.js';
import { createBridge, createHost, deleteBridge, deleteHost, httpGet, listNetns, runCommand, waitFor, type Host } from './harness.js';
import { takeInventory } from './node-inventory.js';
import { FAST_MONITOR, healthMonitor, listener, loadBalancer, member, ParityEnv, pool, sleep, type ApiDoc } from './parity-env.js';
import { startUdpEcho, udpAsk, type UdpServer } from './udp-tools.js';

const env = ParityEnv.create(24);
/** The member segment: another /24 (10.225.x), on a bridge of its own. */
const backSubnet = `10.225.${randomBytes(1).readUInt8(0)}`;
const backBridge = `${env.run.prefix}mn`;
/** Behind a route of the member network: an address of m3's own (on its lo), m3 the gateway. */
const farSubnet = `10.226.${backSubnet.split('.')[2]}`;
const farIp = `${farSubnet}.11`;
let client: Host;
let m3: Host;
let m4: Host;
let udp: UdpServer | undefined;
let farUdp: UdpServer | undefined;

const backIp = (octet: number) => `${backSubnet}.${octet}`;
const portOf = (lb: string, index = 0) => memberNetworkIface(env.namespace, lb, index);

function twoArm(name: string, vipIndex: number, withNetwork = true): ApiDoc[] {
  return [
    loadBalancer(name, {
      vip: { address: env.vip(vipIndex), prefixLength: 24 },
      ...(withNetwork ? { memberNetworks: [{ name: 'back', bridge: backBridge, address: backIp(vipIndex + 1), prefixLength: 24 }] } : {}),
    }),
    listener(`${name}-http`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-web` }),
    pool(`${name}-web`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    healthMonitor(`${name}-web-check`, { pool: `${name}-web`, type: 'TCP', ...FAST_MONITOR }),
    ...(withNetwork
      ? [
          // m3 is found by its prefix; m4 names its network.
          member(`${name}-m3`, { pool: `${name}-web`, address: m3.address, port: 8080 }),
          member(`${name}-m4`, { pool: `${name}-web`, address: m4.address, port: 8080, network: 'back' }),
        ]
      : []),
  ];
}

/** The OVS interfaces of this run's state dir, by name. */
async function ports(): Promise<string[]> {
  return (await takeInventory(env.stateDir, [])).ovsPorts.map((p) => p.iface).sort();
}

describe('member networks through the agent (issue 21 acceptance 3)', () => {
  beforeAll(async () => {
    await env.start();
    await createBridge(backBridge);
    client = await env.host('c', 100);
    m3 = await createHost({ name: env.run.name('m3'), bridge: backBridge, address: `${backIp(11)}/24` });
    m4 = await createHost({ name: env.run.name('m4'), bridge: backBridge, address: `${backIp(12)}/24` });
    await env.server(m3, { port: 8080, name: 'member m3' });
    await env.server(m4, { port: 8080, name: 'member m4' });
    udp = await startUdpEcho(m3, 5353, 'm3');
    await runCommand(['ip', '-n', m3.netns, 'addr', 'add', `${farIp}/32`, 'dev', 'lo']);
    farUdp = await startUdpEcho(m3, 5354, 'far', farIp);
  }, 60_000);

  afterAll(async () => {
    await udp?.stop().catch(() => undefined);
    await farUdp?.stop().catch(() => undefined);
    await env.cleanup();
    await deleteHost(env.run.name('m3')).catch(() => undefined);
    await deleteHost(env.run.name('m4')).catch(() => undefined);
    await deleteBridge(backBridge).catch(() => undefined);
  });

  it('members on a second segment are reached through the member network (ONLINE by their monitor)', async () => {
    await env.apply('two.yaml', twoArm('two', 1));
    await env.waitForOperating({ 'Member/two-m3': 'ONLINE', 'Member/two-m4': 'ONLINE', 'LoadBalancer/two': 'ONLINE' });
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) bodies.add((await httpGet(client, `http://${env.vip(1)}/`)).body.trim());
    expect([...bodies].sort()).toEqual(['member m3', 'member m4']);
    expect(await ports()).toContain(portOf('two'));
  });

  it('the member-network port deleted by hand is repaired within a resync', async () => {
    const logged = env.agent!.logs.length;
    await runCommand(['ovs-vsctl', '--timeout=10', 'del-port', portOf('two')]);
    await waitFor(async () => (await httpGet(client, `http://${env.vip(1)}/`, { timeoutMs: 1_000 })).status !== 200, {
      timeoutMs: 8_000,
      message: 'members unreachable without the port',
    }).catch(() => undefined);
    await waitFor(
      async () => {
        const bodies = new Set<string>();
        for (let i = 0; i < 4; i++) bodies.add((await httpGet(client, `http://${env.vip(1)}/`, { timeoutMs: 1_000 })).body.trim());
        return bodies.has('member m3') && bodies.has('member m4');
      },
      { timeoutMs: 20_000, intervalMs: 500, message: 'members reachable again' },
    );
    const repaired = env.agent!.logs.slice(logged).filter((l) => l.includes('"applying"') && l.includes(portOf('two')));
    expect(repaired.length, 'the agent re-added the port').toBeGreaterThanOrEqual(1);
  });

  it('removing the network from the spec removes its port', async () => {
    await env.apply('two.yaml', twoArm('two', 1, false));
    await waitFor(async () => !(await ports()).includes(portOf('two')), { timeoutMs: 20_000, message: 'member-network port removed' });
    const links = (await runCommand(['ip', '-n', env.netnsOf('two'), '-j', 'link', 'show'])).stdout;
    expect(links).not.toContain(portOf('two'));
    await env.removeWatched('two.yaml');
    await waitFor(async () => !(await listNetns()).includes(env.netnsOf('two')), { timeoutMs: 20_000, message: 'two removed' });
  });

  it('a route of the member network deleted by hand, and forwarding turned off by hand, are repaired within a resync', async () => {
    const name = 'rt';
    const netns = env.netnsOf(name);
    const route = `${farSubnet}.0/24`;
    await env.apply('rt.yaml', [
      loadBalancer(name, {
        vip: { address: env.vip(3), prefixLength: 24 },
        memberNetworks: [{ name: 'back', bridge: backBridge, address: backIp(4), prefixLength: 24, routes: [{ destination: route, gateway: m3.address }] }],
      }),
      listener(`${name}-dns`, { loadBalancer: name, protocol: 'UDP', port: 53, defaultPool: `${name}-dns` }),
      pool(`${name}-dns`, { loadBalancer: name, protocol: 'UDP', lbAlgorithm: 'ROUND_ROBIN' }),
      // Placed on "back" by the network's route, not its prefix.
      member(`${name}-far`, { pool: `${name}-dns`, address: farIp, port: 5354 }),
    ]);
    const answered = async () => (await udpAsk(client, env.vip(3), 53, 2, { timeoutMs: 500 })).every((a) => a.name === 'far');
    await waitFor(answered, { timeoutMs: 30_000, intervalMs: 500, message: 'the member behind the route answers' });
    const routes = async () => (await runCommand(['ip', '-n', netns, 'route', 'show', route])).stdout;
    expect(await routes()).toContain(`via ${m3.address}`);
    // A UDP listener on the node: the kernel-limits check looks at nf_conntrack_max too (the kernel's own value, if it suffices).
    const hostMax = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim());
    const conntrack = await waitFor(async () => (await env.status())?.node?.kernelLimits?.limits.find((l) => l.name === 'net.netfilter.nf_conntrack_max'), {
      timeoutMs: 15_000,
      message: 'nf_conntrack_max in the status file',
    });
    expect(conntrack).toMatchObject({ current: hostMax, required: 65_536, verdict: hostMax >= 65_536 ? 'ok' : expect.any(String) });
    const ipForward = async () => (await runCommand(['ip', 'netns', 'exec', netns, 'sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim();

    // Each hand edit cuts the member off (checked right away, before a resync can have repaired it), and the
    // agent's repair is in its log: the edit was seen, not merely outlived.
    for (const edit of [
      {
        what: 'route deleted',
        argv: ['ip', '-n', netns, 'route', 'del', route],
        repaired: async () => (await routes()).includes(`via ${m3.address}`),
        log: `${route} via ${m3.address}`,
      },
      {
        what: 'ip_forward off',
        argv: ['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0'],
        repaired: async () => (await ipForward()) === '1',
        log: 'forwarding was off',
      },
    ]) {
      // Two resyncs with nothing to do first: the agent's read of the netns is then cached, and only an event from
      // `ip monitor` (not a dirty mark left by an earlier repair) can make it look again.
      await sleep(7_000);
      const logged = env.agent!.logs.length;
      await runCommand(edit.argv);
      const cut = (await udpAsk(client, env.vip(3), 53, 1, { timeoutMs: 300 }))[0];
      expect(cut?.name === undefined || !(await edit.repaired()), `${edit.what}: the member still answered (${JSON.stringify(cut)})`).toBe(true);
      await waitFor(edit.repaired, { timeoutMs: 20_000, intervalMs: 300, message: `${edit.what}: repaired` });
      await waitFor(answered, { timeoutMs: 10_000, intervalMs: 300, message: `${edit.what}: the member answers again` });
      const repairs = env.agent!.logs.slice(logged).filter((l) => l.includes('"applying"') && l.includes(edit.log));
      expect(repairs.length, `${edit.what}: the agent's repair is in its log`).toBeGreaterThanOrEqual(1);
    }
    await env.removeWatched('rt.yaml');
    await waitFor(async () => !(await listNetns()).includes(netns), { timeoutMs: 20_000, message: 'rt removed' });
  }, 120_000);

  it('SIGKILL at every crash point of creating and deleting a two-arm UDP load balancer leaves no orphan and no duplicate', async () => {
    await env.agent!.stop();
    env.agent = undefined;
    const name = 'cr';
    const docs: ApiDoc[] = [
      loadBalancer(name, {
        vip: { address: env.vip(5), prefixLength: 24 },
        memberNetworks: [{ name: 'back', bridge: backBridge, address: backIp(6), prefixLength: 24 }],
      }),
      listener(`${name}-dns`, { loadBalancer: name, protocol: 'UDP', port: 53, defaultPool: `${name}-dns` }),
      pool(`${name}-dns`, { loadBalancer: name, protocol: 'UDP', lbAlgorithm: 'ROUND_ROBIN' }),
      member(`${name}-m3`, { pool: `${name}-dns`, address: m3.address, port: 5353 }),
    ];
    const rows: string[] = [];
    const check = async (present: boolean): Promise<string> => {
      const inv = await takeInventory(env.stateDir, [env.netnsOf(name)]);
      const problems: string[] = [];
      const names = inv.ovsPorts.map((p) => p.iface).sort();
      const want = present ? [portOf(name), `nslb${env.netnsOf(name).slice(5, 16)}`].sort() : [];
      if (JSON.stringify(names) !== JSON.stringify(want)) problems.push(`ports ${names.join(',')} (want ${want.join(',')})`);
      if (inv.netns.length !== (present ? 1 : 0)) problems.push(`netns ${inv.netns.join(',')}`);
      if ([...inv.masters.values()].flat().length !== (present ? 1 : 0)) problems.push(`haproxy masters ${[...inv.masters.values()].flat().join(',')}`);
      if (present) {
        const answers = await udpAsk(client, env.vip(5), 53, 2, { timeoutMs: 500 });
        if (!answers.every((a) => a.name === 'm3')) problems.push(`udp ${JSON.stringify(answers)}`);
      } else if (existsSync(env.lbDir(name))) problems.push('state dir left');
      return problems.join('; ');
    };
    for (const [phase, present] of [
      ['create', true],
      ['delete', false],
    ] as const) {
      for (let n = 1; ; n++) {
        // The state before the phase, made by a clean agent; then the phase's change, applied by one that crashes.
        if (present) await env.removeWatched('cr.yaml');
        else await env.apply('cr.yaml', docs);
        const clean = new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: 2 });
        try {
          await waitFor(async () => (await check(!present)) === '', { timeoutMs: 20_000, intervalMs: 300, message: `${phase} N=${n}: before` });
        } finally {
          await clean.stop();
        }
        if (present) await env.apply('cr.yaml', docs);
        else await env.removeWatched('cr.yaml');
        const crashing = new Agent({
          watch: env.watchDir,
          stateDir: env.stateDir,
          bridge: env.bridge,
          resync: 2,
          env: { NSLB_CRASH_AT: String(n) },
          concurrency: 1,
        });
        const synced = () => crashing.logs.some((l) => l.includes('initial sync done'));
        const outcome = await Promise.race([
          crashing.exited.then(() => 'died' as const),
          waitFor(synced, { timeoutMs: 30_000, intervalMs: 100 }).then(
            () => 'synced' as const,
            () => 'stuck' as const,
          ),
        ]);
        if (outcome !== 'died') await crashing.kill();
        await Promise.race([crashing.closed, sleep(2_000)]);
        expect(outcome, `${phase} N=${n}: ${crashing.logs.slice(-3).join(' | ')}`).not.toBe('stuck');
        // Every crash point of this phase has been tried once an agent gets through it without crashing.
        const passedAll = outcome === 'synced';
        const crashed = outcome === 'died';
        const agent = new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: 2 });
        let last = '';
        try {
          await waitFor(
            async () => {
              last = await check(present);
              return last === '';
            },
            { timeoutMs: 20_000, intervalMs: 300, message: 'convergence' },
          );
        } catch (error) {
          throw new Error(`${phase} N=${n}: not converged: ${last}`, { cause: error });
        } finally {
          await agent.stop();
        }
        rows.push(`${phase} N=${n}${crashed ? '' : ' (no crash)'}`);
        // The crash point was past the last action: every point of this phase has been tried.
        if (passedAll || !crashed) break;
      }
    }
    console.log(`crash points tried: ${rows.join(', ')}`);
    expect(rows.filter((r) => r.startsWith('create')).length).toBeGreaterThanOrEqual(16);
    expect(rows.filter((r) => r.startsWith('delete')).length).toBeGreaterThanOrEqual(6);
    env.agent = new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: 3 });
  }, 600_000);
});
