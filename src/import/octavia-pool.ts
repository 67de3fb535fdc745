// Octavia pools, members and health monitors → Pool, Member, HealthMonitor. A pool's TLS to its members takes its
// Barbican secrets as files next to the YAML.
import { isObj, idList, type Rec } from './octavia-read.js';
import { SHOW, set, type ImportContext } from './octavia-context.js';

const POOL_PROTOCOLS = ['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2', 'UDP', 'SCTP'];
const MONITOR_TYPES = ['PING', 'TCP', 'HTTP', 'HTTPS', 'TLS-HELLO', 'UDP-CONNECT', 'SCTP'];
/** Forwarded by the kernel (nftables): it hashes or counts round, it cannot count connections per member. */
const KERNEL_POOLS = ['UDP', 'SCTP'];

export function importPool(cx: ImportContext, r: Rec): void {
  if (cx.partial(r)) return;
  const used = new Set([
    'protocol',
    'lb_algorithm',
    'session_persistence',
    'tls_enabled',
    'tls_container_ref',
    'ca_tls_container_ref',
    'crl_container_ref',
    'tls_versions',
    'tls_ciphers',
    'alpn_protocols',
  ]);
  // A pool names its load balancer, or is reached through one of its listeners.
  let lbId = cx.parent(r, 'loadbalancer', ['loadbalancers', 'loadbalancer_id'], 'pools');
  if (lbId === undefined) {
    const listenerId = idList(r.raw['listeners'])[0] ?? cx.recsOf('listener').find((l) => l.raw['default_pool_id'] === r.id)?.id;
    const listener = cx.rec('listener', listenerId);
    if (listener !== undefined) lbId = cx.parent(listener, 'loadbalancer', ['loadbalancers', 'loadbalancer_id'], 'listeners');
  }
  const lb = cx.emittedParent(r, 'loadbalancer', lbId, 'loadbalancers');
  if (lb === undefined) return;
  const protocol = cx.string(r, 'protocol');
  if (protocol === undefined || !POOL_PROTOCOLS.includes(protocol)) {
    return void cx.skip(r, `protocol ${JSON.stringify(protocol ?? null)} is not supported (nslb pools: ${POOL_PROTOCOLS.join(', ')})`);
  }
  const kernel = KERNEL_POOLS.includes(protocol);
  let lbAlgorithm = cx.string(r, 'lb_algorithm');
  if (lbAlgorithm === 'SOURCE_IP_PORT' && !kernel) {
    cx.warn(r, 'lb_algorithm', `SOURCE_IP_PORT is for UDP and SCTP pools: SOURCE_IP used for ${protocol}`);
    lbAlgorithm = 'SOURCE_IP';
  }
  if (lbAlgorithm === 'LEAST_CONNECTIONS' && kernel) {
    cx.warn(r, 'lb_algorithm', `the kernel forwards ${protocol} flows without counting them per member: ROUND_ROBIN used`);
    lbAlgorithm = 'ROUND_ROBIN';
  }
  if (lbAlgorithm === undefined) return void cx.skip(r, `no lb_algorithm: pass \`${SHOW.pool} ${r.id} -f json\``);
  const spec: Record<string, unknown> = { loadBalancer: lb, protocol, lbAlgorithm };
  const sp = r.raw['session_persistence'];
  if (isObj(sp) && typeof sp['type'] === 'string') {
    spec['sessionPersistence'] = {
      type: sp['type'],
      ...(sp['type'] === 'APP_COOKIE' && typeof sp['cookie_name'] === 'string' ? { cookieName: sp['cookie_name'] } : {}),
    };
    for (const f of ['persistence_timeout', 'persistence_granularity']) {
      if (set(sp[f])) {
        cx.warn(
          r,
          `session_persistence.${f}`,
          kernel
            ? "dropped: a flow keeps its member for its listener's timeouts.clientData (conntrack), and SOURCE_IP hashes every flow of a client to one member"
            : 'UDP-only setting; dropped',
        );
      }
    }
    if (sp['type'] !== 'APP_COOKIE' && set(sp['cookie_name']))
      cx.warn(r, 'session_persistence.cookie_name', `only APP_COOKIE names a cookie; dropped for ${String(sp['type'])}`);
  }
  if (r.raw['tls_enabled'] === true) {
    const tls: Record<string, unknown> = { enabled: true };
    const name = cx.names.get(`pool:${r.id}`)!;
    if (set(r.raw['tls_container_ref'])) {
      Object.assign(tls, { certificateFile: `certs/${name}-client.crt`, keyFile: `certs/${name}-client.key` });
      cx.warn(
        r,
        'tls_container_ref',
        `Barbican secret ${String(r.raw['tls_container_ref'])}: put its client certificate and key (PEM) in certs/${name}-client.crt and certs/${name}-client.key`,
      );
    }
    if (set(r.raw['ca_tls_container_ref'])) {
      tls['caFile'] = `certs/${name}-ca.pem`;
      cx.warn(r, 'ca_tls_container_ref', `Barbican secret ${String(r.raw['ca_tls_container_ref'])}: put the CA bundle (PEM) in certs/${name}-ca.pem`);
    }
    if (set(r.raw['crl_container_ref'])) {
      tls['crlFile'] = `certs/${name}-crl.pem`;
      cx.warn(r, 'crl_container_ref', `Barbican secret ${String(r.raw['crl_container_ref'])}: put the CRL (PEM) in certs/${name}-crl.pem`);
    }
    cx.tlsTuning(r, tls);
    spec['tls'] = tls;
  } else {
    for (const f of ['tls_container_ref', 'ca_tls_container_ref', 'crl_container_ref']) {
      if (set(r.raw[f])) cx.warn(r, f, 'tls_enabled is false: not used');
    }
  }
  cx.common(r, spec, used);
  cx.leftovers(r, used);
  cx.emit(r, { kind: 'Pool', metadata: cx.meta(r), spec });
}

