// The reconcile of one key (DESIGN §4): observe the load balancer on the node, plan it against its desired model,
// apply the actions, and record the outcome. Keys come from a work queue (one per load balancer, repeats merged,
// never one key twice at once, backoff on failure); a key whose load balancer is no longer desired, or an orphan
// key (`orphan:<netns>`), removes what is on the node. An invalid spec is terminal: nothing is retried, the last
// valid configuration keeps serving, and status says why.
import { randomUUID } from 'node:crypto';
import type { LbKey } from '../api/v1alpha1/types.js';
import type { DesiredLoadBalancer } from '../desired/model.js';
import { ifaceOfNetns, isOrphanKey, netnsOfKey } from '../desired/names.js';
import { lbPaths } from '../desired/state-dir.js';
import { explain } from '../exec/hints.js';
import type { Logger } from '../log/logger.js';
import { epochMs, trace, tracing } from '../log/trace.js';
import { RetryLater, WorkQueue, type ProcessResult } from '../loop/work-queue.js';
import { formatAction, stagesOf, type Action } from '../plan/actions.js';
import { renderHaproxyConfig } from '../plan/haproxy-config.js';
import { hasKernelListeners } from '../plan/kernel-model.js';
import type { NodeDriver } from '../plan/node-driver.js';
import { planLoadBalancer, type PlanInput } from '../plan/plan.js';
import { renderKeepalivedFor } from '../plan/keepalived-config.js';
import type { ObservedLoadBalancer } from '../plan/observed.js';
import { crashPoint } from './crash-points.js';
import { logVrrpChange, pendingOutcome, pollStats, type LbOutcome, type Outcomes } from './outcomes.js';
import { fingerprint, type DesiredSnapshot } from './snapshot.js';

/** Provisioning milestones and failures, for Kubernetes Events; `actions`: what a reconcile did. */
export interface LbEvent {
  key: LbKey;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  actions?: readonly Action[];
}

/** Plans one load balancer against the node, changing nothing: the heart of both reconcile and `nslb plan`. */
export async function planKey(node: NodeDriver, stateDir: string, key: string, desired: DesiredLoadBalancer | undefined): Promise<Action[]> {
  const netns = desired?.names.netns ?? netnsOfKey(key);
  const iface = desired?.names.iface ?? ifaceOfNetns(netns);
  const nft = desired !== undefined && hasKernelListeners(desired);
  const observed = await node.observe([{ netns, iface, ...(desired === undefined ? { outsideOnly: true } : {}), ...(nft ? { nft } : {}) }]);
  const o = observed.lbs.get(netns) ?? { ifaceInHost: false, stateDir: false };
  return planLoadBalancer(planInput(node, stateDir, netns, iface, desired, o));
}

/** What plan() needs for one load balancer: its models, its configs rendered for this node, what was observed. */
export function planInput(
  node: NodeDriver,
  stateDir: string,
  netns: string,
  iface: string,
  desired: DesiredLoadBalancer | undefined,
  observed: ObservedLoadBalancer,
): PlanInput {
  if (desired === undefined) return { netns, iface, observed };
  const keepalivedConfig = renderKeepalivedFor(desired, node.keepalivedPaths(netns));
  return {
    netns,
    iface,
    desired,
    config: renderHaproxyConfig(desired, lbPaths(stateDir, netns)),
    ...(keepalivedConfig === undefined ? {} : { keepalivedConfig }),
    observed,
  };
}

export interface ReconcilerOptions {
  node: NodeDriver;
  stateDir: string;
  nodeName: string;
  concurrency: number;
  logger: Logger;
  snapshot: DesiredSnapshot;
  outcomes: Outcomes;
  /** Status may have changed: publish it (coalesced; never awaited here). */
  publish: () => void;
  /** A load balancer that is no longer desired is gone from the node (Kubernetes: drop the finalizer). */
  onRemoved?: (key: LbKey) => Promise<void>;
  onEvent?: (e: LbEvent) => void;
  /** After each reconcile of a key: how it ended and how long it took (for /metrics). */
  onReconciled?: (key: LbKey, result: ProcessResult, seconds: number) => void;
}

export class Reconciler {
  readonly #opts: ReconcilerOptions;
  readonly #queue: WorkQueue;
  /** The desired model each key was last queued for: a snapshot queues only the keys whose model changed. */
  readonly #fingerprints = new Map<LbKey, string>();

