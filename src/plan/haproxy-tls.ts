// TLS in haproxy.cfg: versions, ciphers and ALPN (the same keywords on a bind line and on a server line), the
// client-certificate headers and HSTS of a TERMINATED_HTTPS listener, and re-encryption towards members.
import type { SslClientHeader } from '../api/v1alpha1/types.js';
import type { DesiredPool, DesiredTlsPolicy } from '../desired/model.js';
import { certificatePath, CIPHER_LIST, FIELD_NAME, int, lookup, matching, UnsafeConfigValueError, type HaproxyPaths, type Mode } from './haproxy-words.js';

export const CLIENT_VERIFY: Record<'OPTIONAL' | 'MANDATORY', string> = { OPTIONAL: 'optional', MANDATORY: 'required' };

const TLS_VERSIONS: Record<string, string> = {
  SSLv3: 'SSLv3',
  TLSv1: 'TLSv1.0',
  'TLSv1.1': 'TLSv1.1',
  'TLSv1.2': 'TLSv1.2',
  'TLSv1.3': 'TLSv1.3',
};

const ALPN = new Set(['h2', 'http/1.1', 'http/1.0']);

/** Versions, ciphers and ALPN: the same keywords on a bind line and on a server line. */
export function renderTlsPolicy(p: DesiredTlsPolicy, withAlpn: boolean): string[] {
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

export function renderSslClientHeaders(headers: readonly SslClientHeader[]): string[] {
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

// HAProxy does not evaluate its rules in the order they are written: every `http-request` rule runs
// before any `use_backend`, so a REJECT at position 2 would beat a REDIRECT_TO_POOL at position 1.
// First match wins only if the choice is made in one ordered pass: each policy, in position order,
// claims the request in a transaction variable unless an earlier one has, and each action then fires
// on its own policy's claim alone.

/**
 * TLS towards members. The options hold for the health checks too, so an HTTPS monitor verifies members the
 * way the traffic does.
 */
export function renderServerTls(pool: DesiredPool, checkSsl: boolean, o: { paths: HaproxyPaths; mode: Mode }): string[] {
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
