// Pure: the UDP and SCTP part of a desired load balancer as the nft renderer's model (nft-ruleset.ts), with each
// member's health as HAProxy's check-only backends judge it, and the one action that takes the namespace's
// table from what was observed to that (one nft transaction, plus the flows of members that can no longer
// answer). Everything here is derived from the desired model and the observation: no state of its own.
import { canonicalIp } from '../desired/addresses.js';
import type { DesiredListener, DesiredLoadBalancer, DesiredPool } from '../desired/model.js';
import { vipAddresses } from '../desired/model.js';
import { SCTP_CHECK, UDP_CHECK } from '../desired/state-dir.js';
import type { Action } from './actions.js';
import type { StatRow } from './haproxy-stats.js';
import type { HaproxyPaths } from './haproxy-words.js';
import {
  MAX_IDLE_TIMEOUT_SECONDS,
  NFT_FAMILY,
  NFT_TABLE,
  poolMapName,
  renderNftState,
  type L4Protocol,
  type MemberFlows,
  type MemberHealth,
  type NftAlgorithm,
  type NftLoadBalancer,
  type NftState,
} from './nft-ruleset.js';
import { planNftTransaction } from './nft-transaction.js';
import { memberHealthFromStats, type CheckCommands } from './udp-health-checks.js';
import type { Forwarding, ObservedNft } from './observed.js';

export const isKernelListener = (l: Pick<DesiredListener, 'protocol'>): boolean => l.protocol === 'UDP' || l.protocol === 'SCTP';
export const isKernelPool = (p: Pick<DesiredPool, 'protocol'>): boolean => p.protocol === 'UDP' || p.protocol === 'SCTP';

/** Whether the load balancer has anything for the kernel to forward (and so an nft table to observe). */
export function hasKernelListeners(lb: DesiredLoadBalancer): boolean {
  return lb.listeners.some(isKernelListener);
}

export function checkCommands(paths: HaproxyPaths): CheckCommands {
  return { udpConnect: paths.udpCheckCommand ?? UDP_CHECK, sctp: paths.sctpCheckCommand ?? SCTP_CHECK, ping: paths.pingCheckCommand };
}

/** pool → member → health; a pool or member missing here counts as UP (HAProxy starts servers UP). */
export type KernelHealth = ReadonlyMap<string, ReadonlyMap<string, MemberHealth>>;

/** What HAProxy's `show stat` says of the members of the kernel's pools. */
export function kernelHealthFromStats(lb: DesiredLoadBalancer, rows: readonly StatRow[]): Map<string, Map<string, MemberHealth>> {
  const health = new Map<string, Map<string, MemberHealth>>();
  for (const p of lb.pools) if (isKernelPool(p)) health.set(p.name, memberHealthFromStats(rows, p.name));
  return health;
}

/** A short, stable text of the health that decides the kernel's maps: when it changes, the load balancer is queued. */
export function kernelHealthSignature(health: KernelHealth): string {
  const parts: string[] = [];
  for (const [pool, members] of [...health].sort(([a], [b]) => (a < b ? -1 : 1))) {
    for (const [m, h] of [...members].sort(([a], [b]) => (a < b ? -1 : 1))) if (h === 'DOWN') parts.push(`${pool}/${m}`);
  }
  return parts.join(',');
}

function algorithmOf(p: DesiredPool): NftAlgorithm {
  if (p.lbAlgorithm === 'SOURCE_IP' || p.lbAlgorithm === 'SOURCE_IP_PORT') return p.lbAlgorithm;
  // SOURCE_IP persistence on a kernel pool: stickiness is the hash itself.
  return p.sessionPersistence?.type === 'SOURCE_IP' ? 'SOURCE_IP' : 'ROUND_ROBIN';
}

