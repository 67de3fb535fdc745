// Assembly of one load balancer's desired model from its objects, with defaults filled in. Only called for load
// balancers without problems (checks.ts found none), so every reference resolves.
import { objectId, SSL_CLIENT_HEADERS, type AnyObject, type ApiObject, type LbKey } from '../api/v1alpha1/types.js';
import { canonicalCidr, canonicalIp, parseIp } from './addresses.js';
import { SPEC_DEFAULTS } from './defaults.js';
import type {
  DesiredHealthMonitor,
  DesiredL7Policy,
  DesiredL7Rule,
  DesiredListener,
  DesiredListenerTls,
  DesiredLoadBalancer,
  DesiredMember,
  DesiredMemberTls,
  DesiredPool,
  DesiredVip,
  DesiredVipAddress,
} from './model.js';
import { desiredMemberNetworks, memberNetworkOf } from './member-networks.js';
import { derivedMac, nodeNames } from './names.js';
import { compareStrings, keyOf, type Index } from './object-index.js';
import { desiredHa, nodeMac, placementNodes, type ScheduledPlacements } from './topology.js';

/** A load balancer's objects below it, kind by kind (as in the Index). */
export type Tree = Omit<Index, 'loadBalancers' | 'byId'>;

/** Each load balancer's children, grouped in one pass (still in name order). */
export function treesByOwner(ix: Index, owners: Map<string, LbKey>): Map<LbKey, Tree> {
  const trees = new Map<LbKey, Tree>();
  const treeOf = (o: AnyObject): Tree | undefined => {
    const owner = owners.get(objectId(o));
    if (owner === undefined) return undefined;
    let tree = trees.get(owner);
    if (tree === undefined) {
      tree = { listeners: [], pools: [], members: [], healthMonitors: [], l7Policies: [], l7Rules: [] };
      trees.set(owner, tree);
    }
    return tree;
  };
  for (const o of ix.listeners) treeOf(o)?.listeners.push(o);
  for (const o of ix.pools) treeOf(o)?.pools.push(o);
  for (const o of ix.members) treeOf(o)?.members.push(o);
  for (const o of ix.healthMonitors) treeOf(o)?.healthMonitors.push(o);
  for (const o of ix.l7Policies) treeOf(o)?.l7Policies.push(o);
  for (const o of ix.l7Rules) treeOf(o)?.l7Rules.push(o);
  return trees;
}

export function assemble(
  lb: ApiObject<'LoadBalancer'>,
  tree: Tree | undefined,
  defaultBridge: string,
  listenerTls: ReadonlyMap<string, DesiredListenerTls>,
  memberTls: ReadonlyMap<string, DesiredMemberTls>,
  nodeName?: string,
  scheduled?: ScheduledPlacements,
): DesiredLoadBalancer {
  const { namespace, name } = lb.metadata;
  const { listeners = [], pools = [], members = [], healthMonitors = [], l7Policies = [], l7Rules = [] } = tree ?? {};
  const memberNetworks = desiredMemberNetworks(lb, defaultBridge);
  const onNetwork = (m: DesiredMember, spec: ApiObject<'Member'>['spec']): DesiredMember => {
    const network = memberNetworks === undefined ? undefined : memberNetworkOf(lb, spec);
    return network === undefined ? m : { ...m, network };
  };
  const key = keyOf(lb);
  const placement = placementNodes(lb, scheduled);
  const ha = desiredHa(lb, key, nodeName, scheduled);
  const vip = desiredVip(lb);
  return {
    key,
    namespace,
    name,
    names: nodeNames(namespace, name),
    bridge: lb.spec.vip.bridge ?? defaultBridge,
    vip: ha === undefined ? vip : { ...vip, mac: nodeMac(key, ha.node) },
    adminStateUp: lb.spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp,
    ...(placement === undefined ? {} : { placement }),
    ...(ha === undefined ? {} : { ha }),
    listeners: listeners.map((l) =>
      desiredListener(
        l,
        listenerTls.get(objectId(l)),
        desiredL7Policies(
          l7Policies.filter((p) => p.spec.listener === l.metadata.name),
          l7Rules,
        ),
      ),
    ),
    pools: pools.map((p) =>
      desiredPool(
        p,
        members.filter((m) => m.spec.pool === p.metadata.name),
        healthMonitors.find((hm) => hm.spec.pool === p.metadata.name),
        memberTls.get(objectId(p)),
        onNetwork,
      ),
    ),
    ...(memberNetworks === undefined ? {} : { memberNetworks }),
  };
}

