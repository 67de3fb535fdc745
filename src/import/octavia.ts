// `nslb import octavia FILE…`: Octavia's JSON → nslb objects. Pure: JSON values in, objects and warnings out.
//
// Octavia's data comes in several shapes, and a migration usually has a mix of them:
//   - the v2 API's responses: `{"loadbalancer": {…}}`, `{"listeners": […]}`, `{"members": […]}`, `{"rules": […]}`…
//     (GET /v2/lbaas/loadbalancers/{id}, /listeners, /pools, /pools/{id}/members, /healthmonitors,
//     /l7policies, /l7policies/{id}/rules), and fully populated create bodies (objects nested in objects);
//   - the status tree (`GET …/loadbalancers/{id}/status` or `openstack loadbalancer status show`): the only
//     place that says which pool a member belongs to when members are listed on their own;
//   - the openstack CLI's `show -f json` (a bare object) and `list -f json` (a bare array, fewer columns).
// Every object is indexed by id and its relations are taken from whichever side names them. Each nslb field is
// mapped from its Octavia field; a field nslb has no place for produces a warning naming the object and the
// field. An object that cannot be built (a required field missing, UDP, a value the schema refuses) is skipped
// with a warning, and so is everything under it: the output always validates.
import { MAX_ADDITIONAL_VIPS } from '../api/v1alpha1/schemas.js';
import { API_VERSION, type AnyObject, type Kind } from '../api/v1alpha1/types.js';
import { formatIssue, validateObject } from '../api/v1alpha1/validate.js';

export class OctaviaInputError extends Error {
  constructor(
    readonly file: string,
    readonly path: string,
    message: string,
  ) {
    super(`${file}: ${path === '' ? '' : `${path}: `}${message}`);
    this.name = 'OctaviaInputError';
  }
}

export interface OctaviaInput {
  file: string;
  /** The parsed JSON. */
  value: unknown;
}

export interface ImportOptions {
  /** metadata.namespace of every object (default `default`). */
  namespace?: string;
}

export interface ImportResult {
  objects: AnyObject[];
  warnings: string[];
  /** Octavia objects that could not be imported (each also has a warning). */
  skipped: number;
}

type OKind = 'loadbalancer' | 'listener' | 'pool' | 'member' | 'healthmonitor' | 'l7policy' | 'l7rule';
type Json = Record<string, unknown>;

interface Rec {
  kind: OKind;
  id: string;
  raw: Json;
  /** Where it was read (file and JSON path), for error messages. */
  where: string;
  /** Only the status tree named it: ids, names, addresses, no configuration. */
  partial: boolean;
  /** Parent id from nesting or the status tree. */
  parent?: string;
}

const WRAPPERS: Record<string, OKind> = {
  loadbalancer: 'loadbalancer',
  loadbalancers: 'loadbalancer',
  listener: 'listener',
  listeners: 'listener',
  pool: 'pool',
  pools: 'pool',
  member: 'member',
  members: 'member',
  healthmonitor: 'healthmonitor',
  healthmonitors: 'healthmonitor',
  l7policy: 'l7policy',
  l7policies: 'l7policy',
  rule: 'l7rule',
  rules: 'l7rule',
  l7rule: 'l7rule',
  l7rules: 'l7rule',
};

const KIND_OF: Record<OKind, Kind> = {
  loadbalancer: 'LoadBalancer',
  listener: 'Listener',
  pool: 'Pool',
  member: 'Member',
  healthmonitor: 'HealthMonitor',
  l7policy: 'L7Policy',
  l7rule: 'L7Rule',
};

const NAME_PREFIX: Record<OKind, string> = {
  loadbalancer: 'lb',
  listener: 'listener',
  pool: 'pool',
  member: 'member',
  healthmonitor: 'hm',
  l7policy: 'l7policy',
  l7rule: 'l7rule',
};

/** The openstack CLI's commands that print an object in full, for "run this" hints. */
const SHOW: Record<OKind, string> = {
  loadbalancer: 'openstack loadbalancer show',
  listener: 'openstack loadbalancer listener show',
  pool: 'openstack loadbalancer pool show',
  member: 'openstack loadbalancer member show POOL',
  healthmonitor: 'openstack loadbalancer healthmonitor show',
  l7policy: 'openstack loadbalancer l7policy show',
  l7rule: 'openstack loadbalancer l7rule show POLICY',
};

// Fields read as structure or status, never warned about.
const STRUCTURAL = new Set([
  'id', 'name', 'project_id', 'tenant_id', 'created_at', 'updated_at', 'provisioning_status', 'operating_status',
  'listeners', 'pools', 'loadbalancers', 'loadbalancer_id', 'members', 'healthmonitor', 'healthmonitor_id',
  'l7policies', 'rules', 'listener_id', 'pool_id', 'l7policy_id', 'default_pool', 'tags',
]);

// ---------------------------------------------------------------------------------------------------------
// JSON text → value, with line and column on a syntax error.

