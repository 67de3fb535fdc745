// The per-load-balancer desired model: what one LoadBalancer and its children should look like on this node,
// with every default filled in and every cross-object reference resolved. Built by ./build.ts (pure),
// consumed by the planner and the HAProxy renderer (pure).
import type {
  HealthMonitorType,
  L7Action,
  L7CompareType,
  L7RuleType,
  LbAlgorithm,
  LbKey,
  ListenerProtocol,
  PoolProtocol,
  SessionPersistenceType,
} from '../api/v1alpha1/types.js';

export interface NodeNames {
  /** `nslb-` + 12 hex digits of sha256(`<namespace>/<name>`). */
  netns: string;
  /** `nslb` + 11 hex digits of the same hash (≤ 15 chars, the kernel's limit). */
  iface: string;
}

export interface DesiredVip {
  address: string;
  family: 4 | 6;
  prefixLength: number;
  gateway?: string;
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

export interface DesiredListenerTls {
  /** The default certificate (served without SNI or for an unknown name). */
  certificate: DesiredCertificate;
  /** Picked by HAProxy from each certificate's names (CN/SAN) when the client sends SNI. */
  sniCertificates: DesiredCertificate[];
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
  /** TLS from HAProxy to the members (Pool.tls.enabled); members' certificates are not verified yet. */
  tlsToMembers: boolean;
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
  insertHeaders: { forwardedFor: boolean; forwardedPort: boolean; forwardedProto: boolean };
  /** Canonical CIDRs; empty = everyone. */
  allowedCidrs: string[];
  /** TERMINATED_HTTPS only. */
  tls?: DesiredListenerTls;
  /** Admin-up policies only, sorted by position. */
  l7Policies: DesiredL7Policy[];
}

export interface DesiredLoadBalancer {
  key: LbKey;
  namespace: string;
  name: string;
  names: NodeNames;
  bridge: string;
  vip: DesiredVip;
  adminStateUp: boolean;
  /** Sorted by name. */
  listeners: DesiredListener[];
  /** Sorted by name. */
  pools: DesiredPool[];
}
