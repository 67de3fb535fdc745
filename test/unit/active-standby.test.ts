// ACTIVE_STANDBY (issue 16, DESIGN §6) without a node: spec validation and its messages, the model each node of
// the pair gets, what the planner does with keepalived (new, drift, dead, moved away, topology changed), the
// HAProxy config of a pair, status.nodes, and an agent serving only what is placed on its --node-name.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { Controller } from '../../src/controller/controller.js';
import { buildDesired } from '../../src/desired/build.js';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import { nodeNames } from '../../src/desired/names.js';
import type { Action } from '../../src/plan/actions.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import { parseShowPeers } from '../../src/plan/haproxy-peers.js';
import { renderKeepalivedFor } from '../../src/plan/keepalived-config.js';
import { PAIR_STOP_GRACE_MS, planLoadBalancer } from '../../src/plan/plan.js';
import { nodeStatuses, type OutcomeView } from '../../src/status/compute.js';
import { formatNodes, formatStatusTable } from '../../src/cli/status.js';
import { leavesMaster } from '../../src/cli/kubernetes-mode.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { FakeNode, FakeNodeDriver } from '../support/fake-node.js';
import { lb, listener, member, pool } from './fixtures/objects.js';

const PAIR = { topology: 'ACTIVE_STANDBY' as const, placement: { nodes: ['node1', 'node2'] }, vrrp: { addresses: ['192.0.2.2', '192.0.2.3'] } };

function stack(more: Record<string, unknown> = PAIR, namespace = 'default', vip = '192.0.2.10'): AnyObject[] {
  return [
    lb('web', { address: vip }, more, namespace),
    listener('http', { defaultPool: 'app' }, namespace),
    pool('app', { sessionPersistence: { type: 'SOURCE_IP' } }, namespace),
    member('app-1', {}, namespace),
  ];
}

function build(objects: AnyObject[], nodeName?: string) {
  return buildDesired(objects, { defaultBridge: 'br-int', ...(nodeName === undefined ? {} : { nodeName }) });
}

function problems(more: Record<string, unknown>): string[] {
  return build(stack(more), 'node1').problems.map((p) => `${p.path ?? ''}: ${p.message}`);
}

