// /metrics in Prometheus' text format. One registry per agent; every figure but the reconcile histogram is
// read from the engine's state when scraped (collect callbacks), so a scrape costs no socket round trip and
// no process: HAProxy's stats are the ones the engine last polled. Only `nslb run` imports this module
// (dynamically), so one-shot commands never load prom-client.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ObjectStatus } from '../api/v1alpha1/types.js';
import { KINDS } from '../api/v1alpha1/types.js';
import type { MemberStats } from '../status/status-file.js';
import { memberStats, type LbStatsView } from '../status/traffic.js';
import type { KernelLimitsReport } from '../controller/kernel-limits.js';
import type { DriverCounters } from '../plan/node-driver.js';

/** What /metrics reads at scrape time: the controller, or a fake of it in tests. */
export interface MetricsSource {
  /** Every object's status, keyed by objectId (`Kind/namespace/name`). */
  readonly statuses: ReadonlyMap<string, ObjectStatus>;
  readonly queueStats: { depth: number; retries: number };
  loadBalancerStats(): readonly LbStatsView[];
}

export interface MetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop lag, …) under their usual names. Default true. */
  processMetrics?: boolean;
  /** What the node driver did, and the processes started by program (exec/run.ts's SpawnCounter). */
  counters: {
    engine: DriverCounters;
    spawnsByTool: ReadonlyMap<string, number>;
    /** Wall time from spawn to exit, by program. */
    spawnSecondsByTool?: ReadonlyMap<string, number>;
    /** Status publishes done and their wall time. */
    publishes?: { readonly count: number; readonly seconds: number };
  };
  /** The node's kernel limits as last checked, and the raises done (absent: no kernel-limit metrics). */
  kernelLimits?: { readonly report: KernelLimitsReport | undefined; readonly raises: ReadonlyMap<string, number> };
}

/** Kubernetes mode's writes to the API server, read at scrape time. */
export interface KubernetesWriteStats {
  /** Status writes made, by kind and result (ok, conflict, throttled, unavailable, not_found, invalid, error). */
  statusWrites(): Iterable<[{ kind: string; result: string }, number]>;
  /** Statuses the API server does not hold yet, and how long the oldest of them has waited. */
  statusQueue(): { depth: number; oldestSeconds: number };
  /** Event writes by result (created, updated, failed), and occurrences recorded. */
  events(): { writes: Iterable<[string, number]>; occurrences: number };
}

