// Issue 3, acceptance 5 and 6: every health monitor type marks a broken member ERROR and traffic avoids it;
// a wrong HTTP status or path fails an HTTP monitor; monitorPort probes a different port than the traffic
// port; a backup member serves only when every primary is down; weight 0 drains (no new connections,
// existing ones kept, DRAINING).
import { join } from 'node:path';
import { queryRuntime } from '../../src/drivers/haproxy/runtime-api.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestPki,
  httpGet,
  httpGetMany,
  openLongConnection,
  runCommand,
  waitFor,
  type Host,
  type HttpServerHandle,
  type LongConnection,
} from './harness.js';
import { FAST_MONITOR, ParityEnv, STATUS_SETTLE_MS, healthMonitor, listener, loadBalancer, member, pool, sleep, tally, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(6);
const MEMBER_NAME = 'member.example.test';

describe('parity: health monitors, backup members, drain', () => {
  let good: Host, client: Host;
  let tlsCert: { certFile: string; keyFile: string };
  let goodServer: HttpServerHandle;
  let long: LongConnection | undefined;

  beforeAll(async () => {
    await env.start();
    good = await env.host('good', 11);
    client = await env.host('c', 100);
    const pki = await createTestPki(join(env.root, 'pki'), [{ name: MEMBER_NAME, dnsNames: [MEMBER_NAME] }]);
    tlsCert = pki.leaves.get(MEMBER_NAME)!;
    goodServer = await env.server(good, { port: 8080, name: 'good' });
    await env.server(good, { port: 8443, name: 'good tls', tls: tlsCert });
  });

  afterAll(async () => {
    await long?.close().catch(() => {});
    await env.cleanup();
  });

  interface MonitorCase {
    type: 'PING' | 'TCP' | 'HTTP' | 'HTTPS' | 'TLS-HELLO';
    /** Listener and pool protocol; the member servers speak HTTP or HTTPS accordingly. */
    protocol: 'TCP' | 'HTTP' | 'HTTPS';
    /** How the victim member is broken. */
    brokenBy: string;
    breakIt(victim: { host: Host; server: HttpServerHandle }): Promise<void>;
  }

  const cases: MonitorCase[] = [
    {
      type: 'PING',
      protocol: 'TCP',
      brokenBy: "the member host's link going down",
      breakIt: async ({ host }) => {
        await runCommand(['ip', '-n', host.netns, 'link', 'set', 'dev', 'eth0', 'down']);
      },
    },
    { type: 'TCP', protocol: 'TCP', brokenBy: 'its server stopping', breakIt: ({ server }) => server.stop() },
    { type: 'HTTP', protocol: 'HTTP', brokenBy: '/healthz answering 503', breakIt: ({ server }) => server.setHealthy(false) },
    { type: 'HTTPS', protocol: 'HTTPS', brokenBy: 'its TLS server stopping', breakIt: ({ server }) => server.stop() },
    { type: 'TLS-HELLO', protocol: 'HTTPS', brokenBy: 'its TLS server stopping', breakIt: ({ server }) => server.stop() },
  ];

  cases.forEach((c, i) => {
    it(`${c.type} monitor: a member broken by ${c.brokenBy} goes ERROR and traffic avoids it`, async () => {
      const lb = `hm${i}`;
      const vip = env.vip(i + 1);
      const tls = c.protocol === 'HTTPS';
      const port = tls ? 8443 : 8080;
      const victimHost = await env.host(`v${i}`, 21 + i);
      const victim = await env.server(victimHost, { port, name: `victim ${c.type}`, ...(tls ? { tls: tlsCert } : {}) });
      await env.apply(`${lb}.yaml`, [
        loadBalancer(lb, { vip: { address: vip } }),
        listener(`${lb}-l`, { loadBalancer: lb, protocol: c.protocol, port: 443, defaultPool: `${lb}-p` }),
        pool(`${lb}-p`, { loadBalancer: lb, protocol: c.protocol, lbAlgorithm: 'ROUND_ROBIN' }),
        member(`${lb}-good`, { pool: `${lb}-p`, address: good.address, port }),
        member(`${lb}-victim`, { pool: `${lb}-p`, address: victimHost.address, port }),
        healthMonitor(`${lb}-hm`, {
          pool: `${lb}-p`,
          type: c.type,
          ...FAST_MONITOR,
          ...(c.type === 'HTTP' || c.type === 'HTTPS' ? { urlPath: '/healthz', expectedCodes: '200' } : {}),
        }),
      ]);
      const url = `${tls ? 'https' : 'http'}://${vip}:443/`;
      const curlArgs = tls ? ['-k'] : [];
      await env.waitForOperating({ [`Member/${lb}-good`]: 'ONLINE', [`Member/${lb}-victim`]: 'ONLINE', [`Pool/${lb}-p`]: 'ONLINE' });
      await env.waitForResponse(client, url, [`LoadBalancer/${lb}`], { curlArgs });
      expect(new Set(await httpGetMany(client, url, 4, { curlArgs }))).toEqual(new Set([tls ? 'good tls' : 'good', `victim ${c.type}`]));

      if (c.type === 'HTTP' || c.type === 'HTTPS') {
        // An HTTP(S) check is a request for urlPath (over TLS for HTTPS: the victim speaks nothing else).
        // HAProxy counts a server UP before its first check, so ONLINE alone does not prove one ran.
        await waitFor(async () => (await victim.healthLog()).some((r) => r.method === 'GET' && r.url === '/healthz'), {
          timeoutMs: 5_000,
          message: `a GET /healthz check to reach the ${c.type} victim`,
        });
      }

      await c.breakIt({ host: victimHost, server: victim });
      await env.waitForOperating({ [`Member/${lb}-victim`]: 'ERROR', [`Member/${lb}-good`]: 'ONLINE', [`Pool/${lb}-p`]: 'DEGRADED' });
      expect(tally(await httpGetMany(client, url, 6, { curlArgs }))).toEqual({ [tls ? 'good tls' : 'good']: 6 });
    });
  });

  it('a new member takes maxRetriesDown failed checks in a row to go down, from the first check on (issue 20)', async () => {
    // HAProxy alone starts a checked server "up, but down at the first failure": one check lost while a node
    // starts hundreds of load balancers would take a healthy member out. nslb starts it fully up instead.
    const vip = env.vip(14);
    const sick = await env.host('sick', 36);
    const server = await env.server(sick, { port: 8080, name: 'sick', healthStatus: 503 });
    await env.apply('first.yaml', [
      loadBalancer('first', { vip: { address: vip } }),
      listener('first-l', { loadBalancer: 'first', protocol: 'HTTP', port: 80, defaultPool: 'first-p' }),
      pool('first-p', { loadBalancer: 'first', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('first-m', { pool: 'first-p', address: sick.address, port: 8080 }),
      healthMonitor('first-hm', {
        pool: 'first-p',
        type: 'HTTP',
        delay: 2,
        timeout: 1,
        maxRetries: 2,
        maxRetriesDown: 3,
        urlPath: '/healthz',
        expectedCodes: '200',
      }),
    ]);
    await env.waitForActive(['LoadBalancer/first']);
    const socket = join(env.lbDir('first'), 'haproxy.sock');
    // `show servers state` fields: … srv_op_state (6th), … srv_check_status (11th), srv_check_result, srv_check_health (13th).
    const state = async (): Promise<{ op: number; status: number; health: number }> => {
      const line = (await queryRuntime(socket, 'show servers state pool.first-p', 1_000)).split('\n').find((l) => l.includes(' first-m '));
      const f = (line ?? '').split(' ');
      return { op: Number(f[5]), status: Number(f[10]), health: Number(f[12]) };
    };
    let first = await state();
    await waitFor(
      async () => {
        first = await state();
        return Number.isInteger(first.status) && first.status !== 1; // no longer "initializing": the first check has a result
      },
      { timeoutMs: 10_000, intervalMs: 20, message: 'the first check' },
    );
    expect(first, 'after one failed check: still up (running), health rise + fall - 2').toMatchObject({ op: 2, health: 3 });
    await waitFor(async () => (await state()).op === 0, { timeoutMs: 20_000, intervalMs: 100, message: 'the member to go down' });
    expect((await server.healthLog()).filter((r) => r.url === '/healthz').length).toBeGreaterThanOrEqual(3);
  });

  it('an HTTP monitor fails on a wrong status code or a wrong path, and passes on the right ones', async () => {
    const vip = env.vip(10);
    const checks = [
      { name: 'ok', urlPath: '/healthz?wrong=ok', expectedCodes: '200', status: 'ONLINE' },
      { name: 'code', urlPath: '/healthz?wrong=code', expectedCodes: '202', status: 'ERROR' },
      { name: 'path', urlPath: '/__missing/healthz', expectedCodes: '200', status: 'ERROR' },
    ] as const;
    await env.apply('wrong.yaml', [
      loadBalancer('wrong', { vip: { address: vip } }),
      ...checks.flatMap((c, i): ApiDoc[] => [
        listener(`wrong-${c.name}-l`, { loadBalancer: 'wrong', protocol: 'HTTP', port: 8001 + i, defaultPool: `wrong-${c.name}` }),
        pool(`wrong-${c.name}`, { loadBalancer: 'wrong', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
        member(`wrong-${c.name}-m`, { pool: `wrong-${c.name}`, address: good.address, port: 8080 }),
        healthMonitor(`wrong-${c.name}-hm`, { pool: `wrong-${c.name}`, type: 'HTTP', ...FAST_MONITOR, urlPath: c.urlPath, expectedCodes: c.expectedCodes }),
      ]),
    ]);
    const expected = Object.fromEntries(checks.map((c) => [`Member/wrong-${c.name}-m`, c.status]));
    await env.waitForOperating(expected);
    // ONLINE holds from before the first check: make sure the passing monitor has really checked, then look again.
    await waitFor(async () => (await goodServer.healthLog()).some((r) => r.url === '/healthz?wrong=ok'), {
      timeoutMs: 5_000,
      message: 'the passing monitor to check the member',
    });
    await sleep(STATUS_SETTLE_MS);
    await env.waitForOperating(expected, 1_000);
    // A pool whose only member fails its monitor has nothing to send traffic to.
    expect((await httpGet(client, `http://${vip}:8001/`)).body).toBe('good\n');
    expect((await httpGet(client, `http://${vip}:8002/`)).status).toBe(503);
    expect((await httpGet(client, `http://${vip}:8003/`)).status).toBe(503);
  });

  it('monitorPort: checks go to the monitor port, traffic to the member port', async () => {
    const vip = env.vip(11);
    const mp = await env.host('mp', 30);
    const checked = await env.server(mp, { port: 8080, name: 'mp 8080' });
    await env.server(mp, { port: 8081, name: 'mp 8081' });
    await env.apply('mport.yaml', [
      loadBalancer('mport', { vip: { address: vip } }),
      listener('mport-l', { loadBalancer: 'mport', protocol: 'HTTP', port: 80, defaultPool: 'mport-p' }),
      pool('mport-p', { loadBalancer: 'mport', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      // Traffic port open, monitor port closed.
      member('mport-a', { pool: 'mport-p', address: mp.address, port: 8080, monitorPort: 8099 }),
      // Traffic to 8081, checks to 8080.
      member('mport-b', { pool: 'mport-p', address: mp.address, port: 8081, monitorPort: 8080 }),
      healthMonitor('mport-hm', { pool: 'mport-p', type: 'HTTP', ...FAST_MONITOR, urlPath: '/healthz' }),
    ]);
    await env.waitForOperating({ 'Member/mport-a': 'ERROR', 'Member/mport-b': 'ONLINE' });
    expect(tally(await httpGetMany(client, `http://${vip}/`, 6))).toEqual({ 'mp 8081': 6 });
    // Failing the health endpoint of 8080 takes down the member that *serves* on 8081.
    await checked.setHealthy(false);
    await env.waitForOperating({ 'Member/mport-b': 'ERROR', 'Pool/mport-p': 'ERROR' });
    expect((await httpGet(client, `http://${vip}/`)).status).toBe(503);
    await checked.setHealthy(true);
    await env.waitForOperating({ 'Member/mport-b': 'ONLINE', 'Member/mport-a': 'ERROR' });
  });

  it('a backup member serves only when every primary is down', async () => {
    const vip = env.vip(12);
    const [p1, p2, b] = [await env.host('p1', 31), await env.host('p2', 32), await env.host('b', 33)];
    const primary1 = await env.server(p1, { port: 8080, name: 'primary 1' });
    const primary2 = await env.server(p2, { port: 8080, name: 'primary 2' });
    await env.server(b, { port: 8080, name: 'backup' });
    await env.apply('backup.yaml', [
      loadBalancer('bk', { vip: { address: vip } }),
      listener('bk-l', { loadBalancer: 'bk', protocol: 'HTTP', port: 80, defaultPool: 'bk-p' }),
      pool('bk-p', { loadBalancer: 'bk', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('bk-p1', { pool: 'bk-p', address: p1.address, port: 8080 }),
      member('bk-p2', { pool: 'bk-p', address: p2.address, port: 8080 }),
      member('bk-b', { pool: 'bk-p', address: b.address, port: 8080, backup: true }),
      healthMonitor('bk-hm', { pool: 'bk-p', type: 'HTTP', ...FAST_MONITOR, urlPath: '/healthz' }),
    ]);
    const url = `http://${vip}/`;
    await env.waitForOperating({ 'Member/bk-p1': 'ONLINE', 'Member/bk-p2': 'ONLINE', 'Member/bk-b': 'ONLINE' });
    await env.waitForResponse(client, url, ['LoadBalancer/bk']);
    expect(tally(await httpGetMany(client, url, 10))).toEqual({ 'primary 1': 5, 'primary 2': 5 });

    await primary1.setHealthy(false);
    await env.waitForOperating({ 'Member/bk-p1': 'ERROR' });
    expect(tally(await httpGetMany(client, url, 6))).toEqual({ 'primary 2': 6 });

    await primary2.setHealthy(false);
    await env.waitForOperating({ 'Member/bk-p1': 'ERROR', 'Member/bk-p2': 'ERROR' });
    expect(tally(await httpGetMany(client, url, 6))).toEqual({ backup: 6 });

    await primary1.setHealthy(true);
    await env.waitForOperating({ 'Member/bk-p1': 'ONLINE' });
    expect(tally(await httpGetMany(client, url, 6))).toEqual({ 'primary 1': 6 });
  });

  it('weight 0 drains: DRAINING, no new connections, an existing connection keeps being served', async () => {
    const vip = env.vip(13);
    const [d1, d2] = [await env.host('d1', 34), await env.host('d2', 35)];
    await env.server(d1, { port: 8080, name: 'drain 1' });
    await env.server(d2, { port: 8080, name: 'drain 2' });
    const docs = (weight1: number, weight2: number): ApiDoc[] => [
      loadBalancer('dr', { vip: { address: vip } }),
      listener('dr-l', { loadBalancer: 'dr', protocol: 'TCP', port: 9000, defaultPool: 'dr-p' }),
      pool('dr-p', { loadBalancer: 'dr', protocol: 'TCP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('dr-1', { pool: 'dr-p', address: d1.address, port: 8080, weight: weight1 }),
      member('dr-2', { pool: 'dr-p', address: d2.address, port: 8080, weight: weight2 }),
    ];
    const url = `http://${vip}:9000/`;
    await env.apply('drain.yaml', docs(1, 1));
    await env.waitForResponse(client, url, ['LoadBalancer/dr', 'Listener/dr-l']);
    long = await openLongConnection(client, vip, 9000, { intervalMs: 100 });
    const pinned = long.responses()[0]!;
    const [drained, other] = pinned === 'drain 1' ? ['dr-1', 'drain 2'] : ['dr-2', 'drain 1'];

    await env.apply('drain.yaml', drained === 'dr-1' ? docs(0, 1) : docs(1, 0));
    await env.waitForOperating({ [`Member/${drained}`]: 'DRAINING' });
    expect(tally(await httpGetMany(client, url, 8))).toEqual({ [other]: 8 });

    const before = long.responses().length;
    await waitFor(() => long!.responses().length >= before + 5 || long!.closed(), { timeoutMs: 5_000, message: 'the drained connection to keep answering' });
    expect(long.closed(), `errors: ${long.errors().join('; ')}`).toBe(false);
    expect(new Set(long.responses())).toEqual(new Set([pinned]));
    await long.close();
    long = undefined;
  });
});