describe('validation', () => {
  it('accepts a pair, and a SINGLE load balancer placed on one node', () => {
    expect(problems(PAIR)).toEqual([]);
    expect(problems({ placement: { nodes: ['node1'] } })).toEqual([]);
  });

  it('says what is wrong with a pair, on the field at fault', () => {
    expect(problems({ topology: 'ACTIVE_STANDBY' })).toEqual([
      '/spec/placement: ACTIVE_STANDBY needs two nodes, the first the preferred MASTER (got 0)',
      "/spec/vrrp: ACTIVE_STANDBY needs two VRRP addresses on the VIP's segment, one per node of the placement (got 0)",
    ]);
    expect(problems({ ...PAIR, placement: { nodes: ['node1', 'node1'] } })).toEqual([
      '/spec/placement/nodes/1: the two nodes of ACTIVE_STANDBY must differ (both are "node1")',
    ]);
    expect(problems({ ...PAIR, vrrp: { addresses: ['192.0.2.2', '198.51.100.3'] } })).toEqual([
      '/spec/vrrp/addresses/1: must be inside the VIP\'s prefix 192.0.2.0/24 (got "198.51.100.3")',
    ]);
    expect(problems({ ...PAIR, vrrp: { addresses: ['192.0.2.2', '192.0.2.10'] } })).toEqual([
      '/spec/vrrp/addresses/1: must differ from /spec/vip/address (both are 192.0.2.10)',
    ]);
    expect(problems({ ...PAIR, vrrp: { addresses: ['192.0.2.2', '192.0.2.2'] } })).toEqual([
      '/spec/vrrp/addresses/1: must differ from /spec/vrrp/addresses/0 (both are 192.0.2.2)',
    ]);
    expect(build([lb('web', { mac: 'fa:16:3e:00:00:01' }, PAIR)], 'node1').problems.map((p) => p.path)).toEqual(['/spec/vip/mac']);
  });

  it('refuses pair settings on a SINGLE load balancer', () => {
    expect(problems({ placement: { nodes: ['node1', 'node2'] } })).toEqual([
      '/spec/placement/nodes: a SINGLE load balancer is served by one node (got 2); topology ACTIVE_STANDBY takes two',
    ]);
    expect(problems({ vrrp: { advertIntervalMs: 100 } })).toEqual(['/spec/vrrp: is only allowed with topology ACTIVE_STANDBY']);
  });

  it('a VRRP address is unique on the segment like a VIP', () => {
    const other = lb('other', { address: '192.0.2.3' }, {}, 'default');
    const found = build([...stack(), other], 'node1').problems.map((p) => `${p.name}${p.path}: ${p.message}`);
    expect(found).toEqual(['web/spec/vrrp/addresses/1: VRRP address 192.0.2.3 on bridge br-int (untagged) is already used by load balancer default/other']);
  });

  it('the schema bounds the VRRP fields, with messages that say how', () => {
    const doc = {
      ...stack()[0],
      spec: { vip: { address: '192.0.2.10' }, ...PAIR, vrrp: { addresses: ['192.0.2.2'], advertIntervalMs: 205, virtualRouterId: 0 } },
    };
    const issues = (d: unknown) => {
      const r = validateObject(d);
      return r.ok ? [] : r.issues;
    };
    expect(issues(doc).map((i) => `${i.path}: ${i.message}`)).toEqual([
      '/spec/vrrp/addresses: must have at least 2 items (got 1)',
      '/spec/vrrp/advertIntervalMs: must be a multiple of 10 (got 205)',
      '/spec/vrrp/virtualRouterId: must be between 1 and 255 (got 0)',
    ]);
    const bad = { ...stack()[0], spec: { vip: { address: '192.0.2.10' }, topology: 'ACTIVE_PASSIVE', placement: { nodes: ['Node 1'] } } };
    expect(issues(bad).map((i) => i.path)).toEqual(['/spec/topology', '/spec/placement/nodes/0']);
  });
});

describe('the model of each node of a pair', () => {
  it('gives each placed node its slot, VRRP address, peer and MAC; a node outside the placement gets no side', () => {
    const [one, two, three] = ['node1', 'node2', 'node3'].map((n) => build(stack(), n).lbs.get('default/web')!);
    expect(one?.ha).toMatchObject({ node: 'node1', slot: 0, peer: 'node2', localAddress: '192.0.2.2', peerAddress: '192.0.2.3', advertIntervalMs: 200 });
    expect(two?.ha).toMatchObject({ node: 'node2', slot: 1, peer: 'node1', localAddress: '192.0.2.3', peerAddress: '192.0.2.2' });
    expect(one?.ha?.virtualRouterId).toBe(two?.ha?.virtualRouterId);
    expect(one?.vip.mac).not.toBe(two?.vip.mac);
    expect(three?.ha).toBeUndefined();
    expect(three?.placement).toEqual(['node1', 'node2']);
  });

  it('leaves a SINGLE load balancer exactly as it was', () => {
    const single = build(stack({}), 'node1').lbs.get('default/web');
    expect(single).not.toHaveProperty('ha');
    expect(single).not.toHaveProperty('placement');
    expect(single).toEqual(build(stack({})).lbs.get('default/web'));
  });
});

