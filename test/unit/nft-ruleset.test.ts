// The pure parts of kernel-forwarded UDP/SCTP listeners: slot assignment, eligibility, flows to forget, the
// refusal of anything unsafe to render, the nft JSON parser, the driver's argv, and the health checks that
// HAProxy runs for such pools (their config is checked by the real `haproxy -c`).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { argvApply, argvForgetFlows, argvList, parseNftTable } from '../../src/drivers/nft/nft.js';
import { withHealth } from '../../src/drivers/nft/health-follower.js';
import { parseShowStat } from '../../src/plan/haproxy-stats.js';
import {
  assignSlots,
  eligibleMembers,
  flowsToForget,
  hashSeed,
  renderNftState,
  slotCount,
  UnsafeNftValueError,
  type NftLoadBalancer,
} from '../../src/plan/nft-ruleset.js';
import { memberHealthFromStats, needsExternalCheck, renderCheckBackend, type CheckedPool } from '../../src/plan/udp-health-checks.js';
import { nftLb, nftListener, nftMember, nftPool } from '../support/nft-lb.js';

const run = promisify(execFile);

describe('slots', () => {
  it('spreads equal weights alternately and weights in proportion', () => {
    const [a, b, c] = [nftMember('a', '10.0.0.1', 1), nftMember('b', '10.0.0.2', 1), nftMember('c', '10.0.0.3', 1, { weight: 2 })];
    expect(assignSlots([a!, b!], 8).map((m) => m.name)).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
    const table = assignSlots([a!, b!, c!], 256);
    const count = (n: string) => table.filter((m) => m.name === n).length;
    expect([count('a'), count('b'), count('c')]).toEqual([64, 64, 128]);
    // No two slots in a row for c beyond what its weight needs: the heavy member is spread out.
    expect(table.slice(0, 4).map((m) => m.name)).toEqual(['c', 'a', 'b', 'c']);
  });

  it('gives every weighted member a slot, however many there are', () => {
    const members = Array.from({ length: 300 }, (_, i) => nftMember(`m${i}`, `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`, 53));
    const pool = nftPool('big', members);
    expect(slotCount(pool)).toBe(512);
    expect(new Set(assignSlots(eligibleMembers(pool, 4), slotCount(pool))).size).toBe(300);
    const heavy = [nftMember('heavy', '10.0.0.1', 1, { weight: 256 }), nftMember('light', '10.0.0.2', 1, { weight: 1 })];
    expect(assignSlots(heavy, 256).filter((m) => m.name === 'light')).toHaveLength(1);
  });

  it('takes enabled, weighted members that are not DOWN, of the family, and backups only when no primary is left', () => {
    const pool = nftPool('p', [
      nftMember('up', '10.0.0.1', 1, { health: 'UP' }),
      nftMember('drained', '10.0.0.2', 1, { weight: 0 }),
      nftMember('down', '10.0.0.3', 1, { health: 'DOWN' }),
      nftMember('off', '10.0.0.4', 1, { adminStateUp: false }),
      nftMember('v6', 'fd00::5', 1),
      nftMember('spare', '10.0.0.6', 1, { backup: true }),
    ]);
    expect(eligibleMembers(pool, 4).map((m) => m.name)).toEqual(['up']);
    expect(eligibleMembers(pool, 6).map((m) => m.name)).toEqual(['v6']);
    const primariesGone = { ...pool, members: pool.members.map((m) => (m.name === 'up' ? { ...m, health: 'DOWN' as const } : m)) };
    expect(eligibleMembers(primariesGone, 4).map((m) => m.name)).toEqual(['spare']);
    expect(eligibleMembers({ ...pool, adminStateUp: false }, 4)).toEqual([]);
  });

  it('hashes with a seed fixed per load balancer', () => {
    expect(hashSeed('default', 'dns')).toBe(hashSeed('default', 'dns'));
    expect(hashSeed('default', 'dns')).not.toBe(hashSeed('default', 'dns2'));
    expect(hashSeed('default', 'dns')).toMatch(/^0x[0-9a-f]{8}$/);
  });
});

