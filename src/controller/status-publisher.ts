// Publishes every object's status (status/compute.ts, pure) with the members' traffic figures beside it and the
// node's own section, to a sink (status.json; in Kubernetes mode the status subresources too). Publishes are
// coalesced and spaced: at hundreds of load balancers converging at once, status must take a bounded share of the
// agent's time, whatever the number of objects.
import type { Condition, ObjectStatus } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import { computeStatuses } from '../status/compute.js';
import { renderStatusFile, type NodeStatus, type StatusFile } from '../status/status-file.js';
import { withMemberStats } from '../status/traffic.js';
import { KERNEL_LIMITS_CONDITION, type KernelLimits } from './kernel-limits.js';
import { statsViews, type Outcomes } from './outcomes.js';
import type { DesiredSnapshot } from './snapshot.js';

const PUBLISH_GAP_MS = 100;
const PUBLISH_COST_FACTOR = 10;

export interface StatusPublisherOptions {
  nodeName: string;
  logger: Logger;
  snapshot: DesiredSnapshot;
  outcomes: Outcomes;
  kernelLimits?: KernelLimits;
  /** Receives the status file whenever it may have changed (the writers drop repeats). */
  sink: (file: StatusFile) => Promise<void>;
}

export class StatusPublisher {
  readonly #opts: StatusPublisherOptions;
  #statuses = new Map<string, ObjectStatus>();
  #last: StatusFile | undefined;
  #publishing: Promise<void> = Promise.resolve();
  #queued: Promise<void> | undefined;
  #lastPublished = 0;
  #lastCost = 0;
  /** Publishes done and their wall time (seconds), for /metrics. */
  readonly totals = { count: 0, seconds: 0 };
  /** Ends the wait of a queued publish; with #urgent, none waits (the initial sync's status goes out at once). */
  #wake: (() => void) | undefined;
  #urgent = false;
  /** The node's own condition (kernel limits), with its lastTransitionTime kept while its status holds. */
  #nodeCondition: Condition | undefined;

  constructor(opts: StatusPublisherOptions) {
    this.#opts = opts;
  }

  get statuses(): ReadonlyMap<string, ObjectStatus> {
    return this.#statuses;
  }

  /** The status file last handed to the sink (served at /status). */
  get last(): StatusFile | undefined {
    return this.#last;
  }

  /**
   * Recomputes and publishes every status. Calls that arrive while one is waiting to start share it: N load
   * balancers converging at once cost a few publishes, not N (each is O(objects)).
   */
  publish(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    const next = this.#publishing.then(async () => {
      // At most one publish per PUBLISH_GAP_MS, and the gap grows with what a publish costs
      // (×PUBLISH_COST_FACTOR), so that at any scale status takes a bounded share of the agent's time.
      const gap = Math.max(PUBLISH_GAP_MS, this.#lastCost * PUBLISH_COST_FACTOR);
      const wait = this.#urgent ? 0 : this.#lastPublished + gap - Date.now();
      if (wait > 0) {
        await new Promise<void>((r) => {
          const timer = setTimeout(r, wait);
          this.#wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        this.#wake = undefined;
      }
      this.#queued = undefined;
      const started = Date.now();
      await this.#publishNow();
      this.#lastPublished = Date.now();
      this.#lastCost = this.#lastPublished - started;
      this.totals.count++;
      this.totals.seconds += this.#lastCost / 1000;
    });
    this.#queued = next;
    this.#publishing = next;
    return next;
  }

  /** Publishes at once, not after the gap between publishes (the end of the initial sync). */
  async flush(): Promise<void> {
    this.#urgent = true;
    void this.publish();
    this.#wake?.();
    await this.published();
    this.#urgent = false;
  }

  /** Until the publishes asked for so far are done. */
  async published(): Promise<void> {
    while (this.#queued !== undefined) await this.#queued;
    await this.#publishing;
  }

  async #publishNow(): Promise<void> {
    const { snapshot, outcomes } = this.#opts;
    const now = new Date().toISOString();
    const node = this.#nodeStatus(now);
    const report = this.#opts.kernelLimits?.report;
    const objects = snapshot.reported();
    this.#statuses = computeStatuses({
      objects,
      desired: snapshot.desired,
      outcomes,
      previous: this.#statuses,
      now,
      node: this.#opts.nodeName,
      elsewhere: snapshot.elsewhere,
      ...(report === undefined || report.refusing.length === 0
        ? {}
        : { refusing: { families: new Set(report.refusing), condition: { ...report.condition, type: KERNEL_LIMITS_CONDITION } } }),
    });
    const errors = snapshot.issues.map((i) => ({
      file: i.file,
      document: i.document,
      message: i.path === '' ? i.message : `${i.path}: ${i.message}`,
    }));
    if (snapshot.sourceError !== undefined) errors.unshift({ file: '.', document: 0, message: snapshot.sourceError });
    try {
      // Members' traffic figures go to status.json and /status only (see status/traffic.ts).
      const file = withMemberStats(renderStatusFile(objects, this.#statuses, errors, node), statsViews(outcomes));
      this.#last = file;
      await this.#opts.sink(file);
    } catch (err) {
      this.#opts.logger.error({ err }, 'cannot publish status');
    }
  }

  /** status.json's `node`: this node's name and conditions, and the kernel limits as last checked. */
  #nodeStatus(now: string): NodeStatus {
    const report = this.#opts.kernelLimits?.report;
    const node: NodeStatus = { name: this.#opts.nodeName, conditions: [] };
    if (report === undefined) return node;
    const previous = this.#nodeCondition;
    this.#nodeCondition = {
      ...report.condition,
      lastTransitionTime: previous !== undefined && previous.status === report.condition.status ? previous.lastTransitionTime : now,
    };
    node.conditions.push(this.#nodeCondition);
    node.kernelLimits = { mode: report.mode, limits: report.limits, neighbours: report.neighbours };
    return node;
  }
}
