// Issue 3, acceptance 8: L7 policies and rules route, reject and redirect by host, path, header and cookie,
// with invert and AND, in position order; an HTTP monitor's expectedCodes and method decide ONLINE vs ERROR;
// `nslb status` shows policies and rules in the tree.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, waitFor, type HealthCheckRecord, type Host, type HttpGetOptions, type HttpServerHandle } from './harness.js';
import {
  FAST_MONITOR,
  ParityEnv,
  STATUS_SETTLE_MS,
  healthMonitor,
  l7Policy,
  l7Rule,
  listener,
  loadBalancer,
  member,
  pool,
  sleep,
  type ApiDoc,
} from './parity-env.js';

const env = ParityEnv.create(8);

describe('parity: L7 policies and rules; HTTP monitor codes and methods', () => {
  let m1: Host, m2: Host, m3: Host, client: Host;

  beforeAll(async () => {
    await env.start();
    const hosts = await env.membersAndClient(3);
    [m1, m2, m3] = hosts.members as [Host, Host, Host];
    client = hosts.client;
  });

  afterAll(() => env.cleanup());

  describe('policies on one HTTP listener', () => {
    let vip: string;
    const get = (path: string, options: HttpGetOptions = {}) => httpGet(client, `http://${vip}${path}`, options);
    const body = async (path: string, options: HttpGetOptions = {}) => {
      const r = await get(path, options);
      return r.status === 200 ? r.body.trim() : `HTTP ${r.status} ${r.error ?? ''}`.trim();
    };

    /** A policy with its rules ({type, compareType, value, key?, invert?}), named `<policy>-r<i>`. */
    const policy = (name: string, spec: Record<string, unknown>, rules: Record<string, unknown>[]): ApiDoc[] => [
      l7Policy(name, { listener: 'l7-l', ...spec }),
      ...rules.map((r, i) => l7Rule(`${name}-r${i + 1}`, { l7Policy: name, ...r })),
    ];

    const base = (): ApiDoc[] => [
      loadBalancer('l7', { vip: { address: vip } }),
      listener('l7-l', { loadBalancer: 'l7', protocol: 'HTTP', port: 80, defaultPool: 'l7-default' }),
      pool('l7-default', { loadBalancer: 'l7', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      pool('l7-api', { loadBalancer: 'l7', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      pool('l7-static', { loadBalancer: 'l7', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('l7-default-m1', { pool: 'l7-default', address: m1.address, port: 8080 }),
      member('l7-api-m2', { pool: 'l7-api', address: m2.address, port: 8080 }),
      member('l7-static-m3', { pool: 'l7-static', address: m3.address, port: 8080 }),
      ...policy('by-host', { action: 'REDIRECT_TO_POOL', redirectPool: 'l7-api' }, [{ type: 'HOST_NAME', compareType: 'EQUAL_TO', value: 'api.example.test' }]),
      ...policy('by-path', { action: 'REDIRECT_TO_POOL', redirectPool: 'l7-static' }, [{ type: 'PATH', compareType: 'STARTS_WITH', value: '/static/' }]),
      ...policy('deny', { action: 'REJECT' }, [{ type: 'PATH', compareType: 'STARTS_WITH', value: '/admin' }]),
      ...policy('to-url', { action: 'REDIRECT_TO_URL', redirectUrl: 'https://www.example.test/moved', redirectHttpCode: 301 }, [
        { type: 'PATH', compareType: 'EQUAL_TO', value: '/old' },
      ]),
      ...policy('to-url-dflt', { action: 'REDIRECT_TO_URL', redirectUrl: 'https://www.example.test/two' }, [
        { type: 'PATH', compareType: 'EQUAL_TO', value: '/old2' },
      ]),
      ...policy('to-prefix', { action: 'REDIRECT_PREFIX', redirectPrefix: 'https://new.example.test', redirectHttpCode: 308 }, [
        { type: 'PATH', compareType: 'STARTS_WITH', value: '/legacy/' },
      ]),
      ...policy('by-header', { action: 'REDIRECT_TO_POOL', redirectPool: 'l7-api' }, [
        { type: 'HEADER', key: 'X-Api-Version', compareType: 'EQUAL_TO', value: '2' },
      ]),
      ...policy('by-cookie', { action: 'REDIRECT_TO_POOL', redirectPool: 'l7-static' }, [
        { type: 'COOKIE', key: 'flavor', compareType: 'EQUAL_TO', value: 'blue' },
      ]),
      // Rules are ANDed: /private is refused unless the request carries X-Trusted: yes.
      ...policy('private', { action: 'REJECT' }, [
        { type: 'PATH', compareType: 'STARTS_WITH', value: '/private' },
        { type: 'HEADER', key: 'X-Trusted', compareType: 'EQUAL_TO', value: 'yes', invert: true },
      ]),
      // Matches what no other policy matches, so that its place in the order is what decides.
      ...policy('ord-a', { action: 'REDIRECT_TO_POOL', redirectPool: 'l7-api' }, [{ type: 'PATH', compareType: 'STARTS_WITH', value: '/order' }]),
    ];
    const keys = ['LoadBalancer/l7', 'Listener/l7-l', 'L7Policy/by-host', 'L7Rule/by-host-r1', 'L7Policy/private', 'L7Rule/private-r2'];

    beforeAll(async () => {
      vip = env.vip(1);
      await env.apply('l7.yaml', base());
      await env.waitForResponse(client, `http://${vip}/`, keys, { body: 'member m1' });
      await env.waitForActive(base().map((d) => `${d.kind}/${d.name}`));
    });

    it('routes by host name and by path to different pools; the rest goes to the default pool', async () => {
      expect(await body('/')).toBe('member m1');
      expect(await body('/', { headers: { Host: 'api.example.test' } })).toBe('member m2');
      expect(await body('/', { headers: { Host: 'www.example.test' } })).toBe('member m1');
      expect(await body('/static/app.js')).toBe('member m3');
      expect(await body('/static')).toBe('member m1'); // "/static/" is the prefix
    });

    it('REJECT answers 403', async () => {
      expect((await get('/admin')).status).toBe(403);
      expect((await get('/admin/users')).status).toBe(403);
      expect(await body('/dmin')).toBe('member m1');
    });

    it('REDIRECT_TO_URL and REDIRECT_PREFIX answer with the chosen code and the exact Location', async () => {
      const url = await get('/old');
      expect(url.status).toBe(301);
      expect(url.headers.location).toEqual(['https://www.example.test/moved']);
      const dflt = await get('/old2');
      expect(dflt.status).toBe(302); // redirectHttpCode defaults to 302
      expect(dflt.headers.location).toEqual(['https://www.example.test/two']);
      const prefix = await get('/legacy/page?x=1');
      expect(prefix.status).toBe(308);
      expect(prefix.headers.location).toEqual(['https://new.example.test/legacy/page?x=1']);
    });

    it('HEADER and COOKIE rules match on the named header and cookie', async () => {
      expect(await body('/', { headers: { 'X-Api-Version': '2' } })).toBe('member m2');
      expect(await body('/', { headers: { 'X-Api-Version': '3' } })).toBe('member m1');
      expect(await body('/', { headers: { Cookie: 'flavor=blue' } })).toBe('member m3');
      expect(await body('/', { headers: { Cookie: 'other=1; flavor=blue' } })).toBe('member m3');
      expect(await body('/', { headers: { Cookie: 'flavor=red' } })).toBe('member m1');
    });

    it('invert negates a rule, and the rules of a policy are ANDed', async () => {
      expect((await get('/private')).status).toBe(403);
      expect((await get('/private', { headers: { 'X-Trusted': 'no' } })).status).toBe(403);
      expect(await body('/private', { headers: { 'X-Trusted': 'yes' } })).toBe('member m1');
      expect(await body('/public')).toBe('member m1');
    });

    it('policies apply in position order: a policy inserted at position 1 goes first, and positions can swap', async () => {
      expect(await body('/order')).toBe('member m2');
      // Named to sort after ord-a, so that only its position can put it first.
      const inserted = policy('ord-z', { action: 'REJECT', position: 1 }, [{ type: 'PATH', compareType: 'STARTS_WITH', value: '/order' }]);
      await env.apply('l7.yaml', [...base(), ...inserted]);
      await env.waitForResponse(client, `http://${vip}/order`, ['L7Policy/ord-z', 'L7Rule/ord-z-r1'], { status: 403 });
      await env.waitForActive(['L7Policy/ord-z', 'L7Rule/ord-z-r1']);
      expect(await body('/')).toBe('member m1');

      const swapped = base().map((d) => (d.kind === 'L7Policy' && d.name === 'ord-a' ? { ...d, spec: { ...d.spec, position: 1 } } : d));
      const zSecond = policy('ord-z', { action: 'REJECT', position: 2 }, [{ type: 'PATH', compareType: 'STARTS_WITH', value: '/order' }]);
      await env.apply('l7.yaml', [...swapped, ...zSecond]);
      await env.waitForResponse(client, `http://${vip}/order`, ['L7Policy/ord-a', 'L7Policy/ord-z'], { body: 'member m2' });
    });

    it('nslb status shows l7 policies and their rules in the tree, ACTIVE', async () => {
      await env.waitForActive(['L7Policy/by-host', 'L7Rule/by-host-r1', 'L7Policy/private', 'L7Rule/private-r1', 'L7Rule/private-r2']);
      const { code, stdout } = await env.statusTable();
      expect(code).toBe(0);
      expect(stdout).toMatch(/\n\s+listener l7-l\s+ACTIVE\s+ONLINE/);
      expect(stdout).toMatch(/\n\s+l7policy by-host\s+ACTIVE\s/);
      expect(stdout).toMatch(/\n\s+l7rule by-host-r1\s+ACTIVE\s/);
      expect(stdout).toMatch(/\n\s+l7policy private\s+ACTIVE\s/);
      expect(stdout).toMatch(/\n\s+l7rule private-r2\s+ACTIVE\s/);
      // Rules hang under their policy, policies under their listener.
      const lines = stdout.split('\n');
      const indent = (label: string) => {
        const line = lines.find((l) => l.trimStart().startsWith(`${label} `));
        return line === undefined ? -1 : line.length - line.trimStart().length;
      };
      expect(indent('l7policy by-host')).toBeGreaterThan(indent('listener l7-l'));
      expect(indent('l7rule by-host-r1')).toBeGreaterThan(indent('l7policy by-host'));
      expect(stdout).not.toMatch(/no load balancer/);
    });
  });

  it('an HTTP monitor: expectedCodes (single, list, range) and httpMethod decide ONLINE vs ERROR', async () => {
    const vip = env.vip(2);
    const servers = new Map<number, HttpServerHandle>();
    for (const code of [200, 204, 205]) {
      servers.set(code, await env.server(m1, { port: 8000 + code, name: `h${code}`, healthStatus: code }));
    }
    // [method, expectedCodes, {server code: expected operating status}]
    const cases: [string, string, Record<number, string>][] = [
      ['GET', '200-204', { 204: 'ONLINE', 205: 'ERROR', 200: 'ONLINE' }],
      ['HEAD', '204', { 204: 'ONLINE', 200: 'ERROR' }],
      ['POST', '200,204', { 204: 'ONLINE', 205: 'ERROR' }],
      ['PUT', '201-205', { 205: 'ONLINE', 200: 'ERROR' }],
      ['DELETE', '200', { 200: 'ONLINE', 204: 'ERROR' }],
      ['OPTIONS', '204-205', { 205: 'ONLINE', 200: 'ERROR' }],
      ['PATCH', '200-204', { 200: 'ONLINE', 205: 'ERROR' }],
      ['TRACE', '205', { 205: 'ONLINE', 204: 'ERROR' }],
    ];
    const poolName = (method: string) => `mx-${method.toLowerCase()}`;
    await env.apply('mx.yaml', [
      loadBalancer('mx', { vip: { address: vip } }),
      ...cases.flatMap(([method, expectedCodes, members], i): ApiDoc[] => [
        listener(`${poolName(method)}-l`, { loadBalancer: 'mx', protocol: 'HTTP', port: 8001 + i, defaultPool: poolName(method) }),
        pool(poolName(method), { loadBalancer: 'mx', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
        ...Object.keys(members).map((code) =>
          member(`${poolName(method)}-${code}`, { pool: poolName(method), address: m1.address, port: 8000 + Number(code) }),
        ),
        healthMonitor(`${poolName(method)}-hm`, {
          pool: poolName(method),
          type: 'HTTP',
          ...FAST_MONITOR,
          httpMethod: method,
          // The query tells the member which pool's monitor is asking.
          urlPath: `/healthz?pool=${poolName(method)}`,
          expectedCodes,
          ...(method === 'GET' ? { httpVersion: '1.1', domainName: 'health.example.test' } : {}),
        }),
      ]),
    ]);
    const expected: Record<string, string> = {};
    for (const [method, , members] of cases) {
      for (const [code, status] of Object.entries(members)) expected[`Member/${poolName(method)}-${code}`] = status;
    }
    await env.waitForOperating(expected, 25_000);

    // HAProxy counts a server UP before its first check: wait until every monitor has checked every member,
    // give the result time to reach status.json, and look again.
    const logs = new Map<number, HealthCheckRecord[]>();
    await waitFor(
      async () => {
        for (const [code, s] of servers) logs.set(code, await s.healthLog());
        return cases.every(([method, , members]) =>
          Object.keys(members).every((code) => logs.get(Number(code))!.some((r) => r.url === `/healthz?pool=${poolName(method)}`)),
        );
      },
      { timeoutMs: 5_000, message: 'every monitor to check every member' },
    );
    await sleep(STATUS_SETTLE_MS);
    await env.waitForOperating(expected, 1_000);

    // Each monitor asked with its own method (and GET with HTTP/1.1 and the domain name as Host).
    for (const [method, , members] of cases) {
      for (const code of Object.keys(members).map(Number)) {
        const seen = logs.get(code)!.filter((r) => r.url === `/healthz?pool=${poolName(method)}`);
        expect(seen.length, `${method} checks on h${code}`).toBeGreaterThan(0);
        expect(new Set(seen.map((r) => r.method)), `${method} checks on h${code}`).toEqual(new Set([method]));
        if (method === 'GET') {
          expect(
            seen.every((r) => r.httpVersion === '1.1' && r.host === 'health.example.test'),
            JSON.stringify(seen[0]),
          ).toBe(true);
        }
      }
    }
  });
});
