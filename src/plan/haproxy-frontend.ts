// One frontend per listener: its binds (with TLS), limits and timeouts, allowed CIDRs, inserted headers, and its
// L7 policies in one ordered pass.
import type { DesiredL7Policy, DesiredL7Rule, DesiredListener, DesiredLoadBalancer, DesiredPool } from '../desired/model.js';
import { CLIENT_VERIFY, renderHstsValue, renderSslClientHeaders, renderTlsPolicy } from './haproxy-tls.js';
import {
  ACL_NAME,
  assertSafeToken,
  backendName,
  byName,
  certificatePath,
  CIDR,
  compareNames,
  FIELD_NAME,
  frontendName,
  hasLimit,
  int,
  listenerMode,
  logFormatLiteral,
  lookup,
  matching,
  UnsafeConfigValueError,
  type HaproxyPaths,
} from './haproxy-words.js';
import { BIND_NONLOCAL } from './haproxy-peers.js';

function renderBind(l: DesiredListener, vipHost: string, paths: HaproxyPaths, nonLocal: boolean): string {
  // ACTIVE_STANDBY: the VIP is on this node only while it is MASTER; the BACKUP listens all the same.
  const bind = `    bind ${vipHost}:${int(l.port, 'port')}${nonLocal ? ` ${BIND_NONLOCAL}` : ''}`;
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
    out.claims.push(`    http-request set-var(${L7_VAR}) str(${p.name}) if ${[`!{ var(${L7_VAR}) -m found }`, ...conditions].join(' ')}`);
    (p.action === 'REDIRECT_TO_POOL' ? out.routes : out.actions).push(action);
  }
  return out;
}

export function renderFrontend(
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
  for (const host of vipHosts) lines.push(renderBind(l, host, paths, lb.ha !== undefined));
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
