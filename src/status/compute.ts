// Pure: every object's status from what the engine knows: its own problems, its load balancer's last
// reconcile, and HAProxy's stats. lastTransitionTime moves only when Ready flips.
import type { AnyObject, Condition, LbKey, NodeRole, NodeStatus, ObjectStatus, OperatingStatus, ProvisioningStatus } from '../api/v1alpha1/types.js';
import type { PeerSession } from '../plan/haproxy-peers.js';
import type { ObservedVrrpState } from '../plan/observed.js';
import { objectId } from '../api/v1alpha1/types.js';
import { vipAddresses, type DesiredLoadBalancer, type DesiredState, type ObjectProblem } from '../desired/model.js';
import type { StatRow } from '../plan/haproxy-stats.js';
import { operatingStatuses, type OperatingStatusTree } from './aggregate.js';

/** What status needs of a load balancer's last reconcile (the controller's record, controller/outcomes.ts). */
export interface OutcomeView {
  readonly phase: 'pending' | 'active' | 'error';
  readonly message?: string;
  /** The model that is on the node now (the last one applied successfully). */
  readonly applied?: DesiredLoadBalancer;
  /** Generation of each object (by objectId) as of the last successful apply. */
  readonly appliedGenerations: ReadonlyMap<string, number>;
  /** Latest `show stat`; undefined when HAProxy could not be asked. */
  readonly stats?: readonly StatRow[];
  readonly netns: string;
  readonly iface: string;
  /** ACTIVE_STANDBY: the last state this node's keepalived announced, while it runs. */
  readonly vrrp?: ObservedVrrpState;
  /** ACTIVE_STANDBY: HAProxy's peer sessions (`show peers`); undefined when HAProxy could not be asked. */
  readonly peers?: readonly PeerSession[];
}

export interface StatusInput {
  objects: readonly AnyObject[];
  desired: DesiredState;
  outcomes: ReadonlyMap<LbKey, OutcomeView>;
  previous: ReadonlyMap<string, ObjectStatus>;
  now: string;
  node: string;
  /** Load balancers placed on other nodes only: their objects get no status from this node. */
  elsewhere?: ReadonlySet<LbKey>;
  /**
   * The node's neighbour tables of these families refuse (or would refuse) new entries: a load balancer with an
   * address of such a family may be unreachable for new clients, so it is never ONLINE, and says why.
   */
  refusing?: { families: ReadonlySet<'ipv4' | 'ipv6'>; condition: Omit<Condition, 'lastTransitionTime'> };
}

interface Readiness {
  provisioning: ProvisioningStatus;
  ready: boolean;
  reason: string;
  message: string;
}

function readiness(o: AnyObject, own: ObjectProblem[], lb: LbKey | undefined, input: StatusInput): Readiness {
  if (own.length > 0) {
    const first = own[0]!;
    return { provisioning: 'ERROR', ready: false, reason: first.reason, message: own.map((p) => p.message).join('; ') };
  }
  if (lb === undefined) return { provisioning: 'ERROR', ready: false, reason: 'InvalidReference', message: 'no load balancer' };
  const blocked = input.desired.blocked.get(lb);
  if (blocked !== undefined && o.kind === 'LoadBalancer') {
    const what = blocked.map((p) => `${p.kind} ${p.name}: ${p.message}`).join('; ');
    return { provisioning: 'ERROR', ready: false, reason: 'ChildInvalid', message: `not applied, the last valid configuration keeps serving: ${what}` };
  }
  const outcome = input.outcomes.get(lb);
  if (outcome === undefined || outcome.phase === 'pending') {
    const created = outcome?.applied !== undefined;
    return { provisioning: created ? 'PENDING_UPDATE' : 'PENDING_CREATE', ready: false, reason: 'Pending', message: 'reconcile in progress' };
  }
  if (outcome.phase === 'error') {
    return { provisioning: 'ERROR', ready: false, reason: 'ApplyFailed', message: outcome.message ?? 'reconcile failed' };
  }
  if (blocked !== undefined) {
    return { provisioning: 'ACTIVE', ready: true, reason: 'Provisioned', message: 'serving the last valid configuration of its load balancer' };
  }
  const applied = outcome.appliedGenerations.get(objectId(o));
  if (applied === undefined) {
    return { provisioning: 'PENDING_UPDATE', ready: false, reason: 'Pending', message: 'not applied yet' };
  }
  return { provisioning: 'ACTIVE', ready: true, reason: 'Provisioned', message: 'applied to the node' };
}

function operating(o: AnyObject, tree: OperatingStatusTree | undefined): OperatingStatus {
  if (tree === undefined) return 'OFFLINE';
  switch (o.kind) {
    case 'LoadBalancer':
      return tree.loadBalancer;
    case 'Listener':
      return tree.listeners.get(o.metadata.name) ?? 'OFFLINE';
    case 'Pool':
      return tree.pools.get(o.metadata.name) ?? 'OFFLINE';
    case 'Member':
      return tree.members.get(`${o.spec.pool}/${o.metadata.name}`) ?? 'OFFLINE';
    case 'HealthMonitor':
      return tree.healthMonitors.get(o.spec.pool) ?? 'OFFLINE';
    case 'L7Policy':
    case 'L7Rule':
      // As Octavia: HAProxy keeps no health for a rule, so its state is its admin state.
      return o.spec.adminStateUp === false ? 'OFFLINE' : 'ONLINE';
  }
}

