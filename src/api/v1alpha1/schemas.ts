// One JSON Schema per kind: the single source of truth for what a valid object looks like (DESIGN §1).
// ajv validates files and CLI input with SPEC_SCHEMAS/schemaFor(); the CRDs carry crdSchemaFor() as
// openAPIV3Schema. That dual use constrains the dialect: every node has a `type`, no `$ref`, no `const`
// (Kubernetes' JSONSchemaProps has none: single-value `enum` instead), no `uniqueItems`, no exclusive bounds.
//
// Safety: any string that can end up in an HAProxy config is pinned down by a pattern or an enum, so that it
// can never carry whitespace, a newline, `#`, a quote, a backslash or NUL into the rendered file.

import {
  adminStateUp,
  alpn,
  annotations,
  boolean,
  ciphers,
  description,
  filePath,
  integer,
  integerEnum,
  ipAddress,
  type JsonSchema,
  labels,
  list,
  metadataKey,
  object,
  objectName,
  patterned,
  PATTERNS,
  secretName,
  stringEnum,
  tlsVersions,
} from './schema-vocabulary.js';
import { API_VERSION, KINDS, LISTENER_PROTOCOLS, TOPOLOGIES, type Kind } from './types.js';

/** spec.vrrp.advertIntervalMs when omitted (docs/ha.md has the measurements behind it). */
export const DEFAULT_ADVERT_INTERVAL_MS = 200;

// ---------------------------------------------------------------------------------------------------------
// Specs, one per kind.

/** LoadBalancer.spec.additionalVips: at most this many (Octavia's use is one per other subnet, typically one). */
export const MAX_ADDITIONAL_VIPS = 4;
/** LoadBalancer.spec.memberNetworks: at most this many (the port name carries a 2-digit index). */
export const MAX_MEMBER_NETWORKS = 16;

