// Driver output parsers, fed real output captured from this node's `ip` and `ovs-vsctl`.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseObserveNetns, renderLinkBatch } from '../../src/drivers/netns/netns.js';
import { argvAddPort, parseObserveOvs } from '../../src/drivers/ovs/ovs.js';

const fixture = (name: string): string => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');

describe('ip -batch observation', () => {
  it('reads the VIP link with its MAC, addresses and state', () => {
    const o = parseObserveNetns('nslb-82b3ade9d00c', 'nslb82b3ade9d00', fixture('ip/observe-v4.json'));
    expect(o.loUp).toBe(true);
    expect(o.link).toEqual({ name: 'nslb82b3ade9d00', up: true, mac: 'fa:16:3e:d1:64:2a', mtu: 1500, addresses: ['10.210.0.10/24'] });
  });

  it('reports no link when the VIP interface is not in the netns', () => {
    const o = parseObserveNetns('x', 'nslbmissing', fixture('ip/observe-v4.json'));
    expect(o.link).toBeUndefined();
  });

  it('refuses tokens that would change the meaning of an ip -batch line', () => {
    expect(() => renderLinkBatch({ netns: 'n', iface: 'i', mac: 'aa:bb:cc:dd:ee:ff', address: '10.0.0.1/24\nlink del lo', removeAddresses: [] })).toThrow(/unsafe/);
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