export function parseOctaviaJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = /position (\d+)/.exec(message);
    if (pos === null) throw new OctaviaInputError(file, '', `not valid JSON: ${message}`);
    const before = text.slice(0, Number(pos[1]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    throw new OctaviaInputError(file, '', `not valid JSON at line ${line}, column ${column}: ${message.replace(/ in JSON at position \d+.*$/, '')}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Collecting records from every shape.

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function guessKind(o: Json): OKind | undefined {
  if ('vip_address' in o || 'vip_subnet_id' in o || 'vip_port_id' in o) return 'loadbalancer';
  if ('lb_algorithm' in o) return 'pool';
  if ('compare_type' in o) return 'l7rule';
  if ('action' in o && ('listener_id' in o || 'position' in o || 'redirect_url' in o || 'redirect_pool_id' in o)) return 'l7policy';
  if ('max_retries' in o || ('delay' in o && 'timeout' in o) || 'expected_codes' in o) return 'healthmonitor';
  if ('protocol_port' in o && ('protocol' in o || 'default_pool_id' in o || 'timeout_client_data' in o)) return 'listener';
  if ('address' in o && 'protocol_port' in o) return 'member';
  return undefined;
}

/** Ids from `[{"id": …}]`, `["…"]`, or the openstack CLI's newline- or comma-separated string. */
function idList(v: unknown): string[] {
  if (typeof v === 'string') return v.split(/[\s,]+/).filter((s) => s !== '');
  if (!Array.isArray(v)) return [];
  return v.flatMap((e) => (typeof e === 'string' ? [e] : isObj(e) && typeof e['id'] === 'string' ? [e['id']] : []));
}

class Collector {
  readonly recs = new Map<string, Rec>();
  /** Relations from the status tree and nesting: child id → parent id, per child kind. */
  readonly parentOf = new Map<string, string>();
  readonly #synthetic = new Map<OKind, number>();

  add(kind: OKind, raw: Json, where: string, opts: { partial?: boolean; parent?: string } = {}): string {
    let id = typeof raw['id'] === 'string' && raw['id'] !== '' ? raw['id'] : undefined;
    if (id === undefined) {
      const n = (this.#synthetic.get(kind) ?? 0) + 1;
      this.#synthetic.set(kind, n);
      id = `new-${kind}-${n}`;
    }
    const key = `${kind}:${id}`;
    const prev = this.recs.get(key);
    if (prev === undefined) {
      this.recs.set(key, { kind, id, raw, where, partial: opts.partial === true });
    } else if (opts.partial !== true) {
      // A full record wins over the status tree's; two full records merge, the later one's fields on top.
      this.recs.set(key, { kind, id, raw: { ...prev.raw, ...raw }, where, partial: false });
    }
    if (opts.parent !== undefined && !this.parentOf.has(key)) this.parentOf.set(key, opts.parent);
    return id;
  }

  /** A full object, and any full objects nested in it (fully populated create bodies and responses). */
  full(kind: OKind, raw: Json, where: string, parent?: string): string {
    const id = this.add(kind, raw, where, parent === undefined ? {} : { parent });
    const nested: [string, OKind][] =
      kind === 'loadbalancer' ? [['listeners', 'listener'], ['pools', 'pool']]
      : kind === 'listener' ? [['l7policies', 'l7policy']]
      : kind === 'pool' ? [['members', 'member']]
      : kind === 'l7policy' ? [['rules', 'l7rule']]
      : [];
    for (const [field, childKind] of nested) {
      const v = raw[field];
      if (!Array.isArray(v)) continue;
      v.forEach((child, i) => {
        // `[{"id": …}]` is a reference, not a nested object.
        if (isObj(child) && Object.keys(child).some((k) => k !== 'id')) this.full(childKind, child, `${where}.${field}[${i}]`, id);
      });
    }
    if (kind === 'listener' && isObj(raw['default_pool'])) {
      const poolId = this.full('pool', raw['default_pool'], `${where}.default_pool`);
      const listener = this.recs.get(`listener:${id}`)!;
      if (typeof listener.raw['default_pool_id'] !== 'string') listener.raw = { ...listener.raw, default_pool_id: poolId };
    }
    if (kind === 'pool' && isObj(raw['healthmonitor']) && Object.keys(raw['healthmonitor']).length > 1) {
      this.full('healthmonitor', raw['healthmonitor'], `${where}.healthmonitor`, id);
    }
    return id;
  }

  /** The status tree: ids, names and relations. */
  statusTree(lb: Json, where: string): void {
    const lbId = this.add('loadbalancer', lb, where, { partial: true });
    const pool = (p: unknown, path: string): void => {
      if (!isObj(p)) return;
      const poolId = this.add('pool', p, path, { partial: true, parent: lbId });
      const hm = p['healthmonitor'] ?? p['health_monitor'];
      if (isObj(hm) && typeof hm['id'] === 'string') this.add('healthmonitor', hm, `${path}.healthmonitor`, { partial: true, parent: poolId });
      arr(p['members']).forEach((m, i) => {
        if (isObj(m)) this.add('member', m, `${path}.members[${i}]`, { partial: true, parent: poolId });
      });
    };
    arr(lb['listeners']).forEach((l, i) => {
      if (!isObj(l)) return;
      const path = `${where}.listeners[${i}]`;
      const listenerId = this.add('listener', l, path, { partial: true, parent: lbId });
      arr(l['pools']).forEach((p, j) => pool(p, `${path}.pools[${j}]`));
      arr(l['l7policies']).forEach((p, j) => {
        if (!isObj(p)) return;
        const policyId = this.add('l7policy', p, `${path}.l7policies[${j}]`, { partial: true, parent: listenerId });
        arr(p['rules']).forEach((r, k) => {
          if (isObj(r)) this.add('l7rule', r, `${path}.l7policies[${j}].rules[${k}]`, { partial: true, parent: policyId });
        });
      });
    });
    arr(lb['pools']).forEach((p, i) => pool(p, `${where}.pools[${i}]`));
  }
}

const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A status tree's load balancer: listeners carry pools/l7policies, and there is no VIP. */
function isStatusTree(lb: Json): boolean {
  if ('vip_address' in lb) return false;
  return arr(lb['listeners']).some((l) => isObj(l) && ('pools' in l || 'l7policies' in l)) || (!('vip_address' in lb) && 'operating_status' in lb && Array.isArray(lb['pools']) && arr(lb['pools']).some((p) => isObj(p) && 'members' in p));
}

function collect(c: Collector, input: OctaviaInput): void {
  const { file, value } = input;
  const fail = (path: string, message: string): never => {
    throw new OctaviaInputError(file, path, message);
  };
  const bare = (o: unknown, path: string): void => {
    if (!isObj(o)) fail(path, `expected an Octavia object, got ${Array.isArray(o) ? 'an array' : JSON.stringify(o)}`);
    const kind = guessKind(o as Json);
    if (kind === undefined) fail(path, 'cannot tell which Octavia object this is (no vip_address, lb_algorithm, protocol_port, address, delay, action or compare_type)');
    c.full(kind!, o as Json, path);
  };
  if (Array.isArray(value)) {
    value.forEach((o, i) => bare(o, `$[${i}]`));
    return;
  }
  if (!isObj(value)) fail('$', 'expected a JSON object or array');
  const v = value as Json;
  if (isObj(v['statuses']) && isObj(v['statuses']['loadbalancer'])) {
    c.statusTree(v['statuses']['loadbalancer'], '$.statuses.loadbalancer');
    return;
  }
  // The CLI's `show -f json` prints the object itself, whose own fields (pools, listeners…) look like wrappers.
  const wrappers = guessKind(v) === undefined ? Object.keys(v).filter((k) => k in WRAPPERS) : [];
  if (wrappers.length === 0) {
    bare(v, '$');
    return;
  }
  for (const key of wrappers) {
    const kind = WRAPPERS[key]!;
    const inner = v[key];
    const path = `$.${key}`;
    if (Array.isArray(inner)) {
      inner.forEach((o, i) => {
        if (!isObj(o)) fail(`${path}[${i}]`, `expected an object, got ${JSON.stringify(o)}`);
        if (kind === 'loadbalancer' && isStatusTree(o as Json)) c.statusTree(o as Json, `${path}[${i}]`);
        else c.full(kind, o as Json, `${path}[${i}]`);
      });
    } else if (isObj(inner)) {
      if (kind === 'loadbalancer' && isStatusTree(inner)) c.statusTree(inner, path);
      else c.full(kind, inner, path);
    } else {
      fail(path, `expected an object or an array of objects, got ${JSON.stringify(inner)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Names: DNS-1123 labels, unique per kind.

export function sanitizeName(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .slice(0, 63)
    .replace(/^-+|-+$/g, '');
}

function shortId(id: string): string {
  const s = sanitizeName(id.replace(/-/g, ''));
  return s.slice(0, 8) || 'x';
}

// ---------------------------------------------------------------------------------------------------------
// Building nslb objects.

const DEFAULT_TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'];
const DEFAULT_ALPN = ['h2', 'http/1.1', 'http/1.0'];
const LISTENER_PROTOCOLS = ['TCP', 'HTTP', 'HTTPS', 'TERMINATED_HTTPS'];
const POOL_PROTOCOLS = ['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'];
const MONITOR_TYPES = ['PING', 'TCP', 'HTTP', 'HTTPS', 'TLS-HELLO'];
const RULE_TYPES = ['HOST_NAME', 'PATH', 'FILE_TYPE', 'HEADER', 'COOKIE'];
const INSERT_HEADERS = [
  'X-Forwarded-For', 'X-Forwarded-Port', 'X-Forwarded-Proto', 'X-SSL-Client-Verify', 'X-SSL-Client-Has-Cert', 'X-SSL-Client-DN',
  'X-SSL-Client-CN', 'X-SSL-Issuer', 'X-SSL-Client-SHA1', 'X-SSL-Client-Not-Before', 'X-SSL-Client-Not-After',
];

const set = (v: unknown): boolean => v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);
const sameList = (a: unknown, b: string[]): boolean => Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);

function truthy(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  return undefined;
}

/** insert_headers as the API gives it (an object of "true" strings) or as the CLI prints it ("K=V, K=V"). */
function headerMap(v: unknown): Record<string, unknown> {
  if (isObj(v)) return v;
  if (typeof v !== 'string') return {};
  return Object.fromEntries(
    v.split(/[,\n]/).map((p) => p.trim()).filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()]),
  );
}

