// Topology and placement of a load balancer (DESIGN §6): the cross-object rules of spec.topology,
// spec.placement and spec.vrrp, and the ACTIVE_STANDBY part of the desired model. Pure.
//
// An ACTIVE_STANDBY load balancer is the same model on both of its nodes but for the node's own side of the
// pair: its slot in the placement (which VRRP address its port holds, its VRRP priority, its MAC). The model is
// built for the agent's node (BuildOptions.nodeName); a node that is not in the placement does not serve it.
//
// The placement is spec.placement.nodes, else, in Kubernetes mode, the scheduler's status.placement.nodes (the
// `scheduled` map): slot i is the i-th node of whichever of the two applies, and owns spec.vrrp.addresses[i].
import { createHash } from 'node:crypto';
import { DEFAULT_ADVERT_INTERVAL_MS } from '../api/v1alpha1/schemas.js';
import type { ApiObject, LbKey } from '../api/v1alpha1/types.js';
import { canonicalIp, inPrefix, networkOf, parseIp } from './addresses.js';
import { SPEC_DEFAULTS } from './defaults.js';
import type { DesiredHa } from './model.js';
import type { Problems } from './object-index.js';

/** The two slots of an ACTIVE_STANDBY placement: 0 is the preferred MASTER. */
export const PAIR_SIZE = 2;

/**
 * The scheduler's placements (status.placement.nodes) of the load balancers without spec.placement.nodes, in
 * Kubernetes mode; undefined in file mode, where nothing places a load balancer but its spec.
 */
export type ScheduledPlacements = ReadonlyMap<LbKey, readonly string[]>;

const keyOfLb = (lb: ApiObject<'LoadBalancer'>): LbKey => `${lb.metadata.namespace}/${lb.metadata.name}`;

/** The placement in force and where it comes from: spec.placement.nodes, else the scheduler's. */
function effective(lb: ApiObject<'LoadBalancer'>, scheduled: ScheduledPlacements | undefined): { nodes: readonly string[]; path: string } | undefined {
  const explicit = lb.spec.placement?.nodes;
  if (explicit !== undefined) return { nodes: explicit, path: '/spec/placement/nodes' };
  const recorded = scheduled?.get(keyOfLb(lb));
  return recorded === undefined || recorded.length === 0 ? undefined : { nodes: recorded, path: '/status/placement/nodes' };
}

export function checkTopology(lb: ApiObject<'LoadBalancer'>, problems: Problems, scheduled?: ScheduledPlacements): void {
  const { topology = 'SINGLE', vrrp, vip } = lb.spec;
  const placed = effective(lb, scheduled);
  const nodes = placed?.nodes;
  if (topology === 'SINGLE') {
    if (nodes !== undefined && nodes.length > 1) {
      problems.add(
        lb,
        'InvalidSpec',
        `a SINGLE load balancer is served by one node (got ${nodes.length}); topology ACTIVE_STANDBY takes two`,
        '/spec/placement/nodes',
      );
    }
    if (vrrp !== undefined) problems.add(lb, 'InvalidSpec', 'is only allowed with topology ACTIVE_STANDBY', '/spec/vrrp');
    return;
  }
  // ACTIVE_STANDBY. Not placed yet where a scheduler places it (Kubernetes mode): not a problem, it is served
  // nowhere until then.
  if (nodes === undefined && scheduled !== undefined) {
    // Nothing to check about the nodes.
  } else if (nodes === undefined || nodes.length !== PAIR_SIZE) {
    problems.add(
      lb,
      'InvalidSpec',
      `ACTIVE_STANDBY needs two nodes, the first the preferred MASTER (got ${nodes?.length ?? 0})`,
      placed === undefined ? '/spec/placement' : placed.path,
    );
  } else if (nodes[0] === nodes[1]) {
    problems.add(lb, 'InvalidSpec', `the two nodes of ACTIVE_STANDBY must differ (both are "${nodes[0] ?? ''}")`, `${placed!.path}/1`);
  }
  if (vip.mac !== undefined) {
    problems.add(
      lb,
      'InvalidSpec',
      "is not allowed with ACTIVE_STANDBY: each node's VIP port has its own MAC, derived from the name and the node",
      '/spec/vip/mac',
    );
  }
  const addresses = vrrp?.addresses;
  if (addresses === undefined || addresses.length !== PAIR_SIZE) {
    problems.add(
      lb,
      'InvalidSpec',
      `ACTIVE_STANDBY needs two VRRP addresses on the VIP's segment, one per node of the placement (got ${addresses?.length ?? 0})`,
      addresses === undefined ? '/spec/vrrp' : '/spec/vrrp/addresses',
    );
    return;
  }
  const vipIp = parseIp(vip.address);
  if (vipIp === undefined) return; // checkVip reports it
  const prefixLength = vip.prefixLength ?? SPEC_DEFAULTS.prefixLength[vipIp.family];
  const taken = new Map<string, string>([[canonicalIp(vip.address), '/spec/vip/address']]);
  for (const [i, a] of (lb.spec.additionalVips ?? []).entries()) taken.set(canonicalIp(a.address), `/spec/additionalVips/${i}/address`);
  addresses.forEach((given, i) => {
    const path = `/spec/vrrp/addresses/${i}`;
    const ip = parseIp(given);
    if (ip === undefined) {
      problems.add(lb, 'InvalidSpec', `must be an IPv4 or IPv6 address (got "${given}")`, path);
      return;
    }
    if (!inPrefix(ip, vipIp, prefixLength)) {
      problems.add(lb, 'InvalidSpec', `must be inside the VIP's prefix ${networkOf(vipIp, prefixLength)} (got "${given}")`, path);
      return;
    }
    const address = canonicalIp(given);
    const first = taken.get(address);
    if (first !== undefined) problems.add(lb, 'InvalidSpec', `must differ from ${first} (both are ${address})`, path);
    else taken.set(address, path);
  });
}

