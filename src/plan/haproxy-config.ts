// Renders the HAProxy 2.6 configuration of one load balancer (pure: same model → same bytes).
// The structure follows Octavia's combined-listeners template: one frontend per listener, one backend per
// pool, servers in name order. Every golden config under test/golden/haproxy/ is checked by the real
// `haproxy -c`, so a keyword HAProxy 2.6 rejects shows up in the tests, not on a node.
import { posix } from 'node:path';
import type {
  DesiredHealthMonitor,
  DesiredL7Policy,
  DesiredL7Rule,
  DesiredListener,
  DesiredLoadBalancer,
  DesiredMember,
  DesiredPool,
  DesiredTlsPolicy,
  SslClientHeader,
} from '../desired/model.js';
import { vipAddresses } from '../desired/model.js';

/** The process-wide connection target unless the listeners' own limits add up to more. */
export const DEFAULT_GLOBAL_MAXCONN = 50000;
/** Octavia's ceiling for one load balancer; also keeps fd-hard-limit a sane int. */
export const MAX_GLOBAL_MAXCONN = 1_000_000;

/** Used for a pool no listener points at: HAProxy still wants explicit timeouts (Octavia's defaults). */
export const DEFAULT_MEMBER_CONNECT_MS = 5000;
export const DEFAULT_MEMBER_DATA_MS = 50000;

/** Entries of a persistence stick table (Octavia's default `stick_size`). */
const STICK_TABLE_SIZE = '10k';

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
  /** The load balancer's `certs/` directory: a certificate is read from `<certsDir>/<fileName>`. */
  certsDir: string;
  /** Absolute path of scripts/ping-check.sh, run by HAProxy for PING health monitors. */
  pingCheckCommand: string;
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
  if (typeof s !== 'string') throw new UnsafeConfigValueError(String(s), 'not a string');
  if (s.length === 0) throw new UnsafeConfigValueError(s, 'empty');
  const m = UNSAFE.exec(s);
  if (m !== null) {
    const c = m[0].codePointAt(0) ?? 0;
    throw new UnsafeConfigValueError(s, `contains U+${c.toString(16).toUpperCase().padStart(4, '0')}`);
  }
  return s;
}

function matching(s: string, pattern: RegExp, what: string): string {
  assertSafeToken(s);
  if (!pattern.test(s)) throw new UnsafeConfigValueError(s, `not a valid ${what}`);
  return s;
}