describe('the model of a pair the scheduler placed (Kubernetes mode: status.placement.nodes)', () => {
  const SCHEDULED = { topology: 'ACTIVE_STANDBY' as const, vrrp: { addresses: ['192.0.2.2', '192.0.2.3'] } };
  const on = (node: string, placed: string[] | undefined) =>
    buildDesired(stack(SCHEDULED), {
      defaultBridge: 'br-int',
      nodeName: node,
      scheduled: new Map(placed === undefined ? [] : [['default/web', placed]]),
    });

  it("builds each node's side from the recorded placement: slot i owns vrrp.addresses[i]", () => {
    const [a, b] = ['node1', 'node3'].map((n) => on(n, ['node3', 'node1']).lbs.get('default/web')!) as [DesiredLoadBalancer, DesiredLoadBalancer];
    expect(a.ha).toMatchObject({ node: 'node1', slot: 1, peer: 'node3', localAddress: '192.0.2.3', peerAddress: '192.0.2.2' });
    expect(b.ha).toMatchObject({ node: 'node3', slot: 0, peer: 'node1', localAddress: '192.0.2.2', peerAddress: '192.0.2.3' });
    expect(a.placement).toEqual(['node3', 'node1']);
    expect(on('node2', ['node3', 'node1']).lbs.get('default/web')?.ha).toBeUndefined();
  });

  it('is the same model as the explicit placement of the same nodes', () => {
    const explicit = build(stack({ ...SCHEDULED, placement: { nodes: ['node1', 'node2'] } }), 'node2').lbs.get('default/web')!;
    const scheduled = on('node2', ['node1', 'node2']).lbs.get('default/web')!;
    expect(scheduled.ha).toEqual(explicit.ha);
    expect(scheduled.vip).toEqual(explicit.vip);
    expect(renderKeepalivedFor(scheduled, KEEPALIVED_PATHS)).toBe(renderKeepalivedFor(explicit, KEEPALIVED_PATHS));
  });

  it('the survivor of a dead node keeps its slot: a new node in the other slot changes nothing in its keepalived config', () => {
    // node1 (slot 0, MASTER) died; the scheduler put node3 in its slot. node2's keepalived config is unchanged
    // (same addresses, same priority), so the agent neither reloads nor restarts it: the VIP it holds stays.
    const before = on('node2', ['node1', 'node2']).lbs.get('default/web')!;
    const after = on('node2', ['node3', 'node2']).lbs.get('default/web')!;
    expect(renderKeepalivedFor(after, KEEPALIVED_PATHS)).toBe(renderKeepalivedFor(before, KEEPALIVED_PATHS));
    expect(after.vip).toEqual(before.vip);
    expect(after.ha).toMatchObject({ slot: 1, peer: 'node3', localAddress: '192.0.2.3' });
    // Only HAProxy's peers section names the new node.
    const paths = { socket: '/s/haproxy.sock', stateFile: '/s/server-state', certsDir: '/s/certs', pingCheckCommand: '/p/ping-check.sh' };
    expect(renderHaproxyConfig(after, paths)).toContain('peers nslb\n    peer node2 192.0.2.3:1025\n    peer node3 192.0.2.2:1025\n');
  });

  it('not placed yet is no problem (the scheduler places it); a bad recorded placement is, on status.placement', () => {
    const unplaced = on('node1', undefined);
    expect(unplaced.problems).toEqual([]);
    expect(unplaced.lbs.get('default/web')?.ha).toBeUndefined();
    expect(on('node1', ['node1']).problems.map((p) => `${p.path ?? ''}: ${p.message}`)).toEqual([
      '/status/placement/nodes: ACTIVE_STANDBY needs two nodes, the first the preferred MASTER (got 1)',
    ]);
    // File mode has no scheduler: a pair without spec.placement is still an error there.
    expect(build(stack(SCHEDULED), 'node1').problems.map((p) => p.path)).toEqual(['/spec/placement']);
    // spec.placement.nodes wins over what is recorded.
    const explicit = buildDesired(stack({ ...SCHEDULED, placement: { nodes: ['node1', 'node2'] } }), {
      defaultBridge: 'br-int',
      nodeName: 'node1',
      scheduled: new Map([['default/web', ['node2', 'node3']]]),
    });
    expect(explicit.lbs.get('default/web')?.ha).toMatchObject({ slot: 0, peer: 'node2' });
  });
});

function modelOn(node: string): DesiredLoadBalancer {
  return build(stack(), node).lbs.get('default/web')!;
}

