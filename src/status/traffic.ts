// Per-member traffic and check figures from HAProxy's `show stat` (pure). They go to status.json and
// /metrics only, never to the Kubernetes status subresource: they change on every poll, and a status
// write per member per second would churn the API server (kubernetes-writer.ts writes only on change).
import type { LbKey } from '../api/v1alpha1/types.js';
import type { DesiredLoadBalancer } from '../desired/model.js';
import { parseLbKey } from '../desired/names.js';
import type { StatRow } from '../plan/haproxy-stats.js';
import type { ObservedVrrpState } from '../plan/observed.js';
import { StatIndex } from './aggregate.js';
import type { MemberStats, StatusFile } from './status-file.js';

/** What the engine knows about one load balancer that is on the node, for readers outside it (status, /metrics). */
export interface LbStatsView {
  key: LbKey;
  /** The model that is on the node now. */
  applied: DesiredLoadBalancer;
  /** The last `show stat`; undefined when HAProxy could not be asked. */
  stats: readonly StatRow[] | undefined;
  /** ACTIVE_STANDBY only: whether its keepalived runs here, and the last state it announced (while it runs). */
  keepalivedUp?: boolean;
  vrrp?: ObservedVrrpState;
}

/** Keyed by `${pool}/${member}`; a member HAProxy does not run (yet) is absent. */
export function memberStats(lb: DesiredLoadBalancer, stats: readonly StatRow[] | undefined): Map<string, MemberStats> {
  const result = new Map<string, MemberStats>();
  if (stats === undefined) return result;
  const index = new StatIndex([...stats]);
  for (const p of lb.pools) {
    for (const m of p.members) {
      const row = index.server(p.name, m.name);
      if (row === undefined) continue;
      const s: MemberStats = {
        currentSessions: row.sessions ?? 0,
        totalSessions: row.totalSessions ?? 0,
        bytesIn: row.bytesIn ?? 0,
        bytesOut: row.bytesOut ?? 0,
        state: row.status,
      };
      if (row.checkStatus !== undefined) s.checkStatus = row.checkStatus;
      const last = [row.checkDescription, row.lastCheck].filter((x) => x !== undefined && x !== '').join(': ');
      if (last !== '') s.lastCheck = last;
      result.set(`${p.name}/${m.name}`, s);
    }
  }
  return result;
}

/**
 * The status file with each Member's figures beside its status (`stats`, a sibling of `status` so that
 * the Kubernetes writer, which sends `status` only, never sees them).
 */
export function withMemberStats(file: StatusFile, lbs: Iterable<LbStatsView>): StatusFile {
  const byMember = new Map<string, MemberStats>();
  for (const view of lbs) {
    const namespace = parseLbKey(view.key).namespace;
    for (const [poolMember, s] of memberStats(view.applied, view.stats)) byMember.set(`${namespace}/${poolMember}`, s);
  }
  if (byMember.size === 0) return file;
  return {
    ...file,
    objects: file.objects.map((o) => {
      if (o.kind !== 'Member') return o;
      const pool = (o.spec as { pool?: unknown } | undefined)?.pool;
      const s = typeof pool === 'string' ? byMember.get(`${o.namespace}/${pool}/${o.name}`) : undefined;
      return s === undefined ? o : { ...o, stats: s };
    }),
  };
}
