// SCTP listeners forwarded by the kernel. This kernel has no SCTP sockets (CONFIG_IP_SCTP is not set) but
// conntrack and NAT handle SCTP, so forwarding works; the members and the client here speak the first two
// steps of the handshake (INIT, INIT-ACK) over raw sockets (test/e2e/sctp-raw.py), which is enough to see
// which member answered, from where, and that the answer comes back from the VIP with the client's tag.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/sctp-nft.test.ts
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthFollower } from '../../src/drivers/nft/health-follower.js';
import { probeSctp } from '../../src/drivers/nft/nft.js';
import { runCommand as run } from '../../src/exec/run.js';
import type { NftLoadBalancer } from '../../src/plan/nft-ruleset.js';
import { REPO_ROOT, runCommand, waitFor, type Host } from './harness.js';
import { NftRig, nftMember, quickMonitor, startCheckHaproxy } from './nft-rig.js';
import { SctpMembers, sctpAsk } from './sctp-tools.js';

const PORT = 2905;
const rig = new NftRig(22);
const { t } = rig;
const members = new SctpMembers(PORT);

function model(lbAlgorithm: NftLoadBalancer['pools'][number]['lbAlgorithm']): NftLoadBalancer {
  return {
    namespace: 'e2e',
    name: 'sctp',
    vips: [rig.lbHost.address],
    listeners: [
      { name: 'm3ua', protocol: 'SCTP', port: PORT, allowedCidrs: [`${t.subnet}.0/24`], idleTimeoutSeconds: 30, defaultPool: 'stp', adminStateUp: true },
    ],
    pools: [{ name: 'stp', protocol: 'SCTP', lbAlgorithm, adminStateUp: true, members: [nftMember('m1', rig.m1, PORT), nftMember('m2', rig.m2, PORT)] }],
  };
}

const apply = (lb: NftLoadBalancer) => rig.apply(lb);
const ask = (from: Host, sports: number[]) => sctpAsk(from, rig.lbHost.address, PORT, sports);

beforeAll(async () => {
  await rig.start();
  await members.start('m1', rig.m1);
  await members.start('m2', rig.m2);
});

afterAll(async () => {
  await members.stopAll();
  await rig.cleanup();
});

describe('SCTP listener forwarded by nftables', () => {
  it('the node forwards SCTP (conntrack and NAT have it) though it has no SCTP sockets', async () => {
    const sctp = await probeSctp();
    expect(sctp.forwarding).toBe(true);
    const sockets = await runCommand(
      ['ip', 'netns', 'exec', rig.lbHost.netns, 'python3', '-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)'],
      { allowFailure: true },
    );
    expect(sockets.exitCode === 0).toBe(sctp.sockets);
  });

  it('ROUND_ROBIN alternates, and members see the load balancer as the source', async () => {
    await apply(model('ROUND_ROBIN'));
    const answers = await ask(
      rig.client,
      Array.from({ length: 8 }, (_, i) => 42000 + i),
    );
    const names = answers.map((a) => a.name ?? a.error);
    expect(names.filter((n) => n === 'm1')).toHaveLength(4);
    for (let i = 1; i < names.length; i++) expect(names[i]).not.toBe(names[i - 1]);
    expect(new Set(answers.map((a) => a.seenFrom))).toEqual(new Set([rig.lbHost.address]));
  });

  it('SOURCE_IP keeps a client on its member; SOURCE_IP_PORT keeps a client port on its member', async () => {
    await apply(model('SOURCE_IP'));
    for (const c of [rig.client, rig.client2]) {
      const names = (
        await ask(
          c,
          Array.from({ length: 8 }, (_, i) => 42100 + i),
        )
      ).map((a) => a.name ?? a.error);
      expect(new Set(names).size, names.join(',')).toBe(1);
    }
    await apply(model('SOURCE_IP_PORT'));
    const ports = Array.from({ length: 12 }, (_, i) => 42200 + i);
    const first = (await ask(rig.client, ports)).map((a) => a.name ?? a.error);
    expect(new Set(first)).toEqual(new Set(['m1', 'm2']));
    await runCommand(['ip', 'netns', 'exec', rig.lbHost.netns, 'conntrack', '-F']);
    expect((await ask(rig.client, ports)).map((a) => a.name ?? a.error)).toEqual(first);
  });

  it('a source outside allowedCidrs gets no answer', async () => {
    await apply({ ...model('ROUND_ROBIN'), listeners: [{ ...model('ROUND_ROBIN').listeners[0]!, allowedCidrs: [`${rig.client2.address}/32`] }] });
    expect((await ask(rig.client, [42300]))[0]?.error).toBe('timeout');
    expect((await ask(rig.client2, [42301]))[0]?.name).toMatch(/^m[12]$/);
  });

  it('an SCTP monitor (nmap INIT scan from HAProxy) takes a member out when it stops answering and back in', async () => {
    await apply(model('ROUND_ROBIN'));
    const spec = model('ROUND_ROBIN');
    const haproxy = await startCheckHaproxy(
      rig.lbHost.netns,
      { ...spec.pools[0]!, healthMonitor: quickMonitor('SCTP') },
      { udpConnect: '/bin/false', sctp: join(REPO_ROOT, 'scripts', 'sctp-check.sh'), ping: '/bin/false' },
    );
    const follower = new HealthFollower({ run, netns: rig.lbHost.netns, socketPath: haproxy.socket, intervalMs: 250, model: () => spec });
    const answering = async () =>
      new Set(
        (
          await ask(
            rig.client,
            Array.from({ length: 4 }, (_, i) => 43000 + Math.floor(Math.random() * 20000) + i),
          )
        ).map((a) => a.name ?? a.error),
      );
    try {
      follower.start();
      await members.stop('m2');
      await waitFor(
        async () => {
          const got = await answering();
          return got.size === 1 && got.has('m1');
        },
        { timeoutMs: 20_000, message: 'm2 to be taken out' },
      );
      await members.start('m2', rig.m2);
      await waitFor(async () => (await answering()).size === 2, { timeoutMs: 20_000, message: 'm2 to come back' });
    } finally {
      await follower.stop();
      await haproxy.stop();
    }
  });
});
