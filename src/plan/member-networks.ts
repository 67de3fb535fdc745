// Pure: the member-network ports of a load balancer (DESIGN §8) against what is on the node, as the VIP port
// is planned in plan.ts: an internal OVS port per network, moved into the netns and given its address and
// routes (both observed: one deleted by hand comes back within a resync); a port of a network no longer in the
// spec is deleted, and so is every one when the load balancer goes.
import type { DesiredLoadBalancer, DesiredMemberNetwork } from '../desired/model.js';
import type { Action } from './actions.js';
import type { ObservedLoadBalancer, ObservedMemberPort, ObservedRoute as Route } from './observed.js';

export function planMemberNetworks(d: DesiredLoadBalancer, o: ObservedLoadBalancer, netnsMissing: boolean): Action[] {
  const actions: Action[] = [];
  const wanted = new Set((d.memberNetworks ?? []).map((n) => n.iface));
  for (const n of d.memberNetworks ?? []) actions.push(...planOne(d, n, o, netnsMissing));
  for (const m of o.memberPorts ?? []) if (!wanted.has(m.port.iface)) actions.push({ kind: 'ovs.deletePort', iface: m.port.iface });
  return actions;
}

/** Every member-network port of a load balancer that is going away. */
export function planDeleteMemberNetworks(o: ObservedLoadBalancer): Action[] {
  return (o.memberPorts ?? []).map((m): Action => ({ kind: 'ovs.deletePort', iface: m.port.iface }));
}

function planOne(d: DesiredLoadBalancer, n: DesiredMemberNetwork, o: ObservedLoadBalancer, netnsMissing: boolean): Action[] {
  const { netns } = d.names;
  const actions: Action[] = [];
  const row: ObservedMemberPort | undefined = o.memberPorts?.find((m) => m.port.iface === n.iface);
  const link = netnsMissing ? undefined : o.netns?.otherLinks?.find((l) => l.name === n.iface);
  const addPort = (recreate: boolean): Action => ({
    kind: 'ovs.addPort',
    bridge: n.bridge,
    iface: n.iface,
    lb: d.key,
    mac: n.mac,
    ...(n.vlan === undefined ? {} : { vlan: n.vlan }),
    recreate,
    network: n.name,
  });
  let needMove = false;
  if (row === undefined) {
    actions.push(addPort(false));
    needMove = link === undefined;
  } else if (row.port.bridge !== n.bridge) {
    actions.push({ kind: 'ovs.deletePort', iface: n.iface }, addPort(false));
    needMove = true;
  } else if (link === undefined && !row.inHost) {
    // The row is there but its device is gone (deleted by hand, or with its netns): only a new port brings it back.
    actions.push(addPort(true));
    needMove = true;
  } else {
    if (link === undefined) needMove = true;
    if (row.port.lb !== d.key || row.port.mac !== n.mac || row.port.tag !== n.vlan) actions.push(addPort(false));
  }
  if (needMove) actions.push({ kind: 'link.moveToNetns', iface: n.iface, netns });

  const cidr = `${n.address}/${n.prefixLength}`;
  const configured = needMove ? undefined : link;
  const extra = (configured?.addresses ?? []).filter((a) => a !== cidr);
  // Its routes, as observed like its addresses: one deleted by hand comes back, one the spec lost goes.
  const routes = configured?.routes ?? [];
  const extraRoutes = routes.filter((r) => !n.routes.some((w) => sameRoute(r, w)));
  const right =
    configured?.up === true &&
    configured.mac === n.mac &&
    (n.mtu === undefined || configured.mtu === n.mtu) &&
    configured.addresses.includes(cidr) &&
    extra.length === 0 &&
    n.routes.every((w) => routes.some((r) => sameRoute(r, w))) &&
    extraRoutes.length === 0;
  if (!right) {
    actions.push({
      kind: 'link.configure',
      netns,
      iface: n.iface,
      mac: n.mac,
      ...(n.mtu === undefined ? {} : { mtu: n.mtu }),
      addresses: [cidr],
      removeAddresses: extra,
      gateways: [],
      ...(n.routes.length === 0 ? {} : { routes: n.routes }),
      ...(extraRoutes.length === 0 ? {} : { removeRoutes: extraRoutes }),
    });
  }
  return actions;
}

const sameRoute = (a: Route, b: Route): boolean => a.destination === b.destination && a.gateway === b.gateway;