function readyCondition(r: Readiness, previous: ObjectStatus | undefined, generation: number | undefined, now: string): Condition {
  const status = r.ready ? 'True' : 'False';
  const before = previous?.conditions.find((c) => c.type === 'Ready');
  return {
    type: 'Ready',
    status,
    reason: r.reason,
    message: r.message,
    lastTransitionTime: before !== undefined && before.status === status ? before.lastTransitionTime : now,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
}

export function computeStatuses(input: StatusInput): Map<string, ObjectStatus> {
  const problemsById = new Map<string, ObjectProblem[]>();
  for (const p of input.desired.problems) {
    const id = `${p.kind}/${p.namespace}/${p.name}`;
    problemsById.set(id, [...(problemsById.get(id) ?? []), p]);
  }
  const trees = new Map<LbKey, OperatingStatusTree>();
  for (const [key, outcome] of input.outcomes) {
    if (outcome.applied !== undefined) trees.set(key, operatingStatuses(outcome.applied, outcome.stats));
  }

  const result = new Map<string, ObjectStatus>();
  for (const o of input.objects) {
    const id = objectId(o);
    const lb = input.desired.owners.get(id);
    if (lb !== undefined && input.elsewhere?.has(lb) === true) continue;
    const r = readiness(o, problemsById.get(id) ?? [], lb, input);
    const outcome = lb === undefined ? undefined : input.outcomes.get(lb);
    const generation = r.ready ? outcome?.appliedGenerations.get(id) : undefined;
    const status: ObjectStatus = {
      provisioningStatus: r.provisioning,
      operatingStatus: r.provisioning === 'ERROR' && outcome?.applied === undefined ? 'ERROR' : operating(o, lb === undefined ? undefined : trees.get(lb)),
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      conditions: [readyCondition(r, input.previous.get(id), generation, input.now)],
    };
    if (o.kind === 'LoadBalancer' && outcome?.applied !== undefined && input.refusing !== undefined) {
      const families = vipAddresses(outcome.applied.vip).map((a) => (a.family === 4 ? 'ipv4' : 'ipv6'));
      if (families.some((f) => input.refusing!.families.has(f))) {
        if (status.operatingStatus === 'ONLINE') status.operatingStatus = 'DEGRADED';
        const before = input.previous.get(id)?.conditions.find((c) => c.type === input.refusing!.condition.type);
        status.conditions.push({
          ...input.refusing.condition,
          lastTransitionTime: before !== undefined && before.status === input.refusing.condition.status ? before.lastTransitionTime : input.now,
        });
      }
    }
    if (o.kind === 'LoadBalancer' && outcome !== undefined) {
      status.vip = o.spec.vip.address;
      status.netns = outcome.netns;
      status.port = outcome.iface;
      status.node = input.node;
      const nodes = nodeStatuses(outcome, input.node, r.ready);
      if (nodes !== undefined) {
        status.nodes = nodes;
        // ACTIVE_STANDBY with one node not ready: one node serves, nothing stands by.
        if (nodes.some((n) => !n.ready) && status.operatingStatus === 'ONLINE') status.operatingStatus = 'DEGRADED';
      }
    }
    result.set(id, status);
  }
  return result;
}

/**
 * status.nodes as this node's agent sees it (DESIGN §6), MASTER first. Its own role comes from its keepalived;
 * the peer is ready when its HAProxy holds a peers session with ours, and its role is said only when it
 * follows: a peer that talks to a MASTER is its BACKUP, and the other way round. A placed SINGLE load
 * balancer is STANDALONE on its node; one placed nowhere has no nodes.
 */
export function nodeStatuses(outcome: OutcomeView, node: string, ready: boolean): NodeStatus[] | undefined {
  const applied = outcome.applied;
  if (applied === undefined) return undefined;
  const ha = applied.ha;
  if (ha === undefined) return applied.placement === undefined ? undefined : [{ name: node, role: 'STANDALONE', ready }];
  const state = outcome.vrrp?.state;
  const role: NodeRole | undefined = state === 'MASTER' || state === 'BACKUP' ? state : undefined;
  const local: NodeStatus = { name: ha.node, ...(role === undefined ? {} : { role }), ready: ready && role !== undefined && outcome.stats !== undefined };
  const peerUp = outcome.peers?.some((p) => p.name === ha.peer && p.established) === true;
  const peerRole: NodeRole | undefined = !peerUp || role === undefined ? undefined : role === 'MASTER' ? 'BACKUP' : 'MASTER';
  const peer: NodeStatus = { name: ha.peer, ...(peerRole === undefined ? {} : { role: peerRole }), ready: peerUp };
  const nodes = [local, peer];
  const rank = (n: NodeStatus): number => (n.role === 'MASTER' ? 0 : n.role === 'BACKUP' ? 1 : 2);
  return nodes.sort((a, b) => rank(a) - rank(b));
}
