// The nslb.dev/v1alpha1 object model (DESIGN §1): Octavia's LBaaS v2 objects as Kubernetes-style resources.
// Field names are camelCase versions of Octavia's. The JSON Schemas in ./schemas.ts are the single source of
// truth for what is valid; these types mirror them for the compiler.

export const API_VERSION = 'nslb.dev/v1alpha1';

export const KINDS = ['LoadBalancer', 'Listener', 'Pool', 'Member', 'HealthMonitor', 'L7Policy', 'L7Rule'] as const;
export type Kind = (typeof KINDS)[number];

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  resourceVersion?: string;
  uid?: string;
}

export type ProvisioningStatus = 'ACTIVE' | 'PENDING_CREATE' | 'PENDING_UPDATE' | 'PENDING_DELETE' | 'ERROR';
export type OperatingStatus = 'ONLINE' | 'OFFLINE' | 'DEGRADED' | 'ERROR' | 'NO_MONITOR' | 'DRAINING';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ObjectStatus {
  provisioningStatus: ProvisioningStatus;
  operatingStatus: OperatingStatus;
  observedGeneration?: number;
  conditions: Condition[];
  // LoadBalancer only: node facts.
  vip?: string;
  netns?: string;
  port?: string;
  node?: string;
  /** LoadBalancer only, Kubernetes mode: where the scheduler placed it (or spec.placement.nodes), MASTER first. */
  placement?: { nodes: string[] };
  /** ACTIVE_STANDBY (DESIGN §6): each node of the placement as this node's agent sees it, MASTER first. */
  nodes?: NodeStatus[];
}

/** Octavia's amphora roles: STANDALONE for SINGLE, MASTER or BACKUP for the two nodes of ACTIVE_STANDBY. */
export type NodeRole = 'MASTER' | 'BACKUP' | 'STANDALONE';

/**
 * One node serving a load balancer (status.nodes). `role` is absent when the reporting agent cannot know it
 * (its peer's role while the two cannot talk, or a node whose keepalived is not running).
 */
export interface NodeStatus {
  name: string;
  role?: NodeRole;
  ready: boolean;
}

export interface Vip {
  address: string;
  prefixLength?: number;
  gateway?: string;
  mac?: string;
  bridge?: string;
  vlan?: number;
  mtu?: number;
}

/** Another address of the load balancer on the VIP's port (Octavia's additional_vips): it listens there too. */
export interface AdditionalVip {
  address: string;
  prefixLength?: number;
  gateway?: string;
}

/** DESIGN §6 (Octavia's names). */
export type Topology = 'SINGLE' | 'ACTIVE_STANDBY';
export const TOPOLOGIES: readonly Topology[] = ['SINGLE', 'ACTIVE_STANDBY'];

/** DESIGN §6: where a load balancer runs. */
export interface Placement {
  /** Node names (the agents' --node-name): one for SINGLE, two for ACTIVE_STANDBY, the preferred MASTER first. */
  nodes?: string[];
  /** Kubernetes mode, without `nodes`: the scheduler chooses among Nodes carrying these labels. */
  nodeSelector?: Record<string, string>;
}

/** A route through a member network: `destination` (a CIDR) via `gateway` (on that network). */
export interface MemberNetworkRoute {
  destination: string;
  gateway: string;
}

/**
 * A second arm of the load balancer (Octavia's member subnet_id): an extra OVS port in its namespace, on another
 * segment, through which members there are reached (DESIGN §8).
 */
export interface MemberNetwork {
  name: string;
  bridge?: string;
  vlan?: number;
  /** The load balancer's own address on that network. */
  address: string;
  prefixLength?: number;
  mtu?: number;
  routes?: MemberNetworkRoute[];
}

/** ACTIVE_STANDBY's VRRP (DESIGN §6). */
export interface VrrpSpec {
  /** One address per placement slot, on the VIP's segment (Octavia's VRRP ports); slot i is node i's. */
  addresses?: string[];
  advertIntervalMs?: number;
  virtualRouterId?: number;
}

export interface LoadBalancerSpec {
  vip: Vip;
  additionalVips?: AdditionalVip[];
  topology?: Topology;
  placement?: Placement;
  memberNetworks?: MemberNetwork[];
  vrrp?: VrrpSpec;
  adminStateUp?: boolean;
  description?: string;
}

/** Listener protocols, in the order the schema and messages list them. */
export const LISTENER_PROTOCOLS = ['TCP', 'HTTP', 'HTTPS', 'TERMINATED_HTTPS', 'UDP', 'SCTP', 'PROMETHEUS'] as const;
export type ListenerProtocol = (typeof LISTENER_PROTOCOLS)[number];

export interface ListenerTimeouts {
  clientData?: number;
  memberConnect?: number;
  memberData?: number;
  tcpInspect?: number;
}

export interface InsertHeaders {
  'X-Forwarded-For'?: boolean;
  'X-Forwarded-Port'?: boolean;
  'X-Forwarded-Proto'?: boolean;
  // Client certificate facts (TERMINATED_HTTPS listeners; Octavia's names).
  'X-SSL-Client-Verify'?: boolean;
  'X-SSL-Client-Has-Cert'?: boolean;
  'X-SSL-Client-DN'?: boolean;
  'X-SSL-Client-CN'?: boolean;
  'X-SSL-Issuer'?: boolean;
  'X-SSL-Client-SHA1'?: boolean;
  'X-SSL-Client-Not-Before'?: boolean;
  'X-SSL-Client-Not-After'?: boolean;
}