function modelOnSingle(): DesiredLoadBalancer {
  return build(stack({ placement: { nodes: ['node1'] } }), 'node1').lbs.get('default/web')!;
}

describe('the HAProxy config of a pair', () => {
  const paths = { socket: '/s/haproxy.sock', stateFile: '/s/server-state', certsDir: '/s/certs', pingCheckCommand: '/p/ping-check.sh' };
  it('binds the VIP non-locally, names this node as its local peer and shares stick tables with the other', () => {
    const config = renderHaproxyConfig(modelOn('node2'), paths);
    expect(config).toContain('    localpeer node2\n');
    expect(config).toContain('peers nslb\n    peer node1 192.0.2.2:1025\n    peer node2 192.0.2.3:1025\n');
    expect(config).toContain('    bind 192.0.2.10:80 transparent\n');
    expect(config).toMatch(/stick-table type ip size \w+ peers nslb\n/);
    const single = renderHaproxyConfig(build(stack({}), 'node1').lbs.get('default/web')!, paths);
    expect(single).not.toMatch(/peers|transparent|localpeer/);
  });
});

const KEEPALIVED_PATHS = {
  checkScript: '/opt/nslb/scripts/haproxy-vrrp-check.sh',
  notifyScript: '/opt/nslb/scripts/keepalived-notify.sh',
  haproxyPidfile: '/s/haproxy.pid',
  notifyFifo: '/s/keepalived.fifo',
  releaseFile: '/s/keepalived.release',
  healthFile: '/s/keepalived.health',
  stateFile: '/s/keepalived.state',
};