describe('flows to forget', () => {
  const before = nftLb({
    listeners: [nftListener('dns', 53, 'dns')],
    pools: [nftPool('dns', [nftMember('a', '10.0.0.1', 53), nftMember('b', '10.0.0.2', 53), nftMember('c', '10.0.0.3', 53)])],
  });
  const change = (f: (m: ReturnType<typeof nftMember>) => ReturnType<typeof nftMember> | undefined): NftLoadBalancer => ({
    ...before,
    pools: [{ ...before.pools[0]!, members: before.pools[0]!.members.map(f).filter((m) => m !== undefined) }],
  });

  it('forgets members that went DOWN, were disabled, removed or moved; keeps drained ones', () => {
    expect(
      flowsToForget(
        before,
        change((m) => (m.name === 'a' ? { ...m, health: 'DOWN' } : m)),
      ),
    ).toEqual([{ protocol: 'UDP', address: '10.0.0.1', port: 53 }]);
    expect(
      flowsToForget(
        before,
        change((m) => (m.name === 'b' ? { ...m, adminStateUp: false } : m)),
      ),
    ).toEqual([{ protocol: 'UDP', address: '10.0.0.2', port: 53 }]);
    expect(
      flowsToForget(
        before,
        change((m) => (m.name === 'c' ? undefined : m)),
      ),
    ).toEqual([{ protocol: 'UDP', address: '10.0.0.3', port: 53 }]);
    expect(
      flowsToForget(
        before,
        change((m) => (m.name === 'c' ? { ...m, port: 54 } : m)),
      ),
    ).toEqual([{ protocol: 'UDP', address: '10.0.0.3', port: 53 }]);
    expect(
      flowsToForget(
        before,
        change((m) => ({ ...m, weight: 0 })),
      ),
    ).toEqual([]);
    expect(flowsToForget(before, { ...before, pools: [{ ...before.pools[0]!, adminStateUp: false }] })).toHaveLength(3);
  });
});

describe('nothing unsafe reaches nft', () => {
  const good = nftLb({ listeners: [nftListener('dns', 53, 'dns')], pools: [nftPool('dns', [nftMember('a', '10.0.0.1', 53)])] });
  const hostile: Record<string, NftLoadBalancer> = {
    'listener name with a space': { ...good, listeners: [nftListener('dns x', 53, 'dns')] },
    'listener name with a quote': { ...good, listeners: [nftListener('dns"', 53, 'dns')] },
    'pool name with a newline': { ...good, pools: [nftPool('dns\nflush ruleset', [])] },
    'member name with a brace': { ...good, pools: [nftPool('dns', [nftMember('a}', '10.0.0.1', 53)])] },
    'member address with a semicolon': { ...good, pools: [nftPool('dns', [nftMember('a', '10.0.0.1; flush ruleset', 53)])] },
    'member address a name': { ...good, pools: [nftPool('dns', [nftMember('a', 'example.com', 53)])] },
    'member port 0': { ...good, pools: [nftPool('dns', [nftMember('a', '10.0.0.1', 0)])] },
    'member port fractional': { ...good, pools: [nftPool('dns', [nftMember('a', '10.0.0.1', 53.5)])] },
    'member weight 257': { ...good, pools: [nftPool('dns', [nftMember('a', '10.0.0.1', 53, { weight: 257 })])] },
    'member health unknown': { ...good, pools: [nftPool('dns', [nftMember('a', '10.0.0.1', 53, { health: 'MAYBE' as 'UP' })])] },
    'VIP with a zone': { ...good, vips: ['fe80::1%eth0'] },
    'allowed CIDR not a CIDR': { ...good, listeners: [nftListener('dns', 53, 'dns', { allowedCidrs: ['10.0.0.0/8 } drop'] })] },
    'allowed CIDR prefix too long': { ...good, listeners: [nftListener('dns', 53, 'dns', { allowedCidrs: ['10.0.0.0/33'] })] },
    'listener protocol TCP': { ...good, listeners: [nftListener('dns', 53, 'dns', { protocol: 'TCP' as 'UDP' })] },
    'pool algorithm LEAST_CONNECTIONS': { ...good, pools: [nftPool('dns', [], { lbAlgorithm: 'LEAST_CONNECTIONS' as 'SOURCE_IP' })] },
    'idle timeout 0': { ...good, listeners: [nftListener('dns', 53, 'dns', { idleTimeoutSeconds: 0 })] },
    'dangling default pool': { ...good, listeners: [nftListener('dns', 53, 'nope')] },
    'listener and pool of other protocols': { ...good, listeners: [nftListener('dns', 53, 'dns', { protocol: 'SCTP' })] },
    'two listeners on one port': { ...good, listeners: [nftListener('dns', 53, 'dns'), nftListener('dns2', 53, 'dns')] },
    'namespace with a slash': { ...good, namespace: 'a/b' },
  };
  for (const [what, lb] of Object.entries(hostile)) {
    it(`refuses ${what}`, () => {
      expect(() => renderNftState(lb)).toThrow(UnsafeNftValueError);
    });
  }

  it('renders the same input to the same state, canonically spelled', () => {
    const lb = nftLb({
      vips: ['FD00:0:0::10'],
      listeners: [nftListener('dns', 53, 'dns', { allowedCidrs: ['fd00::1/8'] })],
      pools: [nftPool('dns', [nftMember('a', 'FD00:0::0:1', 53)])],
    });
    const s = renderNftState(lb);
    expect(s?.maps.get('listen6')?.elements).toEqual(new Map([['fd00::10 . udp . 53', 'jump l_dns_6']]));
    expect(s?.maps.get('p_dns_6')?.elements.get('0')).toBe('fd00::1 . 53');
    expect(s?.chains.get('g_dns_6')?.rules[0]?.text).toBe('ip6 saddr != { fd00::/8 } drop');
    expect(renderNftState(lb)).toEqual(s);
  });
});