// What HAProxy accepts as an ACL name. Policy names also go inside `str(...)`, where `,` or `)` would
// end the argument, and they are outside this set too.
const ACL_NAME = /^[A-Za-z0-9_.:-]+$/;
// RFC 9110 token characters, less `%`; `(`, `)` and `,` would end a sample fetch argument.
const FIELD_NAME = /^[A-Za-z0-9!$&*+.^_`|~-]+$/;
// A plain file inside certsDir: no directory part, no `..`.
const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const CIDR = /^[0-9A-Fa-f.:]+(?:\/[0-9]{1,3})?$/;
// The schema's cipher list pattern: ":"-separated OpenSSL entries, nothing HAProxy would read as syntax.
const CIPHER_LIST = /^[!+-]?[A-Za-z0-9_.=@]+([+-][A-Za-z0-9_.=@]+)*(:[!+-]?[A-Za-z0-9_.=@]+([+-][A-Za-z0-9_.=@]+)*)*$/;

/** Table lookup that refuses a key the table does not know, instead of rendering `undefined`. */
function lookup<K extends string, V>(table: Record<K, V>, key: K, what: string): V {
  if (!Object.hasOwn(table, key)) throw new UnsafeConfigValueError(String(key), `unknown ${what}`);
  return table[key];
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

// `http-request redirect` takes a log-format string, where `%` starts an expression; `%%` is a literal
// percent sign, so a percent-encoded URL reaches the client exactly as written.
function logFormatLiteral(s: string): string {
  return assertSafeToken(s).replaceAll('%', '%%');
}

type Mode = 'http' | 'tcp';

// HTTPS is TLS passthrough: the bytes go through untouched, so it is tcp like TCP.
const LISTENER_MODE: Record<DesiredListener['protocol'], Mode> = {
  TCP: 'tcp',
  HTTP: 'http',
  HTTPS: 'tcp',
  TERMINATED_HTTPS: 'http',
};

function listenerMode(l: DesiredListener): Mode {
  return lookup(LISTENER_MODE, l.protocol, 'listener protocol');
}

// The PROXY header on every connection to a member. An HTTPS pool is plain TCP to HAProxy (the
// client's TLS passes through); TLS to the members is Pool.tls, not a protocol.
const SEND_PROXY: Record<DesiredPool['protocol'], string | undefined> = {
  TCP: undefined,
  HTTP: undefined,
  HTTPS: undefined,
  PROXY: 'send-proxy',
  PROXYV2: 'send-proxy-v2',
};

function redirectsTo(policy: DesiredL7Policy, pool: string): boolean {
  return policy.action === 'REDIRECT_TO_POOL' && policy.redirectPool === pool;
}

/** Listeners that send traffic to the pool: as their default pool or through an L7 policy. */
function poolUsers(pool: DesiredPool, listeners: DesiredListener[]): DesiredListener[] {
  return listeners.filter(
    (l) => l.defaultPool === pool.name || l.l7Policies.some((p) => redirectsTo(p, pool.name)),
  );
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

function compareNames(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort(compareNames);
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

function renderGlobal(maxconn: number, paths: HaproxyPaths, pingChecks: boolean): string[] {
  const lines = [
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
    // HAProxy's internal HTTP client (Lua, OCSP updates) is never used by these configs, yet by default
    // it loads the whole system CA store at every start, check and reload: ~30 ms of CPU each time,
    // most of a new load balancer's start-up. Not loading it changes nothing that nslb renders.
    '    httpclient.ssl.verify none',
    // No hard-stop-after: an old worker keeps serving its established connections until they end,
    // so a reload never cuts a long-lived TCP session.
    // No `log`: daemonized (-D) there is no stdout to log to, and per-request logs of every load
    // balancer in the node's syslog are not part of the contract yet. Health is read via `show stat`.
  ];
  if (pingChecks) {
    // PING monitors run an external command, which HAProxy only allows with both switches. Forking
    // is a hardening HAProxy gives up, so only load balancers that have a PING monitor pay for it.
    lines.push('    external-check', '    insecure-fork-wanted');
  }
  return lines;
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

function certificatePath(paths: HaproxyPaths, fileName: string): string {
  return posix.join(assertSafeToken(paths.certsDir), matching(fileName, FILE_NAME, 'certificate file name'));
}

function renderBind(l: DesiredListener, vipHost: string, paths: HaproxyPaths): string {
  const bind = `    bind ${vipHost}:${int(l.port, 'port')}`;
  if (l.protocol !== 'TERMINATED_HTTPS') return bind;
  if (l.tls === undefined) throw new Error(`listener ${l.name}: TERMINATED_HTTPS without a certificate`);
  // The first crt is the default certificate; for a client's SNI HAProxy picks among all of them by
  // their CN/SAN names, so the order of the others does not matter, and a repeat adds nothing.
  const files = [...new Set([l.tls.certificate, ...l.tls.sniCertificates].map((c) => c.fileName))];
  const parts = [bind, 'ssl', ...files.map((f) => `crt ${certificatePath(paths, f)}`)];
  const auth = l.tls.clientAuthentication ?? 'NONE';
  if (auth !== 'NONE') {
    if (l.tls.clientCa === undefined) throw new Error(`listener ${l.name}: clientAuthentication ${auth} without a CA`);
    // verify optional still refuses a certificate that fails verification (a revoked one, say): only
    // the absence of a certificate is let through.
    parts.push(`verify ${lookup(CLIENT_VERIFY, auth, 'clientAuthentication')}`, `ca-file ${certificatePath(paths, l.tls.clientCa.fileName)}`);
    if (l.tls.clientCrl !== undefined) parts.push(`crl-file ${certificatePath(paths, l.tls.clientCrl.fileName)}`);
  }
  if (l.tls.policy !== undefined) parts.push(...renderTlsPolicy(l.tls.policy, true));
  return parts.join(' ');
}

const CLIENT_VERIFY: Record<'OPTIONAL' | 'MANDATORY', string> = { OPTIONAL: 'optional', MANDATORY: 'required' };

const TLS_VERSIONS: Record<string, string> = {
  SSLv3: 'SSLv3',
  TLSv1: 'TLSv1.0',
  'TLSv1.1': 'TLSv1.1',
  'TLSv1.2': 'TLSv1.2',
  'TLSv1.3': 'TLSv1.3',
};
const ALPN = new Set(['h2', 'http/1.1', 'http/1.0']);

/** Versions, ciphers and ALPN: the same keywords on a bind line and on a server line. */
function renderTlsPolicy(p: DesiredTlsPolicy, withAlpn: boolean): string[] {
  const parts: string[] = [];
  if (p.minVersion !== undefined) parts.push(`ssl-min-ver ${lookup(TLS_VERSIONS, p.minVersion, 'TLS version')}`);
  if (p.maxVersion !== undefined) parts.push(`ssl-max-ver ${lookup(TLS_VERSIONS, p.maxVersion, 'TLS version')}`);
  if (p.ciphers !== undefined) parts.push(`ciphers ${matching(p.ciphers, CIPHER_LIST, 'cipher list')}`);
  if (p.ciphersuites !== undefined) parts.push(`ciphersuites ${matching(p.ciphersuites, CIPHER_LIST, 'cipher suite list')}`);
  if (withAlpn && p.alpn.length > 0) {
    for (const a of p.alpn) if (!ALPN.has(a)) throw new UnsafeConfigValueError(a, 'unknown ALPN protocol');
    parts.push(`alpn ${p.alpn.join(',')}`);
  }
  return parts;
}

// Octavia's header names and fetches. Verify and Has-Cert are always set; the others only for a client that
// sent a certificate, so that without one the member sees no such header at all (not even a forged one:
// each is deleted first).
const SSL_CLIENT_FETCH: Record<SslClientHeader, string> = {
  'X-SSL-Client-Verify': '%[ssl_c_verify]',
  'X-SSL-Client-Has-Cert': '%[ssl_c_used]',
  'X-SSL-Client-DN': '%[ssl_c_s_dn]',
  'X-SSL-Client-CN': '%[ssl_c_s_dn(cn)]',
  'X-SSL-Issuer': '%[ssl_c_i_dn]',
  'X-SSL-Client-SHA1': '%[ssl_c_sha1,hex]',
  'X-SSL-Client-Not-Before': '%[ssl_c_notbefore]',
  'X-SSL-Client-Not-After': '%[ssl_c_notafter]',
};
const ALWAYS_SET: ReadonlySet<SslClientHeader> = new Set(['X-SSL-Client-Verify', 'X-SSL-Client-Has-Cert']);

function renderSslClientHeaders(headers: readonly SslClientHeader[]): string[] {
  const lines: string[] = [];
  for (const h of headers) {
    const name = matching(h, FIELD_NAME, 'header name');
    const fetch = lookup(SSL_CLIENT_FETCH, h, 'client certificate header');
    if (ALWAYS_SET.has(h)) {
      lines.push(`    http-request set-header ${name} ${fetch}`);
    } else {
      lines.push(`    http-request del-header ${name}`, `    http-request set-header ${name} ${fetch} if { ssl_c_used }`);
    }
  }
  return lines;
}

/**
 * The Strict-Transport-Security value, e.g. `max-age=31536000; includeSubDomains; preload`, as one config
 * word: HAProxy reads `\ ` (backslash, space) as a space inside a word. Built from an integer and fixed
 * words only, so no user text reaches the backslashes.
 */
export function renderHstsValue(h: { maxAge: number; includeSubdomains: boolean; preload: boolean }): string {
  const directives = [`max-age=${int(h.maxAge, 'hsts.maxAge')}`];
  if (h.includeSubdomains) directives.push('includeSubDomains');
  if (h.preload) directives.push('preload');
  return directives.join(';\\ ');
}

// --- L7 policies -------------------------------------------------------------------------------------
//
// HAProxy does not evaluate its rules in the order they are written: every `http-request` rule runs
// before any `use_backend`, so a REJECT at position 2 would beat a REDIRECT_TO_POOL at position 1.
// First match wins only if the choice is made in one ordered pass: each policy, in position order,
// claims the request in a transaction variable unless an earlier one has, and each action then fires
// on its own policy's claim alone.

const L7_VAR = 'txn.nslb_l7';

const RULE_FETCH: Record<DesiredL7Rule['type'], (r: DesiredL7Rule) => string> = {
  // Host names are case-insensitive and may carry the port (`example.com:8080`); compare the name only.
  HOST_NAME: () => 'req.hdr(host),field(1,:) -i',
  PATH: () => 'path',
  // The extension of the last path segment ("jpg" for /img/a.b.jpg?x); a segment without a dot has
  // none, so /img/jpg is not of type jpg.
  FILE_TYPE: () => 'path,field(-1,/),regsub(^[^.]*$,),field(-1,.)',
  HEADER: (r) => `req.hdr(${matching(ruleKey(r), FIELD_NAME, 'header name')})`,
  COOKIE: (r) => `req.cook(${matching(ruleKey(r), FIELD_NAME, 'cookie name')})`,
};

const MATCH: Record<DesiredL7Rule['compareType'], string> = {
  REGEX: 'reg',
  STARTS_WITH: 'beg',
  ENDS_WITH: 'end',
  CONTAINS: 'sub',
  EQUAL_TO: 'str',
};

function ruleKey(r: DesiredL7Rule): string {
  if (r.key === undefined) throw new Error(`l7 rule ${r.name}: ${r.type} needs a key`);
  return r.key;
}

function aclName(policy: DesiredL7Policy, rule: DesiredL7Rule): string {
  return matching(`${policy.name}.${rule.name}`, ACL_NAME, 'ACL name');
}

function renderAcl(policy: DesiredL7Policy, rule: DesiredL7Rule): string {
  const fetch = lookup(RULE_FETCH, rule.type, 'l7 rule type')(rule);
  const match = lookup(MATCH, rule.compareType, 'l7 compare type');
  const value = assertSafeToken(rule.value);
  // A value starting with `-` would be read as another flag.
  const end = value.startsWith('-') ? ' --' : '';
  return `    acl ${aclName(policy, rule)} ${fetch} -m ${match}${end} ${value}`;
}

const REDIRECT_CODES = new Set([301, 302, 303, 307, 308]);

function redirectCode(p: DesiredL7Policy): string {
  if (!REDIRECT_CODES.has(p.redirectHttpCode)) {
    throw new UnsafeConfigValueError(String(p.redirectHttpCode), 'redirectHttpCode must be 301, 302, 303, 307 or 308');
  }
  return String(p.redirectHttpCode);
}

function required(value: string | undefined, policy: DesiredL7Policy, field: string): string {
  if (value === undefined) throw new Error(`l7 policy ${policy.name}: ${policy.action} needs ${field}`);
  return value;
}

interface L7Lines {
  acls: string[];
  /** Claim the request for the first matching policy. */
  claims: string[];
  /** REJECT and redirects: `http-request` rules. */
  actions: string[];
  /** REDIRECT_TO_POOL: `use_backend`, which HAProxy evaluates after every `http-request` rule. */
  routes: string[];
}

function renderL7(l: DesiredListener, pools: Map<string, DesiredPool>): L7Lines {
  const out: L7Lines = { acls: [], claims: [], actions: [], routes: [] };
  if (l.l7Policies.length === 0) return out;
  if (listenerMode(l) !== 'http') throw new Error(`listener ${l.name}: L7 policies need an HTTP listener`);

  // The builder sorts them already; sorting again keeps the output independent of input order.
  const policies = [...l.l7Policies].sort((a, b) => a.position - b.position || compareNames(a, b));
  for (const p of policies) {
    const claimed = `{ var(${L7_VAR}) -m str ${matching(p.name, ACL_NAME, 'l7 policy name')} }`;
    let action: string;
    switch (p.action) {
      case 'REJECT':
        action = `    http-request deny deny_status 403 if ${claimed}`;
        break;
      case 'REDIRECT_TO_URL':
        action = `    http-request redirect code ${redirectCode(p)} location ${logFormatLiteral(required(p.redirectUrl, p, 'redirectUrl'))} if ${claimed}`;
        break;
      case 'REDIRECT_PREFIX':
        action = `    http-request redirect code ${redirectCode(p)} prefix ${logFormatLiteral(required(p.redirectPrefix, p, 'redirectPrefix'))} if ${claimed}`;
        break;
      case 'REDIRECT_TO_POOL': {
        const name = assertSafeToken(required(p.redirectPool, p, 'redirectPool'));
        const pool = pools.get(name);
        if (pool === undefined) throw new Error(`l7 policy ${p.name}: redirectPool ${name} is not a pool of this load balancer`);
        // Octavia leaves such a policy out, so the request goes on to the next one or the default pool.
        if (!pool.adminStateUp) {
          out.claims.push(`    # ${p.name}: redirectPool ${name} is admin-down, so the policy is skipped.`);
          continue;
        }
        action = `    use_backend ${backendName(name)} if ${claimed}`;
        break;
      }
      default:
        throw new UnsafeConfigValueError(String((p as { action: unknown }).action), 'unknown l7 policy action');
    }
    if (p.rules.length === 0) {
      // As Octavia: a policy with no enabled rule matches nothing (disabling the only rule of a REJECT policy
      // must not start rejecting every request).
      out.claims.push(`    # ${p.name}: no enabled rules, so the policy matches nothing.`);
      continue;
    }
    const conditions = byName(p.rules).map((r) => {
      out.acls.push(renderAcl(p, r));
      return `${r.invert ? '!' : ''}${aclName(p, r)}`;
    });
    // The variable test comes first: once a policy has matched, later rules are not evaluated at all.
    out.claims.push(
      `    http-request set-var(${L7_VAR}) str(${p.name}) if ${[`!{ var(${L7_VAR}) -m found }`, ...conditions].join(' ')}`,
    );
    (p.action === 'REDIRECT_TO_POOL' ? out.routes : out.actions).push(action);
  }
  return out;
}