export interface AgentMetrics {
  readonly registry: Registry;
  /** Give this to the controller as onReconciled. */
  /** The work queue's outcome of one reconcile (loop/work-queue.ts ProcessResult). */
  observeReconcile(key: string, result: 'ok' | 'error' | 'wait', seconds: number): void;
  /** Kubernetes mode: add the status-write and Event metrics. */
  addKubernetes(stats: KubernetesWriteStats): void;
  /** The exposition text, and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

const PROVISIONING = ['ACTIVE', 'PENDING_CREATE', 'PENDING_UPDATE', 'PENDING_DELETE', 'ERROR'] as const;
const OPERATING = ['ONLINE', 'OFFLINE', 'DEGRADED', 'ERROR', 'NO_MONITOR', 'DRAINING'] as const;
const MEMBER_LABELS = ['loadbalancer', 'pool', 'member'] as const;

/** A counter whose value lives elsewhere (a plain number the engine bumps): set at scrape time. */
function mirror(counter: Counter<string>, values: Iterable<[Record<string, string>, number]>): void {
  counter.reset();
  for (const [labels, v] of values) counter.inc(labels, v);
}

export function createAgentMetrics(source: MetricsSource, options: MetricsOptions): AgentMetrics {
  const registry = new Registry();
  const { counters } = options;
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const reconcileSeconds = new Histogram({
    name: 'nslb_reconcile_duration_seconds',
    help: 'Time one reconcile of a load balancer (observe, plan, apply) took, by result (ok, error, or wait: held back until another node lets go of an address).',
    labelNames: ['result'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const reconciles = new Counter({
    name: 'nslb_reconciles_total',
    help: 'Reconciles of a load balancer (or of an orphan being removed), by result (ok, error, or wait: held back until another node lets go of an address).',
    labelNames: ['result'],
    registers,
  });
  for (const result of ['ok', 'error', 'wait']) {
    // Both series exist from the start: a rate() of errors is 0, not absent, before the first failure.
    reconciles.inc({ result }, 0);
    reconcileSeconds.zero({ result });
  }

  new Gauge({
    name: 'nslb_workqueue_depth',
    help: 'Load balancers waiting in the work queue for a worker (not counting those running or in backoff).',
    registers,
    collect() {
      this.set(source.queueStats.depth);
    },
  });
  new Counter({
    name: 'nslb_workqueue_retries_total',
    help: 'Reconciles that failed and were queued again with backoff.',
    registers,
    collect() {
      mirror(this, [[{}, source.queueStats.retries]]);
    },
  });

  new Gauge({
    name: 'nslb_objects_provisioning',
    help: 'Objects (LoadBalancer, Listener, Pool, Member, HealthMonitor, L7Policy, L7Rule) by kind and provisioning status.',
    labelNames: ['kind', 'provisioning_status'],
    registers,
    collect() {
      this.reset();
      for (const kind of KINDS) for (const s of PROVISIONING) this.set({ kind, provisioning_status: s }, 0);
      for (const [id, st] of source.statuses) this.inc({ kind: kindOf(id), provisioning_status: st.provisioningStatus });
    },
  });
  new Gauge({
    name: 'nslb_objects_operating',
    help: 'Objects by kind and operating status.',
    labelNames: ['kind', 'operating_status'],
    registers,
    collect() {
      this.reset();
      for (const kind of KINDS) for (const s of OPERATING) this.set({ kind, operating_status: s }, 0);
      for (const [id, st] of source.statuses) this.inc({ kind: kindOf(id), operating_status: st.operatingStatus });
    },
  });

  new Counter({
    name: 'nslb_processes_spawned_total',
    help: 'Processes the agent started, by program (ip, ovs-vsctl, haproxy, ...).',
    labelNames: ['tool'],
    registers,
    collect() {
      mirror(
        this,
        [...counters.spawnsByTool].map(([tool, n]) => [{ tool }, n]),
      );
    },
  });
  new Counter({
    name: 'nslb_process_seconds_total',
    help: 'Wall time of the processes the agent started, from spawn to exit, by program (summed over those running at once).',
    labelNames: ['tool'],
    registers,
    collect() {
      mirror(
        this,
        [...(counters.spawnSecondsByTool ?? [])].map(([tool, s]) => [{ tool }, s]),
      );
    },
  });
  new Counter({
    name: 'nslb_node_actions_total',
    help: 'Node actions applied (netns.add, ovs.addPort, haproxy.start, ...), by action.',
    labelNames: ['action'],
    registers,
    collect() {
      mirror(
        this,
        [...(counters.engine.actions ?? [])].map(([action, t]) => [{ action }, t.count]),
      );
    },
  });
  new Counter({
    name: 'nslb_node_action_seconds_total',
    help: 'Wall time of the node actions applied, by action (summed over those running at once).',
    labelNames: ['action'],
    registers,
    collect() {
      mirror(
        this,
        [...(counters.engine.actions ?? [])].map(([action, t]) => [{ action }, t.seconds]),
      );
    },
  });
  new Counter({
    name: 'nslb_node_observe_seconds_total',
    help: 'Wall time of node observations (reconciles and resyncs, summed over those running at once).',
    registers,
    collect() {
      mirror(this, [[{}, counters.engine.observe?.seconds ?? 0]]);
    },
  });
  new Counter({
    name: 'nslb_status_publish_seconds_total',
    help: 'Wall time spent computing status and handing it to its writers (status.json and, in Kubernetes mode, the status subresources are written behind it).',
    registers,
    collect() {
      mirror(this, [[{}, counters.publishes?.seconds ?? 0]]);
    },
  });
  new Counter({
    name: 'nslb_haproxy_reloads_total',
    help: 'HAProxy reloads signalled (SIGUSR2 to the master), by result (ok or failed).',
    labelNames: ['result'],
    registers,
    collect() {
      const r = counters.engine.haproxyReloads;
      mirror(this, [
        [{ result: 'ok' }, r.ok],
        [{ result: 'failed' }, r.failed],
      ]);
    },
  });
  new Counter({
    name: 'nslb_haproxy_starts_total',
    help: 'HAProxy processes started (a new load balancer, or a restart).',
    registers,
    collect() {
      mirror(this, [[{}, counters.engine.haproxyStarts]]);
    },
  });
  new Counter({
    name: 'nslb_haproxy_runtime_updates_total',
    help: 'Changes applied through the HAProxy runtime API without a reload (one per command sent).',
    registers,
    collect() {
      mirror(this, [[{}, counters.engine.runtimeUpdates]]);
    },
  });
  new Counter({
    name: 'nslb_haproxy_runtime_fallbacks_total',
    help: 'Runtime-API change sets HAProxy refused, so that a reload was done instead.',
    registers,
    collect() {
      mirror(this, [[{}, counters.engine.runtimeFallbacks]]);
    },
  });

  // Per member, from the `show stat` the engine last polled. HAProxy counts from its current worker's
  // start: a reload starts the totals again, which Prometheus reads as a counter reset.
  const memberGauge = (name: string, help: string, pick: (s: MemberStats) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: MEMBER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const m of members()) this.set(m.labels, pick(m.stats));
      },
    });
  };
  const memberCounter = (name: string, help: string, pick: (s: MemberStats) => number): void => {
    new Counter({
      name,
      help,
      labelNames: MEMBER_LABELS,
      registers,
      collect() {
        mirror(
          this,
          members().map((m) => [m.labels, pick(m.stats)]),
        );
      },
    });
  };
  const members = () =>
    source.loadBalancerStats().flatMap((view) =>
      [...memberStats(view.applied, view.stats)].map(([poolMember, stats]) => {
        const [pool = '', member = ''] = poolMember.split('/');
        return { labels: { loadbalancer: view.key, pool, member }, stats };
      }),
    );
  memberGauge('nslb_member_current_sessions', 'Sessions open to the member now (HAProxy scur).', (s) => s.currentSessions);
  memberCounter('nslb_member_sessions_total', 'Sessions sent to the member since HAProxy last (re)started its worker (stot).', (s) => s.totalSessions);
  memberCounter('nslb_member_bytes_in_total', 'Bytes from clients forwarded to the member (HAProxy bin).', (s) => s.bytesIn);
  memberCounter('nslb_member_bytes_out_total', 'Bytes from the member forwarded to clients (HAProxy bout).', (s) => s.bytesOut);
  memberGauge('nslb_member_up', '1 when HAProxy sends the member traffic (its state is UP), else 0 (DOWN, MAINT, DRAIN, NOLB).', (s) =>
    /^UP\b|^no check$/.test(s.state) ? 1 : 0,
  );
  new Gauge({
    name: 'nslb_member_check_status',
    help: "The member's last health check result as HAProxy codes it (L4OK, L7OK, L4CON, L7STS, ...); always 1. Members without a check have none.",
    labelNames: [...MEMBER_LABELS, 'check_status'],
    registers,
    collect() {
      this.reset();
      for (const m of members()) {
        // "* L4CON" while a check runs: the code without HAProxy's in-progress mark.
        const code = m.stats.checkStatus?.replace(/^\*\s*/, '');
        if (code !== undefined && code !== '') this.set({ ...m.labels, check_status: code }, 1);
      }
    },
  });

