// The node as the controller sees it: what a node driver must offer. Types only. The controller is given one
// (drivers/node-driver.ts on a real node, test/support/fake-node.ts in the loop's unit tests) and never imports a
// concrete driver; a driver is an object built by the agent's composition root (cli/run.ts), holding its own
// watches, batchers and counters.
//
// A new kind of node work (keepalived, nftables, …) slots in as: its observed fields in observed.ts, its actions in
// actions.ts, planned in plan.ts, and one more sub-driver that observes and applies them behind this interface.
import type { Action } from './actions.js';
import type { StatRow } from './haproxy-stats.js';
import type { PeerSession } from './haproxy-peers.js';
import type { KeepalivedPaths } from './keepalived-config.js';
import type { ObservedNode, ObservedVrrpState } from './observed.js';

/** A load balancer the observer is asked to look at closely (inside its netns, its HAProxy). */
export interface ObserveTarget {
  netns: string;
  iface: string;
  /**
   * Only whether its netns exists, not what is inside (links, addresses, routes): a load balancer being removed
   * needs nothing more, and reading it would cost an `ip` process per deletion.
   */
  outsideOnly?: boolean;
  /** It has UDP or SCTP listeners: read its nft table and its members' health too. */
  nft?: boolean;
}

export interface ObserveOptions {
  /**
   * 'mine' (the default, the agent's garbage collection) keeps only what this agent made: a state dir under its
   * --state-dir, or a port marked with it, so that two agents on one node never collect each other's load
   * balancers. 'node' (`nslb cleanup`) keeps everything that carries nslb's markers.
   */
  scope?: 'mine' | 'node';
  /**
   * A resync: every target is looked at, and no target means none (not "everything found"); netns reads come
   * from the event-fed cache where it still stands.
   */
  nodeWide?: boolean;
}

/** What the drivers did, counted for /metrics. */
export interface DriverCounters {
  /** HAProxy reloads signalled (SIGUSR2 to the master), by outcome. */
  haproxyReloads: { ok: number; failed: number };
  /** HAProxy processes started (new load balancer, or a restart). */
  haproxyStarts: number;
  /** Runtime-API changes applied without a reload (one per command sent: add/del server, weight, state…). */
  runtimeUpdates: number;
  /** Runtime-API change sets that HAProxy refused, so a reload was done instead. */
  runtimeFallbacks: number;
  /** Actions applied and their wall time (seconds, summed over concurrent ones), by action kind. */
  actions?: Map<string, { count: number; seconds: number }>;
  /** Observations and their wall time (seconds). */
  observe?: { count: number; seconds: number };
  /** ACTIVE_STANDBY: what the keepalived driver and its HAProxy health monitor did (absent in fakes). */
  keepalived?: KeepalivedCounters;
}

export interface KeepalivedCounters {
  readonly driver: {
    /** keepalived processes started, and configs reloaded (SIGHUP). */
    readonly starts: number;
    readonly reloads: number;
    /** Planned handovers of a VIP (a MASTER stopped: SYN drop, open connections waited for), and connections still open when one let go. */
    readonly handovers: number;
    readonly handoverCut: number;
  };
  /** The HAProxy health monitor (drivers/keepalived/haproxy-health.ts): health file writes, runtime-API checks asked, PID checks passed. */
  readonly health: { readonly writes: number; readonly apiChecks: number; readonly pidPasses: number };
}

/** A HAProxy of this state dir that runs now, and the load balancer its state dir says it serves. */
export interface RunningHaproxy {
  /** `namespace/name` of the LoadBalancer, from the state dir's owner marker. */
  key: string;
  netns: string;
  pid: number;
}

export interface NodeDriver {
  /**
   * Every nslb-marked thing on the node (OVS ports, netns, state dirs), and a close look (links, addresses,
   * routes, HAProxy, config, certificates) at the targets; with no target and not node-wide, at everything found.
   */
  observe(targets: readonly ObserveTarget[], options?: ObserveOptions): Promise<ObservedNode>;
  /** Applies one action; each is idempotent, so replaying a plan after a crash is safe. */
  apply(action: Action): Promise<void>;
  /** Records which load balancer the netns's state belongs to, so that cleanup and GC can name it after a crash. */
  recordOwner(netns: string, key: string): Promise<void>;
  /** The master PID of the HAProxy serving the netns, if one runs its config. Reads /proc only. */
  haproxyPid(netns: string): number | undefined;
  /** What an ACTIVE_STANDBY load balancer's keepalived config names (scripts shipped with nslb, files in the state dir). */
  keepalivedPaths(netns: string): KeepalivedPaths;
  /** The PID of the keepalived running the netns's config, if one does. Reads /proc only. */
  keepalivedPid(netns: string): number | undefined;
  /**
   * Planned handovers under way (a leaving MASTER holding new connections off until its VIP has moved): the
   * periodic resync waits for them. Absent in fakes.
   */
  handoversInFlight?(): number;
  /** The last VRRP state keepalived announced, while the keepalived that announced it runs. No process spawned. */
  vrrpState(netns: string): ObservedVrrpState | undefined;
  /** HAProxy's `show peers` for the netns, over its runtime socket (ACTIVE_STANDBY: is the peer node's HAProxy there?). */
  showPeers(netns: string): Promise<PeerSession[]>;
  /** Alive and not a zombie. Reads /proc only. */
  processAlive(pid: number): boolean;
  /** HAProxy's `show stat` for the netns, over its runtime socket (no process). */
  showStat(netns: string): Promise<StatRow[]>;
  /** `show stat` and `show peers` in one connection to the runtime socket (ACTIVE_STANDBY's poll). */
  showStatAndPeers?(netns: string): Promise<{ stats: StatRow[]; peers: PeerSession[] }>;
  /** Every HAProxy of this state dir that runs now (adoption after an agent restart). */
  runningHaproxies(): RunningHaproxy[];
  /**
   * With `--daemon-cgroup`: puts the daemons found outside that cgroup back (a process only when one is) and
   * returns their PIDs; without it, nothing.
   */
  keepDaemonsInCgroup?(): Promise<number[]>;
}
