// An in-process Kubernetes API server for tests: it speaks the HTTP API the way @kubernetes/client-node uses
// it (JSON only, no auth, plain http on 127.0.0.1), with the semantics a controller depends on:
//
// - one global resourceVersion counter (etcd revision), bumped on every write; list + watch from a
//   resourceVersion out of a bounded event history; "too old resource version" as a watch ERROR event with a
//   410 Expired Status (that is how the real apiserver reports it on an established watch); bookmarks on
//   request; timeoutSeconds; a server-side close of every watch (closeWatches) to exercise informer restarts;
// - the status subresource: main-resource writes keep the stored status, /status writes change only status;
//   metadata.generation starts at 1 and moves only when something outside metadata and status changes;
//   status is dropped on create;
// - optimistic concurrency: PUT needs metadata.resourceVersion (422 when missing, 409 Conflict when stale);
//   a patch that carries metadata.resourceVersion is a precondition too; writes that change nothing are no-ops
//   (no new resourceVersion, no watch event), as etcd3's GuaranteedUpdate does;
// - finalizers: DELETE of an object with finalizers sets deletionTimestamp (+ deletionGracePeriodSeconds 0)
//   and keeps it; the write that empties the finalizers deletes it (one DELETED event, as the generic
//   registry does); no new finalizers while deleting (422);
// - patches: application/merge-patch+json and application/json-patch+json everywhere;
//   application/strategic-merge-patch+json is refused for custom resources (415, as the real apiserver does)
//   and treated as a merge patch for built-in kinds; server-side apply (application/apply-patch+yaml) → 415;
// - with CRDs given (`crds` option): openAPIV3Schema pruning of unknown fields (or 422 with
//   ?fieldValidation=Strict), structural defaulting, and validation (422 Invalid, field-path causes);
// - errors as metav1.Status objects with the real reasons and codes.
//
// - TokenReview and SubjectAccessReview (create-only, answered from tokens and grants a test declares:
//   `reviews`, see fake-reviews.ts); Secrets with the apiserver's rules (immutable type, `immutable` data,
//   key names, 1 MiB, fieldSelector type).
// - cluster-scoped kinds (Nodes, and CRDs with scope Cluster such as AddressPools): no namespace in their
//   paths, keys or metadata; a namespaced path to one (or a namespace-less path to a namespaced object) is 404;
// - Services (status subresource, ClusterIP/NodePort allocation), EndpointSlices and Nodes with their
//   registries' defaulting and validation: see fake-apiserver-core.ts.
// - Events: one store served as core/v1 and as events.k8s.io/v1 (as the apiserver does: an Event written
//   through one API is read through the other, converted field by field: regarding ↔ involvedObject, note ↔
//   message, reportingController ↔ reportingComponent, deprecated* ↔ the legacy fields); each API's own
//   validation (events.k8s.io: eventTime required, legacy fields unset, series.count ≥ 2, immutable fields on
//   update); field selectors involvedObject.* / regarding.*, reason, type, reportingComponent /
//   reportingController (what `kubectl describe` sends); events.k8s.io can be switched off (`eventsV1`)
//   to stand for a server that has only core/v1;
// - latency and concurrency: an optional delay on every request (`requestDelayMs`, setRequestDelay), served
//   concurrently; every request's start and end are numbered in one sequence, so that tests can count how
//   many were in flight at once and how long the longest chain of one-after-another requests was, without
//   measuring time.
//
// - cost: stored objects are frozen and never changed in place (each write stores a new one), so that answers,
//   the event history and peek() share them instead of copying; each watch event is serialized once for all the
//   watchers of a resource and written to each watch once per turn of the event loop, together with the others
//   of that turn (bench/fake-apiserver-micro.ts measures it).
//
// Simplifications (documented, deliberate): namespaces need not exist; labelSelector supports equality and
// existence only, fieldSelector metadata.name / metadata.namespace and the labels a kind declares (Secret
// type, Service spec.type and spec.clusterIP, Node spec.unschedulable, the Event fields above); limit/continue
// are ignored (every list is complete); LIST ignores resourceVersion/resourceVersionMatch (always the latest
// state); Events never expire (no --event-ttl); no managedFields; no admission webhooks; no server-side rate
// limit (429) unless injected with failNext.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import yaml from 'js-yaml';
import { FakeReviews } from './fake-reviews.js';
import { coreKinds, validateLease } from './fake-apiserver-core.js';

export type JsonObject = Record<string, unknown>;

/** An API object as tests read it: any field, loosely typed. */
// biome-ignore lint/suspicious/noExplicitAny: tests read API objects loosely, as kubectl users do
export type Obj = Record<string, any>;

export const NSLB_GROUP = 'nslb.dev';
export const NSLB_VERSION = 'v1alpha1';
export const NSLB_API_VERSION = `${NSLB_GROUP}/${NSLB_VERSION}`;

/** The nslb kinds and their plurals (DESIGN §1). */
export const NSLB_RESOURCES: readonly { kind: string; plural: string }[] = [
  { kind: 'LoadBalancer', plural: 'loadbalancers' },
  { kind: 'Listener', plural: 'listeners' },
  { kind: 'Pool', plural: 'pools' },
  { kind: 'Member', plural: 'members' },
  { kind: 'HealthMonitor', plural: 'healthmonitors' },
  { kind: 'L7Policy', plural: 'l7policies' },
  { kind: 'L7Rule', plural: 'l7rules' },
];

/** Cluster-scoped nslb kinds (DESIGN §7). */
export const NSLB_CLUSTER_RESOURCES: readonly { kind: string; plural: string }[] = [{ kind: 'AddressPool', plural: 'addresspools' }];

// ---------------------------------------------------------------------------------------------------------
// Resource types

interface ResourceType {
  group: string; // '' for the core group
  version: string;
  kind: string;
  plural: string;
  singular: string;
  /** Custom resource semantics: generation, kind/apiVersion required, unconditional PUT refused, no SMP. */
  custom: boolean;
  statusSubresource: boolean;
  /** PUT of a missing object creates it (true for most built-in kinds, false for custom resources). */
  allowCreateOnUpdate: boolean;
  /** PUT without metadata.resourceVersion is accepted (built-in kinds); custom resources answer 422. */
  allowUnconditionalUpdate: boolean;
  /** openAPIV3Schema (custom resources declared through `crds`). */
  schema?: JsonObject;
  /** Built-in validation of the stored form (and of the stored object it replaces, on update): field errors. */
  validate?: (obj: JsonObject, old: JsonObject | undefined) => FieldError[];
  /** The store it shares with another version (events.k8s.io/v1 Events live in core/v1's). */
  storage?: string;
  /** This version's form → the stored one, and back (Events: events.k8s.io/v1 ↔ core/v1). */
  toStorage?: (obj: JsonObject) => JsonObject;
  fromStorage?: (obj: JsonObject) => JsonObject;
  /** Field selector labels besides metadata.name and metadata.namespace: label → value in the stored form. */
  fieldLabels?: Record<string, (stored: JsonObject) => unknown>;
  /** Discovery: short names and categories (kubectl resolves `lbm` with them). */
  shortNames?: string[];
  categories?: string[];
  /** Built-in normalisation on every write (e.g. Secret.stringData). */
  normalize?: (obj: JsonObject) => void;
  /** A create keeps the status sent (Nodes: the kubelet registers a node with its status). */
  keepStatusOnCreate?: boolean;
  /** False for cluster-scoped kinds (Nodes, AddressPools): no namespace in paths, keys or metadata. */
  namespaced: boolean;
  /** Registry strategy of a built-in kind on create and main-resource update: defaulting, allocation. */
  admit?: (obj: JsonObject, old: JsonObject | undefined, others: readonly JsonObject[]) => FieldError[];
}

interface FieldError {
  field: string;
  type: 'Required' | 'Invalid' | 'NotSupported' | 'Forbidden' | 'TooLong' | 'Duplicate';
  message: string;
}

function apiVersionOf(rt: ResourceType): string {
  return rt.group === '' ? rt.version : `${rt.group}/${rt.version}`;
}

function typeKey(group: string, version: string, plural: string): string {
  return `${group}/${version}/${plural}`;
}

/** `loadbalancers.nslb.dev`, `events` (core): how the apiserver names a resource in messages. */
function qualified(rt: ResourceType): string {
  return rt.group === '' ? rt.plural : `${rt.plural}.${rt.group}`;
}

const EVENT_STORE = typeKey('', 'v1', 'events');

