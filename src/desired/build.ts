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
  type L7Action,
  type LbKey,
  type ListenerProtocol,
  type PoolProtocol,
  type PoolSpec,
} from '../api/v1alpha1/types.js';
import { bitsOf, canonicalCidr, canonicalIp, inPrefix, networkOf, parseIp } from './addresses.js';
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
import { SSL_CLIENT_HEADERS } from './model.js';
import { derivedMac, lbKey, nodeNames } from './names.js';
import { regexProblem } from './regex.js';
import { resolveListenerTls, resolvePoolTls } from './tls.js';

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
  /**
   * Contents of the files that TLS fields name, keyed by the path exactly as written in the spec. The source
   * reads them so that building stays pure; a path missing here is reported as a missing file.
   */
  materials?: ReadonlyMap<string, string>;
  /** The moment certificates must be valid at (expiry checks); now when omitted. */
  now?: Date;
}

/** Octavia's listener → pool protocol pairs. */
export const ALLOWED_POOL_PROTOCOLS: Readonly<Record<ListenerProtocol, readonly PoolProtocol[]>> = {
  TCP: ['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'],
  HTTP: ['HTTP', 'PROXY', 'PROXYV2'],
  TERMINATED_HTTPS: ['HTTP', 'PROXY', 'PROXYV2'],
  HTTPS: ['HTTPS', 'TCP', 'PROXY', 'PROXYV2'],
};

/** Listener protocols HAProxy runs in `mode http`: the only ones with headers, cookies and L7 policies. */
const HTTP_LISTENERS: ReadonlySet<ListenerProtocol> = new Set(['HTTP', 'TERMINATED_HTTPS']);
/** Pool protocols that only ever pair with tcp-mode listeners (see ALLOWED_POOL_PROTOCOLS). */
const TCP_ONLY_POOLS: ReadonlySet<PoolProtocol> = new Set(['TCP', 'HTTPS']);

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
  insertHeader: false,
  redirectHttpCode: 302,
  invert: false,
} as const;

export function buildDesired(objects: readonly AnyObject[], opts: BuildOptions): DesiredState {
  const problems = new Problems();
  const ix = indexObjects(objects, problems);
  const owners = resolveOwners(ix, problems);
  // Resolved while checking, so that assembly does not read and hash the material a second time.
  const listenerTls = new Map<string, DesiredListenerTls>();
  const memberTls = new Map<string, DesiredMemberTls>();
  const materials = opts.materials ?? new Map<string, string>();
  const now = opts.now ?? new Date();

  checkLoadBalancers(ix, opts, problems);
  checkListeners(ix, owners, materials, now, listenerTls, problems);
  checkPools(ix, materials, now, memberTls, problems);
  checkMembers(ix, problems);
  checkHealthMonitors(ix, problems);
  checkL7Policies(ix, problems);
  checkL7Rules(ix, problems);

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
    if (own === undefined) lbs.set(key, assemble(lb, trees.get(key), opts, listenerTls, memberTls));
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
  l7Policies: ApiObject<'L7Policy'>[];
  l7Rules: ApiObject<'L7Rule'>[];
  byId: Map<string, AnyObject>;
}

