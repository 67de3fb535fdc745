// Golden plans: desired + observed → actions, printed as `nslb plan` prints them; and the convergence test:
// plan → apply to a fake node → plan again is empty, from every starting state.
import { describe, expect, it } from 'vitest';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import { formatAction } from '../../src/plan/actions.js';
import { planLoadBalancer } from '../../src/plan/plan.js';
import { listener, loadBalancer } from '../support/desired-lb.js';
import { FakeNode } from '../support/fake-node.js';

// The names desired-lb.ts gives its load balancer.
const { netns, iface } = loadBalancer().names;

const desired = loadBalancer;

/** A TERMINATED_HTTPS listener with a default and an SNI certificate. */
function withTls(): DesiredLoadBalancer {
  const cert = (n: string) => ({ fileName: `${n.repeat(16)}.pem`, pem: `-----BEGIN CERTIFICATE-----\n${n}\n` });
  return desired({
    listeners: [listener('https', { protocol: 'TERMINATED_HTTPS', port: 443, tls: { certificate: cert('a'), sniCertificates: [cert('b')] } })],
  });
}

function plan(node: FakeNode, d: DesiredLoadBalancer | undefined, config = 'cfg v1\n'): string[] {
  return planLoadBalancer({
    netns,
    iface,
    ...(d === undefined ? {} : { desired: d, config }),
    observed: node.observe(netns, iface),
  }).map(formatAction);
}

function converge(node: FakeNode, d: DesiredLoadBalancer | undefined, config = 'cfg v1\n'): string[] {
  const actions = planLoadBalancer({ netns, iface, ...(d === undefined ? {} : { desired: d, config }), observed: node.observe(netns, iface) });
  for (const a of actions) node.apply(a);
  return actions.map(formatAction);
}

function converged(): FakeNode {
  const node = new FakeNode();
  converge(node, desired());
  return node;
}

/** desired() with an IPv6 additional VIP and its gateway. */
function dualStack(): DesiredLoadBalancer {
  const base = desired();
  return desired({ vip: { ...base.vip, additional: [{ address: '2001:db8:201::10', family: 6, prefixLength: 64, gateway: '2001:db8:201::1' }] } });
}

const cases: [string, (n: FakeNode) => void, DesiredLoadBalancer | undefined, string?][] = [
  ['create-on-empty-node', () => {}, desired()],
  ['nothing-to-do', () => {}, desired()],
  ['config-changed', () => {}, desired(), 'cfg v2\n'],
  ['haproxy-killed', (n) => n.haproxy.clear(), desired()],
  ['netns-deleted-by-hand', (n) => n.deleteNetnsByHand(netns), desired()],
  ['ovs-port-deleted-by-hand', (n) => n.apply({ kind: 'ovs.deletePort', iface }), desired()],
  [
    'link-down-and-address-removed',
    (n) => {
      const l = n.links.get(iface)!;
      l.up = false;
      l.addresses = ['10.9.9.9/24'];
    },
    desired(),
  ],
  ['vip-moved', () => {}, desired({ vip: { address: '10.201.0.11', family: 4, prefixLength: 24, gateway: '10.201.0.1', mac: 'fa:16:3e:01:02:03' } })],
  ['vlan-set', () => {}, desired({ vip: { address: '10.201.0.10', family: 4, prefixLength: 24, gateway: '10.201.0.1', mac: 'fa:16:3e:01:02:03', vlan: 42 } })],
  ['bridge-changed', () => {}, desired({ bridge: 'br-ex' })],
  ['deleted', () => {}, undefined],
  ['with-certificates', () => {}, withTls()],
  [
    'certificate-file-deleted',
    (n) => {
      converge(n, withTls());
      n.certFiles.get(netns)?.delete('bbbbbbbbbbbbbbbb.pem');
    },
    withTls(),
  ],
  [
    'state-dir-deleted-by-hand',
    (n) => {
      n.stateDirs.delete(netns);
      n.configs.delete(netns);
      n.certFiles.delete(netns);
    },
    desired(),
  ],
  ['ovs-vswitchd-restarted', (n) => n.restartVswitchdByHand(), desired()],
  [
    'crash-between-config-write-and-reload',
    (n) => n.apply({ kind: 'haproxy.writeConfig', netns, config: 'cfg v2\n', certificates: [], reason: 'changed' }),
    desired(),
    'cfg v2\n',
  ],
  ['additional-vip-added', () => {}, dualStack()],
  ['additional-vip-removed', (n) => converge(n, dualStack()), desired()],
  [
    'additional-vip-address-removed-by-hand',
    (n) => {
      converge(n, dualStack());
      const l = n.links.get(iface)!;
      l.addresses = l.addresses.filter((a) => !a.includes(':'));
    },
    dualStack(),
  ],
  [
    'additional-vip-default-route-drift',
    (n) => {
      converge(n, dualStack());
      n.gateways.set(netns, { 4: '10.201.0.1', 6: '2001:db8:201::99' });
    },
    dualStack(),
  ],
  [
    'crash-after-add-port',
    (n) => {
      n.haproxy.clear();
      n.configs.clear();
      n.stateDirs.clear();
      n.deleteNetnsByHand(netns);
      n.where.set(iface, 'host');
      n.netnsEpoch.set(netns, 9);
    },
    desired(),
  ],
];

describe('golden plans', () => {
  for (const [name, mutate, d, config] of cases) {
    it(name, async () => {
      const node = name === 'create-on-empty-node' ? new FakeNode() : converged();
      mutate(node);
      const text = `${plan(node, d, config).join('\n')}\n`;
      await expect(text).toMatchFileSnapshot(`plans/${name}.txt`);
    });
  }
});

describe('convergence', () => {
  for (const [name, mutate, d, config] of cases) {
    it(`${name}: plan, apply, plan again is empty`, () => {
      const node = name === 'create-on-empty-node' ? new FakeNode() : converged();
      mutate(node);
      converge(node, d, config);
      expect(plan(node, d, config)).toEqual([]);
    });
  }

  it('keeps the same HAProxy across a config change (reload, not restart)', () => {
    const node = converged();
    const pid = node.haproxy.get(netns)?.pid;
    converge(node, desired(), 'cfg v2\n');
    expect(node.haproxy.get(netns)?.pid).toBe(pid);
    expect(node.reloads).toBe(1);
  });

  it('deleting leaves nothing behind', () => {
    const node = converged();
    converge(node, undefined);
    expect([node.netns.size, node.ports.size, node.haproxy.size, node.stateDirs.size]).toEqual([0, 0, 0, 0]);
  });
});
