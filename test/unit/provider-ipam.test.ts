// Address pools: parsing, who may draw from which pool, and the choice of an address. Pure.
import { describe, expect, it } from 'vitest';
import type { PoolAllocation } from '../../src/api/v1alpha1/addresspool.js';
import { allocateInPool, parsePool, poolAllows, refuseOverlaps, releaseInPool, selectorMatches, vipSettings } from '../../src/provider/ipam.js';

const NOW = '2026-01-01T00:00:00Z';
const alloc = (address: string, uid: string, service = `default/${uid}`): PoolAllocation => ({ address, service, serviceUid: uid, since: NOW });

describe('parsePool', () => {
  it('reads CIDRs and ranges of both families', () => {
    const p = parsePool('p', { addresses: ['10.0.0.0/30', '10.0.1.5-10.0.1.6', '2001:db8::/126'], prefixLength: 24, gateway: '10.0.0.1' });
    expect(p.problems).toEqual([]);
    expect(p.ranges.map((r) => [r.family, r.last - r.first + 1n])).toEqual([
      [4, 4n],
      [4, 2n],
      [6, 4n],
    ]);
    expect(p.autoAssign).toBe(true);
    expect(vipSettings(p, '10.0.1.5')).toEqual({ address: '10.0.1.5', family: 4, prefixLength: 24, gateway: '10.0.0.1' });
    // The other family gets its default prefix and no gateway.
    expect(vipSettings(p, '2001:db8::1')).toEqual({ address: '2001:db8::1', family: 6, prefixLength: 64 });
  });

  it('says what is wrong, with the JSON path', () => {
    expect(parsePool('p', { addresses: ['10.0.0.9-10.0.0.1'] }).problems).toEqual(['/spec/addresses/0: ends before it starts (got "10.0.0.9-10.0.0.1")']);
    expect(parsePool('p', { addresses: ['10.0.0.1-2001:db8::1'] }).problems[0]).toMatch(/both ends of a range must be of one family/);
    expect(parsePool('p', { addresses: ['10.0.0.0/33'] }).problems[0]).toMatch(/\/spec\/addresses\/0: must be a CIDR/);
    expect(parsePool('p', { addresses: ['10.0.0.0/24', '10.0.0.128/25'] }).problems).toEqual(['/spec/addresses/1: overlaps /spec/addresses/0']);
    expect(parsePool('p', { addresses: ['10.0.0.0/24'], gateway: '2001:db8::1' }).problems[0]).toMatch(
      /\/spec\/gateway: must be of the family of the first entry/,
    );
    expect(parsePool('p', { addresses: ['10.0.0.0/24'], prefixLength: 64 }).problems[0]).toMatch(/at most 32/);
    expect(parsePool('p', { addresses: [] }).problems[0]).toMatch(/\/spec\/addresses/);
    expect(parsePool('p', { addresses: ['10.0.0.0/24'], vlan: 5000 }).problems[0]).toMatch(/\/spec\/vlan/);
    expect(parsePool('p', { addresses: ['10.0.0.0/24'], colour: 'red' }).problems[0]).toMatch(/additional/);
  });

  it('refuses a pool that overlaps another one (the later name), so no address is in two records', () => {
    const [a, b] = refuseOverlaps([parsePool('b', { addresses: ['10.0.0.8/29'] }), parsePool('a', { addresses: ['10.0.0.0/28'] })]);
    expect(a!.name).toBe('a');
    expect(a!.problems).toEqual([]);
    expect(b!.problems).toEqual(['/spec/addresses: overlaps AddressPool a; an address may be in one pool only']);
  });
});

describe('who may use a pool', () => {
  it('namespaces and a label selector (matchLabels, In, NotIn, Exists, DoesNotExist)', () => {
    const p = parsePool('p', {
      addresses: ['10.0.0.0/24'],
      namespaces: ['a', 'b'],
      serviceSelector: { matchLabels: { tier: 'web' }, matchExpressions: [{ key: 'env', operator: 'In', values: ['prod', 'stage'] }] },
    });
    expect(poolAllows(p, 'a', { tier: 'web', env: 'prod' })).toBe(true);
    expect(poolAllows(p, 'c', { tier: 'web', env: 'prod' })).toBe(false);
    expect(poolAllows(p, 'a', { tier: 'web', env: 'dev' })).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'NotIn', values: ['1'] }] }, { x: '2' })).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'Exists' }] }, {})).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'DoesNotExist' }] }, {})).toBe(true);
    expect(selectorMatches(undefined, {})).toBe(true);
  });
});

