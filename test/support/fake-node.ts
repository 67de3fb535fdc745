// An in-memory node that applies Actions the way the real drivers do, for the convergence test (plan → apply to
// the fake → observe → plan again must be empty), and a node driver over it for the controller's own tests.
import { ifaceOfNetns, netnsOfKey } from '../../src/desired/names.js';
import type { Action } from '../../src/plan/actions.js';
import type { StatRow } from '../../src/plan/haproxy-stats.js';
import type { NodeDriver, ObserveOptions, ObserveTarget, RunningHaproxy } from '../../src/plan/node-driver.js';
import { madeBy, type DefaultGateways, type ObservedLoadBalancer, type ObservedNode, type ObservedVrrpState } from '../../src/plan/observed.js';
import type { PeerSession } from '../../src/plan/haproxy-peers.js';
import type { KeepalivedPaths } from '../../src/plan/keepalived-config.js';

interface Link {
  mac: string;
  mtu: number;
  addresses: string[];
  up: boolean;
}

export class FakeNode {
  netns = new Set<string>();
  runtimeUpdates = 0;
  loUp = new Set<string>();
  /** Default routes per netns, one per family. */
  gateways = new Map<string, DefaultGateways>();
  ports = new Map<string, { bridge: string; lb: string; mac: string; tag?: number }>();
  /** Where each OVS device is: the host, a netns name, or gone. */
  where = new Map<string, string>();
  links = new Map<string, Link>();
  haproxy = new Map<string, { pid: number; netnsEpoch: number }>();
  netnsEpoch = new Map<string, number>();
  configs = new Map<string, string>();
  certFiles = new Map<string, Set<string>>();
  stateDirs = new Set<string>();
  /** Configs written that HAProxy has not been started with or reloaded since. */
  pendingReload = new Set<string>();
  /** Dead devices left in a netns under the name of a live one in the host (ovs-vswitchd restarted). */
  stale = new Map<string, { netns: string; link: Link }>();
  nextPid = 1000;
  reloads = 0;
  /** external_ids:nslb-state-dir of each port: the agent (state dir) that made it. */
  portStateDirs = new Map<string, string>();
  /** Under which agent's state dir each load balancer's directory is, and the owner marker in it. */
  stateDirOwners = new Map<string, { stateDir: string; key?: string }>();
  keepalived = new Map<string, { pid: number; netnsEpoch: number }>();
  keepalivedConfigs = new Map<string, string>();
  keepalivedPendingReload = new Set<string>();
  keepalivedReloads = 0;
  /** keepalived.switchOver actions applied (a drained node giving up the MASTER role). */
  switchOvers = 0;
  /** What each netns's keepalived says (MASTER, BACKUP…), set by tests. */
  vrrp = new Map<string, { state: 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP'; priority: number }>();

  apply(a: Action): void {
    switch (a.kind) {
      case 'netns.add':
        this.netns.add(a.netns);
        this.netnsEpoch.set(a.netns, (this.netnsEpoch.get(a.netns) ?? 0) + 1);
        return;
      case 'netns.delete':
        this.deleteNetnsByHand(a.netns);
        return;
      case 'ovs.addPort':
        if (a.recreate) this.apply({ kind: 'ovs.deletePort', iface: a.iface });
        if (!this.ports.has(a.iface)) {
          this.where.set(a.iface, 'host');
          this.links.set(a.iface, { mac: 'aa:aa:aa:aa:aa:aa', mtu: 1500, addresses: [], up: false });
        }
        this.ports.set(a.iface, { bridge: a.bridge, lb: a.lb, mac: a.mac, ...(a.vlan === undefined ? {} : { tag: a.vlan }) });
        return;
      case 'ovs.deletePort':
        this.ports.delete(a.iface);
        this.where.delete(a.iface);
        this.links.delete(a.iface);
        return;
      case 'link.moveToNetns':
        if (this.where.get(a.iface) !== 'host') throw new Error(`no device ${a.iface} in host`);
        if (!this.netns.has(a.netns)) throw new Error(`no netns ${a.netns}`);
        if (this.stale.get(a.iface)?.netns === a.netns) {
          if (a.replaceStale !== true) throw new Error(`RTNETLINK answers: File exists (${a.iface} in ${a.netns})`);
          this.stale.delete(a.iface);
        }
        this.where.set(a.iface, a.netns);
        return;
      case 'link.configure': {
        const link = this.links.get(a.iface);
        if (link === undefined || this.where.get(a.iface) !== a.netns) throw new Error(`no ${a.iface} in ${a.netns}`);
        this.loUp.add(a.netns);
        link.mac = a.mac;
        if (a.mtu !== undefined) link.mtu = a.mtu;
        link.addresses = [...link.addresses.filter((x) => !a.removeAddresses.includes(x) && !a.addresses.includes(x)), ...a.addresses];
        link.up = true;
        // `route replace default via G`: the family's route is set, the other family's stays.
        for (const g of a.gateways) this.gateways.set(a.netns, { ...this.gateways.get(a.netns), [g.includes(':') ? 6 : 4]: g });
        return;
      }
      case 'haproxy.writeConfig':
        this.stateDirs.add(a.netns);
        this.configs.set(a.netns, a.config);
        this.pendingReload.add(a.netns);
        this.certFiles.set(a.netns, new Set(a.certificates.map((c) => c.fileName)));
        return;
      case 'haproxy.runtime':
        if (!this.haproxy.has(a.netns)) throw new Error('runtime API without haproxy');
        this.runtimeUpdates += a.commands.length;
        this.configs.set(a.netns, a.config);
        this.certFiles.set(a.netns, new Set(a.certificates.map((c) => c.fileName)));
        return;
      case 'haproxy.start':
        if (!this.configs.has(a.netns)) throw new Error('start without config');
        if (!this.netns.has(a.netns)) throw new Error('start without netns');
        this.haproxy.set(a.netns, { pid: this.nextPid++, netnsEpoch: this.netnsEpoch.get(a.netns) ?? 0 });
        this.pendingReload.delete(a.netns);
        return;
      case 'haproxy.reload':
        if (!this.haproxy.has(a.netns)) throw new Error('reload without haproxy');
        this.reloads++;
        this.pendingReload.delete(a.netns);
        return;
      case 'haproxy.stop':
        this.haproxy.delete(a.netns);
        return;
      case 'keepalived.writeConfig':
        if (!this.links.has(ifaceOfNetns(a.netns)) || this.where.get(ifaceOfNetns(a.netns)) !== a.netns) throw new Error('keepalived -t: no interface');
        this.stateDirs.add(a.netns);
        this.keepalivedConfigs.set(a.netns, a.config);
        this.keepalivedPendingReload.add(a.netns);
        return;
      case 'keepalived.start':
        if (!this.keepalivedConfigs.has(a.netns)) throw new Error('keepalived start without config');
        if (!this.netns.has(a.netns)) throw new Error('keepalived start without netns');
        if (!this.keepalived.has(a.netns)) this.keepalived.set(a.netns, { pid: this.nextPid++, netnsEpoch: this.netnsEpoch.get(a.netns) ?? 0 });
        this.keepalivedPendingReload.delete(a.netns);
        return;
      case 'keepalived.reload':
        if (!this.keepalived.has(a.netns)) throw new Error('reload without keepalived');
        this.keepalivedReloads++;
        this.keepalivedPendingReload.delete(a.netns);
        return;
      case 'keepalived.stop':
        this.keepalived.delete(a.netns);
        this.vrrp.delete(a.netns);
        if (a.removeFiles === true) this.apply({ kind: 'keepalived.removeFiles', netns: a.netns });
        return;
      case 'keepalived.removeFiles':
        this.keepalivedConfigs.delete(a.netns);
        this.keepalivedPendingReload.delete(a.netns);
        return;
      case 'keepalived.endHandover':
        return;
      case 'keepalived.switchOver': {
        // The peer takes the VIP: this node is BACKUP (the state a real keepalived's notify script reports).
        const vrrp = this.vrrp.get(a.netns);
        if (vrrp !== undefined) this.vrrp.set(a.netns, { ...vrrp, state: 'BACKUP' });
        this.switchOvers++;
        return;
      }
      case 'stateDir.delete':
        this.keepalivedConfigs.delete(a.netns);
        this.keepalivedPendingReload.delete(a.netns);
        this.stateDirs.delete(a.netns);
        this.configs.delete(a.netns);
        this.certFiles.delete(a.netns);
        this.pendingReload.delete(a.netns);
        return;
    }
  }

  /**
   * What restarting ovs-vswitchd does to internal ports moved into a netns: a new device (fresh MAC, no
   * address, down) appears in the host, and the old one stays in the netns, dead but looking configured.
   */
  restartVswitchdByHand(): void {
    for (const [iface, w] of this.where) {
      const link = this.links.get(iface);
      if (w === 'host' || w === 'gone' || link === undefined) continue;
      this.stale.set(iface, { netns: w, link: { ...link, addresses: [...link.addresses] } });
      this.where.set(iface, 'host');
      this.links.set(iface, { mac: 'aa:aa:aa:aa:aa:aa', mtu: 1500, addresses: [], up: false });
    }
  }

  /** What `ip netns delete` does: the netns goes, the OVS device in it is destroyed, its row stays. */
  deleteNetnsByHand(netns: string): void {
    this.netns.delete(netns);
    this.loUp.delete(netns);
    this.gateways.delete(netns);
    for (const [iface, w] of this.where) if (w === netns) this.where.set(iface, 'gone');
    for (const [iface, s] of this.stale) if (s.netns === netns) this.stale.delete(iface);
  }

  observe(netns: string, iface: string): ObservedLoadBalancer {
    const o: ObservedLoadBalancer = { ifaceInHost: this.where.get(iface) === 'host', stateDir: this.stateDirs.has(netns) };
    const port = this.ports.get(iface);
    if (port !== undefined) o.port = { iface, ...port };
    if (this.netns.has(netns)) {
      const stale = this.stale.get(iface);
      const link = this.where.get(iface) === netns ? this.links.get(iface) : stale?.netns === netns ? stale.link : undefined;
      o.netns = {
        name: netns,
        loUp: this.loUp.has(netns),
        ...(link === undefined ? {} : { link: { name: iface, ...link, addresses: [...link.addresses] } }),
        ...(this.gateways.has(netns) ? { defaultGateways: { ...this.gateways.get(netns)! } } : {}),
      };
    }
    const h = this.haproxy.get(netns);
    if (h !== undefined) o.haproxy = { pid: h.pid, inNetns: this.netns.has(netns) && h.netnsEpoch === this.netnsEpoch.get(netns) };
    const config = this.configs.get(netns);
    if (config !== undefined) o.config = config;
    const certs = this.certFiles.get(netns);
    if (certs !== undefined && certs.size > 0) o.certFiles = [...certs].sort();
    if (this.stateDirs.has(netns) && this.pendingReload.has(netns)) o.reloadPending = true;
    const k = this.keepalived.get(netns);
    if (k !== undefined) {
      const vrrp = this.vrrp.get(netns);
      o.keepalived = {
        pid: k.pid,
        inNetns: this.netns.has(netns) && k.netnsEpoch === this.netnsEpoch.get(netns),
        vrrpAlive: true,
        ...(vrrp === undefined ? {} : { vrrp }),
      };
    }
    const kc = this.keepalivedConfigs.get(netns);
    if (kc !== undefined && this.stateDirs.has(netns)) o.keepalivedConfig = kc;
    if (kc !== undefined && this.keepalivedPendingReload.has(netns)) o.keepalivedReloadPending = true;
    return o;
  }
}

/**
 * A node driver (src/plan/node-driver.ts) over a FakeNode, for the controller's unit tests: what the real one
 * observes and applies, in memory. Several drivers may share one FakeNode, each with its own state dir, as two
 * agents share a real node: each sees the other's ports (with their state-dir marker) but not its state dirs.
 */
export class FakeNodeDriver implements NodeDriver {
  readonly applied: Action[] = [];
  /** Targets of every observation, in order (a resync's come with nodeWide). */
  readonly observations: { targets: string[]; nodeWide: boolean }[] = [];
  /** Throws this for the action, instead of applying it (a failing command). */
  failWith: ((a: Action) => Error | undefined) | undefined;
  /** After this many more actions, every apply hangs forever: the agent was killed mid-plan. */
  crashAfter: number | undefined;
  /** Planned handovers under way, as the real driver counts them (absent: none is ever). */
  handoversInFlight?: () => number;

