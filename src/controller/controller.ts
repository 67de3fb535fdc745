// The engine (DESIGN §4), put together: snapshots from a source become the desired state (snapshot.ts); changed
// load balancers are queued and reconciled (reconciler.ts); the clock resyncs, watches HAProxy and polls stats
// (resync.ts); status is recomputed and published (status-publisher.ts). The node driver is injected: the
// controller knows the node only through plan/node-driver.ts.
import type { AnyObject, LbKey, ObjectStatus } from '../api/v1alpha1/types.js';
import type { ObjectProblem } from '../desired/model.js';
import type { Logger } from '../log/logger.js';
import type { ProcessResult } from '../loop/work-queue.js';
import type { NodeDriver } from '../plan/node-driver.js';
import type { FileIssue } from '../sources/parse.js';
import type { StatusFile } from '../status/status-file.js';
import type { LbStatsView } from '../status/traffic.js';
import type { KernelLimits } from './kernel-limits.js';
import { statsViews, type Outcomes } from './outcomes.js';
import { Reconciler, type LbEvent } from './reconciler.js';
import { Resync, type Periods } from './resync.js';
import { DesiredSnapshot, type SnapshotPlacement } from './snapshot.js';
import { StatusPublisher } from './status-publisher.js';

export interface ControllerOptions {
  node: NodeDriver;
  stateDir: string;
  bridge: string;
  nodeName: string;
  concurrency: number;
  logger: Logger;
  /** Receives the status file whenever it may have changed (the writers drop repeats). */
  publish: (file: StatusFile) => Promise<void>;
  /** A load balancer that is no longer desired is gone from the node (Kubernetes: drop the finalizer). */
  onRemoved?: (key: LbKey) => Promise<void>;
  /** Provisioning milestones and failures, for Kubernetes Events; `actions`: what a reconcile did. */
  onEvent?: (e: LbEvent) => void;
  /** A problem of one desired object (invalid spec, dangling reference) when it appears, for Kubernetes Events. */
  onProblem?: (p: ObjectProblem) => void;
  /** After each reconcile of a key: how it ended and how long it took (for /metrics). */
  onReconciled?: (key: LbKey, result: ProcessResult, seconds: number) => void;
  /** The node's kernel limits, checked against the load on every snapshot and resync (absent in tests). */
  kernelLimits?: KernelLimits;
  /** Files and directories the source watches (one inotify watch each); undefined when it watches none. */
  watchedPaths?: () => number | undefined;
  /** Processes the agent started so far (the resync's summary line says how many it cost). */
  spawned?: () => number;
  /** Why this node cannot forward SCTP, when it cannot (SCTP listeners are then NotSupported, DESIGN §8). */
  sctpUnsupported?: string;
}

export class Controller {
  readonly #opts: ControllerOptions;
  readonly #snapshot: DesiredSnapshot;
  readonly #outcomes: Outcomes = new Map();
  readonly #publisher: StatusPublisher;
  readonly #reconciler: Reconciler;
  readonly #resync: Resync;
  #synced = false;

