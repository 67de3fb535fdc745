// Pure: one Service of type LoadBalancer (with its EndpointSlices, the Nodes and the VIPs it was given) →
// the nslb objects that serve it, as cloud-provider-openstack maps a Service onto Octavia: one LoadBalancer,
// per Service port a Listener and a Pool (and a HealthMonitor), the members being every Ready node on the
// NodePort or the ready endpoints themselves. Nothing here reads the API or the clock: the same input gives
// the same objects, which is what lets the writer apply only the difference (a scaled Deployment changes
// Members and nothing else, which the engine applies through HAProxy's runtime API, without a reload).
import type { PoolMembers } from '../api/v1alpha1/addresspool.js';
import { SPEC_SCHEMAS } from '../api/v1alpha1/schemas.js';
import type { HealthMonitorSpec, Kind, ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec } from '../api/v1alpha1/types.js';
import { API_VERSION } from '../api/v1alpha1/types.js';
import { canonicalIp, parseIp } from '../desired/addresses.js';
import type { ServiceSettings } from './annotations.js';
import type { Family, VipSettings } from './ipam.js';
import { EXCLUDE_FROM_LB_LABEL, type EndpointSlice, type Node, type OwnerReference, type Service, type ServicePort } from './kube.js';
import { loadBalancerName, memberName, portObjectName, SERVICE_LABEL } from './names.js';

/** An nslb object the provider wants in the API, owned by its Service. */
export interface DesiredObject {
  apiVersion: typeof API_VERSION;
  kind: Kind;
  metadata: { name: string; namespace: string; labels: Record<string, string>; ownerReferences: OwnerReference[] };
  spec: object;
}

/** What this build of nslb can do, read from its own schemas so that a later one needs no change here. */
export interface Capabilities {
  /** Service port protocols a Listener can carry (TCP today; UDP and SCTP once the schema has them). */
  listenerProtocols: readonly string[];
  healthMonitorTypes: readonly string[];
  /** LoadBalancer.spec.topology exists (DESIGN §6). */
  topology: boolean;
}

export function capabilitiesOfSchema(): Capabilities {
  const enumOf = (kind: Kind, field: string): string[] => (SPEC_SCHEMAS[kind].properties?.[field]?.enum ?? []).map(String);
  return {
    listenerProtocols: enumOf('Listener', 'protocol').filter((p) => ['TCP', 'UDP', 'SCTP'].includes(p)),
    healthMonitorTypes: enumOf('HealthMonitor', 'type'),
    topology: SPEC_SCHEMAS.LoadBalancer.properties?.topology !== undefined,
  };
}

export interface TranslateInput {
  service: Service;
  settings: ServiceSettings;
  /** The VIP first, then at most one address of the other family (additionalVips). */
  vips: VipSettings[];
  nodes: readonly Node[];
  /** The Service's EndpointSlices. */
  slices: readonly EndpointSlice[];
  /** Nodes on the NodePort, or the endpoints directly (annotation, then pool, then the agent's flag). */
  members: PoolMembers;
  capabilities: Capabilities;
}

export interface PortRef {
  name?: string;
  port: number;
  protocol: string;
}

export interface RefusedPort extends PortRef {
  reason: string;
  message: string;
}

export interface Translation {
  objects: DesiredObject[];
  served: PortRef[];
  refused: RefusedPort[];
  /** Things the user asked for that are not done, for Events. */
  warnings: { reason: string; message: string }[];
  /** The members used in the end (Endpoints when the Service has no node ports). */
  members: PoolMembers;
  /** Proxy when members see the load balancer's connections rather than the client's (PROXY protocol on). */
  ipMode: 'VIP' | 'Proxy';
}

const portRef = (p: ServicePort): PortRef => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP' });
const describePort = (p: PortRef): string => `${p.protocol} port ${p.name ? `${p.name} (${p.port})` : p.port}`;

