// Pure address management for the Service provider: AddressPools parsed into ranges, which pools a Service
// may draw from, and the choice of one address given what is already taken. The record of what is taken
// lives in the API (AddressPool status, see ledger.ts); nothing here remembers anything.
import {
  addressPoolProblems,
  entryFamily,
  type AddressPoolSpec,
  type LabelSelector,
  type PoolAllocation,
  type PoolMembers,
} from '../api/v1alpha1/addresspool.js';
import { bitsOf, canonicalIp, formatIp, parseIp } from '../desired/addresses.js';

export type Family = 4 | 6;

export interface AddressRange {
  family: Family;
  first: bigint;
  last: bigint;
}

export interface ParsedPool {
  name: string;
  ranges: AddressRange[];
  primaryFamily: Family;
  prefixLength?: number;
  gateway?: string;
  bridge?: string;
  vlan?: number;
  autoAssign: boolean;
  namespaces: string[];
  serviceSelector?: LabelSelector;
  members?: PoolMembers;
  /** Why the pool is unusable; empty when it is usable. */
  problems: string[];
}

/** What a VIP drawn from a pool looks like on the LoadBalancer. */
export interface VipSettings {
  address: string;
  family: Family;
  prefixLength: number;
  gateway?: string;
  bridge?: string;
  vlan?: number;
}

function parseRange(entry: string): AddressRange | string {
  const family = entryFamily(entry);
  if (family === undefined) return 'is not an address';
  if (entry.includes('/')) {
    const [a = '', p = ''] = entry.split('/');
    const ip = parseIp(a);
    if (ip === undefined) return 'is not an address';
    const host = BigInt(bitsOf(family) - Number(p));
    const first = (ip.value >> host) << host;
    return { family, first, last: first + (1n << host) - 1n };
  }
  const [a = '', b = ''] = entry.split('-');
  const first = parseIp(a);
  const last = parseIp(b);
  if (first === undefined || last === undefined) return 'is not a range';
  if (last.value < first.value) return 'ends before it starts';
  return { family, first: first.value, last: last.value };
}

/** An AddressPool's spec as the allocator uses it, with every problem that makes it unusable. */
export function parsePool(name: string, spec: unknown): ParsedPool {
  const problems = addressPoolProblems(spec);
  const s = (problems.length === 0 ? spec : { addresses: [] }) as AddressPoolSpec;
  const ranges: AddressRange[] = [];
  s.addresses.forEach((entry, i) => {
    const r = parseRange(entry);
    if (typeof r === 'string') problems.push(`/spec/addresses/${i}: ${r} (got ${JSON.stringify(entry)})`);
    else ranges.push(r);
  });
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (overlap(ranges[i]!, ranges[j]!)) problems.push(`/spec/addresses/${j}: overlaps /spec/addresses/${i}`);
    }
  }
  const pool: ParsedPool = {
    name,
    ranges,
    primaryFamily: ranges[0]?.family ?? 4,
    autoAssign: s.autoAssign ?? true,
    namespaces: s.namespaces ?? [],
    problems,
  };
  if (s.prefixLength !== undefined) pool.prefixLength = s.prefixLength;
  if (s.gateway !== undefined) pool.gateway = canonicalIp(s.gateway);
  if (s.bridge !== undefined) pool.bridge = s.bridge;
  if (s.vlan !== undefined) pool.vlan = s.vlan;
  if (s.serviceSelector !== undefined) pool.serviceSelector = s.serviceSelector;
  if (s.members !== undefined) pool.members = s.members;
  return pool;
}

function overlap(a: AddressRange, b: AddressRange): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

/**
 * Pools whose addresses overlap another pool's are unusable: one address in two pools could be given twice
 * (each pool's record is written on its own). The pool whose name sorts later is the one refused.
 */
export function refuseOverlaps(pools: ParsedPool[]): ParsedPool[] {
  const sorted = [...pools].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const usable: ParsedPool[] = [];
  for (const p of sorted) {
    if (p.problems.length === 0) {
      const clash = usable.find((u) => u.ranges.some((r) => p.ranges.some((q) => overlap(r, q))));
      if (clash !== undefined) p.problems.push(`/spec/addresses: overlaps AddressPool ${clash.name}; an address may be in one pool only`);
      else usable.push(p);
    }
  }
  return sorted;
}

export function poolContains(pool: ParsedPool, address: string): boolean {
  const ip = parseIp(address);
  return ip !== undefined && pool.ranges.some((r) => r.family === ip.family && r.first <= ip.value && ip.value <= r.last);
}

export function poolFamilies(pool: ParsedPool): Family[] {
  return [...new Set(pool.ranges.map((r) => r.family))];
}

/** metav1.LabelSelector semantics; an empty selector matches everything. */
export function selectorMatches(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (selector === undefined) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const v = labels[e.key];
    const values = e.values ?? [];
    if (e.operator === 'In' && (v === undefined || !values.includes(v))) return false;
    if (e.operator === 'NotIn' && v !== undefined && values.includes(v)) return false;
    if (e.operator === 'Exists' && v === undefined) return false;
    if (e.operator === 'DoesNotExist' && v !== undefined) return false;
  }
  return true;
}

/** Whether a Service in `namespace` with `labels` may get addresses from the pool at all. */
export function poolAllows(pool: ParsedPool, namespace: string, labels: Record<string, string>): boolean {
  if (pool.namespaces.length > 0 && !pool.namespaces.includes(namespace)) return false;
  return selectorMatches(pool.serviceSelector, labels);
}

