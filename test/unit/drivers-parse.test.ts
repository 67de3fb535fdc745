// Driver output parsers, fed real output captured from this node's `ip` and `ovs-vsctl`.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { argvObserveNetns, parseObserveNetns, renderLinkBatch } from '../../src/drivers/netns/netns.js';
import { argvAddPort, parseObserveOvs } from '../../src/drivers/ovs/ovs.js';

const fixture = (name: string): string => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');

describe('ip -batch observation', () => {
  it('reads the VIP link with its MAC, addresses and state', () => {
    const o = parseObserveNetns('nslb-82b3ade9d00c', 'nslb82b3ade9d00', fixture('ip/observe-v4.json'));
    expect(o.loUp).toBe(true);
    expect(o.link).toEqual({ name: 'nslb82b3ade9d00', up: true, mac: 'fa:16:3e:d1:64:2a', mtu: 1500, addresses: ['10.210.0.10/24'] });
  });

  it('reads addresses and default routes of both families from one process (other tables ignored)', () => {
    const { argv, input } = argvObserveNetns('nslb-82b3ade9d00c');
    expect(argv).toEqual(['ip', '-n', 'nslb-82b3ade9d00c', '-j', '-batch', '-']);
    expect(input).toBe('addr show\nroute show table all type unicast\nnetconf show\n');
    const o = parseObserveNetns('nslb-82b3ade9d00c', 'nslb82b3ade9d00', fixture('ip/observe-dual.json'));
    expect(o.link?.addresses).toEqual(['10.210.0.10/24', '10.211.0.10/24', 'fd00:210::10/64']);
    // The fixture also has a default route via 10.211.0.1 in table 100: not the namespace's default route.
    expect(o.defaultGateways).toEqual({ 4: '10.210.0.1', 6: 'fd00:210::1' });
  });

  it('reads the routes of other links (member networks) and the forwarding switches; other tables and the VIP link aside', () => {
    const o = parseObserveNetns('nslb-82b3ade9d00c', 'nslb82b3ade9d00', fixture('ip/observe-member-network.json'));
    expect(o.defaultGateways).toEqual({ 4: '10.210.0.1' });
    expect(o.link?.routes).toBeUndefined();
    const member = o.otherLinks?.find((l) => l.name === 'nslb82b3ade9d01');
    // ip prints a host route without /32; the fixture also has 10.232.0.0/24 in table 100 on this link.
    expect(member?.routes).toEqual([
      { destination: '10.231.0.0/24', gateway: '10.230.0.1' },
      { destination: '10.233.0.7/32', gateway: '10.230.0.1' },
      { destination: 'fd00:231::/64', gateway: 'fd00:230::1' },
    ]);
    expect(o.otherLinks?.find((l) => l.name === 'peer1')?.routes).toBeUndefined();
    expect(o.forwarding).toEqual({ 4: true, 6: false });
    expect(parseObserveNetns('x', 'nslb82b3ade9d00', fixture('ip/observe-v4.json')).forwarding).toEqual({ 4: false, 6: false });
  });

  it('has no default gateways when there is no default route', () => {
    expect(parseObserveNetns('x', 'nslb82b3ade9d00', fixture('ip/observe-v4.json')).defaultGateways).toBeUndefined();
  });

  it('configures every address (nodad for IPv6) and one default route per family, family taken from each line', () => {
    expect(
      renderLinkBatch({
        netns: 'n',
        iface: 'i',
        mac: 'fa:16:3e:00:00:01',
        addresses: ['2001:db8::10/64', '192.0.2.10/24'],
        removeAddresses: ['198.18.0.1/15'],
        gateways: ['2001:db8::1', '192.0.2.1'],
      }),
    ).toBe(
      [
        'link set dev lo up',
        'link set dev i address fa:16:3e:00:00:01',
        'link set dev i addrgenmode eui64',
        'address del 198.18.0.1/15 dev i',
        'address replace 2001:db8::10/64 dev i nodad',
        'address replace 192.0.2.10/24 dev i',
        'link set dev i up',
        'route replace default via 2001:db8::1 dev i',
        'route replace default via 192.0.2.1 dev i',
        '',
      ].join('\n'),
    );
  });

  it('deletes the routes a member network lost before its addresses, then puts its routes in place', () => {
    const batch = renderLinkBatch({
      netns: 'n',
      iface: 'm',
      mac: 'fa:16:3e:00:00:02',
      addresses: ['10.30.0.2/24'],
      removeAddresses: ['10.29.0.2/24'],
      gateways: [],
      routes: [{ destination: '10.31.0.0/24', gateway: '10.30.0.1' }],
      removeRoutes: [{ destination: '10.28.0.0/16', gateway: '10.29.0.1' }],
    }).split('\n');
    expect(batch.indexOf('route del 10.28.0.0/16 via 10.29.0.1 dev m')).toBeLessThan(batch.indexOf('address del 10.29.0.2/24 dev m'));
    expect(batch.at(-2)).toBe('route replace 10.31.0.0/24 via 10.30.0.1 dev m');
    expect(() =>
      renderLinkBatch({
        netns: 'n',
        iface: 'm',
        mac: 'fa:16:3e:00:00:02',
        addresses: [],
        removeAddresses: [],
        gateways: [],
        removeRoutes: [{ destination: '10.28.0.0/16 dev lo', gateway: '10.29.0.1' }],
      }),
    ).toThrow(/unsafe/);
  });

  it('gives an IPv4-only VIP port no IPv6 link-local address (no DAD, RS or MLD flooding the bridge)', () => {
    const batch = renderLinkBatch({ netns: 'n', iface: 'i', mac: 'fa:16:3e:00:00:01', addresses: ['192.0.2.10/24'], removeAddresses: [], gateways: [] });
    expect(batch.split('\n').indexOf('link set dev i addrgenmode none')).toBeLessThan(batch.split('\n').indexOf('link set dev i up'));
    expect(batch).toContain('link set dev i addrgenmode none\n');
  });

  it('reports no link when the VIP interface is not in the netns', () => {
    const o = parseObserveNetns('x', 'nslbmissing', fixture('ip/observe-v4.json'));
    expect(o.link).toBeUndefined();
  });

  it('refuses tokens that would change the meaning of an ip -batch line', () => {
    expect(() =>
      renderLinkBatch({ netns: 'n', iface: 'i', mac: 'aa:bb:cc:dd:ee:ff', addresses: ['10.0.0.1/24\nlink del lo'], removeAddresses: [], gateways: [] }),
    ).toThrow(/unsafe/);
  });
});

