// One JSON Schema per kind: the single source of truth for what a valid object looks like (DESIGN §1).
// ajv validates files and CLI input with SPEC_SCHEMAS/schemaFor(); the CRDs carry crdSchemaFor() as
// openAPIV3Schema. That dual use constrains the dialect: every node has a `type`, no `$ref`, no `const`
// (Kubernetes' JSONSchemaProps has none: single-value `enum` instead), no `uniqueItems`, no exclusive bounds.
//
// Safety: any string that can end up in an HAProxy config is pinned down by a pattern or an enum, so that it
// can never carry whitespace, a newline, `#`, a quote, a backslash or NUL into the rendered file.
import { API_VERSION, KINDS, type Kind } from './types.js';

/** The subset of JSON Schema (draft-07 / OpenAPI v3 structural) that these schemas use. */
export interface JsonSchema {
  type: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  /** Only in metadata (labels, annotations), which the CRDs leave to the API server. */
  propertyNames?: JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  enum?: (string | number)[];
  pattern?: string;
  format?: string;
  anyOf?: Omit<JsonSchema, 'type'>[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

/** Formats these schemas use; validate.ts registers an implementation for each (no ajv-formats). */
export const FORMATS = ['ipv4', 'ipv6', 'cidr', 'mac'] as const;

/** x-kubernetes-* annotation keywords these schemas use; ajv in strict mode must be told about them. */
export const KUBERNETES_KEYWORDS = ['x-kubernetes-preserve-unknown-fields'] as const;

interface NamedPattern {
  pattern: string;
  /** Completes "must be …" in a validation message. */
  description: string;
}

// Every pattern here must mean the same in ECMAScript (ajv, `u` flag) and in Go RE2 (the Kubernetes API
// server): so no lookaround and no backreferences.
const PATH_SEGMENT = String.raw`(\.?[A-Za-z0-9_+@=,:~-][A-Za-z0-9._+@=,:~-]*|\.\.[A-Za-z0-9._+@=,:~-]+|\.)`;
const HOST_LABEL = '[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?';
const STATUS_CODE = '[1-5][0-9]{2}';

export const PATTERNS = {
  dnsLabel: {
    pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
    description: 'a DNS-1123 label: lowercase letters, digits and "-", starting and ending with a letter or digit',
  },
  dnsSubdomain: {
    pattern: String.raw`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`,
    description: 'a DNS-1123 subdomain: dot-separated lowercase labels of letters, digits and "-"',
  },
  // The format (node:net) decides validity; this keeps zone ids ("fe80::1%eth0") and any odd character out.
  ipAddress: { pattern: '^[0-9A-Fa-f.:]+$', description: 'an IPv4 or IPv6 address' },
  cidr: { pattern: '^[0-9A-Fa-f.:]+/[0-9]{1,3}$', description: 'a CIDR such as 10.0.0.0/24 or 2001:db8::/64' },
  mac: { pattern: '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', description: 'a MAC address such as fa:16:3e:00:00:01' },
  // A bridge's own port is a kernel netdev, hence the netdev character set and the 15-character limit.
  bridge: {
    pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$',
    description: 'an Open vSwitch bridge name: letters, digits, "_", "." and "-"',
  },
  filePath: {
    pattern: `^/?${PATH_SEGMENT}(/${PATH_SEGMENT})*$`,
    description:
      'a file path of letters, digits and ._+@=,:~- separated by single "/", without ".." segments, whitespace, quotes, "#" or "\\"',
  },
  // RFC 3986 path characters minus the quote, plus "?" so a check can carry a query as Octavia allows.
  urlPath: {
    pattern: "^/[A-Za-z0-9._~!$&()*+,;=:@%/?-]*$",
    description: 'an absolute URL path: "/" followed by letters, digits and ._~!$&()*+,;=:@%/?-',
  },
  expectedCodes: {
    pattern: `^(${STATUS_CODE}(,${STATUS_CODE})*|${STATUS_CODE}-${STATUS_CODE})$`,
    description: 'HTTP status codes 100-599 as "200", a list "200,202" or a range "200-204"',
  },
  hostname: {
    pattern: `^${HOST_LABEL}(\\.${HOST_LABEL})*$`,
    description: 'a host name: dot-separated labels of letters, digits and "-"',
  },
  // An OpenSSL cipher list as HAProxy's `ciphers`/`ciphersuites` take it: ":"-separated entries, each an
  // optional !, + or - and then names joined by + or - (ECDHE-RSA-AES128-GCM-SHA256, kEECDH+AESGCM,
  // TLS_AES_128_GCM_SHA256, DEFAULT@SECLEVEL=0). No spaces or commas, which OpenSSL would also take.
  ciphers: {
    pattern: '^[!+-]?[A-Za-z0-9_.=@]+([+-][A-Za-z0-9_.=@]+)*(:[!+-]?[A-Za-z0-9_.=@]+([+-][A-Za-z0-9_.=@]+)*)*$',
    description:
      'an OpenSSL cipher list: ":"-separated entries of letters, digits and _.=@, each optionally prefixed by !, + or -, ' +
      'names joined by + or - (e.g. "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256")',
  },
  // RFC 7230 tchar (which RFC 6265 cookie names are too) minus "#" and "'", which HAProxy reads as a comment
  // and a quote even inside a word, and minus "%", which starts an expression wherever HAProxy expects a
  // log-format string. The rest cannot end a sample-fetch argument ("(", ")" and "," are not tchar).
  httpToken: {
    pattern: "^[A-Za-z0-9!$&*+.^_`|~-]+$",
    description: 'an HTTP token (header or cookie name): letters, digits and !$&*+.^_`|~-',
  },
  // L7 rule values are regexes and strings matched as written. Out: whitespace (splits words), "#" (comment),
  // quotes and backslash (HAProxy's quoting and escaping), so no value can leave its word. "$" stays, being
  // the regex anchor: HAProxy expands environment variables only inside double quotes, and values are bare.
  l7Value: {
    pattern: String.raw`^[\x21\x24-\x26\x28-\x5b\x5d-\x7e]+$`,
    description: 'printable ASCII without whitespace, quotes, "#" or "\\"',
  },
  // "#" would start a comment in haproxy.cfg, so a URL here has no fragment. "%" stays for percent-encoding:
  // HAProxy reads redirect targets as log-format strings, so the renderer writes it as "%%".
  redirectUrl: {
    pattern: String.raw`^https?://[\x21\x24-\x26\x28-\x2e\x30-\x5b\x5d-\x7e][\x21\x24-\x26\x28-\x5b\x5d-\x7e]*$`,
    description: 'an absolute http:// or https:// URL without whitespace, quotes, "#" or "\\"',
  },
  // Kubernetes' rules for label and annotation keys (an optional DNS subdomain prefix and "/", then a name of
  // at most 63 characters) and label values, so that a file nslb accepts is one `kubectl apply` accepts.
  qualifiedName: {
    pattern: String.raw`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`,
    description: 'a Kubernetes qualified name: an optional DNS subdomain and "/", then at most 63 letters, digits and -_. starting and ending with a letter or digit',
  },
  labelValue: {
    pattern: '^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$',
    description: 'a Kubernetes label value: empty, or at most 63 letters, digits and -_. starting and ending with a letter or digit',
  },
  // Descriptions never reach HAProxy, but they do reach logs and terminals (`nslb status`): one printable line.
  // So no C0 or C1 controls (Cc; U+009B is a terminal's CSI), no invisible format characters (Cf: the bidi
  // overrides that reorder what a terminal shows, zero-width spaces) and no line or paragraph separators.
  // Unicode categories mean the same in ECMAScript (`u` flag) and RE2.
  description: {
    pattern: '^[^\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}]*$',
    description: 'a single line without control characters or invisible formatting characters (such as bidi overrides)',
  },
} as const satisfies Record<string, NamedPattern>;

// ---------------------------------------------------------------------------------------------------------
// Building blocks.

function patterned(p: NamedPattern, maxLength: number, description: string): JsonSchema {
  return { type: 'string', description, minLength: 1, maxLength, pattern: p.pattern };
}

const objectName = (what: string): JsonSchema => patterned(PATTERNS.dnsLabel, 63, what);
const secretName = (what: string): JsonSchema => patterned(PATTERNS.dnsSubdomain, 253, what);
const filePath = (what: string): JsonSchema => patterned(PATTERNS.filePath, 4096, what);

function ipAddress(description: string): JsonSchema {
  return {
    type: 'string',
    description,
    maxLength: 45,
    pattern: PATTERNS.ipAddress.pattern,
    anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }],
  };
}

