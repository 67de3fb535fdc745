// Built-in kinds of the in-test API server that a type=LoadBalancer provider reads and writes: core/v1
// Services (with the status subresource), Nodes (cluster-scoped) and discovery.k8s.io/v1 EndpointSlices.
// Each carries what a real apiserver's registry does for it that a controller can observe: Service defaults
// (type, protocol, targetPort, policies), ClusterIP and NodePort allocation (unique node ports, kept across
// updates that omit them, dropped when the type no longer needs them, a healthCheckNodePort for
// externalTrafficPolicy: Local), the validation a provider's writes and a user's mistakes hit (immutable
// loadBalancerClass, status.loadBalancer.ingress, conditions), and the field selectors each kind supports.
//
// Simplifications (documented, deliberate): one ClusterIP range per family (10.96.0.0/16, fd00:96::/112)
// allocated sequentially; no headless or ExternalName specifics beyond skipping allocation; no
// topology/traffic distribution fields; EndpointSlices are not derived from Pods (tests write them, as the
// EndpointSlice controller would).
import { isIP, isIPv4, isIPv6 } from 'node:net';

export type JsonObject = Record<string, unknown>;

export interface CoreFieldError {
  field: string;
  type: 'Required' | 'Invalid' | 'NotSupported' | 'Forbidden' | 'TooLong' | 'Duplicate';
  message: string;
}

/** What fake-apiserver.ts needs of a built-in kind beyond its names. */
export interface CoreKind {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  statusSubresource: boolean;
  keepStatusOnCreate?: boolean;
  /** Field selector labels beyond metadata.name (and metadata.namespace for namespaced kinds). */
  fieldLabels: Record<string, (obj: JsonObject) => string | undefined>;
  /** Registry strategy on create and main-resource update: defaulting and allocation; throws errors. */
  admit?: (obj: JsonObject, old: JsonObject | undefined, others: readonly JsonObject[]) => CoreFieldError[];
  validate?: (obj: JsonObject) => CoreFieldError[];
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const err = (field: string, type: CoreFieldError['type'], message: string): CoreFieldError => ({ field, type, message });
/** The spec, created when absent: for the object being written only. */
const spec = (o: JsonObject): JsonObject => {
  if (!isObject(o.spec)) o.spec = {};
  return o.spec as JsonObject;
};
/** The spec of a stored object: never changes it. */
const specOf = (o: JsonObject): JsonObject => (isObject(o.spec) ? o.spec : {});
const status = (o: JsonObject): JsonObject => (isObject(o.status) ? o.status : {});
const ports = (s: JsonObject): JsonObject[] => (Array.isArray(s.ports) ? s.ports.filter(isObject) : []);

function validCidr(s: string): boolean {
  const [addr, prefix, ...rest] = s.split('/');
  if (rest.length > 0 || addr === undefined || prefix === undefined || !/^\d{1,3}$/.test(prefix)) return false;
  const v = isIP(addr);
  return v !== 0 && Number(prefix) <= (v === 4 ? 32 : 128);
}

// ---------------------------------------------------------------------------------------------------------
// Service

export const NODE_PORT_MIN = 30000;
export const NODE_PORT_MAX = 32767;
const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];
const FAMILY_POLICIES = ['SingleStack', 'PreferDualStack', 'RequireDualStack'];
// Go's metav1.Condition reason pattern.
const CONDITION_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const needsNodePorts = (s: JsonObject): boolean => s.type === 'NodePort' || (s.type === 'LoadBalancer' && s.allocateLoadBalancerNodePorts !== false);

function usedNodePorts(others: readonly JsonObject[]): Set<string> {
  const used = new Set<string>();
  for (const o of others) {
    const s = specOf(o);
    for (const p of ports(s)) if (typeof p.nodePort === 'number') used.add(`${String(p.protocol)}/${p.nodePort}`);
    // The health check port is a TCP port on every node.
    if (typeof s.healthCheckNodePort === 'number') used.add(`TCP/${s.healthCheckNodePort}`);
  }
  return used;
}

function allocateClusterIp(family: 'IPv4' | 'IPv6', others: readonly JsonObject[]): string {
  const taken = new Set(others.flatMap((o) => (Array.isArray(specOf(o).clusterIPs) ? (specOf(o).clusterIPs as unknown[]) : [])));
  for (let i = 10; i < 65535; i++) {
    const ip = family === 'IPv4' ? `10.96.${i >> 8}.${i & 255}` : `fd00:96::${i.toString(16)}`;
    if (!taken.has(ip)) return ip;
  }
  throw new Error('FakeApiServer: ClusterIP range full');
}

