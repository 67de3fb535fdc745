// The per-load-balancer desired model: what one LoadBalancer and its children should look like on this node,
// with every default filled in and every cross-object reference resolved. Built by ./build.ts (pure),
// consumed by the planner and the HAProxy renderer (pure).
import type {
  AlpnProtocol,
  Kind,
  HealthMonitorType,
  L7Action,
  L7CompareType,
  L7RuleType,
  LbAlgorithm,
  LbKey,
  ListenerProtocol,
  PoolProtocol,
  SessionPersistenceType,
  SslClientHeader,
  TlsVersion,
} from '../api/v1alpha1/types.js';

export interface NodeNames {
  /** `nslb-` + 12 hex digits of sha256(`<namespace>/<name>`). */
  netns: string;
  /** `nslb` + 11 hex digits of the same hash (≤ 15 chars, the kernel's limit). */
  iface: string;
}

/** One address of the VIP port, canonically spelled (as `ip -json` reports it). */
export interface DesiredVipAddress {
  address: string;
  family: 4 | 6;
  prefixLength: number;
  /** The namespace's default route of this family (one per family across the VIP and additional VIPs). */
  gateway?: string;
}

export interface DesiredVip extends DesiredVipAddress {
  /**
   * spec.additionalVips in order: more addresses on the same port, where every listener binds too. Absent
   * when there are none.
   */
  additional?: DesiredVipAddress[];
  /** Given, or derived from the hash (fa:16:3e:xx:xx:xx) so that it never changes across restarts. */
  mac: string;
  vlan?: number;
  mtu?: number;
}

export interface DesiredHealthMonitor {
  name: string;
  type: HealthMonitorType;
  delay: number;
  timeout: number;
  maxRetries: number;
  maxRetriesDown: number;
  httpMethod: string;
  urlPath: string;
  expectedCodes: string;
  httpVersion?: '1.0' | '1.1';
  domainName?: string;
  adminStateUp: boolean;
}

export interface DesiredMember {
  name: string;
  address: string;
  port: number;
  weight: number;
  backup: boolean;
  adminStateUp: boolean;
  monitorAddress?: string;
  monitorPort?: number;
  /** The member network it is reached through (named, or the one whose prefix holds its address). */
  network?: string;
}

/** LoadBalancer.spec.memberNetworks[i]: one more port of the load balancer, on another segment (DESIGN §8). */
export interface DesiredMemberNetwork {
  name: string;
  /** Its position in spec.memberNetworks: part of the port's name. */
  index: number;
  /** `nslb` + 9 hex digits of the load balancer's hash + the 2-digit index. */
  iface: string;
  bridge: string;
  vlan?: number;
  mtu?: number;
  mac: string;
  address: string;
  family: 4 | 6;
  prefixLength: number;
  /** Canonical CIDR → gateway, in spec order. */
  routes: { destination: string; gateway: string }[];
}

/**
 * A PEM bundle (certificate chain followed by its private key) that HAProxy reads from the load balancer's
 * `certs/` directory. The file name is derived from the content's hash, so a rotated certificate is a new
 * file and a new config line: the config changes exactly when the material does.
 */
export interface DesiredCertificate {
  /** `<sha256-hex-16>.pem`, a plain file name inside `certs/`. */
  fileName: string;
  pem: string;
}

/** What a TLS endpoint (a listener's bind, a pool's servers) lets a peer negotiate. */
export interface DesiredTlsPolicy {
  /** The lowest and highest version allowed (the versions field is a contiguous range). Absent: HAProxy's default. */
  minVersion?: TlsVersion;
  maxVersion?: TlsVersion;
  /** TLS 1.2 and older (HAProxy `ciphers`); absent: OpenSSL's default. */
  ciphers?: string;
  /** TLS 1.3 suites, the TLS_* entries of the ciphers field (HAProxy `ciphersuites`); absent: OpenSSL's default. */
  ciphersuites?: string;
  /** In order of preference, no repeats; empty: no ALPN extension. */
  alpn: AlpnProtocol[];
}

export interface DesiredListenerTls {
  /** The default certificate (served without SNI or for an unknown name). */
  certificate: DesiredCertificate;
  /** Picked by HAProxy from each certificate's names (CN/SAN) when the client sends SNI. */
  sniCertificates: DesiredCertificate[];
  /** Client certificates: NONE when absent. */
  clientAuthentication?: 'NONE' | 'OPTIONAL' | 'MANDATORY';
  /** CA bundle that client certificates must chain to (OPTIONAL and MANDATORY). */
  clientCa?: DesiredCertificate;
  /** Revoked client certificates. */
  clientCrl?: DesiredCertificate;
  /** Absent only in hand-made models: the builder always fills in the defaults. */
  policy?: DesiredTlsPolicy;
  hsts?: { maxAge: number; includeSubdomains: boolean; preload: boolean };
}

/** Pool.tls with enabled: true, as HAProxy's `server … ssl` options. */
export interface DesiredMemberTls {
  /** Members' certificates must chain to this; absent: not verified (`verify none`). */
  ca?: DesiredCertificate;
  crl?: DesiredCertificate;
  /** Certificate and key presented to members that ask for one. */
  clientCertificate?: DesiredCertificate;
  policy: DesiredTlsPolicy;
}