function indexObjects(objects: readonly AnyObject[], problems: Problems): Index {
  const ix: Index = {
    loadBalancers: [],
    listeners: [],
    pools: [],
    members: [],
    healthMonitors: [],
    l7Policies: [],
    l7Rules: [],
    byId: new Map(),
  };
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
      case 'L7Policy':
        ix.l7Policies.push(o);
        break;
      case 'L7Rule':
        ix.l7Rules.push(o);
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

  // A child belongs to its parent's load balancer; a missing parent, or one without a load balancer, is
  // the child's problem, named on the field that points at the parent.
  const inherit = <K extends Kind>(
    o: AnyObject,
    parentKind: K,
    parentName: string,
    path: string,
    noun: string,
    orphaned: (parent: ApiObject<K>) => string,
  ): void => {
    const { namespace } = o.metadata;
    const parent = find(ix, parentKind, namespace, parentName);
    const owner = parent === undefined ? undefined : owners.get(objectId(parent));
    if (parent === undefined) problems.add(o, 'InvalidReference', missing(noun, parentName, namespace), path);
    else if (owner === undefined) problems.add(o, 'InvalidReference', orphaned(parent), path);
    else owners.set(objectId(o), owner);
  };
  for (const o of [...ix.members, ...ix.healthMonitors]) {
    inherit(o, 'Pool', o.spec.pool, '/spec/pool', 'pool',
      (pool) => `pool "${pool.metadata.name}" belongs to load balancer "${pool.spec.loadBalancer}", which does not exist`);
  }
  for (const o of ix.l7Policies) {
    inherit(o, 'Listener', o.spec.listener, '/spec/listener', 'listener',
      (l) => `listener "${l.metadata.name}" belongs to load balancer "${l.spec.loadBalancer}", which does not exist`);
  }
  for (const o of ix.l7Rules) {
    inherit(o, 'L7Policy', o.spec.l7Policy, '/spec/l7Policy', 'L7 policy',
      (policy) => `L7 policy "${policy.metadata.name}" has no load balancer: ${whyNoLoadBalancer(ix, policy)}`);
  }
  return owners;
}

function whyNoLoadBalancer(ix: Index, policy: ApiObject<'L7Policy'>): string {
  const listener = find(ix, 'Listener', policy.metadata.namespace, policy.spec.listener);
  return listener === undefined
    ? `listener "${policy.spec.listener}" does not exist`
    : `listener "${listener.metadata.name}" belongs to load balancer "${listener.spec.loadBalancer}", which does not exist`;
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
    // The VIP and the additional VIPs alike: each address answers on the segment.
    const addresses: [string, string][] = [
      [vip.address, '/spec/vip/address'],
      ...(lb.spec.additionalVips ?? []).map((a, i): [string, string] => [a.address, `/spec/additionalVips/${i}/address`]),
    ];
    const seen = new Set<string>();
    for (const [given, path] of addresses) {
      const address = canonicalIp(given);
      if (seen.has(address)) continue; // reported by checkVip
      seen.add(address);
      const slot = `${bridge}|${vip.vlan ?? 0}|${address}`;
      const first = vipUsers.get(slot);
      if (first === undefined) {
        vipUsers.set(slot, lb);
      } else {
        problems.add(lb, 'Conflict', `VIP ${address} on ${segment} is already used by load balancer ${keyOf(first)}`, path);
      }
    }
  }
}

function checkVip(lb: ApiObject<'LoadBalancer'>, problems: Problems): void {
  const { vip, additionalVips = [] } = lb.spec;
  const entries = [
    { ...vip, path: '/spec/vip', noun: 'VIP' },
    ...additionalVips.map((a, i) => ({ ...a, path: `/spec/additionalVips/${i}`, noun: 'additional VIP' })),
  ];
  // Each family has one default route in the namespace, so one gateway per family across all addresses.
  const gatewayAt = new Map<4 | 6, string>();
  const addressAt = new Map<string, string>();
  for (const e of entries) {
    const family = checkVipAddress(lb, e, problems);
    if (family === undefined) continue;
    const address = canonicalIp(e.address);
    const first = addressAt.get(address);
    if (first === undefined) addressAt.set(address, e.path);
    else problems.add(lb, 'InvalidSpec', `must differ from ${first}/address (both are ${address})`, `${e.path}/address`);
    if (e.gateway === undefined) continue;
    const other = gatewayAt.get(family);
    if (other === undefined) gatewayAt.set(family, e.path);
    else {
      problems.add(
        lb,
        'InvalidSpec',
        `only one IPv${family} gateway is allowed (the namespace has one IPv${family} default route); ${other}/gateway already sets it`,
        `${e.path}/gateway`,
      );
    }
  }
  if (vip.mac !== undefined && isMulticastMac(vip.mac)) {
    problems.add(lb, 'InvalidSpec', `must be a unicast MAC address (got "${vip.mac}")`, '/spec/vip/mac');
  }
}

