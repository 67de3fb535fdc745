// plan(desired, observed) → Action[]: pure. Everything that is right is left alone; what is missing, wrong
// or orphaned gets the smallest idempotent step that converges it. Order matters and is the order returned.
import type { DesiredCertificate, DesiredLoadBalancer } from '../desired/model.js';
import { vipAddresses } from '../desired/model.js';
import type { ObservedLoadBalancer } from './observed.js';
import type { Action } from './actions.js';
import { planNft } from './kernel-model.js';
import { planDeleteMemberNetworks, planMemberNetworks } from './member-networks.js';
import { runtimeCommands } from './runtime-diff.js';

export interface PlanInput {
  netns: string;
  iface: string;
  /** Undefined: the load balancer is gone from the desired state; remove what is on the node. */
  desired?: DesiredLoadBalancer;
  /** The rendered HAProxy config for `desired`. */
  config?: string;
  /** The rendered keepalived config for `desired`, when it is ACTIVE_STANDBY on this node. */
  keepalivedConfig?: string;
  observed: ObservedLoadBalancer;
}

export function planLoadBalancer(input: PlanInput): Action[] {
  if (input.desired === undefined) return planDelete(input.netns, input.iface, input.observed);
  const d = input.desired;
  const o = input.observed;
  const actions = planEnsure(d, input.config ?? '', o);
  // Member networks once the netns exists, before HAProxy starts checking the members behind them.
  const networks = planMemberNetworks(d, o, o.netns === undefined);
  const haproxyAt = actions.findIndex((a) => a.kind.startsWith('haproxy.'));
  actions.splice(haproxyAt === -1 ? actions.length : haproxyAt, 0, ...networks);
  const keepalived = d.ha === undefined ? [] : planKeepalived(input.netns, input.keepalivedConfig ?? '', o);
  actions.push(...keepalived);
  // The kernel's part last: HAProxy runs by then, and its checks decide which members get flows.
  const nft = planNft(d.names.netns, d, o.nft, o.netns?.forwarding);
  if (nft !== undefined) actions.push(nft);
  // A drained node gives up the MASTER role before the scheduler moves its slot ("switch MASTER first, then
  // re-place"): only from a keepalived that is right as it is (nothing to start, reload or undo), whose VRRP
  // process runs and says MASTER. Once BACKUP, nothing more: with nopreempt it stays so while its peer serves.
  if (d.ha?.leave === true && keepalived.length === 0 && o.keepalived?.vrrpAlive === true && o.keepalived.vrrp?.state === 'MASTER')
    actions.push({ kind: 'keepalived.switchOver', netns: input.netns });
  return actions;
}

/** How long a pair's HAProxy may take to finish its sessions when its node lets the pair go. */
export const PAIR_STOP_GRACE_MS = 1_000;

function planDelete(netns: string, iface: string, o: ObservedLoadBalancer): Action[] {
  const actions: Action[] = [];
  // keepalived first: stopped, it hands the VIP to the peer at once (a planned switchover, not a failover); a
  // MASTER first lets the connections it serves finish (drivers/keepalived/handover.ts).
  if (o.keepalived !== undefined) {
    const handOver = o.keepalived.vrrp?.state === 'MASTER' && o.netns !== undefined;
    actions.push({ kind: 'keepalived.stop', netns, pid: o.keepalived.pid, ...(handOver ? { handOver: true as const } : {}) });
  }
  // Then HAProxy, softly on a pair: the requests it was answering when the VIP left still get their responses
  // (its sockets stay, and a drained node's last requests are not failed requests).
  if (o.haproxy !== undefined)
    actions.push({ kind: 'haproxy.stop', netns, pid: o.haproxy.pid, ...(o.keepalived === undefined ? {} : { graceMs: PAIR_STOP_GRACE_MS }) });
  // The netns before the OVS ports: the kernel then unregisters its devices together, off ovs-vswitchd's thread.
  // With the userspace datapath (`netdev`, as with DPDK) a deleted port's device is closed on the thread that
  // forwards, one after the other, each waiting for the kernel (about 20 ms a port, under the RTNL lock every
  // switch on the host needs): deleting hundreds at once stopped forwarding for seconds (bench/dev-port-teardown.sh).
  // The switch reads from a port whose device is gone in vain until its row goes, which comes right after; a
  // crash between the two leaves the row, which the next reconcile removes (the port is nslb's by its markers).
  if (o.netns !== undefined) actions.push({ kind: 'netns.delete', netns });
  if (o.port !== undefined || o.ifaceInHost) actions.push({ kind: 'ovs.deletePort', iface });
  // Their devices die with the netns, but their OVS rows would stay behind.
  actions.push(...planDeleteMemberNetworks(o));
  if (o.stateDir) actions.push({ kind: 'stateDir.delete', netns });
  return actions;
}