function integer(minimum: number, maximum: number, description: string, dflt?: number): JsonSchema {
  return { type: 'integer', description, minimum, maximum, ...(dflt === undefined ? {} : { default: dflt }) };
}

function boolean(description: string, dflt?: boolean): JsonSchema {
  return { type: 'boolean', description, ...(dflt === undefined ? {} : { default: dflt }) };
}

function integerEnum(values: readonly number[], description: string, dflt?: number): JsonSchema {
  return { type: 'integer', description, enum: [...values], ...(dflt === undefined ? {} : { default: dflt }) };
}

function stringEnum(values: readonly string[], description: string, dflt?: string): JsonSchema {
  return { type: 'string', description, enum: [...values], ...(dflt === undefined ? {} : { default: dflt }) };
}

function object(properties: Record<string, JsonSchema>, required: string[] = [], description?: string): JsonSchema {
  return {
    type: 'object',
    ...(description === undefined ? {} : { description }),
    properties,
    ...(required.length > 0 ? { required } : {}),
    additionalProperties: false,
  };
}

function list(items: JsonSchema, description: string, dflt?: unknown[]): JsonSchema {
  return { type: 'array', description, items, ...(dflt === undefined ? {} : { default: dflt }) };
}

const metadataKey: JsonSchema = { type: 'string', maxLength: 317, pattern: PATTERNS.qualifiedName.pattern };

