// Renders the HAProxy 2.6 configuration of one load balancer (pure: same model → same bytes).
// The structure follows Octavia's combined-listeners template: one frontend per listener, one backend per
// pool, servers in name order. Every golden config under test/golden/haproxy/ is checked by the real
// `haproxy -c`, so a keyword HAProxy 2.6 rejects shows up in the tests, not on a node.
import type {
  DesiredHealthMonitor,
  DesiredListener,
  DesiredLoadBalancer,
  DesiredMember,
  DesiredPool,
} from '../desired/model.js';

/** The process-wide connection target unless the listeners' own limits add up to more. */
export const DEFAULT_GLOBAL_MAXCONN = 50000;
/** Octavia's ceiling for one load balancer; also keeps fd-hard-limit a sane int. */
export const MAX_GLOBAL_MAXCONN = 1_000_000;

/** Used for a pool no listener points at: HAProxy still wants explicit timeouts (Octavia's defaults). */
export const DEFAULT_MEMBER_CONNECT_MS = 5000;
export const DEFAULT_MEMBER_DATA_MS = 50000;

// Names are part of the contract with the runtime API and the status aggregation: they find the
// frontend and backend rows of `show stat` by these names, and servers by member name.
export function frontendName(listenerName: string): string {
  return `listener.${listenerName}`;
}

export function backendName(poolName: string): string {
  return `pool.${poolName}`;
}

export interface HaproxyPaths {
  /** Runtime API socket (`stats socket`). */
  socket: string;
  /** Where the driver dumps `show servers state` before a reload. */
  stateFile: string;
}

export class UnsafeConfigValueError extends Error {
  override readonly name = 'UnsafeConfigValueError';
  constructor(
    readonly value: string,
    readonly reason: string,
  ) {
    super(`refusing to render ${JSON.stringify(value)} into haproxy.cfg: ${reason}`);
  }
}