const loadBalancerSpec = object(
  {
    vip: object(
      {
        address: ipAddress('The virtual IP, IPv4 or IPv6'),
        prefixLength: integer(0, 128, 'Prefix length of the VIP subnet; 24 for IPv4 and 64 for IPv6 when omitted'),
        gateway: ipAddress('Default gateway inside the load balancer namespace; same family, inside the VIP prefix'),
        mac: {
          type: 'string',
          description: 'MAC of the VIP port; derived from the object name when omitted',
          pattern: PATTERNS.mac.pattern,
          format: 'mac',
        },
        bridge: patterned(PATTERNS.bridge, 15, 'Open vSwitch bridge for the VIP port; the agent default when omitted'),
        vlan: integer(1, 4094, 'OVS access tag of the VIP port'),
        mtu: integer(68, 65535, 'MTU of the VIP port'),
      },
      ['address'],
      'Where the load balancer listens',
    ),
    additionalVips: {
      ...list(
        object(
          {
            address: ipAddress('Another address of the load balancer, IPv4 or IPv6 (typically the other family than the VIP)'),
            prefixLength: integer(0, 128, 'Prefix length of its subnet; 24 for IPv4 and 64 for IPv6 when omitted'),
            gateway: ipAddress('Default gateway of its family inside the load balancer namespace; inside its prefix'),
          },
          ['address'],
          'An additional VIP',
        ),
        'More addresses on the VIP port (same bridge and VLAN): every listener listens on the VIP and on each of these, ' +
          'and members of their family are reached from them (Octavia additional_vips)',
      ),
      maxItems: MAX_ADDITIONAL_VIPS,
    },
    topology: stringEnum(
      [...TOPOLOGIES],
      'SINGLE: one node serves the VIP. ACTIVE_STANDBY: two nodes (placement.nodes), keepalived VRRP moves the VIP between them',
      'SINGLE',
    ),
    placement: object(
      {
        nodes: {
          ...list(
            patterned(PATTERNS.dnsSubdomain, 253, "A node's name (its agent's --node-name)"),
            'The nodes that serve it, preferred MASTER first: one for SINGLE, two for ACTIVE_STANDBY. ' +
              'Omitted: Kubernetes mode schedules it; file mode serves it on every agent that sees it',
          ),
          minItems: 1,
          maxItems: 2,
        },
        nodeSelector: {
          type: 'object',
          description: 'Kubernetes mode, without nodes: the scheduler places it only on Nodes that carry all these labels',
          propertyNames: metadataKey,
          additionalProperties: { type: 'string', maxLength: 63, pattern: PATTERNS.labelValue.pattern },
        },
      },
      [],
      'Where it runs (DESIGN §6)',
    ),
    memberNetworks: {
      ...list(
        object(
          {
            name: objectName('Name of the network, unique in this load balancer; Member.spec.network refers to it'),
            bridge: patterned(PATTERNS.bridge, 15, 'Open vSwitch bridge of the network; the VIP bridge when omitted'),
            vlan: integer(1, 4094, 'OVS access tag of the port'),
            address: ipAddress("The load balancer's own address on the network (IPv4 or IPv6)"),
            prefixLength: integer(0, 128, 'Prefix length of the network; 24 for IPv4 and 64 for IPv6 when omitted'),
            mtu: integer(68, 65535, 'MTU of the port'),
            routes: {
              ...list(
                object(
                  {
                    destination: { type: 'string', maxLength: 49, pattern: PATTERNS.cidr.pattern, format: 'cidr', description: 'Destination CIDR' },
                    gateway: ipAddress('Next hop, inside the network prefix'),
                  },
                  ['destination', 'gateway'],
                  'A route through this network',
                ),
                'Routes to members beyond the network itself (Octavia host_routes of the member subnet)',
              ),
              maxItems: 16,
            },
          },
          ['name', 'address'],
          'A member network',
        ),
        'Member networks (two-arm): one more port of the load balancer on each, through which members there are reached (Octavia member subnet_id)',
      ),
      maxItems: MAX_MEMBER_NETWORKS,
    },
    vrrp: object(
      {
        addresses: {
          ...list(
            ipAddress("A VRRP address: on the VIP port of the node in the same placement slot, inside the VIP's prefix"),
            'ACTIVE_STANDBY: one address per placement slot on the VIP segment (Octavia VRRP ports); slot i belongs to placement.nodes[i] (Kubernetes mode without it: to status.placement.nodes[i], which the scheduler keeps slot-stable)',
          ),
          minItems: 2,
          maxItems: 2,
        },
        advertIntervalMs: {
          ...integer(50, 40950, 'VRRP advert interval in ms, a multiple of 10; a node is declared dead after about 3.6 intervals', DEFAULT_ADVERT_INTERVAL_MS),
          multipleOf: 10,
        },
        virtualRouterId: integer(1, 255, 'VRRP virtual router id; derived from the hash of namespace/name when omitted'),
      },
      [],
      'ACTIVE_STANDBY: the VRRP pair',
    ),
    adminStateUp,
    description: description(),
  },
  ['vip'],
);

const certificateRef = (what: string): JsonSchema =>
  object(
    {
      certificateFile: filePath('PEM certificate (chain); relative paths are relative to the watched directory'),
      keyFile: filePath('PEM private key'),
      secretName: secretName('kubernetes.io/tls Secret in the same namespace (Kubernetes mode)'),
    },
    [],
    what,
  );

const listenerTls = object(
  {
    certificateFile: filePath('PEM certificate (chain); relative paths are relative to the watched directory'),
    keyFile: filePath('PEM private key'),
    secretName: secretName('kubernetes.io/tls Secret in the same namespace (Kubernetes mode)'),
    sniCertificates: list(certificateRef('An SNI certificate'), 'Additional certificates chosen by SNI'),
    sniSecretNames: list(secretName('kubernetes.io/tls Secret'), 'Additional certificates chosen by SNI (Kubernetes mode)'),
    clientAuthentication: stringEnum(['NONE', 'OPTIONAL', 'MANDATORY'], 'Client certificate verification'),
    clientCaFile: filePath('PEM CA bundle to verify client certificates'),
    clientCrlFile: filePath('PEM CRL for client certificates'),
    versions: tlsVersions(['TLSv1.2', 'TLSv1.3']),
    ciphers: ciphers(),
    alpnProtocols: alpn(['h2', 'http/1.1', 'http/1.0']),
    hsts: object(
      {
        maxAge: integer(0, 2147483647, 'Strict-Transport-Security max-age in seconds'),
        includeSubdomains: boolean('Add includeSubDomains'),
        preload: boolean('Add preload'),
      },
      ['maxAge'],
      'HTTP Strict Transport Security',
    ),
  },
  [],
  'TLS termination (TERMINATED_HTTPS listeners)',
);

