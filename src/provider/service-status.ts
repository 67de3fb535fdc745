// Pure: what a Service's status says. `status.loadBalancer.ingress` carries the VIPs only once the node
// serves them (the LoadBalancer ACTIVE with its VIP, every Listener ACTIVE and its frontend open), and keeps
// them while the same LoadBalancer keeps serving them: a member change briefly makes it PENDING_UPDATE, and
// clients must not see the address come and go with it. Three conditions say the rest, each with a reason.
import type { Condition, ObjectStatus } from '../api/v1alpha1/types.js';
import type { LoadBalancerIngress, Service } from './kube.js';
import { CONDITION_ADDRESS, CONDITION_PORTS, CONDITION_READY, OUR_CONDITIONS } from './names.js';
import type { PortRef, RefusedPort } from './translate.js';

export interface ObservedObject {
  name: string;
  generation?: number;
  status?: Partial<ObjectStatus>;
}

export interface StatusInput {
  service: Service;
  now: string;
  /** Addresses held (VIP first) and from which pool; or why none is. */
  address?: { ok: true; addresses: string[]; pools: string[] } | { ok: false; reason: string; message: string };
  /** A problem that stops the provider from serving the Service (bad annotations, a name clash). */
  blocked?: { reason: string; message: string };
  served: readonly PortRef[];
  refused: readonly RefusedPort[];
  ipMode: 'VIP' | 'Proxy';
  /** The LoadBalancer and Listeners as the API server has them now. */
  loadBalancer?: ObservedObject;
  listeners: readonly ObservedObject[];
}

export interface WantedServiceStatus {
  ingress: LoadBalancerIngress[];
  conditions: Condition[];
}

const PORT_ERROR = 'nslb.dev/UnsupportedProtocol';

const isCurrent = (o: ObservedObject): boolean => o.generation === undefined || o.status?.observedGeneration === o.generation;

/** The node serves the VIPs: the LoadBalancer is ACTIVE with them, and so is every Listener with its port open. */
export function serving(lb: ObservedObject | undefined, listeners: readonly ObservedObject[], expected: number, addresses: readonly string[]): boolean {
  if (lb === undefined || lb.status?.provisioningStatus !== 'ACTIVE' || !isCurrent(lb) || lb.status.vip !== addresses[0]) return false;
  if (listeners.length !== expected) return false;
  return listeners.every(
    (l) => l.status?.provisioningStatus === 'ACTIVE' && isCurrent(l) && (l.status.operatingStatus === 'ONLINE' || l.status.operatingStatus === 'DEGRADED'),
  );
}

function ingressIps(service: Service): string[] {
  return (service.status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip === undefined ? [] : [i.ip]));
}

