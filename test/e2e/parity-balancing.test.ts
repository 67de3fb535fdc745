// Issue 3, acceptance 0: balancing is per request, as Octavia's scenario tests check it, and members'
// operating status follows Octavia (NO_MONITOR, OFFLINE, ERROR through monitorPort, back to NO_MONITOR).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGetMany, keepAliveRequests, waitFor, type Host } from './harness.js';
import { FAST_MONITOR, ParityEnv, healthMonitor, listener, loadBalancer, member, pool, tally, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(3);

describe('parity: per-request balancing and member operating status', () => {
  let m1: Host, m2: Host, m3: Host, client: Host;

  beforeAll(async () => {
    await env.start();
    const hosts = await env.membersAndClient(3);
    [m1, m2, m3] = hosts.members as [Host, Host, Host];
    client = hosts.client;
  });

  afterAll(() => env.cleanup());

  /** One load balancer: a listener, its pool, and one member per host. */
  function simpleLb(name: string, vip: string, l: { protocol: string; port: number }, p: Record<string, unknown>, hosts: Host[]): ApiDoc[] {
    return [
      loadBalancer(name, { vip: { address: vip } }),
      listener(`${name}-l`, { loadBalancer: name, ...l, defaultPool: `${name}-p` }),
      pool(`${name}-p`, { loadBalancer: name, ...p }),
      ...hosts.map((h, i) => member(`${name}-m${i + 1}`, { pool: `${name}-p`, address: h.address, port: 8080 })),
    ];
  }

  it('ROUND_ROBIN over HTTP: 20 requests on ONE keep-alive connection split exactly 10/10', async () => {
    const vip = env.vip(1);
    await env.apply('rr-http.yaml', simpleLb('rrh', vip, { protocol: 'HTTP', port: 80 }, { protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }, [m1, m2]));
    await env.waitForResponse(client, `http://${vip}/`, ['LoadBalancer/rrh', 'Listener/rrh-l', 'Pool/rrh-p']);
    const bodies = await keepAliveRequests(client, `http://${vip}/`, 20);
    expect(tally(bodies)).toEqual({ 'member m1': 10, 'member m2': 10 });
  });

  it('ROUND_ROBIN over TCP: 20 new connections split exactly 10/10', async () => {
    const vip = env.vip(2);
    await env.apply('rr-tcp.yaml', simpleLb('rrt', vip, { protocol: 'TCP', port: 9000 }, { protocol: 'TCP', lbAlgorithm: 'ROUND_ROBIN' }, [m1, m2]));
    await env.waitForResponse(client, `http://${vip}:9000/`, ['LoadBalancer/rrt', 'Listener/rrt-l', 'Pool/rrt-p']);
    const bodies = await httpGetMany(client, `http://${vip}:9000/`, 20);
    expect(tally(bodies)).toEqual({ 'member m1': 10, 'member m2': 10 });
  });

  it('SOURCE_IP: all 20 requests from one client go to one member', async () => {
    const vip = env.vip(3);
    await env.apply('src.yaml', simpleLb('src', vip, { protocol: 'HTTP', port: 80 }, { protocol: 'HTTP', lbAlgorithm: 'SOURCE_IP' }, [m1, m2]));
    await env.waitForResponse(client, `http://${vip}/`, ['LoadBalancer/src', 'Listener/src-l', 'Pool/src-p']);
    const bodies = await httpGetMany(client, `http://${vip}/`, 20);
    expect(new Set(bodies).size, JSON.stringify(tally(bodies))).toBe(1);
    expect(['member m1', 'member m2']).toContain(bodies[0]);
  });

  it('members are NO_MONITOR without a monitor, admin-down is OFFLINE, a closed monitorPort is ERROR, and back', async () => {
    const vip = env.vip(4);
    const base: ApiDoc[] = [
      loadBalancer('st', { vip: { address: vip } }),
      listener('st-l', { loadBalancer: 'st', protocol: 'HTTP', port: 80, defaultPool: 'st-p' }),
      pool('st-p', { loadBalancer: 'st', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('st-m1', { pool: 'st-p', address: m1.address, port: 8080 }),
      // Its traffic port serves; its monitor port (nothing listens there) is what a monitor probes.
      member('st-m2', { pool: 'st-p', address: m2.address, port: 8080, monitorPort: 8081 }),
      member('st-m3', { pool: 'st-p', address: m3.address, port: 8080, adminStateUp: false }),
    ];
    const monitor = healthMonitor('st-hm', { pool: 'st-p', type: 'TCP', ...FAST_MONITOR });
    const url = `http://${vip}/`;

    await env.apply('st.yaml', base);
    await env.waitForResponse(client, url, ['LoadBalancer/st', 'Pool/st-p']);
    await env.waitForOperating({ 'Member/st-m1': 'NO_MONITOR', 'Member/st-m2': 'NO_MONITOR', 'Member/st-m3': 'OFFLINE' });
    expect(tally(await httpGetMany(client, url, 10))).toEqual({ 'member m1': 5, 'member m2': 5 });

    await env.apply('st.yaml', [...base, monitor]);
    await env.waitForOperating({
      'Member/st-m1': 'ONLINE',
      'Member/st-m2': 'ERROR',
      'Member/st-m3': 'OFFLINE',
      'Pool/st-p': 'DEGRADED',
    });
    // The member that fails its monitor gets no traffic, although its traffic port would answer.
    expect(tally(await httpGetMany(client, url, 10))).toEqual({ 'member m1': 10 });

    await env.apply('st.yaml', base);
    await env.waitForOperating({ 'Member/st-m1': 'NO_MONITOR', 'Member/st-m2': 'NO_MONITOR', 'Member/st-m3': 'OFFLINE' });
    await waitFor(async () => (await httpGetMany(client, url, 4)).includes('member m2'), {
      timeoutMs: 10_000,
      message: 'member st-m2 to get traffic again once the monitor is gone',
    });
    expect(tally(await httpGetMany(client, url, 10))).toEqual({ 'member m1': 5, 'member m2': 5 });
  });
});