/** The address, prefix length and gateway of the VIP or of an additional VIP; its family when the address is valid. */
function checkVipAddress(
  lb: ApiObject<'LoadBalancer'>,
  e: { address: string; prefixLength?: number; gateway?: string; path: string; noun: string },
  problems: Problems,
): 4 | 6 | undefined {
  const address = parseIp(e.address);
  if (address === undefined) {
    // The schema admits only IPv4/IPv6, so this is an object that skipped validation.
    problems.add(lb, 'InvalidSpec', `must be an IPv4 or IPv6 address (got "${e.address}")`, `${e.path}/address`);
    return undefined;
  }
  const prefixLength = e.prefixLength ?? DEFAULTS.prefixLength[address.family];
  if (prefixLength > bitsOf(address.family)) {
    problems.add(
      lb,
      'InvalidSpec',
      `must be at most ${bitsOf(address.family)} for an IPv${address.family} ${e.noun} (got ${prefixLength})`,
      `${e.path}/prefixLength`,
    );
    return address.family;
  }
  if (e.gateway !== undefined) {
    const gateway = parseIp(e.gateway);
    if (gateway === undefined || gateway.family !== address.family) {
      problems.add(lb, 'InvalidSpec', `must be an IPv${address.family} address like the ${e.noun} (got "${e.gateway}")`, `${e.path}/gateway`);
    } else if (!inPrefix(gateway, address, prefixLength)) {
      problems.add(
        lb,
        'InvalidSpec',
        `must be inside the ${e.noun} prefix ${networkOf(address, prefixLength)} (got "${e.gateway}")`,
        `${e.path}/gateway`,
      );
    }
  }
  return address.family;
}

function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}

