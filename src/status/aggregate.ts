// Operating status of one load balancer's objects from HAProxy's `show stat` (pure), aggregated the way
// Octavia's health manager does (DESIGN §1): members from their server rows, pools from their members,
// listeners from their frontend rows, the load balancer from its listeners and pools.
import type { OperatingStatus } from '../api/v1alpha1/types.js';
import type { DesiredLoadBalancer, DesiredMember, DesiredPool } from '../desired/model.js';
import type { StatRow } from '../plan/haproxy-stats.js';
import { backendName, frontendName } from '../plan/haproxy-words.js';
import { isKernelListener } from '../plan/kernel-model.js';

export interface OperatingStatusTree {
  loadBalancer: OperatingStatus;
  listeners: Map<string, OperatingStatus>;
  pools: Map<string, OperatingStatus>;
  /** Keyed by `${pool}/${member}`. */
  members: Map<string, OperatingStatus>;
  /** Keyed by pool name (one monitor per pool). */
  healthMonitors: Map<string, OperatingStatus>;
}

/** `show stat` rows found by the names the renderer gave listeners, pools and members. */
export class StatIndex {
  private readonly rows = new Map<string, StatRow>();
  constructor(stats: readonly StatRow[]) {
    for (const r of stats) this.rows.set(`${r.type}\u0000${r.pxname}\u0000${r.svname}`, r);
  }
  frontend(listener: string): StatRow | undefined {
    return this.rows.get(`frontend\u0000${frontendName(listener)}\u0000FRONTEND`);
  }
  backend(pool: string): StatRow | undefined {
    return this.rows.get(`backend\u0000${backendName(pool)}\u0000BACKEND`);
  }
  server(pool: string, member: string): StatRow | undefined {
    return this.rows.get(`server\u0000${backendName(pool)}\u0000${member}`);
  }
}

// HAProxy decorates states: "UP 1/3" and "DOWN 1/2" while a transition is being confirmed by rise/fall,
// "UP (agent)", "MAINT (via pool.x/y)", "MAINT (resolution)". Only the leading word decides.
function memberStatus(m: DesiredMember, row: StatRow | undefined): OperatingStatus {
  if (!m.adminStateUp) return 'OFFLINE';
  // Not in the running HAProxy (yet): nothing is sent to it.
  if (row === undefined) return 'OFFLINE';
  const s = row.status.trim();
  if (s.startsWith('MAINT')) return 'OFFLINE';
  // Weight 0 is how an operator drains a member: that intent outranks whatever its check says.
  if (s.startsWith('DRAIN') || m.weight === 0) return 'DRAINING';
  if (s === 'no check') return 'NO_MONITOR';
  if (s.startsWith('UP')) return 'ONLINE';
  if (s.startsWith('DOWN')) return 'ERROR';
  // NOLB: the check passes but asks for no new traffic (404 with disable-on-404, or L7OKC).
  if (s.startsWith('NOLB')) return 'DRAINING';
  // A state this code does not know cannot be claimed to serve.
  return 'OFFLINE';
}

function poolStatus(pool: DesiredPool, row: StatRow | undefined, members: OperatingStatus[]): OperatingStatus {
  if (!pool.adminStateUp) return 'OFFLINE';
  // The running HAProxy does not have this backend yet (e.g. before the reload that adds it).
  if (row === undefined) return 'OFFLINE';
  if (members.length === 0) return 'ONLINE';
  // Admin-down and absent members are deliberately out of the rotation: they neither fail nor save a pool.
  const enabled = members.filter((s) => s !== 'OFFLINE');
  const failing = enabled.filter((s) => s === 'ERROR').length;
  if (failing === 0) return 'ONLINE';
  if (failing === enabled.length) return 'ERROR';
  // HAProxy marks a backend DOWN when no server can take new traffic. Drained (weight 0) members are
  // not failures, but they cannot carry the pool either once every other member has failed.
  if (row.status === 'DOWN') return 'ERROR';
  return 'DEGRADED';
}

function listenerStatus(adminUp: boolean, row: StatRow | undefined): OperatingStatus {
  if (!adminUp) return 'OFFLINE';
  // Full: the frontend reached its maxconn and new connections wait in the kernel's backlog. Older
  // HAProxy releases printed FULL on the frontend row; 2.6 keeps printing OPEN there (see the captured
  // output in test/unit/fixtures/haproxy/), so the session count decides too.
  if (row?.status === 'FULL') return 'DEGRADED';
  if (row?.status === 'OPEN') {
    const full = row.sessionLimit !== undefined && row.sessionLimit > 0 && (row.sessions ?? 0) >= row.sessionLimit;
    return full ? 'DEGRADED' : 'ONLINE';
  }
  // STOP, or no frontend at all (a disabled frontend has no row): the port should be served and is not.
  return 'ERROR';
}

// How much a child's status weighs on its load balancer. OFFLINE children are switched off on purpose
// (or not running yet) and do not make the load balancer look worse; NO_MONITOR and DRAINING are
// working states. Higher is worse.
const SEVERITY: Record<OperatingStatus, number> = {
  OFFLINE: 0,
  ONLINE: 0,
  NO_MONITOR: 0,
  DRAINING: 0,
  DEGRADED: 1,
  ERROR: 2,
};

function worst(children: Iterable<OperatingStatus>): OperatingStatus {
  let severity = 0;
  for (const s of children) severity = Math.max(severity, SEVERITY[s]);
  return severity === 2 ? 'ERROR' : severity === 1 ? 'DEGRADED' : 'ONLINE';
}

/**
 * `stats` undefined means HAProxy could not be asked (not running, socket unreachable): then nothing is
 * known to serve, and the load balancer, its listeners, pools and members are OFFLINE.
 */
export function operatingStatuses(lb: DesiredLoadBalancer, stats: readonly StatRow[] | undefined): OperatingStatusTree {
  const tree: OperatingStatusTree = {
    loadBalancer: 'OFFLINE',
    listeners: new Map(),
    pools: new Map(),
    members: new Map(),
    healthMonitors: new Map(),
  };
  // A monitor's own status says whether it runs, not whether its members pass (that is on the members).
  for (const p of lb.pools) {
    if (p.healthMonitor !== undefined) {
      tree.healthMonitors.set(p.name, p.healthMonitor.adminStateUp ? 'ONLINE' : 'OFFLINE');
    }
  }

  if (stats === undefined) {
    for (const l of lb.listeners) tree.listeners.set(l.name, 'OFFLINE');
    for (const p of lb.pools) {
      tree.pools.set(p.name, 'OFFLINE');
      for (const m of p.members) tree.members.set(`${p.name}/${m.name}`, 'OFFLINE');
    }
    return tree;
  }

  const index = new StatIndex(stats);
  for (const l of lb.listeners) {
    const adminUp = l.adminStateUp && lb.adminStateUp;
    // UDP and SCTP listeners have no frontend: the kernel serves them (the reconcile put their table in place).
    tree.listeners.set(l.name, isKernelListener(l) ? (adminUp ? 'ONLINE' : 'OFFLINE') : listenerStatus(adminUp, index.frontend(l.name)));
  }
  for (const p of lb.pools) {
    const members = p.members.map((m) => {
      const s = memberStatus(m, index.server(p.name, m.name));
      tree.members.set(`${p.name}/${m.name}`, s);
      return s;
    });
    tree.pools.set(p.name, poolStatus(p, index.backend(p.name), members));
  }
  tree.loadBalancer = lb.adminStateUp ? worst([...tree.listeners.values(), ...tree.pools.values()]) : 'OFFLINE';
  return tree;
}