/** Client-certificate headers (Octavia's names), in the order they are rendered. */
export const SSL_CLIENT_HEADERS = [
  'X-SSL-Client-Verify',
  'X-SSL-Client-Has-Cert',
  'X-SSL-Client-DN',
  'X-SSL-Client-CN',
  'X-SSL-Issuer',
  'X-SSL-Client-SHA1',
  'X-SSL-Client-Not-Before',
  'X-SSL-Client-Not-After',
] as const;
export type SslClientHeader = (typeof SSL_CLIENT_HEADERS)[number];
/** Every key of InsertHeaders (Octavia's insert_headers). */
export const INSERT_HEADERS = [
  'X-Forwarded-For',
  'X-Forwarded-Port',
  'X-Forwarded-Proto',
  ...SSL_CLIENT_HEADERS,
] as const satisfies readonly (keyof InsertHeaders)[];

export type TlsVersion = 'SSLv3' | 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
export type AlpnProtocol = 'h2' | 'http/1.1' | 'http/1.0';

export interface TlsCertificateRef {
  certificateFile?: string;
  keyFile?: string;
  secretName?: string;
}

export interface ListenerTls extends TlsCertificateRef {
  sniCertificates?: TlsCertificateRef[];
  sniSecretNames?: string[];
  clientAuthentication?: 'NONE' | 'OPTIONAL' | 'MANDATORY';
  clientCaFile?: string;
  clientCrlFile?: string;
  versions?: TlsVersion[];
  ciphers?: string;
  alpnProtocols?: AlpnProtocol[];
  hsts?: { maxAge: number; includeSubdomains?: boolean; preload?: boolean };
}

export interface ListenerSpec {
  loadBalancer: string;
  protocol: ListenerProtocol;
  port: number;
  defaultPool?: string;
  connectionLimit?: number;
  timeouts?: ListenerTimeouts;
  insertHeaders?: InsertHeaders;
  allowedCidrs?: string[];
  tls?: ListenerTls;
  adminStateUp?: boolean;
  description?: string;
}

export type PoolProtocol = 'TCP' | 'HTTP' | 'HTTPS' | 'PROXY' | 'PROXYV2' | 'UDP' | 'SCTP';
export type LbAlgorithm = 'ROUND_ROBIN' | 'LEAST_CONNECTIONS' | 'SOURCE_IP' | 'SOURCE_IP_PORT';

export interface PoolTls {
  enabled?: boolean;
  caFile?: string;
  crlFile?: string;
  certificateFile?: string;
  keyFile?: string;
  secretName?: string;
  caSecretName?: string;
  versions?: TlsVersion[];
  ciphers?: string;
  alpnProtocols?: AlpnProtocol[];
}

export type SessionPersistenceType = 'SOURCE_IP' | 'HTTP_COOKIE' | 'APP_COOKIE';

export interface PoolSpec {
  loadBalancer: string;
  protocol: PoolProtocol;
  lbAlgorithm: LbAlgorithm;
  sessionPersistence?: { type: SessionPersistenceType; cookieName?: string };
  tls?: PoolTls;
  adminStateUp?: boolean;
  description?: string;
}

export interface MemberSpec {
  pool: string;
  address: string;
  port: number;
  weight?: number;
  backup?: boolean;
  monitorAddress?: string;
  monitorPort?: number;
  /** The member network (LoadBalancer.spec.memberNetworks[].name) it is reached through; else found by prefix. */
  network?: string;
  adminStateUp?: boolean;
  description?: string;
}

export type HealthMonitorType = 'PING' | 'TCP' | 'HTTP' | 'HTTPS' | 'TLS-HELLO' | 'UDP-CONNECT' | 'SCTP';

export interface HealthMonitorSpec {
  pool: string;
  type: HealthMonitorType;
  delay: number;
  timeout: number;
  maxRetries: number;
  maxRetriesDown?: number;
  httpMethod?: string;
  urlPath?: string;
  expectedCodes?: string;
  httpVersion?: '1.0' | '1.1';
  domainName?: string;
  adminStateUp?: boolean;
}

export type L7Action = 'REJECT' | 'REDIRECT_TO_URL' | 'REDIRECT_TO_POOL' | 'REDIRECT_PREFIX';

export interface L7PolicySpec {
  listener: string;
  action: L7Action;
  redirectPool?: string;
  redirectUrl?: string;
  redirectPrefix?: string;
  redirectHttpCode?: 301 | 302 | 303 | 307 | 308;
  position?: number;
  adminStateUp?: boolean;
  description?: string;
}

export type L7RuleType = 'HOST_NAME' | 'PATH' | 'FILE_TYPE' | 'HEADER' | 'COOKIE';
export type L7CompareType = 'REGEX' | 'STARTS_WITH' | 'ENDS_WITH' | 'CONTAINS' | 'EQUAL_TO';

export interface L7RuleSpec {
  l7Policy: string;
  type: L7RuleType;
  compareType: L7CompareType;
  key?: string;
  value: string;
  invert?: boolean;
  adminStateUp?: boolean;
}

export interface SpecByKind {
  LoadBalancer: LoadBalancerSpec;
  Listener: ListenerSpec;
  Pool: PoolSpec;
  Member: MemberSpec;
  HealthMonitor: HealthMonitorSpec;
  L7Policy: L7PolicySpec;
  L7Rule: L7RuleSpec;
}

export interface ApiObject<K extends Kind = Kind> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta & { namespace: string };
  spec: SpecByKind[K];
  status?: ObjectStatus;
}

export type AnyObject = { [K in Kind]: ApiObject<K> }[Kind];

/** `<namespace>/<name>` of the LoadBalancer an object belongs to; the work queue's key. */
export type LbKey = string;

export function objectId(o: { kind: Kind; metadata: { namespace: string; name: string } }): string {
  return `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
}
