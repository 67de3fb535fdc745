// AddressPool (DESIGN §7): the cluster-scoped pool of VIPs the Service provider hands out, modelled on
// MetalLB's IPAddressPool. It is not one of the engine's kinds (nothing on the node is made from it): the
// provider reads its spec and records what it gave out in its status, so that allocations live in the API
// and survive any agent restart. One JSON Schema validates it (ajv) and is its CRD's openAPIV3Schema.
import { isIPv4, isIPv6 } from 'node:net';
import { Ajv, type ValidateFunction } from 'ajv';
import { PATTERNS, type JsonSchema } from './schema-vocabulary.js';
import type { Condition } from './types.js';
import { formatIssue, isCidr } from './validate.js';

export const ADDRESS_POOL_KIND = 'AddressPool';
export const ADDRESS_POOL_PLURAL = 'addresspools';
export const ADDRESS_POOL_SHORT_NAME = 'lbap';

export type LabelSelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

/** metav1.LabelSelector. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: LabelSelectorOperator; values?: string[] }[];
}

export type PoolMembers = 'Nodes' | 'Endpoints';

export interface AddressPoolSpec {
  /** CIDRs (`10.0.0.0/28`) or ranges (`10.0.0.10-10.0.0.20`), IPv4 and IPv6. */
  addresses: string[];
  /** Of the VIP subnet, for the pool's first family (that of addresses[0]); 24 / 64 when omitted. */
  prefixLength?: number;
  gateway?: string;
  bridge?: string;
  vlan?: number;
  /** false: only Services that name this pool or one of its addresses get an address from it. */
  autoAssign?: boolean;
  serviceSelector?: LabelSelector;
  /** Only Services in these namespaces (all when omitted or empty). */
  namespaces?: string[];
  /** Members of the Services served from this pool: the nodes on the NodePort, or the endpoints directly. */
  members?: PoolMembers;
}

/** One address given to one Service; the record that makes "never given twice" hold across restarts. */
export interface PoolAllocation {
  address: string;
  /** `namespace/name` of the Service. */
  service: string;
  serviceUid: string;
  /** When it was given (RFC 3339). */
  since: string;
}

export interface AddressPoolStatus {
  allocations?: PoolAllocation[];
  /** How many addresses are given out (allocations.length), for `kubectl get lbap`. */
  assigned?: number;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface AddressPool {
  apiVersion: 'nslb.dev/v1alpha1';
  kind: typeof ADDRESS_POOL_KIND;
  metadata: { name: string; uid?: string; resourceVersion?: string; generation?: number; labels?: Record<string, string> };
  spec: AddressPoolSpec;
  status?: AddressPoolStatus;
}

// ---------------------------------------------------------------------------------------------------------
// Schema

const ADDRESS_OR_RANGE = '^[0-9A-Fa-f.:]+(/[0-9]{1,3}|-[0-9A-Fa-f.:]+)$';
const str = (description: string, extra: Partial<JsonSchema> = {}): JsonSchema => ({ type: 'string', description, ...extra });
const obj = (properties: Record<string, JsonSchema>, required: string[], description: string): JsonSchema => ({
  type: 'object',
  description,
  properties,
  ...(required.length === 0 ? {} : { required }),
  additionalProperties: false,
});
const ip = (description: string): JsonSchema => ({
  type: 'string',
  description,
  maxLength: 45,
  pattern: PATTERNS.ipAddress.pattern,
  anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }],
});

