// Issue 8 on the real node (plane 14): /metrics scraped from a running agent moves with what happens (member
// sessions and bytes grow with client traffic, reconciles and spawned processes grow after a change, the
// objects-by-status gauges agree with status.json), and `nslb status` shows members' traffic, filters by
// load balancer and ends `--wait` with the right exit code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusFile } from '../../src/status/status-file.js';
import { cli } from './agent.js';
import { httpGetMany, waitFor, type Host } from './harness.js';
import { FAST_MONITOR, ParityEnv, healthMonitor, listener, loadBalancer, member, pool, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(14);

/** The agent logs where it listens (it was started with --listen 127.0.0.1:0). */
async function metricsUrl(): Promise<string> {
  const listen = await waitFor(
    () => {
      for (const line of env.agent?.logs ?? []) {
        if (!line.includes('serving /healthz')) continue;
        const parsed = JSON.parse(line) as { listen?: string };
        if (parsed.listen !== undefined) return parsed.listen;
      }
      return undefined;
    },
    { timeoutMs: 20_000, message: 'the agent to log its --listen address' },
  );
  return `http://${listen}/metrics`;
}

type Samples = Map<string, number>;

async function scrape(url: string): Promise<{ text: string; samples: Samples }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    samples.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { text, samples };
}

/** Sum of every sample of a metric whose labels contain all of `labels` (`k="v"` pairs). */
function sum(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const [series, v] of samples) {
    const brace = series.indexOf('{');
    const metric = brace < 0 ? series : series.slice(0, brace);
    if (metric !== name) continue;
    if (Object.entries(labels).every(([k, val]) => series.includes(`${k}="${val}"`))) total += v;
  }
  return total;
}