const timeout = (what: string, dflt: number) => integer(0, 86_400_000, `${what} (ms)`, dflt);

const listenerSpec = object(
  {
    loadBalancer: objectName('Name of the LoadBalancer in the same namespace'),
    protocol: stringEnum(
      LISTENER_PROTOCOLS,
      "Protocol clients speak to the VIP; UDP and SCTP are forwarded by the kernel; PROMETHEUS serves the load balancer's own metrics",
    ),
    port: integer(1, 65535, 'Port on the VIP'),
    defaultPool: objectName('Name of the Pool in the same namespace that receives the traffic'),
    connectionLimit: { type: 'integer', description: 'Maximum concurrent connections; -1 = unlimited', minimum: -1, maximum: 2147483647, default: -1 },
    timeouts: object(
      {
        clientData: timeout('Client inactivity timeout', 50_000),
        memberConnect: timeout('Member connect timeout', 5_000),
        memberData: timeout('Member inactivity timeout', 50_000),
        tcpInspect: timeout('Time to wait for content inspection', 0),
      },
      [],
      'Timeouts in milliseconds',
    ),
    insertHeaders: object(
      {
        'X-Forwarded-For': boolean('Insert X-Forwarded-For'),
        'X-Forwarded-Port': boolean('Insert X-Forwarded-Port'),
        'X-Forwarded-Proto': boolean('Insert X-Forwarded-Proto'),
        'X-SSL-Client-Verify': boolean('Insert the client certificate verification result, 0 = verified (TERMINATED_HTTPS)'),
        'X-SSL-Client-Has-Cert': boolean('Insert 1 if the client presented a certificate, else 0 (TERMINATED_HTTPS)'),
        'X-SSL-Client-DN': boolean("Insert the client certificate's subject DN (TERMINATED_HTTPS)"),
        'X-SSL-Client-CN': boolean("Insert the client certificate's subject CN (TERMINATED_HTTPS)"),
        'X-SSL-Issuer': boolean("Insert the client certificate's issuer DN (TERMINATED_HTTPS)"),
        'X-SSL-Client-SHA1': boolean("Insert the client certificate's SHA-1 fingerprint, hex (TERMINATED_HTTPS)"),
        'X-SSL-Client-Not-Before': boolean("Insert the client certificate's notBefore, YYMMDDhhmmssZ (TERMINATED_HTTPS)"),
        'X-SSL-Client-Not-After': boolean("Insert the client certificate's notAfter, YYMMDDhhmmssZ (TERMINATED_HTTPS)"),
      },
      [],
      'Headers to insert into requests to members (HTTP listeners)',
    ),
    allowedCidrs: list({ type: 'string', maxLength: 49, pattern: PATTERNS.cidr.pattern, format: 'cidr' }, 'Source CIDRs allowed to connect; empty = everyone'),
    tls: listenerTls,
    adminStateUp,
    description: description(),
  },
  ['loadBalancer', 'protocol', 'port'],
);

const poolSpec = object(
  {
    loadBalancer: objectName('Name of the LoadBalancer in the same namespace'),
    protocol: stringEnum(['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2', 'UDP', 'SCTP'], 'Protocol spoken to members'),
    lbAlgorithm: stringEnum(['ROUND_ROBIN', 'LEAST_CONNECTIONS', 'SOURCE_IP', 'SOURCE_IP_PORT'], 'How members are chosen (SOURCE_IP_PORT: UDP and SCTP pools)'),
    sessionPersistence: object(
      {
        type: stringEnum(['SOURCE_IP', 'HTTP_COOKIE', 'APP_COOKIE'], 'How sessions stick to a member'),
        cookieName: patterned(PATTERNS.httpToken, 255, 'Cookie to follow (APP_COOKIE only)'),
      },
      ['type'],
      'Session persistence',
    ),
    tls: object(
      {
        enabled: boolean('Re-encrypt traffic to members'),
        caFile: filePath('PEM CA bundle to verify members'),
        crlFile: filePath('PEM CRL for member certificates'),
        certificateFile: filePath('PEM client certificate presented to members'),
        keyFile: filePath('PEM private key of the client certificate'),
        secretName: secretName('kubernetes.io/tls Secret with the client certificate (Kubernetes mode)'),
        caSecretName: secretName('Secret with the CA bundle (Kubernetes mode)'),
        versions: tlsVersions(),
        ciphers: ciphers(),
        alpnProtocols: alpn(),
      },
      [],
      'TLS towards members',
    ),
    adminStateUp,
    description: description(),
  },
  ['loadBalancer', 'protocol', 'lbAlgorithm'],
);

