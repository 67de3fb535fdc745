// The node driver: the one object through which the agent observes and changes the node (plan/node-driver.ts is
// its contract). Built by the composition root (cli/run.ts, or a one-shot command) with a runner and a state dir;
// it holds what the sub-drivers keep between calls (the `ip monitor` watch, the OVSDB monitor session, the
// batchers, the counters), so that two of them in one process share nothing. Nothing here decides: plan/ does.
import { writeFile } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import { ifaceOfNetns, isMemberNetworkIfaceOf, isNslbNetnsName, netnsOfKey } from '../desired/names.js';
import { lbPaths, lbRoot } from '../desired/state-dir.js';
import type { Runner, SpawnCounter } from '../exec/run.js';
import type { Action } from '../plan/actions.js';
import { parseShowStat, type StatRow } from '../plan/haproxy-stats.js';
import type { DriverCounters, NodeDriver, ObserveOptions, ObserveTarget, RunningHaproxy } from '../plan/node-driver.js';
import { madeBy, type ObservedLoadBalancer, type ObservedNode, type ObservedVrrpState } from '../plan/observed.js';
import { DaemonCgroup } from './cgroup.js';
import { HaproxyDriver } from './haproxy/driver.js';
import { KeepalivedDriver } from './keepalived/driver.js';
import type { KeepalivedPaths } from '../plan/keepalived-config.js';
import { parseShowPeers, type PeerSession } from '../plan/haproxy-peers.js';
import { ensureStateDir, readOwner } from './haproxy/files.js';
import { haproxyPid } from './haproxy/process.js';
import { queryRuntime, queryRuntimeAll } from './haproxy/runtime-api.js';
import { HOST_PATHS, KernelDriver } from './kernel/limits.js';
import { DEVICE_WAIT_MS, NetnsDriver } from './netns/driver.js';
import { hostHasLink } from './netns/netns.js';
import { NftDriver } from './nft/driver.js';
import { OvsDriver } from './ovs/driver.js';
import { processAlive, readSmall } from './proc.js';
import { epochMs, trace, tracing } from '../log/trace.js';

export interface LinuxNodeOptions {
  run: Runner;
  stateDir: string;
  /** Counts what the watches start (the runner counts the rest). */
  spawns?: SpawnCounter;
  /** `--daemon-cgroup`: the host cgroup the daemons start in (the runner starts them there), kept on resync. */
  daemonCgroup?: string;
}

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** Actions that change what a netns read sees (links, addresses, routes); HAProxy's own do not. */
const CHANGES_NETNS: ReadonlySet<Action['kind']> = new Set(['netns.add', 'netns.delete', 'link.moveToNetns', 'link.configure']);
/** nft reads at a time (each an `ip netns exec … nft -j list`). */
const NFT_READS_AT_ONCE = 8;

export class LinuxNodeDriver implements NodeDriver {
  readonly stateDir: string;
  readonly kernel = new KernelDriver(HOST_PATHS);
  readonly #netns: NetnsDriver;
  readonly #ovs: OvsDriver;
  readonly #haproxy: HaproxyDriver;
  readonly #cgroup: DaemonCgroup | undefined;
  readonly #nft: NftDriver;
  readonly #keepalived: KeepalivedDriver;

  constructor(opts: LinuxNodeOptions) {
    this.stateDir = opts.stateDir;
    this.#netns = new NetnsDriver(opts.run, opts.stateDir, opts.spawns);
    this.#ovs = new OvsDriver(opts.run, opts.stateDir);
    this.#haproxy = new HaproxyDriver(opts.run, opts.stateDir);
    this.#cgroup = opts.daemonCgroup === undefined ? undefined : new DaemonCgroup(opts.run, opts.daemonCgroup);
    this.#haproxy.counters.actions = this.#actions;
    this.#haproxy.counters.observe = this.#observeTime;
    this.#nft = new NftDriver(opts.run, opts.stateDir);
    this.#keepalived = new KeepalivedDriver(opts.run, opts.stateDir);
    const k = this.#keepalived;
    this.#haproxy.counters.keepalived = { driver: k.counters, health: k.health.counters };
  }

  readonly #actions = new Map<string, { count: number; seconds: number }>();
  readonly #observeTime = { count: 0, seconds: 0 };

  /** One object for the agent's lifetime: /metrics holds on to it and reads it at every scrape. */
  get counters(): DriverCounters {
    return this.#haproxy.counters;
  }

  /**
   * The agent's event feeds: changes inside the load balancers' netns (`ip monitor`) and in Open vSwitch (an
   * OVSDB monitor session), so that unchanged things are not read again. One-shot commands never start them.
   */
  startWatching(logger: Logger): void {
    this.#netns.watch.start(logger);
    this.#ovs.monitor.start(logger);
    // Not a feed but the agent's too: HAProxy's health, judged for keepalived (keepalived/haproxy-health.ts).
    this.#keepalived.health.start(logger);
  }

  stopWatching(): void {
    this.#netns.watch.stop();
    this.#ovs.monitor.stop();
    this.#keepalived.health.stop();
  }

