// The Service provider's names (DESIGN §7): the class it answers to, the annotations it reads, the label and
// finalizer it puts on what it manages, and the names of the nslb objects it makes for a Service.
import { createHash } from 'node:crypto';

export const LOAD_BALANCER_CLASS = 'nslb.dev/haproxy';

/** On every nslb object made for a Service: `nslb.dev/service=<service name>` (same namespace). */
export const SERVICE_LABEL = 'nslb.dev/service';
/** On the Service: it is never deleted while its VIP may still answer. */
export const SERVICE_FINALIZER = 'nslb.dev/load-balancer-cleanup';
/** The Lease in the agent's namespace whose holder is the one provider at work. */
export const PROVIDER_LEASE = 'nslb-provider';
/** Reporting controller of the provider's Events. */
export const PROVIDER_COMPONENT = 'nslb.dev/service-provider';

// Service conditions (status.conditions), domain-prefixed as Kubernetes asks of non-core condition types.
export const CONDITION_ADDRESS = 'nslb.dev/AddressAssigned';
export const CONDITION_PORTS = 'nslb.dev/PortsServed';
export const CONDITION_READY = 'nslb.dev/LoadBalancerReady';
export const OUR_CONDITIONS: readonly string[] = [CONDITION_ADDRESS, CONDITION_PORTS, CONDITION_READY];

export const ANNOTATION = {
  addressPool: 'nslb.dev/address-pool',
  loadBalancerIPs: 'nslb.dev/loadBalancerIPs',
  members: 'nslb.dev/members',
  xForwardedFor: 'nslb.dev/x-forwarded-for',
  tlsSecret: 'nslb.dev/tls-secret',
  tlsPorts: 'nslb.dev/tls-ports',
  proxyProtocol: 'nslb.dev/proxy-protocol',
  topology: 'nslb.dev/topology',
  lbMethod: 'nslb.dev/lb-method',
  healthMonitor: 'nslb.dev/health-monitor',
  healthMonitorDelay: 'nslb.dev/health-monitor-delay',
  healthMonitorTimeout: 'nslb.dev/health-monitor-timeout',
  healthMonitorMaxRetries: 'nslb.dev/health-monitor-max-retries',
  healthMonitorMaxRetriesDown: 'nslb.dev/health-monitor-max-retries-down',
  timeoutClientData: 'nslb.dev/timeout-client-data',
  timeoutMemberConnect: 'nslb.dev/timeout-member-connect',
  timeoutMemberData: 'nslb.dev/timeout-member-data',
  timeoutTcpInspect: 'nslb.dev/timeout-tcp-inspect',
  connectionLimit: 'nslb.dev/connection-limit',
  /** Kubernetes' own, older spelling of spec.loadBalancerSourceRanges (cloud providers honour both). */
  sourceRanges: 'service.beta.kubernetes.io/load-balancer-source-ranges',
} as const;

export const NSLB_ANNOTATION_PREFIX = 'nslb.dev/';

const MAX_NAME = 63;

function hash(text: string, n: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, n);
}

/**
 * `parts` joined by "-" when that is a DNS-1123 label of at most 63 characters; otherwise cut and given a
 * hash of the whole, so that two long names that share a start still differ.
 */
export function fitName(...parts: string[]): string {
  const whole = parts.join('-');
  if (whole.length <= MAX_NAME) return whole;
  const h = hash(whole, 8);
  return `${whole.slice(0, MAX_NAME - h.length - 1).replace(/-+$/, '')}-${h}`;
}

/** The LoadBalancer of a Service: its own name, so `kubectl get lb` reads like `kubectl get svc`. */
export function loadBalancerName(service: string): string {
  return service;
}

/** Listener, Pool and HealthMonitor of one Service port: `<service>-<protocol>-<port>`. */
export function portObjectName(service: string, protocol: string, port: number): string {
  return fitName(service, protocol.toLowerCase(), String(port));
}

/** A Member: the port's name and a hash of where it sends traffic, stable while the member stays. */
export function memberName(service: string, protocol: string, port: number, address: string, memberPort: number): string {
  return fitName(service, protocol.toLowerCase(), String(port), hash(`${address}|${memberPort}`, 10));
}

export function serviceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function parseServiceKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}
