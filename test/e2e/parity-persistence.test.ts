// Issue 3, acceptance 3 and 4: each session persistence type keeps a client on one member across requests
// (without persistence requests spread); LEAST_CONNECTIONS sends a new request to the member with fewer open
// connections; the SOURCE_IP algorithm keeps one source on one member.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, httpGetMany, waitFor, type Host, type HttpServerHandle } from './harness.js';
import { ParityEnv, listener, loadBalancer, member, pool, tally, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(5);
const COOKIE = 'APPSESSION';

describe('parity: session persistence and balancing algorithms', () => {
  let m1: Host, m2: Host, c1: Host, c2: Host;
  let s1: HttpServerHandle, s2: HttpServerHandle;

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    c1 = await env.host('c1', 100);
    c2 = await env.host('c2', 101);
    s1 = await env.server(m1, { port: 8080, name: 'member m1' });
    s2 = await env.server(m2, { port: 8080, name: 'member m2' });
    // Application servers that set their own session cookie, as APP_COOKIE persistence follows.
    await env.server(m1, { port: 8081, name: 'app m1', setCookie: `${COOKIE}=sess-m1` });
    await env.server(m2, { port: 8081, name: 'app m2', setCookie: `${COOKIE}=sess-m2` });
  });

  afterAll(() => env.cleanup());

  /** One HTTP load balancer on VIP i whose pool has a member on m1 and one on m2. */
  async function httpLb(name: string, i: number, poolSpec: Record<string, unknown>, port = 8080): Promise<string> {
    const vip = env.vip(i);
    const docs: ApiDoc[] = [
      loadBalancer(name, { vip: { address: vip } }),
      listener(`${name}-l`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` }),
      pool(`${name}-p`, { loadBalancer: name, protocol: 'HTTP', ...poolSpec }),
      member(`${name}-m1`, { pool: `${name}-p`, address: m1.address, port }),
      member(`${name}-m2`, { pool: `${name}-p`, address: m2.address, port }),
    ];
    await env.apply(`${name}.yaml`, docs);
    await env.waitForResponse(c1, `http://${vip}/`, [`LoadBalancer/${name}`, `Listener/${name}-l`, `Pool/${name}-p`]);
    await env.waitForActive(docs.map((d) => `${d.kind}/${d.name}`));
    return `http://${vip}/`;
  }

  it('without persistence, requests from one client spread over both members', async () => {
    const url = await httpLb('none', 1, { lbAlgorithm: 'ROUND_ROBIN' });
    expect(tally(await httpGetMany(c1, url, 10))).toEqual({ 'member m1': 5, 'member m2': 5 });
  });

  it('SOURCE_IP persistence keeps each client on one member', async () => {
    const url = await httpLb('psrc', 2, { lbAlgorithm: 'ROUND_ROBIN', sessionPersistence: { type: 'SOURCE_IP' } });
    for (const client of [c1, c2]) {
      const bodies = await httpGetMany(client, url, 10);
      expect(new Set(bodies).size, `${client.name}: ${JSON.stringify(tally(bodies))}`).toBe(1);
    }
  });

  it('HTTP_COOKIE persistence keeps a client with its cookie jar on one member; a fresh jar may land elsewhere', async () => {
    const url = await httpLb('pcook', 3, { lbAlgorithm: 'ROUND_ROBIN', sessionPersistence: { type: 'HTTP_COOKIE' } });
    const jar = (n: number): string[] => {
      const file = join(env.root, `jar-${n}.txt`);
      return ['-b', file, '-c', file];
    };
    // Two sessions started back to back: round robin gives them different members, the cookie keeps them.
    const first = await httpGet(c1, url, { curlArgs: jar(1) });
    const second = await httpGet(c1, url, { curlArgs: jar(2) });
    expect([first.body, second.body].sort()).toEqual(['member m1\n', 'member m2\n']);
    for (const [n, expected] of [
      [1, first.body.trim()],
      [2, second.body.trim()],
    ] as const) {
      const bodies = await httpGetMany(c1, url, 8, { curlArgs: jar(n) });
      expect(tally(bodies), `session ${n}`).toEqual({ [expected]: 8 });
    }
    // Without the jar the same client spreads again.
    expect(new Set(await httpGetMany(c1, url, 4)).size).toBe(2);
  });

  it(`APP_COOKIE persistence follows the application's ${COOKIE} cookie`, async () => {
    const url = await httpLb('papp', 4, { lbAlgorithm: 'ROUND_ROBIN', sessionPersistence: { type: 'APP_COOKIE', cookieName: COOKIE } }, 8081);
    // The two members set their own cookies on the first responses; the load balancer learns them.
    const learned = new Map<string, string>();
    await waitFor(
      async () => {
        const r = await httpGet(c1, url);
        const cookie = /APPSESSION=([A-Za-z0-9-]+)/.exec(r.headers['set-cookie']?.[0] ?? '')?.[1];
        if (r.status === 200 && cookie !== undefined) learned.set(r.body.trim(), cookie);
        return learned.size === 2;
      },
      { timeoutMs: 5_000, message: 'both members to set their session cookie' },
    );
    expect(Object.fromEntries(learned)).toEqual({ 'app m1': 'sess-m1', 'app m2': 'sess-m2' });
    for (const [server, session] of learned) {
      const bodies = await httpGetMany(c1, url, 8, { headers: { Cookie: `${COOKIE}=${session}` } });
      expect(tally(bodies), `requests carrying ${COOKIE}=${session}`).toEqual({ [server]: 8 });
    }
    // Requests without the cookie are not pinned.
    expect(new Set(await httpGetMany(c1, url, 4)).size).toBe(2);
  });

  it('LEAST_CONNECTIONS sends new requests to the member with fewer open connections', async () => {
    const url = await httpLb('lc', 5, { lbAlgorithm: 'LEAST_CONNECTIONS' });
    // Hold one slow request on one member: the other then has fewer connections for every quick request.
    const held = httpGet(c1, `${url}__slow?ms=3000`, { timeoutMs: 15_000 });
    const busy = await waitFor(
      async () => {
        const [a, b] = [await s1.inflight(), await s2.inflight()];
        return a + b === 1 ? (a === 1 ? 'member m1' : 'member m2') : undefined;
      },
      { timeoutMs: 5_000, message: 'the slow request to reach a member' },
    );
    const idle = busy === 'member m1' ? 'member m2' : 'member m1';
    const quick = await httpGetMany(c2, url, 6);
    expect(tally(quick), `with a request held on ${busy}`).toEqual({ [idle]: 6 });
    const slow = await held;
    expect(slow).toMatchObject({ status: 200, body: `${busy}\n` });
    // Nothing held: both members are used again.
    expect(new Set(await httpGetMany(c2, url, 4)).size).toBe(2);
  });

  it('the SOURCE_IP algorithm keeps each source on one member', async () => {
    const url = await httpLb('alg', 6, { lbAlgorithm: 'SOURCE_IP' });
    for (const client of [c1, c2]) {
      const bodies = await httpGetMany(client, url, 10);
      expect(new Set(bodies).size, `${client.name}: ${JSON.stringify(tally(bodies))}`).toBe(1);
    }
  });
});
