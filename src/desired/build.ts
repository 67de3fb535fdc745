// Pure: validated objects → one desired model per load balancer, with defaults applied, references resolved
// and the cross-object rules of DESIGN §1 checked. The pipeline: index the objects (object-index.ts), resolve
// each one's load balancer (below), check the rules of each kind (checks.ts), assemble the load balancers without
// problems (assemble.ts).
//
// A problem anywhere in a load balancer's tree blocks the whole load balancer: it is left out of `lbs` and
// the node keeps serving whatever was applied last. Applying the healthy part would silently drop the
// broken listener or member, which is a worse surprise than an ERROR status.
//
// Invariant: every input object is in `owners` or has at least one entry in `problems`, so that status can
// say something true about each one.
import { objectId, type AnyObject, type ApiObject, type Kind, type LbKey } from '../api/v1alpha1/types.js';
import { assemble, treesByOwner } from './assemble.js';
import { checkHealthMonitors, checkL7Policies, checkL7Rules, checkListeners, checkLoadBalancers, checkMembers, checkPools } from './checks.js';
import { checkKernelProtocols } from './checks-kernel.js';
import { checkMemberNetworks } from './member-networks.js';
import type { DesiredListenerTls, DesiredLoadBalancer, DesiredMemberTls, DesiredState, ObjectProblem } from './model.js';
import { find, indexObjects, keyOf, missing, Problems, type Index } from './object-index.js';
import type { ScheduledPlacements } from './topology.js';

export interface BuildOptions {
  /** Bridge for VIP ports that do not name one (the agent's `--bridge`). */
  defaultBridge: string;
  /**
   * Contents of the files that TLS fields name, keyed by the path exactly as written in the spec. The source
   * reads them so that building stays pure; a path missing here is reported as a missing file.
   */
  materials?: ReadonlyMap<string, string>;
  /** The moment certificates must be valid at (expiry checks); now when omitted. */
  now?: Date;
  /** Why this node cannot forward SCTP (its kernel has no SCTP conntrack): SCTP listeners are NotSupported here. */
  sctpUnsupported?: string;
  /**
   * The agent's --node-name: an ACTIVE_STANDBY load balancer placed on it gets this node's side of the pair
   * (model.ts DesiredHa). Omitted (offline validation): no node's side is built.
   */
  nodeName?: string;
  /**
   * Kubernetes mode: the scheduler's placements (status.placement.nodes) of the load balancers without
   * spec.placement.nodes. Given, a load balancer without any placement is not placed yet (no problem); omitted
   * (file mode), spec.placement is the only placement.
   */
  scheduled?: ScheduledPlacements;
}

export function buildDesired(objects: readonly AnyObject[], opts: BuildOptions): DesiredState {
  const problems = new Problems();
  const ix = indexObjects(objects, problems);
  const owners = resolveOwners(ix, problems);
  // Resolved while checking, so that assembly does not read and hash the material a second time.
  const listenerTls = new Map<string, DesiredListenerTls>();
  const memberTls = new Map<string, DesiredMemberTls>();
  const materials = opts.materials ?? new Map<string, string>();
  const now = opts.now ?? new Date();

  checkLoadBalancers(ix, opts.defaultBridge, problems, opts.scheduled);
  checkListeners(ix, owners, materials, now, listenerTls, problems);
  checkPools(ix, materials, now, memberTls, problems);
  checkMembers(ix, problems);
  checkHealthMonitors(ix, problems);
  checkL7Policies(ix, problems);
  checkL7Rules(ix, problems);
  checkKernelProtocols(ix, problems, opts.sctpUnsupported);
  checkMemberNetworks(ix, problems);

  const all = problems.sorted();
  const problemsByOwner = new Map<LbKey, ObjectProblem[]>();
  for (const p of all) {
    const owner = owners.get(`${p.kind}/${p.namespace}/${p.name}`);
    if (owner === undefined) continue;
    const list = problemsByOwner.get(owner);
    if (list === undefined) problemsByOwner.set(owner, [p]);
    else list.push(p);
  }

  const trees = treesByOwner(ix, owners);
  const lbs = new Map<LbKey, DesiredLoadBalancer>();
  const blocked = new Map<LbKey, ObjectProblem[]>();
  for (const lb of ix.loadBalancers) {
    const key = keyOf(lb);
    const own = problemsByOwner.get(key);
    if (own === undefined) lbs.set(key, assemble(lb, trees.get(key), opts.defaultBridge, listenerTls, memberTls, opts.nodeName, opts.scheduled));
    else blocked.set(key, own);
  }
  return { lbs, blocked, problems: all, owners };
}

// References: every object resolved to its load balancer, or a problem on the field that points at its parent.

function resolveOwners(ix: Index, problems: Problems): Map<string, LbKey> {
  const owners = new Map<string, LbKey>();
  for (const lb of ix.loadBalancers) owners.set(objectId(lb), keyOf(lb));

  for (const o of [...ix.listeners, ...ix.pools]) {
    const { namespace } = o.metadata;
    const lb = find(ix, 'LoadBalancer', namespace, o.spec.loadBalancer);
    if (lb === undefined) {
      problems.add(o, 'InvalidReference', missing('load balancer', o.spec.loadBalancer, namespace), '/spec/loadBalancer');
    } else {
      owners.set(objectId(o), keyOf(lb));
    }
  }

  // A child belongs to its parent's load balancer; a missing parent, or one without a load balancer, is
  // the child's problem, named on the field that points at the parent.
  const inherit = <K extends Kind>(
    o: AnyObject,
    parentKind: K,
    parentName: string,
    path: string,
    noun: string,
    orphaned: (parent: ApiObject<K>) => string,
  ): void => {
    const { namespace } = o.metadata;
    const parent = find(ix, parentKind, namespace, parentName);
    const owner = parent === undefined ? undefined : owners.get(objectId(parent));
    if (parent === undefined) problems.add(o, 'InvalidReference', missing(noun, parentName, namespace), path);
    else if (owner === undefined) problems.add(o, 'InvalidReference', orphaned(parent), path);
    else owners.set(objectId(o), owner);
  };
  for (const o of [...ix.members, ...ix.healthMonitors]) {
    inherit(
      o,
      'Pool',
      o.spec.pool,
      '/spec/pool',
      'pool',
      (pool) => `pool "${pool.metadata.name}" belongs to load balancer "${pool.spec.loadBalancer}", which does not exist`,
    );
  }
  for (const o of ix.l7Policies) {
    inherit(
      o,
      'Listener',
      o.spec.listener,
      '/spec/listener',
      'listener',
      (l) => `listener "${l.metadata.name}" belongs to load balancer "${l.spec.loadBalancer}", which does not exist`,
    );
  }
  for (const o of ix.l7Rules) {
    inherit(
      o,
      'L7Policy',
      o.spec.l7Policy,
      '/spec/l7Policy',
      'L7 policy',
      (policy) => `L7 policy "${policy.metadata.name}" has no load balancer: ${whyNoLoadBalancer(ix, policy)}`,
    );
  }
  return owners;
}

function whyNoLoadBalancer(ix: Index, policy: ApiObject<'L7Policy'>): string {
  const listener = find(ix, 'Listener', policy.metadata.namespace, policy.spec.listener);
  return listener === undefined
    ? `listener "${policy.spec.listener}" does not exist`
    : `listener "${listener.metadata.name}" belongs to load balancer "${listener.spec.loadBalancer}", which does not exist`;
}