  constructor(opts: ReconcilerOptions) {
    this.#opts = opts;
    this.#queue = new WorkQueue((key) => this.#reconcile(key), {
      concurrency: opts.concurrency,
      ...(opts.onReconciled === undefined ? {} : { onProcessed: opts.onReconciled }),
    });
  }

  /** Keys waiting for a worker, and retries scheduled so far. */
  get queueStats(): { depth: number; retries: number } {
    return { depth: this.#queue.depth, retries: this.#queue.retries };
  }

  add(key: string): void {
    this.#queue.add(key);
  }

  /** Queued or being reconciled. */
  busy(key: string): boolean {
    return this.#queue.busy(key);
  }

  setConcurrency(n: number): void {
    this.#queue.setConcurrency(n);
  }

  /** After a new snapshot: queue every load balancer whose desired model changed (or that is not ACTIVE). */
  queueChanged(): void {
    const { desired } = this.#opts.snapshot;
    const keys = new Set<LbKey>([...desired.lbs.keys(), ...desired.blocked.keys(), ...this.#fingerprints.keys()]);
    for (const key of keys) {
      const fp = desired.blocked.has(key) ? `blocked:${fingerprint(desired.lbs.get(key))}` : fingerprint(desired.lbs.get(key));
      if (this.#fingerprints.get(key) === fp && this.#opts.outcomes.get(key)?.phase === 'active') continue;
      this.#fingerprints.set(key, fp);
      this.#queue.add(key);
    }
  }

  /** Nothing queued or running. */
  idle(): Promise<void> {
    return this.#queue.idle();
  }

  /** Every key has been reconciled once (those that failed keep retrying in backoff). */
  quiet(): Promise<void> {
    return this.#queue.quiet();
  }

  stop(): Promise<void> {
    return this.#queue.stop();
  }

  /** The load balancer is on the node as desired: ACTIVE, with the generations it now serves. */
  converged(key: LbKey, desired: DesiredLoadBalancer, pid: number | undefined): void {
    const { outcomes, snapshot, node } = this.#opts;
    const outcome = outcomes.get(key) ?? pendingOutcome(desired.names.netns, desired.names.iface);
    outcome.phase = 'active';
    delete outcome.message;
    outcome.applied = desired;
    if (pid !== undefined) outcome.pid = pid;
    const keepalivedPid = desired.ha === undefined ? undefined : node.keepalivedPid(desired.names.netns);
    if (keepalivedPid === undefined) delete outcome.keepalivedPid;
    else outcome.keepalivedPid = keepalivedPid;
    if (!snapshot.desired.blocked.has(key)) outcome.appliedGenerations = snapshot.generationsOf(key);
    outcomes.set(key, outcome);
  }

  async #reconcile(key: LbKey): Promise<void> {
    const { node, outcomes, snapshot } = this.#opts;
    const log = this.#opts.logger.child({ lb: key, reconcileId: randomUUID().slice(0, 8) });
    const blocked = snapshot.desired.blocked.get(key);
    let desired = snapshot.desired.lbs.get(key);
    const previous = outcomes.get(key);
    if (blocked !== undefined) {
      // Keep serving what was last applied; without it, touch nothing and let status say why.
      desired = previous?.applied;
      if (desired === undefined) {
        log.warn({ problems: blocked.length }, 'load balancer has invalid objects; nothing applied');
        return;
      }
    }
    const netns = desired?.names.netns ?? netnsOfKey(key);
    const started = Date.now();
    const outcome: LbOutcome = previous ?? pendingOutcome(netns, ifaceOfNetns(netns));
    if (desired !== undefined) outcomes.set(key, outcome);
    let actions: Action[] = [];
    try {
      // Inside the try: a node that cannot even be observed (Open vSwitch down) is an error to report on the
      // load balancer, with its hint, not a silent retry behind a stale ACTIVE.
      if (tracing) trace('rec', 'start', key, epochMs());
      actions = await planKey(node, this.#opts.stateDir, key, desired);
      if (tracing) trace('rec', 'planned', key, epochMs());
      if (actions.length > 0) {
        outcome.phase = 'pending';
        // Not awaited: a member change must not wait for status.json of every load balancer to be written.
        this.#opts.publish();
        log.info({ actions: actions.map(formatAction) }, 'applying');
      }
      if (desired !== undefined && !isOrphanKey(key)) await node.recordOwner(netns, key);
      for (const stage of stagesOf(actions)) {
        if (stage.length === 1) {
          crashPoint();
          await node.apply(stage[0]!);
          crashPoint();
          continue;
        }
        // Still two crash points per action: both before the stage, and each one's second as it ends (with
        // the other possibly still running). Every action ends before the stage does, failed or not, so that
        // a retry never runs beside the rest of this one.
        for (const _ of stage) crashPoint();
        const ended = await Promise.allSettled(
          stage.map(async (action) => {
            await node.apply(action);
            crashPoint();
          }),
        );
        const failed = ended.find((e): e is PromiseRejectedResult => e.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
      }
    } catch (cause) {
      if (cause instanceof RetryLater) {
        // Not a failure: something outside this node is in the way for now (another node still holds the
        // address of the placement slot this one is taking). PENDING with the reason, no Warning, no backoff:
        // the key comes back after the retry's fixed delay.
        const first = outcome.phase !== 'pending' || outcome.message !== cause.message;
        outcome.phase = 'pending';
        outcome.message = cause.message;
        if (first) {
          log.info({ reason: cause.message, retryInMs: cause.delayMs }, 'waiting');
          this.#opts.onEvent?.({ key, type: 'Normal', reason: 'Waiting', message: cause.message });
        }
        this.#opts.publish();
        throw cause;
      }
      const err = explain(cause);
      outcome.phase = 'error';
      outcome.message = err.message;
      log.error({ err }, 'reconcile failed; will retry with backoff');
      this.#opts.onEvent?.({ key, type: 'Warning', reason: 'ReconcileFailed', message: outcome.message });
      this.#opts.publish();
      throw err;
    }
    if (desired === undefined) {
      outcomes.delete(key);
      this.#fingerprints.delete(key);
      if (actions.length > 0) log.info({ ms: Date.now() - started }, 'removed');
      if (!isOrphanKey(key)) await this.#opts.onRemoved?.(key);
    } else {
      const created = outcome.applied === undefined;
      this.converged(key, desired, node.haproxyPid(netns));
      if (actions.length > 0) {
        log.info({ ms: Date.now() - started }, 'converged');
        this.#opts.onEvent?.({
          key,
          type: 'Normal',
          reason: created ? 'Provisioned' : 'Updated',
          message: `${created ? 'serving' : 'updated'} on ${this.#opts.nodeName} in ${Date.now() - started} ms: ${actions.length} actions`,
          actions,
        });
      }
      const change = await pollStats(node, outcome);
      if (change !== undefined) logVrrpChange(this.#opts.logger, key, change);
    }
    // Not awaited: at hundreds of load balancers a publish waits its turn for up to a few seconds (see
    // status-publisher.ts), and a reconcile that waited with it would hold its place in the queue, idle.
    this.#opts.publish();
  }
}