  constructor(
    readonly node: FakeNode,
    readonly stateDir: string,
  ) {}

  async observe(targets: readonly ObserveTarget[], options: ObserveOptions = {}): Promise<ObservedNode> {
    this.observations.push({ targets: targets.map((t) => t.netns), nodeWide: options.nodeWide === true });
    const only = targets.length > 0 && options.nodeWide !== true ? new Set(targets.map((t) => t.netns)) : undefined;
    const found = new Set<string>([...this.node.netns, ...this.node.stateDirs, ...targets.map((t) => t.netns)]);
    for (const [, p] of this.node.ports) found.add(netnsOfKey(p.lb));
    const lbs = new Map<string, ObservedLoadBalancer>();
    for (const netns of found) {
      if (only !== undefined && !only.has(netns)) continue;
      const o = this.node.observe(netns, ifaceOfNetns(netns));
      const dir = this.node.stateDirOwners.get(netns);
      o.stateDir = o.stateDir && dir?.stateDir === this.stateDir;
      if (!o.stateDir) {
        delete o.config;
        delete o.certFiles;
        delete o.reloadPending;
        delete o.keepalivedConfig;
        delete o.keepalivedReloadPending;
      }
      const owner = o.stateDir ? dir?.key : undefined;
      if (o.port !== undefined) {
        const marker = this.node.portStateDirs.get(o.port.iface);
        if (marker !== undefined) o.port.stateDir = marker;
        if (o.port.lb !== undefined) o.lbKey = o.port.lb;
      } else if (o.stateDir && owner !== undefined) {
        o.lbKey = owner;
      }
      if (o.port === undefined && o.netns === undefined && !o.stateDir && o.haproxy === undefined && !o.ifaceInHost && !targets.some((t) => t.netns === netns))
        continue;
      lbs.set(netns, o);
    }
    if ((options.scope ?? 'mine') === 'mine') {
      const wanted = new Set(targets.map((t) => t.netns));
      for (const [netns, o] of lbs) if (!madeBy(o, this.stateDir) && !wanted.has(netns)) lbs.delete(netns);
    }
    return { lbs, bridges: new Set(['br-int']) };
  }