const labelSelector: JsonSchema = obj(
  {
    matchLabels: {
      type: 'object',
      description: 'Labels the Service must have, each with this value',
      additionalProperties: { type: 'string', maxLength: 63, pattern: PATTERNS.labelValue.pattern },
    },
    matchExpressions: {
      type: 'array',
      description: 'Requirements on the Service labels, all of which must hold',
      items: obj(
        {
          key: str('Label key', { minLength: 1, maxLength: 317, pattern: PATTERNS.qualifiedName.pattern }),
          operator: { type: 'string', description: 'How key relates to values', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
          values: { type: 'array', description: 'For In and NotIn', items: { type: 'string', maxLength: 63, pattern: PATTERNS.labelValue.pattern } },
        },
        ['key', 'operator'],
        'A label requirement',
      ),
    },
  },
  [],
  'Which Services may get an address from this pool (metav1.LabelSelector; all when omitted)',
);

export const ADDRESS_POOL_SPEC_SCHEMA: JsonSchema = obj(
  {
    addresses: {
      type: 'array',
      description: 'VIPs to hand out: CIDRs ("10.0.0.0/28", "2001:db8::/124") or ranges ("10.0.0.10-10.0.0.20"), IPv4 and IPv6',
      minItems: 1,
      maxItems: 64,
      items: str('A CIDR or a first-last range', { minLength: 3, maxLength: 91, pattern: ADDRESS_OR_RANGE }),
    },
    prefixLength: {
      type: 'integer',
      description: 'Prefix length of the VIP subnet for the family of the first entry of addresses; 24 for IPv4 and 64 for IPv6 when omitted',
      minimum: 1,
      maximum: 128,
    },
    gateway: ip("Default gateway of the VIPs' namespace, in the family of the first entry of addresses and inside the prefix"),
    bridge: str('Open vSwitch bridge of the VIP ports; the agent default when omitted', { minLength: 1, maxLength: 15, pattern: PATTERNS.bridge.pattern }),
    vlan: { type: 'integer', description: 'OVS access tag of the VIP ports', minimum: 1, maximum: 4094 },
    autoAssign: {
      type: 'boolean',
      description: 'false: only Services that ask for this pool (nslb.dev/address-pool) or one of its addresses get one. Default: true',
    },
    serviceSelector: labelSelector,
    namespaces: {
      type: 'array',
      description: 'Only Services in these namespaces get addresses from this pool (all when omitted)',
      items: str('A namespace', { minLength: 1, maxLength: 63, pattern: PATTERNS.dnsLabel.pattern }),
    },
    members: {
      type: 'string',
      description:
        "Members of the Services served from this pool: Nodes (each Ready node's address on the NodePort) or Endpoints (the ready endpoints, when pods are routable from the network node). Default: the agent's --service-members",
      enum: ['Nodes', 'Endpoints'],
    },
  },
  ['addresses'],
  'Addresses for Services of type LoadBalancer, and where they live',
);

const conditionSchema: JsonSchema = {
  type: 'object',
  properties: {
    type: { type: 'string', description: 'Condition type', minLength: 1, maxLength: 316 },
    status: { type: 'string', description: 'True, False or Unknown', enum: ['True', 'False', 'Unknown'] },
    reason: { type: 'string', description: 'CamelCase reason', maxLength: 1024 },
    message: { type: 'string', description: 'Human-readable details', maxLength: 32768 },
    lastTransitionTime: { type: 'string', description: 'When status last changed', format: 'date-time' },
    observedGeneration: { type: 'integer', description: 'metadata.generation it was computed from', minimum: 0 },
  },
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
};

export const ADDRESS_POOL_STATUS_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'Written by nslb only: every address given out, to which Service',
  properties: {
    allocations: {
      type: 'array',
      description: 'Addresses given to Services. An address is in at most one entry of all pools',
      items: {
        type: 'object',
        properties: {
          address: ip('The address'),
          service: str('namespace/name of the Service'),
          serviceUid: str('metadata.uid of the Service'),
          since: str('When it was given', { format: 'date-time' }),
        },
        required: ['address', 'service', 'serviceUid', 'since'],
      },
    },
    assigned: { type: 'integer', description: 'How many addresses are given out', minimum: 0 },
    observedGeneration: { type: 'integer', description: 'metadata.generation the conditions were computed from', minimum: 0 },
    conditions: { type: 'array', description: 'Ready: the spec is valid', items: conditionSchema },
  },
};

// ---------------------------------------------------------------------------------------------------------
// Validation: the schema, then what a schema cannot say (one family per entry, the gateway's family). The
// provider's parse (src/provider/ipam.ts) adds what needs address arithmetic: ranges in order.

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  if (compiled === undefined) {
    const ajv = new Ajv({ strict: false, allErrors: true });
    ajv.addFormat('ipv4', { type: 'string', validate: isIPv4 });
    ajv.addFormat('ipv6', { type: 'string', validate: isIPv6 });
    ajv.addFormat('date-time', { type: 'string', validate: (s: string) => !Number.isNaN(Date.parse(s)) });
    compiled = ajv.compile(ADDRESS_POOL_SPEC_SCHEMA);
  }
  return compiled;
}

/** Problems with an AddressPool's spec, each as `/spec/field: message`; empty when it is valid. */
export function addressPoolProblems(spec: unknown): string[] {
  const v = validator();
  if (!v(spec)) {
    return (v.errors ?? []).map((e) => formatIssue({ path: `/spec${e.instancePath}`, message: e.message ?? 'is invalid' }));
  }
  const s = spec as AddressPoolSpec;
  const problems: string[] = [];
  s.addresses.forEach((entry, i) => {
    const why = addressEntryProblem(entry);
    if (why !== undefined) problems.push(`/spec/addresses/${i}: ${why} (got ${JSON.stringify(entry)})`);
  });
  const first = s.addresses[0] === undefined ? undefined : entryFamily(s.addresses[0]);
  if (s.prefixLength !== undefined && first === 4 && s.prefixLength > 32) {
    problems.push(`/spec/prefixLength: must be at most 32 for the IPv4 addresses of this pool (got ${s.prefixLength})`);
  }
  if (s.gateway !== undefined && first !== undefined && (isIPv4(s.gateway) ? 4 : 6) !== first) {
    problems.push(`/spec/gateway: must be of the family of the first entry of addresses (IPv${first}) (got ${JSON.stringify(s.gateway)})`);
  }
  return problems;
}

export function entryFamily(entry: string): 4 | 6 | undefined {
  const first = entry.split(/[/-]/)[0] ?? '';
  return isIPv4(first) ? 4 : isIPv6(first) ? 6 : undefined;
}

function addressEntryProblem(entry: string): string | undefined {
  if (entry.includes('/')) return isCidr(entry) ? undefined : 'must be a CIDR with a prefix in range for its family';
  const [a, b, ...rest] = entry.split('-');
  if (rest.length > 0 || a === undefined || b === undefined) return 'must be a CIDR or a first-last range';
  const fa = isIPv4(a) ? 4 : isIPv6(a) ? 6 : 0;
  const fb = isIPv4(b) ? 4 : isIPv6(b) ? 6 : 0;
  if (fa === 0 || fb === 0) return 'a range must be two IP addresses joined by "-"';
  if (fa !== fb) return 'both ends of a range must be of one family';
  return undefined;
}