function admitService(obj: JsonObject, old: JsonObject | undefined, others: readonly JsonObject[]): CoreFieldError[] {
  const errors: CoreFieldError[] = [];
  const s = spec(obj);
  const before = old === undefined ? undefined : specOf(old);
  if (s.type === undefined) s.type = 'ClusterIP';
  if (!SERVICE_TYPES.includes(String(s.type))) {
    return [
      err('spec.type', 'NotSupported', `Unsupported value: ${JSON.stringify(s.type)}: supported values: ${SERVICE_TYPES.map((t) => `"${t}"`).join(', ')}`),
    ];
  }
  if (s.type === 'ExternalName') return errors;
  if (s.sessionAffinity === undefined) s.sessionAffinity = 'None';
  if (s.internalTrafficPolicy === undefined) s.internalTrafficPolicy = 'Cluster';
  ports(s).forEach((p) => {
    if (p.protocol === undefined) p.protocol = 'TCP';
    if (p.targetPort === undefined) p.targetPort = p.port;
  });
  // The type-dependent fields a type change makes meaningless go, as the registry's dropTypeDependentFields.
  const wasLb = before?.type === 'LoadBalancer';
  if (s.type !== 'LoadBalancer') {
    if (wasLb && s.loadBalancerClass === before?.loadBalancerClass) delete s.loadBalancerClass;
    if (wasLb && s.allocateLoadBalancerNodePorts === before?.allocateLoadBalancerNodePorts) delete s.allocateLoadBalancerNodePorts;
  } else if (s.allocateLoadBalancerNodePorts === undefined) {
    s.allocateLoadBalancerNodePorts = true;
  }
  if (s.type === 'ClusterIP') {
    const oldPorts = before === undefined ? [] : ports(before);
    for (const p of ports(s)) {
      const was = oldPorts.find((q) => q.port === p.port && q.protocol === p.protocol);
      if (was !== undefined && was.nodePort === p.nodePort) delete p.nodePort;
    }
  }
  if (s.type === 'NodePort' || s.type === 'LoadBalancer') {
    if (s.externalTrafficPolicy === undefined) s.externalTrafficPolicy = 'Cluster';
  } else if (before !== undefined && s.externalTrafficPolicy === before.externalTrafficPolicy) {
    delete s.externalTrafficPolicy;
  }
  if (s.externalTrafficPolicy !== 'Local' && before !== undefined && s.healthCheckNodePort === before.healthCheckNodePort) delete s.healthCheckNodePort;

  // ClusterIPs: immutable once allocated.
  if (before !== undefined && before.clusterIP !== undefined) {
    if (s.clusterIP === undefined || s.clusterIP === '') {
      s.clusterIP = before.clusterIP;
      s.clusterIPs = before.clusterIPs;
    } else if (s.clusterIP !== before.clusterIP) {
      errors.push(err('spec.clusterIPs[0]', 'Invalid', `Invalid value: ${JSON.stringify(s.clusterIP)}: may not change once set`));
    }
    if (s.ipFamilies === undefined) s.ipFamilies = before.ipFamilies;
    if (s.ipFamilyPolicy === undefined) s.ipFamilyPolicy = before.ipFamilyPolicy;
  }
  if (s.ipFamilyPolicy === undefined) s.ipFamilyPolicy = 'SingleStack';
  if (!FAMILY_POLICIES.includes(String(s.ipFamilyPolicy))) {
    errors.push(err('spec.ipFamilyPolicy', 'NotSupported', `Unsupported value: ${JSON.stringify(s.ipFamilyPolicy)}`));
  }
  if (!Array.isArray(s.ipFamilies) || s.ipFamilies.length === 0) {
    s.ipFamilies = s.ipFamilyPolicy === 'RequireDualStack' ? ['IPv4', 'IPv6'] : ['IPv4'];
  }
  const families = s.ipFamilies as unknown[];
  if (families.some((f) => f !== 'IPv4' && f !== 'IPv6') || families.length > 2 || (families.length === 2 && families[0] === families[1])) {
    errors.push(err('spec.ipFamilies', 'Invalid', `Invalid value: ${JSON.stringify(families)}: must be IPv4, IPv6 or both, each once`));
  } else if (families.length === 2 && s.ipFamilyPolicy === 'SingleStack') {
    errors.push(err('spec.ipFamilies', 'Invalid', 'Invalid value: two families need ipFamilyPolicy PreferDualStack or RequireDualStack'));
  }
  if (errors.length === 0 && s.clusterIP !== 'None' && (s.clusterIP === undefined || s.clusterIP === '')) {
    s.clusterIPs = families.map((f) => allocateClusterIp(f as 'IPv4' | 'IPv6', others));
    s.clusterIP = (s.clusterIPs as string[])[0];
  }

  // Node ports: kept from the stored object when an update omits them, allocated when missing, unique.
  const used = usedNodePorts(others);
  const taken = (protocol: string, port: number): boolean => used.has(`${protocol}/${port}`);
  const oldPorts = before === undefined ? [] : ports(before);
  let next = NODE_PORT_MIN;
  const allocate = (protocol: string): number | undefined => {
    while (next <= NODE_PORT_MAX && taken(protocol, next)) next++;
    if (next > NODE_PORT_MAX) return undefined;
    used.add(`${protocol}/${next}`);
    return next++;
  };
  ports(s).forEach((p, i) => {
    const protocol = String(p.protocol);
    if (p.nodePort === undefined && (s.type === 'NodePort' || s.type === 'LoadBalancer')) {
      const was = oldPorts.find((q) => q.port === p.port && q.protocol === p.protocol);
      if (typeof was?.nodePort === 'number') p.nodePort = was.nodePort;
      else if (needsNodePorts(s)) {
        const n = allocate(protocol);
        if (n === undefined) errors.push(err(`spec.ports[${i}].nodePort`, 'Invalid', 'Invalid value: 0: range is full'));
        else p.nodePort = n;
      }
    } else if (typeof p.nodePort === 'number') {
      if (s.type === 'ClusterIP') {
        errors.push(err(`spec.ports[${i}].nodePort`, 'Forbidden', "Forbidden: may not be used when `type` is 'ClusterIP'"));
      } else if (p.nodePort < NODE_PORT_MIN || p.nodePort > NODE_PORT_MAX) {
        errors.push(
          err(
            `spec.ports[${i}].nodePort`,
            'Invalid',
            `Invalid value: ${p.nodePort}: provided port is not in the valid range. The range of valid ports is ${NODE_PORT_MIN}-${NODE_PORT_MAX}`,
          ),
        );
      } else if (taken(protocol, p.nodePort)) {
        errors.push(err(`spec.ports[${i}].nodePort`, 'Invalid', `Invalid value: ${p.nodePort}: provided port is already allocated`));
      } else {
        used.add(`${protocol}/${p.nodePort}`);
      }
    }
  });
  if (s.type === 'LoadBalancer' && s.externalTrafficPolicy === 'Local') {
    if (s.healthCheckNodePort === undefined) {
      if (typeof before?.healthCheckNodePort === 'number') s.healthCheckNodePort = before.healthCheckNodePort;
      else {
        const n = allocate('TCP');
        if (n === undefined) errors.push(err('spec.healthCheckNodePort', 'Invalid', 'Invalid value: 0: range is full'));
        else s.healthCheckNodePort = n;
      }
    } else if (typeof s.healthCheckNodePort === 'number' && s.healthCheckNodePort !== before?.healthCheckNodePort && taken('TCP', s.healthCheckNodePort)) {
      errors.push(err('spec.healthCheckNodePort', 'Invalid', `Invalid value: ${s.healthCheckNodePort}: provided port is already allocated`));
    }
  }

  // loadBalancerClass: LoadBalancer only, and immutable once set (the provider that owns it must not change).
  if (s.loadBalancerClass !== undefined && s.type !== 'LoadBalancer') {
    errors.push(err('spec.loadBalancerClass', 'Forbidden', "Forbidden: may only be used when `type` is 'LoadBalancer'"));
  }
  if (wasLb && s.type === 'LoadBalancer' && s.loadBalancerClass !== before?.loadBalancerClass) {
    errors.push(err('spec.loadBalancerClass', 'Invalid', `Invalid value: ${JSON.stringify(s.loadBalancerClass ?? null)}: may not change once set`));
  }
  if (typeof s.loadBalancerClass === 'string' && !QUALIFIED_NAME.test(s.loadBalancerClass)) {
    errors.push(
      err('spec.loadBalancerClass', 'Invalid', `Invalid value: ${JSON.stringify(s.loadBalancerClass)}: must be a label-style value, e.g. 'example.com/name'`),
    );
  }
  return errors;
}

