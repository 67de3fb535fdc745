// The parts of core/v1 Services and Nodes and discovery.k8s.io/v1 EndpointSlices the provider reads, as they
// arrive from informers: client-node's typed list results and raw watch objects alike (timestamps may be
// Date objects or strings, so none is read but for presence). Everything is optional: a field the API server
// did not send must not be a crash.
import type { Condition } from '../api/v1alpha1/types.js';

export interface Meta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: unknown;
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
}

export interface ServiceSpec {
  type?: string;
  loadBalancerClass?: string;
  ports?: ServicePort[];
  externalTrafficPolicy?: string;
  healthCheckNodePort?: number;
  loadBalancerSourceRanges?: string[];
  loadBalancerIP?: string;
  sessionAffinity?: string;
  allocateLoadBalancerNodePorts?: boolean;
  ipFamilies?: string[];
  ipFamilyPolicy?: string;
}

export interface IngressPortStatus {
  port: number;
  protocol: string;
  error?: string;
}

export interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
  ipMode?: 'VIP' | 'Proxy';
  ports?: IngressPortStatus[];
}

export interface ServiceStatus {
  loadBalancer?: { ingress?: LoadBalancerIngress[] };
  conditions?: (Omit<Condition, 'lastTransitionTime'> & { lastTransitionTime: unknown })[];
}

export interface Service {
  metadata?: Meta;
  spec?: ServiceSpec;
  status?: ServiceStatus;
}

export interface EndpointSlice {
  metadata?: Meta;
  addressType?: string;
  endpoints?: {
    addresses?: string[];
    conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
    nodeName?: string;
  }[];
  ports?: { name?: string; port?: number; protocol?: string }[];
}

export interface Node {
  metadata?: Meta;
  spec?: { unschedulable?: boolean };
  status?: {
    conditions?: { type?: string; status?: string }[];
    addresses?: { type?: string; address?: string }[];
  };
}

/** Label on EndpointSlices naming their Service (set by the EndpointSlice controller). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Nodes that must not receive load-balancer traffic (the service controller's own rule). */
export const EXCLUDE_FROM_LB_LABEL = 'node.kubernetes.io/exclude-from-external-load-balancers';