export function prefixLengthFor(pool: ParsedPool, family: Family): number {
  if (family === pool.primaryFamily && pool.prefixLength !== undefined) return pool.prefixLength;
  return family === 4 ? 24 : 64;
}

export function vipSettings(pool: ParsedPool, address: string): VipSettings {
  const family: Family = parseIp(address)?.family ?? 4;
  const v: VipSettings = { address: canonicalIp(address), family, prefixLength: prefixLengthFor(pool, family) };
  if (pool.gateway !== undefined && family === pool.primaryFamily) v.gateway = pool.gateway;
  if (pool.bridge !== undefined) v.bridge = pool.bridge;
  if (pool.vlan !== undefined) v.vlan = pool.vlan;
  return v;
}

/**
 * Addresses of a pool that are never handed out: the gateway, and the network and broadcast addresses of the
 * VIP subnet (IPv4 up to /30; for IPv6 the subnet-router anycast address), which a VIP must not be.
 */
export function reservedReason(pool: ParsedPool, address: bigint, family: Family): string | undefined {
  if (pool.gateway !== undefined && formatIp({ family, value: address }) === pool.gateway) return "is the pool's gateway";
  const prefix = prefixLengthFor(pool, family);
  const host = BigInt(bitsOf(family) - prefix);
  if (host === 0n) return undefined;
  const hostPart = address & ((1n << host) - 1n);
  if (hostPart === 0n && (family === 6 || host >= 2n)) return `is the network address of its /${prefix}`;
  if (family === 4 && host >= 2n && hostPart === (1n << host) - 1n) return `is the broadcast address of its /${prefix}`;
  return undefined;
}

export type AllocationFailure = 'PoolExhausted' | 'AddressInUse' | 'AddressNotInPool' | 'AddressReserved';

export type AllocationResult = { ok: true; address: string; existing: boolean } | { ok: false; reason: AllocationFailure; message: string };

export interface AllocationRequest {
  /** `namespace/name` of the Service. */
  service: string;
  serviceUid: string;
  family: Family;
  /** An address the Service asked for (spec.loadBalancerIP or the annotation). */
  requested?: string;
}

const familyOf = (address: string): Family | undefined => parseIp(address)?.family;

/**
 * One allocation in one pool, given its current record and the addresses taken outside it (other pools'
 * records, VIPs of LoadBalancers that are not this Service's), keyed by canonical address with who holds
 * them. Idempotent: a Service that already holds an address of the family keeps it, unless it now asks for
 * another, which then replaces it. Pure: returns the new record.
 */
export function allocateInPool(
  pool: ParsedPool,
  allocations: readonly PoolAllocation[],
  takenElsewhere: ReadonlyMap<string, string>,
  req: AllocationRequest,
  now: string,
): { allocations: PoolAllocation[]; result: AllocationResult } {
  const mine = allocations.filter((a) => a.serviceUid === req.serviceUid && familyOf(a.address) === req.family);
  const wanted = req.requested === undefined ? undefined : canonicalIp(req.requested);
  const held = mine.find((a) => wanted === undefined || a.address === wanted);
  if (held !== undefined) return { allocations: [...allocations], result: { ok: true, address: held.address, existing: true } };
  const holder = new Map<string, string>(takenElsewhere);
  for (const a of allocations) if (a.serviceUid !== req.serviceUid) holder.set(a.address, a.service);
  const give = (address: string): { allocations: PoolAllocation[]; result: AllocationResult } => ({
    // A Service that asked for another address gives up the one it held of that family.
    allocations: [...allocations.filter((a) => !mine.includes(a)), { address, service: req.service, serviceUid: req.serviceUid, since: now }],
    result: { ok: true, address, existing: false },
  });
  if (wanted !== undefined) {
    const ip = parseIp(wanted);
    if (ip === undefined || !poolContains(pool, wanted)) {
      return { allocations: [...allocations], result: { ok: false, reason: 'AddressNotInPool', message: `${wanted} is not in AddressPool ${pool.name}` } };
    }
    const by = holder.get(wanted);
    if (by !== undefined)
      return { allocations: [...allocations], result: { ok: false, reason: 'AddressInUse', message: `${wanted} is already in use by ${by}` } };
    const why = reservedReason(pool, ip.value, ip.family);
    if (why !== undefined)
      return { allocations: [...allocations], result: { ok: false, reason: 'AddressReserved', message: `${wanted} ${why} in AddressPool ${pool.name}` } };
    return give(wanted);
  }
  for (const r of pool.ranges) {
    if (r.family !== req.family) continue;
    for (let v = r.first; v <= r.last; v++) {
      const address = formatIp({ family: r.family, value: v });
      if (holder.has(address) || reservedReason(pool, v, r.family) !== undefined) continue;
      return give(address);
    }
  }
  return {
    allocations: [...allocations],
    result: { ok: false, reason: 'PoolExhausted', message: `AddressPool ${pool.name} has no free IPv${req.family} address (${allocations.length} given out)` },
  };
}

/** The record without the Service's addresses (all of them, or all but `keep`). Pure. */
export function releaseInPool(allocations: readonly PoolAllocation[], serviceUid: string, keep: readonly string[] = []): PoolAllocation[] {
  return allocations.filter((a) => a.serviceUid !== serviceUid || keep.includes(a.address));
}
