// Issue 7, acceptance 7 on the real node: an IPv6 VIP (address added without DAD, so it answers at once) in
// front of IPv6 members over HTTP and TCP, allowedCidrs with IPv6 prefixes, and health monitors that take an
// IPv6 member out and put it back. (IPv4 members behind an IPv6 VIP are not reachable: the load balancer's
// namespace holds the VIP only. See the issue notes.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost, deleteHost, httpGet, httpGetMany, type Host, type HttpServerHandle } from './harness.js';
import { FAST_MONITOR, ParityEnv, healthMonitor, listener, loadBalancer, member, pool, tally } from './parity-env.js';

const env = ParityEnv.create(13);

describe('IPv6: VIP, members, allowedCidrs and health monitors', () => {
  // This run's /64, from the same random octet as its IPv4 /24, so parallel runs stay apart; 0x100 + octet
  // keeps the group non-zero, so addresses below are already in canonical form (as status reports them).
  const prefix = `fd00:213:${(256 + Number(env.run.subnet.split('.')[2])).toString(16)}`;
  const v6 = (suffix: string) => `${prefix}::${suffix}`;
  const url = (port: number, path = '/') => `http://[${vip}]:${port}${path}`;
  const hosts: string[] = [];
  let m1: Host, m2: Host, client: Host, outsider: Host, m4: Host;
  let s2: HttpServerHandle;
  let vip: string;

  const host = async (suffix: string, address: string): Promise<Host> => {
    const name = env.run.name(suffix);
    hosts.push(name);
    return createHost({ name, bridge: env.bridge, address: `${address}/64` });
  };

  beforeAll(async () => {
    await env.start();
    vip = v6('201');
    m1 = await host('m1', v6('11'));
    m2 = await host('m2', v6('12'));
    client = await host('c', v6('100'));
    outsider = await host('o', v6('300'));
    m4 = await env.host('m4', 14); // IPv4
    await env.server(m4, { port: 8080, name: 'member m4 v4' });
    await env.server(m1, { port: 8080, name: 'member m1' });
    s2 = await env.server(m2, { port: 8080, name: 'member m2' });
    await env.apply('v6.yaml', [
      loadBalancer('v6', { vip: { address: vip, prefixLength: 64 } }),
      listener('v6-http', { loadBalancer: 'v6', protocol: 'HTTP', port: 80, defaultPool: 'v6-http-p' }),
      pool('v6-http-p', { loadBalancer: 'v6', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('v6-http-m1', { pool: 'v6-http-p', address: m1.address, port: 8080 }),
      member('v6-http-m2', { pool: 'v6-http-p', address: m2.address, port: 8080 }),
      healthMonitor('v6-http-hm', { pool: 'v6-http-p', type: 'HTTP', urlPath: '/healthz', ...FAST_MONITOR }),
      listener('v6-tcp', { loadBalancer: 'v6', protocol: 'TCP', port: 9000, defaultPool: 'v6-tcp-p' }),
      pool('v6-tcp-p', { loadBalancer: 'v6', protocol: 'TCP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('v6-tcp-m1', { pool: 'v6-tcp-p', address: m1.address, port: 8080 }),
      member('v6-tcp-m2', { pool: 'v6-tcp-p', address: m2.address, port: 8080 }),
      healthMonitor('v6-tcp-hm', { pool: 'v6-tcp-p', type: 'TCP', ...FAST_MONITOR }),
      listener('v6-mixed', { loadBalancer: 'v6', protocol: 'HTTP', port: 8082, defaultPool: 'v6-mixed-p' }),
      pool('v6-mixed-p', { loadBalancer: 'v6', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('v6-mixed-m1', { pool: 'v6-mixed-p', address: m1.address, port: 8080 }),
      member('v6-mixed-m4', { pool: 'v6-mixed-p', address: m4.address, port: 8080 }),
      healthMonitor('v6-mixed-hm', { pool: 'v6-mixed-p', type: 'TCP', ...FAST_MONITOR }),
      listener('v6-only', {
        loadBalancer: 'v6',
        protocol: 'HTTP',
        port: 8081,
        defaultPool: 'v6-http-p',
        // The client's /120 (::100-::1ff) and an IPv4 network: the outsider at ::300 is in neither.
        allowedCidrs: [`${v6('100')}/120`, '192.0.2.0/24'],
      }),
    ]);
    await env.waitForResponse(client, url(80), ['LoadBalancer/v6', 'Listener/v6-http', 'Pool/v6-http-p']);
  });

  afterAll(async () => {
    await env.cleanup();
    for (const h of hosts) await deleteHost(h).catch(() => {});
  });

  it('7a. the VIP is IPv6 and the load balancer reports it', async () => {
    const lb = (await env.status())?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === 'v6');
    expect(lb?.status).toMatchObject({ provisioningStatus: 'ACTIVE', vip });
  });

  it('7b. HTTP and TCP listeners balance over IPv6 members; monitors mark them ONLINE', async () => {
    await env.waitForOperating({ 'Member/v6-http-m1': 'ONLINE', 'Member/v6-http-m2': 'ONLINE', 'Member/v6-tcp-m1': 'ONLINE', 'Member/v6-tcp-m2': 'ONLINE' });
    expect(tally(await httpGetMany(client, url(80), 4))).toEqual({ 'member m1': 2, 'member m2': 2 });
    expect(tally(await httpGetMany(client, url(9000), 4))).toEqual({ 'member m1': 2, 'member m2': 2 });
    // The member saw the load balancer's IPv6 VIP as the peer.
    expect(JSON.parse((await httpGet(client, url(80, '/__echo'))).body)).toMatchObject({ remoteAddress: vip });
  });

  it('7c. allowedCidrs with an IPv6 prefix admit a client inside it and refuse one outside', async () => {
    expect(await httpGet(client, url(8081))).toMatchObject({ status: 200 });
    expect((await httpGet(outsider, url(8081))).status).toBe(0);
    // The same outsider is served where no CIDRs are set.
    expect((await httpGet(outsider, url(80))).status).toBe(200);
  });

  it('7d. a health monitor takes an unhealthy IPv6 member out and puts it back', async () => {
    await s2.setHealthy(false);
    await env.waitForOperating({ 'Member/v6-http-m2': 'ERROR', 'Pool/v6-http-p': 'DEGRADED' });
    expect(tally(await httpGetMany(client, url(80), 4))).toEqual({ 'member m1': 4 });
    await s2.setHealthy(true);
    await env.waitForOperating({ 'Member/v6-http-m2': 'ONLINE', 'Pool/v6-http-p': 'ONLINE' });
  });

  it('7e. an IPv4 member behind an IPv6 VIP is unreachable and says so (ERROR); the IPv6 member serves', async () => {
    // The namespace holds the IPv6 VIP only: there is no IPv4 source address to reach 10.x from.
    await env.waitForOperating({ 'Member/v6-mixed-m1': 'ONLINE', 'Member/v6-mixed-m4': 'ERROR', 'Pool/v6-mixed-p': 'DEGRADED' });
    expect(tally(await httpGetMany(client, url(8082), 4))).toEqual({ 'member m1': 4 });
  });
});