function planEnsure(d: DesiredLoadBalancer, config: string, o: ObservedLoadBalancer): Action[] {
  const { netns, iface } = d.names;
  const actions: Action[] = [];
  const netnsMissing = o.netns === undefined;
  if (d.ha === undefined) {
    // No longer ACTIVE_STANDBY: keepalived goes (taking the VIPs it holds with it) before the link gets the VIP.
    // Whatever a handover cut short left in the netns goes first: removing keepalived's files removes its marker,
    // and with it the only sign that a SYN drop may be left (a handover that let go leaves it for the netns's
    // deletion, which an undrain after a crash can forestall).
    if (o.keepalived !== undefined || o.keepalivedConfig !== undefined) actions.push({ kind: 'keepalived.endHandover', netns });
    if (o.keepalived !== undefined) actions.push({ kind: 'keepalived.stop', netns, pid: o.keepalived.pid, removeFiles: true });
    else if (o.keepalivedConfig !== undefined) actions.push({ kind: 'keepalived.removeFiles', netns });
  }
  if (netnsMissing) actions.push({ kind: 'netns.add', netns });

  const linkInNetns = !netnsMissing && o.netns?.link !== undefined;
  const addPort = (recreate: boolean): Action => ({
    kind: 'ovs.addPort',
    bridge: d.bridge,
    iface,
    lb: d.key,
    mac: d.vip.mac,
    ...(d.vip.vlan === undefined ? {} : { vlan: d.vip.vlan }),
    recreate,
  });

  let needMove = false;
  let staleInNetns = false;
  if (o.port === undefined) {
    // No row. A device of that name in the host is ours from a crash between add-port and the move.
    actions.push(addPort(false));
    needMove = !linkInNetns;
  } else if (o.port.bridge !== d.bridge) {
    actions.push({ kind: 'ovs.deletePort', iface }, addPort(false));
    needMove = true;
  } else if (!linkInNetns && !o.ifaceInHost) {
    // The row is there but its device is gone (its netns was deleted): only a new port brings it back.
    actions.push(addPort(true));
    needMove = true;
  } else {
    if (!linkInNetns) needMove = true;
    else if (o.ifaceInHost) {
      // Devices of that name both in the host and in the netns: ovs-vswitchd restarted and made a new one in
      // the host (the one it forwards to); the one in the netns is a dead leftover.
      needMove = true;
      staleInNetns = true;
    }
    if (o.port.lb !== d.key || o.port.mac !== d.vip.mac || o.port.tag !== d.vip.vlan) actions.push(addPort(false));
  }
  if (needMove) actions.push({ kind: 'link.moveToNetns', iface, netns, ...(staleInNetns ? { replaceStale: true as const } : {}) });

  // The VIP and the additional VIPs, and nothing else: an address nobody asked for is removed. ACTIVE_STANDBY:
  // the port holds this node's VRRP address, and the VIPs are keepalived's to add and remove.
  const vips = vipAddresses(d.vip);
  const vipCidrs = vips.map((a) => `${a.address}/${a.prefixLength}`);
  const fixed = d.ha === undefined ? vips : [{ address: d.ha.localAddress, family: d.vip.family, prefixLength: d.vip.prefixLength }];
  const cidrs = fixed.map((a) => `${a.address}/${a.prefixLength}`);
  // A default route needs an address of its family on the link (the VRRP address's family, for a pair).
  const families = new Set(fixed.map((a) => a.family));
  const gateways = vips.filter((a) => a.gateway !== undefined && families.has(a.family));
  const link = needMove ? undefined : o.netns?.link;
  const extra = (link?.addresses ?? []).filter((a) => !cidrs.includes(a) && (d.ha === undefined || !vipCidrs.includes(a)));
  const linkRight =
    link !== undefined &&
    o.netns?.loUp === true &&
    link.up &&
    link.mac === d.vip.mac &&
    (d.vip.mtu === undefined || link.mtu === d.vip.mtu) &&
    cidrs.every((c) => link.addresses.includes(c)) &&
    extra.length === 0 &&
    gateways.every((a) => o.netns?.defaultGateways?.[a.family] === a.gateway);
  // A VRRP address this port does not hold yet may still be held by the node that had this placement slot
  // (a placement change: that node hands over and leaves while this one arrives). Two ports with one address
  // split its traffic, the leaving node's last backend connections included: the address is added once no
  // one answers for it.
  const probe = d.ha !== undefined && d.vip.family === 4 && !(link?.addresses ?? []).includes(cidrs[0]!) ? [d.ha.localAddress] : [];
  if (!linkRight) {
    actions.push({
      kind: 'link.configure',
      netns,
      iface,
      mac: d.vip.mac,
      ...(d.vip.mtu === undefined ? {} : { mtu: d.vip.mtu }),
      addresses: cidrs,
      removeAddresses: extra,
      gateways: gateways.map((a) => a.gateway!),
      ...(probe.length === 0 ? {} : { probe }),
      ...(netnsMissing ? { netnsAnnounces: true as const } : {}),
    });
  }

  const certificates = desiredCertificates(d);
  const present = new Set(o.certFiles ?? []);
  const certMissing = certificates.some((c) => !present.has(c.fileName));
  const configChanged = o.config !== config;
  const running = o.haproxy?.inNetns === true && !netnsMissing && o.stateDir;
  // Members only: the runtime API, no reload (and no new worker).
  const commands =
    running && configChanged && !certMissing && o.reloadPending !== true && o.config !== undefined ? runtimeCommands(o.config, config) : undefined;
  if (commands !== undefined) {
    actions.push({ kind: 'haproxy.runtime', netns, config, certificates, commands });
    return actions;
  }
  if (configChanged || certMissing) {
    const reason = o.config === undefined ? 'new' : configChanged ? 'changed' : 'certificate files missing';
    const unchecked = o.config === undefined && o.haproxy === undefined;
    actions.push({ kind: 'haproxy.writeConfig', netns, config, certificates, reason, ...(unchecked ? { unchecked: true as const } : {}) });
  }
  if (o.haproxy === undefined) {
    actions.push({ kind: 'haproxy.start', netns, reason: 'not running' });
  } else if (!o.haproxy.inNetns || netnsMissing) {
    // A HAProxy left in a deleted netns serves nobody and holds nothing we can reach: replace it.
    actions.push({ kind: 'haproxy.stop', netns, pid: o.haproxy.pid });
    actions.push({ kind: 'haproxy.start', netns, reason: 'was running outside its netns' });
  } else if (!o.stateDir) {
    // Its state dir was deleted: the runtime socket and pidfile went with it, and a reload would not bring
    // the socket file back. Only a restart gives us control of it again.
    actions.push({ kind: 'haproxy.stop', netns, pid: o.haproxy.pid });
    actions.push({ kind: 'haproxy.start', netns, reason: 'its state dir was deleted' });
  } else if (configChanged || certMissing || o.reloadPending === true) {
    // reloadPending: the config on disk is right but was never loaded (the agent died between the two).
    actions.push({ kind: 'haproxy.reload', netns });
  }
  return actions;
}

