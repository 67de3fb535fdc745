// The cross-object rules of DESIGN §1, one function per kind: each adds what it finds to `problems` and never
// throws. They live here, not in the schemas, so that files and Kubernetes get the same answers.
import {
  objectId,
  SSL_CLIENT_HEADERS,
  type AnyObject,
  type ApiObject,
  type L7Action,
  type LbKey,
  type ListenerProtocol,
  type PoolSpec,
} from '../api/v1alpha1/types.js';
import { bitsOf, canonicalCidr, canonicalIp, inPrefix, networkOf, parseIp } from './addresses.js';
import { ALLOWED_POOL_PROTOCOLS, HTTP_LISTENERS, KERNEL_PROTOCOLS, SPEC_DEFAULTS, TCP_ONLY_POOLS } from './defaults.js';
import type { DesiredListenerTls, DesiredMemberTls } from './model.js';
import { compareNames, find, keyOf, missing, type Index, type Problems } from './object-index.js';
import { regexProblem } from './regex.js';
import { resolveListenerTls, resolvePoolTls } from './tls.js';
import { checkTopology, vrrpAddresses, type ScheduledPlacements } from './topology.js';

export function checkLoadBalancers(ix: Index, defaultBridge: string, problems: Problems, scheduled?: ScheduledPlacements): void {
  // A VIP is unique per L2 segment (bridge + VLAN), across namespaces: two ports answering ARP for one
  // address break both.
  const vipUsers = new Map<string, ApiObject<'LoadBalancer'>>();
  for (const lb of ix.loadBalancers) {
    checkVip(lb, problems);
    checkTopology(lb, problems, scheduled);
    const { vip } = lb.spec;
    const bridge = vip.bridge ?? defaultBridge;
    const segment = vip.vlan === undefined ? `bridge ${bridge} (untagged)` : `bridge ${bridge} VLAN ${vip.vlan}`;
    // The VIP and the additional VIPs alike: each address answers on the segment.
    const addresses: [string, string][] = [
      [vip.address, '/spec/vip/address'],
      ...(lb.spec.additionalVips ?? []).map((a, i): [string, string] => [a.address, `/spec/additionalVips/${i}/address`]),
      // An ACTIVE_STANDBY pair's VRRP addresses answer on the segment too, each on its own node.
      ...vrrpAddresses(lb),
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
        const what = path.startsWith('/spec/vrrp') ? 'VRRP address' : 'VIP';
        problems.add(lb, 'Conflict', `${what} ${address} on ${segment} is already used by load balancer ${keyOf(first)}`, path);
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
  const prefixLength = e.prefixLength ?? SPEC_DEFAULTS.prefixLength[address.family];
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
      problems.add(lb, 'InvalidSpec', `must be inside the ${e.noun} prefix ${networkOf(address, prefixLength)} (got "${e.gateway}")`, `${e.path}/gateway`);
    }
  }
  return address.family;
}

function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}

export function checkListeners(
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
      problems.add(l, 'InvalidSpec', `is only allowed on HTTP and TERMINATED_HTTPS listeners (protocol is ${spec.protocol})`, '/spec/insertHeaders');
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
    // UDP and SCTP ports are other ports than TCP's: a DNS service has a UDP and a TCP listener on 53.
    const transport = transportOf(spec.protocol);
    const slot = `${owner}|${transport}|${spec.port}`;
    const first = ports.get(slot);
    if (first === undefined) {
      ports.set(slot, l);
    } else {
      problems.add(
        l,
        'Conflict',
        `${transport === 'tcp' ? 'port' : `${transport.toUpperCase()} port`} ${spec.port} is already used by listener "${first.metadata.name}" of load balancer "${spec.loadBalancer}"`,
        '/spec/port',
      );
    }
  }
}

function transportOf(protocol: ListenerProtocol): 'tcp' | 'udp' | 'sctp' {
  return protocol === 'UDP' ? 'udp' : protocol === 'SCTP' ? 'sctp' : 'tcp';
}

/** A listener's default pool or an L7 policy's redirect pool: same load balancer, compatible protocol. */
function checkPoolReference(ix: Index, referrer: AnyObject, l: ApiObject<'Listener'>, poolName: string, path: string, problems: Problems): void {
  const { namespace } = l.metadata;
  const pool = find(ix, 'Pool', namespace, poolName);
  if (pool === undefined) {
    problems.add(referrer, 'InvalidReference', missing('pool', poolName, namespace), path);
    return;
  }
  if (pool.spec.loadBalancer !== l.spec.loadBalancer) {
    problems.add(referrer, 'InvalidReference', `pool "${poolName}" belongs to load balancer "${pool.spec.loadBalancer}", not "${l.spec.loadBalancer}"`, path);
    return;
  }
  const allowed = ALLOWED_POOL_PROTOCOLS[l.spec.protocol];
  if (allowed.length === 0) {
    problems.add(referrer, 'InvalidSpec', `a ${l.spec.protocol} listener has no pool: it answers with the load balancer's own metrics`, path);
  } else if (!allowed.includes(pool.spec.protocol)) {
    problems.add(
      referrer,
      'InvalidSpec',
      `a ${l.spec.protocol} listener cannot use ${pool.spec.protocol} pool "${poolName}" (pool protocol must be one of ${allowed.join(', ')})`,
      path,
    );
  }
}

export function checkPools(ix: Index, materials: ReadonlyMap<string, string>, now: Date, memberTls: Map<string, DesiredMemberTls>, problems: Problems): void {
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
  if (type === 'SOURCE_IP' || KERNEL_PROTOCOLS.has(p.spec.protocol)) return;
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

export function checkMembers(ix: Index, problems: Problems): void {
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
      problems.add(m, 'Conflict', `${address} port ${m.spec.port} is already member "${first.metadata.name}" of pool "${m.spec.pool}"`, '/spec/address');
    }
  }
}

export function checkHealthMonitors(ix: Index, problems: Problems): void {
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

export function checkL7Policies(ix: Index, problems: Problems): void {
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

export function checkL7Rules(ix: Index, problems: Problems): void {
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
