// The benchmark's pure parts: percentiles, wrk's summary, the "visible in traffic" criteria, the table and
// the /metrics reader. No timings are asserted here: the benchmark measures, tests only check its arithmetic.
import { describe, expect, it } from 'vitest';
import { parsePrometheusTotals } from '../../bench/lib/agent.js';
import { baselineHaproxyConfig, lbYaml } from '../../bench/lib/manifests.js';
import { parseDocuments } from '../../src/sources/parse.js';
import {
  firstSeen,
  goneFor,
  inRotation,
  ms,
  parseServersState,
  parseWrk,
  percentile,
  renderTable,
  socketErrorTotal,
  type ProbeResponse,
} from '../../bench/lib/report.js';

const WRK = `Running 10s test @ http://10.230.2.20/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.31ms  494.52us  12.70ms   85.44%
    Req/Sec     6.13k   425.71     6.80k    73.00%
  Latency Distribution
     50%    1.22ms
     75%    1.44ms
     90%    1.79ms
     99%    2.92ms
  61012 requests in 10.00s, 7.62MB read
  Socket errors: connect 1, read 10, write 2, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   6100.46
Transfer/sec:    780.14KB
`;

describe('percentile', () => {
  it('is nearest-rank over finite values', () => {
    const values = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    expect(percentile(values, 50)).toBe(5);
    expect(percentile(values, 95)).toBe(10);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([1, Infinity, 3], 50)).toBe(1);
    expect(percentile([], 50)).toBeUndefined();
  });
});

describe('parseWrk', () => {
  it('reads requests, errors by kind, non-2xx/3xx and latency', () => {
    const s = parseWrk(WRK);
    expect(s.requests).toBe(61012);
    expect(s.durationS).toBe(10);
    expect(s.socketErrors).toEqual({ connect: 1, read: 10, write: 2, timeout: 3 });
    expect(socketErrorTotal(s)).toBe(16);
    expect(s.non2xx3xx).toBe(4);
    expect(s.requestsPerSec).toBeCloseTo(6100.46);
    expect(s.latencyP50Ms).toBeCloseTo(1.22);
    expect(s.latencyP99Ms).toBeCloseTo(2.92);
  });

  it('reads the lines wrk leaves out when nothing failed as zero', () => {
    const clean = WRK.replace(/ {2}Socket errors.*\n/, '').replace(/ {2}Non-2xx.*\n/, '');
    const s = parseWrk(clean);
    expect(socketErrorTotal(s)).toBe(0);
    expect(s.non2xx3xx).toBe(0);
  });

  it('refuses what is not a wrk summary', () => {
    expect(() => parseWrk('unable to connect to 10.230.2.20:80 Connection refused')).toThrow(/not a wrk summary/);
  });
});

const r = (t: number, b: string, s = 200): ProbeResponse => ({ t0: t - 1, t, s, b });

describe('firstSeen', () => {
  it('is the first accepted response after the change', () => {
    const responses = [r(90, 'm3'), r(100, 'm1'), r(110, 'm2'), r(120, 'm3'), r(130, 'm3')];
    expect(firstSeen(responses, 95, (x) => x.b === 'm3')).toBe(25);
    expect(firstSeen(responses, 125, (x) => x.b === 'm4')).toBeUndefined();
  });
});

describe('goneFor', () => {
  const k = 3;
  const unwanted = (x: ProbeResponse) => x.b === 'm3';

  it('is the start of the final run of k responses without the member', () => {
    const responses = [r(101, 'm1'), r(102, 'm3'), r(103, 'm1'), r(104, 'm2'), r(105, 'm1'), r(106, 'm2')];
    expect(goneFor(responses, 100, k, unwanted)).toBe(3);
  });

  it('waits until the run is k long', () => {
    expect(goneFor([r(101, 'm3'), r(102, 'm1'), r(103, 'm2')], 100, k, unwanted)).toBeUndefined();
  });

  it('does not count failed requests as evidence', () => {
    const responses = [r(101, 'm3'), r(102, 'm1'), r(103, 'ECONNRESET', 0), r(104, 'm2'), r(105, 'm1')];
    expect(goneFor(responses, 100, k, unwanted)).toBeUndefined();
    expect(goneFor([...responses, r(106, 'm2')], 100, k, unwanted)).toBe(4);
  });

  it('starts over when the member answers again', () => {
    const responses = [r(101, 'm1'), r(102, 'm2'), r(103, 'm1'), r(104, 'm3'), r(105, 'm1')];
    expect(goneFor(responses, 100, k, unwanted)).toBeUndefined();
  });
});

