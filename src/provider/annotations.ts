// Pure: a Service's annotations read into settings, with a message for each one that is wrong. The names
// follow cloud-provider-openstack's loadbalancer.openstack.org/* where one exists (see docs/kubernetes-services.md).
import { isIP } from 'node:net';
import type { PoolMembers } from '../api/v1alpha1/addresspool.js';
import type { LbAlgorithm } from '../api/v1alpha1/types.js';
import { isCidr } from '../api/v1alpha1/validate.js';
import { canonicalIp } from '../desired/addresses.js';
import { ANNOTATION, NSLB_ANNOTATION_PREFIX } from './names.js';

export type Topology = 'SINGLE' | 'ACTIVE_STANDBY';

export interface HealthMonitorSettings {
  delay: number;
  timeout: number;
  maxRetries: number;
  maxRetriesDown: number;
}

export interface ServiceSettings {
  addressPools?: string[];
  requestedAddresses?: string[];
  members?: PoolMembers;
  xForwardedFor: boolean;
  tlsSecret?: string;
  tlsPorts: number[];
  proxyProtocol?: 'v1' | 'v2';
  topology?: Topology;
  lbMethod: LbAlgorithm;
  healthMonitor: boolean;
  monitor: HealthMonitorSettings;
  timeouts: { clientData?: number; memberConnect?: number; memberData?: number; tcpInspect?: number };
  connectionLimit?: number;
  sourceRanges?: string[];
}

export interface SettingsResult {
  settings: ServiceSettings;
  /** One message per annotation that is wrong: the Service is not changed while there are any. */
  problems: string[];
  /** nslb.dev/ annotations nobody reads (a typo?): reported, not fatal. */
  unknown: string[];
}

// cloud-provider-openstack's defaults for its monitors.
export const DEFAULT_MONITOR: HealthMonitorSettings = { delay: 5, timeout: 3, maxRetries: 1, maxRetriesDown: 3 };

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KNOWN = new Set<string>(Object.values(ANNOTATION));

