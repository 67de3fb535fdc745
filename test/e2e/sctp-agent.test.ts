// Issue 21 acceptance 2, through the agent (file-watch mode): an SCTP listener. This kernel has conntrack and NAT
// for SCTP but no SCTP sockets, so it forwards SCTP (proven here like UDP): members and client speak INIT/INIT-ACK
// over raw sockets (test/e2e/sctp-raw.py), the SCTP monitor (nmap's INIT scan) takes a silent member out and
// brings it back, and ROUND_ROBIN / SOURCE_IP_PORT behave as for UDP.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/sctp-agent.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor, type Host } from './harness.js';
import { healthMonitor, listener, loadBalancer, member, ParityEnv, pool, type ApiDoc } from './parity-env.js';
import { SctpMembers, sctpAsk, type SctpAnswer } from './sctp-tools.js';

const PORT = 2905;
const env = ParityEnv.create(26);
let m1: Host;
let m2: Host;
let client: Host;
const members = new SctpMembers(PORT);

function docs(lbAlgorithm = 'ROUND_ROBIN'): ApiDoc[] {
  return [
    loadBalancer('sig', { vip: { address: env.vip(1), prefixLength: 24 } }),
    listener('m3ua', { loadBalancer: 'sig', protocol: 'SCTP', port: PORT, defaultPool: 'stp' }),
    pool('stp', { loadBalancer: 'sig', protocol: 'SCTP', lbAlgorithm }),
    member('m1', { pool: 'stp', address: m1.address, port: PORT }),
    member('m2', { pool: 'stp', address: m2.address, port: PORT }),
    healthMonitor('stp-check', { pool: 'stp', type: 'SCTP', delay: 1, timeout: 1, maxRetries: 1, maxRetriesDown: 1 }),
  ];
}

const ask = (sports: number[]): Promise<SctpAnswer[]> => sctpAsk(client, env.vip(1), PORT, sports);

const ports = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const names = (a: SctpAnswer[]) => a.map((x) => x.name ?? `error:${x.error}`);

describe('SCTP listeners through the agent (issue 21 acceptance 2)', () => {
  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    client = await env.host('c', 100);
    await members.start('m1', m1);
    await members.start('m2', m2);
    await env.apply('sig.yaml', docs());
    await env.waitForOperating({ 'LoadBalancer/sig': 'ONLINE', 'Listener/m3ua': 'ONLINE', 'Member/m1': 'ONLINE', 'Member/m2': 'ONLINE' }, 30_000);
  }, 60_000);

  afterAll(async () => {
    await members.stopAll();
    await env.cleanup();
  });

  it('ROUND_ROBIN alternates between the members, answers come from the VIP, members see the load balancer', async () => {
    const answers = await ask(ports(46000, 8));
    const got = names(answers);
    for (let i = 1; i < got.length; i++) expect(got[i], got.join(',')).not.toBe(got[i - 1]);
    expect(new Set(got)).toEqual(new Set(['m1', 'm2']));
    expect(answers.every((a) => a.seenFrom === env.vip(1))).toBe(true);
  });

  it('SOURCE_IP_PORT keeps each source port on its member', async () => {
    await env.apply('sig.yaml', docs('SOURCE_IP_PORT'));
    const sports = ports(47000, 16);
    let first: string[] = [];
    await waitFor(
      async () => {
        // Other ports than before each round: new flows, hashed by the new rule.
        first = names(await ask(sports));
        const again = names(await ask([...sports].reverse())).reverse();
        return new Set(first).size === 2 && JSON.stringify(again) === JSON.stringify(first);
      },
      { timeoutMs: 15_000, intervalMs: 500, message: 'SOURCE_IP_PORT applied and stable per port' },
    );
  });

  it('a silent member is taken out by the SCTP monitor (ERROR) and comes back (ONLINE)', async () => {
    await env.apply('sig.yaml', docs());
    await members.stop('m2');
    await env.waitForOperating({ 'Member/m2': 'ERROR', 'Pool/stp': 'DEGRADED' }, 20_000);
    await waitFor(async () => names(await ask(ports(48000 + Math.floor(Math.random() * 1000), 4))).every((n) => n === 'm1'), {
      timeoutMs: 10_000,
      intervalMs: 300,
      message: 'm2 out of the map',
    });
    await members.start('m2', m2);
    await env.waitForOperating({ 'Member/m2': 'ONLINE' }, 20_000);
    await waitFor(async () => new Set(names(await ask(ports(50000 + Math.floor(Math.random() * 1000), 4)))).size === 2, {
      timeoutMs: 10_000,
      intervalMs: 300,
      message: 'm2 back in the map',
    });
  });
});
