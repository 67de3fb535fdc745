// The desired state the engine works from: the last snapshot of objects from the source, built into one model per
// load balancer (desired/build.ts), with the generations file mode counts itself and the problems logged once.
import { createHash } from 'node:crypto';
import type { AnyObject, LbKey } from '../api/v1alpha1/types.js';
import { objectId } from '../api/v1alpha1/types.js';
import { buildDesired } from '../desired/build.js';
import type { DesiredLoadBalancer, DesiredState, ObjectProblem } from '../desired/model.js';
import type { Logger } from '../log/logger.js';
import type { FileIssue } from '../sources/parse.js';
import { placedElsewhere } from './placement.js';
import type { ScheduledPlacements } from '../desired/topology.js';

/** Kubernetes mode's placements (file mode has none: spec.placement.nodes decides there). */
export interface SnapshotPlacement {
  /** The load balancers this node serves (status.placement.nodes, or spec.placement.nodes). */
  served?: (key: LbKey) => boolean;
  /** The scheduler's placements, for the load balancers without spec.placement.nodes. */
  scheduled?: ScheduledPlacements;
  /** ACTIVE_STANDBY pairs whose MASTER role this node gives up (its Node is drained, the peer is ready). */
  leaveMaster?: (key: LbKey) => boolean;
}

const fingerprints = new WeakMap<DesiredLoadBalancer, string>();

/** A hash of the desired model, computed once per model object (a resync compares hundreds of them). */
export function fingerprint(d: DesiredLoadBalancer | undefined): string {
  if (d === undefined) return '';
  let fp = fingerprints.get(d);
  if (fp === undefined) {
    fp = createHash('sha256').update(JSON.stringify(d)).digest('hex');
    fingerprints.set(d, fp);
  }
  return fp;
}

export class DesiredSnapshot {
  objects: AnyObject[] = [];
  issues: FileIssue[] = [];
  desired: DesiredState = { lbs: new Map(), blocked: new Map(), problems: [], owners: new Map() };
  /** Load balancers placed on other nodes (spec.placement.nodes; in Kubernetes mode, the scheduler's placement): neither served nor reported here. */
  elsewhere: ReadonlySet<LbKey> = new Set();
  /** Why the source cannot be read now (the last snapshot stays in force), or undefined. */
  sourceError: string | undefined;
  readonly #bridge: string;
  readonly #nodeName: string;
  readonly #sctpUnsupported: string | undefined;
  /** The objects of each load balancer, from objects and desired; rebuilt on first use after a snapshot. */
  #byOwner: Map<LbKey, AnyObject[]> | undefined;
  readonly #generations = new Map<string, { spec: string; generation: number }>();
  #loggedProblems = new Set<string>();

  constructor(opts: { bridge: string; nodeName: string; sctpUnsupported?: string | undefined }) {
    this.#bridge = opts.bridge;
    this.#nodeName = opts.nodeName;
    this.#sctpUnsupported = opts.sctpUnsupported;
  }

  /**
   * Takes a new snapshot of the desired objects, and keeps the load balancers this node serves: `served` (the
   * placements Kubernetes mode reads) decides where given, else spec.placement.nodes.
   */
  update(objects: AnyObject[], issues: FileIssue[], materials: ReadonlyMap<string, string>, placement: SnapshotPlacement = {}): void {
    const { served, scheduled, leaveMaster } = placement;
    this.objects = objects.map((o) => this.#stampGeneration(o));
    this.issues = issues;
    this.desired = buildDesired(this.objects, {
      defaultBridge: this.#bridge,
      materials,
      nodeName: this.#nodeName,
      ...(scheduled === undefined ? {} : { scheduled }),
      ...(this.#sctpUnsupported === undefined ? {} : { sctpUnsupported: this.#sctpUnsupported }),
    });
    this.#byOwner = undefined;
    // Placed on other nodes only (valid or not): not this node's to serve, nor to report on. Invalid children
    // keep the last valid configuration serving, but not here where it is no longer placed.
    const elsewhere =
      served === undefined
        ? placedElsewhere(this.objects, this.#nodeName)
        : new Set([...this.desired.lbs.keys(), ...this.desired.blocked.keys()].filter((k) => !served(k)));
    for (const key of elsewhere) {
      this.desired.lbs.delete(key);
      this.desired.blocked.delete(key);
    }
    this.elsewhere = elsewhere;
    // A drained node's pairs: the MASTER role goes to the peer (plan.ts), before the scheduler moves the slot.
    if (leaveMaster !== undefined) {
      for (const [key, lb] of this.desired.lbs) {
        if (lb.ha !== undefined && leaveMaster(key)) this.desired.lbs.set(key, { ...lb, ha: { ...lb.ha, leave: true } });
      }
    }
  }

  /** The objects whose status this node reports: all but those of load balancers placed elsewhere. */
  reported(): AnyObject[] {
    if (this.elsewhere.size === 0) return this.objects;
    return this.objects.filter((o) => {
      const owner = this.desired.owners.get(objectId(o));
      return owner === undefined || !this.elsewhere.has(owner);
    });
  }

  /** Logs the problems of desired objects (and reports them) when they appear, not on every resync's re-read. */
  reportProblems(logger: Logger, onProblem: ((p: ObjectProblem) => void) | undefined): void {
    const problems = new Set(this.desired.problems.map((p) => `${p.kind}/${p.namespace}/${p.name}: ${p.message}`));
    for (const p of this.desired.problems) {
      const text = `${p.kind}/${p.namespace}/${p.name}: ${p.message}`;
      if (this.#loggedProblems.has(text)) continue;
      logger.warn({ object: `${p.kind}/${p.namespace}/${p.name}`, reason: p.reason }, p.message);
      onProblem?.(p);
    }
    this.#loggedProblems = problems;
  }

  /** The generation of each object of the load balancer, as the snapshot has it. */
  generationsOf(key: LbKey): Map<string, number> {
    // Indexed once per snapshot: looking through every object for each load balancer that converges made
    // a bulk creation O(N²).
    if (this.#byOwner === undefined) {
      this.#byOwner = new Map();
      for (const o of this.objects) {
        const owner = this.desired.owners.get(objectId(o));
        if (owner === undefined) continue;
        const list = this.#byOwner.get(owner);
        if (list === undefined) this.#byOwner.set(owner, [o]);
        else list.push(o);
      }
    }
    const result = new Map<string, number>();
    for (const o of this.#byOwner.get(key) ?? []) result.set(objectId(o), o.metadata.generation ?? 1);
    return result;
  }

  #stampGeneration(o: AnyObject): AnyObject {
    if (o.metadata.generation !== undefined) return o;
    // File mode has no API server to count generations: count spec changes ourselves.
    const id = objectId(o);
    const spec = JSON.stringify(o.spec);
    const prev = this.#generations.get(id);
    const generation = prev === undefined ? 1 : prev.spec === spec ? prev.generation : prev.generation + 1;
    this.#generations.set(id, { spec, generation });
    return { ...o, metadata: { ...o.metadata, generation } } as AnyObject;
  }
}