function checkListeners(
  ix: Index,
  owners: Map<string, LbKey>,
  materials: ReadonlyMap<string, string>,
  now: Date,
  listenerTls: Map<string, DesiredListenerTls>,
  problems: Problems,
): void {
  const ports = new Map<string, ApiObject<'Listener'>>();
  for (const l of ix.listeners) {
    const { spec } = l;
    if (spec.protocol === 'TERMINATED_HTTPS') {
      const resolved = resolveListenerTls(spec.tls, materials, now, l.metadata.namespace);
      if (resolved.ok) listenerTls.set(objectId(l), resolved.tls);
      else for (const p of resolved.problems) problems.add(l, p.reason, p.message, p.path);
    } else if (spec.tls !== undefined) {
      problems.add(l, 'InvalidSpec', `is only allowed on TERMINATED_HTTPS listeners (protocol is ${spec.protocol})`, '/spec/tls');
    }
    // As Octavia: a tcp-mode listener has no HTTP request to put a header into.
    if (!HTTP_LISTENERS.has(spec.protocol) && Object.values(spec.insertHeaders ?? {}).some((on) => on)) {
      problems.add(
        l,
        'InvalidSpec',
        `is only allowed on HTTP and TERMINATED_HTTPS listeners (protocol is ${spec.protocol})`,
        '/spec/insertHeaders',
      );
    } else if (spec.protocol !== 'TERMINATED_HTTPS') {
      // Only a listener that terminates TLS has a client certificate to describe.
      for (const header of SSL_CLIENT_HEADERS) {
        if (spec.insertHeaders?.[header] === true) {
          problems.add(l, 'InvalidSpec', `is only allowed on TERMINATED_HTTPS listeners (protocol is ${spec.protocol})`, `/spec/insertHeaders/${header}`);
        }
      }
    }
    (spec.allowedCidrs ?? []).forEach((cidr, i) => {
      // The schema admits only valid CIDRs, so this is an object that skipped validation.
      if (canonicalCidr(cidr) === undefined) {
        problems.add(l, 'InvalidSpec', `must be a CIDR such as 10.0.0.0/24 or 2001:db8::/64 (got "${cidr}")`, `/spec/allowedCidrs/${i}`);
      }
    });

    if (spec.defaultPool !== undefined) checkPoolReference(ix, l, l, spec.defaultPool, '/spec/defaultPool', problems);

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

/** A listener's default pool or an L7 policy's redirect pool: same load balancer, compatible protocol. */
function checkPoolReference(
  ix: Index,
  referrer: AnyObject,
  l: ApiObject<'Listener'>,
  poolName: string,
  path: string,
  problems: Problems,
): void {
  const { namespace } = l.metadata;
  const pool = find(ix, 'Pool', namespace, poolName);
  if (pool === undefined) {
    problems.add(referrer, 'InvalidReference', missing('pool', poolName, namespace), path);
    return;
  }
  if (pool.spec.loadBalancer !== l.spec.loadBalancer) {
    problems.add(
      referrer,
      'InvalidReference',
      `pool "${poolName}" belongs to load balancer "${pool.spec.loadBalancer}", not "${l.spec.loadBalancer}"`,
      path,
    );
    return;
  }
  const allowed = ALLOWED_POOL_PROTOCOLS[l.spec.protocol];
  if (!allowed.includes(pool.spec.protocol)) {
    problems.add(
      referrer,
      'InvalidSpec',
      `a ${l.spec.protocol} listener cannot use ${pool.spec.protocol} pool "${poolName}" (pool protocol must be one of ${allowed.join(', ')})`,
      path,
    );
  }
}

function checkPools(
  ix: Index,
  materials: ReadonlyMap<string, string>,
  now: Date,
  memberTls: Map<string, DesiredMemberTls>,
  problems: Problems,
): void {
  const users = listenersByPool(ix);
  for (const p of ix.pools) {
    const { tls, sessionPersistence } = p.spec;
    const resolved = resolvePoolTls(tls, p.spec.protocol, materials, now, p.metadata.namespace);
    if (!resolved.ok) for (const problem of resolved.problems) problems.add(p, problem.reason, problem.message, problem.path);
    else if (resolved.tls !== undefined) memberTls.set(objectId(p), resolved.tls);
    if (sessionPersistence !== undefined) checkSessionPersistence(p, sessionPersistence, users.get(objectId(p)) ?? [], problems);
  }
}

/** Pool objectId → the listeners that send traffic to it (as default pool or through an L7 policy), by name. */
function listenersByPool(ix: Index): Map<string, ApiObject<'Listener'>[]> {
  const users = new Map<string, Set<ApiObject<'Listener'>>>();
  const use = (namespace: string, poolName: string, l: ApiObject<'Listener'>) => {
    // A listener of another load balancer naming this pool is its own error (checkPoolReference); counting it
    // as a user would make this pool, and so a load balancer that nobody touched, wrong as well.
    const pool = find(ix, 'Pool', namespace, poolName);
    if (pool === undefined || pool.spec.loadBalancer !== l.spec.loadBalancer) return;
    const id = `Pool/${namespace}/${poolName}`;
    const set = users.get(id);
    if (set === undefined) users.set(id, new Set([l]));
    else set.add(l);
  };
  for (const l of ix.listeners) {
    if (l.spec.defaultPool !== undefined) use(l.metadata.namespace, l.spec.defaultPool, l);
  }
  for (const policy of ix.l7Policies) {
    const { namespace } = policy.metadata;
    const l = find(ix, 'Listener', namespace, policy.spec.listener);
    if (l !== undefined && policy.spec.redirectPool !== undefined) use(namespace, policy.spec.redirectPool, l);
  }
  return new Map([...users].map(([id, set]) => [id, [...set].sort(compareNames)]));
}

function checkSessionPersistence(
  p: ApiObject<'Pool'>,
  { type, cookieName }: NonNullable<PoolSpec['sessionPersistence']>,
  users: ApiObject<'Listener'>[],
  problems: Problems,
): void {
  if (type === 'APP_COOKIE' && cookieName === undefined) {
    problems.add(p, 'InvalidSpec', 'is required for APP_COOKIE persistence', '/spec/sessionPersistence/cookieName');
  }
  if (type !== 'APP_COOKIE' && cookieName !== undefined) {
    problems.add(p, 'InvalidSpec', `is only allowed with APP_COOKIE persistence (type is ${type})`, '/spec/sessionPersistence/cookieName');
  }
  if (type === 'SOURCE_IP') return;
  // Cookies live in HTTP: a tcp-mode backend would never see one, and the "persistence" would silently
  // be none at all.
  if (TCP_ONLY_POOLS.has(p.spec.protocol)) {
    problems.add(
      p,
      'InvalidSpec',
      `${type} persistence needs HTTP, but a ${p.spec.protocol} pool is only used by TCP and HTTPS listeners`,
      '/spec/sessionPersistence/type',
    );
    return;
  }
  for (const l of users) {
    if (HTTP_LISTENERS.has(l.spec.protocol)) continue;
    problems.add(
      p,
      'InvalidSpec',
      `${type} persistence needs HTTP, but ${l.spec.protocol} listener "${l.metadata.name}" uses this pool`,
      '/spec/sessionPersistence/type',
    );
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

function checkHealthMonitors(ix: Index, problems: Problems): void {
  const monitored = new Map<string, ApiObject<'HealthMonitor'>>();
  for (const hm of ix.healthMonitors) {
    const { spec } = hm;
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

/** The one redirect field each action takes; the others must be absent (as Octavia). */
const ACTION_FIELD: Readonly<Record<L7Action, 'redirectPool' | 'redirectUrl' | 'redirectPrefix' | undefined>> = {
  REJECT: undefined,
  REDIRECT_TO_POOL: 'redirectPool',
  REDIRECT_TO_URL: 'redirectUrl',
  REDIRECT_PREFIX: 'redirectPrefix',
};
const REDIRECT_FIELDS = ['redirectPool', 'redirectUrl', 'redirectPrefix'] as const;
const FIELD_ACTION = { redirectPool: 'REDIRECT_TO_POOL', redirectUrl: 'REDIRECT_TO_URL', redirectPrefix: 'REDIRECT_PREFIX' } as const;

function checkL7Policies(ix: Index, problems: Problems): void {
  for (const policy of ix.l7Policies) {
    const { spec } = policy;
    const listener = find(ix, 'Listener', policy.metadata.namespace, spec.listener);
    if (listener !== undefined && !HTTP_LISTENERS.has(listener.spec.protocol)) {
      problems.add(
        policy,
        'InvalidSpec',
        `L7 policies need an HTTP or TERMINATED_HTTPS listener (listener "${spec.listener}" is ${listener.spec.protocol})`,
        '/spec/listener',
      );
    }

    const wanted = ACTION_FIELD[spec.action];
    for (const field of REDIRECT_FIELDS) {
      if (field === wanted && spec[field] === undefined) {
        problems.add(policy, 'InvalidSpec', `is required for action ${spec.action}`, `/spec/${field}`);
      } else if (field !== wanted && spec[field] !== undefined) {
        problems.add(policy, 'InvalidSpec', `is only allowed with action ${FIELD_ACTION[field]} (action is ${spec.action})`, `/spec/${field}`);
      }
    }
    if (spec.redirectHttpCode !== undefined && spec.action !== 'REDIRECT_TO_URL' && spec.action !== 'REDIRECT_PREFIX') {
      problems.add(
        policy,
        'InvalidSpec',
        `is only allowed with actions REDIRECT_TO_URL and REDIRECT_PREFIX (action is ${spec.action})`,
        '/spec/redirectHttpCode',
      );
    }

    if (wanted === 'redirectPool' && spec.redirectPool !== undefined && listener !== undefined) {
      checkPoolReference(ix, policy, listener, spec.redirectPool, '/spec/redirectPool', problems);
    }
  }
}

function checkL7Rules(ix: Index, problems: Problems): void {
  for (const rule of ix.l7Rules) {
    const { type, compareType, key } = rule.spec;
    const keyed = type === 'HEADER' || type === 'COOKIE';
    if (keyed && key === undefined) {
      problems.add(rule, 'InvalidSpec', `is required for ${type} rules (the ${type === 'HEADER' ? 'header' : 'cookie'} name)`, '/spec/key');
    } else if (!keyed && key !== undefined) {
      problems.add(rule, 'InvalidSpec', `is only allowed on HEADER and COOKIE rules (type is ${type})`, '/spec/key');
    }
    // As Octavia: a file type is the end of the path, so only whole-match comparisons make sense.
    if (type === 'FILE_TYPE' && compareType !== 'EQUAL_TO' && compareType !== 'REGEX') {
      problems.add(rule, 'InvalidSpec', `must be EQUAL_TO or REGEX for FILE_TYPE rules (got ${compareType})`, '/spec/compareType');
    }
    // Here rather than at `haproxy -c`, where all the user would learn is that the load balancer's config
    // was refused.
    const regex = compareType === 'REGEX' ? regexProblem(rule.spec.value) : undefined;
    if (regex !== undefined) {
      problems.add(rule, 'InvalidSpec', `is not a regular expression HAProxy can compile: ${regex}`, '/spec/value');
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
  l7Policies: ApiObject<'L7Policy'>[];
  l7Rules: ApiObject<'L7Rule'>[];
}

/** Each load balancer's children, grouped in one pass (still in name order). */
function treesByOwner(ix: Index, owners: Map<string, LbKey>): Map<LbKey, Tree> {
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

function assemble(
  lb: ApiObject<'LoadBalancer'>,
  tree: Tree | undefined,
  opts: BuildOptions,
  listenerTls: ReadonlyMap<string, DesiredListenerTls>,
  memberTls: ReadonlyMap<string, DesiredMemberTls>,
): DesiredLoadBalancer {
  const { namespace, name } = lb.metadata;
  const { listeners = [], pools = [], members = [], healthMonitors = [], l7Policies = [], l7Rules = [] } = tree ?? {};
  return {
    key: keyOf(lb),
    namespace,
    name,
    names: nodeNames(namespace, name),
    bridge: lb.spec.vip.bridge ?? opts.defaultBridge,
    vip: desiredVip(lb),
    adminStateUp: lb.spec.adminStateUp ?? DEFAULTS.adminStateUp,
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
      ),
    ),
  };
}

function desiredVipAddress(a: { address: string; prefixLength?: number; gateway?: string }): DesiredVipAddress {
  const family = parseIp(a.address)?.family ?? 4;
  return {
    address: canonicalIp(a.address),
    family,
    prefixLength: a.prefixLength ?? DEFAULTS.prefixLength[family],
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

function desiredListener(
  l: ApiObject<'Listener'>,
  tls: DesiredListenerTls | undefined,
  l7Policies: DesiredL7Policy[],
): DesiredListener {
  const { spec } = l;
  const headers = spec.insertHeaders ?? {};
  return {
    name: l.metadata.name,
    protocol: spec.protocol,
    port: spec.port,
    ...(spec.defaultPool === undefined ? {} : { defaultPool: spec.defaultPool }),
    connectionLimit: spec.connectionLimit ?? DEFAULTS.connectionLimit,
    timeouts: { ...DEFAULTS.timeouts, ...spec.timeouts },
    adminStateUp: spec.adminStateUp ?? DEFAULTS.adminStateUp,
    insertHeaders: {
      forwardedFor: headers['X-Forwarded-For'] ?? DEFAULTS.insertHeader,
      forwardedPort: headers['X-Forwarded-Port'] ?? DEFAULTS.insertHeader,
      forwardedProto: headers['X-Forwarded-Proto'] ?? DEFAULTS.insertHeader,
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
    .filter((p) => p.spec.adminStateUp ?? DEFAULTS.adminStateUp)
    .map((p) => ({
      policy: p,
      rules: rules.filter((r) => r.spec.l7Policy === p.metadata.name && (r.spec.adminStateUp ?? DEFAULTS.adminStateUp)),
    }))
    .filter(({ rules: enabled }) => enabled.length > 0)
    .sort(
      (a, b) =>
        (a.policy.spec.position ?? LAST) - (b.policy.spec.position ?? LAST) ||
        compareStrings(a.policy.metadata.name, b.policy.metadata.name),
    )
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
    redirectHttpCode: spec.redirectHttpCode ?? DEFAULTS.redirectHttpCode,
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
    invert: spec.invert ?? DEFAULTS.invert,
  };
}

function desiredPool(
  p: ApiObject<'Pool'>,
  members: ApiObject<'Member'>[],
  monitor: ApiObject<'HealthMonitor'> | undefined,
  memberTls: DesiredMemberTls | undefined,
): DesiredPool {
  return {
    name: p.metadata.name,
    protocol: p.spec.protocol,
    lbAlgorithm: p.spec.lbAlgorithm,
    adminStateUp: p.spec.adminStateUp ?? DEFAULTS.adminStateUp,
    ...(p.spec.sessionPersistence === undefined ? {} : { sessionPersistence: { ...p.spec.sessionPersistence } }),
    tlsToMembers: p.spec.tls?.enabled === true,
    ...(memberTls === undefined ? {} : { memberTls }),
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
