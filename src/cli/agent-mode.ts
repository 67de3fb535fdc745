// The two ways the agent runs: where its desired objects come from and where its status and Events go.
// File-watch mode (file-mode.ts): a directory in, status.json out. Kubernetes mode (kubernetes-mode.ts):
// informers in; status.json, the status subresources and Events out.
import type { Controller } from '../controller/controller.js';
import type { LbEvent } from '../controller/reconciler.js';
import type { ObjectProblem } from '../desired/model.js';
import type { AgentMetrics } from '../metrics/metrics.js';
import type { StatusFile } from '../status/status-file.js';

/** What a mode feeds: the controller, asked for lazily (the controller is built with the mode's sinks). */
export type Engine = Pick<Controller, 'setSnapshot' | 'setSourceError' | 'enqueue'>;

export interface AgentMode {
  /** For the start-up log line: `{ watch: DIR }` or `{ kubernetes: NAMESPACE }`. */
  readonly describe: Record<string, string | undefined>;
  start(): Promise<void>;
  /** Re-read now (before each periodic resync). */
  refresh(): Promise<void>;
  stop(): Promise<void>;
  /** The controller's status sink. */
  publish(file: StatusFile): Promise<void>;
  /** A load balancer that is no longer desired is gone from the node. */
  onRemoved(key: string): Promise<void>;
  /** Provisioning milestones and failures (and adoptions) as Events. */
  onEvent(e: LbEvent): void;
  onProblem(p: ObjectProblem): void;
  /** New --kube-api-qps / --kube-api-burst (SIGHUP). */
  setRateLimit(limit: { qps: number; burst: number }): void;
  /** Files and directories the source watches; undefined when it watches none. */
  watchedPaths(): number | undefined;
  /** The agent's metrics are built: add the mode's own (and serve them where the mode does). */
  addMetrics(metrics: AgentMetrics): Promise<void>;
}