describe('planning a pair against a node', () => {
  const d = modelOn('node1');
  const { netns, iface } = d.names;
  const config = 'haproxy config\n';
  const keepalivedConfig = renderKeepalivedFor(d, KEEPALIVED_PATHS)!;
  // null: the load balancer is no longer desired.
  const plan = (node: FakeNode, wanted: DesiredLoadBalancer | null = d) => {
    const desired = wanted ?? undefined;
    return planLoadBalancer({
      netns,
      iface,
      ...(desired === undefined ? {} : { desired, config, ...(desired.ha === undefined ? {} : { keepalivedConfig }) }),
      observed: node.observe(netns, iface),
    });
  };
  const converge = (node: FakeNode, desired: DesiredLoadBalancer | null = d): Action[] => {
    const actions = plan(node, desired);
    for (const a of actions) node.apply(a);
    expect(plan(node, desired)).toEqual([]);
    return actions;
  };

  it('builds it in order: the port holds the VRRP address, HAProxy first, then keepalived', () => {
    const node = new FakeNode();
    const actions = converge(node);
    const kinds = actions.map((a) => a.kind);
    // The port holds the VRRP address (every VIP port announces its addresses when it comes up: drivers/netns).
    // The node that had this slot may still hold the VRRP address (it is leaving): probed for first.
    expect(actions.find((a) => a.kind === 'link.configure')).toMatchObject({ addresses: ['192.0.2.2/24'], probe: ['192.0.2.2'] });
    expect(kinds).toEqual([
      'netns.add',
      'ovs.addPort',
      'link.moveToNetns',
      'link.configure',
      'haproxy.writeConfig',
      'haproxy.start',
      'keepalived.writeConfig',
      'keepalived.start',
    ]);
    expect(node.links.get(iface)?.addresses).toEqual(['192.0.2.2/24']);
    expect(keepalivedConfig).toContain('unicast_src_ip 192.0.2.2');
    expect(keepalivedConfig).toContain('priority 100');
  });

  it('ends a planned handover that a dead process left unfinished (its marker long there), and only then', () => {
    const node = new FakeNode();
    converge(node);
    const observed = node.observe(netns, iface);
    const stale = planLoadBalancer({ netns, iface, desired: d, config, keepalivedConfig, observed: { ...observed, keepalivedHandoverStale: true } });
    expect(stale).toEqual([{ kind: 'keepalived.endHandover', netns }]);
  });

  it('a drained node (ha.leave) hands the MASTER role over once, from a keepalived that is right as it is; a BACKUP does nothing', () => {
    const node = new FakeNode();
    converge(node);
    const leaving: DesiredLoadBalancer = { ...d, ha: { ...d.ha!, leave: true } };
    // BACKUP (or no state reported yet): nothing to hand over.
    expect(plan(node, leaving)).toEqual([]);
    node.vrrp.set(netns, { state: 'BACKUP', priority: 100 });
    expect(plan(node, leaving)).toEqual([]);
    // MASTER: the switchover, last; applied, this node is BACKUP and the plan is empty.
    node.vrrp.set(netns, { state: 'MASTER', priority: 100 });
    expect(plan(node, leaving)).toEqual([{ kind: 'keepalived.switchOver', netns }]);
    expect(plan(node)).toEqual([]);
    converge(node, leaving);
    expect(node.switchOvers).toBe(1);
    expect(node.vrrp.get(netns)?.state).toBe('BACKUP');
    // A keepalived that needs something first (here an unfinished handover to undo): that first, no switchover.
    node.vrrp.set(netns, { state: 'MASTER', priority: 100 });
    const stale = planLoadBalancer({
      netns,
      iface,
      desired: leaving,
      config,
      keepalivedConfig,
      observed: { ...node.observe(netns, iface), keepalivedHandoverStale: true },
    });
    expect(stale).toEqual([{ kind: 'keepalived.endHandover', netns }]);
    // Its VRRP process dead (keepalived respawns it): nothing speaks VRRP to hand over.
    const observed = node.observe(netns, iface);
    const dead = planLoadBalancer({
      netns,
      iface,
      desired: leaving,
      config,
      keepalivedConfig,
      observed: { ...observed, keepalived: { ...observed.keepalived!, vrrpAlive: false } },
    });
    expect(dead).toEqual([]);
  });

  it('leaves the VIP keepalived added alone, but removes an address nobody asked for', () => {
    const node = new FakeNode();
    converge(node);
    node.links.get(iface)!.addresses.push('192.0.2.10/24');
    expect(plan(node)).toEqual([]);
    node.links.get(iface)!.addresses.push('192.0.2.99/24');
    const repair = plan(node);
    expect(repair).toMatchObject([{ kind: 'link.configure', removeAddresses: ['192.0.2.99/24'] }]);
    // The port still holds its VRRP address: nothing to probe for.
    expect(repair[0]).not.toHaveProperty('probe');
  });

  it('probes for the VRRP address again only when the port lost it (deleted by hand)', () => {
    const node = new FakeNode();
    converge(node);
    node.links.get(iface)!.addresses = ['192.0.2.10/24'];
    expect(plan(node)).toMatchObject([{ kind: 'link.configure', addresses: ['192.0.2.2/24'], probe: ['192.0.2.2'] }]);
  });

  it('a SINGLE load balancer probes for nothing (its VIP is its own; the planner refuses duplicates)', () => {
    const single = modelOnSingle();
    const actions = planLoadBalancer({
      netns: single.names.netns,
      iface: single.names.iface,
      desired: single,
      config,
      observed: new FakeNode().observe(single.names.netns, single.names.iface),
    });
    const configure = actions.find((a) => a.kind === 'link.configure');
    expect(configure).toBeDefined();
    expect(configure).not.toHaveProperty('probe');
  });

  it('repairs keepalived: killed → started; config edited → rewritten and reloaded; crash before the reload → reloaded', () => {
    const node = new FakeNode();
    converge(node);
    node.keepalived.delete(netns);
    expect(converge(node).map((a) => a.kind)).toEqual(['keepalived.start']);
    node.keepalivedConfigs.set(netns, 'edited by hand\n');
    expect(converge(node).map((a) => a.kind)).toEqual(['keepalived.writeConfig', 'keepalived.reload']);
    node.keepalivedPendingReload.add(netns);
    expect(converge(node).map((a) => a.kind)).toEqual(['keepalived.reload']);
  });

  it('a netns deleted by hand takes keepalived with it: replaced, not reloaded', () => {
    const node = new FakeNode();
    converge(node);
    node.deleteNetnsByHand(netns);
    const actions = converge(node).map((a) => a.kind);
    expect(actions.slice(-2)).toEqual(['keepalived.stop', 'keepalived.start']);
  });

  it('removing the load balancer stops keepalived first, so the peer takes the VIP at once', () => {
    const node = new FakeNode();
    converge(node);
    const removal = converge(node, null);
    expect(removal.map((a) => a.kind)).toEqual(['keepalived.stop', 'haproxy.stop', 'netns.delete', 'ovs.deletePort', 'stateDir.delete']);
    expect(node.keepalived.size).toBe(0);
    // HAProxy softly: the requests it was answering when the VIP left get their responses.
    expect(removal.find((a) => a.kind === 'haproxy.stop')).toMatchObject({ graceMs: PAIR_STOP_GRACE_MS });
  });

  it('ACTIVE_STANDBY → SINGLE: keepalived and its files go before the link gets the VIP; and back', () => {
    const node = new FakeNode();
    converge(node);
    const single = build(stack({}), 'node1').lbs.get('default/web')!;
    const kinds = converge(node, single).map((a) => a.kind);
    // What a handover cut short may have left (a SYN drop: its marker goes with keepalived's files) goes first.
    expect(kinds.slice(0, 3)).toEqual(['keepalived.endHandover', 'keepalived.stop', 'ovs.addPort']);
    expect(node.keepalivedConfigs.has(netns)).toBe(false);
    expect(node.links.get(iface)?.addresses).toEqual(['192.0.2.10/24']);
    // Back to a pair: the VIP stays on the link until keepalived starts (as BACKUP it removes it, as MASTER it
    // keeps it), so the load balancer does not stop serving in between.
    converge(node);
    expect(node.links.get(iface)?.addresses).toEqual(['192.0.2.10/24', '192.0.2.2/24']);
    expect(node.keepalived.has(netns)).toBe(true);
  });
});