  async observe(targets: readonly ObserveTarget[], options: ObserveOptions = {}): Promise<ObservedNode> {
    const started = performance.now();
    try {
      return await this.#observe(targets, options);
    } finally {
      this.#observeTime.count++;
      this.#observeTime.seconds += (performance.now() - started) / 1000;
    }
  }

  async #observe(targets: readonly ObserveTarget[], options: ObserveOptions): Promise<ObservedNode> {
    const scope = options.scope ?? 'mine';
    const nodeWide = options.nodeWide === true;
    const stateDirs = this.#stateDirs();
    const [ovs, netnsNames] = await Promise.all([this.#ovs.observe(), this.#netns.names(nodeWide)]);
    const lbs = new Map<string, ObservedLoadBalancer>();
    const entry = (netns: string): ObservedLoadBalancer => {
      let e = lbs.get(netns);
      if (e === undefined) {
        e = { ifaceInHost: false, stateDir: false };
        lbs.set(netns, e);
      }
      return e;
    };
    // A reconcile of a few keys (not node-wide, not garbage collection) looks at those keys only: its cost must
    // not grow with the number of load balancers on the node.
    const only = targets.length > 0 && !nodeWide ? new Set(targets.map((t) => t.netns)) : undefined;
    const wantedHere = (netns: string): boolean => only === undefined || only.has(netns);
    for (const port of ovs.ports) {
      if (port.lb === undefined) continue;
      const netns = netnsOfKey(port.lb);
      if (!wantedHere(netns)) continue;
      const e = entry(netns);
      e.lbKey = port.lb;
      // A member network's port (DESIGN §8) is the load balancer's too, but not its VIP port.
      if (isMemberNetworkIfaceOf(netns, port.iface)) {
        e.memberPorts ??= [];
        e.memberPorts.push({ port, inHost: false });
      } else e.port = port;
    }
    const existingNetns = new Set(netnsNames.filter((n) => isNslbNetnsName(n) && wantedHere(n)));
    for (const netns of stateDirs.filter(wantedHere)) {
      const e = entry(netns);
      e.stateDir = true;
      const owner = e.lbKey ?? readOwner(lbPaths(this.stateDir, netns));
      if (owner !== undefined) e.lbKey = owner;
    }
    for (const netns of existingNetns) entry(netns).netns = { name: netns, loUp: false };
    for (const t of targets) entry(t.netns);
    if (scope === 'mine') {
      const wanted = new Set(targets.map((t) => t.netns));
      for (const [netns, e] of lbs) if (!madeBy(e, this.stateDir) && !wanted.has(netns)) lbs.delete(netns);
    }

    // Look closely (pidfile, /proc, config, certs) only at the targets; with none (garbage collection,
    // cleanup), at everything found, so that a single-key reconcile costs the same with 1 or 500 on the node.
    // A resync (node-wide) names every load balancer it wants looked at, so none may mean none.
    const close = targets.length === 0 && !nodeWide ? [...lbs.entries()] : targets.map((t) => [t.netns, entry(t.netns)] as const);
    for (const [netns, e] of close) {
      this.#haproxy.observe(netns, e);
      this.#keepalived.observe(netns, e);
      e.ifaceInHost = hostHasLink(ifaceOfNetns(netns));
      for (const m of e.memberPorts ?? []) m.inHost = hostHasLink(m.port.iface);
    }
    // The kernel's side of load balancers with UDP or SCTP listeners (one `nft` each), or whose table may exist.
    const nftTargets = new Set(targets.filter((t) => t.nft === true).map((t) => t.netns));
    const nftClose = close.filter(([netns]) => nftTargets.has(netns) || this.#nft.mayHaveTable(netns));
    for (let i = 0; i < nftClose.length; i += NFT_READS_AT_ONCE) {
      await Promise.all(
        nftClose.slice(i, i + NFT_READS_AT_ONCE).map(async ([netns, e]) => {
          e.nft = await this.#nft.observe(netns, existingNetns.has(netns));
        }),
      );
    }
    // A load balancer that should have a HAProxy but whose pidfile says nothing: look for it by its config.
    await this.#haproxy.observeByConfig(close.filter(([, e]) => e.haproxy === undefined && (e.netns !== undefined || e.stateDir)));
    // The same for keepalived, where one may run: its config is there, or the state dir is gone.
    await this.#keepalived.observeByConfig(
      close.filter(([, e]) => e.keepalived === undefined && (e.keepalivedConfig !== undefined || (!e.stateDir && e.netns !== undefined))),
    );
    const inside = await this.#netns.read(
      targets.filter((t) => existingNetns.has(t.netns) && t.outsideOnly !== true),
      nodeWide,
    );
    for (const [netns, value] of inside) entry(netns).netns = value;
    return { lbs, bridges: ovs.bridges };
  }

