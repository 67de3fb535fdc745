// The order in which a plan is applied (pure). A plan is a list, applied one action after the other, except
// for one case: a new load balancer's HAProxy starts while its VIP port is moved into the new netns and
// configured. Those are the two slowest steps of a creation and neither needs the other: the move waits in
// the kernel for an RCU grace period (dev_change_net_namespace's rcu_barrier, about 20 ms here), HAProxy for
// its own start-up (dynamic linking and initialisation, about 10 ms before it binds). HAProxy can bind its
// VIP before the link has it because the netns is made allowing non-local binds (net.ipv4/ipv6
// .ip_nonlocal_bind, set by the netns.add that carries `nonlocalBind`), and it answers from the link's first
// frame (the kernel announces the VIP when the link comes up).
//
// The price is that HAProxy's first health check (the first server's, at start) may run before the link is
// up, and fail. A member that one failed check cannot mark down (fall ≥ 2: Octavia's maxRetriesDown
// defaults to 3) is not affected: the next check, an interval later, passes. So a load balancer with a
// monitor that has maxRetriesDown 1 is built in order, as are ACTIVE_STANDBY pairs (keepalived waits for
// its HAProxy), load balancers with member networks (their links come after the VIP's) and HAProxy restarts.
import type { DesiredLoadBalancer } from '../desired/model.js';
import type { Action } from './actions.js';
import type { ObservedLoadBalancer } from './observed.js';

/** Stages, applied one after the other; each stage's lanes run at once; each lane's actions in order. */
export type ApplyStages = Action[][][];

const LINK_KINDS: ReadonlySet<Action['kind']> = new Set(['ovs.addPort', 'ovs.deletePort', 'link.moveToNetns', 'link.configure']);

interface Split {
  /** Up to and including netns.add. */
  before: Action[];
  /** The VIP port's: ovs, move, configure. */
  link: Action[];
  /** haproxy.writeConfig, haproxy.start. */
  haproxy: Action[];
  after: Action[];
}

/** netns.add, then only the VIP link's actions, then a new HAProxy's config and start: the shape that may overlap. */
function split(actions: readonly Action[]): Split | undefined {
  const add = actions.findIndex((a) => a.kind === 'netns.add');
  const write = actions.findIndex((a) => a.kind === 'haproxy.writeConfig');
  if (add === -1 || write <= add + 1 || actions[write + 1]?.kind !== 'haproxy.start') return undefined;
  const link = actions.slice(add + 1, write);
  if (!link.every((a) => LINK_KINDS.has(a.kind))) return undefined;
  return { before: actions.slice(0, add + 1), link, haproxy: actions.slice(write, write + 2), after: actions.slice(write + 2) };
}

/** A failed first check marks none of its members down: every active monitor's fall (maxRetriesDown) is 2 or more. */
function survivesOneFailedCheck(d: DesiredLoadBalancer): boolean {
  return d.pools.every((p) => p.healthMonitor?.adminStateUp !== true || p.healthMonitor.maxRetriesDown >= 2);
}

/**
 * The plan with `nonlocalBind` on its netns.add when this new load balancer's HAProxy may start beside its
 * link (see the top of this file); otherwise unchanged.
 */
export function allowHaproxyBesideLink(actions: Action[], d: DesiredLoadBalancer, o: ObservedLoadBalancer): Action[] {
  if (d.ha !== undefined || (d.memberNetworks?.length ?? 0) > 0 || o.haproxy !== undefined || !survivesOneFailedCheck(d)) return actions;
  const s = split(actions);
  if (s === undefined) return actions;
  return actions.map((a) => (a.kind === 'netns.add' ? { ...a, nonlocalBind: true as const } : a));
}

/** How the reconciler applies a plan: in order, but with HAProxy's lane beside the link's when netns.add allows it. */
export function applyStages(actions: readonly Action[]): ApplyStages {
  const add = actions.find((a) => a.kind === 'netns.add');
  const s = add?.kind === 'netns.add' && add.nonlocalBind === true ? split(actions) : undefined;
  if (s === undefined) return [[[...actions]]];
  return [[s.before], [s.link, s.haproxy], ...(s.after.length > 0 ? [[s.after]] : [])];
}