const memberSpec = object(
  {
    pool: objectName('Name of the Pool in the same namespace'),
    address: ipAddress('Member IP address'),
    port: integer(1, 65535, 'Member port'),
    weight: integer(0, 256, 'Relative share of traffic; 0 = drain', 1),
    backup: boolean('Only used when every non-backup member is down', false),
    monitorAddress: ipAddress('Address health checks go to instead of address'),
    monitorPort: integer(1, 65535, 'Port health checks go to instead of port'),
    network: objectName("Name of the load balancer's member network the member is on; found by its prefix when omitted"),
    adminStateUp,
    description: description(),
  },
  ['pool', 'address', 'port'],
);

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'OPTIONS', 'PATCH', 'CONNECT'] as const;

const healthMonitorSpec = object(
  {
    pool: objectName('Name of the Pool in the same namespace'),
    type: stringEnum(['PING', 'TCP', 'HTTP', 'HTTPS', 'TLS-HELLO', 'UDP-CONNECT', 'SCTP'], 'Kind of check (UDP-CONNECT: UDP pools; SCTP: SCTP pools)'),
    delay: integer(1, 86_400, 'Seconds between checks'),
    timeout: integer(1, 86_400, 'Seconds a check may take; at most delay'),
    maxRetries: integer(1, 10, 'Successful checks before a member is up'),
    maxRetriesDown: integer(1, 10, 'Failed checks before a member is down', 3),
    httpMethod: stringEnum(HTTP_METHODS, 'HTTP method of the check', 'GET'),
    urlPath: { ...patterned(PATTERNS.urlPath, 1024, 'Path the check requests'), default: '/' },
    expectedCodes: { ...patterned(PATTERNS.expectedCodes, 255, 'Status codes that mean healthy'), default: '200' },
    httpVersion: stringEnum(['1.0', '1.1'], 'HTTP version of the check'),
    domainName: patterned(PATTERNS.hostname, 253, 'Host header of the check (HTTP/1.1)'),
    adminStateUp,
  },
  ['pool', 'type', 'delay', 'timeout', 'maxRetries'],
);

const redirectTarget = (what: string): JsonSchema => patterned(PATTERNS.redirectUrl, 2048, what);

const l7PolicySpec = object(
  {
    listener: objectName('Name of the Listener (HTTP or TERMINATED_HTTPS) in the same namespace'),
    action: stringEnum(['REJECT', 'REDIRECT_TO_URL', 'REDIRECT_TO_POOL', 'REDIRECT_PREFIX'], 'What a matching request gets'),
    redirectPool: objectName('REDIRECT_TO_POOL: Pool of the same load balancer'),
    redirectUrl: redirectTarget('REDIRECT_TO_URL: where to send the client (no "#" fragment)'),
    redirectPrefix: redirectTarget('REDIRECT_PREFIX: scheme and host put in front of the request path'),
    redirectHttpCode: integerEnum([301, 302, 303, 307, 308], 'Status code of a redirect', 302),
    position: integer(1, 2147483647, "Order among the listener's policies, 1 = first; last when omitted"),
    adminStateUp,
    description: description(),
  },
  ['listener', 'action'],
);

