// /metrics rendered from a fake controller state: names, HELP and TYPE lines, labels, and figures read at
// scrape time (a change in the state shows on the next scrape, nothing is cached).
import { describe, expect, it } from 'vitest';
import type { ObjectStatus } from '../../src/api/v1alpha1/types.js';
import type { StatRow } from '../../src/plan/haproxy-stats.js';
import type { KernelLimitsReport } from '../../src/controller/kernel-limits.js';
import { createAgentMetrics, type MetricsSource } from '../../src/metrics/metrics.js';
import { memberStats, withMemberStats, type LbStatsView } from '../../src/status/traffic.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { loadBalancer, member, pool } from '../support/desired-lb.js';

function status(provisioningStatus: ObjectStatus['provisioningStatus'], operatingStatus: ObjectStatus['operatingStatus']): ObjectStatus {
  return { provisioningStatus, operatingStatus, conditions: [] };
}

const web = loadBalancer({
  key: 'team-a/web',
  namespace: 'team-a',
  name: 'web',
  pools: [pool('web-p', { members: [member('m1', '10.0.0.11', 8080), member('m2', '10.0.0.12', 8080), member('m3', '10.0.0.13', 8080)] })],
});

function server(svname: string, extra: Partial<StatRow>): StatRow {
  return { pxname: 'pool.web-p', svname, type: 'server', status: 'UP', ...extra };
}

class FakeController implements MetricsSource {
  statuses = new Map<string, ObjectStatus>([
    ['LoadBalancer/team-a/web', status('ACTIVE', 'DEGRADED')],
    ['Pool/team-a/web-p', status('ACTIVE', 'DEGRADED')],
    ['Member/team-a/m1', status('ACTIVE', 'ONLINE')],
    ['Member/team-a/m2', status('ACTIVE', 'ERROR')],
    ['Member/team-a/m3', status('PENDING_CREATE', 'OFFLINE')],
  ]);
  queueStats = { depth: 2, retries: 5 };
  stats: StatRow[] = [
    { pxname: 'pool.web-p', svname: 'BACKEND', type: 'backend', status: 'UP', sessions: 9, totalSessions: 100 },
    server('m1', { sessions: 3, totalSessions: 40, bytesIn: 1000, bytesOut: 52000, checkStatus: 'L7OK', checkDescription: 'Layer7 check passed' }),
    server('m2', {
      status: 'DOWN',
      sessions: 0,
      totalSessions: 7,
      bytesIn: 70,
      bytesOut: 0,
      checkStatus: '* L4CON',
      checkDescription: 'Layer4 connection problem',
      lastCheck: 'Connection refused',
    }),
  ];
  loadBalancerStats(): LbStatsView[] {
    return [{ key: 'team-a/web', applied: web, stats: this.stats }];
  }
}

const counters = () => ({
  engine: { haproxyReloads: { ok: 3, failed: 1 }, haproxyStarts: 2, runtimeUpdates: 11, runtimeFallbacks: 0 },
  spawnsByTool: new Map([
    ['ip', 14],
    ['haproxy', 4],
  ]),
});

