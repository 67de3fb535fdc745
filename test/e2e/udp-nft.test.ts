// UDP listeners forwarded by the kernel (DESIGN §8), through the nft driver's own functions (the agent does
// not drive them yet): a load balancer namespace, two UDP echo members and two clients on one bridge. The
// rulesets are the renderer's, applied and observed with src/drivers/nft; health comes from a real HAProxy
// running the check-only backend of plan/udp-health-checks.ts with scripts/udp-check.sh.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/udp-nft.test.ts
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthFollower } from '../../src/drivers/nft/health-follower.js';
import { deleteNftTable, forgetFlows, observeNftTable } from '../../src/drivers/nft/nft.js';
import { runCommand as run } from '../../src/exec/run.js';
import { flowsToForget, renderNftState, type NftLoadBalancer, type NftMember } from '../../src/plan/nft-ruleset.js';
import { planNftTransaction } from '../../src/plan/nft-transaction.js';
import { REPO_ROOT, runCommand, waitFor, type Host } from './harness.js';
import { NftRig, nftMember, quickMonitor, startCheckHaproxy } from './nft-rig.js';
import { startUdpEcho, startUdpLoop, udpAsk, type UdpAnswer, type UdpServer } from './udp-tools.js';

const PORT = 5353;
const VIP_PORT = 53;
const rig = new NftRig(21);
const { t } = rig;
const servers = new Map<string, UdpServer>();
let vip: string;

function model(members: NftMember[], lbAlgorithm: NftLoadBalancer['pools'][number]['lbAlgorithm'] = 'ROUND_ROBIN'): NftLoadBalancer {
  return {
    namespace: 'e2e',
    name: 'udp',
    vips: [vip],
    listeners: [{ name: 'dns', protocol: 'UDP', port: VIP_PORT, allowedCidrs: [], idleTimeoutSeconds: 30, defaultPool: 'dns', adminStateUp: true }],
    pools: [{ name: 'dns', protocol: 'UDP', lbAlgorithm, adminStateUp: true, members }],
  };
}

const member = (name: string, host: Host, over: Partial<NftMember> = {}): NftMember => nftMember(name, host, PORT, over);

let current: NftLoadBalancer | undefined;

/** fd00:221:<third octet>::<last octet>: this run's IPv6 twin of a host's address. */
const v6 = (h: Host) => `fd00:221:${t.subnet.split('.')[2]}::${h.address.split('.')[3]}`;

/** What the agent will do on a spec change: observe, plan, one transaction, forget flows that must move. */
async function apply(next: NftLoadBalancer): Promise<string[]> {
  const lines = await rig.apply(next);
  if (current !== undefined) await forgetFlows(run, rig.lbHost.netns, flowsToForget(current, next));
  current = next;
  return lines;
}

