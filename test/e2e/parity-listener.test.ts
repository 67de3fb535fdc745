// Issue 3, acceptance 7: allowedCidrs admits one client and refuses another, and an update takes effect;
// insertHeaders reach the member; connectionLimit caps concurrent connections; timeouts take effect.
// (X-Forwarded-Proto "https" is proven on a TERMINATED_HTTPS listener in parity-tls.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, rawExchange, waitFor, type EchoReply, type Host, type HttpResponse, type HttpServerHandle } from './harness.js';
import { ParityEnv, listener, loadBalancer, member, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(7);

describe('parity: listener access, headers, limits and timeouts', () => {
  let m1: Host, ca: Host, cb: Host;
  let s1: HttpServerHandle;

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    ca = await env.host('ca', 100);
    cb = await env.host('cb', 101);
    s1 = await env.server(m1, { port: 8080, name: 'member m1' });
  });

  afterAll(() => env.cleanup());

  /** A load balancer with one listener per entry, each with its own pool holding the member m1:8080. */
  function lbWith(lb: string, vip: string, listeners: { name: string; spec: Record<string, unknown>; memberAddress?: string }[]): ApiDoc[] {
    return [
      loadBalancer(lb, { vip: { address: vip } }),
      ...listeners.flatMap((l) => {
        const protocol = l.spec.protocol === 'TCP' ? 'TCP' : 'HTTP';
        return [
          listener(l.name, { loadBalancer: lb, defaultPool: `${l.name}-p`, ...l.spec }),
          pool(`${l.name}-p`, { loadBalancer: lb, protocol, lbAlgorithm: 'ROUND_ROBIN' }),
          member(`${l.name}-m`, { pool: `${l.name}-p`, address: l.memberAddress ?? m1.address, port: 8080 }),
        ];
      }),
    ];
  }

  const refused = (r: HttpResponse): boolean => r.status !== 200 && !r.body.includes('member m1');

  it('adminStateUp false on a listener, a pool or the load balancer behaves and reports as Octavia (OFFLINE)', async () => {
    const vip = env.vip(5);
    const url = `http://${vip}/`;
    const apply = (lbUp: boolean, listenerUp: boolean, poolUp: boolean): Promise<void> => {
      const docs = lbWith('adm', vip, [{ name: 'adm-l', spec: { protocol: 'HTTP', port: 80, adminStateUp: listenerUp } }]);
      for (const d of docs) {
        if (d.kind === 'LoadBalancer') (d.spec as Record<string, unknown>).adminStateUp = lbUp;
        if (d.kind === 'Pool') (d.spec as Record<string, unknown>).adminStateUp = poolUp;
      }
      return env.apply('adm.yaml', docs);
    };
    const noAnswer = async (): Promise<boolean> => (await httpGet(ca, url, { timeoutMs: 1500 })).status === 0;

    await apply(true, true, true);
    await env.waitForResponse(ca, url, ['LoadBalancer/adm', 'Listener/adm-l'], { body: 'member m1' });
    await env.waitForOperating({ 'LoadBalancer/adm': 'ONLINE', 'Listener/adm-l': 'ONLINE', 'Pool/adm-l-p': 'ONLINE' });

    await apply(true, false, true); // listener down: the port stops answering
    await waitFor(noAnswer, { timeoutMs: 10_000, message: 'admin-down listener still answered' });
    await env.waitForOperating({ 'Listener/adm-l': 'OFFLINE' });

    await apply(true, true, false); // pool down: the listener answers, with no server to send to
    await env.waitForResponse(ca, url, ['Listener/adm-l'], { status: 503 });
    await env.waitForOperating({ 'Pool/adm-l-p': 'OFFLINE', 'Listener/adm-l': 'ONLINE' });

    await apply(false, true, true); // load balancer down: nothing answers, everything under it reads OFFLINE
    await waitFor(noAnswer, { timeoutMs: 10_000, message: 'admin-down load balancer still answered' });
    await env.waitForOperating({ 'LoadBalancer/adm': 'OFFLINE', 'Listener/adm-l': 'OFFLINE' });

    await apply(true, true, true);
    await env.waitForResponse(ca, url, ['LoadBalancer/adm'], { body: 'member m1' });
    await env.waitForOperating({ 'LoadBalancer/adm': 'ONLINE', 'Listener/adm-l': 'ONLINE', 'Pool/adm-l-p': 'ONLINE' });
  });

  it('allowedCidrs admits one client and refuses the other; updates take effect', async () => {
    const vip = env.vip(1);
    const url = `http://${vip}/`;
    const apply = (cidrs: string[]) =>
      env.apply('acl.yaml', lbWith('acl', vip, [{ name: 'acl-l', spec: { protocol: 'HTTP', port: 80, allowedCidrs: cidrs } }]));
    const keys = ['LoadBalancer/acl', 'Listener/acl-l'];

    await apply([`${ca.address}/32`]);
    await env.waitForResponse(ca, url, keys, { body: 'member m1' });
    const b1 = await httpGet(cb, url, { timeoutMs: 2000 });
    expect(refused(b1), `client b got ${b1.status} ${b1.body}`).toBe(true);

    await apply([`${cb.address}/32`]);
    await env.waitForResponse(cb, url, keys, { body: 'member m1' });
    const a2 = await httpGet(ca, url, { timeoutMs: 2000 });
    expect(refused(a2), `client a got ${a2.status} ${a2.body}`).toBe(true);

    // A prefix admits every address in it.
    await apply([`${env.run.subnet}.96/30`]); // .96–.99: neither client (.100, .101)
    await waitFor(async () => refused(await httpGet(cb, url, { timeoutMs: 2000 })), { timeoutMs: 10_000, message: 'client b to be refused' });
    expect(refused(await httpGet(ca, url, { timeoutMs: 2000 }))).toBe(true);
    await apply([`${env.run.subnet}.100/31`]); // .100 and .101
    await env.waitForResponse(ca, url, keys, { body: 'member m1' });
    expect((await httpGet(cb, url)).body).toBe('member m1\n');
  });

  it('insertHeaders: the member sees X-Forwarded-For/Port/Proto; without them it sees none', async () => {
    const vip = env.vip(2);
    await env.apply(
      'hdr.yaml',
      lbWith('hdr', vip, [
        {
          name: 'hdr-on',
          spec: { protocol: 'HTTP', port: 8088, insertHeaders: { 'X-Forwarded-For': true, 'X-Forwarded-Port': true, 'X-Forwarded-Proto': true } },
        },
        { name: 'hdr-off', spec: { protocol: 'HTTP', port: 80 } },
      ]),
    );
    const keys = ['LoadBalancer/hdr', 'Listener/hdr-on', 'Listener/hdr-off'];
    const on = JSON.parse((await env.waitForResponse(ca, `http://${vip}:8088/__echo`, keys)).body) as EchoReply;
    expect(on.headers).toMatchObject({ 'x-forwarded-for': ca.address, 'x-forwarded-port': '8088', 'x-forwarded-proto': 'http' });
    const off = JSON.parse((await env.waitForResponse(ca, `http://${vip}/__echo`, keys)).body) as EchoReply;
    expect(Object.keys(off.headers).filter((h) => h.startsWith('x-forwarded-'))).toEqual([]);
  });

  it('connectionLimit: with N connections held the next one gets no answer, and is served once they end', async () => {
    const vip = env.vip(3);
    const url = `http://${vip}/`;
    await env.apply('cap.yaml', lbWith('cap', vip, [{ name: 'cap-l', spec: { protocol: 'HTTP', port: 80, connectionLimit: 2 } }]));
    await env.waitForResponse(ca, url, ['LoadBalancer/cap', 'Listener/cap-l'], { body: 'member m1' });

    const held = [1, 2].map(() => httpGet(ca, `${url}__slow?ms=4000`, { timeoutMs: 15_000 }).then((r) => ({ r, at: Date.now() })));
    await waitFor(async () => (await s1.inflight()) === 2, { timeoutMs: 3_000, message: 'both slow requests to reach the member' });
    // HAProxy stops accepting at the limit: the kernel completes the handshake, the request waits unanswered.
    const [third, degraded] = await Promise.all([
      httpGet(cb, url, { timeoutMs: 1_500 }),
      env.waitForOperating({ 'Listener/cap-l': 'DEGRADED' }, 2_000).then(
        () => 'DEGRADED',
        (e: Error) => e.message,
      ),
    ]);
    expect(third.status, `a third connection was answered: ${third.body}`).toBe(0);
    const queued = httpGet(cb, url, { timeoutMs: 15_000 }).then((r) => ({ r, at: Date.now() }));
    const done = await Promise.all(held);
    for (const { r } of done) expect(r).toMatchObject({ status: 200, body: 'member m1\n' });
    const late = await queued;
    expect(late.r).toMatchObject({ status: 200, body: 'member m1\n' });
    expect(late.at).toBeGreaterThanOrEqual(Math.min(...done.map((d) => d.at)) - 50);
    // A full listener reports DEGRADED (DESIGN §1: FULL is DEGRADED).
    expect(degraded).toBe('DEGRADED');
  });

  it('timeouts: memberData cuts a slow member (504), clientData closes an idle client, memberConnect gives up early', async () => {
    const vip = env.vip(4);
    const unreachable = env.run.ip(199); // no host has it: connects hang until the timeout
    await env.apply(
      'tmo.yaml',
      lbWith('tmo', vip, [
        { name: 'tmo-data', spec: { protocol: 'HTTP', port: 80, timeouts: { memberData: 1000 } } },
        { name: 'tmo-idle', spec: { protocol: 'TCP', port: 9000, timeouts: { clientData: 1000 } } },
        { name: 'tmo-dflt', spec: { protocol: 'TCP', port: 9001 } },
        { name: 'tmo-conn', spec: { protocol: 'HTTP', port: 81, timeouts: { memberConnect: 500 } }, memberAddress: unreachable },
      ]),
    );
    const keys = ['LoadBalancer/tmo', 'Listener/tmo-data', 'Listener/tmo-idle', 'Listener/tmo-conn'];
    await env.waitForResponse(ca, `http://${vip}/`, keys, { body: 'member m1' });
    await env.waitForResponse(ca, `http://${vip}:9000/`, keys, { body: 'member m1' });

    expect((await httpGet(ca, `http://${vip}/__slow?ms=2500`, { timeoutMs: 8_000 })).status).toBe(504);
    expect(await httpGet(ca, `http://${vip}/__slow?ms=200`)).toMatchObject({ status: 200, body: 'member m1\n' });

    // An idle client: closed after about clientData on tmo-idle, kept open on the default listener.
    const [idle, kept] = await Promise.all([rawExchange(ca, vip, 9000, { waitMs: 4_000 }), rawExchange(ca, vip, 9001, { waitMs: 2_500 })]);
    expect(idle).toMatchObject({ connected: true, closed: true });
    expect(idle.closedAfterMs).toBeGreaterThanOrEqual(900);
    expect(idle.closedAfterMs).toBeLessThan(3_000);
    expect(kept).toMatchObject({ connected: true, closed: false });

    // Four attempts (retries) of 500 ms each; without the timeout each would wait for ARP to give up (~3 s).
    const started = Date.now();
    const r = await httpGet(ca, `http://${vip}:81/`, { timeoutMs: 15_000 });
    const elapsed = Date.now() - started;
    expect(r.status).toBe(503);
    expect(elapsed).toBeLessThan(4_000);
  });
});