function validateService(obj: JsonObject): CoreFieldError[] {
  const errors: CoreFieldError[] = [];
  const s = specOf(obj);
  if (s.type === 'ExternalName') return errors;
  const ps = ports(s);
  if (ps.length === 0 && s.clusterIP !== 'None') errors.push(err('spec.ports', 'Required', 'Required value'));
  const names = new Set<string>();
  const keys = new Set<string>();
  ps.forEach((p, i) => {
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      errors.push(err(`spec.ports[${i}].port`, 'Invalid', `Invalid value: ${JSON.stringify(p.port)}: must be between 1 and 65535, inclusive`));
    }
    if (!PROTOCOLS.includes(String(p.protocol))) {
      errors.push(err(`spec.ports[${i}].protocol`, 'NotSupported', `Unsupported value: ${JSON.stringify(p.protocol)}: supported values: "SCTP", "TCP", "UDP"`));
    }
    if (ps.length > 1 && (typeof p.name !== 'string' || p.name === '')) errors.push(err(`spec.ports[${i}].name`, 'Required', 'Required value'));
    if (typeof p.name === 'string' && p.name !== '') {
      if (names.has(p.name)) errors.push(err(`spec.ports[${i}].name`, 'Duplicate', `Duplicate value: ${JSON.stringify(p.name)}`));
      names.add(p.name);
    }
    const key = `${String(p.port)}/${String(p.protocol)}`;
    if (keys.has(key))
      errors.push(err(`spec.ports[${i}]`, 'Duplicate', `Duplicate value: {"port":${String(p.port)},"protocol":${JSON.stringify(p.protocol)}}`));
    keys.add(key);
  });
  const lbOnly = (field: string): void => {
    if (s[field] !== undefined && s.type !== 'LoadBalancer') {
      errors.push(err(`spec.${field}`, 'Forbidden', "Forbidden: may only be used when `type` is 'LoadBalancer'"));
    }
  };
  lbOnly('loadBalancerSourceRanges');
  lbOnly('allocateLoadBalancerNodePorts');
  if (Array.isArray(s.loadBalancerSourceRanges)) {
    s.loadBalancerSourceRanges.forEach((r, i) => {
      if (typeof r !== 'string' || !validCidr(r.trim())) {
        errors.push(
          err(
            `spec.loadBalancerSourceRanges[${i}]`,
            'Invalid',
            `Invalid value: ${JSON.stringify(r)}: must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 `,
          ),
        );
      }
    });
  }
  if (typeof s.loadBalancerIP === 'string' && s.loadBalancerIP !== '' && isIP(s.loadBalancerIP) === 0) {
    errors.push(err('spec.loadBalancerIP', 'Invalid', `Invalid value: ${JSON.stringify(s.loadBalancerIP)}: must be a valid IP address`));
  }
  if (s.externalTrafficPolicy !== undefined && !['Cluster', 'Local'].includes(String(s.externalTrafficPolicy))) {
    errors.push(
      err('spec.externalTrafficPolicy', 'NotSupported', `Unsupported value: ${JSON.stringify(s.externalTrafficPolicy)}: supported values: "Cluster", "Local"`),
    );
  }
  if (s.healthCheckNodePort !== undefined && !(s.type === 'LoadBalancer' && s.externalTrafficPolicy === 'Local')) {
    errors.push(
      err('spec.healthCheckNodePort', 'Invalid', 'Invalid value: may only be set when `type` is "LoadBalancer" and `externalTrafficPolicy` is "Local"'),
    );
  }
  errors.push(...validateServiceStatus(status(obj)));
  return errors;
}