  constructor(opts: ControllerOptions) {
    this.#opts = opts;
    this.#snapshot = new DesiredSnapshot({ bridge: opts.bridge, nodeName: opts.nodeName, sctpUnsupported: opts.sctpUnsupported });
    const shared = { snapshot: this.#snapshot, outcomes: this.#outcomes, logger: opts.logger };
    this.#publisher = new StatusPublisher({
      ...shared,
      nodeName: opts.nodeName,
      sink: opts.publish,
      ...(opts.kernelLimits === undefined ? {} : { kernelLimits: opts.kernelLimits }),
    });
    const publish = (): Promise<void> => this.#publisher.publish();
    this.#reconciler = new Reconciler({
      ...shared,
      node: opts.node,
      stateDir: opts.stateDir,
      nodeName: opts.nodeName,
      concurrency: opts.concurrency,
      publish: () => void publish(),
      ...(opts.onRemoved === undefined ? {} : { onRemoved: opts.onRemoved }),
      ...(opts.onEvent === undefined ? {} : { onEvent: opts.onEvent }),
      ...(opts.onReconciled === undefined ? {} : { onReconciled: opts.onReconciled }),
    });
    this.#resync = new Resync({
      ...shared,
      node: opts.node,
      stateDir: opts.stateDir,
      reconciler: this.#reconciler,
      publish,
      ...(opts.onEvent === undefined ? {} : { onEvent: opts.onEvent }),
      ...(opts.kernelLimits === undefined ? {} : { kernelLimits: opts.kernelLimits }),
      ...(opts.watchedPaths === undefined ? {} : { watchedPaths: opts.watchedPaths }),
      ...(opts.spawned === undefined ? {} : { spawned: opts.spawned }),
    });
  }

  /** The initial sync is done (/readyz). */
  get synced(): boolean {
    return this.#synced;
  }

  /** Status publishes done and their wall time (for /metrics). */
  get publishes(): { readonly count: number; readonly seconds: number } {
    return this.#publisher.totals;
  }

  get statuses(): ReadonlyMap<string, ObjectStatus> {
    return this.#publisher.statuses;
  }

  /** The status file last published, with the members' figures (/status). */
  get lastStatus(): StatusFile | undefined {
    return this.#publisher.last;
  }

  /** Read-only, for /metrics: keys waiting for a worker, and retries scheduled so far. */
  get queueStats(): { depth: number; retries: number } {
    return this.#reconciler.queueStats;
  }

  /** Read-only, for /metrics and status.json: each load balancer on the node and its last `show stat`. */
  loadBalancerStats(): LbStatsView[] {
    return statsViews(this.#outcomes);
  }

  /** A new snapshot of the desired objects: queue every load balancer whose desired model changed. */
  setSnapshot(objects: AnyObject[], issues: FileIssue[], materials: ReadonlyMap<string, string> = new Map(), placement?: SnapshotPlacement): void {
    this.#snapshot.update(objects, issues, materials, placement);
    // Before anything is queued: a limit raised now is raised before the load balancers that need it exist.
    this.#resync.checkKernelLimits();
    this.#reconciler.queueChanged();
    this.#snapshot.reportProblems(this.#opts.logger, this.#opts.onProblem);
    void this.#publisher.publish();
  }

  /**
   * The source cannot be read (the watched directory vanished or became unreadable). Nothing is torn down:
   * the last snapshot stays in force, and status.json says why. Undefined clears it.
   */
  setSourceError(message: string | undefined): void {
    if (message === this.#snapshot.sourceError) return;
    this.#snapshot.sourceError = message;
    void this.#publisher.publish();
  }

  /** Load balancers reconciled at once; changed live on SIGHUP (`--concurrency` in the --config file). */
  setConcurrency(n: number): void {
    this.#reconciler.setConcurrency(n);
  }

  /** Queue one load balancer (e.g. one being deleted whose finalizer is still ours to remove). */
  enqueue(key: LbKey): void {
    this.#reconciler.add(key);
  }

  /** One resync now (the clock runs them after `startPeriodic`). */
  resync(): Promise<void> {
    return this.#resync.once();
  }

  /** Ask every running HAProxy for `show stat` now (the clock polls after `startPeriodic`). */
  pollStats(): Promise<void> {
    return this.#resync.pollStats();
  }

  /** Every load balancer and orphan has been reconciled once (those that failed keep retrying in backoff). */
  async initialSyncDone(): Promise<void> {
    await this.#resync.once();
    await this.#reconciler.quiet();
    // Its status published at once, not after the gap between publishes.
    await this.#publisher.flush();
    this.#synced = true;
  }

  /** Starts the periodic resync (re-reading the source with `refresh` first), the stats poll and the exit watch. */
  startPeriodic(periods: Periods, refresh: () => Promise<void>): void {
    this.#resync.start(periods, refresh);
  }

  setPeriods(periods: Periods): void {
    this.#resync.setPeriods(periods);
  }

  stopPeriodic(): void {
    this.#resync.stop();
  }

  /** Nothing queued or running, and the status of it all published. */
  async idle(): Promise<void> {
    await this.#reconciler.idle();
    await this.#publisher.published();
  }

  async stop(): Promise<void> {
    this.#resync.stop();
    await this.#reconciler.stop();
    await this.#publisher.published();
  }
}