export function wantedServiceStatus(input: StatusInput): WantedServiceStatus {
  const generation = input.service.metadata?.generation;
  const previous = new Map((input.service.status?.conditions ?? []).map((c) => [c.type, c]));
  const condition = (type: string, ok: boolean, reason: string, message: string): Condition => {
    const status = ok ? 'True' : 'False';
    const before = previous.get(type);
    const since = before !== undefined && before.status === status ? normalizeTime(before.lastTransitionTime) : input.now;
    return { type, status, reason, message, lastTransitionTime: since ?? input.now, ...(generation === undefined ? {} : { observedGeneration: generation }) };
  };
  const describe = (ports: readonly PortRef[]): string => ports.map((p) => `${p.protocol}/${p.port}`).join(', ');

  const conditions: Condition[] = [];
  const a = input.address;
  if (a === undefined) conditions.push(condition(CONDITION_ADDRESS, false, 'Pending', 'no address assigned yet'));
  else if (a.ok)
    conditions.push(condition(CONDITION_ADDRESS, true, 'Assigned', `${a.addresses.join(', ')} from AddressPool ${[...new Set(a.pools)].join(', ')}`));
  else conditions.push(condition(CONDITION_ADDRESS, false, a.reason, a.message));

  if (input.refused.length === 0) conditions.push(condition(CONDITION_PORTS, true, 'AllPortsServed', `served: ${describe(input.served)}`));
  else {
    const served = input.served.length === 0 ? 'no port is served' : `served: ${describe(input.served)}`;
    conditions.push(condition(CONDITION_PORTS, false, 'UnsupportedProtocol', `${input.refused.map((r) => r.message).join('; ')}; ${served}`));
  }

  const addresses = a?.ok === true ? a.addresses : [];
  const up = addresses.length > 0 && serving(input.loadBalancer, input.listeners, input.served.length, addresses);
  // Kept while the same LoadBalancer (with the same VIPs) exists: transient states are not "stopped serving".
  const kept =
    addresses.length > 0 &&
    input.loadBalancer !== undefined &&
    input.loadBalancer.status?.vip === addresses[0] &&
    ingressIps(input.service).join(',') === addresses.join(',');
  let ready: Condition;
  if (input.blocked !== undefined) ready = condition(CONDITION_READY, false, input.blocked.reason, input.blocked.message);
  else if (input.served.length === 0) ready = condition(CONDITION_READY, false, 'NoServablePorts', 'the Service has no port nslb can serve');
  else if (up) ready = condition(CONDITION_READY, true, 'Serving', `LoadBalancer ${input.loadBalancer?.name ?? ''} serves ${addresses.join(', ')}`);
  else if (a?.ok !== true) ready = condition(CONDITION_READY, false, 'NoAddress', 'waiting for an address');
  else {
    const lbReady = input.loadBalancer?.status?.conditions?.find((c) => c.type === 'Ready');
    const failed = input.loadBalancer?.status?.provisioningStatus === 'ERROR';
    ready = condition(
      CONDITION_READY,
      false,
      failed ? (lbReady?.reason ?? 'Error') : 'Provisioning',
      failed
        ? `LoadBalancer ${input.loadBalancer?.name ?? ''}: ${lbReady?.message ?? 'ERROR'}`
        : `LoadBalancer ${input.loadBalancer?.name ?? ''} is being provisioned`,
    );
  }
  conditions.push(ready);

  const ingress: LoadBalancerIngress[] = [];
  if (input.blocked === undefined && (up || kept)) {
    const ports =
      input.refused.length === 0
        ? undefined
        : [
            ...input.served.map((p) => ({ port: p.port, protocol: p.protocol })),
            ...input.refused.map((p) => ({ port: p.port, protocol: p.protocol, error: PORT_ERROR })),
          ];
    for (const ip of addresses) ingress.push({ ip, ipMode: input.ipMode, ...(ports === undefined ? {} : { ports }) });
  }
  return { ingress, conditions };
}

/** RFC 3339 to the second, whatever form the client library handed us (Date or string). */
export function normalizeTime(t: unknown): string | undefined {
  if (t === undefined || t === null) return undefined;
  const d = t instanceof Date ? t : new Date(String(t));
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The Service's conditions with ours replaced by `ours` (others' conditions are kept, as they were). */
export function mergeConditions(service: Service, ours: readonly Condition[]): Condition[] {
  const others = (service.status?.conditions ?? [])
    .filter((c) => !OUR_CONDITIONS.includes(c.type))
    .map((c) => ({ ...c, lastTransitionTime: normalizeTime(c.lastTransitionTime) ?? '' }));
  return [...others, ...ours];
}

/** Whether the Service's status already says this (times aside when the condition did not change). */
export function statusUpToDate(service: Service, want: WantedServiceStatus): boolean {
  const have = service.status?.loadBalancer?.ingress ?? [];
  const norm = (i: LoadBalancerIngress[]): string => JSON.stringify(i.map((x) => ({ ip: x.ip, ipMode: x.ipMode ?? 'VIP', ports: x.ports ?? [] })));
  if (norm(have) !== norm(want.ingress)) return false;
  const current = new Map((service.status?.conditions ?? []).map((c) => [c.type, c]));
  return want.conditions.every((c) => {
    const h = current.get(c.type);
    return h !== undefined && h.status === c.status && h.reason === c.reason && h.message === c.message && h.observedGeneration === c.observedGeneration;
  });
}

/** Whether the Service carries anything the provider wrote (ingress or one of its conditions). */
export function hasProviderStatus(service: Service): boolean {
  return (service.status?.loadBalancer?.ingress ?? []).length > 0 || (service.status?.conditions ?? []).some((c) => OUR_CONDITIONS.includes(c.type));
}