function validateServiceStatus(st: JsonObject): CoreFieldError[] {
  const errors: CoreFieldError[] = [];
  const lb = isObject(st.loadBalancer) ? st.loadBalancer : {};
  const ingress = Array.isArray(lb.ingress) ? lb.ingress : [];
  ingress.forEach((ing, i) => {
    const f = `status.loadBalancer.ingress[${i}]`;
    if (!isObject(ing)) {
      errors.push(err(f, 'Invalid', 'Invalid value: must be an object'));
      return;
    }
    if (ing.ip !== undefined && (typeof ing.ip !== 'string' || isIP(ing.ip) === 0)) {
      errors.push(err(`${f}.ip`, 'Invalid', `Invalid value: ${JSON.stringify(ing.ip)}: must be a valid IP address`));
    }
    if (ing.ipMode !== undefined) {
      if (ing.ip === undefined) errors.push(err(`${f}.ipMode`, 'Forbidden', 'Forbidden: may not be specified when `ip` is not'));
      if (ing.ipMode !== 'VIP' && ing.ipMode !== 'Proxy')
        errors.push(err(`${f}.ipMode`, 'NotSupported', `Unsupported value: ${JSON.stringify(ing.ipMode)}: supported values: "Proxy", "VIP"`));
    }
  });
  const conditions = Array.isArray(st.conditions) ? st.conditions : [];
  const types = new Set<string>();
  conditions.forEach((c, i) => {
    const f = `status.conditions[${i}]`;
    if (!isObject(c)) {
      errors.push(err(f, 'Invalid', 'Invalid value: must be an object'));
      return;
    }
    if (typeof c.type !== 'string' || !QUALIFIED_NAME.test(c.type))
      errors.push(err(`${f}.type`, 'Invalid', `Invalid value: ${JSON.stringify(c.type)}: name part must consist of alphanumeric characters, '-', '_' or '.'`));
    else if (types.has(c.type)) errors.push(err(`${f}.type`, 'Duplicate', `Duplicate value: ${JSON.stringify(c.type)}`));
    else types.add(c.type);
    if (!['True', 'False', 'Unknown'].includes(String(c.status)))
      errors.push(err(`${f}.status`, 'NotSupported', `Unsupported value: ${JSON.stringify(c.status)}: supported values: "False", "True", "Unknown"`));
    if (typeof c.lastTransitionTime !== 'string' || Number.isNaN(Date.parse(c.lastTransitionTime)))
      errors.push(err(`${f}.lastTransitionTime`, 'Required', 'Required value: must be set'));
    if (typeof c.reason !== 'string' || !CONDITION_REASON.test(c.reason))
      errors.push(
        err(
          `${f}.reason`,
          'Invalid',
          `Invalid value: ${JSON.stringify(c.reason)}: a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'`,
        ),
      );
    if (typeof c.message === 'string' && c.message.length > 32768) errors.push(err(`${f}.message`, 'TooLong', 'Too long: may not be longer than 32768'));
  });
  return errors;
}

