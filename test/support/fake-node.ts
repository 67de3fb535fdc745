// An in-memory node that applies Actions the way the real drivers do, for the convergence test:
// plan → apply to the fake → observe → plan again must be empty.
import type { Action } from '../../src/plan/actions.js';
import type { DefaultGateways, ObservedLoadBalancer } from '../../src/plan/observed.js';

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
      case 'stateDir.delete':
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
    return o;
  }
}