/** The VRRP addresses of an ACTIVE_STANDBY load balancer with their JSON paths (for the segment-wide uniqueness check). */
export function vrrpAddresses(lb: ApiObject<'LoadBalancer'>): [string, string][] {
  if (lb.spec.topology !== 'ACTIVE_STANDBY') return [];
  return (lb.spec.vrrp?.addresses ?? []).map((a, i): [string, string] => [a, `/spec/vrrp/addresses/${i}`]);
}

/**
 * The nodes of the placement in force (spec.placement.nodes, else the scheduler's), if any: an agent serves what
 * is placed on it, or, in file mode, what is placed nowhere.
 */
export function placementNodes(lb: ApiObject<'LoadBalancer'>, scheduled?: ScheduledPlacements): string[] | undefined {
  const nodes = effective(lb, scheduled)?.nodes;
  return nodes === undefined ? undefined : [...nodes];
}

/**
 * spec.vrrp.virtualRouterId's default: 1–255 from sha256 of the key. A collision between two load balancers
 * is harmless (each instance lives in its own netns and talks unicast to its own peer), so it only has to be
 * stable.
 */
export function defaultVirtualRouterId(lbKey: string): number {
  return (createHash('sha256').update(lbKey).digest().readUInt32BE(0) % 255) + 1;
}

/**
 * The MAC of one node's VIP port: the two nodes of a pair are on one segment, so each port has its own
 * (`fa:16:3e` and three bytes of sha256 of the key and the node name), stable across restarts. Per node, not
 * per slot: a node put in another's slot must not reuse its MAC, which switches and the peer's neighbour
 * table still place at the old node (the peer's adverts would go there, and the newcomer would take the VIP).
 */
export function nodeMac(lbKey: string, nodeName: string): string {
  const hex = createHash('sha256').update(`${lbKey}#node-${nodeName}`).digest('hex').slice(0, 6);
  return `fa:16:3e:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}

/**
 * The ACTIVE_STANDBY part of the model on `nodeName` (checkTopology found no problem); undefined for SINGLE
 * or for a node outside the placement. The placement is the one in force (explicit, else the scheduler's): a
 * scheduler-placed pair gets its VRRP side the same way, slot i owning spec.vrrp.addresses[i].
 */
export function desiredHa(lb: ApiObject<'LoadBalancer'>, key: string, nodeName: string | undefined, scheduled?: ScheduledPlacements): DesiredHa | undefined {
  const { topology, vrrp } = lb.spec;
  if (topology !== 'ACTIVE_STANDBY' || nodeName === undefined) return undefined;
  const nodes = effective(lb, scheduled)?.nodes ?? [];
  const slot = nodes.indexOf(nodeName);
  const addresses = (vrrp?.addresses ?? []).map(canonicalIp);
  const peerSlot = 1 - slot;
  const peer = nodes[peerSlot];
  const local = addresses[slot];
  const peerAddress = addresses[peerSlot];
  if ((slot !== 0 && slot !== 1) || peer === undefined || local === undefined || peerAddress === undefined) return undefined;
  return {
    node: nodeName,
    slot,
    peer,
    localAddress: local,
    peerAddress,
    advertIntervalMs: vrrp?.advertIntervalMs ?? DEFAULT_ADVERT_INTERVAL_MS,
    virtualRouterId: vrrp?.virtualRouterId ?? defaultVirtualRouterId(key),
  };
}