function builtinTypes(eventsV1: boolean): ResourceType[] {
  const base = { custom: false, statusSubresource: false, allowCreateOnUpdate: true, allowUnconditionalUpdate: true, namespaced: true } as const;
  return [
    {
      ...base,
      group: '',
      version: 'v1',
      kind: 'Event',
      plural: 'events',
      singular: 'event',
      shortNames: ['ev'],
      normalize: decodeMicroTimes,
      validate: validateCoreEvent,
      fieldLabels: CORE_EVENT_FIELDS,
    },
    ...(eventsV1
      ? [
          {
            ...base,
            group: 'events.k8s.io',
            version: 'v1',
            kind: 'Event',
            plural: 'events',
            singular: 'event',
            shortNames: ['ev'],
            storage: EVENT_STORE,
            normalize: decodeMicroTimes,
            toStorage: eventToCore,
            fromStorage: eventFromCore,
            validate: validateEventsV1Event,
            fieldLabels: EVENTS_V1_FIELDS,
          },
        ]
      : []),
    { ...base, group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases', singular: 'lease', validate: validateLease, fieldLabels: {} },
    {
      ...base,
      group: '',
      version: 'v1',
      kind: 'Secret',
      plural: 'secrets',
      singular: 'secret',
      allowCreateOnUpdate: false,
      normalize: normalizeSecret,
      validate: validateSecret,
      // Secrets are also selectable by type, as on a real apiserver.
      fieldLabels: { type: (obj) => str(obj.type) },
    },
    // Services, EndpointSlices and Nodes (see fake-apiserver-core.ts). Services and Nodes, like Secrets, are
    // not created by a PUT (their registries refuse create-on-update).
    ...coreKinds().map((k) => ({ ...base, ...k, allowCreateOnUpdate: false })),
  ];
}

function nslbDefaultTypes(): ResourceType[] {
  return [...NSLB_RESOURCES, ...NSLB_CLUSTER_RESOURCES].map(({ kind, plural }) => ({
    group: NSLB_GROUP,
    version: NSLB_VERSION,
    kind,
    plural,
    singular: kind.toLowerCase(),
    custom: true,
    statusSubresource: true,
    allowCreateOnUpdate: false,
    allowUnconditionalUpdate: false,
    namespaced: !NSLB_CLUSTER_RESOURCES.some((r) => r.kind === kind),
  }));
}

function typesFromCrd(crd: unknown): ResourceType[] {
  if (!isObject(crd) || crd.kind !== 'CustomResourceDefinition' || !isObject(crd.spec)) {
    throw new Error('FakeApiServer: crds must be apiextensions.k8s.io/v1 CustomResourceDefinition objects');
  }
  const spec = crd.spec;
  const names = isObject(spec.names) ? spec.names : {};
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') throw new Error(`FakeApiServer: scope must be Namespaced or Cluster (${String(names.plural)})`);
  const group = String(spec.group);
  const kind = String(names.kind);
  const plural = String(names.plural);
  const singular = typeof names.singular === 'string' ? names.singular : kind.toLowerCase();
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
  const shortNames = strings(names.shortNames);
  const categories = strings(names.categories);
  const versions = Array.isArray(spec.versions) ? spec.versions : [];
  const out: ResourceType[] = [];
  for (const v of versions) {
    if (!isObject(v) || v.served === false) continue;
    const schemaHolder = isObject(v.schema) ? v.schema : {};
    const schema = isObject(schemaHolder.openAPIV3Schema) ? schemaHolder.openAPIV3Schema : undefined;
    const subresources = isObject(v.subresources) ? v.subresources : {};
    out.push({
      group,
      version: String(v.name),
      kind,
      plural,
      singular,
      custom: true,
      statusSubresource: subresources.status !== undefined,
      allowCreateOnUpdate: false,
      allowUnconditionalUpdate: false,
      namespaced: spec.scope === 'Namespaced',
      ...(schema === undefined ? {} : { schema }),
      ...(shortNames === undefined ? {} : { shortNames }),
      ...(categories === undefined ? {} : { categories }),
    });
  }
  return out;
}

/** Every CustomResourceDefinition in the YAML files of a directory (e.g. crds/), for the `crds` option. */
export function loadCrdFiles(dir: string): JsonObject[] {
  const out: JsonObject[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!/\.(ya?ml|json)$/.test(f)) continue;
    for (const doc of yaml.loadAll(readFileSync(join(dir, f), 'utf8'))) {
      if (isObject(doc) && doc.kind === 'CustomResourceDefinition') out.push(doc);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Errors

/** An API error: becomes a metav1.Status with this HTTP code. Test helpers throw it too. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: JsonObject | undefined;

  constructor(code: number, reason: string, message: string, details?: JsonObject) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  toStatus(): JsonObject {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details === undefined ? {} : { details: this.details }),
      code: this.code,
    };
  }
}

function notFound(rt: ResourceType, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualified(rt)} "${name}" not found`, { name, group: rt.group, kind: rt.plural });
}

function conflict(
  rt: ResourceType,
  name: string,
  why = 'the object has been modified; please apply your changes to the latest version and try again',
): ApiError {
  return new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(rt)} "${name}": ${why}`, {
    name,
    group: rt.group,
    kind: rt.plural,
  });
}

function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

function invalid(rt: ResourceType, name: string, errors: FieldError[]): ApiError {
  const render = (e: FieldError): string => `${e.field}: ${e.message}`;
  const rendered = errors.map(render);
  const message = `${rt.kind}${rt.group === '' ? '' : `.${rt.group}`} "${name}" is invalid: ${
    rendered.length === 1 ? rendered[0] : `[${rendered.join(', ')}]`
  }`;
  const reasons: Record<FieldError['type'], string> = {
    Required: 'FieldValueRequired',
    Invalid: 'FieldValueInvalid',
    NotSupported: 'FieldValueNotSupported',
    Forbidden: 'FieldValueForbidden',
    TooLong: 'FieldValueTooLong',
    Duplicate: 'FieldValueDuplicate',
  };
  return new ApiError(422, 'Invalid', message, {
    name,
    group: rt.group,
    kind: rt.kind,
    causes: errors.map((e) => ({ reason: reasons[e.type], message: render(e).slice(e.field.length + 2), field: e.field })),
  });
}

const fieldErr = (field: string, type: FieldError['type'], message: string): FieldError => ({ field, type, message });

// ---------------------------------------------------------------------------------------------------------
// Small JSON helpers

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function deepFreeze(v: unknown): void {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const x of Object.values(v)) deepFreeze(x);
}

function eventLine(type: WatchEventType, object: JsonObject): string {
  return `${JSON.stringify({ type, object })}\n`;
}

function meta(obj: JsonObject): JsonObject {
  if (!isObject(obj.metadata)) obj.metadata = {};
  return obj.metadata as JsonObject;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function finalizersOf(obj: JsonObject): string[] {
  const f = meta(obj).finalizers;
  return Array.isArray(f) ? f.filter((x): x is string => typeof x === 'string') : [];
}

function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

const OBJECT_META_FIELDS = new Set([
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

/** ObjectMeta decoding: unknown metadata fields disappear, empty optional ones are omitted. */
function normalizeMeta(obj: JsonObject): void {
  const m = meta(obj);
  for (const k of Object.keys(m)) {
    if (!OBJECT_META_FIELDS.has(k) || m[k] === null) delete m[k];
  }
  for (const k of ['finalizers', 'ownerReferences', 'managedFields'] as const) {
    if (Array.isArray(m[k]) && (m[k] as unknown[]).length === 0) delete m[k];
  }
  for (const k of ['labels', 'annotations'] as const) {
    if (isObject(m[k]) && Object.keys(m[k] as JsonObject).length === 0) delete m[k];
  }
}

// RFC 7386
function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

class PatchError extends Error {}

// RFC 6902
function applyJsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let root: unknown = clone(doc);
  const parse = (p: unknown): string[] => {
    if (typeof p !== 'string') throw new PatchError('missing path');
    if (p === '') return [];
    if (!p.startsWith('/')) throw new PatchError(`invalid path: ${p}`);
    return p
      .slice(1)
      .split('/')
      .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  };
  const container = (tokens: string[]): { parent: unknown; key: string } => {
    let cur: unknown = root;
    for (const t of tokens.slice(0, -1)) {
      if (Array.isArray(cur)) cur = cur[Number(t)];
      else if (isObject(cur)) cur = cur[t];
      else cur = undefined;
      if (cur === undefined) throw new PatchError(`doc is missing path: /${tokens.join('/')}`);
    }
    return { parent: cur, key: tokens[tokens.length - 1] ?? '' };
  };
  const get = (tokens: string[]): unknown => {
    if (tokens.length === 0) return root;
    const { parent, key } = container(tokens);
    const v = Array.isArray(parent) ? parent[Number(key)] : isObject(parent) ? parent[key] : undefined;
    if (v === undefined) throw new PatchError(`doc is missing path: /${tokens.join('/')}`);
    return v;
  };
  const index = (arr: unknown[], key: string, forAdd: boolean): number => {
    if (forAdd && key === '-') return arr.length;
    if (!/^(0|[1-9][0-9]*)$/.test(key)) throw new PatchError(`invalid array index: ${key}`);
    const i = Number(key);
    if (i > arr.length || (!forAdd && i === arr.length)) throw new PatchError(`array index out of bounds: ${key}`);
    return i;
  };
  const add = (tokens: string[], value: unknown): void => {
    if (tokens.length === 0) {
      root = value;
      return;
    }
    const { parent, key } = container(tokens);
    if (Array.isArray(parent)) parent.splice(index(parent, key, true), 0, value);
    else if (isObject(parent)) parent[key] = value;
    else throw new PatchError(`doc is missing path: /${tokens.join('/')}`);
  };
  const remove = (tokens: string[]): unknown => {
    const v = get(tokens);
    const { parent, key } = container(tokens);
    if (Array.isArray(parent)) parent.splice(index(parent, key, false), 1);
    else if (isObject(parent)) delete parent[key];
    return v;
  };
  for (const op of ops) {
    if (!isObject(op)) throw new PatchError('invalid operation');
    const path = parse(op.path);
    const needValue = (): unknown => {
      if (!('value' in op)) throw new PatchError(`missing value for ${String(op.op)}`);
      return clone(op.value);
    };
    switch (op.op) {
      case 'add':
        add(path, needValue());
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace': {
        const value = needValue();
        get(path);
        if (path.length === 0) root = value;
        else {
          remove(path);
          add(path, value);
        }
        break;
      }
      case 'move': {
        const v = remove(parse(op.from));
        add(path, v);
        break;
      }
      case 'copy':
        add(path, clone(get(parse(op.from))));
        break;
      case 'test': {
        const value = needValue();
        let actual: unknown;
        try {
          actual = get(path);
        } catch {
          actual = undefined;
        }
        if (!isDeepStrictEqual(actual, value)) throw new PatchError(`testing value /${path.join('/')} failed: test failed`);
        break;
      }
      default:
        throw new PatchError(`Unexpected kind: ${String(op.op)}`);
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------------------
// Selectors

type Requirement = { key: string; op: '=' | '!=' | 'exists' | '!exists'; value?: string };

function parseLabelSelector(s: string | undefined): Requirement[] {
  if (s === undefined || s.trim() === '') return [];
  return s.split(',').map((part) => {
    const p = part.trim();
    const equality = p.match(/^([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)$/);
    if (equality !== null) return { key: equality[1] ?? '', op: equality[2] === '!=' ? '!=' : '=', value: equality[3] ?? '' };
    const absent = p.match(/^!([A-Za-z0-9._/-]+)$/);
    if (absent !== null) return { key: absent[1] ?? '', op: '!exists' };
    const present = p.match(/^([A-Za-z0-9._/-]+)$/);
    if (present !== null) return { key: present[1] ?? '', op: 'exists' };
    throw badRequest(`unable to parse requirement: ${p} (the fake API server supports =, ==, != and existence only)`);
  });
}

function parseFieldSelector(s: string | undefined, rt: ResourceType): { field: string; op: '=' | '!='; value: string }[] {
  if (s === undefined || s.trim() === '') return [];
  return s.split(',').map((part) => {
    const m = part.trim().match(/^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/);
    const known = (f: string): boolean => f === 'metadata.name' || (f === 'metadata.namespace' && rt.namespaced) || rt.fieldLabels?.[f] !== undefined;
    if (!m || !known(m[1] ?? '')) throw badRequest(`field label not supported: ${m?.[1] ?? part.trim()}`);
    return { field: m[1] ?? '', op: m[2] === '!=' ? '!=' : '=', value: m[3] ?? '' };
  });
}

interface Filter {
  namespace: string | undefined;
  labels: Requirement[];
  fields: { field: string; op: '=' | '!='; value: string }[];
  /** The resource's own field labels, read from the stored form. */
  fieldLabels?: Record<string, (stored: JsonObject) => unknown>;
}

function matches(obj: JsonObject, f: Filter): boolean {
  const m = meta(obj);
  if (f.namespace !== undefined && m.namespace !== f.namespace) return false;
  const labels = isObject(m.labels) ? m.labels : {};
  for (const r of f.labels) {
    const v = str(labels[r.key]);
    if (r.op === 'exists' && v === undefined) return false;
    if (r.op === '!exists' && v !== undefined) return false;
    if (r.op === '=' && v !== r.value) return false;
    if (r.op === '!=' && v === r.value) return false;
  }
  for (const r of f.fields) {
    const get = f.fieldLabels?.[r.field];
    const raw = r.field === 'metadata.name' ? m.name : r.field === 'metadata.namespace' ? m.namespace : get?.(obj);
    // Field selectors compare strings; an absent field is "".
    const v = raw === undefined || raw === null ? '' : String(raw);
    if ((v === r.value) !== (r.op === '=')) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Schemas (custom resources declared through `crds`)

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function validCidr(s: string): boolean {
  const [addr, prefix, ...rest] = s.split('/');
  if (rest.length > 0 || addr === undefined || prefix === undefined || !/^\d{1,3}$/.test(prefix)) return false;
  const v = isIP(addr);
  return v !== 0 && Number(prefix) <= (v === 4 ? 32 : 128);
}

/** The formats kube-openapi validates; any other format is ignored, as the apiserver does. */
const FORMATS: Record<string, (s: string) => boolean> = {
  ipv4: (s) => isIPv4(s),
  ipv6: (s) => isIPv6(s),
  cidr: validCidr,
  mac: (s) =>
    /^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$/.test(s) ||
    /^([0-9A-Fa-f]{2}[:-]){7}[0-9A-Fa-f]{2}$/.test(s) ||
    /^([0-9A-Fa-f]{2}[:-]){19}[0-9A-Fa-f]{2}$/.test(s),
  'date-time': (s) => /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s)),
  date: (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s)),
  uuid: (s) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s),
  hostname: (s) => s.length <= 253 && DNS1123_SUBDOMAIN.test(s),
};

/** Drops fields the schema does not declare (structural pruning). Returns the dropped paths. */
function prune(value: unknown, schema: unknown, path: string, dropped: string[]): void {
  if (!isObject(schema)) return;
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) prune(v, schema.items, `${path}[${i}]`, dropped);
    return;
  }
  if (!isObject(value)) return;
  const props = isObject(schema.properties) ? schema.properties : undefined;
  const addl = schema.additionalProperties;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  for (const key of Object.keys(value)) {
    const child = path === '' ? key : `${path}.${key}`;
    if (props !== undefined && key in props) prune(value[key], props[key], child, dropped);
    else if (isObject(addl)) prune(value[key], addl, child, dropped);
    else if (!(preserve || addl === true)) {
      delete value[key];
      dropped.push(child);
    }
  }
}

/** Structural defaulting: `default` of every absent property whose parent object is present. */
function applyDefaults(value: unknown, schema: unknown): void {
  if (!isObject(schema)) return;
  if (Array.isArray(value)) {
    for (const v of value) applyDefaults(v, schema.items);
    return;
  }
  if (!isObject(value)) return;
  const props = isObject(schema.properties) ? schema.properties : {};
  for (const [key, sub] of Object.entries(props)) {
    if (!(key in value) && isObject(sub) && 'default' in sub) value[key] = clone(sub.default);
  }
  for (const [key, v] of Object.entries(value)) {
    if (key in props) applyDefaults(v, props[key]);
    else if (isObject(schema.additionalProperties)) applyDefaults(v, schema.additionalProperties);
  }
}

function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

function ajvToFieldErrors(errors: ErrorObject[] | null | undefined, root: unknown): FieldError[] {
  const out: FieldError[] = [];
  const valueAt = (instancePath: string): unknown => {
    let cur: unknown = root;
    for (const p of instancePath.split('/').slice(1)) {
      const k = p.replace(/~1/g, '/').replace(/~0/g, '~');
      cur = Array.isArray(cur) ? cur[Number(k)] : isObject(cur) ? cur[k] : undefined;
    }
    return cur;
  };
  for (const e of errors ?? []) {
    // anyOf/oneOf report their branches too; the summary line is enough.
    if (e.keyword === 'if') continue;
    const value = valueAt(e.instancePath);
    if (e.keyword === 'required') {
      out.push(fieldErr(fieldPath(e.instancePath, String((e.params as { missingProperty: string }).missingProperty)), 'Required', 'Required value'));
    } else if (e.keyword === 'enum') {
      const allowed = ((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map((v) => JSON.stringify(v)).join(', ');
      out.push(fieldErr(fieldPath(e.instancePath), 'NotSupported', `Unsupported value: ${JSON.stringify(value)}: supported values: ${allowed}`));
    } else {
      const f = fieldPath(e.instancePath);
      out.push(fieldErr(f, 'Invalid', `Invalid value: ${JSON.stringify(value)}: ${f === '' ? '' : `${f} in body `}${e.message ?? 'is invalid'}`));
    }
  }
  // ajv may report the same problem from several branches; keep one line each.
  return out.filter((e, i) => out.findIndex((o) => o.field === e.field && o.message === e.message) === i);
}

class SchemaValidator {
  readonly #ajv = new Ajv({ strict: false, allErrors: true, logger: false, formats: FORMATS, validateFormats: true });
  readonly #cache = new Map<ResourceType, { body: ValidateFunction; name: ValidateFunction | undefined }>();

  #compiled(rt: ResourceType): { body: ValidateFunction; name: ValidateFunction | undefined } {
    let c = this.#cache.get(rt);
    if (c === undefined) {
      const schema = clone(rt.schema ?? {});
      // Only metadata.name/generateName constraints of a CRD schema are honoured; ObjectMeta is not validated by it.
      const props = isObject(schema.properties) ? schema.properties : {};
      const metaSchema = props.metadata;
      delete props.metadata;
      if (Array.isArray(schema.required)) schema.required = schema.required.filter((r) => r !== 'metadata');
      const nameSchema = isObject(metaSchema) && isObject(metaSchema.properties) ? metaSchema.properties.name : undefined;
      c = {
        body: this.#ajv.compile(schema),
        name: isObject(nameSchema) ? this.#ajv.compile(nameSchema) : undefined,
      };
      this.#cache.set(rt, c);
    }
    return c;
  }

  validate(rt: ResourceType, obj: JsonObject): FieldError[] {
    if (rt.schema === undefined) return [];
    const c = this.#compiled(rt);
    const errors: FieldError[] = [];
    const name = meta(obj).name;
    if (c.name !== undefined && !c.name(name)) {
      errors.push(...ajvToFieldErrors(c.name.errors, name).map((e) => ({ ...e, field: e.field === '' ? 'metadata.name' : `metadata.name.${e.field}` })));
    }
    if (!c.body(obj)) errors.push(...ajvToFieldErrors(c.body.errors, obj));
    return errors;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Built-in kinds' validation

// Events are stored in core/v1's form; events.k8s.io/v1 renames some fields (k8s.io/kubernetes
// pkg/apis/events/v1 conversion).
const EVENTS_V1_RENAMES: readonly [string, string][] = [
  ['regarding', 'involvedObject'],
  ['note', 'message'],
  ['reportingController', 'reportingComponent'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
];

function eventToCore(obj: JsonObject): JsonObject {
  const out: JsonObject = { ...obj, apiVersion: 'v1' };
  for (const [v1, core] of EVENTS_V1_RENAMES) {
    delete out[v1];
    if (obj[v1] !== undefined) out[core] = obj[v1];
  }
  return out;
}

function eventFromCore(obj: JsonObject): JsonObject {
  const out: JsonObject = { ...obj, apiVersion: 'events.k8s.io/v1' };
  for (const [v1, core] of EVENTS_V1_RENAMES) {
    delete out[core];
    if (obj[core] !== undefined) out[v1] = obj[core];
  }
  return out;
}

const involved =
  (field: string) =>
  (e: JsonObject): unknown =>
    isObject(e.involvedObject) ? e.involvedObject[field] : undefined;
const sourceComponent = (e: JsonObject): unknown => (isObject(e.source) ? e.source.component : undefined);
const REFERENCE_FIELDS = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'];
const CORE_EVENT_FIELDS: Record<string, (e: JsonObject) => unknown> = {
  ...Object.fromEntries(REFERENCE_FIELDS.map((f) => [`involvedObject.${f}`, involved(f)])),
  reason: (e) => e.reason,
  reportingComponent: (e) => e.reportingComponent,
  source: sourceComponent,
  type: (e) => e.type,
};
const EVENTS_V1_FIELDS: Record<string, (e: JsonObject) => unknown> = {
  ...Object.fromEntries(REFERENCE_FIELDS.map((f) => [`regarding.${f}`, involved(f)])),
  reason: (e) => e.reason,
  reportingController: (e) => e.reportingComponent,
  deprecatedSource: sourceComponent,
  type: (e) => e.type,
};

// metav1.MicroTime decodes with layout 2006-01-02T15:04:05.000000Z07:00: exactly six fractional digits. A
// JavaScript Date serialised as is (three digits) is a 400 from the real apiserver, and so it is here.
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;

function decodeMicroTimes(e: JsonObject): void {
  const check = (v: unknown): void => {
    if (v === undefined || v === null) return;
    if (typeof v !== 'string' || !MICRO_TIME.test(v)) {
      throw badRequest(`parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse as MicroTime`);
    }
  };
  check(e.eventTime);
  if (isObject(e.series)) check(e.series.lastObservedTime);
}

const empty = (v: unknown): boolean => v === undefined || v === null || v === '' || v === 0;
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** The apiserver's legacyValidateEvent, which every Event passes whichever API wrote it. Field names as `names` spells them. */
function legacyEventErrors(e: JsonObject, names: { reportingController: string; note: string; regarding: string }): FieldError[] {
  const errs: FieldError[] = [];
  const ns = str(meta(e).namespace) ?? '';
  const inv = isObject(e.involvedObject) ? e.involvedObject : {};
  const invNs = str(inv.namespace) ?? '';
  const mismatch = fieldErr(`${names.regarding}.namespace`, 'Invalid', `Invalid value: "${invNs}": does not match event.namespace`);
  if (empty(e.eventTime)) {
    if (invNs === '' ? ns !== '' && ns !== 'default' : invNs !== ns) errs.push(mismatch);
  } else {
    if (invNs === '' && ns !== 'default' && ns !== 'kube-system') errs.push(mismatch);
    const controller = str(e.reportingComponent) ?? '';
    if (controller === '') errs.push(fieldErr(names.reportingController, 'Required', 'Required value'));
    else if (!QUALIFIED_NAME.test(controller))
      errs.push(fieldErr(names.reportingController, 'Invalid', `Invalid value: ${JSON.stringify(controller)}: must be a qualified name`));
    for (const [f, limit] of [
      ['reportingInstance', 128],
      ['action', 128],
      ['reason', 128],
    ] as const) {
      const v = str(e[f]) ?? '';
      if (v === '') errs.push(fieldErr(f, 'Required', 'Required value'));
      else if (v.length > limit) errs.push(fieldErr(f, 'TooLong', `Too long: may not be longer than ${limit}`));
    }
    if (typeof e.message === 'string' && Buffer.byteLength(e.message) > 1024)
      errs.push(fieldErr(names.note, 'TooLong', 'Too long: may not be longer than 1024'));
  }
  if (e.type !== undefined && e.type !== '' && e.type !== 'Normal' && e.type !== 'Warning') {
    errs.push(fieldErr('type', 'NotSupported', `Unsupported value: ${JSON.stringify(e.type)}: supported values: "Normal", "Warning"`));
  }
  return errs;
}

function validateCoreEvent(e: JsonObject): FieldError[] {
  if (!isObject(e.involvedObject)) return [fieldErr('involvedObject', 'Required', 'Required value')];
  return legacyEventErrors(e, { reportingController: 'reportingComponent', note: 'message', regarding: 'involvedObject' });
}

function seriesErrors(e: JsonObject): FieldError[] {
  if (e.series === undefined || e.series === null) return [];
  const s = isObject(e.series) ? e.series : {};
  const errs: FieldError[] = [];
  if (typeof s.count !== 'number' || s.count < 2) errs.push(fieldErr('series.count', 'Invalid', `Invalid value: "": should be at least 2`));
  if (empty(s.lastObservedTime)) errs.push(fieldErr('series.lastObservedTime', 'Required', 'Required value'));
  return errs;
}

/** events.k8s.io/v1: the legacy rules, then the strict ones of ValidateEventCreate / ValidateEventUpdate. */
function validateEventsV1Event(e: JsonObject, old: JsonObject | undefined): FieldError[] {
  const names = { reportingController: 'reportingController', note: 'note', regarding: 'regarding' };
  const errs = legacyEventErrors(e, names);
  if (old === undefined) {
    errs.push(...seriesErrors(e));
    if (empty(e.eventTime)) errs.push(fieldErr('eventTime', 'Required', 'Required value'));
    if (e.type !== 'Normal' && e.type !== 'Warning' && !errs.some((x) => x.field === 'type')) {
      errs.push(fieldErr('type', 'Invalid', `Invalid value: "": has invalid value: ${String(e.type ?? '')}`));
    }
    for (const [core, v1] of [
      ['firstTimestamp', 'deprecatedFirstTimestamp'],
      ['lastTimestamp', 'deprecatedLastTimestamp'],
      ['count', 'deprecatedCount'],
    ] as const) {
      if (!empty(e[core])) errs.push(fieldErr(v1, 'Invalid', 'Invalid value: "": needs to be unset'));
    }
    const src = isObject(e.source) ? e.source : {};
    if (!empty(src.component) || !empty(src.host)) errs.push(fieldErr('deprecatedSource', 'Invalid', 'Invalid value: "": needs to be unset'));
    return errs;
  }
  if (!isDeepStrictEqual(e.series, old.series)) errs.push(...seriesErrors(e));
  const immutable: [string, string][] = [
    ['involvedObject', 'regarding'],
    ['reason', 'reason'],
    ['message', 'note'],
    ['source', 'deprecatedSource'],
    ['firstTimestamp', 'deprecatedFirstTimestamp'],
    ['lastTimestamp', 'deprecatedLastTimestamp'],
    ['count', 'deprecatedCount'],
    ['type', 'type'],
    ['action', 'action'],
    ['eventTime', 'eventTime'],
    ['reportingComponent', 'reportingController'],
    ['reportingInstance', 'reportingInstance'],
    ['related', 'related'],
  ];
  for (const [core, v1] of immutable) {
    if (!isDeepStrictEqual(e[core], old[core])) errs.push(fieldErr(v1, 'Invalid', 'Invalid value: field is immutable'));
  }
  return errs;
}

function normalizeSecret(obj: JsonObject): void {
  if (isObject(obj.stringData)) {
    const data = isObject(obj.data) ? obj.data : {};
    for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v)).toString('base64');
    obj.data = data;
    delete obj.stringData;
  }
  if (obj.type === undefined) obj.type = 'Opaque';
}

/** As the apiserver's Secret validation: 1 MiB of data at most, key names, immutable type and data. */
function validateSecret(obj: JsonObject, old?: JsonObject): FieldError[] {
  const data = isObject(obj.data) ? obj.data : {};
  const errs: FieldError[] = [];
  let bytes = 0;
  for (const [k, v] of Object.entries(data)) {
    if (!/^[-._a-zA-Z0-9]+$/.test(k) || k.length > 253) {
      errs.push(
        fieldErr(`data[${k}]`, 'Invalid', `Invalid value: ${JSON.stringify(k)}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'`),
      );
    }
    if (typeof v === 'string') bytes += Buffer.from(v, 'base64').length;
  }
  if (bytes > 1024 * 1024) errs.push(fieldErr('data', 'TooLong', 'Too long: must have at most 1048576 bytes'));
  if (old !== undefined) {
    if (old.type !== obj.type) errs.push(fieldErr('type', 'Invalid', `Invalid value: ${JSON.stringify(obj.type)}: field is immutable`));
    if (old.immutable === true) {
      if (!isDeepStrictEqual(old.data ?? {}, obj.data ?? {})) errs.push(fieldErr('data', 'Forbidden', 'Forbidden: field is immutable when `immutable` is set'));
      if (obj.immutable !== true) errs.push(fieldErr('immutable', 'Forbidden', 'Forbidden: field is immutable when `immutable` is set'));
    }
  }
  if (obj.type === 'kubernetes.io/tls') {
    for (const k of ['tls.crt', 'tls.key']) if (!(k in data)) errs.push(fieldErr(`data[${k}]`, 'Required', 'Required value'));
  }
  for (const [k, v] of Object.entries(data)) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) errs.push(fieldErr(`data[${k}]`, 'Invalid', 'Invalid value: illegal base64 data'));
  }
  return errs;
}

// ---------------------------------------------------------------------------------------------------------
// The server

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

interface HistoryEvent {
  rv: number;
  key: string; // type key
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: JsonObject;
}

interface Watcher {
  rt: ResourceType;
  filter: Filter;
  bookmarks: boolean;
  res: http.ServerResponse;
  timers: NodeJS.Timeout[];
  /** Event lines not written yet (see #queueLine). */
  pending: string[];
}

export interface RequestLogEntry {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  /** True for list/watch requests with ?watch=true|1. */
  watch: boolean;
  /** HTTP status of the response (200 for a watch that was established); 0 while in flight. */
  status: number;
  /**
   * When the request arrived and when its answer was sent (a watch: when it was established), as positions in
   * one sequence shared by every request: they order requests without measuring time. `ended` is 0 while in flight.
   */
  started: number;
  ended: number;
  /** Date.now() when the request arrived (for benchmarks' timelines; tests count, they do not time). */
  at: number;
  /** Date.now() when it was answered (a watch: established); 0 while in flight. For benchmarks' timelines. */
  endedAt: number;
}

export interface FailureRule {
  /** One method or several (e.g. ['PUT', 'PATCH']). */
  method?: string | readonly string[];
  /** Resource plural, e.g. 'loadbalancers'. */
  plural?: string;
  /** Only requests addressed to this namespace (a list of one namespace, or an object in it). */
  namespace?: string;
  /** 'status' for the status subresource, 'main' for the resource itself. */
  subresource?: 'status' | 'main';
  watch?: boolean;
  code: number;
  reason?: string;
  message?: string;
}

export interface FakeApiServerOptions {
  /** CRDs (objects) declaring nslb.dev kinds with schemas; without them the 7 kinds are schemaless. */
  crds?: readonly unknown[];
  /** Event history kept for watches; older resourceVersions get 410 Expired. Default 10000. */
  historyLimit?: number;
  /** Send BOOKMARK events this often on watches that asked for them (allowWatchBookmarks=true). Off by default. */
  bookmarkIntervalMs?: number;
  /** First resourceVersion handed out. Default 1000. */
  initialResourceVersion?: number;
  /** Serve events.k8s.io/v1 (default true); false stands for a server with core/v1 Events only. */
  eventsV1?: boolean;
  /** Every request is answered this many milliseconds after it arrived (requests are served concurrently). */
  requestDelayMs?: number;
}

export interface WriteOptions {
  dryRun?: boolean;
}

type PatchKind = 'merge' | 'json' | 'strategic';

const PATCH_TYPES: Record<string, PatchKind> = {
  'application/merge-patch+json': 'merge',
  'application/json-patch+json': 'json',
  'application/strategic-merge-patch+json': 'strategic',
};

export class FakeApiServer {
  /** TokenReview / SubjectAccessReview answers: declare tokens and grants here. */
  readonly reviews = new FakeReviews();
  readonly #types = new Map<string, ResourceType>();
  /** typeKey → "ns/name" → object */
  readonly #store = new Map<string, Map<string, JsonObject>>();
  readonly #history: HistoryEvent[] = [];
  readonly #watchers = new Set<Watcher>();
  /** Watchers with events to write at the end of this turn of the event loop. */
  readonly #dirty = new Set<Watcher>();
  readonly #log: RequestLogEntry[] = [];
  readonly #failures: (FailureRule & { times: number })[] = [];
  readonly #validator = new SchemaValidator();
  readonly #historyLimit: number;
  readonly #bookmarkIntervalMs: number | undefined;
  #rv: number;
  /** Watches from a resourceVersion below this one get 410 Expired. */
  #compactedRv: number;
  /** Fields the schema pruned, ever (for assertions), and in the request being served (for Warning headers). */
  readonly #pruned: { kind: string; namespace: string; name: string; field: string }[] = [];
  #lastDropped: string[] = [];
  #server: http.Server | undefined;
  /** TCP connections accepted so far (a client that keeps its connections alive opens few). */
  connections = 0;
  #port = 0;
  #url = '';
  #delayMs: number;
  /** Plurals whose watch events are held back (holdWatches). */
  readonly #held = new Set<string>();
  #answerDelay: { ms: number; plural?: string } | undefined;
  /** The sequence that orders the starts and ends of requests (RequestLogEntry.started/ended). */
  #seq = 0;

  constructor(options: FakeApiServerOptions = {}) {
    const custom = options.crds === undefined ? nslbDefaultTypes() : options.crds.flatMap(typesFromCrd);
    for (const rt of [...builtinTypes(options.eventsV1 ?? true), ...custom]) this.#types.set(typeKey(rt.group, rt.version, rt.plural), rt);
    this.#historyLimit = options.historyLimit ?? 10_000;
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs;
    this.#rv = options.initialResourceVersion ?? 1000;
    this.#compactedRv = this.#rv;
    this.#delayMs = options.requestDelayMs ?? 0;
  }

  // ------------------------------------------------------------------------------------------- lifecycle

  /** Listens on 127.0.0.1 (a fresh port the first time, the same port when started again after stop()). */
  async start(): Promise<void> {
    if (this.#server !== undefined) return;
    const server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.#sendJson(res, undefined, 500, new ApiError(500, 'InternalError', String(err)).toStatus());
        else res.destroy();
      });
    });
    server.on('connection', () => this.connections++);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#url = `http://127.0.0.1:${this.#port}`;
    this.#server = server;
  }

  /** Stops listening, ends every watch and drops every connection. The data stays (start() again resumes). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.closeWatches();
    server.closeAllConnections();
    await closed;
  }

  get url(): string {
    if (this.#url === '') throw new Error('FakeApiServer: not started');
    return this.#url;
  }

  /** YAML kubeconfig for this server: plain http, insecure-skip-tls-verify (client-node requires it for http:), no auth. */
  kubeconfig(namespace = 'default'): string {
    return yaml.dump({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: {} }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake', namespace } }],
      'current-context': 'fake',
    });
  }

  /** Writes kubeconfig() to a file (in a fresh temporary directory unless `dir` is given); returns its path. */
  writeKubeconfig(dir?: string): string {
    const d = dir ?? mkdtempSync(join(tmpdir(), 'nslb-fake-kube-'));
    const path = join(d, 'kubeconfig');
    writeFileSync(path, this.kubeconfig(), { mode: 0o600 });
    return path;
  }

  // ------------------------------------------------------------------------------------------- test controls

  /** The current (latest) resourceVersion. */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  /** Drops the event history: a watch from any resourceVersion older than the current one gets 410 Expired. */
  compact(): void {
    this.#history.length = 0;
    this.#compactedRv = this.#rv;
  }

  /** Ends every open watch stream cleanly (as an apiserver restart or its watch timeout does). Returns how many. */
  closeWatches(): number {
    const n = this.#watchers.size;
    for (const w of [...this.#watchers]) this.#endWatch(w);
    return n;
  }

  /** Open watch streams, optionally of one plural. */
  activeWatches(plural?: string): number {
    let n = 0;
    for (const w of this.#watchers) if (plural === undefined || w.rt.plural === plural) n++;
    return n;
  }

  /** Resolves once at least `count` watches of `plural` are open. */
  async waitForWatches(plural: string, count = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.activeWatches(plural) < count) {
      if (Date.now() > deadline) throw new Error(`FakeApiServer: timed out waiting for ${count} watch(es) of ${plural}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Sends a BOOKMARK now on every watch that asked for bookmarks. */
  sendBookmarks(): void {
    for (const w of this.#watchers) if (w.bookmarks) this.#sendBookmark(w);
  }

  /** The next matching request(s) fail with this Status instead of being served. */
  failNext(rule: FailureRule, times = 1): void {
    this.#failures.push({ ...rule, times });
  }

  /** The next PUT/PATCH of a status subresource gets 409 Conflict (the object is left unchanged). */
  failNextStatusWriteWithConflict(times = 1): void {
    this.#failures.push({ method: ['PUT', 'PATCH'], subresource: 'status', code: 409, reason: 'Conflict', times });
  }

  /** Every request from now on is answered this many milliseconds after it arrived (0: at once). */
  setRequestDelay(ms: number): void {
    this.#delayMs = ms;
  }

  /**
   * Requests (of one plural, or all) are served at once, their writes done, but their answers sent this many
   * milliseconds later (0: at once): a loaded network or client that gets answers after it gave up on them,
   * while what it asked for was done. Watches are not delayed.
   */
  setAnswerDelay(ms: number, plural?: string): void {
    this.#answerDelay = { ms, ...(plural === undefined ? {} : { plural }) };
  }

  /**
   * Watches of a plural lag: their events are kept, not sent, until releaseWatches (a loaded API server sends
   * watch events late; reads and writes are served as usual, so a read sees what a watch does not yet).
   */
  holdWatches(plural: string): void {
    this.#held.add(plural);
  }

  /** Sends what holdWatches kept, in order, and no longer holds. */
  releaseWatches(plural: string): void {
    this.#held.delete(plural);
    for (const w of this.#watchers) if (w.rt.plural === plural && w.pending.length > 0) this.#flush(w);
  }

  requestLog(): RequestLogEntry[] {
    return this.#log.map((e) => ({ ...e, query: { ...e.query } }));
  }

  /** The most requests matching `pred` that were in flight at the same moment (counted, not timed). */
  peakConcurrency(pred: (e: RequestLogEntry) => boolean): number {
    const marks: [number, 1 | -1][] = [];
    for (const e of this.#log) {
      if (!pred(e)) continue;
      marks.push([e.started, 1]);
      if (e.ended > 0) marks.push([e.ended, -1]);
    }
    marks.sort((a, b) => a[0] - b[0]);
    let now = 0;
    let peak = 0;
    for (const [, d] of marks) {
      now += d;
      peak = Math.max(peak, now);
    }
    return peak;
  }

  /**
   * The longest chain of requests matching `pred` in which each started only after the one before it had been
   * answered: N for N requests made one at a time, 1 when they were all in flight together.
   */
  longestChain(pred: (e: RequestLogEntry) => boolean): number {
    const done = this.#log.filter((e) => pred(e) && e.ended > 0);
    const byEnd = [...done].sort((a, b) => a.ended - b.ended);
    const byStart = [...done].sort((a, b) => a.started - b.started);
    const chain = new Map<RequestLogEntry, number>();
    let i = 0;
    let bestEnded = 0;
    let longest = 0;
    for (const e of byStart) {
      // Every request answered before this one started may precede it in a chain.
      while (i < byEnd.length && byEnd[i]!.ended < e.started) bestEnded = Math.max(bestEnded, chain.get(byEnd[i++]!) ?? 0);
      const c = bestEnded + 1;
      chain.set(e, c);
      longest = Math.max(longest, c);
    }
    return longest;
  }

  clearRequestLog(): void {
    this.#log.length = 0;
  }

  /** Requests matching a predicate. */
  countRequests(pred: (e: RequestLogEntry) => boolean): number {
    return this.#log.filter(pred).length;
  }

  /** PUT/PATCH requests on status subresources (served or not), for one kind (Kind or plural) or all. */
  statusWrites(kind?: string): number {
    const plural = kind === undefined ? undefined : this.#pluralOf(kind);
    return this.countRequests(
      (e) => (e.method === 'PUT' || e.method === 'PATCH') && /\/status$/.test(e.path) && (plural === undefined || e.path.split('/').at(-3) === plural),
    );
  }

  /** Writes (POST/PUT/PATCH/DELETE) on the main resource, for one kind (Kind or plural) or all. */
  writes(kind?: string): number {
    const plural = kind === undefined ? undefined : this.#pluralOf(kind);
    return this.countRequests((e) => e.method !== 'GET' && !/\/status$/.test(e.path) && (plural === undefined || e.path.split('/').includes(plural)));
  }

  /** Every field a CRD schema pruned from a write so far (only with the `crds` option). */
  prunedFields(): { kind: string; namespace: string; name: string; field: string }[] {
    return this.#pruned.map((p) => ({ ...p }));
  }

  #pluralOf(kindOrPlural: string): string {
    for (const rt of this.#types.values()) if (rt.kind === kindOrPlural) return rt.plural;
    return kindOrPlural;
  }

  // ------------------------------------------------------------------------------------------- data helpers
  // Same semantics as the HTTP API (they throw ApiError), minus the wire. apiVersion is "group/version" or "v1".

  #rtFor(apiVersion: string, plural: string): ResourceType {
    const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/') as [string, string]) : ['', apiVersion];
    const rt = this.#types.get(typeKey(group, version, plural));
    if (rt === undefined) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${apiVersion} ${plural})`);
    return rt;
  }

  /** The store's namespace part for a helper call: '' for cluster-scoped kinds whatever the caller passed. */
  #ns(rt: ResourceType, namespace: string | undefined): string {
    return rt.namespaced ? (namespace ?? 'default') : '';
  }

  #rtForObject(obj: JsonObject): ResourceType {
    const apiVersion = str(obj.apiVersion) ?? '';
    const kind = str(obj.kind) ?? '';
    for (const rt of this.#types.values()) if (apiVersionOf(rt) === apiVersion && rt.kind === kind) return rt;
    throw new ApiError(404, 'NotFound', `no resource for ${apiVersion} ${kind}`);
  }

  /** POST: as `kubectl create`. Status in the object is dropped (status subresource). */
  create(obj: JsonObject, opts: WriteOptions = {}): JsonObject {
    const rt = this.#rtForObject(obj);
    return this.#out(rt, this.#create(rt, this.#ns(rt, str(meta(obj).namespace)), clone(obj), opts));
  }

  get(apiVersion: string, plural: string, namespace: string, name: string): JsonObject | undefined {
    const rt = this.#rtFor(apiVersion, plural);
    const o = this.#bucket(rt).get(`${this.#ns(rt, namespace)}/${name}`);
    return o === undefined ? undefined : this.#out(rt, o);
  }

  /**
   * The stored object itself, not a copy (unless the resource converts it): for a benchmark's poll in this process,
   * which must not change it. get() copies, and a poll of 100 objects every 100 ms copying them cost the server's
   * event loop stalls of seconds (bench (w)).
   */
  peek(apiVersion: string, plural: string, namespace: string, name: string): Readonly<JsonObject> | undefined {
    const rt = this.#rtFor(apiVersion, plural);
    const o = this.#bucket(rt).get(`${this.#ns(rt, namespace)}/${name}`);
    if (o === undefined) return undefined;
    return rt.fromStorage === undefined ? o : this.#out(rt, o);
  }

  /** Every object of a kind (optionally of one namespace, optionally matching a field selector such as `regarding.name=web`). */
  list(apiVersion: string, plural: string, namespace?: string, fieldSelector?: string): JsonObject[] {
    const rt = this.#rtFor(apiVersion, plural);
    const filter: Filter = {
      namespace: rt.namespaced ? namespace : undefined,
      labels: [],
      fields: parseFieldSelector(fieldSelector, rt),
      ...(rt.fieldLabels === undefined ? {} : { fieldLabels: rt.fieldLabels }),
    };
    return this.#select(rt, filter).map((o) => this.#out(rt, o));
  }

  /** PUT of the main resource. Without metadata.resourceVersion the update is unconditional (helper convenience). */
  update(obj: JsonObject, opts: WriteOptions = {}): JsonObject {
    const rt = this.#rtForObject(obj);
    const m = meta(obj);
    return this.#out(rt, this.#put(rt, this.#ns(rt, str(m.namespace)), str(m.name) ?? '', clone(obj), 'main', { ...opts, unconditional: true }));
  }

  /** PUT of /status. Without metadata.resourceVersion the update is unconditional (helper convenience). */
  updateStatus(obj: JsonObject, opts: WriteOptions = {}): JsonObject {
    const rt = this.#rtForObject(obj);
    const m = meta(obj);
    return this.#out(rt, this.#put(rt, this.#ns(rt, str(m.namespace)), str(m.name) ?? '', clone(obj), 'status', { ...opts, unconditional: true }));
  }

  /** PATCH of the main resource (merge patch unless `type` says 'json'). */
  patch(apiVersion: string, plural: string, namespace: string, name: string, patch: unknown, type: 'merge' | 'json' = 'merge'): JsonObject {
    const rt = this.#rtFor(apiVersion, plural);
    return this.#out(rt, this.#patch(rt, this.#ns(rt, namespace), name, type, clone(patch), 'main', {}));
  }

  /** PATCH of /status (merge patch unless `type` says 'json'). */
  patchStatus(apiVersion: string, plural: string, namespace: string, name: string, patch: unknown, type: 'merge' | 'json' = 'merge'): JsonObject {
    const rt = this.#rtFor(apiVersion, plural);
    return this.#out(rt, this.#patch(rt, this.#ns(rt, namespace), name, type, clone(patch), 'status', {}));
  }

  /** DELETE: with finalizers the object stays, with deletionTimestamp set. Returns the object, or undefined when it went. */
  delete(apiVersion: string, plural: string, namespace: string, name: string): JsonObject | undefined {
    const rt = this.#rtFor(apiVersion, plural);
    const r = this.#delete(rt, this.#ns(rt, namespace), name, {}, {});
    return r.deleted ? undefined : this.#out(rt, r.object);
  }

  /**
   * As `kubectl apply` of a whole object would leave it: created when missing, otherwise spec (and labels and
   * annotations when given) replaced; finalizers and status untouched. Unconditional.
   */
  apply(obj: JsonObject): JsonObject {
    const rt = this.#rtForObject(obj);
    const m = meta(obj);
    const ns = this.#ns(rt, str(m.namespace));
    const name = str(m.name) ?? '';
    const current = this.#bucket(rt).get(`${ns}/${name}`);
    if (current === undefined) return this.create(obj);
    const next = this.#out(rt, current);
    for (const [k, v] of Object.entries(obj)) if (k !== 'metadata' && k !== 'status') next[k] = clone(v);
    for (const k of Object.keys(next)) if (!(k in obj) && k !== 'metadata' && k !== 'status' && k !== 'apiVersion' && k !== 'kind') delete next[k];
    const nm = meta(next);
    if (m.labels !== undefined) nm.labels = clone(m.labels);
    if (m.annotations !== undefined) nm.annotations = clone(m.annotations);
    return this.#out(rt, this.#put(rt, ns, name, next, 'main', { unconditional: true }));
  }

  /**
   * Every Event, whichever API wrote it, in core/v1's form (involvedObject, message, count, …), optionally of one
   * namespace and matching a core field selector (e.g. `involvedObject.kind=Member,involvedObject.name=bad`).
   */
  events(namespace?: string, fieldSelector?: string): JsonObject[] {
    return this.list('v1', 'events', namespace, fieldSelector);
  }

  // ------------------------------------------------------------------------------------------- storage core

  /** Where a resource's objects live (Events of both APIs share one store). */
  #storeOf(rt: ResourceType): string {
    return rt.storage ?? typeKey(rt.group, rt.version, rt.plural);
  }

  /** A stored object as this resource's API shows it: a copy, converted. */
  #out(rt: ResourceType, stored: JsonObject): JsonObject {
    const c = clone(stored);
    return rt.fromStorage === undefined ? c : rt.fromStorage(c);
  }

  /**
   * A stored object as this resource's API shows it, to be serialized at once: the stored object itself when the
   * resource does not convert it (stored objects are frozen, see #keep), so that an answer costs no copy.
   */
  #wire(rt: ResourceType, stored: JsonObject): JsonObject {
    return rt.fromStorage === undefined ? stored : rt.fromStorage(clone(stored));
  }

  /**
   * Stores an object. Stored objects are never changed in place (every write builds the next one): they are frozen,
   * so that the event history, the answers and peek() share them instead of copying each (an in-place change
   * anywhere would throw here, in tests, rather than alter what a watcher was already sent).
   */
  #keep(rt: ResourceType, key: string, obj: JsonObject): void {
    deepFreeze(obj);
    this.#bucket(rt).set(key, obj);
  }

  #in(rt: ResourceType, obj: JsonObject): JsonObject {
    return rt.toStorage === undefined ? obj : rt.toStorage(obj);
  }

  #bucket(rt: ResourceType): Map<string, JsonObject> {
    const k = this.#storeOf(rt);
    let b = this.#store.get(k);
    if (b === undefined) {
      b = new Map();
      this.#store.set(k, b);
    }
    return b;
  }

  #select(rt: ResourceType, filter: Filter): JsonObject[] {
    return [...this.#bucket(rt).entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o)
      .filter((o) => matches(o, filter));
  }

  #nextRv(): number {
    this.#rv += 1;
    return this.#rv;
  }

  #record(rt: ResourceType, type: HistoryEvent['type'], object: JsonObject): void {
    // `object` is stored (frozen) or gone (frozen too): the history shares it.
    const ev: HistoryEvent = { rv: Number(meta(object).resourceVersion), key: this.#storeOf(rt), type, object };
    this.#history.push(ev);
    while (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.shift();
      if (dropped !== undefined) this.#compactedRv = dropped.rv;
    }
    // Serialized once per form (per resource a watcher watches through) for all the watchers that get it.
    const lines = new Map<ResourceType, string>();
    for (const w of this.#watchers) {
      if (this.#storeOf(w.rt) !== ev.key || !matches(ev.object, w.filter)) continue;
      let line = lines.get(w.rt);
      if (line === undefined) {
        line = eventLine(ev.type, this.#wire(w.rt, ev.object));
        lines.set(w.rt, line);
      }
      this.#queueLine(w, line);
    }
  }

  /** Decode-time processing of a custom resource body: pruning and defaulting (not on built-in kinds). */
  #decode(rt: ResourceType, obj: JsonObject, strict: boolean): string[] {
    if (rt.schema === undefined) return [];
    const dropped: string[] = [];
    const schemaProps = isObject(rt.schema.properties) ? rt.schema.properties : {};
    for (const key of Object.keys(obj)) {
      if (key === 'apiVersion' || key === 'kind' || key === 'metadata') continue;
      if (key in schemaProps) prune(obj[key], schemaProps[key], key, dropped);
      else if (rt.schema['x-kubernetes-preserve-unknown-fields'] !== true) {
        delete obj[key];
        dropped.push(key);
      }
    }
    this.#lastDropped.push(...dropped);
    for (const field of dropped) this.#pruned.push({ kind: rt.kind, namespace: str(meta(obj).namespace) ?? '', name: str(meta(obj).name) ?? '', field });
    if (strict && dropped.length > 0) {
      throw new ApiError(422, 'Invalid', `strict decoding error: ${dropped.map((d) => `unknown field "${d}"`).join(', ')}`);
    }
    for (const [key, sub] of Object.entries(schemaProps)) {
      if (key === 'metadata' || key === 'apiVersion' || key === 'kind') continue;
      if (!(key in obj) && isObject(sub) && 'default' in sub) obj[key] = clone(sub.default);
      if (key in obj) applyDefaults(obj[key], sub);
    }
    return dropped;
  }

  #validate(rt: ResourceType, obj: JsonObject, old: JsonObject | undefined): void {
    const m = meta(obj);
    const name = str(m.name) ?? '';
    const errors: FieldError[] = [];
    if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
      errors.push(
        fieldErr(
          'metadata.name',
          'Invalid',
          `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
        ),
      );
    }
    if (old !== undefined) {
      const before = new Set(finalizersOf(old));
      const added = finalizersOf(obj).filter((f) => !before.has(f));
      if (meta(old).deletionTimestamp !== undefined && added.length > 0) {
        errors.push(
          fieldErr(
            'metadata.finalizers',
            'Forbidden',
            `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`,
          ),
        );
      }
    }
    if (rt.custom) errors.push(...this.#validator.validate(rt, obj));
    if (rt.validate !== undefined) errors.push(...rt.validate(obj, old));
    if (errors.length > 0) throw invalid(rt, name, errors);
  }

  /** A built-in kind's registry strategy (defaults, allocations); its errors are a 422 like validation's. */
  #admit(rt: ResourceType, obj: JsonObject, old: JsonObject | undefined, key: string): void {
    if (rt.admit === undefined) return;
    const others = [...this.#bucket(rt).entries()].filter(([k]) => k !== key).map(([, o]) => o);
    const errors = rt.admit(obj, old, others);
    if (errors.length > 0) throw invalid(rt, str(meta(obj).name) ?? '', errors);
  }

  #checkTypeMeta(rt: ResourceType, obj: JsonObject): void {
    const want = apiVersionOf(rt);
    if (obj.kind === undefined || obj.kind === '') {
      if (rt.custom) throw badRequest(`Object 'Kind' is missing in '${JSON.stringify(obj).slice(0, 200)}'`);
      obj.kind = rt.kind;
    }
    if (obj.apiVersion === undefined || obj.apiVersion === '') {
      if (rt.custom) throw badRequest(`Object 'apiVersion' is missing in '${JSON.stringify(obj).slice(0, 200)}'`);
      obj.apiVersion = want;
    }
    if (obj.apiVersion !== want) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${want})`);
    }
    if (obj.kind !== rt.kind) throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${rt.kind})`);
  }

  /** Returns the stored form (callers convert with #out). */
  #create(rt: ResourceType, namespace: string, body: JsonObject, opts: WriteOptions & { strict?: boolean }): JsonObject {
    if (!isObject(body)) throw badRequest('the body of the request must be an object');
    this.#checkTypeMeta(rt, body);
    const obj = this.#in(rt, body);
    const m = meta(obj);
    if (rt.namespaced) {
      if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      m.namespace = namespace;
    } else {
      // Cluster-scoped: the apiserver clears whatever namespace the client sent.
      delete m.namespace;
      namespace = '';
    }
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string' && m.generateName !== '') {
      m.name = `${m.generateName}${Math.random().toString(36).slice(2, 7)}`;
    }
    if (typeof m.name !== 'string' || m.name === '') {
      throw invalid(rt, '', [fieldErr('metadata.name', 'Required', 'Required value: name or generateName is required')]);
    }
    if (m.resourceVersion !== undefined && m.resourceVersion !== '') {
      throw new ApiError(500, 'InternalError', 'resourceVersion should not be set on objects to be created');
    }
    const name = m.name;
    const key = `${namespace}/${name}`;
    // System fields are the server's.
    m.uid = randomUUID();
    m.creationTimestamp = rfc3339();
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    delete m.selfLink;
    if (rt.custom) m.generation = 1;
    else delete m.generation;
    if (rt.statusSubresource && rt.keepStatusOnCreate !== true) delete obj.status;
    normalizeMeta(obj);
    rt.normalize?.(obj);
    this.#admit(rt, obj, undefined, key);
    this.#decode(rt, obj, opts.strict === true);
    this.#validate(rt, obj, undefined);
    const existing = this.#bucket(rt).get(key);
    if (existing !== undefined) {
      const base = `${qualified(rt)} "${name}" already exists`;
      throw new ApiError(409, 'AlreadyExists', meta(existing).deletionTimestamp !== undefined ? `object is being deleted: ${base}` : base, {
        name,
        group: rt.group,
        kind: rt.plural,
      });
    }
    if (opts.dryRun === true) return obj;
    m.resourceVersion = String(this.#nextRv());
    this.#keep(rt, key, obj);
    this.#record(rt, 'ADDED', obj);
    return obj;
  }

  /**
   * Every update (PUT, PATCH, main or status) ends here. `candidate` is the full object the client wants;
   * `precondition` the resourceVersion it must match (undefined: unconditional).
   */
  #commitUpdate(
    rt: ResourceType,
    old: JsonObject,
    candidate: JsonObject,
    sub: 'main' | 'status',
    precondition: string | undefined,
    opts: WriteOptions & { strict?: boolean },
  ): JsonObject {
    const om = meta(old);
    const name = str(om.name) ?? '';
    if (precondition !== undefined && precondition !== om.resourceVersion) throw conflict(rt, name);
    let next: JsonObject;
    if (sub === 'status') {
      // The status strategy: everything but status comes from the stored object (shared with it: stored objects
      // are frozen; the metadata gets a resourceVersion, so it is a copy). `candidate` is the caller's to give.
      next = { ...old, metadata: { ...om } };
      if ('status' in candidate) next.status = candidate.status;
      else delete next.status;
    } else {
      // `candidate` is the caller's to give (a parsed body, a patched copy, a helper's copy).
      next = candidate;
      const nm = meta(next);
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'namespace', 'name'] as const) {
        if (om[k] === undefined) delete nm[k];
        else nm[k] = clone(om[k]);
      }
      if (rt.statusSubresource) {
        if ('status' in old) next.status = clone(old.status);
        else delete next.status;
      }
      normalizeMeta(next);
      rt.normalize?.(next);
      this.#admit(rt, next, old, `${str(om.namespace) ?? ''}/${str(om.name) ?? ''}`);
    }
    meta(next).resourceVersion = om.resourceVersion;
    // Decoding prunes and defaults in place: on a status write only the new status (the rest is the stored
    // object's, decoded when it was written, and frozen).
    if (sub === 'status') {
      const decoded: JsonObject = { metadata: next.metadata };
      if ('status' in next) decoded.status = next.status;
      this.#decode(rt, decoded, opts.strict === true);
      if ('status' in decoded) next.status = decoded.status;
    } else {
      this.#decode(rt, next, opts.strict === true);
    }
    this.#validate(rt, next, old);
    if (rt.custom && sub === 'main') {
      const strip = (o: JsonObject): JsonObject => {
        const c = { ...o };
        delete c.metadata;
        if (rt.statusSubresource) delete c.status;
        return c;
      };
      if (!isDeepStrictEqual(strip(next), strip(old))) meta(next).generation = Number(om.generation ?? 0) + 1;
    }
    const key = `${str(om.namespace) ?? ''}/${name}`;
    // The generic registry: an update that empties the finalizers of an object being deleted deletes it.
    if (om.deletionTimestamp !== undefined && finalizersOf(next).length === 0 && Number(om.deletionGracePeriodSeconds ?? 0) === 0) {
      if (opts.dryRun === true) return next;
      this.#bucket(rt).delete(key);
      const gone = { ...old, metadata: { ...om, resourceVersion: String(this.#nextRv()) } };
      deepFreeze(gone);
      this.#record(rt, 'DELETED', gone);
      return next;
    }
    // etcd3's GuaranteedUpdate: identical bytes are not written (no new resourceVersion, no event).
    if (isDeepStrictEqual(next, old)) return old;
    if (opts.dryRun === true) return next;
    meta(next).resourceVersion = String(this.#nextRv());
    this.#keep(rt, key, next);
    this.#record(rt, 'MODIFIED', next);
    return next;
  }

  #put(
    rt: ResourceType,
    namespace: string,
    name: string,
    body: JsonObject,
    sub: 'main' | 'status',
    opts: WriteOptions & { unconditional?: boolean; strict?: boolean },
  ): JsonObject {
    if (!isObject(body)) throw badRequest('the body of the request must be an object');
    this.#checkTypeMeta(rt, body);
    const m = meta(body);
    if (m.name !== undefined && m.name !== name) throw badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`);
    if (rt.namespaced && m.namespace !== undefined && m.namespace !== '' && m.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    m.name = name;
    if (rt.namespaced) m.namespace = namespace;
    else delete m.namespace;
    const old = this.#bucket(rt).get(`${namespace}/${name}`);
    const rv = str(m.resourceVersion) === '' ? undefined : str(m.resourceVersion);
    if (old === undefined) {
      if (!rt.allowCreateOnUpdate || sub === 'status') throw notFound(rt, name);
      delete m.resourceVersion;
      return this.#create(rt, namespace, body, opts);
    }
    if (rv === undefined && !rt.allowUnconditionalUpdate && opts.unconditional !== true) {
      throw invalid({ ...rt, kind: rt.plural }, name, [fieldErr('metadata.resourceVersion', 'Invalid', 'Invalid value: 0x0: must be specified for an update')]);
    }
    return this.#commitUpdate(rt, old, this.#in(rt, body), sub, rv, opts);
  }

  #patch(
    rt: ResourceType,
    namespace: string,
    name: string,
    type: PatchKind,
    patch: unknown,
    sub: 'main' | 'status',
    opts: WriteOptions & { strict?: boolean },
  ): JsonObject {
    const old = this.#bucket(rt).get(`${namespace}/${name}`);
    if (old === undefined) throw notFound(rt, name);
    let patched: unknown;
    if (type === 'json') {
      try {
        // applyJsonPatch works on a copy of its own.
        patched = applyJsonPatch(this.#wire(rt, old), patch);
      } catch (err) {
        if (err instanceof ApiError) throw err;
        throw new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: ${(err as Error).message}`);
      }
    } else {
      if (!isObject(patch)) throw badRequest('merge patch body must be a JSON object');
      // A merge patch copies what it changes and shares the rest with its target. A status write keeps only the
      // patched status, which decoding leaves as it is where it came from the stored (already decoded) object:
      // the stored object can be the target. A main-resource write is defaulted and normalized in place: a copy.
      patched = applyMergePatch(sub === 'status' ? this.#wire(rt, old) : this.#out(rt, old), patch);
    }
    if (!isObject(patched)) throw new ApiError(422, 'Invalid', 'the patched object is not an object');
    const pm = meta(patched);
    if (pm.name !== name) throw badRequest(`the name of the object (${String(pm.name)}) does not match the name on the URL (${name})`);
    if (patched.kind !== rt.kind || patched.apiVersion !== apiVersionOf(rt)) throw badRequest('the patch must not change apiVersion or kind');
    // The patched object's resourceVersion is the precondition: the stored one unless the patch set it.
    const rv = str(pm.resourceVersion) === '' ? undefined : str(pm.resourceVersion);
    return this.#commitUpdate(rt, old, this.#in(rt, patched), sub, rv, opts);
  }

  #delete(rt: ResourceType, namespace: string, name: string, options: JsonObject, opts: WriteOptions): { object: JsonObject; deleted: boolean } {
    const key = `${namespace}/${name}`;
    const old = this.#bucket(rt).get(key);
    if (old === undefined) throw notFound(rt, name);
    const om = meta(old);
    const pre = isObject(options.preconditions) ? options.preconditions : {};
    if (typeof pre.uid === 'string' && pre.uid !== om.uid) {
      throw conflict(rt, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(om.uid)}`);
    }
    if (typeof pre.resourceVersion === 'string' && pre.resourceVersion !== om.resourceVersion) {
      throw conflict(
        rt,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${String(om.resourceVersion)}`,
      );
    }
    if (finalizersOf(old).length > 0) {
      if (om.deletionTimestamp !== undefined || opts.dryRun === true) return { object: old, deleted: false };
      const next = { ...old, metadata: { ...om, deletionTimestamp: rfc3339(), deletionGracePeriodSeconds: 0, resourceVersion: String(this.#nextRv()) } };
      this.#keep(rt, key, next);
      this.#record(rt, 'MODIFIED', next);
      return { object: next, deleted: false };
    }
    if (opts.dryRun === true) return { object: old, deleted: true };
    this.#bucket(rt).delete(key);
    const gone = { ...old, metadata: { ...om, resourceVersion: String(this.#nextRv()) } };
    deepFreeze(gone);
    this.#record(rt, 'DELETED', gone);
    return { object: gone, deleted: true };
  }

  // ------------------------------------------------------------------------------------------- watches

  #writeEvent(w: Watcher, type: WatchEventType, object: JsonObject): void {
    this.#queueLine(w, eventLine(type, object));
  }

  /**
   * Events are written to a watch once per turn of the event loop, all that came in that turn in one write: a
   * write is a system call (on loopback, the receiving side's TCP work too), and a drain's burst of status writes
   * sent each event to each watcher in a write of its own (bench (w): most of the server's time was in writev).
   */
  #queueLine(w: Watcher, line: string): void {
    if (w.res.writableEnded || w.res.destroyed) return;
    w.pending.push(line);
    if (w.pending.length > 1 || this.#held.has(w.rt.plural)) return;
    this.#dirty.add(w);
    if (this.#dirty.size === 1) setImmediate(() => this.#flushAll());
  }

  #flushAll(): void {
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    for (const w of dirty) this.#flush(w);
  }

  #flush(w: Watcher, force = false): void {
    if (!force && this.#held.has(w.rt.plural)) return;
    this.#dirty.delete(w);
    if (w.pending.length === 0) return;
    const text = w.pending.join('');
    w.pending = [];
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(text);
  }

  #sendBookmark(w: Watcher): void {
    this.#writeEvent(w, 'BOOKMARK', { kind: w.rt.kind, apiVersion: apiVersionOf(w.rt), metadata: { resourceVersion: String(this.#rv) } });
  }

  #endWatch(w: Watcher): void {
    for (const t of w.timers) clearTimeout(t);
    this.#watchers.delete(w);
    this.#flush(w, true);
    if (!w.res.writableEnded) w.res.end();
  }

  #startWatch(rt: ResourceType, filter: Filter, query: Record<string, string>, res: http.ServerResponse): void {
    const rvParam = query.resourceVersion ?? '';
    let from: number | undefined;
    if (rvParam !== '' && rvParam !== '0') {
      if (!/^\d+$/.test(rvParam)) throw badRequest(`invalid resource version: ${rvParam}`);
      from = Number(rvParam);
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { rt, filter, bookmarks: query.allowWatchBookmarks === 'true', res, timers: [], pending: [] };
    if (from !== undefined && from < this.#compactedRv) {
      this.#writeEvent(w, 'ERROR', new ApiError(410, 'Expired', `too old resource version: ${from} (${this.#compactedRv + 1})`).toStatus());
      this.#flush(w);
      res.end();
      return;
    }
    if (from === undefined) {
      // Unset or "0": synthetic ADDED events for the current state, then changes.
      for (const o of this.#select(rt, filter)) this.#writeEvent(w, 'ADDED', this.#wire(rt, o));
    } else {
      const key = this.#storeOf(rt);
      for (const ev of this.#history) {
        if (ev.rv > from && ev.key === key && matches(ev.object, filter)) this.#writeEvent(w, ev.type, this.#wire(rt, ev.object));
      }
    }
    this.#watchers.add(w);
    res.on('close', () => this.#endWatch(w));
    const timeout = Number(query.timeoutSeconds ?? '');
    if (Number.isFinite(timeout) && timeout > 0) w.timers.push(setTimeout(() => this.#endWatch(w), timeout * 1000));
    if (w.bookmarks && this.#bookmarkIntervalMs !== undefined) {
      const tick = (): void => {
        if (!this.#watchers.has(w)) return;
        this.#sendBookmark(w);
        w.timers.push(setTimeout(tick, this.#bookmarkIntervalMs));
      };
      w.timers.push(setTimeout(tick, this.#bookmarkIntervalMs));
    }
  }

  // ------------------------------------------------------------------------------------------- HTTP

  #sendJson(res: http.ServerResponse, entry: RequestLogEntry | undefined, code: number, body: unknown, headers: Record<string, string> = {}): void {
    if (entry !== undefined) entry.status = code;
    const text = JSON.stringify(body);
    const send = (): void => {
      if (res.destroyed) return;
      res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
      res.end(text);
    };
    const late = this.#answerDelay;
    if (late !== undefined && late.ms > 0 && (late.plural === undefined || entry?.path.split('/').includes(late.plural) === true)) {
      setTimeout(send, late.ms);
    } else {
      send();
    }
  }

  #discovery(segments: string[]): unknown {
    const [root, a, b] = segments;
    if (root === 'api' && a === undefined) return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] };
    if (root === 'apis' && a === undefined) {
      const groups = new Map<string, Set<string>>();
      for (const rt of this.#types.values()) {
        if (rt.group === '') continue;
        const s = groups.get(rt.group);
        if (s === undefined) groups.set(rt.group, new Set([rt.version]));
        else s.add(rt.version);
      }
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups].map(([name, versions]) => {
          const vs = [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
          return { name, versions: vs, preferredVersion: vs[0] };
        }),
      };
    }
    const group = root === 'api' ? '' : (a ?? '');
    const version = root === 'api' ? (a ?? '') : (b ?? '');
    const resources = [...this.#types.values()].filter((rt) => rt.group === group && rt.version === version);
    if (resources.length === 0) return undefined;
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group === '' ? version : `${group}/${version}`,
      resources: resources.flatMap((rt) => [
        {
          name: rt.plural,
          singularName: rt.singular,
          namespaced: rt.namespaced,
          kind: rt.kind,
          verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
          ...(rt.shortNames === undefined ? {} : { shortNames: rt.shortNames }),
          ...(rt.categories === undefined ? {} : { categories: rt.categories }),
        },
        ...(rt.statusSubresource
          ? [{ name: `${rt.plural}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['get', 'patch', 'update'] }]
          : []),
      ]),
    };
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const method = (req.method ?? 'GET').toUpperCase();
    const contentType = req.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
    const watch = query.watch === 'true' || query.watch === '1';
    const entry: RequestLogEntry = {
      method,
      path: url.pathname,
      query,
      contentType,
      watch,
      status: 0,
      started: ++this.#seq,
      ended: 0,
      at: Date.now(),
      endedAt: 0,
    };
    this.#log.push(entry);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    // The latency of a real apiserver (network, admission, etcd): each request waits on its own, so requests
    // that arrive together are answered together.
    if (this.#delayMs > 0) await new Promise((r) => setTimeout(r, this.#delayMs));
    if (res.destroyed) return;
    try {
      this.#route(method, url.pathname, query, contentType, raw, watch, entry, res);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `Internal error occurred: ${String(err)}`);
      if (res.headersSent) {
        res.end();
      } else {
        this.#sendJson(res, entry, e.code, e.toStatus());
      }
    }
    entry.ended = ++this.#seq;
    entry.endedAt = Date.now();
  }

  #route(
    method: string,
    pathname: string,
    query: Record<string, string>,
    contentType: string | undefined,
    raw: string,
    watch: boolean,
    entry: RequestLogEntry,
    res: http.ServerResponse,
  ): void {
    const segments = pathname
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
    const notFoundPath = (): ApiError => new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const [root] = segments;
    if (root === 'version' && segments.length === 1 && method === 'GET') {
      // kubectl asks first; a version.Info with nothing in it that a client could mistake for a real release.
      this.#sendJson(res, entry, 200, { major: '1', minor: '32', gitVersion: 'v1.32.0-fake', platform: 'linux/amd64' });
      return;
    }
    if (root !== 'api' && root !== 'apis') throw notFoundPath();
    const prefixLen = root === 'api' ? 2 : 3;
    if (segments.length < prefixLen || (root === 'apis' && segments.length === 2)) {
      if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      const d = this.#discovery(segments);
      if (d === undefined) throw notFoundPath();
      this.#sendJson(res, entry, 200, d);
      return;
    }
    if (segments.length === prefixLen) {
      const d = this.#discovery(segments);
      if (d === undefined) throw notFoundPath();
      if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      this.#sendJson(res, entry, 200, d);
      return;
    }
    const group = root === 'api' ? '' : (segments[1] ?? '');
    const version = root === 'api' ? (segments[1] ?? '') : (segments[2] ?? '');
    const rest = segments.slice(prefixLen);
    let namespace: string | undefined;
    let plural: string | undefined;
    let name: string | undefined;
    let sub: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      [, namespace, plural, name, sub] = rest;
      if (rest.length > 5) throw notFoundPath();
    } else if (rest.length >= 1 && rest.length <= 3) {
      // A collection across namespaces, or a cluster-scoped object (and its status).
      [plural, name, sub] = rest;
    } else {
      throw notFoundPath();
    }
    if (plural !== undefined && namespace === undefined && name === undefined) {
      const review = this.reviews.answer(method, group, version, plural, raw);
      if (review !== undefined) {
        this.#sendJson(res, entry, review.code, review.body);
        return;
      }
    }
    const rt = plural === undefined ? undefined : this.#types.get(typeKey(group, version, plural));
    if (rt === undefined) throw notFoundPath();
    // A namespaced object is only addressed through its namespace; a cluster-scoped one never is.
    if (rt.namespaced ? name !== undefined && namespace === undefined : namespace !== undefined) throw notFoundPath();
    if (sub !== undefined && (sub !== 'status' || !rt.statusSubresource)) throw notFoundPath();

    const failure = this.#failures.find(
      (f) =>
        f.times > 0 &&
        (f.method === undefined || (typeof f.method === 'string' ? f.method === method : f.method.includes(method))) &&
        (f.plural === undefined || f.plural === rt.plural) &&
        (f.namespace === undefined || f.namespace === namespace) &&
        (f.subresource === undefined || (f.subresource === 'status') === (sub === 'status')) &&
        (f.watch === undefined || f.watch === watch),
    );
    if (failure !== undefined) {
      failure.times -= 1;
      if (failure.code === 409 && (failure.reason ?? 'Conflict') === 'Conflict' && failure.message === undefined) throw conflict(rt, name ?? '');
      throw new ApiError(failure.code, failure.reason ?? 'InternalError', failure.message ?? `injected failure (${failure.code})`);
    }

    const dryRun = query.dryRun === 'All';
    const strict = query.fieldValidation === 'Strict';
    const body = (): unknown => {
      if (raw.trim() === '') throw badRequest('the request body is empty');
      try {
        return JSON.parse(raw);
      } catch (err) {
        throw badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
      }
    };
    const needJson = (): void => {
      if (contentType !== undefined && contentType !== 'application/json') {
        throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json`);
      }
    };
    // The apiserver answers a request whose unknown fields it pruned with one Warning header per field.
    this.#lastDropped = [];
    const warnings = (): Record<string, string> =>
      this.#lastDropped.length === 0 ? {} : { Warning: this.#lastDropped.map((f) => `299 - "unknown field \\"${f}\\""`).join(', ') };

    if (name === undefined) {
      // Collection.
      if (method === 'GET') {
        const filter: Filter = {
          namespace,
          labels: parseLabelSelector(query.labelSelector),
          fields: parseFieldSelector(query.fieldSelector, rt),
          ...(rt.fieldLabels === undefined ? {} : { fieldLabels: rt.fieldLabels }),
        };
        if (watch) {
          this.#startWatch(rt, filter, query, res);
          entry.status = 200;
          return;
        }
        const items = this.#select(rt, filter).map((o) => {
          const c = this.#wire(rt, o);
          // Typed (built-in) lists carry no kind/apiVersion per item; unstructured (custom resource) lists do.
          if (rt.custom) return c;
          const { kind: _kind, apiVersion: _apiVersion, ...item } = c;
          return item;
        });
        this.#sendJson(res, entry, 200, {
          kind: `${rt.kind}List`,
          apiVersion: apiVersionOf(rt),
          metadata: { resourceVersion: String(this.#rv) },
          items,
        });
        return;
      }
      if (method === 'POST' && (namespace !== undefined || !rt.namespaced)) {
        needJson();
        const b = body();
        if (!isObject(b)) throw badRequest('the body of the request must be an object');
        const created = this.#wire(rt, this.#create(rt, namespace ?? '', b, { dryRun, strict }));
        this.#sendJson(res, entry, 201, created, warnings());
        return;
      }
      throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    if (namespace === undefined && rt.namespaced) throw notFoundPath();
    namespace ??= '';
    const subresource = sub === 'status' ? 'status' : 'main';
    switch (method) {
      case 'GET': {
        const o = this.#bucket(rt).get(`${namespace}/${name}`);
        if (o === undefined) throw notFound(rt, name);
        this.#sendJson(res, entry, 200, this.#wire(rt, o));
        return;
      }
      case 'PUT': {
        needJson();
        const b = body();
        if (!isObject(b)) throw badRequest('the body of the request must be an object');
        const existed = this.#bucket(rt).has(`${namespace}/${name}`);
        const out = this.#wire(rt, this.#put(rt, namespace, name, b, subresource, { dryRun, strict }));
        this.#sendJson(res, entry, existed ? 200 : 201, out, warnings());
        return;
      }
      case 'PATCH': {
        const type = contentType === undefined ? undefined : PATCH_TYPES[contentType];
        if (type === undefined || (type === 'strategic' && rt.custom)) {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json${
              rt.custom ? '' : ', application/strategic-merge-patch+json'
            }`,
          );
        }
        const out = this.#wire(rt, this.#patch(rt, namespace, name, type === 'strategic' ? 'merge' : type, body(), subresource, { dryRun, strict }));
        this.#sendJson(res, entry, 200, out, warnings());
        return;
      }
      case 'DELETE': {
        if (subresource === 'status') break;
        let options: JsonObject = {};
        if (raw.trim() !== '') {
          const b = body();
          if (isObject(b)) options = b;
        }
        const r = this.#delete(rt, namespace, name, options, { dryRun: dryRun || (Array.isArray(options.dryRun) && options.dryRun.includes('All')) });
        if (!r.deleted) {
          const accepted = options.orphanDependents === false;
          this.#sendJson(res, entry, accepted ? 202 : 200, this.#wire(rt, r.object));
          return;
        }
        this.#sendJson(res, entry, 200, {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name, group: rt.group, kind: rt.plural, uid: meta(r.object).uid },
        });
        return;
      }
      default:
        break;
    }
    throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
  }
}