/** The renderer's model; undefined when the load balancer has no UDP or SCTP listener. */
export function nftModelOf(lb: DesiredLoadBalancer, health: KernelHealth | undefined): NftLoadBalancer | undefined {
  if (!hasKernelListeners(lb)) return undefined;
  return {
    namespace: lb.namespace,
    name: lb.name,
    vips: vipAddresses(lb.vip).map((a) => a.address),
    listeners: lb.listeners.filter(isKernelListener).map((l) => ({
      name: l.name,
      protocol: l.protocol as L4Protocol,
      port: l.port,
      allowedCidrs: l.allowedCidrs,
      idleTimeoutSeconds: Math.min(MAX_IDLE_TIMEOUT_SECONDS, Math.max(1, Math.ceil(l.timeouts.clientData / 1000))),
      defaultPool: l.defaultPool,
      adminStateUp: l.adminStateUp && lb.adminStateUp,
    })),
    pools: lb.pools.filter(isKernelPool).map((p) => ({
      name: p.name,
      protocol: p.protocol as L4Protocol,
      lbAlgorithm: algorithmOf(p),
      adminStateUp: p.adminStateUp,
      members: p.members.map((m) => {
        const monitored = p.healthMonitor?.adminStateUp === true;
        return {
          name: m.name,
          address: m.address,
          port: m.port,
          weight: m.weight,
          backup: m.backup,
          adminStateUp: m.adminStateUp,
          health: monitored ? (health?.get(p.name)?.get(m.name) ?? 'UP') : 'NO_CHECK',
        };
      }),
    })),
  };
}

/** Member targets (`protocol address port`) that may keep their flows: enabled and not DOWN, drained or not. */
function keeping(model: NftLoadBalancer | undefined): Set<string> {
  const keep = new Set<string>();
  for (const p of model?.pools ?? []) {
    if (!p.adminStateUp) continue;
    for (const m of p.members) if (m.adminStateUp && m.health !== 'DOWN') keep.add(`${p.protocol} ${canonicalIp(m.address)} ${m.port}`);
  }
  return keep;
}

/**
 * Members the observed table sends flows to that may no longer have them (DOWN, disabled, removed, moved):
 * their conntrack entries are dropped so that clients' next packets are balanced again. A drained member
 * (weight 0) keeps its flows, as with IPVS.
 */
export function flowsToMove(observed: NftState | undefined, model: NftLoadBalancer | undefined): MemberFlows[] {
  if (observed === undefined) return [];
  const keep = keeping(model);
  const protocolOfMap = new Map<string, L4Protocol>();
  for (const p of model?.pools ?? []) for (const f of [4, 6]) protocolOfMap.set(poolMapName(p.name, f as 4 | 6), p.protocol);
  const out = new Map<string, MemberFlows>();
  for (const [name, map] of observed.maps) {
    if (map.kind !== 'pool4' && map.kind !== 'pool6') continue;
    const protocols: L4Protocol[] = [protocolOfMap.get(name) ?? 'UDP'];
    if (!protocolOfMap.has(name)) protocols.push('SCTP');
    for (const value of map.elements.values()) {
      const [address, port] = value.split(' . ');
      if (address === undefined || port === undefined) continue;
      for (const protocol of protocols) {
        const key = `${protocol} ${canonicalIp(address)} ${port}`;
        if (!keep.has(key)) out.set(key, { protocol, address: canonicalIp(address), port: Number(port) });
      }
    }
  }
  return [...out.values()];
}

/**
 * The nft action for a desired load balancer, or undefined when the namespace's table is already right and
 * forwarding is on in it (`forwarding`: as the netns read saw it; the action turns it on before its transaction).
 */
export function planNft(netns: string, lb: DesiredLoadBalancer, observed: ObservedNft | undefined, forwarding?: Forwarding): Action | undefined {
  const model = nftModelOf(lb, observed?.health);
  // Not looked at: nothing is known, so nothing is planned (the target said it had no kernel listener).
  if (observed === undefined) return undefined;
  const desired = model === undefined ? undefined : renderNftState(model);
  const lines = planNftTransaction(observed.table, desired);
  const forget = flowsToMove(observed.table, model);
  // Turned off by hand: DNATed flows would die in the namespace, so it is drift like a changed table.
  const forwardingOff = desired !== undefined && (forwarding?.[4] === false || forwarding?.[6] === false);
  if (lines.length === 0 && forget.length === 0 && !forwardingOff) return undefined;
  const reason =
    observed.table === undefined
      ? 'new'
      : desired === undefined
        ? 'no UDP or SCTP listener left'
        : lines.length === 0 && forget.length === 0
          ? 'forwarding was off in the namespace'
          : 'changed';
  return { kind: 'nft.apply', netns, lines, forget, deletesTable: desired === undefined, reason };
}

/** `inet nslb`, as `nslb plan` names the table. */
export const NFT_TABLE_NAME = `${NFT_FAMILY} ${NFT_TABLE}`;
