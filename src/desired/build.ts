// Pure: validated objects → one desired model per load balancer, with defaults applied, references resolved
// and the cross-object rules of DESIGN §1 checked. The rules live here, not in the schemas, so that files
// and Kubernetes get the same answers.
//
// A problem anywhere in a load balancer's tree blocks the whole load balancer: it is left out of `lbs` and
// the node keeps serving whatever was applied last. Applying the healthy part would silently drop the
// broken listener or member, which is a worse surprise than an ERROR status.
//
// Invariant: every input object is in `owners` or has at least one entry in `problems`, so that status can
// say something true about each one.
import {
  KINDS,
  objectId,
  type AnyObject,
  type ApiObject,
  type Kind,
  type LbKey,
  type ListenerProtocol,
  type PoolProtocol,
} from '../api/v1alpha1/types.js';
import { bitsOf, canonicalIp, inPrefix, networkOf, parseIp } from './addresses.js';
import type {
  DesiredHealthMonitor,
  DesiredListener,
  DesiredLoadBalancer,
  DesiredMember,
  DesiredPool,
  DesiredVip,
} from './model.js';
import { derivedMac, lbKey, nodeNames } from './names.js';

export interface ObjectProblem {
  kind: Kind;
  namespace: string;
  name: string;
  reason: 'InvalidReference' | 'InvalidSpec' | 'NotSupported' | 'Conflict';
  message: string;
  /** JSON pointer to the offending field, e.g. `/spec/defaultPool`. */
  path?: string;
}

export interface DesiredState {
  /** Only load balancers whose whole subtree is valid, in namespace/name order. */
  lbs: Map<LbKey, DesiredLoadBalancer>;
  /**
   * Load balancers that exist in the input but have a problem in themselves or a child, in namespace/name
   * order, each with all its problems: the node keeps serving what was last applied.
   */
  blocked: Map<LbKey, ObjectProblem[]>;
  /** Every problem, including those of objects whose load balancer cannot be determined. */
  problems: ObjectProblem[];
  /** objectId() → the load balancer, for every object that resolves to one. */
  owners: Map<string, LbKey>;
}

export interface BuildOptions {
  /** Bridge for VIP ports that do not name one (the agent's `--bridge`). */
  defaultBridge: string;
}

/** Octavia's listener → pool protocol pairs. */
export const ALLOWED_POOL_PROTOCOLS: Readonly<Record<ListenerProtocol, readonly PoolProtocol[]>> = {
  TCP: ['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'],
  HTTP: ['HTTP', 'PROXY', 'PROXYV2'],
  TERMINATED_HTTPS: ['HTTP', 'PROXY', 'PROXYV2'],
  HTTPS: ['HTTPS', 'TCP', 'PROXY', 'PROXYV2'],
};

export const DEFAULTS = {
  adminStateUp: true,
  prefixLength: { 4: 24, 6: 64 },
  connectionLimit: -1,
  timeouts: { clientData: 50_000, memberConnect: 5_000, memberData: 50_000, tcpInspect: 0 },
  weight: 1,
  backup: false,
  maxRetriesDown: 3,
  httpMethod: 'GET',
  urlPath: '/',
  expectedCodes: '200',
} as const;

export function buildDesired(objects: readonly AnyObject[], opts: BuildOptions): DesiredState {
  const problems = new Problems();
  const ix = indexObjects(objects, problems);
  const owners = resolveOwners(ix, problems);

  checkLoadBalancers(ix, opts, problems);
  checkListeners(ix, owners, problems);
  checkPools(ix, problems);
  checkMembers(ix, problems);
  checkHealthMonitors(ix, problems);

  const all = problems.sorted();
  const problemsByOwner = new Map<LbKey, ObjectProblem[]>();
  for (const p of all) {
    const owner = owners.get(`${p.kind}/${p.namespace}/${p.name}`);
    if (owner === undefined) continue;
    const list = problemsByOwner.get(owner);
    if (list === undefined) problemsByOwner.set(owner, [p]);
    else list.push(p);
  }

  const trees = treesByOwner(ix, owners);
  const lbs = new Map<LbKey, DesiredLoadBalancer>();
  const blocked = new Map<LbKey, ObjectProblem[]>();
  for (const lb of ix.loadBalancers) {
    const key = keyOf(lb);
    const own = problemsByOwner.get(key);
    if (own === undefined) lbs.set(key, assemble(lb, trees.get(key), opts));
    else blocked.set(key, own);
  }
  return { lbs, blocked, problems: all, owners };
}