describe('/metrics and nslb status on a running agent', () => {
  let m1: Host, m2: Host, client: Host;
  let url: string;
  let lbKey: string;
  const vip = (): string => env.vip(1);
  const objects = (extra: ApiDoc[] = []): ApiDoc[] => [
    loadBalancer('met', { vip: { address: vip() } }),
    listener('met-l', { loadBalancer: 'met', protocol: 'HTTP', port: 80, defaultPool: 'met-p' }),
    pool('met-p', { loadBalancer: 'met', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    healthMonitor('met-hm', { pool: 'met-p', type: 'HTTP', ...FAST_MONITOR }),
    member('met-m1', { pool: 'met-p', address: m1.address, port: 8080 }),
    member('met-m2', { pool: 'met-p', address: m2.address, port: 8080 }),
    ...extra,
  ];
  const memberLabels = (name: string) => ({ loadbalancer: lbKey, pool: 'met-p', member: name });

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'member m1' });
    await env.server(m2, { port: 8080, name: 'member m2' });
    lbKey = `${env.namespace}/met`;
    await env.apply('met.yaml', objects());
    await env.waitForResponse(client, `http://${vip()}/`, ['LoadBalancer/met', 'Listener/met-l', 'Pool/met-p']);
    await env.waitForOperating({ 'Member/met-m1': 'ONLINE', 'Member/met-m2': 'ONLINE', 'Pool/met-p': 'ONLINE' });
    url = await metricsUrl();
  });

  afterAll(() => env.cleanup());

  it('member sessions and bytes grow with client traffic; checks and up state are reported', async () => {
    const before = (await scrape(url)).samples;
    const sessionsBefore = sum(before, 'nslb_member_sessions_total', memberLabels('met-m1'));
    const m2Before = sum(before, 'nslb_member_sessions_total', memberLabels('met-m2'));
    const inBefore = sum(before, 'nslb_member_bytes_in_total', memberLabels('met-m1'));
    const outBefore = sum(before, 'nslb_member_bytes_out_total', memberLabels('met-m1'));

    // 20 new connections, round robin over two members.
    await httpGetMany(client, `http://${vip()}/`, 20);

    // Wait for all 20 to be counted (a scrape can land between the two members' counters), then check that
    // both members took their share: round robin, so about 10 each, never all on one.
    const after = await waitFor(
      async () => {
        const s = (await scrape(url)).samples;
        const grown =
          sum(s, 'nslb_member_sessions_total', memberLabels('met-m1')) -
          sessionsBefore +
          sum(s, 'nslb_member_sessions_total', memberLabels('met-m2')) -
          m2Before;
        return grown >= 20 ? s : undefined;
      },
      { timeoutMs: 15_000, message: 'nslb_member_sessions_total of met-m1 and met-m2 to grow by 20 together' },
    );
    expect(sum(after, 'nslb_member_sessions_total', memberLabels('met-m1'))).toBeGreaterThanOrEqual(sessionsBefore + 8);
    expect(sum(after, 'nslb_member_sessions_total', memberLabels('met-m2'))).toBeGreaterThanOrEqual(m2Before + 8);
    // Each request carries a request line and headers in, a body and headers out.
    expect(sum(after, 'nslb_member_bytes_in_total', memberLabels('met-m1'))).toBeGreaterThan(inBefore + 8 * 30);
    expect(sum(after, 'nslb_member_bytes_out_total', memberLabels('met-m1'))).toBeGreaterThan(outBefore + 8 * 30);
    expect(after.get(`nslb_member_current_sessions{loadbalancer="${lbKey}",pool="met-p",member="met-m1"}`)).toBeGreaterThanOrEqual(0);
    expect(sum(after, 'nslb_member_up', memberLabels('met-m1'))).toBe(1);
    expect(sum(after, 'nslb_member_check_status', { ...memberLabels('met-m1'), check_status: 'L7OK' })).toBe(1);
  });

  it('the objects-by-status gauges agree with status.json', async () => {
    await waitFor(
      async () => {
        const samples = (await scrape(url)).samples;
        const file = (await env.status()) as StatusFile;
        const counts = new Map<string, number>();
        for (const o of file.objects) {
          const p = `${o.kind}|${o.status.provisioningStatus}`;
          const op = `${o.kind}|op|${o.status.operatingStatus}`;
          counts.set(p, (counts.get(p) ?? 0) + 1);
          counts.set(op, (counts.get(op) ?? 0) + 1);
        }
        for (const kind of ['LoadBalancer', 'Listener', 'Pool', 'Member', 'HealthMonitor', 'L7Policy', 'L7Rule']) {
          for (const s of ['ACTIVE', 'PENDING_CREATE', 'PENDING_UPDATE', 'ERROR']) {
            if (sum(samples, 'nslb_objects_provisioning', { kind, provisioning_status: s }) !== (counts.get(`${kind}|${s}`) ?? 0)) return false;
          }
          for (const s of ['ONLINE', 'OFFLINE', 'DEGRADED', 'ERROR', 'NO_MONITOR', 'DRAINING']) {
            if (sum(samples, 'nslb_objects_operating', { kind, operating_status: s }) !== (counts.get(`${kind}|op|${s}`) ?? 0)) return false;
          }
        }
        return true;
      },
      { timeoutMs: 10_000, intervalMs: 300, message: 'nslb_objects_* to match status.json' },
    );
    const samples = (await scrape(url)).samples;
    expect(sum(samples, 'nslb_objects_provisioning', { kind: 'Member', provisioning_status: 'ACTIVE' })).toBe(2);
    expect(sum(samples, 'nslb_objects_operating', { kind: 'Member', operating_status: 'ONLINE' })).toBe(2);
    expect(sum(samples, 'nslb_objects_provisioning', { kind: 'LoadBalancer' })).toBe(1);
  });

  it('a change: reconciles, reconcile time and spawned processes grow; a member that HAProxy runs gets its series', async () => {
    const before = (await scrape(url)).samples;
    const okBefore = sum(before, 'nslb_reconciles_total', { result: 'ok' });
    const spawnsBefore = sum(before, 'nslb_processes_spawned_total');
    expect(okBefore).toBeGreaterThanOrEqual(1);
    expect(sum(before, 'nslb_reconcile_duration_seconds_count', { result: 'ok' })).toBe(okBefore);
    expect(spawnsBefore).toBeGreaterThan(0);
    expect(sum(before, 'nslb_workqueue_depth')).toBeGreaterThanOrEqual(0);
    expect(before.has('nslb_workqueue_retries_total')).toBe(true);
    expect(before.has('nslb_haproxy_reloads_total{result="ok"}')).toBe(true);
    expect(before.has('nslb_haproxy_runtime_updates_total')).toBe(true);

    // A second listener: a new frontend, so the running HAProxy has to take a new configuration.
    await env.apply('met.yaml', objects([listener('met-l2', { loadBalancer: 'met', protocol: 'HTTP', port: 8000, defaultPool: 'met-p' })]));
    await env.waitForActive(['Listener/met-l2']);
    await env.waitForResponse(client, `http://${vip()}:8000/`, ['Listener/met-l2']);

    const after = await waitFor(
      async () => {
        const s = (await scrape(url)).samples;
        return sum(s, 'nslb_reconciles_total', { result: 'ok' }) > okBefore ? s : undefined;
      },
      { timeoutMs: 10_000, message: 'nslb_reconciles_total{result="ok"} to grow' },
    );
    expect(sum(after, 'nslb_reconcile_duration_seconds_count', { result: 'ok' })).toBe(sum(after, 'nslb_reconciles_total', { result: 'ok' }));
    expect(sum(after, 'nslb_reconcile_duration_seconds_sum', { result: 'ok' })).toBeGreaterThan(0);
    expect(sum(after, 'nslb_processes_spawned_total')).toBeGreaterThan(spawnsBefore);
    expect(sum(after, 'nslb_objects_provisioning', { kind: 'Listener', provisioning_status: 'ACTIVE' })).toBe(2);
  });

  it('/status carries the members’ figures; nslb status shows them, filters by load balancer, and is plain when piped', async () => {
    // The change above reloaded HAProxy, whose new worker counts from zero: fresh traffic first.
    await httpGetMany(client, `http://${vip()}/`, 10);
    const m1Status = await waitFor(
      async () => {
        const status = (await (await fetch(url.replace('/metrics', '/status'))).json()) as StatusFile;
        const m = status.objects.find((o) => o.kind === 'Member' && o.name === 'met-m1');
        return (m?.stats?.totalSessions ?? 0) >= 5 ? m : undefined;
      },
      { timeoutMs: 10_000, message: '/status to show met-m1 with 5 sessions or more' },
    );
    expect(m1Status.status).not.toHaveProperty('stats');
    const fromFile = (await env.status())?.objects.find((o) => o.kind === 'Member' && o.name === 'met-m1');
    expect(fromFile?.stats).toMatchObject({ checkStatus: 'L7OK' });

    const table = await cli(['status', 'met', '--state-dir', env.stateDir]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+PROVISIONING\s+OPERATING\s+DETAIL\s+SESSIONS\s+TOTAL\s+BYTES IN\s+BYTES OUT\s+CHECK$/);
    expect(table.stdout).toMatch(/\n\s+member met-m1\s+ACTIVE\s+ONLINE\s+\S+:8080\s+\d+\s+\d+\s+\d+(\.\d)? (B|KiB)\s+\d+(\.\d)? (B|KiB)\s+L7OK\n/);
    // Not a terminal: no escape codes.
    expect(table.stdout).not.toContain('\u001b[');

    const json = await cli(['status', '--lb', `${env.namespace}/met`, '-o', 'json', '--state-dir', env.stateDir]);
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as StatusFile;
    expect(parsed.objects.find((o) => o.name === 'met-m2')?.stats?.checkStatus).toBe('L7OK');

    const unknown = await cli(['status', 'no-such-lb', '--state-dir', env.stateDir]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(`no load balancer no-such-lb in status.json (known: ${env.namespace}/met)`);
  });

  it('nslb status --wait: 0 when ACTIVE, 1 with the reason on ERROR, 1 saying what is pending on timeout', async () => {
    const ok = await cli(['status', '--wait', '--timeout', '30', '--state-dir', env.stateDir]);
    expect(ok.code, ok.stderr).toBe(0);

    // A member of a pool that does not exist: ERROR, and it hangs from no load balancer.
    await env.apply('stray.yaml', [member('met-stray', { pool: 'no-such-pool', address: m1.address, port: 8080 })]);
    await waitFor(async () => (await env.status())?.objects.some((o) => o.name === 'met-stray' && o.status.provisioningStatus === 'ERROR'), {
      timeoutMs: 10_000,
      message: 'the stray member to be ERROR',
    });
    const failed = await cli(['status', '--wait', '--timeout', '30', '--state-dir', env.stateDir]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(new RegExp(`^failed: Member ${env.namespace}/met-stray: .*no-such-pool`));
    // Filtered to the load balancer, the stray member is not in the picture.
    const filtered = await cli(['status', 'met', '--wait', '--timeout', '30', '--state-dir', env.stateDir]);
    expect(filtered.code, filtered.stderr).toBe(0);

    const timedOut = await cli(['status', `${env.namespace}/not-yet`, '--wait', '--timeout', '1', '--state-dir', env.stateDir]);
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toContain(`timed out after 1s waiting for every object to be ACTIVE: no load balancer ${env.namespace}/not-yet in status.json`);
    await env.removeWatched('stray.yaml');
  });
});
