// The flags of `nslb run` (DESIGN §3), as the command line, the --config file and SIGHUP see them.
import type { KernelLimitsMode } from '../controller/kernel-limits.js';

export interface RunFlags {
  watch?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  /** Kubernetes mode: only this namespace. */
  namespace?: string;
  stateDir: string;
  bridge: string;
  nodeName: string;
  listen: string;
  /** Kubernetes mode: /metrics over HTTPS for callers the API server authenticates and authorizes. */
  metricsListen?: string;
  /** Start daemons (HAProxy) in this cgroup of the host's, so that they outlive the agent's container. */
  daemonCgroup?: string;
  resync: number;
  concurrency: number;
  logLevel: string;
  /** Milliseconds between HAProxy stats polls (operating status). */
  statusInterval: number;
  /** raise: raise kernel limits that are too low for the load; check: report them only. */
  kernelLimits: KernelLimitsMode;
  /** Kubernetes mode: also serve Services of type LoadBalancer (class nslb.dev/haproxy). */
  serviceProvider?: boolean;
  /** With serviceProvider: also Services of type LoadBalancer that name no class. */
  servicesWithoutClass?: boolean;
  /** With serviceProvider: members are the nodes on the NodePort, or the endpoints directly. */
  serviceMembers?: 'nodes' | 'endpoints';
  /** With serviceProvider: seconds of the provider's leader-election Lease. */
  providerLease?: number;
  /** Kubernetes mode (DESIGN §6): seconds of the node Lease nslb-node-<node> (a node whose Lease expired is dead). */
  nodeLease?: number;
  /** Kubernetes mode: the duration the node Lease's last renewal asks for on a clean stop (upgrades move nothing). */
  restartGrace?: number;
  /** Kubernetes mode: seconds of the Lease nslb-scheduler (one agent schedules). */
  schedulerLease?: number;
  /** Kubernetes mode: the share of known nodes that may die at once and still be failed over (circuit breaker). */
  failoverThreshold?: number;
  /** Kubernetes mode: how many handovers a drain makes at once (schedule.ts, maxDrainMoves). */
  drainConcurrency?: number;
  /** Kubernetes mode: status and Event writes per second, and at once (client-go's QPS and burst). */
  kubeApiQps: number;
  kubeApiBurst: number;
}

/** `--config FILE`: the flags file, and which flags the command line gave (those win over the file). */
export interface FlagsFileOption {
  file: string;
  fromCommandLine: ReadonlySet<keyof RunFlags>;
}