// ---------------------------------------------------------------------------------------------------------
// Problems.

class Problems {
  readonly #list: ObjectProblem[] = [];

  add(o: AnyObject, reason: ObjectProblem['reason'], message: string, path?: string): void {
    const { namespace, name } = o.metadata;
    this.#list.push({ kind: o.kind, namespace, name, reason, message, ...(path === undefined ? {} : { path }) });
  }

  notSupported(o: AnyObject, field: string, path: string): void {
    this.add(o, 'NotSupported', `${field} is not supported yet`, path);
  }

  /** In object order; the problems of one object stay in the order the rules found them. */
  sorted(): ObjectProblem[] {
    return [...this.#list].sort(
      (a, b) =>
        KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind) ||
        compareStrings(a.namespace, b.namespace) ||
        compareStrings(a.name, b.name),
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// Index: every kind in namespace/name order, so that "the second one" of a conflict is well defined and the
// output does not depend on input order.

interface Index {
  loadBalancers: ApiObject<'LoadBalancer'>[];
  listeners: ApiObject<'Listener'>[];
  pools: ApiObject<'Pool'>[];
  members: ApiObject<'Member'>[];
  healthMonitors: ApiObject<'HealthMonitor'>[];
  byId: Map<string, AnyObject>;
}

function indexObjects(objects: readonly AnyObject[], problems: Problems): Index {
  const ix: Index = { loadBalancers: [], listeners: [], pools: [], members: [], healthMonitors: [], byId: new Map() };
  for (const o of objects) {
    const id = objectId(o);
    if (ix.byId.has(id)) {
      problems.add(o, 'Conflict', `${o.kind} ${o.metadata.namespace}/${o.metadata.name} is defined more than once`);
      continue;
    }
    ix.byId.set(id, o);
  }
  const sorted = [...ix.byId.values()].sort(compareNames);
  for (const o of sorted) {
    switch (o.kind) {
      case 'LoadBalancer':
        ix.loadBalancers.push(o);
        break;
      case 'Listener':
        ix.listeners.push(o);
        break;
      case 'Pool':
        ix.pools.push(o);
        break;
      case 'Member':
        ix.members.push(o);
        break;
      case 'HealthMonitor':
        ix.healthMonitors.push(o);
        break;
    }
  }
  return ix;
}

function find<K extends Kind>(ix: Index, kind: K, namespace: string, name: string): ApiObject<K> | undefined {
  return ix.byId.get(`${kind}/${namespace}/${name}`) as ApiObject<K> | undefined;
}

function keyOf(o: AnyObject): LbKey {
  return lbKey(o.metadata.namespace, o.metadata.name);
}

// ---------------------------------------------------------------------------------------------------------
// References.

function resolveOwners(ix: Index, problems: Problems): Map<string, LbKey> {
  const owners = new Map<string, LbKey>();
  for (const lb of ix.loadBalancers) owners.set(objectId(lb), keyOf(lb));

  for (const o of [...ix.listeners, ...ix.pools]) {
    const { namespace } = o.metadata;
    const lb = find(ix, 'LoadBalancer', namespace, o.spec.loadBalancer);
    if (lb === undefined) {
      problems.add(o, 'InvalidReference', missing('load balancer', o.spec.loadBalancer, namespace), '/spec/loadBalancer');
    } else {
      owners.set(objectId(o), keyOf(lb));
    }
  }

  // Members and monitors belong to their pool's load balancer.
  for (const o of [...ix.members, ...ix.healthMonitors]) {
    const { namespace } = o.metadata;
    const pool = find(ix, 'Pool', namespace, o.spec.pool);
    const owner = pool === undefined ? undefined : owners.get(objectId(pool));
    if (pool === undefined) {
      problems.add(o, 'InvalidReference', missing('pool', o.spec.pool, namespace), '/spec/pool');
    } else if (owner === undefined) {
      problems.add(
        o,
        'InvalidReference',
        `pool "${pool.metadata.name}" belongs to load balancer "${pool.spec.loadBalancer}", which does not exist`,
        '/spec/pool',
      );
    } else {
      owners.set(objectId(o), owner);
    }
  }
  return owners;
}

function missing(what: string, name: string, namespace: string): string {
  return `${what} "${name}" does not exist in namespace "${namespace}"`;
}

// ---------------------------------------------------------------------------------------------------------
// Per-kind rules.

function checkLoadBalancers(ix: Index, opts: BuildOptions, problems: Problems): void {
  // A VIP is unique per L2 segment (bridge + VLAN), across namespaces: two ports answering ARP for one
  // address break both.
  const vipUsers = new Map<string, ApiObject<'LoadBalancer'>>();
  for (const lb of ix.loadBalancers) {
    checkVip(lb, problems);
    const { vip } = lb.spec;
    const bridge = vip.bridge ?? opts.defaultBridge;
    const segment = vip.vlan === undefined ? `bridge ${bridge} (untagged)` : `bridge ${bridge} VLAN ${vip.vlan}`;
    const address = canonicalIp(vip.address);
    const slot = `${bridge}|${vip.vlan ?? 0}|${address}`;
    const first = vipUsers.get(slot);
    if (first === undefined) {
      vipUsers.set(slot, lb);
    } else {
      problems.add(
        lb,
        'Conflict',
        `VIP ${address} on ${segment} is already used by load balancer ${keyOf(first)}`,
        '/spec/vip/address',
      );
    }
  }
}

function checkVip(lb: ApiObject<'LoadBalancer'>, problems: Problems): void {
  const { vip } = lb.spec;
  const address = parseIp(vip.address);
  if (address === undefined) {
    // The schema admits only IPv4/IPv6, so this is an object that skipped validation.
    problems.add(lb, 'InvalidSpec', `must be an IPv4 or IPv6 address (got "${vip.address}")`, '/spec/vip/address');
    return;
  }
  const prefixLength = vip.prefixLength ?? DEFAULTS.prefixLength[address.family];
  if (prefixLength > bitsOf(address.family)) {
    problems.add(
      lb,
      'InvalidSpec',
      `must be at most ${bitsOf(address.family)} for an IPv${address.family} VIP (got ${prefixLength})`,
      '/spec/vip/prefixLength',
    );
    return;
  }
  if (vip.gateway !== undefined) {
    const gateway = parseIp(vip.gateway);
    if (gateway === undefined || gateway.family !== address.family) {
      problems.add(lb, 'InvalidSpec', `must be an IPv${address.family} address like the VIP (got "${vip.gateway}")`, '/spec/vip/gateway');
    } else if (!inPrefix(gateway, address, prefixLength)) {
      problems.add(
        lb,
        'InvalidSpec',
        `must be inside the VIP prefix ${networkOf(address, prefixLength)} (got "${vip.gateway}")`,
        '/spec/vip/gateway',
      );
    }
  }
  if (vip.mac !== undefined && isMulticastMac(vip.mac)) {
    problems.add(lb, 'InvalidSpec', `must be a unicast MAC address (got "${vip.mac}")`, '/spec/vip/mac');
  }
}

function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}

function checkListeners(ix: Index, owners: Map<string, LbKey>, problems: Problems): void {
  const ports = new Map<string, ApiObject<'Listener'>>();
  for (const l of ix.listeners) {
    const { spec } = l;
    if (spec.protocol === 'HTTPS' || spec.protocol === 'TERMINATED_HTTPS') {
      problems.notSupported(l, `protocol ${spec.protocol}`, '/spec/protocol');
    }
    if (spec.tls !== undefined) problems.notSupported(l, 'tls', '/spec/tls');
    if (Object.values(spec.insertHeaders ?? {}).some((on) => on)) problems.notSupported(l, 'insertHeaders', '/spec/insertHeaders');
    if ((spec.allowedCidrs ?? []).length > 0) problems.notSupported(l, 'allowedCidrs', '/spec/allowedCidrs');

    if (spec.defaultPool !== undefined) checkDefaultPool(ix, l, spec.defaultPool, problems);

    const owner = owners.get(objectId(l));
    if (owner === undefined) continue;
    const slot = `${owner}|${spec.port}`;
    const first = ports.get(slot);
    if (first === undefined) {
      ports.set(slot, l);
    } else {
      problems.add(
        l,
        'Conflict',
        `port ${spec.port} is already used by listener "${first.metadata.name}" of load balancer "${spec.loadBalancer}"`,
        '/spec/port',
      );
    }
  }
}

function checkDefaultPool(ix: Index, l: ApiObject<'Listener'>, poolName: string, problems: Problems): void {
  const { namespace } = l.metadata;
  const pool = find(ix, 'Pool', namespace, poolName);
  if (pool === undefined) {
    problems.add(l, 'InvalidReference', missing('pool', poolName, namespace), '/spec/defaultPool');
    return;
  }
  if (pool.spec.loadBalancer !== l.spec.loadBalancer) {
    problems.add(
      l,
      'InvalidReference',
      `pool "${poolName}" belongs to load balancer "${pool.spec.loadBalancer}", not "${l.spec.loadBalancer}"`,
      '/spec/defaultPool',
    );
    return;
  }
  const allowed = ALLOWED_POOL_PROTOCOLS[l.spec.protocol];
  if (!allowed.includes(pool.spec.protocol)) {
    problems.add(
      l,
      'InvalidSpec',
      `a ${l.spec.protocol} listener cannot use ${pool.spec.protocol} pool "${poolName}" (pool protocol must be one of ${allowed.join(', ')})`,
      '/spec/defaultPool',
    );
  }
}

function checkPools(ix: Index, problems: Problems): void {
  for (const p of ix.pools) {
    if (p.spec.protocol === 'HTTPS') problems.notSupported(p, 'protocol HTTPS', '/spec/protocol');
    if (p.spec.tls !== undefined) problems.notSupported(p, 'tls', '/spec/tls');
    if (p.spec.sessionPersistence !== undefined) problems.notSupported(p, 'sessionPersistence', '/spec/sessionPersistence');
  }
}

function checkMembers(ix: Index, problems: Problems): void {
  // Octavia refuses two members with one address and port in a pool; HAProxy would take it, but
  // the operator almost certainly copied a file and forgot to edit it.
  const endpoints = new Map<string, ApiObject<'Member'>>();
  for (const m of ix.members) {
    const address = canonicalIp(m.spec.address);
    const slot = `${m.metadata.namespace}/${m.spec.pool}|${address}|${m.spec.port}`;
    const first = endpoints.get(slot);
    if (first === undefined) {
      endpoints.set(slot, m);
    } else {
      problems.add(
        m,
        'Conflict',
        `${address} port ${m.spec.port} is already member "${first.metadata.name}" of pool "${m.spec.pool}"`,
        '/spec/address',
      );
    }
  }
}

const UNSUPPORTED_MONITORS = new Set(['PING', 'HTTPS', 'TLS-HELLO']);

function checkHealthMonitors(ix: Index, problems: Problems): void {
  const monitored = new Map<string, ApiObject<'HealthMonitor'>>();
  for (const hm of ix.healthMonitors) {
    const { spec } = hm;
    if (UNSUPPORTED_MONITORS.has(spec.type)) problems.notSupported(hm, `type ${spec.type}`, '/spec/type');
    if (spec.timeout > spec.delay) {
      problems.add(hm, 'InvalidSpec', `must not exceed delay (${spec.delay}) (got ${spec.timeout})`, '/spec/timeout');
    }
    const range = spec.expectedCodes?.split('-');
    if (range?.length === 2 && Number(range[0]) > Number(range[1])) {
      problems.add(hm, 'InvalidSpec', `range must run from low to high (got "${spec.expectedCodes ?? ''}")`, '/spec/expectedCodes');
    }

    const pool = `${hm.metadata.namespace}/${spec.pool}`;
    const first = monitored.get(pool);
    if (first === undefined) {
      monitored.set(pool, hm);
    } else {
      problems.add(hm, 'Conflict', `pool "${spec.pool}" already has health monitor "${first.metadata.name}"`, '/spec/pool');
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Assembly, with defaults. Only called for load balancers without problems, so every reference resolves.

interface Tree {
  listeners: ApiObject<'Listener'>[];
  pools: ApiObject<'Pool'>[];
  members: ApiObject<'Member'>[];
  healthMonitors: ApiObject<'HealthMonitor'>[];
}

/** Each load balancer's children, grouped in one pass (still in name order). */
function treesByOwner(ix: Index, owners: Map<string, LbKey>): Map<LbKey, Tree> {
  const trees = new Map<LbKey, Tree>();
  const treeOf = (o: AnyObject): Tree | undefined => {
    const owner = owners.get(objectId(o));
    if (owner === undefined) return undefined;
    let tree = trees.get(owner);
    if (tree === undefined) {
      tree = { listeners: [], pools: [], members: [], healthMonitors: [] };
      trees.set(owner, tree);
    }
    return tree;
  };
  for (const o of ix.listeners) treeOf(o)?.listeners.push(o);
  for (const o of ix.pools) treeOf(o)?.pools.push(o);
  for (const o of ix.members) treeOf(o)?.members.push(o);
  for (const o of ix.healthMonitors) treeOf(o)?.healthMonitors.push(o);
  return trees;
}

function assemble(lb: ApiObject<'LoadBalancer'>, tree: Tree | undefined, opts: BuildOptions): DesiredLoadBalancer {
  const { namespace, name } = lb.metadata;
  const { listeners = [], pools = [], members = [], healthMonitors = [] } = tree ?? {};
  return {
    key: keyOf(lb),
    namespace,
    name,
    names: nodeNames(namespace, name),
    bridge: lb.spec.vip.bridge ?? opts.defaultBridge,
    vip: desiredVip(lb),
    adminStateUp: lb.spec.adminStateUp ?? DEFAULTS.adminStateUp,
    listeners: listeners.map(desiredListener),
    pools: pools.map((p) =>
      desiredPool(
        p,
        members.filter((m) => m.spec.pool === p.metadata.name),
        healthMonitors.find((hm) => hm.spec.pool === p.metadata.name),
      ),
    ),
  };
}

function desiredVip(lb: ApiObject<'LoadBalancer'>): DesiredVip {
  const { vip } = lb.spec;
  const family = parseIp(vip.address)?.family ?? 4;
  return {
    address: canonicalIp(vip.address),
    family,
    prefixLength: vip.prefixLength ?? DEFAULTS.prefixLength[family],
    ...(vip.gateway === undefined ? {} : { gateway: canonicalIp(vip.gateway) }),
    mac: vip.mac?.toLowerCase() ?? derivedMac(lb.metadata.namespace, lb.metadata.name),
    ...(vip.vlan === undefined ? {} : { vlan: vip.vlan }),
    ...(vip.mtu === undefined ? {} : { mtu: vip.mtu }),
  };
}

function desiredListener(l: ApiObject<'Listener'>): DesiredListener {
  const { spec } = l;
  return {
    name: l.metadata.name,
    protocol: spec.protocol,
    port: spec.port,
    ...(spec.defaultPool === undefined ? {} : { defaultPool: spec.defaultPool }),
    connectionLimit: spec.connectionLimit ?? DEFAULTS.connectionLimit,
    timeouts: { ...DEFAULTS.timeouts, ...spec.timeouts },
    adminStateUp: spec.adminStateUp ?? DEFAULTS.adminStateUp,
  };
}

function desiredPool(
  p: ApiObject<'Pool'>,
  members: ApiObject<'Member'>[],
  monitor: ApiObject<'HealthMonitor'> | undefined,
): DesiredPool {
  return {
    name: p.metadata.name,
    protocol: p.spec.protocol,
    lbAlgorithm: p.spec.lbAlgorithm,
    adminStateUp: p.spec.adminStateUp ?? DEFAULTS.adminStateUp,
    members: members.map(desiredMember),
    ...(monitor === undefined ? {} : { healthMonitor: desiredHealthMonitor(monitor) }),
  };
}

function desiredMember(m: ApiObject<'Member'>): DesiredMember {
  const { spec } = m;
  return {
    name: m.metadata.name,
    address: canonicalIp(spec.address),
    port: spec.port,
    weight: spec.weight ?? DEFAULTS.weight,
    backup: spec.backup ?? DEFAULTS.backup,
    adminStateUp: spec.adminStateUp ?? DEFAULTS.adminStateUp,
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
    maxRetriesDown: spec.maxRetriesDown ?? DEFAULTS.maxRetriesDown,
    httpMethod: spec.httpMethod ?? DEFAULTS.httpMethod,
    urlPath: spec.urlPath ?? DEFAULTS.urlPath,
    expectedCodes: spec.expectedCodes ?? DEFAULTS.expectedCodes,
    ...(spec.httpVersion === undefined ? {} : { httpVersion: spec.httpVersion }),
    ...(spec.domainName === undefined ? {} : { domainName: spec.domainName }),
    adminStateUp: spec.adminStateUp ?? DEFAULTS.adminStateUp,
  };
}

// ---------------------------------------------------------------------------------------------------------

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareNames(a: AnyObject, b: AnyObject): number {
  return compareStrings(a.metadata.namespace, b.metadata.namespace) || compareStrings(a.metadata.name, b.metadata.name);
}
