// The hostile input corpus (issue 6, acceptance item 5): the ways a file in the watched directory can be
// wrong, each with where its error must point (file, document, field). test/unit/hostile-corpus.test.ts reads
// every case through the real file-mode path next to good.yaml and checks that nothing else changes.
//
// Two halves. The literal files under files/ are the cases worth reading on their own (malformed YAML and
// JSON, encodings, alias bombs, references); their expectations are in LITERAL below. Everything systematic is
// generated from the JSON Schemas, so that a field added to a schema is in the corpus the day it is added:
// every string field with each hostile value, every field with a wrong type, every bounded number out of range,
// every object with an unknown field; plus lists of bad addresses, names, kinds, cross-object mistakes, TLS
// material, huge inputs and odd file types.
//
// Every hostile file lives under hostile/ in the watched directory, so that it sorts after good.yaml: when two
// files define the same object the first file wins (src/sources/snapshot.ts), by design, so a duplicate is only
// "hostile" when it comes second. Likewise the victim load balancer is named to sort after good: of two load
// balancers claiming one VIP the first by name keeps it.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import type { JsonSchema } from '../../src/api/v1alpha1/schema-vocabulary.js';
import { schemaFor } from '../../src/api/v1alpha1/schemas.js';
import { KINDS, type Kind } from '../../src/api/v1alpha1/types.js';
import { PARSE_LIMITS } from '../../src/sources/parse.js';
import { selfSignedSync } from '../support/pki.js';

export const HOSTILE_DIR = import.meta.dirname;
export const GOOD_FILE = join(HOSTILE_DIR, 'good.yaml');
export const LITERAL_DIR = join(HOSTILE_DIR, 'files');
/** The subdirectory of the watched directory that holds the hostile file. */
export const SUBDIR = 'hostile';

export type Doc = Record<string, unknown>;

/** How the hostile file is made: content, a copy of a checked-in file, a symlink (target as written), or a FIFO. */
export type FileMaker = { content: string | Uint8Array } | { literal: string } | { symlink: string } | { fifo: true };

export interface Rejected {
  outcome: 'rejected';
  /** 1-based document, or 0 for the file as a whole. */
  document: number;
  /** JSON pointer of the field at fault; undefined when the fault is not in a field (syntax, encoding). */
  path?: string;
  message?: RegExp;
}

/** Values that are legitimate where they are (free text): read as written, nothing reported. */
export interface Accepted {
  outcome: 'accepted';
  document: number;
  path: string;
  value: unknown;
}

export interface HostileCase {
  id: string;
  group: string;
  /** Relative to the watched directory, always under SUBDIR. */
  file: string;
  make: FileMaker;
  expect: Rejected | Accepted;
}

// ---------------------------------------------------------------------------------------------------------
// Material the victim's TLS fields name; written under certs/ of the watched directory. The desired build
// parses certificates (expiry, key match), so these are real: self-signed, made once per run (nothing here
// reaches HAProxy). certs/fifo.crt is made as a FIFO by the test.

const VICTIM = selfSignedSync('victim.example.test');
const SNI = selfSignedSync('sni.example.test');
const CERT = VICTIM.cert;
const KEY = VICTIM.key;

export const MATERIALS: Readonly<Record<string, string>> = {
  'certs/victim.crt': CERT,
  'certs/victim.key': KEY,
  'certs/sni.crt': SNI.cert,
  'certs/sni.key': SNI.key,
  'certs/garbage.crt': 'this is not a certificate\n',
  'certs/encrypted.key': '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBdGVzdA==\n-----END ENCRYPTED PRIVATE KEY-----\n',
  'certs/both.pem': CERT + KEY,
  // Over MAX_MATERIAL_BYTES (1 MiB): read no further than the limit.
  'certs/huge.crt': CERT + '#'.repeat(2 * 1024 * 1024),
};
export const FIFO_MATERIAL = 'certs/fifo.crt';

// ---------------------------------------------------------------------------------------------------------
// The victim: a load balancer with one object of every kind, in KINDS order (document n = KINDS[n - 1]),
// using every feature the desired build supports. Valid and buildable as it is.

const API_VERSION = 'nslb.dev/v1alpha1';

