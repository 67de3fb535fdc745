// The per-load-balancer desired model: what one LoadBalancer and its children should look like on this node,
// with every default filled in and every cross-object reference resolved. Built by ./build.ts (pure),
// consumed by the planner and the HAProxy renderer (pure).
import type {
  HealthMonitorType,
  LbAlgorithm,
  LbKey,
  ListenerProtocol,
  PoolProtocol,
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

export interface DesiredPool {
  name: string;
  protocol: PoolProtocol;
  lbAlgorithm: LbAlgorithm;
  adminStateUp: boolean;
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