const l7RuleSpec = object(
  {
    l7Policy: objectName('Name of the L7Policy in the same namespace'),
    type: stringEnum(['HOST_NAME', 'PATH', 'FILE_TYPE', 'HEADER', 'COOKIE'], 'What part of the request is compared'),
    compareType: stringEnum(['REGEX', 'STARTS_WITH', 'ENDS_WITH', 'CONTAINS', 'EQUAL_TO'], 'How it is compared'),
    key: patterned(PATTERNS.httpToken, 255, 'HEADER and COOKIE rules: the header or cookie name'),
    value: patterned(
      PATTERNS.l7Value,
      255,
      'What to compare with. Printable ASCII without whitespace, quotes, "#" or backslash: a regex therefore ' +
        'cannot escape with "\\"; write "[.]" for a literal dot, "[?]" for a literal question mark',
    ),
    invert: boolean('Match when the comparison fails', false),
    adminStateUp,
  },
  ['l7Policy', 'type', 'compareType', 'value'],
);

export const SPEC_SCHEMAS: Readonly<Record<Kind, JsonSchema>> = {
  LoadBalancer: loadBalancerSpec,
  Listener: listenerSpec,
  Pool: poolSpec,
  Member: memberSpec,
  HealthMonitor: healthMonitorSpec,
  L7Policy: l7PolicySpec,
  L7Rule: l7RuleSpec,
};

// ---------------------------------------------------------------------------------------------------------
// Whole objects.

const freeFormObject: JsonSchema = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };

/** What files may carry in metadata; server-populated fields are typed so that `kubectl get -o yaml` output validates. */
export const METADATA_SCHEMA: JsonSchema = object(
  {
    name: objectName('Object name, unique per kind and namespace'),
    namespace: objectName('Namespace; "default" when omitted'),
    labels,
    annotations,
    generateName: { type: 'string' },
    // Bounded so that a generation is exactly what it says: JSON numbers past 2^53 lose their last digits.
    generation: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    resourceVersion: { type: 'string' },
    uid: { type: 'string' },
    creationTimestamp: { type: 'string' },
    deletionTimestamp: { type: 'string' },
    deletionGracePeriodSeconds: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    finalizers: { type: 'array', items: { type: 'string' } },
    ownerReferences: { type: 'array', items: freeFormObject },
    managedFields: { type: 'array', items: freeFormObject },
    selfLink: { type: 'string' },
  },
  ['name'],
);

function objectSchema(kind: Kind): JsonSchema {
  return object(
    {
      apiVersion: { type: 'string', enum: [API_VERSION] },
      kind: { type: 'string', enum: [kind] },
      metadata: METADATA_SCHEMA,
      spec: SPEC_SCHEMAS[kind],
      status: { ...freeFormObject, description: 'Written by nslb only' },
    },
    ['apiVersion', 'kind', 'metadata', 'spec'],
  );
}

const OBJECT_SCHEMAS = new Map<Kind, JsonSchema>(KINDS.map((k) => [k, objectSchema(k)]));

/** The whole-object schema (apiVersion, kind, metadata, spec, status) for one kind. */
export function schemaFor(kind: Kind): JsonSchema {
  const schema = OBJECT_SCHEMAS.get(kind);
  if (schema === undefined) throw new TypeError(`unknown kind "${String(kind)}"`);
  return schema;
}

/**
 * The same schema as Kubernetes wants it in a CRD's openAPIV3Schema. The API server forbids
 * `additionalProperties` next to `properties` (it prunes unknown fields instead) and allows no constraints
 * on metadata but name, and it fills apiVersion/kind itself.
 */
export function crdSchemaFor(kind: Kind): JsonSchema {
  const { properties } = schemaFor(kind);
  const toCrd = (s: JsonSchema): JsonSchema => {
    const out: JsonSchema = { ...s };
    if (s.properties !== undefined) {
      out.properties = Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k, toCrd(v)]));
      if (s.additionalProperties === false) delete out.additionalProperties;
    }
    // Kubernetes' schema dialect has no propertyNames: label keys are checked by ajv in the agent only.
    delete out.propertyNames;
    if (s.items !== undefined) out.items = toCrd(s.items);
    return out;
  };
  return {
    type: 'object',
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: toCrd(SPEC_SCHEMAS[kind]),
      status: { ...(properties?.['status'] ?? freeFormObject) },
    },
    required: ['spec'],
  };
}
