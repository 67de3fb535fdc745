// One backend per pool: balancing, persistence, timeouts shared by its listeners, its health monitor, and one
// server line per member (runtime-diff.ts reads these lines back to change members without a reload).
import { stickTablePeers } from './haproxy-peers.js';
import type { DesiredHealthMonitor, DesiredListener, DesiredLoadBalancer, DesiredMember, DesiredL7Policy, DesiredPool } from '../desired/model.js';
import { vipAddresses } from '../desired/model.js';
import { renderServerTls } from './haproxy-tls.js';
import {
  assertSafeToken,
  backendName,
  byName,
  FIELD_NAME,
  hasLimit,
  hostPart,
  int,
  listenerMode,
  lookup,
  matching,
  UnsafeConfigValueError,
  type HaproxyPaths,
  type Mode,
} from './haproxy-words.js';

/** Used for a pool no listener points at: HAProxy still wants explicit timeouts (Octavia's defaults). */
export const DEFAULT_MEMBER_CONNECT_MS = 5000;

export const DEFAULT_MEMBER_DATA_MS = 50000;

/** Entries of a persistence stick table (Octavia's default `stick_size`). */
const STICK_TABLE_SIZE = '10k';

// The PROXY header on every connection to a member. An HTTPS pool is plain TCP to HAProxy (the
// client's TLS passes through); TLS to the members is Pool.tls, not a protocol.
const SEND_PROXY: Record<DesiredPool['protocol'], string | undefined> = {
  TCP: undefined,
  HTTP: undefined,
  HTTPS: undefined,
  PROXY: 'send-proxy',
  PROXYV2: 'send-proxy-v2',
  // Check-only backends (udp-health-checks.ts): never rendered through here.
  UDP: undefined,
  SCTP: undefined,
};

function redirectsTo(policy: DesiredL7Policy, pool: string): boolean {
  return policy.action === 'REDIRECT_TO_POOL' && policy.redirectPool === pool;
}

/** Listeners that send traffic to the pool: as their default pool or through an L7 policy. */
function poolUsers(pool: DesiredPool, listeners: DesiredListener[]): DesiredListener[] {
  return listeners.filter((l) => l.defaultPool === pool.name || l.l7Policies.some((p) => redirectsTo(p, pool.name)));
}

// A pool's backend is shared by every listener that uses it. HAProxy refuses an http frontend with a
// tcp backend, while a tcp frontend may use an http backend (it upgrades the connection). So: any
// HTTP listener forces http; a pool used only by TCP-mode listeners stays tcp even if its protocol is
// HTTP, so those listeners pass bytes through untouched; an unused pool follows its own protocol.
function backendMode(pool: DesiredPool, users: DesiredListener[]): Mode {
  if (users.some((l) => listenerMode(l) === 'http')) return 'http';
  if (users.length > 0) return 'tcp';
  return pool.protocol === 'HTTP' ? 'http' : 'tcp';
}

const BALANCE: Record<DesiredPool['lbAlgorithm'], string> = {
  ROUND_ROBIN: 'roundrobin',
  LEAST_CONNECTIONS: 'leastconn',
  SOURCE_IP: 'source',
  // Only UDP and SCTP pools may use it (desired/checks-kernel.ts), and those are the kernel's.
  SOURCE_IP_PORT: 'source',
};

/**
 * Expected codes ("200", "200,202", "200-204") as an explicit, sorted, de-duplicated list.
 * Throws on anything that is not a 3-digit status code or an ascending range of them.
 */
export function expandExpectedCodes(expected: string): number[] {
  const codes = new Set<number>();
  for (const part of expected.split(',')) {
    const m = /^\s*([1-5][0-9]{2})\s*(?:-\s*([1-5][0-9]{2})\s*)?$/.exec(part);
    if (m === null || m[1] === undefined) {
      throw new UnsafeConfigValueError(expected, 'expectedCodes must be codes or ranges like 200,202 or 200-204');
    }
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new UnsafeConfigValueError(expected, `range ${part.trim()} is descending`);
    for (let c = from; c <= to; c++) codes.add(c);
  }
  return [...codes].sort((a, b) => a - b);
}

