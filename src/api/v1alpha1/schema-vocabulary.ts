// The vocabulary the schemas (schemas.ts, addresspool.ts) are written in: the JSON Schema subset they use, the
// named patterns, and small builders. Every pattern here must mean the same in ECMAScript (ajv, `u` flag) and in
// Go RE2 (the Kubernetes API server).

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
  multipleOf?: number;
  default?: unknown;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

/** Formats these schemas use; validate.ts registers an implementation for each (no ajv-formats). */
export const FORMATS = ['ipv4', 'ipv6', 'cidr', 'mac'] as const;

/** x-kubernetes-* annotation keywords these schemas use; ajv in strict mode must be told about them. */
export const KUBERNETES_KEYWORDS = ['x-kubernetes-preserve-unknown-fields'] as const;

export interface NamedPattern {
  pattern: string;
  /** Completes "must be …" in a validation message. */
  description: string;
}

// Every pattern here must mean the same in ECMAScript (ajv, `u` flag) and in Go RE2 (the Kubernetes API
// server): so no lookaround and no backreferences.
export const PATH_SEGMENT = String.raw`(\.?[A-Za-z0-9_+@=,:~-][A-Za-z0-9._+@=,:~-]*|\.\.[A-Za-z0-9._+@=,:~-]+|\.)`;
export const HOST_LABEL = '[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?';
export const STATUS_CODE = '[1-5][0-9]{2}';

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
    description: 'a file path of letters, digits and ._+@=,:~- separated by single "/", without ".." segments, whitespace, quotes, "#" or "\\"',
  },
  // RFC 3986 path characters minus the quote, plus "?" so a check can carry a query as Octavia allows.
  urlPath: {
    pattern: '^/[A-Za-z0-9._~!$&()*+,;=:@%/?-]*$',
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
    pattern: '^[A-Za-z0-9!$&*+.^_`|~-]+$',
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
    description:
      'a Kubernetes qualified name: an optional DNS subdomain and "/", then at most 63 letters, digits and -_. starting and ending with a letter or digit',
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

// Building blocks.

export function patterned(p: NamedPattern, maxLength: number, description: string): JsonSchema {
  return { type: 'string', description, minLength: 1, maxLength, pattern: p.pattern };
}

export const objectName = (what: string): JsonSchema => patterned(PATTERNS.dnsLabel, 63, what);
export const secretName = (what: string): JsonSchema => patterned(PATTERNS.dnsSubdomain, 253, what);
export const filePath = (what: string): JsonSchema => patterned(PATTERNS.filePath, 4096, what);

export function ipAddress(description: string): JsonSchema {
  return {
    type: 'string',
    description,
    maxLength: 45,
    pattern: PATTERNS.ipAddress.pattern,
    anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }],
  };
}

export function integer(minimum: number, maximum: number, description: string, dflt?: number): JsonSchema {
  return { type: 'integer', description, minimum, maximum, ...(dflt === undefined ? {} : { default: dflt }) };
}

export function boolean(description: string, dflt?: boolean): JsonSchema {
  return { type: 'boolean', description, ...(dflt === undefined ? {} : { default: dflt }) };
}

export function integerEnum(values: readonly number[], description: string, dflt?: number): JsonSchema {
  return { type: 'integer', description, enum: [...values], ...(dflt === undefined ? {} : { default: dflt }) };
}

export function stringEnum(values: readonly string[], description: string, dflt?: string): JsonSchema {
  return { type: 'string', description, enum: [...values], ...(dflt === undefined ? {} : { default: dflt }) };
}

export function object(properties: Record<string, JsonSchema>, required: string[] = [], description?: string): JsonSchema {
  return {
    type: 'object',
    ...(description === undefined ? {} : { description }),
    properties,
    ...(required.length > 0 ? { required } : {}),
    additionalProperties: false,
  };
}

export function list(items: JsonSchema, description: string, dflt?: unknown[]): JsonSchema {
  return { type: 'array', description, items, ...(dflt === undefined ? {} : { default: dflt }) };
}

export const metadataKey: JsonSchema = { type: 'string', maxLength: 317, pattern: PATTERNS.qualifiedName.pattern };

export const labels: JsonSchema = {
  type: 'object',
  description: 'Labels',
  propertyNames: metadataKey,
  additionalProperties: { type: 'string', maxLength: 63, pattern: PATTERNS.labelValue.pattern },
};

// Annotation values are free text, as in Kubernetes; nslb never puts them anywhere but status output.
export const annotations: JsonSchema = {
  type: 'object',
  description: 'Annotations',
  propertyNames: metadataKey,
  additionalProperties: { type: 'string' },
};

export const adminStateUp = boolean('false takes the object out of service without deleting it', true);
export const description = (): JsonSchema => ({
  type: 'string',
  description: 'Free text for humans',
  maxLength: 255,
  pattern: PATTERNS.description.pattern,
});

export const TLS_VERSIONS = ['SSLv3', 'TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export const ALPN_PROTOCOLS = ['h2', 'http/1.1', 'http/1.0'] as const;
export const tlsVersions = (dflt?: string[]): JsonSchema => ({
  ...list(stringEnum(TLS_VERSIONS, 'TLS protocol version'), 'Allowed TLS versions, a contiguous range', dflt),
  minItems: 1,
  maxItems: TLS_VERSIONS.length,
});
export const ciphers = (): JsonSchema =>
  patterned(
    PATTERNS.ciphers,
    2048,
    'OpenSSL cipher list; TLS_* entries are TLS 1.3 cipher suites (HAProxy ciphersuites), the rest TLS 1.2 and older (ciphers)',
  );
export const alpn = (dflt?: string[]): JsonSchema => ({
  ...list(stringEnum(ALPN_PROTOCOLS, 'ALPN protocol id'), 'ALPN protocols to offer, most preferred first', dflt),
  maxItems: ALPN_PROTOCOLS.length,
});