  vrrpMetrics(source, registers);
  keepalivedCounterMetrics(counters.engine, registers);
  if (options.kernelLimits !== undefined) kernelLimitMetrics(options.kernelLimits, registers);

  return {
    registry,
    addKubernetes(stats) {
      registerKubernetesMetrics(registers, stats);
    },
    observeReconcile(_key, result, seconds) {
      reconcileSeconds.observe({ result }, seconds);
      reconciles.inc({ result });
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

const VRRP_STATES = ['MASTER', 'BACKUP', 'FAULT', 'STOP'] as const;

/** What the keepalived driver and the HAProxy health monitor did since the agent started (DriverCounters.keepalived). */
function keepalivedCounterMetrics(counters: DriverCounters, registers: Registry[]): void {
  const k = () => counters.keepalived;
  const counter = (name: string, help: string, value: (c: NonNullable<DriverCounters['keepalived']>) => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        const c = k();
        mirror(this, c === undefined ? [] : [[{}, value(c)]]);
      },
    });
  };
  counter('nslb_keepalived_starts_total', 'keepalived processes started by the agent (ACTIVE_STANDBY load balancers).', (c) => c.driver.starts);
  counter('nslb_keepalived_reloads_total', 'keepalived configs reloaded in place (SIGHUP).', (c) => c.driver.reloads);
  counter(
    'nslb_vrrp_handovers_total',
    'Planned handovers of a VIP by this node (a MASTER taken out of the placement: new connections held off, open ones waited for, then keepalived let go).',
    (c) => c.driver.handovers,
  );
  counter(
    'nslb_vrrp_handover_connections_cut_total',
    'Connections still open when a planned handover let go of the VIP (they end as in a failover).',
    (c) => c.driver.handoverCut,
  );
  new Counter({
    name: 'nslb_haproxy_health_checks_total',
    help: "Checks of the HAProxies of ACTIVE_STANDBY load balancers by the agent's health monitor: pid (the master is alive, counted when passed), api (the runtime API asked `show info`).",
    labelNames: ['check'],
    registers,
    collect() {
      const c = k();
      mirror(
        this,
        c === undefined
          ? []
          : [
              [{ check: 'pid' }, c.health.pidPasses],
              [{ check: 'api' }, c.health.apiChecks],
            ],
      );
    },
  });
  counter(
    'nslb_haproxy_health_file_writes_total',
    "Writes of the health track files keepalived follows (each a change of a load balancer's verdict, or a repair).",
    (c) => c.health.writes,
  );
}

