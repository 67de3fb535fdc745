// Issue 21, pure parts: UDP/SCTP listeners as the nft renderer's model (health from HAProxy's checks), the one
// nft action a plan carries, the flows that must move, and the member-network ports planned like the VIP port.
import { describe, expect, it } from 'vitest';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { buildDesired } from '../../src/desired/build.js';
import type { DesiredLoadBalancer, DesiredMemberNetwork } from '../../src/desired/model.js';
import { isMemberNetworkIfaceOf, memberNetworkIface, nodeNames } from '../../src/desired/names.js';
import { formatAction } from '../../src/plan/actions.js';
import { flowsToMove, kernelHealthSignature, nftModelOf, planNft } from '../../src/plan/kernel-model.js';
import { planMemberNetworks } from '../../src/plan/member-networks.js';
import { renderNftState } from '../../src/plan/nft-ruleset.js';
import type { ObservedLoadBalancer } from '../../src/plan/observed.js';
import { planLoadBalancer } from '../../src/plan/plan.js';
import { listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';

const netns = 'nslb-0123456789ab';

function udpLb(over: Partial<DesiredLoadBalancer> = {}, algorithm: 'ROUND_ROBIN' | 'SOURCE_IP' | 'SOURCE_IP_PORT' = 'ROUND_ROBIN'): DesiredLoadBalancer {
  return loadBalancer({
    listeners: [
      listener('dns', {
        protocol: 'UDP',
        port: 53,
        defaultPool: 'dns',
        timeouts: { clientData: 30_500, memberConnect: 5000, memberData: 50000, tcpInspect: 0 },
      }),
    ],
    pools: [
      pool('dns', {
        protocol: 'UDP',
        lbAlgorithm: algorithm,
        members: [member('a', '10.202.0.11', 5353), member('b', '10.202.0.12', 5353)],
        healthMonitor: monitor({ type: 'UDP-CONNECT' }),
      }),
    ],
    ...over,
  });
}

const health = (down: string[]) => new Map([['dns', new Map([...['a', 'b'].map((m) => [m, down.includes(m) ? 'DOWN' : 'UP'] as const)])]]);

describe('nftModelOf', () => {
  it('carries UDP listeners and pools only, the idle timeout in whole seconds, and the checks verdict', () => {
    const lb = udpLb();
    lb.listeners.push(listener('web', { protocol: 'TCP', port: 80 }));
    const model = nftModelOf(lb, health(['b']))!;
    expect(model.listeners.map((l) => [l.name, l.protocol, l.idleTimeoutSeconds])).toEqual([['dns', 'UDP', 31]]);
    expect(model.pools[0]!.members.map((m) => [m.name, m.health])).toEqual([
      ['a', 'UP'],
      ['b', 'DOWN'],
    ]);
  });

  it('is undefined without a UDP or SCTP listener; a pool without an enabled monitor is NO_CHECK', () => {
    expect(nftModelOf(loadBalancer(), undefined)).toBeUndefined();
    const lb = udpLb();
    lb.pools[0]!.healthMonitor = monitor({ type: 'UDP-CONNECT', adminStateUp: false });
    expect(nftModelOf(lb, health(['a', 'b']))!.pools[0]!.members.every((m) => m.health === 'NO_CHECK')).toBe(true);
  });

  it('SOURCE_IP persistence on a ROUND_ROBIN UDP pool hashes by source', () => {
    const lb = udpLb();
    lb.pools[0]!.sessionPersistence = { type: 'SOURCE_IP' };
    expect(nftModelOf(lb, undefined)!.pools[0]!.lbAlgorithm).toBe('SOURCE_IP');
  });

  it('an admin-down load balancer forwards nothing', () => {
    const state = renderNftState(nftModelOf(udpLb({ adminStateUp: false }), undefined)!)!;
    expect(state.maps.get('listen4')!.elements.size).toBe(0);
  });
});

describe('planNft', () => {
  it('nothing looked at, nothing planned; a new table is one transaction', () => {
    expect(planNft(netns, udpLb(), undefined)).toBeUndefined();
    const a = planNft(netns, udpLb(), {})!;
    expect(a.kind).toBe('nft.apply');
    expect(formatAction(a)).toMatch(/^nft nslb-0123456789ab inet nslb: \d+ nft statements, one transaction \(new\)$/);
  });

  it('a member going DOWN is element updates only, and its flows are forgotten; back UP, nothing to forget', () => {
    const applied = renderNftState(nftModelOf(udpLb(), health([]))!)!;
    const down = planNft(netns, udpLb(), { table: applied, health: health(['b']) });
    if (down?.kind !== 'nft.apply') throw new Error('expected an nft action');
    expect(down.lines.every((l) => /^(delete|add) element inet nslb p_dns_4 /.test(l))).toBe(true);
    expect(down.forget).toEqual([{ protocol: 'UDP', address: '10.202.0.12', port: 5353 }]);
    const without = renderNftState(nftModelOf(udpLb(), health(['b']))!)!;
    const up = planNft(netns, udpLb(), { table: without, health: health([]) });
    if (up?.kind !== 'nft.apply') throw new Error('expected an nft action');
    expect(up.forget).toEqual([]);
    expect(planNft(netns, udpLb(), { table: applied, health: health([]) })).toBeUndefined();
  });

  it('weight 0 drains: out of the map, but its flows stay', () => {
    const applied = renderNftState(nftModelOf(udpLb(), health([]))!)!;
    const drained = udpLb();
    drained.pools[0]!.members[1]!.weight = 0;
    const a = planNft(netns, drained, { table: applied, health: health([]) });
    if (a?.kind !== 'nft.apply') throw new Error('expected an nft action');
    expect(a.lines.length).toBeGreaterThan(0);
    expect(a.forget).toEqual([]);
    expect(flowsToMove(applied, nftModelOf(drained, health([])))).toEqual([]);
  });

  it('forwarding turned off in the namespace is drift: the action turns it on again, the table as it is', () => {
    const applied = renderNftState(nftModelOf(udpLb(), health([]))!)!;
    const observed = { table: applied, health: health([]) };
    for (const forwarding of [
      { 4: false, 6: true },
      { 4: true, 6: false },
    ]) {
      const a = planNft(netns, udpLb(), observed, forwarding);
      expect(a).toMatchObject({ kind: 'nft.apply', lines: [], forget: [], deletesTable: false });
      expect(formatAction(a!)).toBe('nft nslb-0123456789ab inet nslb: no table change (forwarding was off in the namespace)');
    }
    expect(planNft(netns, udpLb(), observed, { 4: true, 6: true })).toBeUndefined();
    // Not reported (IPv6 off in the namespace, or a netns not read): nothing is known to be wrong.
    expect(planNft(netns, udpLb(), observed, { 4: true })).toBeUndefined();
    // Nothing for the kernel to forward: forwarding is none of nslb's business there.
    expect(planNft(netns, loadBalancer(), {}, { 4: false, 6: false })).toBeUndefined();
    // Through planLoadBalancer: the netns read carries it.
    const o: ObservedLoadBalancer = {
      ifaceInHost: false,
      stateDir: true,
      nft: observed,
      netns: { name: netns, loUp: true, forwarding: { 4: false, 6: true } },
    };
    expect(planLoadBalancer({ netns, iface: 'nslb0123456789a', desired: udpLb(), config: '', observed: o }).map((a) => a.kind)).toContain('nft.apply');
  });

  it('the last UDP listener removed deletes the table', () => {
    const applied = renderNftState(nftModelOf(udpLb(), undefined)!)!;
    const a = planNft(netns, loadBalancer(), { table: applied });
    expect(a).toMatchObject({ kind: 'nft.apply', deletesTable: true, lines: ['delete table inet nslb'] });
  });

  it('the health signature names DOWN members only, in a stable order', () => {
    expect(kernelHealthSignature(health(['b', 'a']))).toBe('dns/a,dns/b');
    expect(kernelHealthSignature(health([]))).toBe('');
  });
});

describe('member networks', () => {
  const names = nodeNames('default', 'web');
  const net = (over: Partial<DesiredMemberNetwork> = {}): DesiredMemberNetwork => ({
    name: 'back',
    index: 0,
    iface: memberNetworkIface('default', 'web', 0),
    bridge: 'br-members',
    mac: 'fa:16:3e:aa:bb:cc',
    address: '10.30.0.2',
    family: 4,
    prefixLength: 24,
    routes: [{ destination: '10.31.0.0/24', gateway: '10.30.0.1' }],
    ...over,
  });
  const lb = (nets: DesiredMemberNetwork[]) => loadBalancer({ names, memberNetworks: nets });

  it('names a port nslb + 9 hex + 2-digit index, told apart from the VIP port', () => {
    const iface = memberNetworkIface('default', 'web', 7);
    expect(iface).toMatch(/^nslb[0-9a-f]{9}07$/);
    expect(iface.length).toBe(15);
    expect(isMemberNetworkIfaceOf(names.netns, iface)).toBe(true);
    expect(isMemberNetworkIfaceOf(names.netns, names.iface)).toBe(false);
  });

  it('a missing port is added, moved into the netns and configured with its address and routes', () => {
    const o: ObservedLoadBalancer = { ifaceInHost: false, stateDir: true, netns: { name: names.netns, loUp: true } };
    expect(planMemberNetworks(lb([net()]), o, false).map(formatAction)).toEqual([
      `ovs add-port br-members ${net().iface} (internal, mac fa:16:3e:aa:bb:cc, nslb-lb=default/web, member network back)`,
      `link ${net().iface} → netns ${names.netns}`,
      `link configure ${names.netns}/${net().iface}: mac fa:16:3e:aa:bb:cc, addr 10.30.0.2/24, 10.31.0.0/24 via 10.30.0.1, up`,
    ]);
  });

  const port = { iface: net().iface, bridge: 'br-members', lb: 'default/web', mac: 'fa:16:3e:aa:bb:cc' };
  const link = {
    name: net().iface,
    up: true,
    mac: 'fa:16:3e:aa:bb:cc',
    mtu: 1500,
    addresses: ['10.30.0.2/24'],
    routes: [{ destination: '10.31.0.0/24', gateway: '10.30.0.1' }],
  };

  it('a port in place is left alone; one deleted by hand comes back; one no longer in the spec goes', () => {
    const o: ObservedLoadBalancer = {
      ifaceInHost: false,
      stateDir: true,
      netns: { name: names.netns, loUp: true, otherLinks: [link] },
      memberPorts: [{ port, inHost: false }],
    };
    expect(planMemberNetworks(lb([net()]), o, false)).toEqual([]);
    // Deleted by hand: the row and the device are gone.
    const gone: ObservedLoadBalancer = { ...o, memberPorts: [], netns: { name: names.netns, loUp: true } };
    expect(planMemberNetworks(lb([net()]), gone, false).map((a) => a.kind)).toEqual(['ovs.addPort', 'link.moveToNetns', 'link.configure']);
    // Row left, device gone (with a netns deleted by hand): recreated.
    const stale: ObservedLoadBalancer = { ...o, netns: { name: names.netns, loUp: true } };
    expect(planMemberNetworks(lb([net()]), stale, false)[0]).toMatchObject({ kind: 'ovs.addPort', recreate: true });
    expect(planMemberNetworks(lb([]), o, false).map(formatAction)).toEqual([`ovs del-port ${net().iface}`]);
  });

  it('its routes are observed: one deleted by hand comes back, one the spec no longer has goes, nothing else is touched', () => {
    const observed = (routes: { destination: string; gateway: string }[]): ObservedLoadBalancer => ({
      ifaceInHost: false,
      stateDir: true,
      netns: { name: names.netns, loUp: true, otherLinks: [{ ...link, routes }] },
      memberPorts: [{ port, inHost: false }],
    });
    const configure = `link configure ${names.netns}/${net().iface}: mac fa:16:3e:aa:bb:cc, addr 10.30.0.2/24`;
    // Deleted by hand (`ip route del`): put back, and only that (no new port, no move).
    expect(planMemberNetworks(lb([net()]), observed([]), false).map(formatAction)).toEqual([`${configure}, 10.31.0.0/24 via 10.30.0.1, up`]);
    // The spec lost a route, or one was added by hand through the port: it goes.
    const stray = { destination: '10.32.0.0/16', gateway: '10.30.0.1' };
    expect(planMemberNetworks(lb([net({ routes: [] })]), observed(link.routes), false).map(formatAction)).toEqual([
      `${configure}, remove 10.31.0.0/24 via 10.30.0.1, up`,
    ]);
    expect(planMemberNetworks(lb([net()]), observed([...link.routes, stray]), false)).toEqual([
      expect.objectContaining({ kind: 'link.configure', routes: link.routes, removeRoutes: [stray] }),
    ]);
    // A gateway changed in the spec: the old route goes, the new one is put in its place.
    const moved = net({ routes: [{ destination: '10.31.0.0/24', gateway: '10.30.0.9' }] });
    expect(planMemberNetworks(lb([moved]), observed(link.routes), false).map(formatAction)).toEqual([
      `${configure}, 10.31.0.0/24 via 10.30.0.9, remove 10.31.0.0/24 via 10.30.0.1, up`,
    ]);
    expect(planMemberNetworks(lb([net()]), observed(link.routes), false)).toEqual([]);
  });

  it('deleting the load balancer deletes its member-network ports too', () => {
    const actions = planLoadBalancer({
      netns: names.netns,
      iface: names.iface,
      observed: { ifaceInHost: false, stateDir: false, memberPorts: [{ port, inHost: false }] },
    });
    expect(actions.map(formatAction)).toEqual([`ovs del-port ${net().iface}`]);
  });
});

describe('validation of the new fields (every source alike)', () => {
  const o = (kind: string, name: string, spec: Record<string, unknown>) =>
    ({ apiVersion: 'nslb.dev/v1alpha1', kind, metadata: { name, namespace: 'default' }, spec }) as unknown as AnyObject;
  const objects = (over: { listener?: Record<string, unknown>; pool?: Record<string, unknown>; member?: Record<string, unknown> } = {}) => [
    o('LoadBalancer', 'sig', {
      vip: { address: '192.0.2.10' },
      memberNetworks: [{ name: 'back', address: '10.30.0.2', routes: [{ destination: '10.31.0.0/24', gateway: '10.30.0.1' }] }],
    }),
    o('Listener', 'l', { loadBalancer: 'sig', protocol: 'SCTP', port: 3868, defaultPool: 'p', ...over.listener }),
    o('Pool', 'p', { loadBalancer: 'sig', protocol: 'SCTP', lbAlgorithm: 'SOURCE_IP_PORT', ...over.pool }),
    o('Member', 'm', { pool: 'p', address: '10.31.0.7', port: 3868, ...over.member }),
  ];
  const problems = (objs: AnyObject[], sctpUnsupported?: string) =>
    buildDesired(objs, { defaultBridge: 'br-int', ...(sctpUnsupported === undefined ? {} : { sctpUnsupported }) }).problems.map(
      (p) => `${p.kind} ${p.reason} ${p.path}: ${p.message}`,
    );

  it('a two-arm SCTP load balancer builds; its member is placed on the network that routes to it', () => {
    const d = buildDesired(objects(), { defaultBridge: 'br-int' });
    expect(d.problems).toEqual([]);
    const lb = d.lbs.get('default/sig')!;
    expect(lb.memberNetworks?.map((n) => [n.name, n.bridge, n.iface.length, n.prefixLength])).toEqual([['back', 'br-int', 15, 24]]);
    expect(lb.pools[0]!.members[0]!.network).toBe('back');
  });

  it('on a node without SCTP conntrack, SCTP listeners are NotSupported with the reason (nothing applied)', () => {
    const d = buildDesired(objects(), { defaultBridge: 'br-int', sctpUnsupported: 'no nf_conntrack_proto_sctp' });
    expect(d.lbs.has('default/sig')).toBe(false);
    expect(problems(objects(), 'no nf_conntrack_proto_sctp')).toEqual([
      'Listener NotSupported /spec/protocol: SCTP listeners cannot be served on this node: no nf_conntrack_proto_sctp',
    ]);
  });

  it('says what is wrong, on the field', () => {
    expect(problems(objects({ pool: { lbAlgorithm: 'LEAST_CONNECTIONS' } }))).toEqual([
      'Pool NotSupported /spec/lbAlgorithm: LEAST_CONNECTIONS is not available for SCTP pools: the kernel balances flows without counting them per member; use ROUND_ROBIN, SOURCE_IP, SOURCE_IP_PORT',
    ]);
    expect(problems(objects({ member: { network: 'front' } }))).toEqual([
      'Member InvalidReference /spec/network: load balancer "sig" has no member network "front" (it has back)',
    ]);
    expect(problems(objects({ member: { address: '10.99.0.7', network: 'back' } }))).toEqual([
      'Member InvalidSpec /spec/address: 10.99.0.7 is neither inside member network "back" nor behind one of its routes',
    ]);
    expect(problems(objects({ listener: { connectionLimit: 5 } }))).toEqual([
      'Listener NotSupported /spec/connectionLimit: is not enforced on SCTP listeners (the kernel forwards them, flow by flow); leave it at -1',
    ]);
  });

  it('UDP and TCP listeners may share a port number; two UDP listeners may not', () => {
    const base = objects({ listener: { protocol: 'UDP' }, pool: { protocol: 'UDP' } });
    const tcp = o('Listener', 'tcp', { loadBalancer: 'sig', protocol: 'TCP', port: 3868 });
    expect(problems([...base, tcp])).toEqual([]);
    const udp2 = o('Listener', 'udp2', { loadBalancer: 'sig', protocol: 'UDP', port: 3868 });
    expect(problems([...base, udp2])).toEqual(['Listener Conflict /spec/port: UDP port 3868 is already used by listener "l" of load balancer "sig"']);
  });
});
