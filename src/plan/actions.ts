// What a reconcile may do to the node: a discriminated union, printable (that is `nslb plan`).
// Each action is idempotent on its own, so replaying a plan after a crash is safe.

import type { MemberFlows } from './nft-ruleset.js';
import type { RuntimeCommand } from './runtime-diff.js';

export type Action =
  | { kind: 'netns.add'; netns: string }
  | { kind: 'netns.delete'; netns: string }
  | {
      kind: 'ovs.addPort';
      bridge: string;
      iface: string;
      lb: string;
      mac: string;
      vlan?: number;
      /** Remove a stale row of the same name first (the device vanished with its netns). */
      recreate: boolean;
      /** A member network's port (DESIGN §8), not the VIP's: named in its iface-id. */
      network?: string;
    }
  | { kind: 'ovs.deletePort'; iface: string }
  | {
      kind: 'link.moveToNetns';
      iface: string;
      netns: string;
      /**
       * A dead device of the same name is in the netns (ovs-vswitchd restarted: it made a new device in the
       * host and left the old one behind): delete it first.
       */
      replaceStale?: true;
    }
  | {
      kind: 'link.configure';
      netns: string;
      iface: string;
      mac: string;
      mtu?: number;
      /** `address/prefix`: the VIP, then the additional VIPs. */
      addresses: string[];
      removeAddresses: string[];
      /** Default routes, one per family at most. */
      gateways: string[];
      /** Member networks: routes to members beyond the network (`route replace`). */
      routes?: { destination: string; gateway: string }[];
      /** Member networks: routes through the link that the spec does not have (no longer, or added by hand). */
      removeRoutes?: { destination: string; gateway: string }[];
      /**
       * IPv4 addresses (without prefix) to probe for on the segment before they are added (RFC 5227): an
       * ACTIVE_STANDBY node's VRRP address, which the node that had its placement slot may still hold.
       */
      probe?: string[];
      /**
       * The netns was added in the same reconcile, and netns.add switched the announcements on for every link in
       * it (`all`): the link's own switches are not set again, and its configuration is one `ip -n` process.
       */
      netnsAnnounces?: true;
    }
  | {
      /**
       * One nft transaction in the netns (all or nothing: element updates for member and health changes, the
       * listener's chains when a listener changed, the whole table when new), then the conntrack entries of
       * members that can no longer answer are dropped so their clients are balanced again.
       */
      kind: 'nft.apply';
      netns: string;
      lines: string[];
      forget: MemberFlows[];
      /** The transaction deletes the table (no UDP or SCTP listener left). */
      deletesTable: boolean;
      reason: string;
    }
  | {
      kind: 'haproxy.writeConfig';
      netns: string;
      config: string;
      /** Key material: written to files, never printed or logged. */
      certificates: { fileName: string; pem: string }[];
      reason: string;
      /**
       * Nothing runs this load balancer and nothing was written for it yet: starting HAProxy checks the config
       * anyway, so the separate `haproxy -c` (tens of ms of CPU per load balancer) is skipped.
       */
      unchecked?: true;
    }
  | {
      /**
       * Members only changed: send the changes over the runtime socket (no reload, same worker), then write
       * and check the config so that a restart gives the same state. If HAProxy refuses a change, the config
       * is written and HAProxy reloaded instead.
       */
      kind: 'haproxy.runtime';
      netns: string;
      config: string;
      certificates: { fileName: string; pem: string }[];
      commands: RuntimeCommand[];
    }
  | { kind: 'haproxy.start'; netns: string; reason: string }
  | { kind: 'haproxy.reload'; netns: string }
  | {
      kind: 'haproxy.stop';
      netns: string;
      pid: number;
      /** Soft stop first, for up to this long: the sessions in progress finish (a pair's node letting it go). */
      graceMs?: number;
    }
  | {
      /** Written to a side file, checked with `keepalived -t` in the netns, renamed over the live one (0600). */
      kind: 'keepalived.writeConfig';
      netns: string;
      config: string;
      reason: string;
    }
  | { kind: 'keepalived.start'; netns: string; reason: string }
  | { kind: 'keepalived.reload'; netns: string }
  /**
   * SIGTERM: keepalived drops the VIPs it holds and sends a priority-0 advert, so the peer takes over at once.
   * `removeFiles`: the load balancer stays but is no longer ACTIVE_STANDBY. `handOver`: it is MASTER and
   * leaves the pair: new connections held off and open ones finished first, so that none is lost
   * (src/drivers/keepalived/handover.ts).
   */
  | { kind: 'keepalived.stop'; netns: string; pid: number; removeFiles?: true; handOver?: true }
  | { kind: 'keepalived.removeFiles'; netns: string }
  /** A planned handover that did not finish (its process died): SYN drop removed, release file back to 0. */
  | { kind: 'keepalived.endHandover'; netns: string }
  /**
   * This node is being drained and is MASTER: the VIP goes to the peer (new connections held off, open ones
   * finished, FAULT through the release file, then BACKUP again), keepalived staying up on both nodes, before the
   * scheduler moves this node's slot (src/drivers/keepalived/handover.ts switchOver, as `nslb drain`).
   */
  | { kind: 'keepalived.switchOver'; netns: string }
  | { kind: 'stateDir.delete'; netns: string };