/**
 * keepalived of ACTIVE_STANDBY load balancers, from the state file its notify script keeps (read at the last
 * stats poll, no process): nothing of its config, and so never the VRRP addresses' secrets (VRRPv3 has none).
 */
function vrrpMetrics(source: MetricsSource, registers: Registry[]): void {
  const pairs = () => source.loadBalancerStats().filter((v) => v.applied.ha !== undefined);
  new Gauge({
    name: 'nslb_keepalived_up',
    help: "1 when the load balancer's keepalived runs on this node (ACTIVE_STANDBY only), else 0.",
    labelNames: ['loadbalancer'],
    registers,
    collect() {
      this.reset();
      for (const v of pairs()) this.set({ loadbalancer: v.key }, v.keepalivedUp === true ? 1 : 0);
    },
  });
  new Gauge({
    name: 'nslb_vrrp_state',
    help: "This node's VRRP state of the load balancer as its keepalived last announced it: 1 for the current state (MASTER, BACKUP, FAULT, STOP), 0 for the others; all 0 while keepalived is not running or has announced nothing.",
    labelNames: ['loadbalancer', 'state'],
    registers,
    collect() {
      this.reset();
      for (const v of pairs()) for (const state of VRRP_STATES) this.set({ loadbalancer: v.key, state }, v.vrrp?.state === state ? 1 : 0);
    },
  });
  new Counter({
    name: 'nslb_vrrp_transitions_total',
    help: "Changes of VRRP state this node's keepalived announced for the load balancer since it started (a restart of keepalived starts it again from 0).",
    labelNames: ['loadbalancer'],
    registers,
    collect() {
      mirror(
        this,
        pairs().map((v) => [{ loadbalancer: v.key }, v.vrrp?.transitions ?? 0]),
      );
    },
  });
}

