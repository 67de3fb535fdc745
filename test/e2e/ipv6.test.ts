// Issue 7, acceptance 7 on the real node: an IPv6 VIP (address added without DAD, so it answers at once) in
// front of IPv6 members over HTTP and TCP, allowedCidrs with IPv6 prefixes, and health monitors that take an
// IPv6 member out and put it back. IPv4 members behind an IPv6 VIP alone are not reachable (the namespace
// then holds no IPv4 address); with an IPv4 additional VIP (spec.additionalVips, Octavia's additional_vips)
// they are: the dual-stack load balancer serves IPv4, IPv6 and mixed pools over HTTP and TCP, to IPv6 and
// IPv4 clients, and an additional address removed by hand is put back by the next resync.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { createHost, deleteHost, httpGet, httpGetMany, runCommand, waitFor, type EchoReply, type Host, type HttpServerHandle } from './harness.js';
import { FAST_MONITOR, ParityEnv, healthMonitor, listener, loadBalancer, member, pool, tally, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(13);

describe('IPv6: VIP, members, allowedCidrs and health monitors', () => {
  // This run's /64, from the same random octet as its IPv4 /24, so parallel runs stay apart; 0x100 + octet
  // keeps the group non-zero, so addresses below are already in canonical form (as status reports them).
  const prefix = `fd00:213:${(256 + Number(env.run.subnet.split('.')[2])).toString(16)}`;
  const v6 = (suffix: string) => `${prefix}::${suffix}`;
  const url = (port: number, path = '/') => `http://[${vip}]:${port}${path}`;
  const hosts: string[] = [];
  let m1: Host, m2: Host, client: Host, outsider: Host, m4: Host, m5: Host, client4: Host;
  let s2: HttpServerHandle;
  let vip: string;
  // The dual-stack load balancer: an IPv6 VIP and an IPv4 additional VIP on the same port.
  let dsVip6: string, dsVip4: string;
  const dsUrl = (address: string, port: number, path = '/') => `http://${address.includes(':') ? `[${address}]` : address}:${port}${path}`;
  // Three pools (IPv4 members, IPv6 members, one of each), each behind an HTTP and a TCP listener.
  const dsPorts = { v4: { http: 80, tcp: 9000 }, v6: { http: 81, tcp: 9001 }, mix: { http: 82, tcp: 9002 } } as const;
  const dualStackDocs = (): ApiDoc[] => {
    const members = { v4: [m4, m5], v6: [m1, m2], mix: [m1, m4] };
    return [
      loadBalancer('ds', { vip: { address: dsVip6, prefixLength: 64 }, additionalVips: [{ address: dsVip4, prefixLength: 24 }] }),
      ...(['v4', 'v6', 'mix'] as const).flatMap((kind) =>
        (['http', 'tcp'] as const).flatMap((proto) => {
          const p = `ds-${kind}-${proto}`;
          const protocol = proto === 'http' ? 'HTTP' : 'TCP';
          return [
            listener(`${p}-l`, { loadBalancer: 'ds', protocol, port: dsPorts[kind][proto], defaultPool: p }),
            pool(p, { loadBalancer: 'ds', protocol, lbAlgorithm: 'ROUND_ROBIN' }),
            ...members[kind].map((h) => member(`${p}-${h.name.slice(-2)}`, { pool: p, address: h.address, port: 8080 })),
            healthMonitor(`${p}-hm`, { pool: p, type: 'TCP', ...FAST_MONITOR }),
          ];
        }),
      ),
    ];
  };

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
    m5 = await env.host('m5', 15); // IPv4
    client4 = await env.host('c4', 100); // IPv4
    await env.server(m4, { port: 8080, name: 'member m4 v4' });
    await env.server(m5, { port: 8080, name: 'member m5 v4' });
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
    dsVip6 = v6('202');
    dsVip4 = env.vip(3);
    await env.apply('ds.yaml', dualStackDocs());
  });

  afterAll(async () => {
    await env.cleanup();
    for (const h of hosts) await deleteHost(h).catch(() => {});
  });

  it('7a. the VIP is IPv6 and the load balancer reports it', async () => {
    // Traffic flows before status says so (status is published at most every --status-interval).
    await env.waitForActive(['LoadBalancer/v6']);
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
    // This load balancer has no IPv4 additional VIP: there is no IPv4 source address to reach 10.x from.
    await env.waitForOperating({ 'Member/v6-mixed-m1': 'ONLINE', 'Member/v6-mixed-m4': 'ERROR', 'Pool/v6-mixed-p': 'DEGRADED' });
    expect(tally(await httpGetMany(client, url(8082), 4))).toEqual({ 'member m1': 4 });
  });

  it('7f. a dual-stack load balancer: IPv4, IPv6 and mixed members balance over HTTP and TCP behind the IPv6 VIP', async () => {
    await env.waitForResponse(client, dsUrl(dsVip6, dsPorts.v4.http), ['LoadBalancer/ds', 'Pool/ds-v4-http']);
    const online: Record<string, string> = {};
    for (const d of dualStackDocs()) if (d.kind === 'Member' || d.kind === 'Pool') online[`${d.kind}/${d.name}`] = 'ONLINE';
    await env.waitForOperating(online);
    const lb = (await env.status())?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === 'ds');
    expect(lb?.status).toMatchObject({ provisioningStatus: 'ACTIVE', operatingStatus: 'ONLINE', vip: dsVip6 });
    const expected = {
      v4: { 'member m4 v4': 2, 'member m5 v4': 2 },
      v6: { 'member m1': 2, 'member m2': 2 },
      mix: { 'member m1': 2, 'member m4 v4': 2 },
    };
    for (const kind of ['v4', 'v6', 'mix'] as const) {
      for (const proto of ['http', 'tcp'] as const) {
        expect(tally(await httpGetMany(client, dsUrl(dsVip6, dsPorts[kind][proto]), 4)), `${kind} ${proto}`).toEqual(expected[kind]);
      }
    }
    // Each member sees the load balancer's address of its own family as the peer.
    const echo = async (from: Host, address: string, port: number) => JSON.parse((await httpGet(from, dsUrl(address, port, '/__echo'))).body) as EchoReply;
    expect(await echo(client, dsVip6, dsPorts.v4.http)).toMatchObject({ remoteAddress: dsVip4 });
    expect(await echo(client, dsVip6, dsPorts.v6.http)).toMatchObject({ remoteAddress: dsVip6 });
  });

  it('7g. IPv4 clients reach every listener on the IPv4 additional VIP', async () => {
    await env.waitForResponse(client4, dsUrl(dsVip4, dsPorts.mix.http), ['LoadBalancer/ds']);
    expect(tally(await httpGetMany(client4, dsUrl(dsVip4, dsPorts.mix.http), 4))).toEqual({ 'member m1': 2, 'member m4 v4': 2 });
    expect(tally(await httpGetMany(client4, dsUrl(dsVip4, dsPorts.mix.tcp), 4))).toEqual({ 'member m1': 2, 'member m4 v4': 2 });
    expect(tally(await httpGetMany(client4, dsUrl(dsVip4, dsPorts.v6.http), 4))).toEqual({ 'member m1': 2, 'member m2': 2 });
    expect(tally(await httpGetMany(client4, dsUrl(dsVip4, dsPorts.v4.tcp), 4))).toEqual({ 'member m4 v4': 2, 'member m5 v4': 2 });
  });

  it('7h. an additional VIP removed by hand is put back within a resync', async () => {
    const { netns, iface } = nodeNames(env.namespace, 'ds');
    const addresses = async () => {
      const { stdout } = await runCommand(['ip', '-n', netns, '-j', 'addr', 'show', 'dev', iface]);
      const [link] = JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number; scope: string }[] }[];
      return (link?.addr_info ?? [])
        .filter((a) => a.scope === 'global')
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort();
    };
    expect(await addresses()).toEqual([`${dsVip4}/24`, `${dsVip6}/64`].sort());
    await runCommand(['ip', '-n', netns, 'addr', 'del', `${dsVip4}/24`, 'dev', iface]);
    expect(await addresses()).toEqual([`${dsVip6}/64`]);
    // The agent resyncs every 3 s (ParityEnv); the address comes back without a HAProxy restart.
    await waitFor(async () => (await addresses()).includes(`${dsVip4}/24`), { timeoutMs: 15_000, intervalMs: 250, message: `${dsVip4}/24 back on ${iface}` });
    expect(await addresses()).toEqual([`${dsVip4}/24`, `${dsVip6}/64`].sort());
    await env.waitForResponse(client4, dsUrl(dsVip4, dsPorts.mix.http), ['LoadBalancer/ds']);
    // The IPv4 members' health checks failed while their source address was gone: they serve again once
    // their monitor has seen them up, not at the instant the address is back.
    await env.waitForResponse(client, dsUrl(dsVip6, dsPorts.v4.http), ['LoadBalancer/ds', 'Pool/ds-v4-http']);
  });

  it('7i. removing the additional VIP from the spec removes the address and its binds; the IPv6 VIP keeps serving', async () => {
    const { netns, iface } = nodeNames(env.namespace, 'ds');
    const docs = dualStackDocs();
    docs[0] = loadBalancer('ds', { vip: { address: dsVip6, prefixLength: 64 } });
    await env.apply('ds.yaml', docs);
    await waitFor(
      async () => {
        const { stdout } = await runCommand(['ip', '-n', netns, '-j', 'addr', 'show', 'dev', iface]);
        return !stdout.includes(`"${dsVip4}"`);
      },
      { timeoutMs: 15_000, intervalMs: 250, message: `${dsVip4} gone from ${iface}` },
    );
    await waitFor(async () => !(await readFile(join(env.lbDir('ds'), 'haproxy.cfg'), 'utf8')).includes(`bind ${dsVip4}:`), {
      timeoutMs: 15_000,
      intervalMs: 250,
      message: 'no IPv4 bind in haproxy.cfg',
    });
    expect((await httpGet(client4, dsUrl(dsVip4, dsPorts.mix.http), { timeoutMs: 2_000 })).status).toBe(0);
    expect(tally(await httpGetMany(client, dsUrl(dsVip6, dsPorts.v6.http), 4))).toEqual({ 'member m1': 2, 'member m2': 2 });
  });
});