export function formatAction(a: Action): string {
  switch (a.kind) {
    case 'netns.add':
      return `netns add ${a.netns}`;
    case 'netns.delete':
      return `netns delete ${a.netns}`;
    case 'ovs.addPort':
      return `ovs add-port ${a.bridge} ${a.iface} (internal, mac ${a.mac}${a.vlan === undefined ? '' : `, tag ${a.vlan}`}, nslb-lb=${a.lb}${a.network === undefined ? '' : `, member network ${a.network}`})${a.recreate ? ' replacing a stale row' : ''}`;
    case 'ovs.deletePort':
      return `ovs del-port ${a.iface}`;
    case 'link.moveToNetns':
      return `link ${a.iface} → netns ${a.netns}${a.replaceStale === true ? ' replacing a stale device there' : ''}`;
    case 'link.configure': {
      const parts = [`mac ${a.mac}`];
      if (a.mtu !== undefined) parts.push(`mtu ${a.mtu}`);
      if (a.probe !== undefined && a.probe.length > 0) parts.push(`${a.probe.join(',')} unused on the segment (ARP probe)`);
      parts.push(`addr ${a.addresses.join(',')}`);
      if (a.removeAddresses.length > 0) parts.push(`remove ${a.removeAddresses.join(',')}`);
      for (const g of a.gateways) parts.push(`default via ${g}`);
      for (const r of a.routes ?? []) parts.push(`${r.destination} via ${r.gateway}`);
      for (const r of a.removeRoutes ?? []) parts.push(`remove ${r.destination} via ${r.gateway}`);
      parts.push('up');
      return `link configure ${a.netns}/${a.iface}: ${parts.join(', ')}`;
    }
    case 'nft.apply': {
      const what = a.lines.length === 0 ? 'no table change' : `${a.lines.length} nft statements, one transaction`;
      const forget = a.forget.length === 0 ? '' : `; forget flows of ${a.forget.map((f) => `${f.address}:${f.port}`).join(', ')}`;
      return `nft ${a.netns} inet nslb: ${what} (${a.reason})${forget}`;
    }
    case 'haproxy.writeConfig':
      return `haproxy write ${a.netns}/haproxy.cfg (${a.config.split('\n').length} lines${a.certificates.length === 0 ? '' : `, ${a.certificates.length} certificates`}; ${a.reason})`;
    case 'haproxy.runtime':
      return `haproxy runtime API in ${a.netns}: ${a.commands.length === 0 ? 'config comments only' : a.commands.map((c) => c.command).join('; ')} (no reload)`;
    case 'haproxy.start':
      return `haproxy start in ${a.netns} (${a.reason})`;
    case 'haproxy.reload':
      return `haproxy reload in ${a.netns}`;
    case 'haproxy.stop':
      return `haproxy stop in ${a.netns} (pid ${a.pid}${a.graceMs === undefined ? '' : `, sessions given ${a.graceMs} ms`})`;
    case 'keepalived.writeConfig':
      return `keepalived write ${a.netns}/keepalived.conf (${a.config.split('\n').length} lines; ${a.reason})`;
    case 'keepalived.start':
      return `keepalived start in ${a.netns} (${a.reason})`;
    case 'keepalived.reload':
      return `keepalived reload in ${a.netns}`;
    case 'keepalived.stop':
      return `keepalived stop in ${a.netns} (pid ${a.pid})${a.handOver === true ? ', handing the VIP over' : ''}${a.removeFiles === true ? ', removing its files' : ''}`;
    case 'keepalived.endHandover':
      return `keepalived end the unfinished handover in ${a.netns}`;
    case 'keepalived.switchOver':
      return `keepalived hand the MASTER role in ${a.netns} to the peer (this node is drained)`;
    case 'keepalived.removeFiles':
      return `keepalived remove files of ${a.netns}`;
    case 'stateDir.delete':
      return `state dir delete lb/${a.netns}`;
  }
}

/**
 * The plan's actions in stages: the actions of a stage run at once, stages one after the other. Only steps that
 * cannot see each other's effect share a stage, so any mix of them done or not (a crash in the middle, one of
 * them failing) is a state the next plan starts from, as with a crash between two steps run in order:
 * - a new netns and the VIP port: the port is made in the host namespace, and moved into the netns only after
 *   both (its move waits for them);
 * - a new load balancer's config (unchecked: HAProxy's start checks it) beside its link's move into the netns:
 *   files in the state dir, read by nothing until HAProxy starts, which stays after the link's configuration
 *   (its first health check must find the link up).
 * The order within a stage, and of the stages, is the plan's (the log and `nslb plan` print that order).
 */
export function stagesOf(actions: readonly Action[]): Action[][] {
  const rest = [...actions];
  const move = rest.find((a) => a.kind === 'link.moveToNetns');
  const writeAt = rest.findIndex((a) => a.kind === 'haproxy.writeConfig' && a.unchecked === true);
  const early = move !== undefined && writeAt > rest.indexOf(move) ? rest.splice(writeAt, 1)[0] : undefined;
  const stages: Action[][] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    const next = rest[i + 1];
    if (a.kind === 'netns.add' && next?.kind === 'ovs.addPort') {
      stages.push([a, next]);
      i++;
    } else stages.push(a === move && early !== undefined ? [a, early] : [a]);
  }
  return stages;
}
