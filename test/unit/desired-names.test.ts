import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  derivedMac,
  ifaceOfNetns,
  isNslbIfaceName,
  isNslbNetnsName,
  isOrphanKey,
  lbKey,
  netnsOfKey,
  nodeNames,
  orphanKey,
  parseLbKey,
} from '../../src/desired/names.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('node names', () => {
  it('follow DESIGN §2', () => {
    const hash = sha256('default/web');
    expect(nodeNames('default', 'web')).toEqual({ netns: `nslb-${hash.slice(0, 12)}`, iface: `nslb${hash.slice(0, 11)}` });
  });

  it('fit the kernel interface name limit and are recognised as ours', () => {
    const names = nodeNames('a-very-long-namespace-name', 'a-very-long-load-balancer-name');
    expect(names.iface.length).toBeLessThanOrEqual(15);
    expect(isNslbNetnsName(names.netns)).toBe(true);
    expect(isNslbIfaceName(names.iface)).toBe(true);
  });

  it('differ by namespace', () => {
    expect(nodeNames('a', 'web').netns).not.toBe(nodeNames('b', 'web').netns);
  });

  it('marker checks accept nothing else', () => {
    for (const s of ['nslb-0123456789a', 'nslb-0123456789abc', 'nslb-0123456789AB', 'xnslb-0123456789ab', 'nslb-0123456789ab\n']) {
      expect(isNslbNetnsName(s)).toBe(false);
    }
    for (const s of ['nslb0123456789', 'nslb0123456789ab', 'nslb0123456789G', 'nslb-123456789a', 'br-int']) {
      expect(isNslbIfaceName(s)).toBe(false);
    }
    expect(isNslbNetnsName('nslb-0123456789ab')).toBe(true);
    expect(isNslbIfaceName('nslb0123456789a')).toBe(true);
  });
});

describe('derivedMac', () => {
  it('is fa:16:3e plus hex digits 12-17 of the hash', () => {
    const hex = sha256('default/web').slice(12, 18);
    expect(derivedMac('default', 'web')).toBe(`fa:16:3e:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`);
  });

  it('is stable and per load balancer', () => {
    expect(derivedMac('default', 'web')).toBe(derivedMac('default', 'web'));
    expect(derivedMac('default', 'web')).not.toBe(derivedMac('default', 'api'));
    expect(derivedMac('default', 'web')).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
  });
});

describe('load balancer keys', () => {
  it('round-trip', () => {
    expect(lbKey('shop', 'web')).toBe('shop/web');
    expect(parseLbKey('shop/web')).toEqual({ namespace: 'shop', name: 'web' });
  });

  it.each(['web', '/web', 'shop/', 'a/b/c', ''])('reject %j', (key) => {
    expect(() => parseLbKey(key)).toThrow(/not a load balancer key/);
  });
});

describe('work keys', () => {
  it('name the netns of a load balancer key or of an orphan key, and the interface of a netns', () => {
    const { netns, iface } = nodeNames('shop', 'web');
    expect(netnsOfKey('shop/web')).toBe(netns);
    expect(ifaceOfNetns(netns)).toBe(iface);
    expect(orphanKey(netns)).toBe(`orphan:${netns}`);
    expect(isOrphanKey(orphanKey(netns))).toBe(true);
    expect(isOrphanKey('shop/web')).toBe(false);
    expect(netnsOfKey(orphanKey(netns))).toBe(netns);
    expect(() => netnsOfKey('web')).toThrow(/not a load balancer key/);
  });
});
