// Golden nft scripts of UDP and SCTP listeners: each fixture renders to test/golden/nft/<case>.nft byte for
// byte (`vitest -u` rewrites them; review the diff), and the real kernel checks each one with `nft -c`. Member
// changes and health transitions render to test/golden/nft/<case>.<change>.nft, which must be element
// updates only, are checked on top of their base, applied, and read back: the next plan is empty.
//
// Each kernel check runs `nft` in a network namespace of its own made by `unshare -n`, which goes away with
// the process: nothing on the node is touched, so these need neither the data-plane lock nor a named netns.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNftTable } from '../../src/drivers/nft/nft.js';
import { renderNftState, type NftLoadBalancer, type NftState } from '../../src/plan/nft-ruleset.js';
import { planNftTransaction, renderNftScript } from '../../src/plan/nft-transaction.js';
import { nftModelOf } from '../../src/plan/kernel-model.js';
import { listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';
import { nftLb, nftListener, nftMember, nftPool } from '../support/nft-lb.js';

const run = promisify(execFile);

const cases: Record<string, NftLoadBalancer> = {
  'udp-round-robin': nftLb({
    listeners: [nftListener('dns', 53, 'dns')],
    pools: [nftPool('dns', [nftMember('dns-1', '10.210.0.11', 5353), nftMember('dns-2', '10.210.0.12', 5353)])],
  }),

  'udp-dual-stack-source-ip-port-allowed-cidrs': nftLb({
    vips: ['10.210.0.10', 'fd00:210::10', '10.211.0.10'],
    listeners: [
      nftListener('syslog', 514, 'syslog', {
        allowedCidrs: ['10.0.0.0/8', '10.1.2.3/16', '192.168.7.0/24', 'fd00:abcd::/32'],
        idleTimeoutSeconds: 300,
      }),
      // Allows IPv4 only: its IPv6 VIP refuses everyone.
      nftListener('radius', 1812, 'radius', { allowedCidrs: ['172.16.0.0/12'] }),
    ],
    pools: [
      nftPool(
        'syslog',
        [nftMember('log-1', '10.210.0.21', 514, { weight: 3 }), nftMember('log-2', '10.210.0.22', 514), nftMember('log-6', 'fd00:210:0:0::21', 514)],
        { lbAlgorithm: 'SOURCE_IP_PORT' },
      ),
      nftPool('radius', [nftMember('radius-1', '10.210.0.31', 1812)], { lbAlgorithm: 'SOURCE_IP' }),
    ],
  }),

  'udp-backup-drain-down-admin': nftLb({
    listeners: [nftListener('game', 27015, 'game', { idleTimeoutSeconds: 10 }), nftListener('off', 27016, 'game', { adminStateUp: false })],
    pools: [
      nftPool('game', [
        nftMember('drained', '10.210.0.41', 27015, { weight: 0 }),
        nftMember('down', '10.210.0.42', 27015, { health: 'DOWN' }),
        nftMember('disabled', '10.210.0.43', 27015, { adminStateUp: false }),
        nftMember('spare-1', '10.210.0.44', 27015, { backup: true, health: 'UP' }),
        nftMember('spare-2', '10.210.0.45', 27015, { backup: true, weight: 2, health: 'UP' }),
      ]),
    ],
  }),

  'sctp-source-ip': nftLb({
    vips: ['10.210.0.10', 'fd00:210::10'],
    listeners: [nftListener('sigtran', 2905, 'm3ua', { protocol: 'SCTP', allowedCidrs: ['10.0.0.0/8'] })],
    pools: [
      nftPool('m3ua', [nftMember('stp-1', '10.210.0.51', 2905), nftMember('stp-2', '10.210.0.52', 2905)], {
        protocol: 'SCTP',
        lbAlgorithm: 'SOURCE_IP',
      }),
    ],
  }),
};

// The agent's path (issue 21): a desired load balancer as the builder makes it, through plan/kernel-model.ts, with
// HAProxy's verdict on its members: TCP and PROMETHEUS listeners are not the kernel's, a DOWN member is out,
// SOURCE_IP persistence on a ROUND_ROBIN pool hashes by source, clientData is the idle timeout.
const fromDesired = nftModelOf(
  loadBalancer({
    vip: {
      address: '10.210.0.10',
      family: 4,
      prefixLength: 24,
      mac: 'fa:16:3e:01:02:03',
      additional: [{ address: 'fd00:210::10', family: 6, prefixLength: 64 }],
    },
    listeners: [
      listener('dns', {
        protocol: 'UDP',
        port: 53,
        defaultPool: 'resolvers',
        timeouts: { clientData: 20_000, memberConnect: 5000, memberData: 50000, tcpInspect: 0 },
      }),
      listener('dns-tcp', { protocol: 'TCP', port: 53, defaultPool: 'resolvers-tcp' }),
      listener('metrics', { protocol: 'PROMETHEUS', port: 9100 }),
      listener('sig', { protocol: 'SCTP', port: 3868, defaultPool: 'diameter', allowedCidrs: ['10.0.0.0/8'] }),
    ],
    pools: [
      pool('resolvers', {
        protocol: 'UDP',
        lbAlgorithm: 'SOURCE_IP_PORT',
        members: [member('r-1', '10.210.0.11', 53), member('r-2', '10.210.0.12', 53, { weight: 2 }), member('r-6', 'fd00:210::11', 53)],
        healthMonitor: monitor({ type: 'UDP-CONNECT' }),
      }),
      pool('diameter', {
        protocol: 'SCTP',
        sessionPersistence: { type: 'SOURCE_IP' },
        members: [member('d-1', '10.210.0.21', 3868), member('d-2', '10.210.0.22', 3868)],
      }),
      pool('resolvers-tcp', { protocol: 'TCP', members: [member('r-1', '10.210.0.11', 53)] }),
    ],
  }),
  new Map([['resolvers', new Map([['r-2', 'DOWN' as const]])]]),
);
if (fromDesired === undefined) throw new Error('the desired fixture has UDP and SCTP listeners');
cases['desired-udp-sctp-with-health'] = fromDesired;

const base = cases['udp-round-robin'] as NftLoadBalancer;
const basePool = base.pools[0]!;
const withMembers = (members: ReturnType<typeof nftMember>[]): NftLoadBalancer => ({ ...base, pools: [{ ...basePool, members }] });

/** Changes of one member each, from udp-round-robin: each must be element updates of its pool map only. */
const changes: Record<string, NftLoadBalancer> = {
  'member-added': withMembers([...basePool.members, nftMember('dns-3', '10.210.0.13', 5353)]),
  'member-removed': withMembers([basePool.members[0]!]),
  'member-weighted': withMembers([basePool.members[0]!, { ...basePool.members[1]!, weight: 3 }]),
  'member-drained': withMembers([basePool.members[0]!, { ...basePool.members[1]!, weight: 0 }]),
  'member-down': withMembers([basePool.members[0]!, { ...basePool.members[1]!, health: 'DOWN' }]),
};

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-nft-golden-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function state(lb: NftLoadBalancer): NftState {
  const s = renderNftState(lb);
  if (s === undefined) throw new Error('no state');
  return s;
}

/** In a namespace of its own: check `first`, apply it, check and apply `then`, print the table as JSON. */
async function inThrowawayNetns(first: string, then?: string): Promise<string> {
  const a = join(dir, `a-${Math.random().toString(36).slice(2)}.nft`);
  const b = join(dir, `b-${Math.random().toString(36).slice(2)}.nft`);
  await writeFile(a, first);
  await writeFile(b, then ?? '');
  const script = 'nft -c -f "$1" && nft -f "$1" && nft -c -f "$2" && nft -f "$2" && nft -j list table inet nslb';
  const { stdout } = await run('unshare', ['-n', 'sh', '-c', script, 'sh', a, b]);
  return stdout;
}

describe('golden nft scripts', () => {
  for (const [name, lb] of Object.entries(cases)) {
    it(`${name} renders as the golden script, which the kernel accepts and reads back in sync`, async () => {
      const script = renderNftScript(state(lb));
      await expect(script).toMatchFileSnapshot(`nft/${name}.nft`);
      const observed = parseNftTable(await inThrowawayNetns(script));
      expect(planNftTransaction(observed, state(lb))).toEqual([]);
    });
  }

  for (const [name, next] of Object.entries(changes)) {
    it(`${name} is one transaction of element updates, accepted on top of the base and then in sync`, async () => {
      const delta = planNftTransaction(state(base), state(next));
      await expect(`${delta.join('\n')}\n`).toMatchFileSnapshot(`nft/udp-round-robin.${name}.nft`);
      expect(delta.length).toBeGreaterThan(0);
      for (const line of delta) expect(line).toMatch(/^(add|delete) element inet nslb p_dns_4 \{ /);
      const observed = parseNftTable(await inThrowawayNetns(renderNftScript(state(base)), `${delta.join('\n')}\n`));
      expect(planNftTransaction(observed, state(next))).toEqual([]);
    });
  }

  it('a listener change touches its own chains and maps only, and a removed listener leaves nothing behind', async () => {
    const from = cases['udp-dual-stack-source-ip-port-allowed-cidrs'] as NftLoadBalancer;
    const to: NftLoadBalancer = {
      ...from,
      listeners: [{ ...from.listeners[0]!, allowedCidrs: ['10.0.0.0/8'], idleTimeoutSeconds: 60 }],
    };
    const delta = planNftTransaction(state(from), state(to));
    await expect(`${delta.join('\n')}\n`).toMatchFileSnapshot('nft/udp-dual-stack-source-ip-port-allowed-cidrs.listener-changed.nft');
    expect(delta.some((l) => /radius/.test(l) && !/^delete /.test(l))).toBe(false);
    const observed = parseNftTable(await inThrowawayNetns(renderNftScript(state(from)), `${delta.join('\n')}\n`));
    expect(planNftTransaction(observed, state(to))).toEqual([]);
    expect([...(observed?.chains.keys() ?? [])].some((c) => c.includes('radius'))).toBe(false);
    expect([...(observed?.timeouts.keys() ?? [])]).toEqual(['t_udp4_60', 't_udp6_60']);
  });

  it('a rule edited by hand and a foreign map kind are repaired in one transaction', async () => {
    const s = state(base);
    const tampered = `${renderNftScript(s)}flush chain inet nslb l_dns_4\nadd rule inet nslb l_dns_4 meta l4proto udp dnat ip to 10.9.9.9\n`;
    const observed = parseNftTable(await inThrowawayNetns(tampered));
    const repair = planNftTransaction(observed, s);
    expect(repair).toEqual([
      'flush chain inet nslb l_dns_4',
      expect.stringMatching(/^add rule inet nslb l_dns_4 meta l4proto udp dnat ip to numgen inc mod 256 map @p_dns_4 comment/),
    ]);
    const repaired = parseNftTable(await inThrowawayNetns(tampered, `${repair.join('\n')}\n`));
    expect(planNftTransaction(repaired, s)).toEqual([]);

    const foreign = `${renderNftScript(s)}flush chain inet nslb pre_raw\ndelete map inet nslb guard4\nadd map inet nslb guard4 { type ipv4_addr : verdict; }\n`;
    const rebuild = planNftTransaction(parseNftTable(await inThrowawayNetns(foreign)), s);
    expect(rebuild[0]).toBe('delete table inet nslb');
    const rebuilt = parseNftTable(await inThrowawayNetns(foreign, `${rebuild.join('\n')}\n`));
    expect(planNftTransaction(rebuilt, s)).toEqual([]);
  });

  it('no UDP or SCTP listener left: the table goes', () => {
    expect(renderNftState({ ...base, listeners: [] })).toBeUndefined();
    expect(planNftTransaction(state(base), undefined)).toEqual(['delete table inet nslb']);
    expect(planNftTransaction(undefined, undefined)).toEqual([]);
  });
});