// HAProxy splits config lines on whitespace, treats `#` as a comment, and interprets quotes and
// backslashes; any of them in a value could change the meaning of the line or add a new one.
// The schema already forbids all of these; this is the last line of defence against a validation gap.
const UNSAFE = /[\s#"'\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/u;

/** Throws unless `s` can be written as one bare HAProxy config word; returns it for inline use. */
export function assertSafeToken(s: string): string {
  if (s.length === 0) throw new UnsafeConfigValueError(s, 'empty');
  const m = UNSAFE.exec(s);
  if (m !== null) {
    const c = m[0].codePointAt(0) ?? 0;
    throw new UnsafeConfigValueError(s, `contains U+${c.toString(16).toUpperCase().padStart(4, '0')}`);
  }
  return s;
}

function int(n: number, what: string): string {
  if (!Number.isSafeInteger(n)) throw new UnsafeConfigValueError(String(n), `${what} is not an integer`);
  return String(n);
}

/** `addr` or `[addr]`: HAProxy takes the last colon as the port separator, so IPv6 needs brackets. */
function hostPart(address: string): string {
  assertSafeToken(address);
  return address.includes(':') ? `[${address}]` : address;
}

type Mode = 'http' | 'tcp';

function listenerMode(l: DesiredListener): Mode {
  return l.protocol === 'HTTP' || l.protocol === 'TERMINATED_HTTPS' ? 'http' : 'tcp';
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
};

function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

// connectionLimit -1 means unlimited. HAProxy itself reads a frontend `maxconn 0` as "use the global
// value", so 0 is unlimited too rather than a frontend that accepts nothing.
function hasLimit(l: DesiredListener): boolean {
  return l.connectionLimit > 0;
}

function globalMaxconn(listeners: DesiredListener[]): number {
  const sum = listeners.filter(hasLimit).reduce((acc, l) => acc + l.connectionLimit, 0);
  return Math.min(MAX_GLOBAL_MAXCONN, Math.max(DEFAULT_GLOBAL_MAXCONN, sum));
}

// Each proxied connection holds two descriptors (client and server side); the rest covers listeners,
// health checks and the runtime socket.
function fdHardLimit(maxconn: number): number {
  return 2 * maxconn + 1000;
}

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

function activeMonitor(pool: DesiredPool): DesiredHealthMonitor | undefined {
  const hm = pool.healthMonitor;
  return hm !== undefined && hm.adminStateUp ? hm : undefined;
}

function renderGlobal(maxconn: number, paths: HaproxyPaths): string[] {
  return [
    'global',
    // The driver starts HAProxy with -W -D; master-worker here keeps the config valid on its own.
    '    master-worker',
    // Not `maxconn`: an explicit one makes HAProxy demand 2×maxconn descriptors and refuse to start
    // where RLIMIT_NOFILE is lower and cannot be raised (containers without CAP_SYS_RESOURCE). With
    // fd-hard-limit, HAProxy derives maxconn from whichever is lower, this or the node's limit.
    `    fd-hard-limit ${int(fdHardLimit(maxconn), 'fd-hard-limit')}`,
    // expose-fd lets the new worker take over the listening sockets on reload, so no SYN is refused.
    `    stats socket ${assertSafeToken(paths.socket)} mode 600 level admin expose-fd listeners`,
    `    server-state-file ${assertSafeToken(paths.stateFile)}`,
    // No hard-stop-after: an old worker keeps serving its established connections until they end,
    // so a reload never cuts a long-lived TCP session.
    // No `log`: daemonized (-D) there is no stdout to log to, and per-request logs of every load
    // balancer in the node's syslog are not part of the contract yet. Health is read via `show stat`.
  ];
}

function renderDefaults(): string[] {
  return [
    'defaults',
    '    mode tcp',
    '    load-server-state-from-file global',
    '    retries 3',
    '    option redispatch',
    // Fallbacks only: every frontend and backend sets its own timeouts below.
    `    timeout connect ${DEFAULT_MEMBER_CONNECT_MS}`,
    '    timeout client 50000',
    `    timeout server ${DEFAULT_MEMBER_DATA_MS}`,
  ];
}

function renderFrontend(
  lb: DesiredLoadBalancer,
  l: DesiredListener,
  vipHost: string,
  pools: Map<string, DesiredPool>,
): string[] {
  const lines = [`frontend ${frontendName(assertSafeToken(l.name))}`];
  // The model carries no certificate paths yet; serving a TERMINATED_HTTPS port in clear text would be
  // worse than not serving it, so the frontend stays down and the listener reports ERROR.
  const tlsMissing = l.protocol === 'TERMINATED_HTTPS';
  if (tlsMissing) lines.push('    # TLS termination is not rendered yet: listener kept down.');
  if (!l.adminStateUp || !lb.adminStateUp || tlsMissing) lines.push('    disabled');
  lines.push(`    bind ${vipHost}:${int(l.port, 'port')}`);
  lines.push(`    mode ${listenerMode(l)}`);
  // Unlimited: no maxconn line, and HAProxy applies the process-wide maxconn it derived at startup.
  if (hasLimit(l)) lines.push(`    maxconn ${int(l.connectionLimit, 'connectionLimit')}`);
  lines.push(`    timeout client ${int(l.timeouts.clientData, 'timeouts.clientData')}`);
  if (l.timeouts.tcpInspect > 0) {
    lines.push(`    tcp-request inspect-delay ${int(l.timeouts.tcpInspect, 'timeouts.tcpInspect')}`);
  }
  if (l.defaultPool !== undefined) {
    if (!pools.has(l.defaultPool)) {
      throw new Error(`listener ${l.name}: defaultPool ${l.defaultPool} is not a pool of this load balancer`);
    }
    lines.push(`    default_backend ${backendName(assertSafeToken(l.defaultPool))}`);
  }
  // Without a default pool HAProxy answers 503 (http) or closes the connection (tcp), as Octavia does.
  return lines;
}

function renderServer(pool: DesiredPool, m: DesiredMember, hm: DesiredHealthMonitor | undefined): string {
  const parts = [
    'server',
    assertSafeToken(m.name),
    `${hostPart(m.address)}:${int(m.port, 'member port')}`,
    `weight ${int(m.weight, 'weight')}`,
  ];
  if (hm !== undefined) {
    parts.push('check');
    // verify none: members' certificates are not known to us, and Octavia checks HTTPS the same way.
    if (hm.type === 'HTTPS') parts.push('check-ssl', 'verify', 'none');
    if (m.monitorAddress !== undefined) parts.push(`addr ${hostPart(m.monitorAddress)}`);
    if (m.monitorPort !== undefined) parts.push(`port ${int(m.monitorPort, 'monitorPort')}`);
  }
  // Checks carry the PROXY header too, unless addr/port send them elsewhere (HAProxy's own rule).
  if (pool.protocol === 'PROXY') parts.push('send-proxy');
  if (pool.protocol === 'PROXYV2') parts.push('send-proxy-v2');
  if (m.backup) parts.push('backup');
  if (!m.adminStateUp) parts.push('disabled');
  return `    ${parts.join(' ')}`;
}

function renderMonitor(hm: DesiredHealthMonitor): string[] {
  const lines: string[] = [];
  switch (hm.type) {
    case 'HTTP':
    case 'HTTPS': {
      lines.push('    option httpchk');
      const send = [
        'http-check send',
        `meth ${assertSafeToken(hm.httpMethod)}`,
        `uri ${assertSafeToken(hm.urlPath)}`,
      ];
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
      // Octavia pings through an external-check script, which needs fork() allowed in HAProxy and a
      // helper on the node; a layer-4 connect to the member port is the closest built-in check.
      lines.push('    # PING is checked as a TCP connect to the member.');
      break;
    case 'TCP':
      // A bare `check` on the servers is a layer-4 connect.
      break;
  }
  lines.push(`    timeout check ${int(hm.timeout, 'timeout')}s`);
  lines.push(
    `    default-server inter ${int(hm.delay, 'delay')}s fall ${int(hm.maxRetriesDown, 'maxRetriesDown')} rise ${int(hm.maxRetries, 'maxRetries')}`,
  );
  return lines;
}

function renderBackend(pool: DesiredPool, listeners: DesiredListener[], maxconn: number): string[] {
  const users = listeners.filter((l) => l.defaultPool === pool.name);
  // One backend serves all its listeners, so timeouts come from one of them: the first by name.
  const owner = users[0];
  const connect = owner?.timeouts.memberConnect ?? DEFAULT_MEMBER_CONNECT_MS;
  const data = owner?.timeouts.memberData ?? DEFAULT_MEMBER_DATA_MS;
  // fullconn only matters once servers get a minconn; pinned to what the listeners can bring in, not
  // HAProxy's guess of 10% of the frontends' maxconn, so that such a ramp would scale to real load.
  const incoming = users.reduce((acc, l) => acc + (hasLimit(l) ? l.connectionLimit : maxconn), 0);
  const fullconn = users.length === 0 ? maxconn : Math.min(incoming, maxconn);
  const hm = activeMonitor(pool);

  const lines = [`backend ${backendName(assertSafeToken(pool.name))}`];
  if (!pool.adminStateUp) lines.push('    disabled');
  lines.push(`    mode ${backendMode(pool, users)}`);
  lines.push(`    balance ${BALANCE[pool.lbAlgorithm]}`);
  lines.push(`    fullconn ${int(fullconn, 'fullconn')}`);
  // All backup members share the load once the primaries are down, not only the first one (Octavia).
  lines.push('    option allbackups');
  lines.push(`    timeout connect ${int(connect, 'timeouts.memberConnect')}`);
  lines.push(`    timeout server ${int(data, 'timeouts.memberData')}`);
  if (hm !== undefined) lines.push(...renderMonitor(hm));
  for (const m of byName(pool.members)) lines.push(renderServer(pool, m, hm));
  return lines;
}

export function renderHaproxyConfig(lb: DesiredLoadBalancer, paths: HaproxyPaths): string {
  const listeners = byName(lb.listeners);
  const pools = byName(lb.pools);
  const poolsByName = new Map(pools.map((p) => [p.name, p]));
  const maxconn = globalMaxconn(listeners);
  const vipHost = hostPart(lb.vip.address);

  const sections: string[][] = [
    [
      `# Generated by nslb for ${assertSafeToken(lb.namespace)}/${assertSafeToken(lb.name)}. ` +
        'Do not edit: changes are overwritten.',
    ],
    renderGlobal(maxconn, paths),
    renderDefaults(),
    ...listeners.map((l) => renderFrontend(lb, l, vipHost, poolsByName)),
    ...pools.map((p) => renderBackend(p, listeners, maxconn)),
  ];
  return `${sections.map((s) => s.join('\n')).join('\n\n')}\n`;
}
