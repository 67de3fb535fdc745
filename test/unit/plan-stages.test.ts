// Which of a plan's actions run at once (plan/actions.ts stagesOf): only those that cannot see each other's effect.
import { describe, expect, it } from 'vitest';
import { stagesOf, type Action } from '../../src/plan/actions.js';
import { planLoadBalancer } from '../../src/plan/plan.js';
import { loadBalancer } from '../support/desired-lb.js';

const kinds = (stages: Action[][]) => stages.map((s) => s.map((a) => a.kind));

describe('stagesOf', () => {
  const lb = loadBalancer();
  const { netns, iface } = lb.names;

  it('a new load balancer: netns beside port, config beside the move, link configured before HAProxy starts', () => {
    const actions = planLoadBalancer({ netns, iface, desired: lb, config: 'global\n', observed: { ifaceInHost: false, stateDir: false } });
    expect(kinds(stagesOf(actions))).toEqual([
      ['netns.add', 'ovs.addPort'],
      ['link.moveToNetns', 'haproxy.writeConfig'],
      ['link.configure'],
      ['haproxy.start'],
    ]);
    expect(actions.find((a) => a.kind === 'link.configure')).toMatchObject({ netnsAnnounces: true });
    // Every action once, none made up.
    expect(
      stagesOf(actions)
        .flat()
        .sort((a, b) => a.kind.localeCompare(b.kind)),
    ).toEqual([...actions].sort((a, b) => a.kind.localeCompare(b.kind)));
  });

  it('a checked config (a running HAProxy) and a configure in an existing netns stay in order, alone', () => {
    const actions: Action[] = [
      { kind: 'link.moveToNetns', iface, netns },
      { kind: 'link.configure', netns, iface, mac: lb.vip.mac, addresses: [], removeAddresses: [], gateways: [] },
      { kind: 'haproxy.writeConfig', netns, config: 'x', certificates: [], reason: 'changed' },
      { kind: 'haproxy.reload', netns },
    ];
    expect(kinds(stagesOf(actions))).toEqual([['link.moveToNetns'], ['link.configure'], ['haproxy.writeConfig'], ['haproxy.reload']]);
  });

  it('a port alone, and a netns alone, are stages of their own', () => {
    const port: Action = { kind: 'ovs.addPort', bridge: 'br', iface, lb: 'x', mac: lb.vip.mac, recreate: false };
    expect(kinds(stagesOf([port, { kind: 'netns.add', netns }]))).toEqual([['ovs.addPort'], ['netns.add']]);
    expect(
      kinds(
        stagesOf([
          { kind: 'netns.add', netns },
          { kind: 'link.moveToNetns', iface, netns },
        ]),
      ),
    ).toEqual([['netns.add'], ['link.moveToNetns']]);
  });

  it('an existing netns: its link configure sets the link announce switches itself', () => {
    const actions = planLoadBalancer({
      netns,
      iface,
      desired: lb,
      config: 'global\n',
      observed: { ifaceInHost: true, stateDir: true, netns: { name: netns, loUp: true } },
    });
    expect(actions.find((a) => a.kind === 'link.configure')).not.toHaveProperty('netnsAnnounces');
  });
});
