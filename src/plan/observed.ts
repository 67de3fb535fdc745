// The observed model: what the drivers found on the node, for every load balancer at once (batched reads).
// plan.ts reads it; the node driver (drivers/node-driver.ts, or a fake in tests) fills it.
import { resolve } from 'node:path';
import type { MemberHealth, NftState } from './nft-ruleset.js';

export interface ObservedOvsPort {
  iface: string;
  bridge: string;
  /** external_ids:nslb-lb: the marker. */
  lb?: string;
  /** external_ids:nslb-state-dir: the agent that made it. */
  stateDir?: string;
  mac?: string;
  tag?: number;
  /** OVS could not open the device (it vanished, e.g. with its netns). */
  error?: string;
}

export interface ObservedLink {
  name: string;
  up: boolean;
  mac: string;
  mtu: number;
  /** `address/prefix`, global scope only. */
  addresses: string[];
  /** Main-table routes through a gateway on this link, default routes aside (member networks' routes). */
  routes?: ObservedRoute[];
}

export interface ObservedRoute {
  /** Canonical CIDR (`10.31.0.5/32`, not ip's `10.31.0.5`). */
  destination: string;
  gateway: string;
}

export interface ObservedNetns {
  name: string;
  /** The VIP interface inside it, if present. */
  link?: ObservedLink;
  loUp: boolean;
  /** The main table's default route of each family, if any. */
  defaultGateways?: DefaultGateways;
  /** Every other link in it but lo (member-network ports, or anything put there by hand). */
  otherLinks?: ObservedLink[];
  /** The namespace's own net.ipv4.ip_forward and net.ipv6.conf.all.forwarding (`ip netconf`), where reported. */
  forwarding?: Forwarding;
}

export interface Forwarding {
  4?: boolean;
  6?: boolean;
}

export interface DefaultGateways {
  4?: string;
  6?: string;
}

export interface ObservedHaproxy {
  /** Master PID from the pidfile, verified in /proc to be haproxy running our config. */
  pid: number;
  /** The process lives in the netns of that name (not in a deleted or foreign one). */
  inNetns: boolean;
}

/** The kernel-forwarding side of a load balancer (UDP and SCTP listeners, DESIGN §8). */
export interface ObservedNft {
  /** nslb's table in the netns; undefined: there is none. */
  table?: NftState;
  /** pool → member → health from HAProxy's check-only backends; undefined when HAProxy could not be asked. */
  health?: Map<string, Map<string, MemberHealth>>;
}

/** A member-network port's OVS row, and whether its device is still in the host (not moved yet). */
export interface ObservedMemberPort {
  port: ObservedOvsPort;
  inHost: boolean;
}

export type VrrpState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP';

export interface ObservedVrrpState {
  state: VrrpState;
  /** The effective priority keepalived reported with it. */
  priority: number;
  /** Changes of state keepalived announced since it started (absent from an older notify script's file). */
  transitions?: number;
}

export interface ObservedKeepalived {
  /** The parent's PID (pidfile, or found by its config in /proc), verified to be keepalived running our config. */
  pid: number;
  /** The process lives in the netns of that name (not in a deleted or foreign one). */
  inNetns: boolean;
  /** The VRRP child is alive (keepalived respawns it when it dies; until then nothing speaks VRRP). */
  vrrpAlive: boolean;
  /** The last state keepalived announced, if the notify script recorded one. */
  vrrp?: ObservedVrrpState;
}

export interface ObservedLoadBalancer {
  /** The LoadBalancer key found in a marker (OVS external_ids or the state dir's owner file), if any. */
  lbKey?: string;
  netns?: ObservedNetns;
  port?: ObservedOvsPort;
  /** The device exists in the host namespace (freshly added, not moved yet). */
  ifaceInHost: boolean;
  haproxy?: ObservedHaproxy;
  /** The config file as it is on disk, or undefined. */
  config?: string;
  /** A config was written that the running HAProxy has not loaded (a crash between write and reload). */
  reloadPending?: boolean;
  /** ACTIVE_STANDBY: keepalived running this load balancer's config, if any. */
  keepalived?: ObservedKeepalived;
  /** keepalived.conf as it is on disk, or undefined. */
  keepalivedConfig?: string;
  /** A keepalived config was written that the running keepalived has not loaded. */
  keepalivedReloadPending?: boolean;
  /** A planned handover began long ago and never ended (the agent or `nslb drain` died in it). */
  keepalivedHandoverStale?: boolean;
  /** Certificate file names in the state dir's certs/ (named by content hash). */
  certFiles?: string[];
  stateDir: boolean;
  /** Looked at only for load balancers with UDP or SCTP listeners, or whose table may exist. */
  nft?: ObservedNft;
  /** OVS rows of its member-network ports (DESIGN §8), by marker and name. */
  memberPorts?: ObservedMemberPort[];
}

export interface ObservedNode {
  /** Keyed by netns name (`nslb-…`), for every marked thing found. */
  lbs: Map<string, ObservedLoadBalancer>;
  bridges: Set<string>;
}

/**
 * Made by the agent of this state dir: its directory is under the state dir, or its OVS port carries the
 * state dir's marker. An agent's garbage collection touches only what it made.
 */
export function madeBy(o: ObservedLoadBalancer, stateDir: string): boolean {
  return o.stateDir || (o.port?.stateDir !== undefined && resolve(o.port.stateDir) === resolve(stateDir));
}