describe('allocateInPool', () => {
  const pool = parsePool('p', { addresses: ['10.0.0.0/30'], prefixLength: 30 });
  const req = (uid: string, requested?: string) => ({
    service: `default/${uid}`,
    serviceUid: uid,
    family: 4 as const,
    ...(requested === undefined ? {} : { requested }),
  });

  it('gives the lowest free address, never the network or broadcast address of the VIP subnet', () => {
    const r1 = allocateInPool(pool, [], new Map(), req('a'), NOW);
    expect(r1.result).toEqual({ ok: true, address: '10.0.0.1', existing: false });
    const r2 = allocateInPool(pool, r1.allocations, new Map(), req('b'), NOW);
    expect(r2.result).toEqual({ ok: true, address: '10.0.0.2', existing: false });
    const r3 = allocateInPool(pool, r2.allocations, new Map(), req('c'), NOW);
    expect(r3.result).toMatchObject({ ok: false, reason: 'PoolExhausted' });
    expect(r3.allocations).toEqual(r2.allocations);
  });

  it('is idempotent: a Service that holds an address keeps it and nothing changes', () => {
    const held = [alloc('10.0.0.2', 'a')];
    const r = allocateInPool(pool, held, new Map(), req('a'), NOW);
    expect(r.result).toEqual({ ok: true, address: '10.0.0.2', existing: true });
    expect(r.allocations).toEqual(held);
  });

  it('never gives an address another Service holds, here or in another pool, or a LoadBalancer serves', () => {
    const r = allocateInPool(pool, [alloc('10.0.0.1', 'x')], new Map([['10.0.0.2', 'LoadBalancer team/own']]), req('a'), NOW);
    expect(r.result).toMatchObject({ ok: false, reason: 'PoolExhausted' });
    expect(allocateInPool(pool, [alloc('10.0.0.1', 'x')], new Map(), req('a', '10.0.0.1'), NOW).result).toEqual({
      ok: false,
      reason: 'AddressInUse',
      message: '10.0.0.1 is already in use by default/x',
    });
  });

  it('a requested address: given when free, refused when outside the pool or reserved; asking for another one moves the Service', () => {
    expect(allocateInPool(pool, [], new Map(), req('a', '10.0.0.9'), NOW).result).toMatchObject({ ok: false, reason: 'AddressNotInPool' });
    expect(allocateInPool(pool, [], new Map(), req('a', '10.0.0.3'), NOW).result).toMatchObject({
      ok: false,
      reason: 'AddressReserved',
      message: expect.stringMatching(/broadcast/),
    });
    const moved = allocateInPool(pool, [alloc('10.0.0.1', 'a')], new Map(), req('a', '10.0.0.2'), NOW);
    expect(moved.result).toEqual({ ok: true, address: '10.0.0.2', existing: false });
    expect(moved.allocations.map((x) => x.address)).toEqual(['10.0.0.2']);
  });

  it('IPv6: the subnet-router anycast address is never given; addresses are canonical', () => {
    const v6 = parsePool('v6', { addresses: ['2001:db8::-2001:db8::3'] });
    const r = allocateInPool(v6, [], new Map(), { service: 'default/a', serviceUid: 'a', family: 6 }, NOW);
    expect(r.result).toEqual({ ok: true, address: '2001:db8::1', existing: false });
    expect(allocateInPool(v6, [], new Map(), { service: 'default/a', serviceUid: 'a', family: 6, requested: '2001:0db8:0:0::2' }, NOW).result).toMatchObject({
      address: '2001:db8::2',
    });
  });

  it('the gateway is never given', () => {
    const g = parsePool('g', { addresses: ['10.0.0.1-10.0.0.2'], gateway: '10.0.0.1' });
    expect(allocateInPool(g, [], new Map(), req('a'), NOW).result).toMatchObject({ address: '10.0.0.2' });
  });

  it("releaseInPool drops a Service's addresses (all, or all but some)", () => {
    const all = [alloc('10.0.0.1', 'a'), alloc('10.0.0.2', 'b')];
    expect(releaseInPool(all, 'a')).toEqual([all[1]]);
    expect(releaseInPool(all, 'a', ['10.0.0.1'])).toEqual(all);
  });
});