  async apply(a: Action): Promise<void> {
    if (this.crashAfter !== undefined && this.crashAfter-- <= 0) return new Promise(() => {});
    const failure = this.failWith?.(a);
    if (failure !== undefined) throw failure;
    this.node.apply(a);
    this.applied.push(a);
    if (a.kind === 'ovs.addPort') this.node.portStateDirs.set(a.iface, this.stateDir);
    if (a.kind === 'ovs.deletePort') this.node.portStateDirs.delete(a.iface);
    if (a.kind === 'haproxy.writeConfig' || a.kind === 'haproxy.runtime' || a.kind === 'keepalived.writeConfig') this.#claim(a.netns);
    if (a.kind === 'stateDir.delete') this.node.stateDirOwners.delete(a.netns);
  }

  async recordOwner(netns: string, key: string): Promise<void> {
    this.#claim(netns).key = key;
    this.node.stateDirs.add(netns);
  }

  #claim(netns: string): { stateDir: string; key?: string } {
    const dir = this.node.stateDirOwners.get(netns);
    if (dir?.stateDir === this.stateDir) return dir;
    const mine = { stateDir: this.stateDir };
    this.node.stateDirOwners.set(netns, mine);
    return mine;
  }

  haproxyPid(netns: string): number | undefined {
    return this.node.haproxy.get(netns)?.pid;
  }