class Builder {
  readonly warnings: string[] = [];
  readonly objects: AnyObject[] = [];
  skipped = 0;
  readonly #recs: Map<string, Rec>;
  readonly #parentOf: Map<string, string>;
  readonly #namespace: string;
  /** kind:id → nslb name, for objects that were emitted. */
  readonly #emitted = new Map<string, string>();
  readonly #names = new Map<string, string>();

  constructor(c: Collector, namespace: string) {
    this.#recs = c.recs;
    this.#parentOf = c.parentOf;
    this.#namespace = namespace;
    this.#assignNames();
  }

  #label(r: Rec): string {
    const name = typeof r.raw['name'] === 'string' && r.raw['name'] !== '' ? `${JSON.stringify(r.raw['name'])} ` : '';
    return `${r.kind} ${name}(${r.id})`;
  }

  warn(r: Rec, field: string, message: string): void {
    this.warnings.push(`${this.#label(r)}: ${field}: ${message}`);
  }

  #skip(r: Rec, message: string): undefined {
    this.skipped++;
    this.warnings.push(`${this.#label(r)}: skipped: ${message}`);
    return undefined;
  }

  #assignNames(): void {
    const byKind = new Map<OKind, Rec[]>();
    for (const r of this.#recs.values()) byKind.set(r.kind, [...(byKind.get(r.kind) ?? []), r]);
    for (const [kind, recs] of byKind) {
      const wanted = new Map<Rec, string>();
      for (const r of recs) {
        const raw = typeof r.raw['name'] === 'string' ? r.raw['name'] : '';
        const clean = sanitizeName(raw);
        // Objects of a create body have no id yet: numbered in input order.
        const fallback = r.id.startsWith('new-') ? `${NAME_PREFIX[kind]}-${r.id.slice(r.id.lastIndexOf('-') + 1)}` : `${NAME_PREFIX[kind]}-${shortId(r.id)}`;
        wanted.set(r, clean === '' ? fallback : clean);
        if (raw !== '' && clean !== raw) this.warn(r, 'name', `${JSON.stringify(raw)} is not a DNS-1123 label: named ${clean === '' ? wanted.get(r) : clean}`);
      }
      const counts = new Map<string, number>();
      for (const n of wanted.values()) counts.set(n, (counts.get(n) ?? 0) + 1);
      for (const [r, n] of wanted) {
        let name = n;
        if ((counts.get(n) ?? 0) > 1) {
          name = `${n.slice(0, 54).replace(/-+$/, '')}-${shortId(r.id)}`;
          this.warn(r, 'name', `${JSON.stringify(n)} is not unique among ${kind}s: named ${name}`);
        }
        this.#names.set(`${kind}:${r.id}`, name);
      }
    }
  }

  #recsOf(kind: OKind): Rec[] {
    return [...this.#recs.values()].filter((r) => r.kind === kind);
  }

  #rec(kind: OKind, id: string | undefined): Rec | undefined {
    return id === undefined ? undefined : this.#recs.get(`${kind}:${id}`);
  }

  /** The parent's id: from the record's own field, from the parent's list of children, or from nesting / status tree. */
  #parent(r: Rec, parentKind: OKind, ownField: string[], childList: string): string | undefined {
    for (const f of ownField) {
      const v = r.raw[f];
      if (typeof v === 'string' && v !== '') return v;
      const ids = idList(v);
      if (ids.length > 0) return ids[0];
    }
    for (const p of this.#recsOf(parentKind)) if (idList(p.raw[childList]).includes(r.id)) return p.id;
    return this.#parentOf.get(`${r.kind}:${r.id}`);
  }

  /** The name of an emitted parent, or undefined after a warning (and the child is skipped). */
  #emittedParent(r: Rec, kind: OKind, id: string | undefined, what: string): string | undefined {
    if (id === undefined) {
      const only = this.#recsOf(kind);
      if (only.length === 1) {
        this.warn(r, what, `not named in the input; assumed the only ${kind}, ${this.#label(only[0]!)}`);
        id = only[0]!.id;
      } else {
        return this.#skip(r, `cannot tell its ${kind} (pass the ${kind}'s JSON or the status tree, \`openstack loadbalancer status show LB -f json\`)`);
      }
    }
    const name = this.#emitted.get(`${kind}:${id}`);
    if (name !== undefined) return name;
    return this.#skip(r, this.#rec(kind, id) === undefined ? `its ${kind} ${id} is not in the input` : `its ${this.#label(this.#rec(kind, id)!)} was not imported`);
  }

  #meta(r: Rec): AnyObject['metadata'] {
    const annotations: Record<string, string> = {};
    if (!r.id.startsWith('new-')) annotations['octavia.openstack.org/id'] = r.id;
    const project = r.raw['project_id'];
    if (typeof project === 'string' && project !== '') annotations['octavia.openstack.org/project-id'] = project;
    const tags = r.raw['tags'];
    const tagList = Array.isArray(tags) ? tags.map(String) : typeof tags === 'string' && tags !== '' ? tags.split(/[\s,]+/) : [];
    if (tagList.length > 0) {
      annotations['octavia.openstack.org/tags'] = tagList.join(',');
      this.warn(r, 'tags', 'nslb has no tags: kept in the annotation octavia.openstack.org/tags, which nslb does not use');
    }
    return { name: this.#names.get(`${r.kind}:${r.id}`)!, namespace: this.#namespace, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) };
  }

  /** Warn about every field of the record that no mapping consumed. */
  #leftovers(r: Rec, used: ReadonlySet<string>, notes: Record<string, string> = {}): void {
    for (const [field, value] of Object.entries(r.raw)) {
      if (STRUCTURAL.has(field) || used.has(field) || !set(value)) continue;
      this.warn(r, field, notes[field] ?? `${JSON.stringify(value)} has no nslb equivalent; dropped`);
    }
  }

  #emit(r: Rec, doc: { kind: Kind; metadata: AnyObject['metadata']; spec: Record<string, unknown> }): string | undefined {
    const object = { apiVersion: API_VERSION, kind: doc.kind, metadata: doc.metadata, spec: doc.spec };
    const result = validateObject(object);
    if (!result.ok) return this.#skip(r, `the nslb ${doc.kind} would be invalid: ${result.issues.map(formatIssue).join('; ')}`);
    this.objects.push(object as unknown as AnyObject);
    this.#emitted.set(`${r.kind}:${r.id}`, doc.metadata.name);
    return doc.metadata.name;
  }

  #partial(r: Rec): boolean {
    if (!r.partial) return false;
    this.#skip(r, `only the status tree names it, without its configuration: pass \`${SHOW[r.kind]} ${r.id} -f json\` too`);
    return true;
  }

  #number(r: Rec, field: string): number | undefined {
    const v = r.raw[field];
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'number' ? v : Number(v);
    return Number.isFinite(n) ? n : undefined;
  }

  #string(r: Rec, field: string): string | undefined {
    const v = r.raw[field];
    return typeof v === 'string' && v !== '' ? v : undefined;
  }

  #common(r: Rec, spec: Record<string, unknown>, used: Set<string>, description = true): void {
    if (r.raw['admin_state_up'] === false) spec['adminStateUp'] = false;
    used.add('admin_state_up');
    const d = this.#string(r, 'description');
    used.add('description');
    if (d === undefined) return;
    if (!description) {
      this.warn(r, 'description', 'nslb has no description on this kind; dropped');
      return;
    }
    const line = d.replace(/[\r\n\t]+/g, ' ').slice(0, 255);
    if (line !== d) this.warn(r, 'description', 'made one line of at most 255 characters');
    spec['description'] = line;
  }

  loadBalancer(r: Rec): void {
    if (this.#partial(r)) return;
    const used = new Set(['vip_address']);
    const address = this.#string(r, 'vip_address');
    if (address === undefined) return void this.#skip(r, 'no vip_address');
    const spec: Record<string, unknown> = { vip: { address } };
    this.#common(r, spec, used);
    this.warn(r, 'vip_subnet_id', `the VIP's Neutron subnet${set(r.raw['vip_subnet_id']) ? ` ${String(r.raw['vip_subnet_id'])}` : ''} is not known here: vip.prefixLength defaults to ${address.includes(':') ? 64 : 24} and there is no vip.gateway; set both from \`openstack subnet show\`, and vip.bridge / vip.vlan for this node`);
    used.add('vip_subnet_id');
    this.#additionalVips(r, spec, used);
    if (r.raw['provider'] !== undefined) used.add('provider');
    this.#leftovers(r, used, {
      vip_port_id: 'the Neutron port is not used: nslb plugs its own Open vSwitch port (vip.mac sets its MAC)',
      vip_network_id: 'Neutron networks are not used: the VIP port goes on vip.bridge (vip.vlan for a VLAN)',
      vip_qos_policy_id: 'QoS policies are not carried',
      flavor_id: 'flavors are not carried: every load balancer is one HAProxy in its own netns',
      availability_zone: 'availability zones are not carried: nslb serves a load balancer on the node whose agent reads it',
      vip_vnic_type: 'vNIC types are not carried',
      vip_sg_ids: 'security groups are not carried (Listener.allowedCidrs restricts sources)',
    });
    this.#emit(r, { kind: 'LoadBalancer', metadata: this.#meta(r), spec });
  }

  /** additional_vips [{subnet_id, ip_address}] → spec.additionalVips [{address}]; subnets are not known here. */
  #additionalVips(r: Rec, spec: Record<string, unknown>, used: Set<string>): void {
    const raw = r.raw['additional_vips'];
    if (!Array.isArray(raw) || raw.length === 0) return;
    used.add('additional_vips');
    const addresses = raw
      .map((v: unknown) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)['ip_address'] : undefined))
      .filter((a): a is string => typeof a === 'string' && a !== '');
    const kept = addresses.slice(0, MAX_ADDITIONAL_VIPS);
    if (kept.length > 0) spec['additionalVips'] = kept.map((address) => ({ address }));
    if (kept.length < raw.length) {
      this.warn(r, 'additional_vips', `${raw.length - kept.length} without an ip_address or beyond nslb's ${MAX_ADDITIONAL_VIPS} dropped`);
    }
    if (kept.length > 0) {
      this.warn(r, 'additional_vips', 'their Neutron subnets are not known here: each prefixLength defaults to 24 (IPv4) / 64 (IPv6) and there is no gateway; set them from `openstack subnet show`');
    }
  }

  pool(r: Rec): void {
    if (this.#partial(r)) return;
    const used = new Set(['protocol', 'lb_algorithm', 'session_persistence', 'tls_enabled', 'tls_container_ref', 'ca_tls_container_ref', 'crl_container_ref', 'tls_versions', 'tls_ciphers', 'alpn_protocols']);
    // A pool names its load balancer, or is reached through one of its listeners.
    let lbId = this.#parent(r, 'loadbalancer', ['loadbalancers', 'loadbalancer_id'], 'pools');
    if (lbId === undefined) {
      const listenerId = idList(r.raw['listeners'])[0] ?? this.#recsOf('listener').find((l) => l.raw['default_pool_id'] === r.id)?.id;
      const listener = this.#rec('listener', listenerId);
      if (listener !== undefined) lbId = this.#parent(listener, 'loadbalancer', ['loadbalancers', 'loadbalancer_id'], 'listeners');
    }
    const lb = this.#emittedParent(r, 'loadbalancer', lbId, 'loadbalancers');
    if (lb === undefined) return;
    const protocol = this.#string(r, 'protocol');
    if (protocol === undefined || !POOL_PROTOCOLS.includes(protocol)) {
      return void this.#skip(r, `protocol ${JSON.stringify(protocol ?? null)} is not supported (nslb pools: ${POOL_PROTOCOLS.join(', ')})`);
    }
    let lbAlgorithm = this.#string(r, 'lb_algorithm');
    if (lbAlgorithm === 'SOURCE_IP_PORT') {
      this.warn(r, 'lb_algorithm', 'SOURCE_IP_PORT is not supported: SOURCE_IP used');
      lbAlgorithm = 'SOURCE_IP';
    }
    if (lbAlgorithm === undefined) return void this.#skip(r, `no lb_algorithm: pass \`${SHOW.pool} ${r.id} -f json\``);
    const spec: Record<string, unknown> = { loadBalancer: lb, protocol, lbAlgorithm };
    const sp = r.raw['session_persistence'];
    if (isObj(sp) && typeof sp['type'] === 'string') {
      spec['sessionPersistence'] = { type: sp['type'], ...(sp['type'] === 'APP_COOKIE' && typeof sp['cookie_name'] === 'string' ? { cookieName: sp['cookie_name'] } : {}) };
      for (const f of ['persistence_timeout', 'persistence_granularity']) {
        if (set(sp[f])) this.warn(r, `session_persistence.${f}`, 'UDP-only setting; dropped');
      }
      if (sp['type'] !== 'APP_COOKIE' && set(sp['cookie_name'])) this.warn(r, 'session_persistence.cookie_name', `only APP_COOKIE names a cookie; dropped for ${String(sp['type'])}`);
    }
    if (r.raw['tls_enabled'] === true) {
      const tls: Record<string, unknown> = { enabled: true };
      const name = this.#names.get(`pool:${r.id}`)!;
      if (set(r.raw['tls_container_ref'])) {
        Object.assign(tls, { certificateFile: `certs/${name}-client.crt`, keyFile: `certs/${name}-client.key` });
        this.warn(r, 'tls_container_ref', `Barbican secret ${String(r.raw['tls_container_ref'])}: put its client certificate and key (PEM) in certs/${name}-client.crt and certs/${name}-client.key`);
      }
      if (set(r.raw['ca_tls_container_ref'])) {
        tls['caFile'] = `certs/${name}-ca.pem`;
        this.warn(r, 'ca_tls_container_ref', `Barbican secret ${String(r.raw['ca_tls_container_ref'])}: put the CA bundle (PEM) in certs/${name}-ca.pem`);
      }
      if (set(r.raw['crl_container_ref'])) {
        tls['crlFile'] = `certs/${name}-crl.pem`;
        this.warn(r, 'crl_container_ref', `Barbican secret ${String(r.raw['crl_container_ref'])}: put the CRL (PEM) in certs/${name}-crl.pem`);
      }
      this.#tlsTuning(r, tls);
      spec['tls'] = tls;
    } else {
      for (const f of ['tls_container_ref', 'ca_tls_container_ref', 'crl_container_ref']) {
        if (set(r.raw[f])) this.warn(r, f, 'tls_enabled is false: not used');
      }
    }
    this.#common(r, spec, used);
    this.#leftovers(r, used);
    this.#emit(r, { kind: 'Pool', metadata: this.#meta(r), spec });
  }

  #tlsTuning(r: Rec, tls: Record<string, unknown>): void {
    const versions = r.raw['tls_versions'];
    if (Array.isArray(versions) && versions.length > 0 && !sameList(versions, DEFAULT_TLS_VERSIONS)) tls['versions'] = versions;
    const ciphers = this.#string(r, 'tls_ciphers');
    if (ciphers !== undefined) tls['ciphers'] = ciphers;
    const alpn = r.raw['alpn_protocols'];
    if (Array.isArray(alpn) && alpn.length > 0 && !sameList(alpn, DEFAULT_ALPN)) tls['alpnProtocols'] = alpn;
  }

  listener(r: Rec): void {
    if (this.#partial(r)) return;
    const used = new Set([
      'protocol', 'protocol_port', 'default_pool_id', 'connection_limit', 'timeout_client_data', 'timeout_member_connect',
      'timeout_member_data', 'timeout_tcp_inspect', 'insert_headers', 'allowed_cidrs', 'default_tls_container_ref',
      'sni_container_refs', 'client_authentication', 'client_ca_tls_container_ref', 'client_crl_container_ref',
      'tls_versions', 'tls_ciphers', 'alpn_protocols', 'hsts_max_age', 'hsts_include_subdomains', 'hsts_preload',
    ]);
    const lb = this.#emittedParent(r, 'loadbalancer', this.#parent(r, 'loadbalancer', ['loadbalancers', 'loadbalancer_id'], 'listeners'), 'loadbalancers');
    if (lb === undefined) return;
    const protocol = this.#string(r, 'protocol');
    if (protocol === undefined || !LISTENER_PROTOCOLS.includes(protocol)) {
      return void this.#skip(r, `protocol ${JSON.stringify(protocol ?? null)} is not supported (nslb listeners: ${LISTENER_PROTOCOLS.join(', ')})`);
    }
    const port = this.#number(r, 'protocol_port');
    if (port === undefined) return void this.#skip(r, 'no protocol_port');
    const spec: Record<string, unknown> = { loadBalancer: lb, protocol, port };
    const poolId = this.#string(r, 'default_pool_id') ?? (isObj(r.raw['default_pool']) ? (r.raw['default_pool']['id'] as string | undefined) : undefined);
    if (poolId !== undefined) {
      const pool = this.#emitted.get(`pool:${poolId}`);
      if (pool !== undefined) spec['defaultPool'] = pool;
      else this.warn(r, 'default_pool_id', `pool ${poolId} was not imported: no defaultPool (requests get 503)`);
    }
    const limit = this.#number(r, 'connection_limit');
    if (limit !== undefined && limit !== -1) spec['connectionLimit'] = limit;
    const timeouts: Record<string, number> = {};
    for (const [field, key, dflt] of [
      ['timeout_client_data', 'clientData', 50000],
      ['timeout_member_connect', 'memberConnect', 5000],
      ['timeout_member_data', 'memberData', 50000],
      ['timeout_tcp_inspect', 'tcpInspect', 0],
    ] as const) {
      const v = this.#number(r, field);
      if (v !== undefined && v !== dflt) timeouts[key] = v;
    }
    if (Object.keys(timeouts).length > 0) spec['timeouts'] = timeouts;
    const headers: Record<string, boolean> = {};
    for (const [h, v] of Object.entries(headerMap(r.raw['insert_headers']))) {
      if (!INSERT_HEADERS.includes(h)) {
        this.warn(r, `insert_headers.${h}`, `not a header nslb inserts (${INSERT_HEADERS.join(', ')}); dropped`);
        continue;
      }
      const b = truthy(v);
      if (b === undefined) this.warn(r, `insert_headers.${h}`, `${JSON.stringify(v)} is not true or false; dropped`);
      else if (b) headers[h] = true;
    }
    if (Object.keys(headers).length > 0) spec['insertHeaders'] = headers;
    const cidrs = r.raw['allowed_cidrs'];
    if (Array.isArray(cidrs) && cidrs.length > 0) spec['allowedCidrs'] = cidrs;
    if (protocol === 'TERMINATED_HTTPS') spec['tls'] = this.#listenerTls(r);
    else {
      for (const f of ['default_tls_container_ref', 'sni_container_refs', 'client_ca_tls_container_ref', 'client_crl_container_ref']) {
        if (set(r.raw[f])) this.warn(r, f, `only TERMINATED_HTTPS listeners use it; dropped for ${protocol}`);
      }
    }
    this.#common(r, spec, used);
    this.#leftovers(r, used);
    this.#emit(r, { kind: 'Listener', metadata: this.#meta(r), spec });
  }

  #listenerTls(r: Rec): Record<string, unknown> {
    const name = this.#names.get(`listener:${r.id}`)!;
    const tls: Record<string, unknown> = { certificateFile: `certs/${name}.crt`, keyFile: `certs/${name}.key` };
    this.warn(
      r,
      'default_tls_container_ref',
      `${set(r.raw['default_tls_container_ref']) ? `Barbican secret ${String(r.raw['default_tls_container_ref'])}` : 'no certificate given'}: put the certificate chain and key (PEM) in certs/${name}.crt and certs/${name}.key next to the YAML`,
    );
    const sni = idList(r.raw['sni_container_refs']);
    if (sni.length > 0) {
      tls['sniCertificates'] = sni.map((_, i) => ({ certificateFile: `certs/${name}-sni-${i + 1}.crt`, keyFile: `certs/${name}-sni-${i + 1}.key` }));
      sni.forEach((ref, i) => this.warn(r, `sni_container_refs[${i}]`, `Barbican secret ${ref}: put it (PEM) in certs/${name}-sni-${i + 1}.crt and .key`));
    }
    const auth = this.#string(r, 'client_authentication');
    if (auth !== undefined && auth !== 'NONE') tls['clientAuthentication'] = auth;
    if (set(r.raw['client_ca_tls_container_ref'])) {
      tls['clientCaFile'] = `certs/${name}-client-ca.pem`;
      this.warn(r, 'client_ca_tls_container_ref', `Barbican secret ${String(r.raw['client_ca_tls_container_ref'])}: put the client CA bundle (PEM) in certs/${name}-client-ca.pem`);
    }
    if (set(r.raw['client_crl_container_ref'])) {
      tls['clientCrlFile'] = `certs/${name}-client-crl.pem`;
      this.warn(r, 'client_crl_container_ref', `Barbican secret ${String(r.raw['client_crl_container_ref'])}: put the CRL (PEM) in certs/${name}-client-crl.pem`);
    }
    this.#tlsTuning(r, tls);
    const maxAge = this.#number(r, 'hsts_max_age');
    if (maxAge !== undefined) {
      tls['hsts'] = {
        maxAge,
        ...(r.raw['hsts_include_subdomains'] === true ? { includeSubdomains: true } : {}),
        ...(r.raw['hsts_preload'] === true ? { preload: true } : {}),
      };
    }
    return tls;
  }

  member(r: Rec): void {
    const used = new Set(['address', 'protocol_port', 'weight', 'backup', 'monitor_address', 'monitor_port']);
    const pool = this.#emittedParent(r, 'pool', this.#parent(r, 'pool', ['pool_id'], 'members'), 'pool_id');
    if (pool === undefined) return;
    const address = this.#string(r, 'address');
    const port = this.#number(r, 'protocol_port');
    if (address === undefined || port === undefined) return void this.#skip(r, 'no address or protocol_port');
    if (r.partial) this.warn(r, 'weight', 'only the status tree names this member: weight, backup, monitor and admin state are nslb\'s defaults');
    const spec: Record<string, unknown> = { pool, address, port };
    const weight = this.#number(r, 'weight');
    if (weight !== undefined && weight !== 1) spec['weight'] = weight;
    if (r.raw['backup'] === true) spec['backup'] = true;
    const monitorAddress = this.#string(r, 'monitor_address');
    if (monitorAddress !== undefined) spec['monitorAddress'] = monitorAddress;
    const monitorPort = this.#number(r, 'monitor_port');
    if (monitorPort !== undefined) spec['monitorPort'] = monitorPort;
    this.#common(r, spec, used);
    if (r.raw['vnic_type'] === 'normal') used.add('vnic_type');
    this.#leftovers(r, used, {
      subnet_id: 'Neutron subnets are not used: the member must be reachable from the VIP\'s bridge (or through vip.gateway)',
      vnic_type: 'vNIC types are not carried',
    });
    this.#emit(r, { kind: 'Member', metadata: this.#meta(r), spec });
  }

  healthMonitor(r: Rec): void {
    if (this.#partial(r)) return;
    const used = new Set(['type', 'delay', 'timeout', 'max_retries', 'max_retries_down', 'http_method', 'url_path', 'expected_codes', 'http_version', 'domain_name']);
    const poolId = this.#parent(r, 'pool', ['pools', 'pool_id'], 'healthmonitor_id');
    const pool = this.#emittedParent(r, 'pool', poolId, 'pools');
    if (pool === undefined) return;
    const type = this.#string(r, 'type');
    if (type === undefined || !MONITOR_TYPES.includes(type)) {
      return void this.#skip(r, `type ${JSON.stringify(type ?? null)} is not supported (nslb health monitors: ${MONITOR_TYPES.join(', ')})`);
    }
    const delay = this.#number(r, 'delay');
    let timeout = this.#number(r, 'timeout');
    const maxRetries = this.#number(r, 'max_retries');
    if (delay === undefined || timeout === undefined || maxRetries === undefined) {
      return void this.#skip(r, `delay, timeout and max_retries are required: pass \`${SHOW.healthmonitor} ${r.id} -f json\``);
    }
    if (timeout > delay) {
      this.warn(r, 'timeout', `${timeout} s is longer than delay (${delay} s), which nslb refuses: set to ${delay}`);
      timeout = delay;
    }
    const spec: Record<string, unknown> = { pool, type, delay, timeout, maxRetries };
    const down = this.#number(r, 'max_retries_down');
    if (down !== undefined && down !== 3) spec['maxRetriesDown'] = down;
    if (type === 'HTTP' || type === 'HTTPS') {
      const method = this.#string(r, 'http_method');
      if (method !== undefined && method !== 'GET') spec['httpMethod'] = method;
      const path = this.#string(r, 'url_path');
      if (path !== undefined && path !== '/') spec['urlPath'] = path;
      const codes = this.#string(r, 'expected_codes');
      if (codes !== undefined && codes !== '200') spec['expectedCodes'] = codes;
      const version = this.#number(r, 'http_version');
      if (version === 1.1) spec['httpVersion'] = '1.1';
      else if (version !== undefined && version !== 1) this.warn(r, 'http_version', `${version} is not 1.0 or 1.1; 1.0 used`);
      const domain = this.#string(r, 'domain_name');
      if (domain !== undefined) spec['domainName'] = domain;
    }
    this.#common(r, spec, used, false);
    this.#leftovers(r, used);
    this.#emit(r, { kind: 'HealthMonitor', metadata: this.#meta(r), spec });
  }

  l7Policy(r: Rec): void {
    if (this.#partial(r)) return;
    const used = new Set(['action', 'redirect_pool_id', 'redirect_url', 'redirect_prefix', 'redirect_http_code', 'position']);
    const listener = this.#emittedParent(r, 'listener', this.#parent(r, 'listener', ['listener_id'], 'l7policies'), 'listener_id');
    if (listener === undefined) return;
    // Rules are ANDed: dropping one would widen the policy (a REJECT without rules rejects everything).
    const rules = this.#recsOf('l7rule').filter((rule) => this.#parent(rule, 'l7policy', ['l7policy_id'], 'rules') === r.id);
    for (const rule of rules) {
      const problem = this.#ruleProblem(rule);
      if (problem !== undefined) return void this.#skip(r, `its rule ${this.#label(rule)} cannot be imported (${problem}), and a policy without one of its rules would match more than it does in Octavia`);
    }
    const action = this.#string(r, 'action');
    const spec: Record<string, unknown> = { listener, action };
    if (action === 'REDIRECT_TO_POOL') {
      const poolId = this.#string(r, 'redirect_pool_id');
      const pool = poolId === undefined ? undefined : this.#emitted.get(`pool:${poolId}`);
      if (pool === undefined) return void this.#skip(r, `its redirect pool ${poolId ?? '(none)'} was not imported`);
      spec['redirectPool'] = pool;
    }
    const url = this.#string(r, 'redirect_url');
    if (url !== undefined && action === 'REDIRECT_TO_URL') spec['redirectUrl'] = url;
    const prefix = this.#string(r, 'redirect_prefix');
    if (prefix !== undefined && action === 'REDIRECT_PREFIX') spec['redirectPrefix'] = prefix;
    const code = this.#number(r, 'redirect_http_code');
    if (code !== undefined && code !== 302 && (action === 'REDIRECT_TO_URL' || action === 'REDIRECT_PREFIX')) spec['redirectHttpCode'] = code;
    const position = this.#number(r, 'position');
    if (position !== undefined) spec['position'] = position;
    this.#common(r, spec, used);
    this.#leftovers(r, used);
    if (this.#emit(r, { kind: 'L7Policy', metadata: this.#meta(r), spec }) === undefined) return;
    for (const rule of rules) this.#l7Rule(rule, this.#emitted.get(`l7policy:${r.id}`)!);
  }

  #ruleProblem(r: Rec): string | undefined {
    if (r.partial) return `only the status tree names it: pass \`${SHOW.l7rule} ${r.id} -f json\``;
    const type = this.#string(r, 'type');
    if (type === undefined || !RULE_TYPES.includes(type)) return `type ${JSON.stringify(type ?? null)} is not supported (${RULE_TYPES.join(', ')})`;
    const result = validateObject({ apiVersion: API_VERSION, kind: 'L7Rule', metadata: { name: 'x' }, spec: this.#ruleSpec(r, 'x') });
    return result.ok ? undefined : result.issues.map(formatIssue).join('; ');
  }

  #ruleSpec(r: Rec, policy: string): Record<string, unknown> {
    const spec: Record<string, unknown> = { l7Policy: policy, type: r.raw['type'], compareType: r.raw['compare_type'], value: r.raw['value'] };
    const key = this.#string(r, 'key');
    if (key !== undefined) spec['key'] = key;
    if (r.raw['invert'] === true) spec['invert'] = true;
    if (r.raw['admin_state_up'] === false) spec['adminStateUp'] = false;
    return spec;
  }

  #l7Rule(r: Rec, policy: string): void {
    this.#leftovers(r, new Set(['type', 'compare_type', 'value', 'key', 'invert', 'admin_state_up']));
    this.#emit(r, { kind: 'L7Rule', metadata: this.#meta(r), spec: this.#ruleSpec(r, policy) });
  }

  /** Rules are built with their policy: those left over had no policy, or one that was not imported. */
  leftoverRules(): void {
    for (const r of this.#recsOf('l7rule')) {
      if (this.#emitted.has(`l7rule:${r.id}`) || this.warnings.some((w) => w.startsWith(`${this.#label(r)}: skipped`))) continue;
      const id = this.#parent(r, 'l7policy', ['l7policy_id'], 'rules');
      const policy = this.#rec('l7policy', id);
      this.#skip(r, policy === undefined ? `its l7policy ${id ?? '(not named in the input)'} is not in the input` : `its ${this.#label(policy)} was not imported`);
    }
  }

  build(): void {
    // Parents first; pools before listeners (defaultPool) and policies (redirectPool).
    for (const r of this.#recsOf('loadbalancer')) this.loadBalancer(r);
    for (const r of this.#recsOf('pool')) this.pool(r);
    for (const r of this.#recsOf('listener')) this.listener(r);
    for (const r of this.#recsOf('member')) this.member(r);
    for (const r of this.#recsOf('healthmonitor')) this.healthMonitor(r);
    for (const r of this.#recsOf('l7policy')) this.l7Policy(r);
    this.leftoverRules();
  }
}

/** Octavia JSON documents → nslb objects (schema-valid), warnings for what does not carry over. */
export function importOctavia(inputs: readonly OctaviaInput[], opts: ImportOptions = {}): ImportResult {
  const c = new Collector();
  for (const input of inputs) collect(c, input);
  const b = new Builder(c, opts.namespace ?? 'default');
  b.build();
  return { objects: b.objects, warnings: b.warnings, skipped: b.skipped };
}