function expectLine(expected: string): string {
  const codes = expandExpectedCodes(expected);
  // HAProxy 2.2+ would also take lists and ranges after `status`; the explicit alternation is kept so
  // that the rendered config (and its golden file) shows exactly which codes pass.
  if (codes.length === 1) return `http-check expect status ${codes[0]}`;
  return `http-check expect rstatus ^(${codes.join('|')})$`;
}

export function activeMonitor(pool: DesiredPool): DesiredHealthMonitor | undefined {
  const hm = pool.healthMonitor;
  return hm?.adminStateUp ? hm : undefined;
}

/** ACTIVE_STANDBY: every stick-table is shared with the peer node, so persistence survives a failover. */
function peersOf(lb: DesiredLoadBalancer): string {
  return lb.ha === undefined ? '' : ` ${stickTablePeers()}`;
}

function renderPersistence(lb: DesiredLoadBalancer, pool: DesiredPool, mode: Mode): string[] {
  const sp = pool.sessionPersistence;
  if (sp === undefined) return [];
  switch (sp.type) {
    case 'SOURCE_IP':
      // Keys are client addresses, of the family of the address they came to. With an IPv6 address among
      // them, `ipv6` keys hold both: HAProxy stores an IPv4 source as an IPv4-mapped IPv6 address.
      return [
        `    stick-table type ${vipAddresses(lb.vip).some((a) => a.family === 6) ? 'ipv6' : 'ip'} size ${STICK_TABLE_SIZE}${peersOf(lb)}`,
        '    stick on src',
      ];
    case 'HTTP_COOKIE':
    case 'APP_COOKIE':
      // HAProxy cannot see cookies in a tcp backend (and only warns about `cookie` there).
      if (mode !== 'http') return [`    # ${sp.type} persistence needs HTTP; this pool serves tcp listeners only.`];
      if (sp.type === 'HTTP_COOKIE') return ['    cookie SRV insert indirect nocache'];
      break;
    default:
      throw new UnsafeConfigValueError(String((sp as { type: unknown }).type), 'unknown session persistence type');
  }
  if (sp.cookieName === undefined) throw new Error(`pool ${pool.name}: APP_COOKIE persistence needs a cookieName`);
  const cookie = matching(sp.cookieName, FIELD_NAME, 'cookie name');
  // Learn the member from the cookie the application sets, then route requests that carry it back.
  return [
    `    stick-table type string len 64 size ${STICK_TABLE_SIZE}${peersOf(lb)}`,
    `    stick store-response res.cook(${cookie})`,
    `    stick match req.cook(${cookie})`,
  ];
}

interface ServerOptions {
  hm: DesiredHealthMonitor | undefined;
  cookie: boolean;
  sendProxy: string | undefined;
  paths: HaproxyPaths;
  mode: Mode;
}

function renderServer(pool: DesiredPool, m: DesiredMember, o: ServerOptions): string {
  const parts = ['server', assertSafeToken(m.name), `${hostPart(m.address)}:${int(m.port, 'member port')}`, `weight ${int(m.weight, 'weight')}`];
  const checkSsl = o.hm?.type === 'HTTPS';
  if (o.hm !== undefined) {
    parts.push('check');
    // HTTPS checks are TLS even where the traffic is not (a passthrough pool). With tlsToMembers, the
    // other checks are TLS too (HAProxy's default for an ssl server) unless addr/port send them
    // elsewhere; TLS-HELLO sends its own hello and must not be wrapped in a second TLS layer.
    if (checkSsl) parts.push('check-ssl');
    if (o.hm.type === 'TLS-HELLO' && pool.tlsToMembers) parts.push('no-check-ssl');
    // HAProxy hands an external check the server's own address, never these (see scripts/ping-check.sh).
    if (o.hm.type !== 'PING') {
      if (m.monitorAddress !== undefined) parts.push(`addr ${hostPart(m.monitorAddress)}`);
      if (m.monitorPort !== undefined) parts.push(`port ${int(m.monitorPort, 'monitorPort')}`);
    }
  }
  parts.push(...renderServerTls(pool, checkSsl, o));
  if (o.cookie) parts.push(`cookie ${assertSafeToken(m.name)}`);
  // Checks carry the PROXY header too, unless addr/port send them elsewhere (HAProxy's own rule).
  if (o.sendProxy !== undefined) parts.push(o.sendProxy);
  if (m.backup) parts.push('backup');
  if (!m.adminStateUp) parts.push('disabled');
  return `    ${parts.join(' ')}`;
}