// ---------------------------------------------------------------------------------------------------------
// EndpointSlice

function validateEndpointSlice(obj: JsonObject): CoreFieldError[] {
  const errors: CoreFieldError[] = [];
  const type = obj.addressType;
  if (!['IPv4', 'IPv6', 'FQDN'].includes(String(type))) {
    errors.push(
      err(
        'addressType',
        type === undefined ? 'Required' : 'NotSupported',
        type === undefined ? 'Required value' : `Unsupported value: ${JSON.stringify(type)}: supported values: "FQDN", "IPv4", "IPv6"`,
      ),
    );
  }
  const endpoints = Array.isArray(obj.endpoints) ? obj.endpoints : [];
  if (endpoints.length > 1000) errors.push(err('endpoints', 'TooLong', 'Too many: must have at most 1000 items'));
  endpoints.forEach((e, i) => {
    const f = `endpoints[${i}]`;
    if (!isObject(e)) {
      errors.push(err(f, 'Invalid', 'Invalid value: must be an object'));
      return;
    }
    const addrs = Array.isArray(e.addresses) ? e.addresses : [];
    if (addrs.length < 1 || addrs.length > 100)
      errors.push(err(`${f}.addresses`, 'Required', 'Required value: must contain at least 1 address and at most 100'));
    addrs.forEach((a, j) => {
      const ok = type === 'IPv4' ? typeof a === 'string' && isIPv4(a) : type === 'IPv6' ? typeof a === 'string' && isIPv6(a) : typeof a === 'string';
      if (!ok) errors.push(err(`${f}.addresses[${j}]`, 'Invalid', `Invalid value: ${JSON.stringify(a)}: must be a valid ${String(type)} address`));
    });
    if (e.conditions !== undefined && !isObject(e.conditions)) errors.push(err(`${f}.conditions`, 'Invalid', 'Invalid value: must be an object'));
  });
  const ps = Array.isArray(obj.ports) ? obj.ports : [];
  ps.forEach((p, i) => {
    if (!isObject(p)) return;
    if (p.port !== undefined && (typeof p.port !== 'number' || p.port < 1 || p.port > 65535)) {
      errors.push(err(`ports[${i}].port`, 'Invalid', `Invalid value: ${JSON.stringify(p.port)}: must be between 1 and 65535, inclusive`));
    }
  });
  return errors;
}

