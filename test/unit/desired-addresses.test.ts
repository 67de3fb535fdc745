import { describe, expect, it } from 'vitest';
import { canonicalCidr, canonicalIp, inPrefix, networkOf, parseIp } from '../../src/desired/addresses.js';

describe('canonicalIp', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1'],
    ['::FFFF:a00:1', '::ffff:10.0.0.1'],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
  ])('%s → %s', (input, output) => {
    expect(canonicalIp(input)).toBe(output);
  });
});

describe('prefixes', () => {
  const ip = (s: string) => parseIp(s)!;
  it('tell whether an address is inside', () => {
    expect(inPrefix(ip('192.0.2.1'), ip('192.0.2.10'), 24)).toBe(true);
    expect(inPrefix(ip('192.0.3.1'), ip('192.0.2.10'), 24)).toBe(false);
    expect(inPrefix(ip('192.0.3.1'), ip('192.0.2.10'), 0)).toBe(true);
    expect(inPrefix(ip('2001:db8::1'), ip('2001:db8::10'), 64)).toBe(true);
    expect(inPrefix(ip('2001:db8:1::1'), ip('2001:db8::10'), 64)).toBe(false);
    expect(inPrefix(ip('::ffff:192.0.2.1'), ip('192.0.2.10'), 24)).toBe(false);
  });

  it('name the network', () => {
    expect(networkOf(ip('192.0.2.10'), 24)).toBe('192.0.2.0/24');
    expect(networkOf(ip('2001:db8::10'), 64)).toBe('2001:db8::/64');
  });

  it('refuse what is not an address', () => {
    expect(parseIp('10.0.0.256')).toBeUndefined();
    expect(parseIp('fe80::1%eth0')).toBeUndefined();
  });
});

describe('canonicalCidr', () => {
  it.each([
    ['10.0.0.5/24', '10.0.0.0/24'],
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['192.0.2.7/32', '192.0.2.7/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['255.255.255.255/0', '0.0.0.0/0'],
    ['2001:DB8:0::1/48', '2001:db8::/48'],
    ['2001:db8::1/128', '2001:db8::1/128'],
    ['::/0', '::/0'],
    ['::ffff:10.1.2.3/120', '::ffff:10.1.2.0/120'],
  ])('%s → %s', (input, output) => {
    expect(canonicalCidr(input)).toBe(output);
  });

  it.each(['10.0.0.0', '10.0.0.0/33', '2001:db8::/129', '10.0.0.0/08', '10.0.0.0/', 'x/8', '/8', 'fe80::1%eth0/64', '10.0.0.0/8/8'])('refuses %s', (input) => {
    expect(canonicalCidr(input)).toBeUndefined();
  });
});