describe('status.nodes', () => {
  const applied = modelOn('node1');
  const view = (o: Partial<OutcomeView>): OutcomeView => ({
    phase: 'active',
    applied,
    appliedGenerations: new Map(),
    netns: applied.names.netns,
    iface: applied.names.iface,
    stats: [],
    ...o,
  });

  it('says what this node knows: its own role, and the peer when their HAProxies talk', () => {
    const peers = [{ name: 'node2', established: true }];
    expect(nodeStatuses(view({ vrrp: { state: 'MASTER', priority: 100 }, peers }), 'node1', true)).toEqual([
      { name: 'node1', role: 'MASTER', ready: true },
      { name: 'node2', role: 'BACKUP', ready: true },
    ]);
    expect(nodeStatuses(view({ vrrp: { state: 'BACKUP', priority: 100 }, peers }), 'node1', true)).toEqual([
      { name: 'node2', role: 'MASTER', ready: true },
      { name: 'node1', role: 'BACKUP', ready: true },
    ]);
    // The peer is gone: its role is not guessed.
    expect(nodeStatuses(view({ vrrp: { state: 'MASTER', priority: 100 }, peers: [] }), 'node1', true)).toEqual([
      { name: 'node1', role: 'MASTER', ready: true },
      { name: 'node2', ready: false },
    ]);
    // keepalived in FAULT (its HAProxy failed the check): not ready, no role.
    expect(nodeStatuses(view({ vrrp: { state: 'FAULT', priority: 0 }, peers }), 'node1', true)?.[0]).toEqual({ name: 'node1', ready: false });
    const placedSingle = build(stack({ placement: { nodes: ['node1'] } }), 'node1').lbs.get('default/web')!;
    expect(nodeStatuses(view({ applied: placedSingle }), 'node1', true)).toEqual([{ name: 'node1', role: 'STANDALONE', ready: true }]);
    expect(nodeStatuses(view({ applied: build(stack({}), 'node1').lbs.get('default/web')! }), 'node1', true)).toBeUndefined();
  });

  it('nslb status shows a NODES column once a load balancer has nodes', () => {
    expect(
      formatNodes([
        { name: 'node1', role: 'MASTER', ready: true },
        { name: 'node2', ready: false },
      ]),
    ).toBe('node1 MASTER, node2 ? (not ready)');
    const file: StatusFile = {
      objects: [
        {
          apiVersion: 'nslb.dev/v1alpha1',
          kind: 'LoadBalancer',
          namespace: 'default',
          name: 'web',
          spec: {},
          status: {
            provisioningStatus: 'ACTIVE',
            operatingStatus: 'DEGRADED',
            conditions: [],
            vip: '192.0.2.10',
            netns: 'nslb-x',
            nodes: [
              { name: 'node1', role: 'MASTER', ready: true },
              { name: 'node2', ready: false },
            ],
          },
        },
      ],
      errors: [],
    };
    expect(formatStatusTable(file)).toBe(
      'NAME                      PROVISIONING  OPERATING  NODES                              DETAIL\n' +
        'loadbalancer default/web  ACTIVE        DEGRADED   node1 MASTER, node2 ? (not ready)  vip 192.0.2.10 netns nslb-x\n',
    );
  });

  it('parses HAProxy 2.6 show peers', () => {
    const text = [
      '0x55d0c7a4f0a0: [04/Dec/2026:18:00:00] id=nslb disabled=0 flags=0x6213 resync_timeout=<PAST> task_calls=6',
      '  2 remote peers:',
      '    0x55d0c7a51c20: id=node2(remote,active) addr=192.0.2.3:1025 last_status=ESTA last_hdshk=2s',
      '        reconnect=3s heartbeat=2s confirm=0 tx_hbt=1 rx_hbt=1 no_hbt=0 new_conn=1 proto_err=0 coll=0',
      '        flags=0x0 appctx:0x55d0c7b0a8e0 st0=7 st1=0 task_calls=7 state=EST',
      '    0x55d0c7a51e00: id=node3(remote,active) addr=192.0.2.4:1025 last_status=CONN last_hdshk=<NEVER>',
      '        reconnect=<PAST> heartbeat=<NEVER> confirm=0 tx_hbt=0 rx_hbt=0 no_hbt=0 new_conn=3 proto_err=0 coll=0',
      '        flags=0x0',
      '    0x55d0c7a51f00: id=node1(local,inactive) addr=192.0.2.2:1025 last_status=NONE last_hdshk=<NEVER>',
    ].join('\n');
    expect(parseShowPeers(text)).toEqual([
      { name: 'node2', established: true },
      { name: 'node3', established: false },
    ]);
  });
});