function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function parseServiceSettings(annotations: Readonly<Record<string, string>>, loadBalancerIP?: string): SettingsResult {
  const problems: string[] = [];
  const get = (k: string): string | undefined => {
    const v = annotations[k];
    return v === undefined ? undefined : v.trim();
  };
  const bad = (k: string, must: string, v: string): void => {
    problems.push(`annotation ${k}: must be ${must} (got ${JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v)})`);
  };
  const bool = (k: string, dflt: boolean): boolean => {
    const v = get(k);
    if (v === undefined) return dflt;
    if (v === 'true') return true;
    if (v === 'false') return false;
    bad(k, '"true" or "false"', v);
    return dflt;
  };
  const int = (k: string, min: number, max: number): number | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    if (!/^-?[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) {
      bad(k, `an integer from ${min} to ${max}`, v);
      return undefined;
    }
    return Number(v);
  };
  const oneOf = <T extends string>(k: string, allowed: readonly T[]): T | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    const hit = allowed.find((a) => a.toLowerCase() === v.toLowerCase());
    if (hit === undefined) bad(k, `one of ${allowed.join(', ')}`, v);
    return hit;
  };

  const settings: ServiceSettings = {
    xForwardedFor: bool(ANNOTATION.xForwardedFor, false),
    tlsPorts: [443],
    lbMethod: oneOf(ANNOTATION.lbMethod, ['ROUND_ROBIN', 'LEAST_CONNECTIONS', 'SOURCE_IP'] as const) ?? 'ROUND_ROBIN',
    healthMonitor: bool(ANNOTATION.healthMonitor, true),
    monitor: { ...DEFAULT_MONITOR },
    timeouts: {},
  };

  const pools = get(ANNOTATION.addressPool);
  if (pools !== undefined) {
    const names = list(pools);
    if (names.length === 0 || names.length > 2 || names.some((n) => !DNS_SUBDOMAIN.test(n) || n.length > 253)) {
      bad(ANNOTATION.addressPool, 'one AddressPool name, or two (one per address family) separated by a comma', pools);
    } else settings.addressPools = names;
  }

  // The annotation wins over the deprecated spec.loadBalancerIP, as MetalLB's does.
  const ipsText = get(ANNOTATION.loadBalancerIPs);
  const ips = ipsText !== undefined ? list(ipsText) : loadBalancerIP !== undefined && loadBalancerIP !== '' ? [loadBalancerIP] : [];
  if (ips.length > 0) {
    const families = ips.map((a) => isIP(a));
    if (ips.length > 2 || families.includes(0) || (ips.length === 2 && families[0] === families[1])) {
      const what = ipsText !== undefined ? ANNOTATION.loadBalancerIPs : 'spec.loadBalancerIP';
      problems.push(`${what}: must be one address, or two of different families separated by a comma (got ${JSON.stringify(ipsText ?? loadBalancerIP)})`);
    } else settings.requestedAddresses = ips.map(canonicalIp);
  }

  const members = oneOf(ANNOTATION.members, ['Nodes', 'Endpoints'] as const);
  if (members !== undefined) settings.members = members;

  const secret = get(ANNOTATION.tlsSecret);
  if (secret !== undefined) {
    if (!DNS_SUBDOMAIN.test(secret) || secret.length > 253) bad(ANNOTATION.tlsSecret, 'the name of a kubernetes.io/tls Secret in the namespace', secret);
    else settings.tlsSecret = secret;
  }
  const tlsPorts = get(ANNOTATION.tlsPorts);
  if (tlsPorts !== undefined) {
    const ports = list(tlsPorts);
    if (ports.length === 0 || ports.some((p) => !/^[0-9]+$/.test(p) || Number(p) < 1 || Number(p) > 65535)) {
      bad(ANNOTATION.tlsPorts, 'Service ports separated by commas', tlsPorts);
    } else settings.tlsPorts = ports.map(Number);
    if (secret === undefined) problems.push(`annotation ${ANNOTATION.tlsPorts}: needs ${ANNOTATION.tlsSecret}`);
  }

  const proxy = get(ANNOTATION.proxyProtocol);
  if (proxy !== undefined) {
    if (proxy === 'true' || proxy === 'v1') settings.proxyProtocol = 'v1';
    else if (proxy === 'v2') settings.proxyProtocol = 'v2';
    else if (proxy !== 'false') bad(ANNOTATION.proxyProtocol, '"true", "v1", "v2" or "false"', proxy);
  }

  const topology = oneOf(ANNOTATION.topology, ['SINGLE', 'ACTIVE_STANDBY'] as const);
  if (topology !== undefined) settings.topology = topology;

  const m = settings.monitor;
  m.delay = int(ANNOTATION.healthMonitorDelay, 1, 3600) ?? m.delay;
  m.timeout = int(ANNOTATION.healthMonitorTimeout, 1, 3600) ?? Math.min(m.timeout, m.delay);
  m.maxRetries = int(ANNOTATION.healthMonitorMaxRetries, 1, 10) ?? m.maxRetries;
  m.maxRetriesDown = int(ANNOTATION.healthMonitorMaxRetriesDown, 1, 10) ?? m.maxRetriesDown;
  if (m.timeout > m.delay) {
    problems.push(`annotation ${ANNOTATION.healthMonitorTimeout}: must be at most the delay (${m.delay} s; got ${m.timeout})`);
  }

  const timeout = (k: string): number | undefined => int(k, 0, 86_400_000);
  const t = settings.timeouts;
  const clientData = timeout(ANNOTATION.timeoutClientData);
  const memberConnect = timeout(ANNOTATION.timeoutMemberConnect);
  const memberData = timeout(ANNOTATION.timeoutMemberData);
  const tcpInspect = timeout(ANNOTATION.timeoutTcpInspect);
  if (clientData !== undefined) t.clientData = clientData;
  if (memberConnect !== undefined) t.memberConnect = memberConnect;
  if (memberData !== undefined) t.memberData = memberData;
  if (tcpInspect !== undefined) t.tcpInspect = tcpInspect;
  const limit = int(ANNOTATION.connectionLimit, -1, 1_000_000);
  if (limit !== undefined) settings.connectionLimit = limit;

  const ranges = get(ANNOTATION.sourceRanges);
  if (ranges !== undefined) {
    const cidrs = list(ranges);
    if (cidrs.some((c) => !isCidr(c))) bad(ANNOTATION.sourceRanges, 'CIDRs separated by commas', ranges);
    else settings.sourceRanges = cidrs;
  }

  const unknown = Object.keys(annotations).filter((k) => k.startsWith(NSLB_ANNOTATION_PREFIX) && !KNOWN.has(k));
  return { settings, problems, unknown };
}