/**
 * keepalived of an ACTIVE_STANDBY load balancer, after its HAProxy (keepalived's check asks HAProxy, and until
 * it answers this node never takes the VIP): the same checked write, start and reload as HAProxy's.
 */
function planKeepalived(netns: string, config: string, o: ObservedLoadBalancer): Action[] {
  const actions: Action[] = [];
  const configChanged = o.keepalivedConfig !== config;
  if (configChanged) actions.push({ kind: 'keepalived.writeConfig', netns, config, reason: o.keepalivedConfig === undefined ? 'new' : 'changed' });
  const k = o.keepalived;
  if (k === undefined) {
    actions.push({ kind: 'keepalived.start', netns, reason: 'not running' });
  } else if (!k.inNetns || o.netns === undefined) {
    actions.push({ kind: 'keepalived.stop', netns, pid: k.pid }, { kind: 'keepalived.start', netns, reason: 'was running outside its netns' });
  } else if (!o.stateDir) {
    // Its pidfile and notify FIFO went with the state dir: only a restart gives us a keepalived we can see.
    actions.push({ kind: 'keepalived.stop', netns, pid: k.pid }, { kind: 'keepalived.start', netns, reason: 'its state dir was deleted' });
  } else if (configChanged || o.keepalivedReloadPending === true) {
    actions.push({ kind: 'keepalived.reload', netns });
  }
  if (o.keepalivedHandoverStale === true) actions.push({ kind: 'keepalived.endHandover', netns });
  return actions;
}

/** Every TLS file the load balancer's config names (certificates, CA bundles, CRLs), once each. */
export function desiredCertificates(d: DesiredLoadBalancer): DesiredCertificate[] {
  const byName = new Map<string, DesiredCertificate>();
  const add = (c: DesiredCertificate | undefined) => {
    if (c !== undefined) byName.set(c.fileName, c);
  };
  for (const l of d.listeners) {
    if (l.tls === undefined) continue;
    for (const c of [l.tls.certificate, ...l.tls.sniCertificates, l.tls.clientCa, l.tls.clientCrl]) add(c);
  }
  for (const p of d.pools) {
    if (p.memberTls === undefined) continue;
    for (const c of [p.memberTls.ca, p.memberTls.crl, p.memberTls.clientCertificate]) add(c);
  }
  return [...byName.values()].sort((a, b) => (a.fileName < b.fileName ? -1 : 1));
}