function desiredVipAddress(a: { address: string; prefixLength?: number; gateway?: string }): DesiredVipAddress {
  const family = parseIp(a.address)?.family ?? 4;
  return {
    address: canonicalIp(a.address),
    family,
    prefixLength: a.prefixLength ?? SPEC_DEFAULTS.prefixLength[family],
    ...(a.gateway === undefined ? {} : { gateway: canonicalIp(a.gateway) }),
  };
}

function desiredVip(lb: ApiObject<'LoadBalancer'>): DesiredVip {
  const { vip, additionalVips = [] } = lb.spec;
  return {
    ...desiredVipAddress(vip),
    ...(additionalVips.length === 0 ? {} : { additional: additionalVips.map(desiredVipAddress) }),
    mac: vip.mac?.toLowerCase() ?? derivedMac(lb.metadata.namespace, lb.metadata.name),
    ...(vip.vlan === undefined ? {} : { vlan: vip.vlan }),
    ...(vip.mtu === undefined ? {} : { mtu: vip.mtu }),
  };
}

function desiredListener(l: ApiObject<'Listener'>, tls: DesiredListenerTls | undefined, l7Policies: DesiredL7Policy[]): DesiredListener {
  const { spec } = l;
  const headers = spec.insertHeaders ?? {};
  return {
    name: l.metadata.name,
    protocol: spec.protocol,
    port: spec.port,
    ...(spec.defaultPool === undefined ? {} : { defaultPool: spec.defaultPool }),
    connectionLimit: spec.connectionLimit ?? SPEC_DEFAULTS.connectionLimit,
    timeouts: { ...SPEC_DEFAULTS.timeouts, ...spec.timeouts },
    adminStateUp: spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp,
    insertHeaders: {
      forwardedFor: headers['X-Forwarded-For'] ?? SPEC_DEFAULTS.insertHeader,
      forwardedPort: headers['X-Forwarded-Port'] ?? SPEC_DEFAULTS.insertHeader,
      forwardedProto: headers['X-Forwarded-Proto'] ?? SPEC_DEFAULTS.insertHeader,
      ...(spec.protocol === 'TERMINATED_HTTPS' && SSL_CLIENT_HEADERS.some((h) => headers[h] === true)
        ? { sslClient: SSL_CLIENT_HEADERS.filter((h) => headers[h] === true) }
        : {}),
    },
    allowedCidrs: [...new Set((spec.allowedCidrs ?? []).map((c) => canonicalCidr(c) ?? c))],
    ...(tls === undefined ? {} : { tls }),
    l7Policies,
  };
}

/**
 * One listener's policies as HAProxy evaluates them: by position (omitted = last), ties by name, numbered
 * 1..n. Like Octavia, a policy without an enabled rule is not rendered at all (it matches nothing), and
 * neither is an admin-down one.
 */
/** Behind every position the schema admits (at most 2^31 - 1). */
const LAST = Number.MAX_SAFE_INTEGER;

function desiredL7Policies(policies: ApiObject<'L7Policy'>[], rules: ApiObject<'L7Rule'>[]): DesiredL7Policy[] {
  return policies
    .filter((p) => p.spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp)
    .map((p) => ({
      policy: p,
      rules: rules.filter((r) => r.spec.l7Policy === p.metadata.name && (r.spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp)),
    }))
    .filter(({ rules: enabled }) => enabled.length > 0)
    .sort((a, b) => (a.policy.spec.position ?? LAST) - (b.policy.spec.position ?? LAST) || compareStrings(a.policy.metadata.name, b.policy.metadata.name))
    .map(({ policy, rules: enabled }, i) => desiredL7Policy(policy, i + 1, enabled.map(desiredL7Rule)));
}