describe('ovs-vsctl observation', () => {
  const out = [
    '{"data":[["br-q",["set",[["uuid","p1"],["uuid","p2"]]]]],"headings":["name","ports"]}',
    '{"data":[[["uuid","p1"],"br-q",["set",[]],["uuid","i1"]],[["uuid","p2"],"nslbabc",5,["uuid","i2"]]],"headings":["_uuid","name","tag","interfaces"]}',
    '{"data":[[["uuid","i1"],"br-q",["map",[]],["set",[]]],[["uuid","i2"],"nslbabc",["map",[["attached-mac","fa:16:3e:00:00:01"],["nslb-lb","default/x"]]],"could not open network device nslbabc (No such device)"]],"headings":["_uuid","name","external_ids","error"]}',
  ].join('\n');

  it('keeps only marked interfaces, with bridge, tag, MAC and error', () => {
    const o = parseObserveOvs(out);
    expect([...o.bridges]).toEqual(['br-q']);
    expect(o.ports).toEqual([
      { iface: 'nslbabc', bridge: 'br-q', lb: 'default/x', tag: 5, mac: 'fa:16:3e:00:00:01', error: 'could not open network device nslbabc (No such device)' },
    ]);
  });

  it('adds a port with every marker in one transaction and clears a stale tag', () => {
    const argv = argvAddPort({ stateDir: '/var/lib/nslb', bridge: 'br-int', iface: 'nslbabc', lb: 'default/x', mac: 'fa:16:3e:00:00:01', ifaceId: 'nslb-abc' });
    expect(argv).toContain('external_ids:nslb-lb=default/x');
    expect(argv.join(' ')).toContain('-- clear Port nslbabc tag');
  });
});
