// How a plan is applied: in order, except a new load balancer's HAProxy, which starts beside its link when one
// failed first health check cannot take a member down (plan/apply-stages.ts).
import { describe, expect, it } from 'vitest';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import type { Action } from '../../src/plan/actions.js';
import { applyStages } from '../../src/plan/apply-stages.js';
import { planLoadBalancer } from '../../src/plan/plan.js';
import { listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';
import { FakeNode } from '../support/fake-node.js';

const { netns, iface } = loadBalancer().names;

function web(maxRetriesDown: number, overrides: Partial<DesiredLoadBalancer> = {}): DesiredLoadBalancer {
  return loadBalancer({
    listeners: [listener('http', { defaultPool: 'p' })],
    pools: [pool('p', { members: [member('m1', '10.202.0.11', 80)], healthMonitor: monitor({ maxRetriesDown }) })],
    ...overrides,
  });
}

function planOn(node: FakeNode, d: DesiredLoadBalancer): Action[] {
  return planLoadBalancer({ netns, iface, desired: d, config: 'cfg v1\n', observed: node.observe(netns, iface) });
}

const kinds = (stages: Action[][][]) => stages.map((stage) => stage.map((lane) => lane.map((a) => a.kind)));

describe('applyStages', () => {
  it("starts a new load balancer's HAProxy beside its link, in a netns that allows non-local binds", () => {
    const actions = planOn(new FakeNode(), web(3));
    expect(actions[0]).toEqual({ kind: 'netns.add', netns, nonlocalBind: true });
    expect(kinds(applyStages(actions))).toEqual([
      [['netns.add']],
      [
        ['ovs.addPort', 'link.moveToNetns', 'link.configure'],
        ['haproxy.writeConfig', 'haproxy.start'],
      ],
    ]);
  });

  it('does so without any health monitor, and keeps what follows for after both lanes', () => {
    const d = web(3);
    const actions = planOn(new FakeNode(), { ...d, pools: d.pools.map((p) => ({ ...p, healthMonitor: { ...p.healthMonitor!, adminStateUp: false } })) });
    const withNft: Action[] = [...actions, { kind: 'nft.apply', netns, lines: [], forget: [], deletesTable: false, reason: 'new' }];
    expect(kinds(applyStages(withNft))).toEqual([
      [['netns.add']],
      [
        ['ovs.addPort', 'link.moveToNetns', 'link.configure'],
        ['haproxy.writeConfig', 'haproxy.start'],
      ],
      [['nft.apply']],
    ]);
  });

  it('builds in order when one failed check would mark a member down (maxRetriesDown 1)', () => {
    const actions = planOn(new FakeNode(), web(1));
    expect(actions[0]).toEqual({ kind: 'netns.add', netns });
    expect(applyStages(actions)).toEqual([[actions]]);
  });

  it('builds in order an ACTIVE_STANDBY pair and a load balancer with member networks', () => {
    const ha = { node: 'n1', slot: 0 as const, peer: 'n2', localAddress: '10.201.0.2', peerAddress: '10.201.0.3', advertIntervalMs: 1000, virtualRouterId: 7 };
    const network = {
      name: 'backend',
      index: 0,
      iface: 'nslb0123456780',
      bridge: 'br-int',
      mac: 'fa:16:3e:00:00:09',
      address: '10.203.0.2',
      family: 4 as const,
      prefixLength: 24,
      routes: [],
    };
    for (const d of [web(3, { ha }), web(3, { memberNetworks: [network] })]) {
      const actions = planOn(new FakeNode(), d);
      expect(actions.find((a) => a.kind === 'netns.add')).toEqual({ kind: 'netns.add', netns });
      expect(applyStages(actions)).toEqual([[actions]]);
    }
  });

  it('restarts a HAProxy in order: its netns is there already, and may not allow non-local binds', () => {
    const node = new FakeNode();
    for (const a of planOn(node, web(3))) node.apply(a);
    node.haproxy.clear();
    node.apply({ kind: 'link.configure', netns, iface, mac: 'fa:16:3e:01:02:03', addresses: [], removeAddresses: ['10.201.0.10/24'], gateways: [] });
    const actions = planOn(node, web(3));
    expect(actions.map((a) => a.kind)).toEqual(['link.configure', 'haproxy.start']);
    expect(applyStages(actions)).toEqual([[actions]]);
  });

  it('applies any other plan as it is, one action after the other', () => {
    const actions: Action[] = [
      { kind: 'netns.add', netns },
      { kind: 'haproxy.writeConfig', netns, config: 'x', certificates: [], reason: 'new' },
      { kind: 'haproxy.start', netns, reason: 'not running' },
    ];
    expect(applyStages(actions)).toEqual([[actions]]);
    expect(applyStages([])).toEqual([[[]]]);
  });
});