function nodeReady(n: Node): boolean {
  return (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** The node's InternalIP of a family (ExternalIP when it has none): where its NodePorts answer. */
function nodeAddress(n: Node, family: Family): string | undefined {
  const of = (type: string) =>
    (n.status?.addresses ?? []).find((a) => a.type === type && a.address !== undefined && parseIp(a.address)?.family === family)?.address;
  const a = of('InternalIP') ?? of('ExternalIP');
  return a === undefined ? undefined : canonicalIp(a);
}

interface MemberTarget {
  address: string;
  port: number;
  monitorPort?: number;
}

function nodeTargets(input: TranslateInput, p: ServicePort, families: Family[], local: Set<string> | undefined): MemberTarget[] {
  const spec = input.service.spec ?? {};
  const targets: MemberTarget[] = [];
  for (const n of input.nodes) {
    const name = n.metadata?.name ?? '';
    if (!nodeReady(n) || n.metadata?.labels?.[EXCLUDE_FROM_LB_LABEL] !== undefined) continue;
    if (local !== undefined && !local.has(name)) continue;
    const address = families.map((f) => nodeAddress(n, f)).find((a) => a !== undefined);
    if (address === undefined || p.nodePort === undefined) continue;
    const t: MemberTarget = { address, port: p.nodePort };
    if (spec.externalTrafficPolicy === 'Local' && spec.healthCheckNodePort !== undefined) t.monitorPort = spec.healthCheckNodePort;
    targets.push(t);
  }
  return targets;
}

function readyEndpoints(slices: readonly EndpointSlice[], families: Family[]): { slice: EndpointSlice; address: string; nodeName?: string }[] {
  // A dual-stack Service has slices of both families for the same pods: one family's are enough, the VIP's first.
  for (const family of families) {
    const out: { slice: EndpointSlice; address: string; nodeName?: string }[] = [];
    for (const s of slices) {
      if (s.addressType !== `IPv${family}`) continue;
      for (const e of s.endpoints ?? []) {
        // Kubernetes: a nil ready condition means ready.
        if (e.conditions?.ready === false) continue;
        const a = e.addresses?.[0];
        if (a === undefined || parseIp(a)?.family !== family) continue;
        out.push({ slice: s, address: canonicalIp(a), ...(e.nodeName === undefined ? {} : { nodeName: e.nodeName }) });
      }
    }
    if (out.length > 0) return out;
  }
  return [];
}

function endpointTargets(input: TranslateInput, p: ServicePort, families: Family[]): MemberTarget[] {
  const targets: MemberTarget[] = [];
  for (const e of readyEndpoints(input.slices, families)) {
    const sp = (e.slice.ports ?? []).find((x) => (x.name ?? '') === (p.name ?? '') && (x.protocol ?? 'TCP') === (p.protocol ?? 'TCP'));
    const port = sp?.port ?? (typeof p.targetPort === 'number' ? p.targetPort : undefined);
    if (port !== undefined) targets.push({ address: e.address, port });
  }
  return targets;
}

function dedupe(targets: MemberTarget[]): MemberTarget[] {
  const seen = new Map<string, MemberTarget>();
  for (const t of targets) seen.set(`${t.address}|${t.port}`, t);
  return [...seen.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
}

export function translateService(input: TranslateInput): Translation {
  const { service, settings, capabilities } = input;
  const namespace = service.metadata?.namespace ?? 'default';
  const svcName = service.metadata?.name ?? '';
  const spec = service.spec ?? {};
  const owner: OwnerReference = {
    apiVersion: 'v1',
    kind: 'Service',
    name: svcName,
    uid: service.metadata?.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
  const meta = (name: string): DesiredObject['metadata'] => ({ name, namespace, labels: { [SERVICE_LABEL]: svcName }, ownerReferences: [owner] });
  const object = (kind: Kind, name: string, s: object): DesiredObject => ({ apiVersion: API_VERSION, kind, metadata: meta(name), spec: s });

  const warnings: Translation['warnings'] = [];
  const served: PortRef[] = [];
  const refused: RefusedPort[] = [];
  const ports = spec.ports ?? [];
  for (const p of ports) {
    const ref = portRef(p);
    if (capabilities.listenerProtocols.includes(ref.protocol)) served.push(ref);
    else {
      refused.push({
        ...ref,
        reason: 'UnsupportedProtocol',
        message: `${describePort(ref)} is not served: nslb load balancers serve ${capabilities.listenerProtocols.join(', ')} only`,
      });
    }
  }
  const servedPorts = ports.filter((p) => capabilities.listenerProtocols.includes(p.protocol ?? 'TCP'));
  let members: PoolMembers = input.members;
  if (members === 'Nodes' && servedPorts.some((p) => p.nodePort === undefined)) {
    members = 'Endpoints';
    if (spec.allocateLoadBalancerNodePorts !== false) {
      warnings.push({ reason: 'NoNodePorts', message: 'some ports have no nodePort: members are the ready endpoints instead of the nodes' });
    }
  }
  const ipMode = settings.proxyProtocol === undefined ? 'VIP' : 'Proxy';
  const result: Translation = { objects: [], served, refused, warnings, members, ipMode };
  if (servedPorts.length === 0 || input.vips.length === 0) return result;

  const [vip, extra] = input.vips as [VipSettings, VipSettings | undefined];
  const families: Family[] = [vip.family, ...(extra === undefined ? [] : [extra.family])];
  const lbName = loadBalancerName(svcName);
  const lbSpec: LoadBalancerSpec & { topology?: string } = {
    vip: {
      address: vip.address,
      prefixLength: vip.prefixLength,
      ...(vip.gateway === undefined ? {} : { gateway: vip.gateway }),
      ...(vip.bridge === undefined ? {} : { bridge: vip.bridge }),
      ...(vip.vlan === undefined ? {} : { vlan: vip.vlan }),
    },
    description: `Service ${namespace}/${svcName}`,
  };
  if (extra !== undefined) {
    lbSpec.additionalVips = [{ address: extra.address, prefixLength: extra.prefixLength, ...(extra.gateway === undefined ? {} : { gateway: extra.gateway }) }];
  }
  if (settings.topology !== undefined && settings.topology !== 'SINGLE') {
    // ACTIVE_STANDBY needs two nodes and two VRRP addresses: neither is allocated for Services yet.
    warnings.push({
      reason: 'TopologyNotSupported',
      message: capabilities.topology
        ? `topology ${settings.topology} needs placement.nodes and vrrp.addresses, which the Service provider does not allocate yet: served as SINGLE`
        : `topology ${settings.topology} is not supported by this version of nslb (LoadBalancer.spec.topology does not exist yet): served as SINGLE`,
    });
  }
  result.objects.push(object('LoadBalancer', lbName, lbSpec));

  // externalTrafficPolicy: Local on node members: only nodes with a ready endpoint of their own, when the
  // EndpointSlices say where endpoints run; the health monitor on healthCheckNodePort covers what they do not.
  let local: Set<string> | undefined;
  if (members === 'Nodes' && spec.externalTrafficPolicy === 'Local') {
    const eps = readyEndpoints(input.slices, families);
    if (eps.some((e) => e.nodeName !== undefined)) local = new Set(eps.flatMap((e) => (e.nodeName === undefined ? [] : [e.nodeName])));
  }
  const tlsPorts = settings.tlsSecret === undefined ? [] : settings.tlsPorts;
  for (const tls of tlsPorts) {
    if (!servedPorts.some((p) => p.port === tls && (p.protocol ?? 'TCP') === 'TCP')) {
      warnings.push({ reason: 'TlsPortNotFound', message: `${tls} in annotation nslb.dev/tls-ports is not a TCP port of the Service` });
    }
  }

  for (const p of servedPorts) {
    const protocol = p.protocol ?? 'TCP';
    const name = portObjectName(svcName, protocol, p.port);
    const tcp = protocol === 'TCP';
    const listenerProtocol = !tcp ? protocol : tlsPorts.includes(p.port) ? 'TERMINATED_HTTPS' : settings.xForwardedFor ? 'HTTP' : 'TCP';
    const http = listenerProtocol === 'HTTP' || listenerProtocol === 'TERMINATED_HTTPS';
    const listener: ListenerSpec = { loadBalancer: lbName, protocol: listenerProtocol as ListenerSpec['protocol'], port: p.port, defaultPool: name };
    const cidrs =
      spec.loadBalancerSourceRanges !== undefined && spec.loadBalancerSourceRanges.length > 0 ? spec.loadBalancerSourceRanges : settings.sourceRanges;
    if (cidrs !== undefined && cidrs.length > 0) listener.allowedCidrs = cidrs.map((c) => c.trim());
    if (Object.keys(settings.timeouts).length > 0) listener.timeouts = { ...settings.timeouts };
    // The kernel forwards UDP and SCTP flow by flow: no connection limit, no connection counts to balance by.
    if (settings.connectionLimit !== undefined && tcp) listener.connectionLimit = settings.connectionLimit;
    if (http && settings.xForwardedFor) listener.insertHeaders = { 'X-Forwarded-For': true };
    if (listenerProtocol === 'TERMINATED_HTTPS') {
      listener.insertHeaders = { ...listener.insertHeaders, 'X-Forwarded-Proto': true };
      listener.tls = { secretName: settings.tlsSecret! };
    }
    result.objects.push(object('Listener', name, listener));

    const poolProtocol = !tcp ? protocol : settings.proxyProtocol === 'v1' ? 'PROXY' : settings.proxyProtocol === 'v2' ? 'PROXYV2' : http ? 'HTTP' : 'TCP';
    const lbAlgorithm = !tcp && settings.lbMethod === 'LEAST_CONNECTIONS' ? 'ROUND_ROBIN' : settings.lbMethod;
    const pool: PoolSpec = { loadBalancer: lbName, protocol: poolProtocol as PoolSpec['protocol'], lbAlgorithm };
    if (spec.sessionAffinity === 'ClientIP') pool.sessionPersistence = { type: 'SOURCE_IP' };
    result.objects.push(object('Pool', name, pool));

    const targets = dedupe(members === 'Nodes' ? nodeTargets(input, p, families, local) : endpointTargets(input, p, families));
    for (const t of targets) {
      const m: MemberSpec = { pool: name, address: t.address, port: t.port, ...(t.monitorPort === undefined ? {} : { monitorPort: t.monitorPort }) };
      result.objects.push(object('Member', memberName(svcName, protocol, p.port, t.address, t.port), m));
    }

    const monitor = healthMonitor(input, name, protocol, members);
    if (monitor !== undefined) result.objects.push(object('HealthMonitor', name, monitor));
  }
  return result;
}

function healthMonitor(input: TranslateInput, pool: string, protocol: string, members: PoolMembers): HealthMonitorSpec | undefined {
  const spec = input.service.spec ?? {};
  const m = input.settings.monitor;
  const base = { pool, delay: m.delay, timeout: m.timeout, maxRetries: m.maxRetries, maxRetriesDown: m.maxRetriesDown };
  // kube-proxy answers /healthz on healthCheckNodePort with 200 only on nodes with a ready local endpoint:
  // cloud-provider-openstack's monitor for externalTrafficPolicy: Local, and not one to switch off.
  if (members === 'Nodes' && spec.externalTrafficPolicy === 'Local' && spec.healthCheckNodePort !== undefined) {
    return { ...base, type: 'HTTP', httpMethod: 'GET', urlPath: '/healthz', expectedCodes: '200' };
  }
  if (!input.settings.healthMonitor) return undefined;
  const type = protocol === 'TCP' ? 'TCP' : protocol === 'UDP' ? 'UDP-CONNECT' : protocol;
  if (!input.capabilities.healthMonitorTypes.includes(type)) return undefined;
  return { ...base, type: type as HealthMonitorSpec['type'] };
}