/** The kernel limits the load depends on (src/controller/kernel-limits.ts): what they are, need, and were raised. */
function kernelLimitMetrics(source: NonNullable<MetricsOptions['kernelLimits']>, registers: Registry[]): void {
  const rows = () => source.report?.limits ?? [];
  new Gauge({
    name: 'nslb_kernel_limit',
    help: 'A kernel limit the load balancers depend on, as read (or set) at the last check; labelled by sysctl (or "cgroup pids.max").',
    labelNames: ['limit'],
    registers,
    collect() {
      this.reset();
      for (const r of rows()) if (r.current !== undefined) this.set({ limit: r.name }, r.current);
    },
  });
  new Gauge({
    name: 'nslb_kernel_limit_required',
    help: "What the limit must be for this node's load balancers (below it the node refuses neighbours, processes or namespaces).",
    labelNames: ['limit'],
    registers,
    collect() {
      this.reset();
      for (const r of rows()) this.set({ limit: r.name }, r.required);
    },
  });
  new Gauge({
    name: 'nslb_kernel_limit_insufficient',
    help: '1 when the limit is below what the load needs and nslb did not (--kernel-limits check) or could not raise it, else 0.',
    labelNames: ['limit'],
    registers,
    collect() {
      this.reset();
      for (const r of rows()) this.set({ limit: r.name }, r.verdict === 'insufficient' ? 1 : 0);
    },
  });
  new Counter({
    name: 'nslb_kernel_limit_raises_total',
    help: 'Times this agent raised the limit.',
    labelNames: ['limit'],
    registers,
    collect() {
      mirror(
        this,
        [...source.raises].map(([limit, n]) => [{ limit }, n]),
      );
    },
  });
  new Gauge({
    name: 'nslb_neighbour_table_entries',
    help: "Entries in the kernel's neighbour table (one table for every namespace on the node), by family.",
    labelNames: ['family'],
    registers,
    collect() {
      this.reset();
      for (const [family, s] of Object.entries(source.report?.neighbours ?? {})) this.set({ family }, s.entries);
    },
  });
  new Counter({
    name: 'nslb_neighbour_table_overflows_total',
    help: 'New neighbour entries the kernel refused because the table was full (its table_fulls counter, since boot), by family.',
    labelNames: ['family'],
    registers,
    collect() {
      mirror(
        this,
        Object.entries(source.report?.neighbours ?? {}).map(([family, s]) => [{ family }, s.tableFulls]),
      );
    },
  });
  new Gauge({
    name: 'nslb_node_neighbours_refused',
    help: "1 when the node's neighbour table of the family refuses (or would refuse) new entries: its load balancers are never reported ONLINE then.",
    labelNames: ['family'],
    registers,
    collect() {
      this.reset();
      const refusing = new Set(source.report?.refusing ?? []);
      for (const family of ['ipv4', 'ipv6']) this.set({ family }, refusing.has(family as 'ipv4' | 'ipv6') ? 1 : 0);
    },
  });
}

function registerKubernetesMetrics(registers: Registry[], stats: KubernetesWriteStats): void {
  new Counter({
    name: 'nslb_kube_status_writes_total',
    help: 'Status subresource writes (merge patches) sent to the API server, by kind and result (ok, conflict, throttled, unavailable, not_found, invalid, error).',
    labelNames: ['kind', 'result'],
    registers,
    collect() {
      const seen = [...stats.statusWrites()];
      // ok exists for every kind from the start: a rate() is 0, not absent, before the first write.
      for (const kind of KINDS) if (!seen.some(([l]) => l.kind === kind && l.result === 'ok')) seen.push([{ kind, result: 'ok' }, 0]);
      mirror(this, seen);
    },
  });
  new Gauge({
    name: 'nslb_kube_status_queue_depth',
    help: 'Objects whose newest status the API server does not hold yet (waiting for the rate limit, a retry, or the server).',
    registers,
    collect() {
      this.set(stats.statusQueue().depth);
    },
  });
  new Gauge({
    name: 'nslb_kube_status_oldest_unwritten_seconds',
    help: 'How long the oldest status not yet written to the API server has waited (0 when none waits).',
    registers,
    collect() {
      this.set(stats.statusQueue().oldestSeconds);
    },
  });
  new Counter({
    name: 'nslb_kube_event_writes_total',
    help: 'Event writes to the API server by result: created (a new Event), updated (the count of a series), failed (given up).',
    labelNames: ['result'],
    registers,
    collect() {
      const writes = new Map(stats.events().writes);
      mirror(
        this,
        ['created', 'updated', 'failed'].map((result) => [{ result }, writes.get(result) ?? 0]),
      );
    },
  });
  new Counter({
    name: 'nslb_kube_event_occurrences_total',
    help: 'Things reported as Events; repeats are counted in a series, so this grows faster than the writes.',
    registers,
    collect() {
      mirror(this, [[{}, stats.events().occurrences]]);
    },
  });
}

function kindOf(objectId: string): string {
  return objectId.slice(0, objectId.indexOf('/'));
}