describe('nft driver', () => {
  it('builds argv that run nft in the namespace, with the script on stdin', () => {
    expect(argvApply('nslb-0123456789ab')).toEqual(['ip', 'netns', 'exec', 'nslb-0123456789ab', 'nft', '-f', '-']);
    expect(argvList('nslb-0123456789ab')).toEqual(['ip', 'netns', 'exec', 'nslb-0123456789ab', 'nft', '-j', 'list', 'table', 'inet', 'nslb']);
    expect(argvForgetFlows('ns', { protocol: 'UDP', address: 'fd00::1', port: 53 })).toEqual([
      'ip',
      'netns',
      'exec',
      'ns',
      'conntrack',
      '-D',
      '-f',
      'ipv6',
      '-p',
      'udp',
      '--reply-src',
      'fd00::1',
      '--reply-port-src',
      '53',
    ]);
  });

  it('parses what nft -j lists, with protocol numbers and uncanonical addresses', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { json_schema_version: 1 } },
        { table: { family: 'inet', name: 'nslb', handle: 1, comment: 'nslb default/dns' } },
        { table: { family: 'ip', name: 'other', handle: 2 } },
        { 'ct timeout': { family: 'inet', table: 'nslb', name: 't_udp4_50', protocol: 'udp', l3proto: 'ip', policy: { replied: 50 } } },
        {
          map: {
            family: 'inet',
            table: 'nslb',
            name: 'listen6',
            type: ['ipv6_addr', 'inet_proto', 'inet_service'],
            map: 'verdict',
            elem: [[{ concat: ['FD00:0::10', 17, 53] }, { jump: { target: 'l_dns_6' } }]],
          },
        },
        {
          map: { family: 'inet', table: 'nslb', name: 'p_dns_4', type: 'integer', map: 'ipv4_addr . inet_service', elem: [[0, { concat: ['10.0.0.1', 53] }]] },
        },
        { chain: { family: 'inet', table: 'nslb', name: 'pre_raw', type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' } },
        { rule: { family: 'inet', table: 'nslb', chain: 'pre_raw', comment: 'abc', expr: [] } },
        { rule: { family: 'inet', table: 'nslb', chain: 'pre_raw', expr: [] } },
        { chain: { family: 'ip', table: 'other', name: 'x' } },
      ],
    });
    const s = parseNftTable(json);
    expect(s?.comment).toBe('nslb default/dns');
    expect(s?.timeouts.get('t_udp4_50')).toEqual({ family: 4, unreplied: 30, replied: 50 });
    expect(s?.maps.get('listen6')).toEqual({ kind: 'verdict6', elements: new Map([['fd00::10 . udp . 53', 'jump l_dns_6']]) });
    expect(s?.maps.get('p_dns_4')?.elements).toEqual(new Map([['0', '10.0.0.1 . 53']]));
    expect(s?.chains.get('pre_raw')).toEqual({
      base: { type: 'filter', hook: 'prerouting', priority: -300, policy: 'accept' },
      rules: [
        { id: 'abc', text: '' },
        { id: '', text: '' },
      ],
    });
    expect(s?.chains.has('x')).toBe(false);
    expect(parseNftTable(JSON.stringify({ nftables: [{ table: { family: 'ip', name: 'nslb' } }] }))).toBeUndefined();
    expect(() => parseNftTable('not json')).toThrow(/not JSON/);
  });
});