function desiredL7Policy(p: ApiObject<'L7Policy'>, position: number, rules: DesiredL7Rule[]): DesiredL7Policy {
  const { spec } = p;
  return {
    name: p.metadata.name,
    action: spec.action,
    position,
    ...(spec.redirectPool === undefined ? {} : { redirectPool: spec.redirectPool }),
    ...(spec.redirectUrl === undefined ? {} : { redirectUrl: spec.redirectUrl }),
    ...(spec.redirectPrefix === undefined ? {} : { redirectPrefix: spec.redirectPrefix }),
    redirectHttpCode: spec.redirectHttpCode ?? SPEC_DEFAULTS.redirectHttpCode,
    rules,
  };
}

function desiredL7Rule(r: ApiObject<'L7Rule'>): DesiredL7Rule {
  const { spec } = r;
  return {
    name: r.metadata.name,
    type: spec.type,
    compareType: spec.compareType,
    ...(spec.key === undefined ? {} : { key: spec.key }),
    value: spec.value,
    invert: spec.invert ?? SPEC_DEFAULTS.invert,
  };
}

function desiredPool(
  p: ApiObject<'Pool'>,
  members: ApiObject<'Member'>[],
  monitor: ApiObject<'HealthMonitor'> | undefined,
  memberTls: DesiredMemberTls | undefined,
  onNetwork: (m: DesiredMember, spec: ApiObject<'Member'>['spec']) => DesiredMember,
): DesiredPool {
  return {
    name: p.metadata.name,
    protocol: p.spec.protocol,
    lbAlgorithm: p.spec.lbAlgorithm,
    adminStateUp: p.spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp,
    ...(p.spec.sessionPersistence === undefined ? {} : { sessionPersistence: { ...p.spec.sessionPersistence } }),
    tlsToMembers: p.spec.tls?.enabled === true,
    ...(memberTls === undefined ? {} : { memberTls }),
    members: members.map((m) => onNetwork(desiredMember(m), m.spec)),
    ...(monitor === undefined ? {} : { healthMonitor: desiredHealthMonitor(monitor) }),
  };
}

function desiredMember(m: ApiObject<'Member'>): DesiredMember {
  const { spec } = m;
  return {
    name: m.metadata.name,
    address: canonicalIp(spec.address),
    port: spec.port,
    weight: spec.weight ?? SPEC_DEFAULTS.weight,
    backup: spec.backup ?? SPEC_DEFAULTS.backup,
    adminStateUp: spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp,
    ...(spec.monitorAddress === undefined ? {} : { monitorAddress: canonicalIp(spec.monitorAddress) }),
    ...(spec.monitorPort === undefined ? {} : { monitorPort: spec.monitorPort }),
  };
}

function desiredHealthMonitor(hm: ApiObject<'HealthMonitor'>): DesiredHealthMonitor {
  const { spec } = hm;
  return {
    name: hm.metadata.name,
    type: spec.type,
    delay: spec.delay,
    timeout: spec.timeout,
    maxRetries: spec.maxRetries,
    maxRetriesDown: spec.maxRetriesDown ?? SPEC_DEFAULTS.maxRetriesDown,
    httpMethod: spec.httpMethod ?? SPEC_DEFAULTS.httpMethod,
    urlPath: spec.urlPath ?? SPEC_DEFAULTS.urlPath,
    expectedCodes: spec.expectedCodes ?? SPEC_DEFAULTS.expectedCodes,
    ...(spec.httpVersion === undefined ? {} : { httpVersion: spec.httpVersion }),
    ...(spec.domainName === undefined ? {} : { domainName: spec.domainName }),
    adminStateUp: spec.adminStateUp ?? SPEC_DEFAULTS.adminStateUp,
  };
}
