// What may reach haproxy.cfg, and how: the names sections get, the checks every value passes before it is
// written, and small helpers the section renderers share.
import { posix } from 'node:path';
import type { DesiredListener } from '../desired/model.js';

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
  /** scripts/udp-check.sh and scripts/sctp-check.sh (UDP-CONNECT and SCTP monitors); the packaged ones when absent. */
  udpCheckCommand?: string;
  sctpCheckCommand?: string;
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
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
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

export function matching(s: string, pattern: RegExp, what: string): string {
  assertSafeToken(s);
  if (!pattern.test(s)) throw new UnsafeConfigValueError(s, `not a valid ${what}`);
  return s;
}

// What HAProxy accepts as an ACL name. Policy names also go inside `str(...)`, where `,` or `)` would
// end the argument, and they are outside this set too.
export const ACL_NAME = /^[A-Za-z0-9_.:-]+$/;

// RFC 9110 token characters, less `%`; `(`, `)` and `,` would end a sample fetch argument.
export const FIELD_NAME = /^[A-Za-z0-9!$&*+.^_`|~-]+$/;

// A plain file inside certsDir: no directory part, no `..`.
const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

export const CIDR = /^[0-9A-Fa-f.:]+(?:\/[0-9]{1,3})?$/;

// The schema's cipher list pattern: ":"-separated OpenSSL entries, nothing HAProxy would read as syntax.
export const CIPHER_LIST = /^[!+-]?[A-Za-z0-9_.=@]+([+-][A-Za-z0-9_.=@]+)*(:[!+-]?[A-Za-z0-9_.=@]+([+-][A-Za-z0-9_.=@]+)*)*$/;

/** Table lookup that refuses a key the table does not know, instead of rendering `undefined`. */
export function lookup<K extends string, V>(table: Record<K, V>, key: K, what: string): V {
  if (!Object.hasOwn(table, key)) throw new UnsafeConfigValueError(String(key), `unknown ${what}`);
  return table[key];
}

export function int(n: number, what: string): string {
  if (!Number.isSafeInteger(n)) throw new UnsafeConfigValueError(String(n), `${what} is not an integer`);
  return String(n);
}

/** `addr` or `[addr]`: HAProxy takes the last colon as the port separator, so IPv6 needs brackets. */
export function hostPart(address: string): string {
  assertSafeToken(address);
  return address.includes(':') ? `[${address}]` : address;
}

// `http-request redirect` takes a log-format string, where `%` starts an expression; `%%` is a literal
// percent sign, so a percent-encoded URL reaches the client exactly as written.
export function logFormatLiteral(s: string): string {
  return assertSafeToken(s).replaceAll('%', '%%');
}

export type Mode = 'http' | 'tcp';

// HTTPS is TLS passthrough: the bytes go through untouched, so it is tcp like TCP.
const LISTENER_MODE: Record<DesiredListener['protocol'], Mode> = {
  TCP: 'tcp',
  HTTP: 'http',
  HTTPS: 'tcp',
  TERMINATED_HTTPS: 'http',
  // UDP and SCTP have no frontend at all (the kernel forwards them); listed so that the table is total.
  UDP: 'tcp',
  SCTP: 'tcp',
  PROMETHEUS: 'http',
};

export function listenerMode(l: DesiredListener): Mode {
  return lookup(LISTENER_MODE, l.protocol, 'listener protocol');
}

export function compareNames(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort(compareNames);
}

// connectionLimit -1 means unlimited. HAProxy itself reads a frontend `maxconn 0` as "use the global
// value", so 0 is unlimited too rather than a frontend that accepts nothing.
export function hasLimit(l: DesiredListener): boolean {
  return l.connectionLimit > 0;
}

export function certificatePath(paths: HaproxyPaths, fileName: string): string {
  return posix.join(assertSafeToken(paths.certsDir), matching(fileName, FILE_NAME, 'certificate file name'));
}