function admitEndpointSlice(obj: JsonObject): CoreFieldError[] {
  for (const p of Array.isArray(obj.ports) ? obj.ports : []) if (isObject(p) && p.protocol === undefined) p.protocol = 'TCP';
  return [];
}

// ---------------------------------------------------------------------------------------------------------
// Node

function validateNode(obj: JsonObject): CoreFieldError[] {
  const errors: CoreFieldError[] = [];
  const addresses = Array.isArray(status(obj).addresses) ? (status(obj).addresses as unknown[]) : [];
  addresses.forEach((a, i) => {
    if (!isObject(a) || typeof a.type !== 'string' || typeof a.address !== 'string') {
      errors.push(err(`status.addresses[${i}]`, 'Invalid', 'Invalid value: must have type and address'));
    }
  });
  return errors;
}

// ---------------------------------------------------------------------------------------------------------
// Lease (coordination.k8s.io/v1): ValidateLeaseSpec. Leases have no status and no field labels but
// metadata.name and metadata.namespace; membership and leader election rest on their optimistic concurrency.

const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

export function validateLease(obj: JsonObject): CoreFieldError[] {
  const errors: CoreFieldError[] = [];
  const spec = specOf(obj);
  const duration = spec.leaseDurationSeconds;
  if (duration !== undefined && (typeof duration !== 'number' || !Number.isInteger(duration) || duration <= 0)) {
    errors.push(err('spec.leaseDurationSeconds', 'Invalid', `Invalid value: ${JSON.stringify(duration)}: must be greater than 0`));
  }
  const transitions = spec.leaseTransitions;
  if (transitions !== undefined && (typeof transitions !== 'number' || !Number.isInteger(transitions) || transitions < 0)) {
    errors.push(err('spec.leaseTransitions', 'Invalid', `Invalid value: ${JSON.stringify(transitions)}: must be greater than or equal to 0`));
  }
  // The real server fails to decode a malformed MicroTime (400); a 422 on the field says the same to a client.
  for (const f of ['acquireTime', 'renewTime']) {
    const v = spec[f];
    if (v !== undefined && v !== null && (typeof v !== 'string' || !MICRO_TIME.test(v))) {
      errors.push(err(`spec.${f}`, 'Invalid', `Invalid value: ${JSON.stringify(v)}: must be an RFC 3339 time`));
    }
  }
  if (typeof spec.preferredHolder === 'string' && spec.preferredHolder !== '' && (spec.strategy === undefined || spec.strategy === '')) {
    errors.push(err('spec.preferredHolder', 'Forbidden', 'Forbidden: preferredHolder can only be set when strategy is set'));
  }
  return errors;
}

export function coreKinds(): CoreKind[] {
  return [
    {
      group: '',
      version: 'v1',
      kind: 'Service',
      plural: 'services',
      singular: 'service',
      namespaced: true,
      statusSubresource: true,
      // What the apiserver's Service field label conversion accepts.
      fieldLabels: {
        'spec.clusterIP': (o) => String(specOf(o).clusterIP ?? ''),
        'spec.type': (o) => String(specOf(o).type ?? ''),
      },
      admit: admitService,
      validate: validateService,
    },
    {
      group: 'discovery.k8s.io',
      version: 'v1',
      kind: 'EndpointSlice',
      plural: 'endpointslices',
      singular: 'endpointslice',
      namespaced: true,
      statusSubresource: false,
      fieldLabels: {},
      admit: admitEndpointSlice,
      validate: validateEndpointSlice,
    },
    {
      group: '',
      version: 'v1',
      kind: 'Node',
      plural: 'nodes',
      singular: 'node',
      namespaced: false,
      statusSubresource: true,
      keepStatusOnCreate: true,
      fieldLabels: { 'spec.unschedulable': (o) => String(specOf(o).unschedulable === true) },
      validate: validateNode,
    },
  ];
}