const labels: JsonSchema = {
  type: 'object',
  description: 'Labels',
  propertyNames: metadataKey,
  additionalProperties: { type: 'string', maxLength: 63, pattern: PATTERNS.labelValue.pattern },
};

// Annotation values are free text, as in Kubernetes; nslb never puts them anywhere but status output.
const annotations: JsonSchema = {
  type: 'object',
  description: 'Annotations',
  propertyNames: metadataKey,
  additionalProperties: { type: 'string' },
};

const adminStateUp = boolean('false takes the object out of service without deleting it', true);
const description = (): JsonSchema => ({
  type: 'string',
  description: 'Free text for humans',
  maxLength: 255,
  pattern: PATTERNS.description.pattern,
});

const TLS_VERSIONS = ['SSLv3', 'TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
const ALPN_PROTOCOLS = ['h2', 'http/1.1', 'http/1.0'] as const;
const tlsVersions = (dflt?: string[]): JsonSchema => ({
  ...list(stringEnum(TLS_VERSIONS, 'TLS protocol version'), 'Allowed TLS versions, a contiguous range', dflt),
  minItems: 1,
  maxItems: TLS_VERSIONS.length,
});
const ciphers = (): JsonSchema =>
  patterned(
    PATTERNS.ciphers,
    2048,
    'OpenSSL cipher list; TLS_* entries are TLS 1.3 cipher suites (HAProxy ciphersuites), the rest TLS 1.2 and older (ciphers)',
  );
const alpn = (dflt?: string[]): JsonSchema => ({
  ...list(stringEnum(ALPN_PROTOCOLS, 'ALPN protocol id'), 'ALPN protocols to offer, most preferred first', dflt),
  maxItems: ALPN_PROTOCOLS.length,
});

// ---------------------------------------------------------------------------------------------------------
// Specs, one per kind.

/** LoadBalancer.spec.additionalVips: at most this many (Octavia's use is one per other subnet, typically one). */
export const MAX_ADDITIONAL_VIPS = 4;

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
    protocol: stringEnum(['TCP', 'HTTP', 'HTTPS', 'TERMINATED_HTTPS'], 'Protocol clients speak to the VIP'),
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
    allowedCidrs: list(
      { type: 'string', maxLength: 49, pattern: PATTERNS.cidr.pattern, format: 'cidr' },
      'Source CIDRs allowed to connect; empty = everyone',
    ),
    tls: listenerTls,
    adminStateUp,
    description: description(),
  },
  ['loadBalancer', 'protocol', 'port'],
);

const poolSpec = object(
  {
    loadBalancer: objectName('Name of the LoadBalancer in the same namespace'),
    protocol: stringEnum(['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'], 'Protocol spoken to members'),
    lbAlgorithm: stringEnum(['ROUND_ROBIN', 'LEAST_CONNECTIONS', 'SOURCE_IP'], 'How members are chosen'),
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
    adminStateUp,
    description: description(),
  },
  ['pool', 'address', 'port'],
);

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'OPTIONS', 'PATCH', 'CONNECT'] as const;

const healthMonitorSpec = object(
  {
    pool: objectName('Name of the Pool in the same namespace'),
    type: stringEnum(['PING', 'TCP', 'HTTP', 'HTTPS', 'TLS-HELLO'], 'Kind of check'),
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
