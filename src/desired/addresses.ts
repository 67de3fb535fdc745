// IP address arithmetic for the cross-object rules: same-family and in-prefix checks, and one canonical
// spelling per address so that "2001:db8::1" and "2001:0db8:0:0::1" are recognised as the same VIP and
// compare equal to what `ip -json` reports.
import { isIPv4, isIPv6 } from 'node:net';

export interface ParsedIp {
  family: 4 | 6;
  value: bigint;
}

export function parseIp(s: string): ParsedIp | undefined {
  if (isIPv4(s)) return { family: 4, value: parseV4(s) };
  // Zone ids ("fe80::1%eth0") name an interface on some host; they are no use in a desired state.
  if (isIPv6(s) && !s.includes('%')) return { family: 6, value: parseV6(s) };
  return undefined;
}

/** RFC 5952 for IPv6 (lowercase, shortest, `::` for the longest zero run); dotted quad for IPv4. */
export function canonicalIp(s: string): string {
  // isIPv4 admits no leading zeros or other variants: a valid IPv4 address is already canonical.
  if (isIPv4(s)) return s;
  const ip = parseIp(s);
  return ip === undefined ? s : formatIp(ip);
}

export function inPrefix(address: ParsedIp, network: ParsedIp, prefixLength: number): boolean {
  if (address.family !== network.family) return false;
  const shift = BigInt(bitsOf(address.family) - prefixLength);
  return address.value >> shift === network.value >> shift;
}

export function bitsOf(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/** `10.0.0.0/24`: the network an address lies in. */
export function networkOf(address: ParsedIp, prefixLength: number): string {
  const shift = BigInt(bitsOf(address.family) - prefixLength);
  return `${formatIp({ family: address.family, value: (address.value >> shift) << shift })}/${prefixLength}`;
}

/**
 * `10.0.0.5/24` → `10.0.0.0/24`: the network a CIDR names, canonically spelled (host bits cleared, as
 * Octavia stores allowed CIDRs); undefined for anything that is not `address/prefix` in range.
 */
export function canonicalCidr(s: string): string | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIp(s.slice(0, slash));
  const prefix = s.slice(slash + 1);
  if (address === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(prefix)) return undefined;
  const prefixLength = Number(prefix);
  return prefixLength > bitsOf(address.family) ? undefined : networkOf(address, prefixLength);
}

function parseV4(s: string): bigint {
  return s.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function parseV6(s: string): bigint {
  let text = s;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    // An embedded IPv4 tail (::ffff:10.0.0.1) is the last two groups.
    const v4 = parseV4(tail);
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const before = head === '' ? [] : head.split(':');
  const after = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : new Array<string>(8 - before.length - after.length).fill('0');
  return [...before, ...zeros, ...after].reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

export function formatIp(ip: ParsedIp): string {
  return ip.family === 4 ? formatV4(ip.value) : formatV6(ip.value);
}

function formatV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

function formatV6(value: bigint): string {
  // IPv4-mapped addresses keep the dotted tail, as RFC 5952 §5 and iproute2 print them.
  if (value >> 32n === 0xffffn) return `::ffff:${formatV4(value & 0xffffffffn)}`;
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  const run = longestZeroRun(groups);
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (run === undefined) return hex(groups);
  return `${hex(groups.slice(0, run.start))}::${hex(groups.slice(run.start + run.length))}`;
}

/** The first longest run of at least two zero groups (a single zero group is not shortened). */
function longestZeroRun(groups: number[]): { start: number; length: number } | undefined {
  let best: { start: number; length: number } | undefined;
  let start = -1;
  for (let i = 0; i <= groups.length; i++) {
    if (i < groups.length && groups[i] === 0) {
      if (start < 0) start = i;
      continue;
    }
    if (start >= 0) {
      const length = i - start;
      if (length >= 2 && (best === undefined || length > best.length)) best = { start, length };
      start = -1;
    }
  }
  return best;
}