export interface DesiredL7Rule {
  name: string;
  type: L7RuleType;
  compareType: L7CompareType;
  /** HEADER and COOKIE: the header or cookie name. */
  key?: string;
  value: string;
  invert: boolean;
}

export interface DesiredL7Policy {
  name: string;
  action: L7Action;
  /** 1-based, resolved: policies are sorted by it, ties broken by name. */
  position: number;
  redirectPool?: string;
  redirectUrl?: string;
  redirectPrefix?: string;
  redirectHttpCode: number;
  /** ANDed; admin-down rules are dropped. A policy without rules matches nothing (as in Octavia). */
  rules: DesiredL7Rule[];
}

export interface DesiredPool {
  name: string;
  protocol: PoolProtocol;
  lbAlgorithm: LbAlgorithm;
  adminStateUp: boolean;
  sessionPersistence?: { type: SessionPersistenceType; cookieName?: string };
  /** TLS from HAProxy to the members (Pool.tls.enabled). */
  tlsToMembers: boolean;
  /** The TLS settings towards members when tlsToMembers (the builder always fills it in then). */
  memberTls?: DesiredMemberTls;
  /** Sorted by name, so that the rendered config does not depend on file order. */
  members: DesiredMember[];
  healthMonitor?: DesiredHealthMonitor;
}

export interface DesiredListener {
  name: string;
  protocol: ListenerProtocol;
  port: number;
  defaultPool?: string;
  /** -1 = unlimited. */
  connectionLimit: number;
  timeouts: { clientData: number; memberConnect: number; memberData: number; tcpInspect: number };
  adminStateUp: boolean;
  insertHeaders: {
    forwardedFor: boolean;
    forwardedPort: boolean;
    forwardedProto: boolean;
    /** TERMINATED_HTTPS only; absent = none. */
    sslClient?: SslClientHeader[];
  };
  /** Canonical CIDRs; empty = everyone. */
  allowedCidrs: string[];
  /** TERMINATED_HTTPS only. */
  tls?: DesiredListenerTls;
  /** Admin-up policies only, sorted by position. */
  l7Policies: DesiredL7Policy[];
}

/**
 * This node's side of an ACTIVE_STANDBY pair (DESIGN §6): its VIP port holds its VRRP address, keepalived moves
 * the VIPs, HAProxy binds them non-locally and shares stick tables with the peer.
 */
export interface DesiredHa {
  /**
   * This node (the agent's --node-name) and its slot in the placement in force (spec.placement.nodes, else the
   * scheduler's status.placement.nodes): 0 is the preferred MASTER.
   */
  node: string;
  slot: 0 | 1;
  /** The other node of the placement. */
  peer: string;
  /** spec.vrrp.addresses[slot] and [1 - slot], canonically spelled. */
  localAddress: string;
  peerAddress: string;
  advertIntervalMs: number;
  virtualRouterId: number;
  /**
   * This node is drained (Kubernetes mode: its Node labelled nslb.dev/drain=true) and the peer is ready: the
   * MASTER role goes to the peer before the scheduler moves this node's slot.
   */
  leave?: true;
}

export interface DesiredLoadBalancer {
  key: LbKey;
  namespace: string;
  name: string;
  names: NodeNames;
  bridge: string;
  vip: DesiredVip;
  adminStateUp: boolean;
  /**
   * The placement in force (spec.placement.nodes, else in Kubernetes mode the scheduler's): only the agents of
   * these nodes serve it. Absent: every agent that sees it (file mode).
   */
  placement?: string[];
  /** ACTIVE_STANDBY on this node; absent for SINGLE. */
  ha?: DesiredHa;
  /** Sorted by name. */
  listeners: DesiredListener[];
  /** Sorted by name. */
  pools: DesiredPool[];
  /** spec.memberNetworks in order; absent when there are none. */
  memberNetworks?: DesiredMemberNetwork[];
}

/** The VIP and then the additional VIPs: every address the load balancer listens on. */
export function vipAddresses(vip: DesiredVip): DesiredVipAddress[] {
  const { address, family, prefixLength, gateway } = vip;
  return [{ address, family, prefixLength, ...(gateway === undefined ? {} : { gateway }) }, ...(vip.additional ?? [])];
}

/** A problem of one desired object: its status says ERROR with this reason and message. */
export interface ObjectProblem {
  kind: Kind;
  namespace: string;
  name: string;
  reason: 'InvalidReference' | 'InvalidSpec' | 'NotSupported' | 'Conflict';
  message: string;
  /** JSON pointer to the offending field, e.g. `/spec/defaultPool`. */
  path?: string;
}

export interface DesiredState {
  /** Only load balancers whose whole subtree is valid, in namespace/name order. */
  lbs: Map<LbKey, DesiredLoadBalancer>;
  /**
   * Load balancers that exist in the input but have a problem in themselves or a child, in namespace/name
   * order, each with all its problems: the node keeps serving what was last applied.
   */
  blocked: Map<LbKey, ObjectProblem[]>;
  /** Every problem, including those of objects whose load balancer cannot be determined. */
  problems: ObjectProblem[];
  /** objectId() → the load balancer, for every object that resolves to one. */
  owners: Map<string, LbKey>;
}