export function victim(): Doc[] {
  const meta = (name: string) => ({ name, namespace: 'default' });
  return [
    {
      apiVersion: API_VERSION,
      kind: 'LoadBalancer',
      metadata: { ...meta('victim'), labels: { app: 'victim' }, annotations: { note: 'victim' } },
      spec: {
        vip: { address: '192.0.2.50', prefixLength: 24, gateway: '192.0.2.1', mac: 'fa:16:3e:00:00:50', bridge: 'br-ex', vlan: 100, mtu: 1450 },
        memberNetworks: [
          {
            name: 'victim-back',
            bridge: 'br-members',
            vlan: 101,
            address: '198.51.100.2',
            prefixLength: 24,
            mtu: 1450,
            routes: [{ destination: '203.0.113.0/24', gateway: '198.51.100.1' }],
          },
        ],
        adminStateUp: true,
        description: 'victim',
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'Listener',
      metadata: meta('victim-https'),
      spec: {
        loadBalancer: 'victim',
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'victim-app',
        connectionLimit: 1000,
        timeouts: { clientData: 50000, memberConnect: 5000, memberData: 50000, tcpInspect: 0 },
        insertHeaders: { 'X-Forwarded-For': true, 'X-Forwarded-Port': true, 'X-Forwarded-Proto': true },
        allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'],
        tls: {
          certificateFile: 'certs/victim.crt',
          keyFile: 'certs/victim.key',
          sniCertificates: [{ certificateFile: 'certs/sni.crt', keyFile: 'certs/sni.key' }],
          clientAuthentication: 'NONE',
        },
        adminStateUp: true,
        description: 'https',
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'Pool',
      metadata: meta('victim-app'),
      spec: {
        loadBalancer: 'victim',
        protocol: 'HTTP',
        lbAlgorithm: 'ROUND_ROBIN',
        sessionPersistence: { type: 'APP_COOKIE', cookieName: 'SESSION' },
        tls: { enabled: false },
        adminStateUp: true,
        description: 'app',
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'Member',
      metadata: meta('victim-app-1'),
      spec: {
        pool: 'victim-app',
        address: '198.51.100.50',
        port: 8080,
        weight: 10,
        backup: false,
        monitorAddress: '198.51.100.51',
        monitorPort: 8081,
        network: 'victim-back',
        adminStateUp: true,
        description: 'member',
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'HealthMonitor',
      metadata: meta('victim-check'),
      spec: {
        pool: 'victim-app',
        type: 'HTTP',
        delay: 5,
        timeout: 3,
        maxRetries: 3,
        maxRetriesDown: 2,
        httpMethod: 'GET',
        urlPath: '/healthz',
        expectedCodes: '200-204',
        httpVersion: '1.1',
        domainName: 'victim.example.com',
        adminStateUp: true,
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'L7Policy',
      metadata: meta('victim-redirect'),
      spec: {
        listener: 'victim-https',
        action: 'REDIRECT_TO_URL',
        redirectUrl: 'https://example.com/moved',
        redirectHttpCode: 301,
        position: 1,
        adminStateUp: true,
        description: 'policy',
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'L7Rule',
      metadata: meta('victim-rule'),
      spec: { l7Policy: 'victim-redirect', type: 'HEADER', compareType: 'REGEX', key: 'X-Version', value: '^v1$', invert: false, adminStateUp: true },
    },
  ];
}

export const documentOf = (kind: Kind): number => KINDS.indexOf(kind) + 1;

export function yamlOf(docs: readonly unknown[]): string {
  return docs.map((d) => dump(d, { lineWidth: -1, noRefs: true })).join('---\n');
}

// ---------------------------------------------------------------------------------------------------------
// JSON pointers on plain data.

function segments(pointer: string): string[] {
  return pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

export function getAt(doc: unknown, pointer: string): unknown {
  let node = doc;
  for (const key of segments(pointer)) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** Sets a value, creating objects (or arrays, for numeric segments) on the way. */
export function setAt(doc: Doc, pointer: string, value: unknown): void {
  const keys = segments(pointer);
  let node: Record<string, unknown> = doc;
  keys.forEach((key, i) => {
    if (i === keys.length - 1) {
      node[key] = value;
      return;
    }
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = /^\d+$/.test(keys[i + 1] ?? '') ? [] : {};
    node = node[key] as Record<string, unknown>;
  });
}

export function deleteAt(doc: Doc, pointer: string): void {
  const keys = segments(pointer);
  const parent = getAt(doc, `/${keys.slice(0, -1).join('/')}`.replace(/^\/$/, ''));
  if (typeof parent === 'object' && parent !== null) delete (parent as Record<string, unknown>)[keys.at(-1) ?? ''];
}

// ---------------------------------------------------------------------------------------------------------
// The schema walk: every node of every kind's whole-object schema, as a concrete pointer into the victim.

export interface Field {
  kind: Kind;
  path: string;
  schema: JsonSchema;
}

/** The key used for the values of a string map (labels, annotations): the victim's own. */
const MAP_KEYS: Record<string, string> = { '/metadata/labels': 'app', '/metadata/annotations': 'note' };

export function fieldsOf(kind: Kind): Field[] {
  const out: Field[] = [];
  const visit = (s: JsonSchema, path: string): void => {
    if (path !== '') out.push({ kind, path, schema: s });
    // status is free-form: nothing under it is checked, by design.
    if (path === '/status') return;
    for (const [k, sub] of Object.entries(s.properties ?? {})) visit(sub, `${path}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`);
    if (s.items !== undefined) visit(s.items, `${path}/0`);
    if (typeof s.additionalProperties === 'object') visit(s.additionalProperties, `${path}/${MAP_KEYS[path] ?? 'key'}`);
  };
  visit(schemaFor(kind), '');
  // metadata is one schema for every kind: all of it on the LoadBalancer, name and namespace on every kind.
  return out.filter((f) => !f.path.startsWith('/metadata/') || kind === 'LoadBalancer' || f.path === '/metadata/name' || f.path === '/metadata/namespace');
}

export const ALL_FIELDS: readonly Field[] = KINDS.flatMap(fieldsOf);

// A valid value for string fields the victim leaves out, to put the hostile character into.
const SAMPLES: Record<string, string> = {
  secretName: 'victim-tls',
  caSecretName: 'victim-ca',
  sniSecretNames: 'victim-sni',
  clientCaFile: 'certs/ca.pem',
  clientCrlFile: 'certs/ca.crl',
  caFile: 'certs/ca.pem',
  crlFile: 'certs/ca.crl',
  certificateFile: 'certs/client.crt',
  keyFile: 'certs/client.key',
  versions: 'TLSv1.3',
  ciphers: 'HIGH',
  alpnProtocols: 'h2',
  redirectPool: 'victim-app',
  redirectPrefix: 'https://example.com',
  generateName: 'victim-',
  resourceVersion: '12345',
  uid: '0b0e0a3c-7f53-4c4e-9b8e-1d2f3a4b5c6d',
  creationTimestamp: '2026-01-01T00:00:00Z',
  deletionTimestamp: '2026-01-02T00:00:00Z',
  selfLink: '/apis/nslb.dev/v1alpha1/namespaces/default/loadbalancers/victim',
  finalizers: 'nslb.dev/cleanup',
};

function sampleOf(f: Field): string {
  const own = getAt(victim()[documentOf(f.kind) - 1], f.path);
  if (typeof own === 'string') return own;
  const name =
    segments(f.path)
      .filter((s) => !/^\d+$/.test(s))
      .at(-1) ?? '';
  return SAMPLES[name] ?? f.schema.enum?.[0]?.toString() ?? 'ok';
}

// ---------------------------------------------------------------------------------------------------------
// Hostile strings. Each keeps the field's valid value and adds one thing, so that the thing is what is
// rejected.

export const HOSTILE_STRINGS: Readonly<Record<string, (valid: string) => string>> = {
  newline: (v) => `${v}\nx`,
  cr: (v) => `${v}\rx`,
  tab: (v) => `${v}\tx`,
  hash: (v) => `${v}#x`,
  'double-quote': (v) => `${v}"x`,
  'single-quote': (v) => `${v}'x`,
  space: (v) => `${v} x`,
  backslash: (v) => `${v}\\x`,
  nul: (v) => `${v}\u0000x`,
  'bidi-override': (v) => `${v}\u202ex`,
  'very-long': (v) => `${v}${'x'.repeat(100_000)}`,
};

/**
 * Where a hostile string is legitimate: free text that nslb never renders into haproxy.cfg. Descriptions are
 * one printable line (quotes, `#`, spaces and backslashes are fine in prose); annotation values and the
 * server-populated metadata are opaque strings, as in Kubernetes.
 */
function accepts(path: string, variant: string): boolean {
  if (/^\/metadata\/(annotations\/[^/]+|generateName|resourceVersion|uid|creationTimestamp|deletionTimestamp|selfLink|finalizers\/0)$/.test(path)) {
    return true;
  }
  return path === '/spec/description' && ['hash', 'double-quote', 'single-quote', 'space', 'backslash'].includes(variant);
}

const fileFor = (json: boolean) => `${SUBDIR}/hostile.${json ? 'json' : 'yaml'}`;

/** A case made from the victim with one change, written as YAML (or JSON). */
function victimCase(group: string, id: string, change: (docs: Doc[]) => void, expect: Rejected | Accepted, json = false): HostileCase {
  const docs = victim();
  change(docs);
  const file = fileFor(json);
  return { id: `${group}: ${id}`, group, file, make: { content: json ? JSON.stringify(docs, null, 1) : yamlOf(docs) }, expect };
}

const rejected = (document: number, path?: string, message?: RegExp): Rejected => ({
  outcome: 'rejected',
  document,
  ...(path === undefined ? {} : { path }),
  ...(message === undefined ? {} : { message }),
});

const docOf = (docs: Doc[], kind: Kind): Doc => docs[documentOf(kind) - 1]!;

function stringFieldCases(): HostileCase[] {
  const out: HostileCase[] = [];
  for (const f of ALL_FIELDS.filter((x) => x.schema.type === 'string')) {
    const document = documentOf(f.kind);
    for (const [variant, make] of Object.entries(HOSTILE_STRINGS)) {
      const value = make(sampleOf(f));
      // NUL and the 100 kB value also go through the JSON reader.
      const json = variant === 'nul' || variant === 'very-long';
      const expect: Rejected | Accepted = accepts(f.path, variant) ? { outcome: 'accepted', document, path: f.path, value } : rejected(document, f.path);
      out.push(victimCase('string field', `${f.kind} ${f.path} ${variant}`, (d) => setAt(docOf(d, f.kind), f.path, value), expect, json));
    }
  }
  // Keys of the string maps are the document's text as much as values are.
  for (const map of ['labels', 'annotations']) {
    for (const [variant, make] of Object.entries(HOSTILE_STRINGS)) {
      out.push(
        victimCase(
          'map key',
          `/metadata/${map} key ${variant}`,
          (d) => setAt(docOf(d, 'LoadBalancer'), `/metadata/${map}`, { [make('app')]: 'victim' }),
          rejected(1, `/metadata/${map}`, /^key /),
          variant === 'nul',
        ),
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Wrong types, out-of-range numbers, unknown fields: every node of the schemas.

const WRONG_TYPES: Readonly<Record<JsonSchema['type'], readonly unknown[]>> = {
  string: [12345, null],
  integer: ['80', null],
  number: ['1', null],
  boolean: ['true', null],
  object: ['x', null],
  array: ['x', null],
};

function wrongTypeCases(): HostileCase[] {
  return ALL_FIELDS.flatMap((f) =>
    (WRONG_TYPES[f.schema.type] ?? []).map((value) =>
      victimCase(
        'wrong type',
        `${f.kind} ${f.path} = ${JSON.stringify(value)}`,
        (d) => setAt(docOf(d, f.kind), f.path, value),
        rejected(documentOf(f.kind), f.path),
      ),
    ),
  );
}

function outOfRangeCases(): HostileCase[] {
  const out: HostileCase[] = [];
  for (const f of ALL_FIELDS.filter((x) => x.schema.type === 'integer')) {
    const { minimum, maximum } = f.schema;
    const values: number[] = f.schema.enum !== undefined ? [300, 304, 1.5] : [1.5, Infinity, -Infinity, NaN];
    if (f.schema.enum === undefined) {
      if (minimum !== undefined) values.push(minimum - 1);
      if (maximum !== undefined) values.push(maximum + 1);
      values.push(2 ** 64);
    }
    for (const value of values) {
      out.push(
        victimCase('out of range', `${f.kind} ${f.path} = ${value}`, (d) => setAt(docOf(d, f.kind), f.path, value), rejected(documentOf(f.kind), f.path)),
      );
    }
  }
  return out;
}

function unknownFieldCases(): HostileCase[] {
  const objects = [...KINDS.map((kind): Field => ({ kind, path: '', schema: schemaFor(kind) })), ...ALL_FIELDS].filter(
    (f) => f.schema.type === 'object' && f.schema.additionalProperties === false,
  );
  const out = objects.map((f) =>
    victimCase(
      'unknown field',
      `${f.kind} ${f.path === '' ? '(top level)' : f.path}`,
      (d) => setAt(docOf(d, f.kind), `${f.path}/bogusField`, 1),
      rejected(documentOf(f.kind), f.path, /unknown field "bogusField"/),
    ),
  );
  // A field name that would forge a line of its own in a message.
  out.push(
    victimCase(
      'unknown field',
      'name with a newline and a bidi override',
      (d) => setAt(docOf(d, 'Pool'), '/spec/x\n\u202ey', 1),
      rejected(3, '/spec', /unknown field "x\\n\\u202ey"/),
    ),
  );
  // Case matters: Kubernetes field names are exact.
  out.push(
    victimCase(
      'unknown field',
      'Spec instead of spec',
      (d) => {
        const lb = docOf(d, 'LoadBalancer');
        lb['Spec'] = lb['spec'];
        delete lb['spec'];
      },
      rejected(1, '', /unknown field "Spec"/),
    ),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Lists: kinds, names, addresses.

function kindAndNameCases(): HostileCase[] {
  const out: HostileCase[] = [];
  const lb = (d: Doc[]) => docOf(d, 'LoadBalancer');
  for (const kind of ['Service', 'Secret', 'loadbalancer', 'Loadbalancer', 'LoadBalancers', 'lb', 'L7policy', 'HealthMonitors', '']) {
    out.push(victimCase('unknown kind', JSON.stringify(kind), (d) => (lb(d)['kind'] = kind), rejected(1, '/kind')));
  }
  out.push(victimCase('unknown kind', 'kind missing', (d) => delete lb(d)['kind'], rejected(1, '/kind', /is required/)));
  for (const apiVersion of ['v1', 'nslb.dev/v1beta1', 'nslb.dev/v1', 'NSLB.DEV/V1ALPHA1', 'nslb.dev', '']) {
    out.push(victimCase('unknown apiVersion', JSON.stringify(apiVersion), (d) => (lb(d)['apiVersion'] = apiVersion), rejected(1, '/apiVersion')));
  }
  out.push(victimCase('unknown apiVersion', 'apiVersion missing', (d) => delete lb(d)['apiVersion'], rejected(1, '/apiVersion', /is required/)));
  for (const [what, doc] of [
    ['a number', 42],
    ['a string', 'LoadBalancer'],
    ['a boolean', true],
    ['a list', [1, 2]],
    ['an empty object', {}],
  ] as const) {
    out.push(victimCase('not an object', what, (d) => (d[0] = doc as unknown as Doc), rejected(1, what === 'an empty object' ? '/kind' : '')));
  }
  for (const name of ['Victim', 'victim_1', '-victim', 'victim-', 'a'.repeat(64), 'victim.example', 'vіctim', '*', '..', 'victim/x']) {
    out.push(
      victimCase(
        'bad name',
        JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : name),
        (d) => (lb(d)['metadata'] = { name }),
        rejected(1, '/metadata/name'),
      ),
    );
  }
  out.push(victimCase('bad name', 'name missing', (d) => (lb(d)['metadata'] = { namespace: 'default' }), rejected(1, '/metadata/name', /is required/)));
  out.push(victimCase('bad name', 'metadata missing', (d) => delete lb(d)['metadata'], rejected(1, '/metadata', /is required/)));
  for (const namespace of ['Default', 'kube system', 'a'.repeat(64), '']) {
    out.push(
      victimCase(
        'bad namespace',
        JSON.stringify(namespace.slice(0, 12)),
        (d) => setAt(lb(d), '/metadata/namespace', namespace),
        rejected(1, '/metadata/namespace'),
      ),
    );
  }
  return out;
}

const BAD_IPS = [
  '10.0.0.256',
  '10.0.0',
  '1.2.3.4.5',
  '010.0.0.1',
  '1.2.3.-1',
  '::ffff:1.2.3.256',
  'fe80::1%eth0',
  '2001:db8:::1',
  '2001:db8::g',
  '[2001:db8::1]',
  '10.0.0.1/24',
  'localhost',
  '0x0a000001',
  ' 10.0.0.1',
  '10.0.0.1 ',
  '１０.0.0.1',
  '',
];
const BAD_CIDRS = [
  '10.0.0.0/33',
  '10.0.0.0/-1',
  '10.0.0.0/',
  '/24',
  '10.0.0.0/024',
  '2001:db8::/129',
  '10.0.0.0/8/8',
  '10.0.0.0 /8',
  '10.0.0/8',
  'any',
  '0.0.0.0/0 ',
  '10.0.0.0/8,10.1.0.0/16',
  '10.0.0.1',
];
const BAD_MACS = [
  'fa:16:3e:00:00',
  'fa-16-3e-00-00-50',
  'gg:16:3e:00:00:50',
  'fa:16:3e:00:00:50:01',
  'fa163e000050',
  'FA:16:3E:00:00:5',
  ' fa:16:3e:00:00:50',
  'fa:16:3e:00:00:50\n',
];

function addressCases(): HostileCase[] {
  const out: HostileCase[] = [];
  const at = (kind: Kind, path: string, values: readonly string[], group: string) => {
    for (const value of values) {
      out.push(victimCase(group, `${kind} ${path} ${JSON.stringify(value)}`, (d) => setAt(docOf(d, kind), path, value), rejected(documentOf(kind), path)));
    }
  };
  at('LoadBalancer', '/spec/vip/address', BAD_IPS, 'bad IP');
  at('Member', '/spec/address', BAD_IPS, 'bad IP');
  at('LoadBalancer', '/spec/vip/gateway', BAD_IPS.slice(0, 6), 'bad IP');
  at('Member', '/spec/monitorAddress', BAD_IPS.slice(6, 12), 'bad IP');
  at('Listener', '/spec/allowedCidrs/0', BAD_CIDRS, 'bad CIDR');
  at('LoadBalancer', '/spec/vip/mac', BAD_MACS, 'bad MAC');
  // Valid syntax, wrong meaning: caught by the cross-object rules of the desired build.
  for (const mac of ['01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', '33:33:00:00:00:01']) {
    out.push(victimCase('bad MAC', `multicast ${mac}`, (d) => setAt(docOf(d, 'LoadBalancer'), '/spec/vip/mac', mac), rejected(1, '/spec/vip/mac', /unicast/)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Valid objects that do not fit together: the rules of src/desired/build.ts, reported on the object at fault.

type Change = (d: Doc[]) => void;
const set =
  (kind: Kind, path: string, value: unknown): Change =>
  (d) =>
    setAt(docOf(d, kind), path, value);
const del =
  (kind: Kind, path: string): Change =>
  (d) =>
    deleteAt(docOf(d, kind), path);
const all =
  (...changes: Change[]): Change =>
  (d) => {
    for (const c of changes) c(d);
  };
/** Appends a document (it becomes document 8, 9, …). */
const add =
  (doc: Doc): Change =>
  (d) =>
    d.push(structuredClone(doc));
const copyOf =
  (kind: Kind, name: string, changes: Record<string, unknown> = {}): Change =>
  (d) => {
    const doc = structuredClone(docOf(d, kind));
    setAt(doc, '/metadata/name', name);
    for (const [path, value] of Object.entries(changes)) setAt(doc, path, value);
    d.push(doc);
  };
const tcpListener = (name: string, changes: Record<string, unknown> = {}): Doc => {
  const doc: Doc = { apiVersion: API_VERSION, kind: 'Listener', metadata: { name }, spec: { loadBalancer: 'victim', protocol: 'TCP', port: 9000 } };
  for (const [path, value] of Object.entries(changes)) setAt(doc, path, value);
  return doc;
};

const kernelListener = (name: string, protocol: string, changes: Record<string, unknown> = {}): Doc =>
  tcpListener(name, { '/spec/protocol': protocol, ...changes });
const udpPool = (name: string, changes: Record<string, unknown> = {}): Doc => {
  const doc: Doc = { apiVersion: API_VERSION, kind: 'Pool', metadata: { name }, spec: { loadBalancer: 'victim', protocol: 'UDP', lbAlgorithm: 'ROUND_ROBIN' } };
  for (const [path, value] of Object.entries(changes)) setAt(doc, path, value);
  return doc;
};

const CROSS_OBJECT: readonly [string, Change, number, string, RegExp?][] = [
  // Issue 21: kernel-forwarded protocols, PROMETHEUS listeners, member networks.
  ['SOURCE_IP_PORT on an HTTP pool', set('Pool', '/spec/lbAlgorithm', 'SOURCE_IP_PORT'), 3, '/spec/lbAlgorithm', /UDP and SCTP pools/],
  ['UDP-CONNECT monitor on an HTTP pool', set('HealthMonitor', '/spec/type', 'UDP-CONNECT'), 5, '/spec/type', /UDP pools/],
  [
    'LEAST_CONNECTIONS on a UDP pool',
    add(udpPool('victim-udp', { '/spec/lbAlgorithm': 'LEAST_CONNECTIONS' })),
    8,
    '/spec/lbAlgorithm',
    /not available for UDP/,
  ],
  [
    'APP_COOKIE persistence on a UDP pool',
    add(udpPool('victim-udp', { '/spec/sessionPersistence': { type: 'APP_COOKIE', cookieName: 'S' } })),
    8,
    '/spec/sessionPersistence/type',
  ],
  ['connectionLimit on a UDP listener', add(kernelListener('victim-udp', 'UDP', { '/spec/connectionLimit': 10 })), 8, '/spec/connectionLimit', /not enforced/],
  [
    'a UDP listener idle timeout under a second',
    add(kernelListener('victim-udp', 'UDP', { '/spec/timeouts': { clientData: 500 } })),
    8,
    '/spec/timeouts/clientData',
  ],
  ['a UDP listener on the HTTP pool', add(kernelListener('victim-udp', 'UDP', { '/spec/defaultPool': 'victim-app' })), 8, '/spec/defaultPool'],
  [
    'a PROMETHEUS listener with a pool',
    add(kernelListener('victim-prom', 'PROMETHEUS', { '/spec/defaultPool': 'victim-app' })),
    8,
    '/spec/defaultPool',
    /no pool/,
  ],
  [
    'a PROMETHEUS listener with insertHeaders',
    add(kernelListener('victim-prom', 'PROMETHEUS', { '/spec/insertHeaders/X-Forwarded-For': true })),
    8,
    '/spec/insertHeaders',
  ],
  ['member on a network its load balancer lacks', set('Member', '/spec/network', 'nowhere'), 4, '/spec/network', /no member network "nowhere"/],
  ['member outside the network it names', set('Member', '/spec/address', '192.0.2.77'), 4, '/spec/address', /neither inside member network/],
  [
    'member network route via a gateway off the network',
    set('LoadBalancer', '/spec/memberNetworks/0/routes/0/gateway', '10.9.9.9'),
    1,
    '/spec/memberNetworks/0/routes/0/gateway',
  ],
  [
    'member network route of the other family',
    set('LoadBalancer', '/spec/memberNetworks/0/routes/0/destination', '2001:db8::/64'),
    1,
    '/spec/memberNetworks/0/routes/0/destination',
  ],
  ['member network prefix length 33 on IPv4', set('LoadBalancer', '/spec/memberNetworks/0/prefixLength', 33), 1, '/spec/memberNetworks/0/prefixLength'],
  [
    'two member networks of one name',
    set('LoadBalancer', '/spec/memberNetworks/1', { name: 'victim-back', address: '198.51.99.2' }),
    1,
    '/spec/memberNetworks/1/name',
    /already used/,
  ],
  ['gateway of the other family', set('LoadBalancer', '/spec/vip/gateway', '2001:db8::1'), 1, '/spec/vip/gateway'],
  ['gateway outside the VIP prefix', set('LoadBalancer', '/spec/vip/gateway', '192.0.3.1'), 1, '/spec/vip/gateway'],
  ['prefix length 33 on IPv4', set('LoadBalancer', '/spec/vip/prefixLength', 33), 1, '/spec/vip/prefixLength'],
  [
    'the VIP of good on the same segment',
    all(set('LoadBalancer', '/spec/vip/address', '192.0.2.10'), del('LoadBalancer', '/spec/vip/bridge'), del('LoadBalancer', '/spec/vip/vlan')),
    1,
    '/spec/vip/address',
    /default\/good/,
  ],
  ['monitor timeout longer than its delay', all(set('HealthMonitor', '/spec/timeout', 10), set('HealthMonitor', '/spec/delay', 5)), 5, '/spec/timeout'],
  ['descending expected-codes range', set('HealthMonitor', '/spec/expectedCodes', '204-200'), 5, '/spec/expectedCodes'],
  ['two monitors on one pool', copyOf('HealthMonitor', 'victim-check-2'), 8, '/spec/pool'],
  ['one member twice', copyOf('Member', 'victim-app-2'), 8, '/spec/address'],
  [
    'one member twice, spelled differently (IPv6)',
    all(set('Member', '/spec/address', '2001:db8::50'), copyOf('Member', 'victim-app-2', { '/spec/address': '2001:0db8:0:0::50' })),
    8,
    '/spec/address',
  ],
  ['two listeners on one port', copyOf('Listener', 'victim-https-2'), 8, '/spec/port'],
  ['TERMINATED_HTTPS listener on a TCP pool', set('Pool', '/spec/protocol', 'TCP'), 2, '/spec/defaultPool'],
  ['HTTPS listener on an HTTP pool', all(set('Listener', '/spec/protocol', 'HTTPS'), del('Listener', '/spec/tls')), 2, '/spec/defaultPool'],
  ['insertHeaders on a TCP listener', add(tcpListener('victim-tcp', { '/spec/insertHeaders/X-Forwarded-For': true })), 8, '/spec/insertHeaders'],
  ['tls on an HTTP listener', set('Listener', '/spec/protocol', 'HTTP'), 2, '/spec/tls'],
  ['TERMINATED_HTTPS without tls', del('Listener', '/spec/tls'), 2, '/spec/tls/certificateFile'],
  ['APP_COOKIE without cookieName', del('Pool', '/spec/sessionPersistence/cookieName'), 3, '/spec/sessionPersistence/cookieName'],
  ['cookieName with HTTP_COOKIE', set('Pool', '/spec/sessionPersistence/type', 'HTTP_COOKIE'), 3, '/spec/sessionPersistence/cookieName'],
  [
    'cookie persistence on a pool a TCP listener uses',
    add(tcpListener('victim-tcp', { '/spec/defaultPool': 'victim-app' })),
    3,
    '/spec/sessionPersistence/type',
  ],
  ['L7 policy on a TCP listener', all(add(tcpListener('victim-tcp')), set('L7Policy', '/spec/listener', 'victim-tcp')), 6, '/spec/listener'],
  ['REDIRECT_TO_URL without redirectUrl', del('L7Policy', '/spec/redirectUrl'), 6, '/spec/redirectUrl'],
  ['two redirect targets', set('L7Policy', '/spec/redirectPrefix', 'https://example.com'), 6, '/spec/redirectPrefix'],
  ['redirectHttpCode on REJECT', all(set('L7Policy', '/spec/action', 'REJECT'), del('L7Policy', '/spec/redirectUrl')), 6, '/spec/redirectHttpCode'],
  ['HEADER rule without key', del('L7Rule', '/spec/key'), 7, '/spec/key'],
  ['PATH rule with a key', set('L7Rule', '/spec/type', 'PATH'), 7, '/spec/key'],
  // Printable, so the schema lets them through; PCRE2 would not compile them (src/desired/regex.ts).
  ['REGEX that never closes a group', set('L7Rule', '/spec/value', '^(v1|v2$'), 7, '/spec/value', /never closed/],
  ['REGEX with a backwards class range', set('L7Rule', '/spec/value', '^v[9-0]$'), 7, '/spec/value', /runs backwards/],
  ['REGEX with two quantifiers in a row', set('L7Rule', '/spec/value', '^v1**'), 7, '/spec/value', /two quantifiers/],
  ['REGEX starting with a quantifier', set('L7Rule', '/spec/value', '*.php'), 7, '/spec/value', /repeat/],
  // PCRE2 reads "[=…=]" right after a class opens as a POSIX class outside a class (property test seed 544139465).
  ['REGEX with a POSIX class outside a class', set('L7Rule', '/spec/value', '[=({=]]--'), 7, '/spec/value', /POSIX class outside a class/],
  [
    'FILE_TYPE rule with STARTS_WITH',
    all(set('L7Rule', '/spec/type', 'FILE_TYPE'), set('L7Rule', '/spec/compareType', 'STARTS_WITH'), del('L7Rule', '/spec/key')),
    7,
    '/spec/compareType',
  ],
  // TLS settings the schema lets through but that cannot work: an ERROR, not a silent no-op.
  ['listener tls.ciphers OpenSSL does not know', set('Listener', '/spec/tls/ciphers', 'NO-SUCH-CIPHER'), 2, '/spec/tls/ciphers', /names no TLS 1.2 cipher/],
  ['listener tls.versions with a gap', set('Listener', '/spec/tls/versions', ['TLSv1.1', 'TLSv1.3']), 2, '/spec/tls/versions', /contiguous range/],
  ['listener tls.clientCaFile holding a key', set('Listener', '/spec/tls/clientCaFile', 'certs/victim.key'), 2, '/spec/tls/clientCaFile'],
  ['listener tls.clientAuthentication MANDATORY without a CA', set('Listener', '/spec/tls/clientAuthentication', 'MANDATORY'), 2, '/spec/tls/clientCaFile'],
  ['listener tls.secretName in file mode', set('Listener', '/spec/tls/secretName', 'victim-tls'), 2, '/spec/tls/secretName'],
  ['listener tls.sniSecretNames in file mode', set('Listener', '/spec/tls/sniSecretNames', ['victim-sni']), 2, '/spec/tls/sniSecretNames'],
  ['pool tls.caFile without tls.enabled', set('Pool', '/spec/tls/caFile', 'certs/victim.crt'), 3, '/spec/tls/caFile'],
  [
    'pool tls.certificateFile without its key',
    all(set('Pool', '/spec/tls/enabled', true), set('Pool', '/spec/tls/certificateFile', 'certs/victim.crt')),
    3,
    '/spec/tls/keyFile',
  ],
  [
    'pool tls.keyFile of another certificate',
    all(
      set('Pool', '/spec/tls/enabled', true),
      set('Pool', '/spec/tls/certificateFile', 'certs/victim.crt'),
      set('Pool', '/spec/tls/keyFile', 'certs/sni.key'),
    ),
    3,
    '/spec/tls/keyFile',
    /does not belong/,
  ],
];

const REFERENCES: readonly [string, Change, number, string][] = [
  ['listener loadBalancer missing', set('Listener', '/spec/loadBalancer', 'nope'), 2, '/spec/loadBalancer'],
  ['listener loadBalancer names a Pool', set('Listener', '/spec/loadBalancer', 'victim-app'), 2, '/spec/loadBalancer'],
  ['listener defaultPool missing', set('Listener', '/spec/defaultPool', 'nope'), 2, '/spec/defaultPool'],
  ['listener defaultPool names a Member', set('Listener', '/spec/defaultPool', 'victim-app-1'), 2, '/spec/defaultPool'],
  ['listener defaultPool names a Listener', set('Listener', '/spec/defaultPool', 'victim-https'), 2, '/spec/defaultPool'],
  ['listener defaultPool names the LoadBalancer', set('Listener', '/spec/defaultPool', 'victim'), 2, '/spec/defaultPool'],
  ['listener defaultPool names the pool of good', set('Listener', '/spec/defaultPool', 'good-app'), 2, '/spec/defaultPool'],
  ['TCP listener on the HTTP_COOKIE pool of good', add(tcpListener('victim-tcp', { '/spec/defaultPool': 'good-app' })), 8, '/spec/defaultPool'],
  ['pool loadBalancer missing', set('Pool', '/spec/loadBalancer', 'nope'), 3, '/spec/loadBalancer'],
  ['pool loadBalancer names a Listener', set('Pool', '/spec/loadBalancer', 'victim-https'), 3, '/spec/loadBalancer'],
  ['member pool missing', set('Member', '/spec/pool', 'nope'), 4, '/spec/pool'],
  ['member pool names a Member', set('Member', '/spec/pool', 'victim-app-1'), 4, '/spec/pool'],
  ['member pool names the LoadBalancer', set('Member', '/spec/pool', 'victim'), 4, '/spec/pool'],
  ['member pool in another namespace', set('Member', '/metadata/namespace', 'other'), 4, '/spec/pool'],
  ['member of a pool whose load balancer is missing', all(set('Pool', '/spec/loadBalancer', 'nope'), del('Listener', '/spec/defaultPool')), 4, '/spec/pool'],
  ['monitor pool missing', set('HealthMonitor', '/spec/pool', 'nope'), 5, '/spec/pool'],
  ['monitor pool names an L7Rule', set('HealthMonitor', '/spec/pool', 'victim-rule'), 5, '/spec/pool'],
  ['policy listener missing', set('L7Policy', '/spec/listener', 'nope'), 6, '/spec/listener'],
  ['policy listener names a Pool', set('L7Policy', '/spec/listener', 'victim-app'), 6, '/spec/listener'],
  [
    'policy redirectPool names a Member',
    all(
      set('L7Policy', '/spec/action', 'REDIRECT_TO_POOL'),
      del('L7Policy', '/spec/redirectUrl'),
      del('L7Policy', '/spec/redirectHttpCode'),
      set('L7Policy', '/spec/redirectPool', 'victim-app-1'),
    ),
    6,
    '/spec/redirectPool',
  ],
  [
    'policy redirectPool names the pool of good',
    all(
      set('L7Policy', '/spec/action', 'REDIRECT_TO_POOL'),
      del('L7Policy', '/spec/redirectUrl'),
      del('L7Policy', '/spec/redirectHttpCode'),
      set('L7Policy', '/spec/redirectPool', 'good-app'),
    ),
    6,
    '/spec/redirectPool',
  ],
  ['rule l7Policy missing', set('L7Rule', '/spec/l7Policy', 'nope'), 7, '/spec/l7Policy'],
  ['rule l7Policy names an L7Rule', set('L7Rule', '/spec/l7Policy', 'victim-rule'), 7, '/spec/l7Policy'],
  ['rule l7Policy names a Listener', set('L7Rule', '/spec/l7Policy', 'victim-https'), 7, '/spec/l7Policy'],
  ['rule of a policy whose listener is missing', set('L7Policy', '/spec/listener', 'nope'), 7, '/spec/l7Policy'],
];

const TLS_MATERIAL: readonly [string, Change, string, RegExp?][] = [
  ['certificate file missing', set('Listener', '/spec/tls/certificateFile', 'certs/missing.crt'), '/spec/tls/certificateFile', /not found/],
  ['certificate file holds no PEM', set('Listener', '/spec/tls/certificateFile', 'certs/garbage.crt'), '/spec/tls/certificateFile', /no PEM certificate/],
  ['key file holds a certificate', set('Listener', '/spec/tls/keyFile', 'certs/victim.crt'), '/spec/tls/keyFile', /no PEM private key/],
  ['encrypted key', set('Listener', '/spec/tls/keyFile', 'certs/encrypted.key'), '/spec/tls/keyFile', /encrypted/],
  [
    'certificate file also holds a key',
    set('Listener', '/spec/tls/certificateFile', 'certs/both.pem'),
    '/spec/tls/certificateFile',
    /also holds a private key/,
  ],
  ['certificate file is a directory', set('Listener', '/spec/tls/certificateFile', 'certs'), '/spec/tls/certificateFile'],
  ['certificate file is a FIFO', set('Listener', '/spec/tls/certificateFile', FIFO_MATERIAL), '/spec/tls/certificateFile'],
  ['certificate file is /dev/zero', set('Listener', '/spec/tls/certificateFile', '/dev/zero'), '/spec/tls/certificateFile'],
  ['key file is /dev/urandom', set('Listener', '/spec/tls/keyFile', '/dev/urandom'), '/spec/tls/keyFile'],
  ['certificate file is larger than 1 MiB', set('Listener', '/spec/tls/certificateFile', 'certs/huge.crt'), '/spec/tls/certificateFile'],
  ['certificate file is /etc/shadow', set('Listener', '/spec/tls/certificateFile', '/etc/shadow'), '/spec/tls/certificateFile'],
  ['certificate path with ..', set('Listener', '/spec/tls/certificateFile', 'certs/../../etc/shadow'), '/spec/tls/certificateFile', /without "\.\." segments/],
  ['SNI key file missing', set('Listener', '/spec/tls/sniCertificates/0/keyFile', 'certs/missing.key'), '/spec/tls/sniCertificates/0/keyFile', /not found/],
  ['SNI certificate without key', del('Listener', '/spec/tls/sniCertificates/0/keyFile'), '/spec/tls/sniCertificates/0/keyFile', /required/],
];

/** The objects of good.yaml, each redefined by a later file. */
const GOOD_OBJECTS: readonly [Kind, string, Record<string, unknown>][] = [
  ['LoadBalancer', 'good', { vip: { address: '192.0.2.99' } }],
  ['Listener', 'good-http', { loadBalancer: 'good', protocol: 'TCP', port: 80 }],
  ['Pool', 'good-app', { loadBalancer: 'good', protocol: 'TCP', lbAlgorithm: 'SOURCE_IP' }],
  ['Member', 'good-app-1', { pool: 'good-app', address: '203.0.113.66', port: 22 }],
  ['HealthMonitor', 'good-check', { pool: 'good-app', type: 'TCP', delay: 1, timeout: 1, maxRetries: 1 }],
  ['L7Policy', 'good-deny', { listener: 'good-http', action: 'REDIRECT_TO_URL', redirectUrl: 'https://evil.example.com' }],
  ['L7Rule', 'good-deny-admin', { l7Policy: 'good-deny', type: 'PATH', compareType: 'REGEX', value: '.*' }],
];

function objectRuleCases(): HostileCase[] {
  const out: HostileCase[] = [];
  for (const [id, change, document, path, message] of CROSS_OBJECT) out.push(victimCase('cross-object rule', id, change, rejected(document, path, message)));
  for (const [id, change, document, path] of REFERENCES) out.push(victimCase('reference', id, change, rejected(document, path)));
  for (const [id, change, path, message] of TLS_MATERIAL) out.push(victimCase('TLS material', id, change, rejected(2, path, message)));
  for (const kind of KINDS) {
    const { name } = docOf(victim(), kind)['metadata'] as { name: string };
    out.push(
      victimCase(
        'duplicate',
        `${kind} twice in one file`,
        copyOf(kind, name),
        rejected(8, '/metadata/name', /already defined in hostile\/hostile\.yaml document \d/),
      ),
    );
  }
  for (const [kind, name, spec] of GOOD_OBJECTS) {
    const doc = { apiVersion: API_VERSION, kind, metadata: { name }, spec };
    out.push({
      id: `duplicate: ${kind} ${name} of good.yaml again`,
      group: 'duplicate',
      file: fileFor(false),
      make: { content: yamlOf([victim()[0], doc]) },
      expect: rejected(2, '/metadata/name', /already defined in good\.yaml/),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Huge, deep and many: the parser's limits.

function sizeCases(): HostileCase[] {
  const lbYaml = yamlOf([victim()[0]]);
  const limit = PARSE_LIMITS.maxFileBytes;
  const filler = (bytes: number) => `# ${'x'.repeat(77)}\n`.repeat(Math.ceil(bytes / 80));
  const laughs = (levels: number) => {
    const lines = ['l0: &l0 "lol"'];
    for (let i = 1; i <= levels; i++)
      lines.push(
        `l${i}: &l${i} [${Array(10)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    return lines.join('\n');
  };
  const raw = (id: string, content: string | Uint8Array, expect: Rejected, file = fileFor(false)): HostileCase => ({
    id: `huge: ${id}`,
    group: 'huge',
    file,
    make: { content },
    expect,
  });
  const keys = (n: number) => Array.from({ length: n }, (_, i) => `  k${i}: 1`).join('\n');
  return [
    raw('one byte over 4 MiB', (lbYaml + filler(limit)).slice(0, limit + 1), rejected(0, '', /too large/)),
    raw('20 MiB of comments', filler(20 * 1024 * 1024), rejected(0, '', /too large/)),
    raw(
      'a 5 MiB description',
      yamlOf([{ ...victim()[0]!, spec: { vip: { address: '192.0.2.50' }, description: 'x'.repeat(5 * 1024 * 1024) } }]),
      rejected(0, '', /too large/),
    ),
    raw(
      'a 3.9 MiB description',
      yamlOf([{ ...victim()[0]!, spec: { vip: { address: '192.0.2.50' }, description: 'x'.repeat(limit - 200_000) } }]),
      rejected(1, '/spec/description', /at most 255/),
    ),
    raw('1001 documents', 'kind: Nope\n---\n'.repeat(1001), rejected(0, '', /too many documents/)),
    raw('200 000 empty documents', '---\n'.repeat(200_000), rejected(0, '', /too many documents/)),
    raw('999 broken documents', Array(999).fill('kind: Nope\n').join('---\n'), rejected(1, '/kind', /unknown kind "Nope"/)),
    raw('100 000 nested flow sequences', `${'['.repeat(100_000)}${']'.repeat(100_000)}\n`, rejected(1, '', /nesting|nested|stack/i)),
    // Deeper than PARSE_LIMITS.maxDepth (64), not as deep as js-yaml's own limit (100).
    raw(
      '80 nested block mappings under spec',
      `${lbYaml.replace(/spec:\n[\s\S]*$/, 'spec:\n')}${Array.from({ length: 80 }, (_, i) => `${'  '.repeat(i + 1)}a:`).join('\n')} 1\n`,
      rejected(1, '', /nested more than 64/),
    ),
    raw(
      '200 nested block mappings under spec',
      `${lbYaml.replace(/spec:\n[\s\S]*$/, 'spec:\n')}${Array.from({ length: 200 }, (_, i) => `${'  '.repeat(i + 1)}a:`).join('\n')} 1\n`,
      rejected(1, '', /nesting exceeded/),
    ),
    raw('1 000 000 nested JSON arrays', `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`, rejected(1, '', /nested more than 64/), `${SUBDIR}/hostile.json`),
    raw(
      '300 000 unknown keys in spec',
      `${lbYaml.replace(/spec:\n[\s\S]*$/, 'spec:\n')}  vip: { address: 192.0.2.50 }\n${keys(300_000)}\n`,
      rejected(1, '/spec', /unknown field "k0"/),
    ),
    raw('100 000 anchors', `${lbYaml}${Array.from({ length: 100_000 }, (_, i) => `x${i}: &a${i} ${i}`).join('\n')}\n`, rejected(1, '', /unknown field "x0"/)),
    raw('billion laughs, 9 levels', `${laughs(9)}\n`, rejected(1, '', /alias bomb/)),
    raw('billion laughs, 20 levels', `${laughs(20)}\n`, rejected(1, '', /alias bomb/)),
    raw(
      'billion laughs in the description of document 2',
      `${lbYaml}---\n${yamlOf([victim()[2]]).replace('description: app', `description:\n${laughs(9).replace(/^/gm, '    ')}`)}`,
      rejected(2, '', /alias bomb/),
    ),
    raw(
      'a 1 MiB string aliased 100 times',
      `${lbYaml}  description: &big "${'x'.repeat(1024 * 1024)}"\nstatus: [${Array(100).fill('*big').join(', ')}]\n`.replace('  description: victim\n', ''),
      rejected(1, '', /alias bomb/),
    ),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Files that are not plain files.

function fileTypeCases(): HostileCase[] {
  const c = (id: string, make: FileMaker, message: RegExp, file = fileFor(false)): HostileCase => ({
    id: `file type: ${id}`,
    group: 'file type',
    file,
    make,
    expect: rejected(0, '', message),
  });
  return [
    c('a FIFO named hostile.yaml', { fifo: true }, /not a regular file \(a FIFO\)/),
    c('a symlink to a FIFO in the watched directory', { symlink: `../${FIFO_MATERIAL}` }, /not a regular file \(a FIFO\)/),
    c('a symlink to a directory', { symlink: '../certs' }, /not a regular file \(a directory\)/),
    c('a symlink to /dev/zero', { symlink: '/dev/zero' }, /outside the watched directory/),
    c('a symlink to /etc/shadow', { symlink: '/etc/shadow' }, /outside the watched directory/),
    c('a symlink out of the checkout by ..', { symlink: '../../../../../../etc/passwd' }, /outside the watched directory/),
    c('a dangling symlink', { symlink: 'nowhere.yaml' }, /cannot read/),
    c('a symlink to itself', { symlink: 'hostile.yaml' }, /cannot read/),
  ];
}

function oddNameCases(): HostileCase[] {
  // A file name with a newline and a bidi override: the issue names it exactly, describeIssue on one line.
  const file = `${SUBDIR}/evil\u202e\nlmay.yaml`;
  return [
    { id: 'file name: newline and bidi override', group: 'file name', file, make: { content: 'kind: [\n' }, expect: rejected(1, '', /YAML syntax error/) },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// The literal files, and what each must report.

export const LITERAL: Readonly<Record<string, Rejected>> = {
  'unclosed-flow-mapping.yaml': rejected(2, '', /YAML syntax error at line 11/),
  'bad-indentation.yaml': rejected(1, '', /bad indentation/),
  'tab-indentation.yaml': rejected(1, '', /tab characters/),
  'duplicate-key.yaml': rejected(1, '', /duplicated mapping key/),
  'unclosed-quote.yaml': rejected(1, '', /double quoted scalar/),
  'undefined-alias.yaml': rejected(1, '', /unidentified alias "vip"/),
  'yaml-2-directive.yaml': rejected(1, '', /unacceptable YAML version/),
  'js-function-tag.yaml': rejected(1, '', /unknown tag/),
  'python-object-tag.yaml': rejected(1, '', /unknown tag/),
  'binary-tag.yaml': rejected(1, '', /unknown tag/),
  'merge-key.yaml': rejected(1, '/spec', /unknown field "<<"/),
  'broken-third-document.yaml': rejected(3, '', /YAML syntax error/),
  'scalar-document.yaml': rejected(1, '', /must be an object/),
  'list-document.yaml': rejected(1, '', /got an array/),
  'mapping-in-plain-scalar.yaml': rejected(1, '', /YAML syntax error/),
  'yes-is-a-string.yaml': rejected(1, '/spec/adminStateUp', /must be a boolean \(got "yes"\)/),
  'hex-port.yaml': rejected(2, '/spec/port', /got 65536/),
  'null-spec.yaml': rejected(1, '/spec', /must be an object \(got null\)/),
  'cr-line-endings.yaml': rejected(2, '', /YAML syntax error/),
  'crlf-line-endings.yaml': rejected(2, '', /YAML syntax error/),
  'crlf-bad-field-second-document.yaml': rejected(2, '/spec/address'),
  'complex-key.yaml': rejected(1, '/spec', /unknown field "a,b"/),
  'document-end-marker.yaml': rejected(2, '/kind', /unknown kind "Nope"/),
  'kubernetes-secret.yaml': rejected(1, '/kind', /unknown kind "Secret"/),
  'unrendered-helm-template.yaml': rejected(1, '/spec/vip/address'),
  'only-separators-and-garbage.yaml': rejected(3, '', /YAML syntax error/),
  'json-trailing-comma.json': rejected(0, '', /JSON syntax error/),
  'json-comments.json': rejected(0, '', /JSON syntax error/),
  'json-nan.json': rejected(0, '', /JSON syntax error/),
  'json-duplicate-key.json': rejected(1, '', /duplicate key "kind"/),
  'json-duplicate-key-in-second-document.json': rejected(2, '/spec', /duplicate key "port"/),
  'json-wrong-type-third-document.json': rejected(3, '/spec/port', /must be an integer \(got "80"\)/),
  'json-bom-and-bad-field.json': rejected(1, '/spec/vip/address'),
  'json-top-level-string.json': rejected(1, '', /must be an object/),
  'json-empty.json': rejected(0, '', /JSON syntax error/),
  'json-nested-array-document.json': rejected(1, '', /got an array/),
  'latin1-in-name.yaml': rejected(2, '', /not valid UTF-8: byte 0xE9 at line 8/),
  'latin1-in-comment.yaml': rejected(1, '', /not valid UTF-8: byte 0xE9 at line 1, column 6/),
  'windows-1252-quotes.yaml': rejected(1, '', /not valid UTF-8: byte 0x93/),
  'utf16le-bom.yaml': rejected(0, '', /UTF-16LE byte order mark/),
  'utf16be-bom.yaml': rejected(0, '', /UTF-16BE byte order mark/),
  'utf32le-bom.yaml': rejected(0, '', /UTF-32LE byte order mark/),
  'utf16le-no-bom.yaml': rejected(1, '', /null byte/),
  'overlong-encoding.yaml': rejected(1, '', /not valid UTF-8: byte 0xC0/),
  'utf8-encoded-surrogate.yaml': rejected(1, '', /not valid UTF-8: byte 0xED/),
  'truncated-sequence-at-end.yaml': rejected(1, '', /not valid UTF-8: byte 0xE2/),
  'lone-continuation-byte.yaml': rejected(1, '', /not valid UTF-8: byte 0x80/),
  'ff-byte.yaml': rejected(2, '', /not valid UTF-8: byte 0xFF at line 6/),
  'bom-then-bad-field.yaml': rejected(1, '/spec/vip/address'),
  'bom-before-second-document.yaml': rejected(2, '', /unknown field "\\ufeffapiVersion"/),
  'two-boms.yaml': rejected(1, '', /unknown field "\\ufeffapiVersion"/),
  'zero-width-space-in-name.yaml': rejected(1, '/metadata/name', /\\u200b/),
  'bidi-override-in-name.yaml': rejected(1, '/metadata/name', /\\u202e/),
  'bidi-override-in-description.yaml': rejected(1, '/spec/description', /\\u202e/),
  'c1-control-in-description.yaml': rejected(1, '/spec/description', /\\u009b/),
  'line-separator-in-description.yaml': rejected(1, '/spec/description', /\\u2028/),
  'homoglyph-name.yaml': rejected(1, '/metadata/name'),
  'fullwidth-digits-address.yaml': rejected(1, '/spec/vip/address'),
  'raw-nul-byte.yaml': rejected(1, '', /null byte/),
  'nul-escape-in-name.yaml': rejected(1, '/metadata/name', /\\u0000/),
  'billion-laughs.yaml': rejected(1, '', /alias bomb/),
  'billion-laughs-in-third-document.yaml': rejected(3, '', /alias bomb/),
  'recursive-alias.yaml': rejected(1, '', /nested more than 64/),
  'alias-bomb-in-spec.yaml': rejected(1, '', /alias bomb/),
  'duplicate-in-same-file.yaml': rejected(3, '/metadata/name', /already defined in hostile\/duplicate-in-same-file\.yaml document 1/),
  'duplicate-of-good-loadbalancer.yaml': rejected(1, '/metadata/name', /already defined in good\.yaml document 1/),
  'duplicate-of-good-member.yaml': rejected(1, '/metadata/name', /already defined in good\.yaml/),
  'duplicate-of-good-health-monitor.yaml': rejected(1, '/metadata/name', /already defined in good\.yaml/),
  'listener-default-pool-is-a-member.yaml': rejected(2, '/spec/defaultPool'),
  'member-pool-is-a-listener.yaml': rejected(4, '/spec/pool'),
  'health-monitor-pool-is-a-load-balancer.yaml': rejected(3, '/spec/pool'),
  'l7-policy-listener-is-a-pool.yaml': rejected(4, '/spec/listener'),
  'l7-rule-policy-is-a-rule.yaml': rejected(5, '/spec/l7Policy'),
  'pool-load-balancer-is-a-listener.yaml': rejected(3, '/spec/loadBalancer'),
  'tcp-listener-on-good-cookie-pool.yaml': rejected(2, '/spec/defaultPool', /belongs to load balancer "good"/),
  'redirect-to-pool-of-good.yaml': rejected(4, '/spec/redirectPool', /belongs to load balancer "good"/),
  'vip-of-good.yaml': rejected(1, '/spec/vip/address', /already used by load balancer default\/good/),
  'certificate-is-etc-passwd.yaml': rejected(2, '/spec/tls/certificateFile'),
  'certificate-is-dev-zero.yaml': rejected(2, '/spec/tls/certificateFile'),
  'certificate-path-traversal.yaml': rejected(2, '/spec/tls/certificateFile', /".." segments/),
};

export function literalFiles(): string[] {
  return readdirSync(LITERAL_DIR).sort();
}

function literalCases(): HostileCase[] {
  return literalFiles().map((name) => {
    const expect = LITERAL[name];
    if (expect === undefined) throw new Error(`test/hostile/files/${name} has no expectation in LITERAL`);
    return { id: `literal: ${name}`, group: 'literal', file: `${SUBDIR}/${name}`, make: { literal: join(LITERAL_DIR, name) }, expect };
  });
}

/** Every case of the corpus. */
export function hostileCases(): HostileCase[] {
  return [
    ...literalCases(),
    ...stringFieldCases(),
    ...wrongTypeCases(),
    ...outOfRangeCases(),
    ...unknownFieldCases(),
    ...kindAndNameCases(),
    ...addressCases(),
    ...objectRuleCases(),
    ...sizeCases(),
    ...fileTypeCases(),
    ...oddNameCases(),
  ];
}