  #stateDirs(): string[] {
    try {
      return readdirSync(lbRoot(this.stateDir)).filter(isNslbNetnsName);
    } catch {
      return [];
    }
  }

  async apply(a: Action): Promise<void> {
    // Whatever this changes inside a netns is read again next time, event or not. Not after a member change
    // through the runtime API or a reload: the next change to that load balancer would wait on an `ip` read.
    const dirties = 'netns' in a && CHANGES_NETNS.has(a.kind);
    if (dirties) this.#netns.watch.markDirty(a.netns);
    const started = performance.now();
    try {
      await this.#applyOne(a);
    } finally {
      const t = this.#actions.get(a.kind) ?? { count: 0, seconds: 0 };
      t.count++;
      t.seconds += (performance.now() - started) / 1000;
      this.#actions.set(a.kind, t);
      if (tracing) trace('act', a.kind, 'netns' in a ? a.netns : '-', performance.timeOrigin + started, epochMs());
      if (dirties) this.#netns.watch.markDirty(a.netns);
      if (a.kind.startsWith('ovs.') || a.kind === 'link.moveToNetns') this.#ovs.changed();
    }
  }

  async #applyOne(a: Action): Promise<void> {
    switch (a.kind) {
      case 'ovs.addPort':
      case 'ovs.deletePort':
        return this.#ovs.apply(a);
      case 'link.moveToNetns':
        await this.#ovs.waitForDevice(a.iface, DEVICE_WAIT_MS);
        return this.#netns.apply(a);
      case 'netns.add':
      case 'netns.delete':
      case 'link.configure':
        return this.#netns.apply(a);
      case 'haproxy.writeConfig':
      case 'haproxy.runtime':
      case 'haproxy.start':
      case 'haproxy.reload':
      case 'haproxy.stop':
        return this.#haproxy.apply(a);
      case 'nft.apply':
        return this.#nft.apply(a);
      case 'stateDir.delete':
        // A notify script whose keepalived was killed outright would outlive the directory (blocked on its FIFO).
        await this.#keepalived.stopStrayNotifiers(a.netns);
        this.#keepalived.health.forget(a.netns);
        await this.#haproxy.apply(a);
        this.#keepalived.health.forget(a.netns);
        return;
      case 'keepalived.writeConfig':
      case 'keepalived.start':
      case 'keepalived.reload':
      case 'keepalived.stop':
      case 'keepalived.removeFiles':
      case 'keepalived.endHandover':
      case 'keepalived.switchOver':
        return this.#keepalived.apply(a);
    }
  }

  async recordOwner(netns: string, key: string): Promise<void> {
    const paths = lbPaths(this.stateDir, netns);
    // Every reconcile asks; only the first one (or one after a hand edit) writes.
    if (readSmall(paths.owner) === `${key}\n`) return;
    await ensureStateDir(paths);
    await writeFile(paths.owner, `${key}\n`, { mode: 0o600 });
  }

  haproxyPid(netns: string): number | undefined {
    return haproxyPid(lbPaths(this.stateDir, netns));
  }

  keepalivedPaths(netns: string): KeepalivedPaths {
    return this.#keepalived.configPaths(netns);
  }

  keepalivedPid(netns: string): number | undefined {
    return this.#keepalived.pid(netns);
  }

  handoversInFlight(): number {
    return this.#keepalived.handoversInFlight;
  }

  vrrpState(netns: string): ObservedVrrpState | undefined {
    return this.#keepalived.vrrpState(netns);
  }

  async showPeers(netns: string): Promise<PeerSession[]> {
    return parseShowPeers(await queryRuntime(lbPaths(this.stateDir, netns).socket, 'show peers'));
  }

  processAlive(pid: number): boolean {
    return processAlive(pid);
  }

  async showStat(netns: string): Promise<StatRow[]> {
    return parseShowStat(await queryRuntime(lbPaths(this.stateDir, netns).socket, 'show stat'));
  }

  async showStatAndPeers(netns: string): Promise<{ stats: StatRow[]; peers: PeerSession[] }> {
    // One answer holds both: each parser takes only its own lines (CSV rows with a known type; `id=…(remote,…)`).
    const answer = await queryRuntimeAll(lbPaths(this.stateDir, netns).socket, ['show stat', 'show peers']);
    return { stats: parseShowStat(answer), peers: parseShowPeers(answer) };
  }

  async keepDaemonsInCgroup(): Promise<number[]> {
    if (this.#cgroup === undefined) return [];
    // HAProxy and (ACTIVE_STANDBY) keepalived, each with its children (workers, the VRRP child).
    const haproxies = this.runningHaproxies();
    const keepaliveds = haproxies.map((h) => this.#keepalived.pid(h.netns)).filter((p): p is number => p !== undefined);
    const out = this.#cgroup.misplaced([...haproxies.map((h) => h.pid), ...keepaliveds]);
    await this.#cgroup.move(out);
    return out;
  }

  async removeDaemonCgroup(): Promise<void> {
    await this.#cgroup?.remove();
  }

  runningHaproxies(): RunningHaproxy[] {
    let dirs: string[];
    try {
      dirs = readdirSync(lbRoot(this.stateDir));
    } catch {
      return [];
    }
    const found: RunningHaproxy[] = [];
    for (const netns of dirs) {
      const paths = lbPaths(this.stateDir, netns);
      const key = readOwner(paths);
      if (key === undefined) continue;
      const pid = haproxyPid(paths);
      if (pid !== undefined) found.push({ key, netns, pid });
    }
    return found;
  }
}