  processAlive(pid: number): boolean {
    return [...this.node.haproxy.values(), ...this.node.keepalived.values()].some((h) => h.pid === pid);
  }

  keepalivedPaths(netns: string): KeepalivedPaths {
    const dir = `${this.stateDir}/lb/${netns}`;
    return {
      checkScript: '/opt/nslb/scripts/haproxy-vrrp-check.sh',
      notifyScript: '/opt/nslb/scripts/keepalived-notify.sh',
      haproxyPidfile: `${dir}/haproxy.pid`,
      notifyFifo: `${dir}/keepalived.fifo`,
      stateFile: `${dir}/keepalived.state`,
      releaseFile: `${dir}/keepalived.release`,
      healthFile: `${dir}/keepalived.health`,
    };
  }

  keepalivedPid(netns: string): number | undefined {
    return this.node.keepalived.get(netns)?.pid;
  }

  vrrpState(netns: string): ObservedVrrpState | undefined {
    return this.node.keepalived.has(netns) ? this.node.vrrp.get(netns) : undefined;
  }

  /** Peers whose HAProxy is connected, set by tests: netns → peer names. */
  peers = new Map<string, string[]>();

  async showPeers(netns: string): Promise<PeerSession[]> {
    if (!this.node.haproxy.has(netns)) throw new Error(`no haproxy in ${netns}`);
    return (this.peers.get(netns) ?? []).map((name) => ({ name, established: true }));
  }

  async showStat(netns: string): Promise<StatRow[]> {
    if (!this.node.haproxy.has(netns)) throw new Error(`no haproxy in ${netns}`);
    return [];
  }

  runningHaproxies(): RunningHaproxy[] {
    return [...this.node.haproxy].flatMap(([netns, h]) => {
      const dir = this.node.stateDirOwners.get(netns);
      const key = dir?.stateDir === this.stateDir ? dir.key : undefined;
      return key === undefined ? [] : [{ key, netns, pid: h.pid }];
    });
  }
}
