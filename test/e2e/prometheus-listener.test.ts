// Issue 21 acceptance 4, through the agent (file-watch mode): a PROMETHEUS listener answers a scrape with HAProxy's
// metrics for its own load balancer's frontends and backends (and nothing of another load balancer), and refuses
// a client outside allowedCidrs.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/prometheus-listener.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, waitFor, type Host } from './harness.js';
import { listener, loadBalancer, member, ParityEnv, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(25);
let allowed: Host;
let outsider: Host;
let m1: Host;

function lb(name: string, vip: number, withMetrics: boolean): ApiDoc[] {
  return [
    loadBalancer(name, { vip: { address: env.vip(vip), prefixLength: 24 } }),
    listener(`${name}-http`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-web` }),
    pool(`${name}-web`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    member(`${name}-m1`, { pool: `${name}-web`, address: m1.address, port: 8080 }),
    ...(withMetrics ? [listener(`${name}-metrics`, { loadBalancer: name, protocol: 'PROMETHEUS', port: 9100, allowedCidrs: [`${allowed.address}/32`] })] : []),
  ];
}

describe('PROMETHEUS listener through the agent (issue 21 acceptance 4)', () => {
  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    allowed = await env.host('c', 100);
    outsider = await env.host('x', 101);
    await env.server(m1, { port: 8080, name: 'member m1' });
    await env.apply('a.yaml', lb('a', 1, true));
    await env.apply('b.yaml', lb('b', 2, false));
    await env.waitForResponse(allowed, `http://${env.vip(1)}/`, ['LoadBalancer/a', 'Listener/a-metrics']);
    await env.waitForResponse(allowed, `http://${env.vip(2)}/`, ['LoadBalancer/b']);
  }, 60_000);

  afterAll(async () => {
    await env.cleanup();
  });

  it('answers a scrape with the metrics of its own frontends, backends and servers, and is ONLINE', async () => {
    await env.waitForOperating({ 'Listener/a-metrics': 'ONLINE', 'LoadBalancer/a': 'ONLINE' });
    // Some traffic first, so that counters have moved.
    for (let i = 0; i < 3; i++) expect((await httpGet(allowed, `http://${env.vip(1)}/`)).status).toBe(200);
    const scrape = await waitFor(
      async () => {
        const r = await httpGet(allowed, `http://${env.vip(1)}:9100/metrics`);
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 10_000, message: 'scrape answered' },
    );
    expect(scrape.headers['content-type']?.[0]).toMatch(/^text\/plain/);
    expect(scrape.body).toMatch(/^haproxy_frontend_http_requests_total\{proxy="listener\.a-http"\} [1-9]/m);
    expect(scrape.body).toMatch(/^haproxy_backend_status\{proxy="pool\.a-web",state="UP"\} 1/m);
    expect(scrape.body).toMatch(/^haproxy_server_status\{proxy="pool\.a-web",server="a-m1",state="UP"\} 1/m);
    // Its own load balancer only: b's HAProxy is another process.
    expect(scrape.body).not.toContain('b-web');
    // Only /metrics is served.
    expect((await httpGet(allowed, `http://${env.vip(1)}:9100/`)).status).toBe(404);
  });

  it('refuses a client outside allowedCidrs (no HTTP answer at all)', async () => {
    const r = await httpGet(outsider, `http://${env.vip(1)}:9100/metrics`, { timeoutMs: 2_000 });
    expect(r.status).toBe(0);
    // The same client reaches the HTTP listener, which has no allowedCidrs.
    expect((await httpGet(outsider, `http://${env.vip(1)}/`)).status).toBe(200);
  });
});