describe('an agent serves what is placed on its node', () => {
  const running: Controller[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
  });

  function agent(nodeName: string) {
    const node = new FakeNode();
    const driver = new FakeNodeDriver(node, `/var/lib/nslb-${nodeName}`);
    const published: StatusFile[] = [];
    const controller = new Controller({
      node: driver,
      stateDir: `/var/lib/nslb-${nodeName}`,
      bridge: 'br-int',
      nodeName,
      concurrency: 4,
      logger: pino({ level: 'silent' }, new Writable({ write: (_c, _e, done) => done() })),
      publish: async (file) => {
        published.push(file);
      },
    });
    running.push(controller);
    return { node, driver, controller, published };
  }

  it('placed on node1 and node2: node3 builds nothing and reports nothing about it; moved away, it is removed', async () => {
    const objects = [...stack(), ...stack({ placement: { nodes: ['node3'] } }, 'other', '192.0.2.20')];
    const [one, three] = [agent('node1'), agent('node3')];
    for (const a of [one, three]) {
      a.controller.setSnapshot(objects, []);
      await a.controller.initialSyncDone();
    }
    const netns = nodeNames('default', 'web').netns;
    expect(one.node.keepalived.has(netns)).toBe(true);
    expect(three.node.netns.has(netns)).toBe(false);
    expect(three.node.netns.has(nodeNames('other', 'web').netns)).toBe(true);
    expect(one.node.netns.has(nodeNames('other', 'web').netns)).toBe(false);
    const names = (a: typeof one) => a.controller.lastStatus?.objects.map((o) => `${o.kind}/${o.namespace}/${o.name}`) ?? [];
    expect(names(three).filter((n) => n.includes('/default/'))).toEqual([]);
    expect(names(one).filter((n) => n.includes('/other/'))).toEqual([]);
    expect(
      one.controller.statuses
        .get('LoadBalancer/default/web')
        ?.nodes?.map((n) => n.name)
        .sort(),
    ).toEqual(['node1', 'node2']);

    // The pair moves to node2 and node3: node1 stops keepalived first (the VIP goes to its peer), then the rest.
    const moved = [...stack({ ...PAIR, placement: { nodes: ['node2', 'node3'] } }), ...stack({ placement: { nodes: ['node3'] } }, 'other', '192.0.2.20')];
    one.controller.setSnapshot(moved, []);
    await one.controller.idle();
    const removal = one.driver.applied.slice(-5).map((a) => a.kind);
    expect(removal).toEqual(['keepalived.stop', 'haproxy.stop', 'netns.delete', 'ovs.deletePort', 'stateDir.delete']);
    expect(one.node.netns.has(netns)).toBe(false);
  });

  it('drained (Kubernetes mode: leaveMaster), a MASTER hands its role over before its slot moves; undrained, nothing more happens', async () => {
    const objects = [...stack(), ...stack(PAIR, 'other', '192.0.2.20')];
    const one = agent('node1');
    one.controller.setSnapshot(objects, []);
    await one.controller.initialSyncDone();
    const web = nodeNames('default', 'web').netns;
    const other = nodeNames('other', 'web').netns;
    one.node.vrrp.set(web, { state: 'MASTER', priority: 100 });
    one.node.vrrp.set(other, { state: 'BACKUP', priority: 100 });
    // Only the pairs leaveMaster names (the peer ready): default/web is MASTER here and switches; other/web is BACKUP.
    const leaving = new Set(['default/web', 'other/web']);
    one.controller.setSnapshot(objects, [], new Map(), { leaveMaster: (key) => leaving.has(key) });
    await one.controller.idle();
    expect(one.driver.applied.filter((a) => a.kind === 'keepalived.switchOver')).toEqual([{ kind: 'keepalived.switchOver', netns: web }]);
    expect(one.node.vrrp.get(web)?.state).toBe('BACKUP');
    // It keeps serving as BACKUP (the scheduler moves the slot); a resync changes nothing, nor does the undrain.
    await one.controller.resync();
    one.controller.setSnapshot(objects, []);
    await one.controller.idle();
    expect(one.node.switchOvers).toBe(1);
    expect(one.node.keepalived.has(web)).toBe(true);
  });
});

describe('leavesMaster (Kubernetes mode)', () => {
  const placed = { nodes: ['node1', 'node2'], topology: 'ACTIVE_STANDBY' as const, ready: ['node1', 'node2'] };
  it('only a pair on the drained node whose other node is reported ready', () => {
    expect(leavesMaster(placed, 'node1', true)).toBe(true);
    expect(leavesMaster(placed, 'node1', false)).toBe(false);
    expect(leavesMaster(placed, 'node3', true)).toBe(false);
    expect(leavesMaster({ ...placed, ready: ['node1'] }, 'node1', true)).toBe(false);
    expect(leavesMaster({ nodes: ['node1'], topology: 'SINGLE', ready: ['node1'] }, 'node1', true)).toBe(false);
    expect(leavesMaster(undefined, 'node1', true)).toBe(false);
  });
});