function renderMonitor(hm: DesiredHealthMonitor, paths: HaproxyPaths): string[] {
  const lines: string[] = [];
  switch (hm.type) {
    case 'HTTP':
    case 'HTTPS': {
      lines.push('    option httpchk');
      const send = ['http-check send', `meth ${assertSafeToken(hm.httpMethod)}`, `uri ${assertSafeToken(hm.urlPath)}`];
      if (hm.httpVersion !== undefined) send.push(`ver HTTP/${assertSafeToken(hm.httpVersion)}`);
      if (hm.domainName !== undefined) {
        // The header value is a log-format string: a `%` would be evaluated, not sent.
        if (hm.domainName.includes('%')) throw new UnsafeConfigValueError(hm.domainName, 'contains %');
        send.push(`hdr Host ${assertSafeToken(hm.domainName)}`);
      }
      lines.push(`    ${send.join(' ')}`);
      lines.push(`    ${expectLine(hm.expectedCodes)}`);
      break;
    }
    case 'TLS-HELLO':
      lines.push('    option ssl-hello-chk');
      break;
    case 'PING':
      // As Octavia: an external command pings the member; its exit status is the check's result.
      lines.push('    option external-check');
      lines.push(`    external-check command ${assertSafeToken(paths.pingCheckCommand)}`);
      break;
    case 'TCP':
      // A bare `check` on the servers is a layer-4 connect.
      break;
    default:
      throw new UnsafeConfigValueError(String((hm as { type: unknown }).type), 'unknown health monitor type');
  }
  lines.push(`    timeout check ${int(hm.timeout, 'timeout')}s`);
  lines.push(`    default-server inter ${int(hm.delay, 'delay')}s fall ${int(hm.maxRetriesDown, 'maxRetriesDown')} rise ${int(hm.maxRetries, 'maxRetries')}`);
  return lines;
}

export function renderBackend(lb: DesiredLoadBalancer, pool: DesiredPool, listeners: DesiredListener[], maxconn: number, paths: HaproxyPaths): string[] {
  const sendProxy = lookup(SEND_PROXY, pool.protocol, 'pool protocol');
  const users = poolUsers(pool, listeners);
  const mode = backendMode(pool, users);
  // One backend serves all its listeners, so timeouts come from one of them: the first by name.
  const owner = users[0];
  const connect = owner?.timeouts.memberConnect ?? DEFAULT_MEMBER_CONNECT_MS;
  const data = owner?.timeouts.memberData ?? DEFAULT_MEMBER_DATA_MS;
  // fullconn only matters once servers get a minconn; pinned to what the listeners can bring in, not
  // HAProxy's guess of 10% of the frontends' maxconn, so that such a ramp would scale to real load.
  const incoming = users.reduce((acc, l) => acc + (hasLimit(l) ? l.connectionLimit : maxconn), 0);
  const fullconn = users.length === 0 ? maxconn : Math.min(incoming, maxconn);
  const hm = activeMonitor(pool);
  const cookie = mode === 'http' && pool.sessionPersistence?.type === 'HTTP_COOKIE';

  const lines = [`backend ${backendName(assertSafeToken(pool.name))}`];
  if (!pool.adminStateUp) lines.push('    disabled');
  lines.push(`    mode ${mode}`);
  lines.push(`    balance ${lookup(BALANCE, pool.lbAlgorithm, 'lbAlgorithm')}`);
  lines.push(...renderPersistence(lb, pool, mode));
  lines.push(`    fullconn ${int(fullconn, 'fullconn')}`);
  // All backup members share the load once the primaries are down, not only the first one (Octavia).
  lines.push('    option allbackups');
  lines.push(`    timeout connect ${int(connect, 'timeouts.memberConnect')}`);
  lines.push(`    timeout server ${int(data, 'timeouts.memberData')}`);
  if (hm !== undefined) lines.push(...renderMonitor(hm, paths));
  for (const m of byName(pool.members)) lines.push(renderServer(pool, m, { hm, cookie, sendProxy, paths, mode }));
  return lines;
}