describe('health checks of UDP and SCTP pools', () => {
  const scripts = {
    udpConnect: '/usr/lib/nslb/scripts/udp-check.sh',
    sctp: '/usr/lib/nslb/scripts/sctp-check.sh',
    ping: '/usr/lib/nslb/scripts/ping-check.sh',
  };
  const monitor = {
    delay: 5,
    timeout: 3,
    maxRetries: 2,
    maxRetriesDown: 3,
    httpMethod: 'GET',
    urlPath: '/healthz',
    expectedCodes: '200-202',
    adminStateUp: true,
  };
  const pool = (type: 'UDP-CONNECT' | 'SCTP' | 'PING' | 'TCP' | 'HTTP'): CheckedPool => ({
    name: 'dns',
    adminStateUp: true,
    members: [
      { name: 'b', address: 'fd00::2', port: 53, weight: 0, backup: true, adminStateUp: false },
      { name: 'a', address: '10.0.0.1', port: 53, weight: 3, backup: false, adminStateUp: true, monitorAddress: '10.9.0.1', monitorPort: 9053 },
    ],
    healthMonitor: { type, ...monitor },
  });

  it('renders a check-only backend: checks aimed at the monitor address, members by name, Octavia timings', () => {
    expect(renderCheckBackend(pool('UDP-CONNECT'), scripts)).toEqual([
      'backend pool.dns',
      '    mode tcp',
      '    option external-check',
      '    external-check command /usr/lib/nslb/scripts/udp-check.sh',
      '    timeout check 3s',
      '    default-server inter 5s fall 3 rise 2',
      '    server a 10.9.0.1:9053 weight 3 check',
      '    server b [fd00::2]:53 weight 0 check backup disabled',
    ]);
    expect(renderCheckBackend(pool('HTTP'), scripts).slice(2, 5)).toEqual([
      '    option httpchk',
      '    http-check send meth GET uri /healthz',
      '    http-check expect rstatus ^(200|201|202)$',
    ]);
    expect(needsExternalCheck(pool('SCTP'))).toBe(true);
    expect(needsExternalCheck(pool('TCP'))).toBe(false);
    expect(renderCheckBackend({ ...pool('TCP'), healthMonitor: undefined as never }, scripts)).toEqual([
      'backend pool.dns',
      '    mode tcp',
      '    server a 10.9.0.1:9053 weight 3',
      '    server b [fd00::2]:53 weight 0 backup disabled',
    ]);
  });

  it('passes the real haproxy -c for every monitor type', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nslb-udp-checks-'));
    try {
      const real = {
        udpConnect: fileURLToPath(new URL('../../scripts/udp-check.sh', import.meta.url)),
        sctp: '/bin/false',
        ping: fileURLToPath(new URL('../../scripts/ping-check.sh', import.meta.url)),
      };
      const types = ['UDP-CONNECT', 'SCTP', 'PING', 'TCP', 'HTTP'] as const;
      const cfg = [
        // A UDP-only load balancer's HAProxy has no frontend: its runtime socket is what it listens on, without
        // which HAProxy refuses to start ("no listener").
        'global',
        `    stats socket ${join(dir, 'haproxy.sock')} mode 600 level admin`,
        '    external-check',
        '    insecure-fork-wanted',
        'defaults',
        '    mode tcp',
        '    timeout connect 5s',
        '    timeout client 5s',
        '    timeout server 5s',
        ...types.flatMap((type) => renderCheckBackend({ ...pool(type), name: `p-${type.toLowerCase()}` }, real)),
        '',
      ].join('\n');
      await writeFile(join(dir, 'haproxy.cfg'), cfg);
      await run('haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads member health from show stat the way Octavia reads keepalived', () => {
    const csv = [
      '# pxname,svname,status,weight,check_status,type',
      'pool.dns,a,UP,1,L4OK,2',
      'pool.dns,b,UP 1/3,1,L4CON,2',
      'pool.dns,c,DOWN,1,L4CON,2',
      'pool.dns,d,DOWN 1/2,1,L4OK,2',
      'pool.dns,e,no check,1,,2',
      'pool.dns,f,MAINT,1,,2',
      'pool.other,a,DOWN,1,L4CON,2',
      'pool.dns,BACKEND,UP,1,,1',
      '',
    ].join('\n');
    const health = memberHealthFromStats(parseShowStat(csv), 'dns', new Map([['f', 'DOWN']]));
    expect(Object.fromEntries(health)).toEqual({ a: 'UP', b: 'UP', c: 'DOWN', d: 'DOWN', e: 'NO_CHECK', f: 'DOWN' });
    const lb = nftLb({ pools: [nftPool('dns', [nftMember('c', '10.0.0.3', 53), nftMember('new', '10.0.0.9', 53)])] });
    expect(withHealth(lb, new Map([['dns', health]])).pools[0]?.members.map((m) => m.health)).toEqual(['DOWN', 'UP']);
  });
});
