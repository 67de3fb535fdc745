// Builders of the Kubernetes objects a type=LoadBalancer provider reads (Services, Nodes, EndpointSlices,
// AddressPools), shaped as kubectl would send them, for unit and e2e tests alike.
import type { JsonObject } from './fake-apiserver.js';

export interface ServiceOptions {
  namespace?: string;
  ports?: { name?: string; port: number; protocol?: string; targetPort?: number; nodePort?: number }[];
  loadBalancerClass?: string | null;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  externalTrafficPolicy?: 'Cluster' | 'Local';
  healthCheckNodePort?: number;
  loadBalancerSourceRanges?: string[];
  loadBalancerIP?: string;
  allocateLoadBalancerNodePorts?: boolean;
  type?: string;
  ipFamilies?: string[];
  ipFamilyPolicy?: string;
  sessionAffinity?: string;
}

export function service(name: string, o: ServiceOptions = {}): JsonObject {
  const spec: JsonObject = {
    type: o.type ?? 'LoadBalancer',
    selector: { app: name },
    ports: o.ports ?? [{ port: 80, targetPort: 8080 }],
  };
  if (o.loadBalancerClass !== null) spec.loadBalancerClass = o.loadBalancerClass ?? 'nslb.dev/haproxy';
  for (const k of [
    'externalTrafficPolicy',
    'healthCheckNodePort',
    'loadBalancerSourceRanges',
    'loadBalancerIP',
    'allocateLoadBalancerNodePorts',
    'ipFamilies',
    'ipFamilyPolicy',
    'sessionAffinity',
  ] as const) {
    if (o[k] !== undefined) spec[k] = o[k];
  }
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: o.namespace ?? 'default',
      ...(o.annotations ? { annotations: o.annotations } : {}),
      ...(o.labels ? { labels: o.labels } : {}),
    },
    spec,
  };
}

export function node(name: string, address: string, ready = true, labels?: Record<string, string>): JsonObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, ...(labels ? { labels } : {}) },
    spec: {},
    status: {
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'KubeletReady' : 'KubeletNotReady', message: '' }],
      addresses: [
        { type: 'InternalIP', address },
        { type: 'Hostname', address: name },
      ],
    },
  };
}

export interface EndpointOptions {
  address: string;
  ready?: boolean;
  nodeName?: string;
}

export function endpointSlice(
  serviceName: string,
  endpoints: EndpointOptions[],
  o: { namespace?: string; port?: number; portName?: string; suffix?: string; addressType?: string } = {},
): JsonObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${serviceName}-${o.suffix ?? 'abcde'}`, namespace: o.namespace ?? 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: o.addressType ?? 'IPv4',
    endpoints: endpoints.map((e) => ({ addresses: [e.address], conditions: { ready: e.ready ?? true }, ...(e.nodeName ? { nodeName: e.nodeName } : {}) })),
    ports: [{ name: o.portName ?? '', port: o.port ?? 8080, protocol: 'TCP' }],
  };
}

export function addressPool(name: string, spec: JsonObject): JsonObject {
  return { apiVersion: 'nslb.dev/v1alpha1', kind: 'AddressPool', metadata: { name }, spec };
}