// --- frontends and backends --------------------------------------------------------------------------

function renderFrontend(
  lb: DesiredLoadBalancer,
  l: DesiredListener,
  vipHosts: readonly string[],
  pools: Map<string, DesiredPool>,
  paths: HaproxyPaths,
): string[] {
  const mode = listenerMode(l);
  // Both are only compared below, and a NaN compares false: checked so that it cannot pass as "none".
  int(l.connectionLimit, 'connectionLimit');
  int(l.timeouts.tcpInspect, 'timeouts.tcpInspect');
  const lines = [`frontend ${frontendName(assertSafeToken(l.name))}`];
  if (!l.adminStateUp || !lb.adminStateUp) lines.push('    disabled');
  // One bind per address of the load balancer (VIP, then additional VIPs), each with the same options.
  for (const host of vipHosts) lines.push(renderBind(l, host, paths));
  lines.push(`    mode ${mode}`);
  // On a reload, the old worker would close idle keep-alive connections, and a client sending its next
  // request at that moment gets a reset. Instead it answers that request with `Connection: close`.
  if (mode === 'http') lines.push('    option idle-close-on-response');
  // Unlimited: no maxconn line, and HAProxy applies the process-wide maxconn it derived at startup.
  if (hasLimit(l)) lines.push(`    maxconn ${int(l.connectionLimit, 'connectionLimit')}`);
  lines.push(`    timeout client ${int(l.timeouts.clientData, 'timeouts.clientData')}`);
  if (l.timeouts.tcpInspect > 0) {
    lines.push(`    tcp-request inspect-delay ${int(l.timeouts.tcpInspect, 'timeouts.tcpInspect')}`);
  }
  if (l.allowedCidrs.length > 0) {
    // At accept time, before any byte is read, so it holds for every protocol; `src` takes IPv4 and
    // IPv6 networks in one list.
    const cidrs = l.allowedCidrs.map((c) => matching(c, CIDR, 'CIDR'));
    lines.push(`    tcp-request connection reject unless { src ${cidrs.join(' ')} }`);
  }

  // Headers are an HTTP notion: a tcp listener passes the stream through untouched.
  const headers = mode === 'http' ? l.insertHeaders : { forwardedFor: false, forwardedPort: false, forwardedProto: false };
  if (headers.forwardedFor) lines.push('    option forwardfor');

  const l7 = renderL7(l, pools);
  lines.push(...l7.acls, ...l7.claims, ...l7.actions);
  // Set after the L7 rules ran, so that HEADER rules see what the client sent. set-header replaces a
  // client's own X-Forwarded-Port/Proto rather than trusting it.
  if (headers.forwardedPort) lines.push('    http-request set-header X-Forwarded-Port %[dst_port]');
  if (headers.forwardedProto) {
    lines.push(`    http-request set-header X-Forwarded-Proto ${l.protocol === 'TERMINATED_HTTPS' ? 'https' : 'http'}`);
  }
  if (l.protocol === 'TERMINATED_HTTPS') {
    lines.push(...renderSslClientHeaders(headers.sslClient ?? []));
    if (l.tls?.hsts !== undefined) lines.push(`    http-response set-header Strict-Transport-Security ${renderHstsValue(l.tls.hsts)}`);
  }
  lines.push(...l7.routes);

  if (l.defaultPool !== undefined) {
    const name = assertSafeToken(l.defaultPool);
    if (!pools.has(name)) {
      throw new Error(`listener ${l.name}: defaultPool ${name} is not a pool of this load balancer`);
    }
    lines.push(`    default_backend ${backendName(name)}`);
  }
  // Without a default pool HAProxy answers 503 (http) or closes the connection (tcp), as Octavia does.
  return lines;
}