// `show servers state pool.bench-b-pool` of HAProxy 2.6: m1 up at weight 0, m2 up, m3 added and still in
// maintenance (admin state 0x01), m4 up but draining (0x08).
const SERVERS_STATE = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 pool.bench-b-pool 1 bench-b-m1 10.230.255.11 2 0 0 1 42 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 pool.bench-b-pool 2 bench-b-m2 10.230.255.12 2 0 1 1 42 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 pool.bench-b-pool 3 bench-b-m3 10.230.255.13 0 1 1 1 0 1 0 0 6 0 0 0 - 8080 - 0 0 - - 0
3 pool.bench-b-pool 4 bench-b-m4 10.230.255.14 2 8 1 1 7 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0

`;

describe('a change in force in HAProxy (show servers state)', () => {
  it('reads each server by name, with the columns the header names', () => {
    const servers = parseServersState(SERVERS_STATE);
    expect([...servers.keys()]).toEqual(['bench-b-m1', 'bench-b-m2', 'bench-b-m3', 'bench-b-m4']);
    expect(servers.get('bench-b-m3')).toEqual({ opState: 0, adminState: 1, weight: 1 });
    expect(parseServersState('No such backend.\n').size).toBe(0);
  });

  it('is in the rotation only when up, neither in maintenance nor draining, and weighted', () => {
    const servers = parseServersState(SERVERS_STATE);
    expect(inRotation(servers.get('bench-b-m2'))).toBe(true);
    expect(inRotation(servers.get('bench-b-m1'))).toBe(false);
    expect(inRotation(servers.get('bench-b-m3'))).toBe(false);
    expect(inRotation(servers.get('bench-b-m4'))).toBe(false);
    expect(inRotation(servers.get('bench-b-m9'))).toBe(false);
  });
});

describe('table', () => {
  it('renders one markdown row per figure, escaping pipes', () => {
    const text = renderTable([{ figure: 'a|b', value: ms(1234), target: 'p50 ≤ 80 ms', verdict: 'FAIL' }]);
    expect(text).toBe('| figure | value | target | result |\n|---|---|---|---|\n| a\\|b | 1.23 s | p50 ≤ 80 ms | FAIL |\n');
  });

  it('formats durations', () => {
    expect(ms(1.22)).toBe('1.2 ms');
    expect(ms(12.4)).toBe('12 ms');
    expect(ms(12_345)).toBe('12.3 s');
    expect(ms(Infinity)).toBe('timed out');
    expect(ms(undefined)).toBe('n/a');
  });
});

describe('parsePrometheusTotals', () => {
  it('sums samples over labels by metric name', () => {
    const totals = parsePrometheusTotals(
      [
        '# HELP nslb_haproxy_reloads_total HAProxy reloads',
        '# TYPE nslb_haproxy_reloads_total counter',
        'nslb_haproxy_reloads_total{outcome="ok"} 3',
        'nslb_haproxy_reloads_total{outcome="failed"} 1',
        'nslb_processes_spawned_total{tool="ip"} 10',
        'nslb_processes_spawned_total{tool="ovs-vsctl"} 2',
        '',
      ].join('\n'),
    );
    expect(totals.get('nslb_haproxy_reloads_total')).toBe(4);
    expect(totals.get('nslb_processes_spawned_total')).toBe(12);
  });
});

describe('manifests', () => {
  it('writes one load balancer with its listener, pool, members and monitor', () => {
    const text = lbYaml({
      namespace: 'bench',
      name: 'lb-0001',
      vip: '10.230.10.2',
      prefixLength: 16,
      members: [{ name: 'm1', address: '10.230.255.11', weight: 0 }],
      clientDataTimeoutMs: 51000,
    });
    const parsed = parseDocuments('lb-0001.yaml', text);
    expect(parsed.issues).toEqual([]);
    expect(parsed.objects.map((o) => o.kind).sort()).toEqual(['HealthMonitor', 'Listener', 'LoadBalancer', 'Member', 'Pool']);
    expect(text).toContain('weight: 0');
    expect(text).toContain('timeouts: { clientData: 51000 }');
  });

  it('gives the baseline an HTTP-checked backend with both members', () => {
    const cfg = baselineHaproxyConfig({ vip: '10.231.10.1', members: ['10.231.255.11', '10.231.255.12'], socket: '/tmp/x.sock' });
    expect(cfg).toContain('bind 10.231.10.1:80');
    expect(cfg.match(/^ {4}server m\d /gm)).toHaveLength(2);
    expect(cfg).toContain('option httpchk GET /healthz');
  });
});