/** The value of one sample line (`name{labels} value`), or undefined when the line is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics from the agent state', () => {
  it('renders every nslb metric with HELP and TYPE, in Prometheus naming', async () => {
    const metrics = createAgentMetrics(new FakeController(), { processMetrics: false, counters: counters() });
    const { body, contentType } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const types = Object.fromEntries([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(types).toEqual({
      nslb_reconcile_duration_seconds: 'histogram',
      nslb_reconciles_total: 'counter',
      nslb_workqueue_depth: 'gauge',
      nslb_workqueue_retries_total: 'counter',
      nslb_objects_provisioning: 'gauge',
      nslb_objects_operating: 'gauge',
      nslb_processes_spawned_total: 'counter',
      nslb_process_seconds_total: 'counter',
      nslb_node_actions_total: 'counter',
      nslb_node_action_seconds_total: 'counter',
      nslb_node_observe_seconds_total: 'counter',
      nslb_status_publish_seconds_total: 'counter',
      nslb_haproxy_reloads_total: 'counter',
      nslb_haproxy_starts_total: 'counter',
      nslb_haproxy_runtime_updates_total: 'counter',
      nslb_haproxy_runtime_fallbacks_total: 'counter',
      nslb_member_current_sessions: 'gauge',
      nslb_member_sessions_total: 'counter',
      nslb_member_bytes_in_total: 'counter',
      nslb_member_bytes_out_total: 'counter',
      nslb_member_up: 'gauge',
      nslb_member_check_status: 'gauge',
      nslb_keepalived_up: 'gauge',
      nslb_vrrp_state: 'gauge',
      nslb_vrrp_transitions_total: 'counter',
      nslb_keepalived_starts_total: 'counter',
      nslb_keepalived_reloads_total: 'counter',
      nslb_vrrp_handovers_total: 'counter',
      nslb_vrrp_handover_connections_cut_total: 'counter',
      nslb_haproxy_health_checks_total: 'counter',
      nslb_haproxy_health_file_writes_total: 'counter',
    });
    for (const name of Object.keys(types)) expect(body).toMatch(new RegExp(`^# HELP ${name} \\S.{10,}$`, 'm'));
  });

  it('Kubernetes mode adds status writes by kind and result, the write queue and its oldest wait, and Event writes', async () => {
    const metrics = createAgentMetrics(new FakeController(), { processMetrics: false, counters: counters() });
    const writes: [{ kind: string; result: string }, number][] = [
      [{ kind: 'Member', result: 'ok' }, 7],
      [{ kind: 'Member', result: 'conflict' }, 1],
    ];
    let queue = { depth: 3, oldestSeconds: 1.5 };
    metrics.addKubernetes({
      statusWrites: () => writes,
      statusQueue: () => queue,
      events: () => ({
        writes: [
          ['created', 4],
          ['updated', 9],
        ],
        occurrences: 40,
      }),
    });
    let body = (await metrics.render()).body;
    const types = Object.fromEntries([...body.matchAll(/^# TYPE (nslb_kube\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(types).toEqual({
      nslb_kube_status_writes_total: 'counter',
      nslb_kube_status_queue_depth: 'gauge',
      nslb_kube_status_oldest_unwritten_seconds: 'gauge',
      nslb_kube_event_writes_total: 'counter',
      nslb_kube_event_occurrences_total: 'counter',
    });
    expect(sample(body, 'nslb_kube_status_writes_total{kind="Member",result="ok"}')).toBe(7);
    expect(sample(body, 'nslb_kube_status_writes_total{kind="Member",result="conflict"}')).toBe(1);
    expect(sample(body, 'nslb_kube_status_writes_total{kind="L7Rule",result="ok"}')).toBe(0);
    expect(sample(body, 'nslb_kube_status_queue_depth')).toBe(3);
    expect(sample(body, 'nslb_kube_status_oldest_unwritten_seconds')).toBe(1.5);
    expect(sample(body, 'nslb_kube_event_writes_total{result="updated"}')).toBe(9);
    expect(sample(body, 'nslb_kube_event_writes_total{result="failed"}')).toBe(0);
    expect(sample(body, 'nslb_kube_event_occurrences_total')).toBe(40);
    writes[0]![1] = 8;
    queue = { depth: 0, oldestSeconds: 0 };
    body = (await metrics.render()).body;
    expect(sample(body, 'nslb_kube_status_writes_total{kind="Member",result="ok"}')).toBe(8);
    expect(sample(body, 'nslb_kube_status_queue_depth')).toBe(0);
  });

  it('counts reconciles by result, with a duration histogram; both results exist before the first', async () => {
    const metrics = createAgentMetrics(new FakeController(), { processMetrics: false, counters: counters() });
    let body = (await metrics.render()).body;
    expect(sample(body, 'nslb_reconciles_total{result="error"}')).toBe(0);
    expect(sample(body, 'nslb_reconcile_duration_seconds_count{result="error"}')).toBe(0);
    metrics.observeReconcile('team-a/web', 'ok', 0.02);
    metrics.observeReconcile('team-a/web', 'ok', 3);
    metrics.observeReconcile('team-a/web', 'error', 0.2);
    body = (await metrics.render()).body;
    expect(sample(body, 'nslb_reconciles_total{result="ok"}')).toBe(2);
    expect(sample(body, 'nslb_reconciles_total{result="error"}')).toBe(1);
    expect(sample(body, 'nslb_reconcile_duration_seconds_count{result="ok"}')).toBe(2);
    expect(sample(body, 'nslb_reconcile_duration_seconds_bucket{le="0.025",result="ok"}')).toBe(1);
    expect(sample(body, 'nslb_reconcile_duration_seconds_bucket{le="5",result="ok"}')).toBe(2);
    expect(sample(body, 'nslb_reconcile_duration_seconds_sum{result="ok"}')).toBeCloseTo(3.02);
  });

  it('reads queue, objects and engine counters when scraped, not when made', async () => {
    const fake = new FakeController();
    const c = counters();
    const metrics = createAgentMetrics(fake, { processMetrics: false, counters: c });
    let body = (await metrics.render()).body;
    expect(sample(body, 'nslb_workqueue_depth')).toBe(2);
    expect(sample(body, 'nslb_workqueue_retries_total')).toBe(5);
    expect(sample(body, 'nslb_objects_provisioning{kind="Member",provisioning_status="ACTIVE"}')).toBe(2);
    expect(sample(body, 'nslb_objects_provisioning{kind="Member",provisioning_status="PENDING_CREATE"}')).toBe(1);
    // Zeros too: an alert on ERROR > 0 sees a series, not a gap.
    expect(sample(body, 'nslb_objects_provisioning{kind="Member",provisioning_status="ERROR"}')).toBe(0);
    expect(sample(body, 'nslb_objects_provisioning{kind="L7Rule",provisioning_status="ACTIVE"}')).toBe(0);
    expect(sample(body, 'nslb_objects_operating{kind="LoadBalancer",operating_status="DEGRADED"}')).toBe(1);
    expect(sample(body, 'nslb_objects_operating{kind="Member",operating_status="ERROR"}')).toBe(1);
    expect(sample(body, 'nslb_processes_spawned_total{tool="ip"}')).toBe(14);
    expect(sample(body, 'nslb_haproxy_reloads_total{result="ok"}')).toBe(3);
    expect(sample(body, 'nslb_haproxy_reloads_total{result="failed"}')).toBe(1);
    expect(sample(body, 'nslb_haproxy_starts_total')).toBe(2);
    expect(sample(body, 'nslb_haproxy_runtime_updates_total')).toBe(11);
    expect(sample(body, 'nslb_haproxy_runtime_fallbacks_total')).toBe(0);

    fake.queueStats = { depth: 0, retries: 6 };
    fake.statuses.set('Member/team-a/m3', status('ACTIVE', 'ONLINE'));
    c.spawnsByTool.set('ip', 20);
    c.spawnsByTool.set('ovs-vsctl', 1);
    c.engine.runtimeUpdates = 12;
    body = (await metrics.render()).body;
    expect(sample(body, 'nslb_workqueue_depth')).toBe(0);
    expect(sample(body, 'nslb_workqueue_retries_total')).toBe(6);
    expect(sample(body, 'nslb_objects_provisioning{kind="Member",provisioning_status="ACTIVE"}')).toBe(3);
    expect(sample(body, 'nslb_objects_provisioning{kind="Member",provisioning_status="PENDING_CREATE"}')).toBe(0);
    expect(sample(body, 'nslb_processes_spawned_total{tool="ip"}')).toBe(20);
    expect(sample(body, 'nslb_processes_spawned_total{tool="ovs-vsctl"}')).toBe(1);
    expect(sample(body, 'nslb_haproxy_runtime_updates_total')).toBe(12);
  });

  it('gives each member its HAProxy figures, labelled by load balancer, pool and member', async () => {
    const fake = new FakeController();
    const metrics = createAgentMetrics(fake, { processMetrics: false, counters: counters() });
    let body = (await metrics.render()).body;
    const m1 = '{loadbalancer="team-a/web",pool="web-p",member="m1"}';
    const m2 = '{loadbalancer="team-a/web",pool="web-p",member="m2"}';
    expect(sample(body, `nslb_member_current_sessions${m1}`)).toBe(3);
    expect(sample(body, `nslb_member_sessions_total${m1}`)).toBe(40);
    expect(sample(body, `nslb_member_bytes_in_total${m1}`)).toBe(1000);
    expect(sample(body, `nslb_member_bytes_out_total${m1}`)).toBe(52000);
    expect(sample(body, `nslb_member_up${m1}`)).toBe(1);
    expect(sample(body, `nslb_member_up${m2}`)).toBe(0);
    expect(sample(body, 'nslb_member_check_status{loadbalancer="team-a/web",pool="web-p",member="m1",check_status="L7OK"}')).toBe(1);
    // HAProxy's "* " (a check in progress) is not part of the code.
    expect(sample(body, 'nslb_member_check_status{loadbalancer="team-a/web",pool="web-p",member="m2",check_status="L4CON"}')).toBe(1);
    // m3 is not in HAProxy's stats (not running yet): no series rather than made-up zeros.
    expect(body).not.toContain('member="m3"');
    // The backend row is not a member.
    expect(body).not.toContain('member="BACKEND"');

    fake.stats = fake.stats.map((r) => (r.svname === 'm1' ? { ...r, totalSessions: 41, bytesIn: 1100 } : r));
    body = (await metrics.render()).body;
    expect(sample(body, `nslb_member_sessions_total${m1}`)).toBe(41);
    expect(sample(body, `nslb_member_bytes_in_total${m1}`)).toBe(1100);

    // HAProxy could not be asked: its members' series go away until it answers again.
    fake.stats = undefined as unknown as StatRow[];
    body = (await metrics.render()).body;
    expect(body).not.toContain('nslb_member_current_sessions{');
  });

  it('adds Node.js process metrics unless told not to', async () => {
    const metrics = createAgentMetrics(new FakeController(), { counters: counters() });
    const { body } = await metrics.render();
    expect(body).toMatch(/^process_resident_memory_bytes \d+/m);
  });
});

describe('member figures in status.json', () => {
  const fake = new FakeController();

  it('reads scur, stot, bin, bout and the last check per member', () => {
    expect(memberStats(web, fake.stats).get('web-p/m2')).toEqual({
      currentSessions: 0,
      totalSessions: 7,
      bytesIn: 70,
      bytesOut: 0,
      checkStatus: '* L4CON',
      lastCheck: 'Layer4 connection problem: Connection refused',
      state: 'DOWN',
    });
    expect(memberStats(web, fake.stats).has('web-p/m3')).toBe(false);
    expect(memberStats(web, undefined).size).toBe(0);
  });

  it("puts them beside each Member's status, not in it", () => {
    const file: StatusFile = {
      objects: [
        { apiVersion: 'nslb.dev/v1alpha1', kind: 'Member', namespace: 'team-a', name: 'm1', spec: { pool: 'web-p' }, status: status('ACTIVE', 'ONLINE') },
        { apiVersion: 'nslb.dev/v1alpha1', kind: 'Member', namespace: 'team-a', name: 'm3', spec: { pool: 'web-p' }, status: status('ACTIVE', 'ONLINE') },
        // Same member name in another namespace: not this load balancer's.
        { apiVersion: 'nslb.dev/v1alpha1', kind: 'Member', namespace: 'team-b', name: 'm1', spec: { pool: 'web-p' }, status: status('ACTIVE', 'ONLINE') },
        { apiVersion: 'nslb.dev/v1alpha1', kind: 'Pool', namespace: 'team-a', name: 'web-p', spec: {}, status: status('ACTIVE', 'ONLINE') },
      ],
      errors: [],
    };
    const out = withMemberStats(file, fake.loadBalancerStats());
    expect(out.objects[0]?.stats).toMatchObject({ currentSessions: 3, totalSessions: 40, bytesIn: 1000, bytesOut: 52000, checkStatus: 'L7OK' });
    expect(out.objects[0]?.status).not.toHaveProperty('stats');
    expect(out.objects[1]).not.toHaveProperty('stats');
    expect(out.objects[2]).not.toHaveProperty('stats');
    expect(out.objects[3]).not.toHaveProperty('stats');
    // The input is left as it was (the controller's copy).
    expect(file.objects[0]).not.toHaveProperty('stats');
  });

  it('shows the kernel limits as last checked: value, requirement, insufficient, raises, neighbour table', async () => {
    const report: KernelLimitsReport = {
      mode: 'check',
      limits: [
        { name: 'net.ipv4.neigh.default.gc_thresh3', current: 1024, required: 5512, target: 11264, verdict: 'insufficient', why: '' },
        { name: 'kernel.pid_max', current: 65536, required: 2000, target: 4096, verdict: 'ok', why: '', raisedFrom: 32768 },
      ],
      refusing: ['ipv4'],
      neighbours: { ipv4: { entries: 1020, tableFulls: 42 } },
      condition: { type: 'KernelLimitsSufficient', status: 'False', reason: 'NeighbourTableTooSmall', message: '' },
    };
    const metrics = createAgentMetrics(new FakeController(), {
      processMetrics: false,
      counters: counters(),
      kernelLimits: { report, raises: new Map([['kernel.pid_max', 1]]) },
    });
    const { body } = await metrics.render();
    expect(sample(body, 'nslb_kernel_limit{limit="net.ipv4.neigh.default.gc_thresh3"}')).toBe(1024);
    expect(sample(body, 'nslb_kernel_limit_required{limit="net.ipv4.neigh.default.gc_thresh3"}')).toBe(5512);
    expect(sample(body, 'nslb_kernel_limit_insufficient{limit="net.ipv4.neigh.default.gc_thresh3"}')).toBe(1);
    expect(sample(body, 'nslb_kernel_limit_insufficient{limit="kernel.pid_max"}')).toBe(0);
    expect(sample(body, 'nslb_kernel_limit_raises_total{limit="kernel.pid_max"}')).toBe(1);
    expect(sample(body, 'nslb_neighbour_table_entries{family="ipv4"}')).toBe(1020);
    expect(sample(body, 'nslb_neighbour_table_overflows_total{family="ipv4"}')).toBe(42);
    expect(sample(body, 'nslb_node_neighbours_refused{family="ipv4"}')).toBe(1);
    expect(sample(body, 'nslb_node_neighbours_refused{family="ipv6"}')).toBe(0);
  });

  it('shows keepalived per ACTIVE_STANDBY load balancer: up, VRRP state, transitions; nothing of its config', async () => {
    const ha = {
      node: 'node1',
      slot: 0 as const,
      peer: 'node2',
      localAddress: '10.0.0.2',
      peerAddress: '10.0.0.3',
      advertIntervalMs: 200,
      virtualRouterId: 51,
    };
    const pair = (name: string) => loadBalancer({ key: `team-a/${name}`, namespace: 'team-a', name, ha });
    const views: LbStatsView[] = [
      { key: 'team-a/web', applied: web, stats: [] },
      { key: 'team-a/pa', applied: pair('pa'), stats: [], keepalivedUp: true, vrrp: { state: 'MASTER', priority: 100, transitions: 3 } },
      { key: 'team-a/pb', applied: pair('pb'), stats: [], keepalivedUp: false },
    ];
    const fake = Object.assign(new FakeController(), { loadBalancerStats: () => views });
    const { body } = await createAgentMetrics(fake, { processMetrics: false, counters: counters() }).render();
    expect(sample(body, 'nslb_keepalived_up{loadbalancer="team-a/pa"}')).toBe(1);
    expect(sample(body, 'nslb_keepalived_up{loadbalancer="team-a/pb"}')).toBe(0);
    // SINGLE load balancers have no keepalived series at all.
    expect(body).not.toMatch(/nslb_(keepalived_up|vrrp_\w+)\{loadbalancer="team-a\/web"/);
    expect(sample(body, 'nslb_vrrp_state{loadbalancer="team-a/pa",state="MASTER"}')).toBe(1);
    expect(sample(body, 'nslb_vrrp_state{loadbalancer="team-a/pa",state="BACKUP"}')).toBe(0);
    expect(sample(body, 'nslb_vrrp_state{loadbalancer="team-a/pb",state="MASTER"}')).toBe(0);
    expect(sample(body, 'nslb_vrrp_state{loadbalancer="team-a/pb",state="FAULT"}')).toBe(0);
    expect(sample(body, 'nslb_vrrp_transitions_total{loadbalancer="team-a/pa"}')).toBe(3);
    expect(sample(body, 'nslb_vrrp_transitions_total{loadbalancer="team-a/pb"}')).toBe(0);
    // The VRRP addresses and router id stay out of /metrics (VRRPv3 has no password; nothing of the config is exported).
    expect(body).not.toMatch(/10\.0\.0\.[23]|virtual_router|auth/);
  });

  it("counts the keepalived driver's starts, reloads and handovers and the HAProxy health monitor's checks, read at each scrape", async () => {
    const keepalived = { driver: { starts: 4, reloads: 2, handovers: 3, handoverCut: 1 }, health: { writes: 5, apiChecks: 40, pidPasses: 200 } };
    const c = counters();
    const metrics = createAgentMetrics(new FakeController(), { processMetrics: false, counters: { ...c, engine: { ...c.engine, keepalived } } });
    let { body } = await metrics.render();
    expect(sample(body, 'nslb_keepalived_starts_total')).toBe(4);
    expect(sample(body, 'nslb_keepalived_reloads_total')).toBe(2);
    expect(sample(body, 'nslb_vrrp_handovers_total')).toBe(3);
    expect(sample(body, 'nslb_vrrp_handover_connections_cut_total')).toBe(1);
    expect(sample(body, 'nslb_haproxy_health_checks_total{check="pid"}')).toBe(200);
    expect(sample(body, 'nslb_haproxy_health_checks_total{check="api"}')).toBe(40);
    expect(sample(body, 'nslb_haproxy_health_file_writes_total')).toBe(5);
    // The engine's numbers are read again at every scrape, not copied once.
    keepalived.health.apiChecks = 41;
    keepalived.driver.handovers = 4;
    ({ body } = await metrics.render());
    expect(sample(body, 'nslb_haproxy_health_checks_total{check="api"}')).toBe(41);
    expect(sample(body, 'nslb_vrrp_handovers_total')).toBe(4);
  });
});