function renderPersistence(lb: DesiredLoadBalancer, pool: DesiredPool, mode: Mode): string[] {
  const sp = pool.sessionPersistence;
  if (sp === undefined) return [];
  switch (sp.type) {
    case 'SOURCE_IP':
      // Keys are client addresses, of the family of the address they came to. With an IPv6 address among
      // them, `ipv6` keys hold both: HAProxy stores an IPv4 source as an IPv4-mapped IPv6 address.
      return [
        `    stick-table type ${vipAddresses(lb.vip).some((a) => a.family === 6) ? 'ipv6' : 'ip'} size ${STICK_TABLE_SIZE}`,
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
    `    stick-table type string len 64 size ${STICK_TABLE_SIZE}`,
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
  const parts = [
    'server',
    assertSafeToken(m.name),
    `${hostPart(m.address)}:${int(m.port, 'member port')}`,
    `weight ${int(m.weight, 'weight')}`,
  ];
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

/**
 * TLS towards members. The options hold for the health checks too, so an HTTPS monitor verifies members the
 * way the traffic does.
 */
function renderServerTls(pool: DesiredPool, checkSsl: boolean, o: ServerOptions): string[] {
  // An HTTPS check of a plain pool: like Octavia, the member's certificate is not checked.
  if (!pool.tlsToMembers) return checkSsl ? ['verify', 'none'] : [];
  const tls = pool.memberTls;
  const parts = ['ssl'];
  if (tls?.ca === undefined) {
    // Pass on the name the client asked the listener for, so name-based members pick the right site.
    parts.push('verify', 'none', 'sni', 'ssl_fc_sni');
  } else {
    // The chain (and the CRL) is verified, not the name: with `sni`, HAProxy would also match the client's
    // SNI against the member's certificate, which names the member, not the site (as Octavia: no sni).
    parts.push('verify', 'required', `ca-file ${certificatePath(o.paths, tls.ca.fileName)}`);
    if (tls.crl !== undefined) parts.push(`crl-file ${certificatePath(o.paths, tls.crl.fileName)}`);
  }
  if (tls?.clientCertificate !== undefined) parts.push(`crt ${certificatePath(o.paths, tls.clientCertificate.fileName)}`);
  // A tcp backend passes bytes through: HTTP/2 negotiated with the member would reach an HTTP/1 client.
  if (tls !== undefined) parts.push(...renderTlsPolicy(tls.policy, o.mode === 'http'));
  return parts;
}

function renderMonitor(hm: DesiredHealthMonitor, paths: HaproxyPaths): string[] {
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
  lines.push(
    `    default-server inter ${int(hm.delay, 'delay')}s fall ${int(hm.maxRetriesDown, 'maxRetriesDown')} rise ${int(hm.maxRetries, 'maxRetries')}`,
  );
  return lines;
}

function renderBackend(
  lb: DesiredLoadBalancer,
  pool: DesiredPool,
  listeners: DesiredListener[],
  maxconn: number,
  paths: HaproxyPaths,
): string[] {
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

export function renderHaproxyConfig(lb: DesiredLoadBalancer, paths: HaproxyPaths): string {
  const listeners = byName(lb.listeners);
  const pools = byName(lb.pools);
  // Names are checked before they are used as keys, so that a hostile pool name is reported as such
  // rather than as a dangling reference.
  const poolsByName = new Map(pools.map((p) => [assertSafeToken(p.name), p]));
  const maxconn = globalMaxconn(listeners);
  const vipHosts = vipAddresses(lb.vip).map((a) => hostPart(a.address));
  const pingChecks = pools.some((p) => activeMonitor(p)?.type === 'PING');

  const sections: string[][] = [
    [
      `# Generated by nslb for ${assertSafeToken(lb.namespace)}/${assertSafeToken(lb.name)}. ` +
        'Do not edit: changes are overwritten.',
    ],
    renderGlobal(maxconn, paths, pingChecks),
    renderDefaults(),
    ...listeners.map((l) => renderFrontend(lb, l, vipHosts, poolsByName, paths)),
    ...pools.map((p) => renderBackend(lb, p, listeners, maxconn, paths)),
  ];
  return `${sections.map((s) => s.join('\n')).join('\n\n')}\n`;
}