export function importMember(cx: ImportContext, r: Rec): void {
  const used = new Set(['address', 'protocol_port', 'weight', 'backup', 'monitor_address', 'monitor_port']);
  const pool = cx.emittedParent(r, 'pool', cx.parent(r, 'pool', ['pool_id'], 'members'), 'pool_id');
  if (pool === undefined) return;
  const address = cx.string(r, 'address');
  const port = cx.number(r, 'protocol_port');
  if (address === undefined || port === undefined) return void cx.skip(r, 'no address or protocol_port');
  if (r.partial) cx.warn(r, 'weight', "only the status tree names this member: weight, backup, monitor and admin state are nslb's defaults");
  const spec: Record<string, unknown> = { pool, address, port };
  const weight = cx.number(r, 'weight');
  if (weight !== undefined && weight !== 1) spec['weight'] = weight;
  if (r.raw['backup'] === true) spec['backup'] = true;
  const monitorAddress = cx.string(r, 'monitor_address');
  if (monitorAddress !== undefined) spec['monitorAddress'] = monitorAddress;
  const monitorPort = cx.number(r, 'monitor_port');
  if (monitorPort !== undefined) spec['monitorPort'] = monitorPort;
  cx.common(r, spec, used);
  if (r.raw['vnic_type'] === 'normal') used.add('vnic_type');
  cx.leftovers(r, used, {
    subnet_id:
      "a member on another Neutron subnet is reached through one of the load balancer's spec.memberNetworks (name, bridge, vlan, the load balancer's own address and prefixLength on it, from `openstack subnet show`); the member is found on it by prefix, or names it in spec.network",
    vnic_type: 'vNIC types are not carried',
  });
  cx.emit(r, { kind: 'Member', metadata: cx.meta(r), spec });
}

export function importHealthMonitor(cx: ImportContext, r: Rec): void {
  if (cx.partial(r)) return;
  const used = new Set([
    'type',
    'delay',
    'timeout',
    'max_retries',
    'max_retries_down',
    'http_method',
    'url_path',
    'expected_codes',
    'http_version',
    'domain_name',
  ]);
  const poolId = cx.parent(r, 'pool', ['pools', 'pool_id'], 'healthmonitor_id');
  const pool = cx.emittedParent(r, 'pool', poolId, 'pools');
  if (pool === undefined) return;
  const type = cx.string(r, 'type');
  if (type === undefined || !MONITOR_TYPES.includes(type)) {
    return void cx.skip(r, `type ${JSON.stringify(type ?? null)} is not supported (nslb health monitors: ${MONITOR_TYPES.join(', ')})`);
  }
  const delay = cx.number(r, 'delay');
  let timeout = cx.number(r, 'timeout');
  const maxRetries = cx.number(r, 'max_retries');
  if (delay === undefined || timeout === undefined || maxRetries === undefined) {
    return void cx.skip(r, `delay, timeout and max_retries are required: pass \`${SHOW.healthmonitor} ${r.id} -f json\``);
  }
  if (timeout > delay) {
    cx.warn(r, 'timeout', `${timeout} s is longer than delay (${delay} s), which nslb refuses: set to ${delay}`);
    timeout = delay;
  }
  const spec: Record<string, unknown> = { pool, type, delay, timeout, maxRetries };
  const down = cx.number(r, 'max_retries_down');
  if (down !== undefined && down !== 3) spec['maxRetriesDown'] = down;
  if (type === 'HTTP' || type === 'HTTPS') {
    const method = cx.string(r, 'http_method');
    if (method !== undefined && method !== 'GET') spec['httpMethod'] = method;
    const path = cx.string(r, 'url_path');
    if (path !== undefined && path !== '/') spec['urlPath'] = path;
    const codes = cx.string(r, 'expected_codes');
    if (codes !== undefined && codes !== '200') spec['expectedCodes'] = codes;
    const version = cx.number(r, 'http_version');
    if (version === 1.1) spec['httpVersion'] = '1.1';
    else if (version !== undefined && version !== 1) cx.warn(r, 'http_version', `${version} is not 1.0 or 1.1; 1.0 used`);
    const domain = cx.string(r, 'domain_name');
    if (domain !== undefined) spec['domainName'] = domain;
  }
  cx.common(r, spec, used, false);
  cx.leftovers(r, used);
  cx.emit(r, { kind: 'HealthMonitor', metadata: cx.meta(r), spec });
}