/** Icmp InRedirects of a host's namespace (/proc/net/snmp). */
async function icmpRedirectsReceived(h: Host): Promise<number> {
  const lines = (await runCommand(['ip', 'netns', 'exec', h.netns, 'cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Icmp:'));
  const [header, values] = lines.map((l) => l.split(/\s+/));
  return Number(values?.[header?.indexOf('InRedirects') ?? -1]);
}

const names = (answers: UdpAnswer[]) => answers.map((a) => a.name ?? `error:${a.error}`);
const failures = (answers: UdpAnswer[]) => answers.filter((a) => a.name === undefined);
const sameSet = (got: string[], want: string[]) => got.length > 0 && got.every((n) => want.includes(n)) && want.every((n) => got.includes(n));

beforeAll(async () => {
  await rig.start();
  const { lbHost, m1, m2, client } = rig;
  vip = lbHost.address;
  // A second family on the same segment: IPv6 VIP, members and client (t.ip's last octet as the host part).
  for (const h of [lbHost, m1, m2, client]) {
    await runCommand(['ip', '-n', h.netns, 'addr', 'add', `${v6(h)}/64`, 'dev', 'eth0', 'nodad']);
  }
  servers.set('m1', await startUdpEcho(m1, PORT, 'm1'));
  servers.set('m2', await startUdpEcho(m2, PORT, 'm2'));
  servers.set('m1-6', await startUdpEcho(m1, PORT, 'm1', v6(m1)));
  servers.set('m2-6', await startUdpEcho(m2, PORT, 'm2', v6(m2)));
  await apply(model([member('m1', m1), member('m2', m2)]));
});

afterAll(async () => {
  for (const s of servers.values()) await s.stop();
  await rig.cleanup();
});

describe('UDP listener forwarded by nftables', () => {
  it('ROUND_ROBIN alternates between the members, one new flow after the other', async () => {
    const redirectsBefore = await icmpRedirectsReceived(rig.client);
    const answers = await udpAsk(rig.client, vip, VIP_PORT, 10);
    const got = names(answers);
    expect(got.filter((n) => n === 'm1')).toHaveLength(5);
    // One-arm return path: the members saw the load balancer's address, never the client's.
    expect(new Set(answers.map((a) => a.seenFrom))).toEqual(new Set([rig.lbHost.address]));
    for (let i = 1; i < got.length; i++) expect(got[i]).not.toBe(got[i - 1]);
    // The load balancer answers from the VIP's link: the client is never told to go elsewhere.
    expect(await icmpRedirectsReceived(rig.client), 'ICMP redirects received by the client').toBe(redirectsBefore);
  });

  it('SOURCE_IP keeps a client on its member whatever its source port', async () => {
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)], 'SOURCE_IP'));
    for (const c of [rig.client, rig.client2]) {
      const got = names(await udpAsk(c, vip, VIP_PORT, 12));
      expect(new Set(got).size, got.join(',')).toBe(1);
      expect(['m1', 'm2']).toContain(got[0]);
    }
  });

  it('SOURCE_IP_PORT keeps a client port on its member, even as a new flow, and spreads the ports', async () => {
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)], 'SOURCE_IP_PORT'));
    const ports = Array.from({ length: 16 }, (_, i) => 40000 + i);
    const first = names(await udpAsk(rig.client, vip, VIP_PORT, ports.length, { sourcePorts: ports }));
    expect(new Set(first)).toEqual(new Set(['m1', 'm2']));
    // New flows from the same ports (their conntrack entries deleted): each lands where it did before.
    await runCommand(['ip', 'netns', 'exec', rig.lbHost.netns, 'conntrack', '-F']);
    const again = names(await udpAsk(rig.client, vip, VIP_PORT, ports.length, { sourcePorts: ports }));
    expect(again).toEqual(first);
  });

  it('weight 0 drains: no new flows, and the flow it had keeps going to it', async () => {
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)]));
    // A flow pinned to m2: one source port; the first answer says where it went.
    const pinned = startUdpLoop(rig.client2, vip, VIP_PORT, { sourcePorts: [41000], intervalMs: 20 });
    await waitFor(() => pinned.answers.length > 3, { timeoutMs: 10_000, message: 'pinned flow to start' });
    const to = pinned.answers[0]?.name;
    const other = to === 'm1' ? 'm2' : 'm1';
    const drained = model([member('m1', rig.m1, { weight: to === 'm1' ? 0 : 1 }), member('m2', rig.m2, { weight: to === 'm2' ? 0 : 1 })]);
    const lines = await apply(drained);
    expect(lines.every((l) => /^(add|delete) element inet nslb p_dns_4 /.test(l))).toBe(true);
    const fresh = names(await udpAsk(rig.client, vip, VIP_PORT, 10));
    expect(new Set(fresh)).toEqual(new Set([other]));
    const seen = (await pinned.stop()).slice(3);
    expect(failures(seen)).toEqual([]);
    expect(new Set(names(seen))).toEqual(new Set([to]));
  });

  it('member changes under traffic: one transaction each, no request lost, other flows untouched', async () => {
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)]));
    const pinned = startUdpLoop(rig.client2, vip, VIP_PORT, { sourcePorts: [41001], intervalMs: 10 });
    const fresh = startUdpLoop(rig.client, vip, VIP_PORT, { intervalMs: 5, timeoutMs: 1000 });
    await waitFor(() => pinned.answers.length > 3 && fresh.answers.length > 3, { timeoutMs: 10_000, message: 'loops to start' });
    const to = pinned.answers[0]?.name as string;
    const pinnedHost = to === 'm1' ? rig.m1 : rig.m2;
    const otherName = to === 'm1' ? 'm2' : 'm1';
    const otherHost = to === 'm1' ? rig.m2 : rig.m1;
    // The other member is weighted, drained, disabled, removed and added back; a third that does not exist is
    // added and removed (its slots get no answer, so fresh flows are only asked while it is absent).
    const steps: NftLoadBalancer[] = [];
    for (let i = 0; i < 5; i++) {
      steps.push(model([member(to, pinnedHost), member(otherName, otherHost, { weight: 2 + i })]));
      steps.push(model([member(to, pinnedHost), member(otherName, otherHost, { weight: 0 })]));
      steps.push(model([member(to, pinnedHost), member(otherName, otherHost, { adminStateUp: false })]));
      steps.push(model([member(to, pinnedHost)]));
      steps.push(model([member(to, pinnedHost), member(otherName, otherHost)]));
    }
    for (const step of steps) {
      const lines = await apply(step);
      expect(
        lines.every((l) => /^(add|delete) element inet nslb p_dns_4 /.test(l)),
        lines.join('\n'),
      ).toBe(true);
      await new Promise((r) => setTimeout(r, 40));
    }
    const pinnedSeen = (await pinned.stop()).slice(3);
    const freshSeen = await fresh.stop();
    expect(failures(freshSeen)).toEqual([]);
    expect(new Set(names(freshSeen))).toEqual(new Set(['m1', 'm2']));
    expect(failures(pinnedSeen)).toEqual([]);
    expect(new Set(names(pinnedSeen))).toEqual(new Set([to]));
    expect(freshSeen.length).toBeGreaterThan(50);
  });

  it('a member whose server stops is taken out by its UDP-CONNECT monitor, its flows move, and it comes back', async () => {
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)]));
    const haproxy = await startCheckHaproxy(
      rig.lbHost.netns,
      { name: 'dns', adminStateUp: true, members: [member('m1', rig.m1), member('m2', rig.m2)], healthMonitor: quickMonitor('UDP-CONNECT') },
      { udpConnect: join(REPO_ROOT, 'scripts', 'udp-check.sh'), sctp: '/bin/false', ping: join(REPO_ROOT, 'scripts', 'ping-check.sh') },
    );
    const transitions: string[][] = [];
    const follower = new HealthFollower({
      run,
      netns: rig.lbHost.netns,
      socketPath: haproxy.socket,
      intervalMs: 250,
      model: () => model([member('m1', rig.m1), member('m2', rig.m2)]),
      onApplied: (c) => transitions.push(c.lines),
    });
    try {
      follower.start();
      // A flow pinned to m2 before it fails: once m2 is down its conntrack entry goes and it moves to m1.
      let pinned = startUdpLoop(rig.client2, vip, VIP_PORT, { sourcePorts: [41002], intervalMs: 50, timeoutMs: 300 });
      await waitFor(() => pinned.answers.length > 0, { timeoutMs: 10_000, message: 'pinned flow' });
      if (pinned.answers[0]?.name !== 'm2') {
        await pinned.stop();
        pinned = startUdpLoop(rig.client2, vip, VIP_PORT, { sourcePorts: [41003], intervalMs: 50, timeoutMs: 300 });
        await waitFor(() => pinned.answers.length > 0, { timeoutMs: 10_000, message: 'pinned flow' });
      }
      expect(pinned.answers[0]?.name).toBe('m2');

      await servers.get('m2')?.stop();
      servers.delete('m2');
      // Every ask answered by m1 (a timed-out ask is no proof: under load m1 can miss 300 ms too).
      await waitFor(async () => names(await udpAsk(rig.client, vip, VIP_PORT, 6, { timeoutMs: 300 })).every((n) => n === 'm1'), {
        timeoutMs: 20_000,
        message: 'm2 to be taken out',
      });
      expect(names(await udpAsk(rig.client, vip, VIP_PORT, 10))).toEqual(Array(10).fill('m1'));
      await waitFor(() => pinned.answers.at(-1)?.name === 'm1', { timeoutMs: 10_000, message: 'the pinned flow to move to m1' });
      await pinned.stop();

      servers.set('m2', await startUdpEcho(rig.m2, PORT, 'm2'));
      await waitFor(async () => sameSet(names(await udpAsk(rig.client, vip, VIP_PORT, 6, { timeoutMs: 300 })), ['m1', 'm2']), {
        timeoutMs: 20_000,
        message: 'm2 to come back',
      });
      expect(transitions.length).toBeGreaterThanOrEqual(2);
      for (const lines of transitions) for (const l of lines) expect(l).toMatch(/^(add|delete) element inet nslb p_dns_4 /);
    } finally {
      await follower.stop();
      await haproxy.stop();
    }
  });

  it('IPv6: a VIP of each family balances over the members of its own family', async () => {
    const dual = model([
      member('m1', rig.m1),
      member('m2', rig.m2),
      member('m1-6', rig.m1, { address: v6(rig.m1) }),
      member('m2-6', rig.m2, { address: v6(rig.m2) }),
    ]);
    await apply({ ...dual, vips: [vip, v6(rig.lbHost)] });
    const six = await udpAsk(rig.client, v6(rig.lbHost), VIP_PORT, 8);
    expect(names(six)).toEqual(['m1', 'm2', 'm1', 'm2', 'm1', 'm2', 'm1', 'm2']);
    expect(new Set(six.map((a) => a.seenFrom))).toEqual(new Set([v6(rig.lbHost)]));
    expect(failures(await udpAsk(rig.client, vip, VIP_PORT, 4))).toEqual([]);
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)]));
  });

  it('drift: a table deleted or a map emptied by hand is repaired by the next apply; cleanup removes it', async () => {
    const spec = model([member('m1', rig.m1), member('m2', rig.m2)]);
    await runCommand(['ip', 'netns', 'exec', rig.lbHost.netns, 'nft', 'flush', 'map', 'inet', 'nslb', 'p_dns_4']);
    // New flows only: an entry the earlier tests left in conntrack (30 s) keeps its member without the map.
    await runCommand(['ip', 'netns', 'exec', rig.lbHost.netns, 'conntrack', '-F']);
    expect(failures(await udpAsk(rig.client, vip, VIP_PORT, 2, { timeoutMs: 300 }))).toHaveLength(2);
    expect((await apply(spec)).every((l) => l.startsWith('add element inet nslb p_dns_4 '))).toBe(true);
    expect(failures(await udpAsk(rig.client, vip, VIP_PORT, 4))).toEqual([]);
    await runCommand(['ip', 'netns', 'exec', rig.lbHost.netns, 'nft', 'delete', 'table', 'inet', 'nslb']);
    expect(await observeNftTable(run, rig.lbHost.netns)).toBeUndefined();
    await apply(spec);
    expect(failures(await udpAsk(rig.client, vip, VIP_PORT, 4))).toEqual([]);
    expect(planNftTransaction(await observeNftTable(run, rig.lbHost.netns), renderNftState(spec))).toEqual([]);
    await deleteNftTable(run, rig.lbHost.netns);
    await deleteNftTable(run, rig.lbHost.netns);
    expect(await observeNftTable(run, rig.lbHost.netns)).toBeUndefined();
    await apply(spec);
  });

  it('no nslb process handles a packet: with nothing of ours running in the namespace, UDP keeps flowing', async () => {
    // From the spec's ruleset whatever the tests before left (one nft run; it has exited before the wait below).
    await apply(model([member('m1', rig.m1), member('m2', rig.m2)]));
    await waitFor(async () => (await runCommand(['ip', 'netns', 'pids', rig.lbHost.netns])).stdout.trim() === '', {
      timeoutMs: 10_000,
      message: 'no process left in the load balancer namespace',
    });
    const got = await udpAsk(rig.client, vip, VIP_PORT, 20);
    expect(failures(got)).toEqual([]);
    expect(new Set(names(got))).toEqual(new Set(['m1', 'm2']));
  });
});
