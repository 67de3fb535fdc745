// The import's shared machinery: one nslb name per Octavia object (DNS-1123, unique per kind), warnings that name
// the object and the field, parents resolved from whichever side names them, and the emission of schema-valid
// objects. The kinds are built in octavia-loadbalancer.ts, octavia-listener.ts, octavia-pool.ts, octavia-l7.ts.
import { API_VERSION, type AnyObject, type Kind } from '../api/v1alpha1/types.js';
import { formatIssue, validateObject } from '../api/v1alpha1/validate.js';
import { type Collector, idList, type OKind, type Rec } from './octavia-read.js';

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
export const SHOW: Record<OKind, string> = {
  loadbalancer: 'openstack loadbalancer show',
  listener: 'openstack loadbalancer listener show',
  pool: 'openstack loadbalancer pool show',
  member: 'openstack loadbalancer member show POOL',
  healthmonitor: 'openstack loadbalancer healthmonitor show',
  l7policy: 'openstack loadbalancer l7policy show',
  l7rule: 'openstack loadbalancer l7rule show POLICY',
};

// Fields read as structure or status, never warned about.
// biome-ignore format: a word list, by topic
const STRUCTURAL = new Set([
  'id', 'name', 'project_id', 'tenant_id', 'created_at', 'updated_at', 'provisioning_status', 'operating_status',
  'listeners', 'pools', 'loadbalancers', 'loadbalancer_id', 'members', 'healthmonitor', 'healthmonitor_id',
  'l7policies', 'rules', 'listener_id', 'pool_id', 'l7policy_id', 'default_pool', 'tags',
]);

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

const DEFAULT_TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'];
const DEFAULT_ALPN = ['h2', 'http/1.1', 'http/1.0'];
export const set = (v: unknown): boolean => v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);
const sameList = (a: unknown, b: string[]): boolean => Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);

export class ImportContext {
  readonly warnings: string[] = [];
  readonly objects: AnyObject[] = [];
  skipped = 0;
  readonly recs: Map<string, Rec>;
  readonly parentOf: Map<string, string>;
  readonly namespace: string;
  /** kind:id → nslb name, for objects that were emitted. */
  readonly emitted = new Map<string, string>();
  readonly names = new Map<string, string>();

  constructor(c: Collector, namespace: string) {
    this.recs = c.recs;
    this.parentOf = c.parentOf;
    this.namespace = namespace;
    this.#assignNames();
  }

  label(r: Rec): string {
    const name = typeof r.raw['name'] === 'string' && r.raw['name'] !== '' ? `${JSON.stringify(r.raw['name'])} ` : '';
    return `${r.kind} ${name}(${r.id})`;
  }

  warn(r: Rec, field: string, message: string): void {
    this.warnings.push(`${this.label(r)}: ${field}: ${message}`);
  }

  skip(r: Rec, message: string): undefined {
    this.skipped++;
    this.warnings.push(`${this.label(r)}: skipped: ${message}`);
    return undefined;
  }

  #assignNames(): void {
    const byKind = new Map<OKind, Rec[]>();
    for (const r of this.recs.values()) byKind.set(r.kind, [...(byKind.get(r.kind) ?? []), r]);
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
        this.names.set(`${kind}:${r.id}`, name);
      }
    }
  }

  recsOf(kind: OKind): Rec[] {
    return [...this.recs.values()].filter((r) => r.kind === kind);
  }

  rec(kind: OKind, id: string | undefined): Rec | undefined {
    return id === undefined ? undefined : this.recs.get(`${kind}:${id}`);
  }

  /** The parent's id: from the record's own field, from the parent's list of children, or from nesting / status tree. */
  parent(r: Rec, parentKind: OKind, ownField: string[], childList: string): string | undefined {
    for (const f of ownField) {
      const v = r.raw[f];
      if (typeof v === 'string' && v !== '') return v;
      const ids = idList(v);
      if (ids.length > 0) return ids[0];
    }
    for (const p of this.recsOf(parentKind)) if (idList(p.raw[childList]).includes(r.id)) return p.id;
    return this.parentOf.get(`${r.kind}:${r.id}`);
  }

  /** The name of an emitted parent, or undefined after a warning (and the child is skipped). */
  emittedParent(r: Rec, kind: OKind, id: string | undefined, what: string): string | undefined {
    if (id === undefined) {
      const only = this.recsOf(kind);
      if (only.length === 1) {
        this.warn(r, what, `not named in the input; assumed the only ${kind}, ${this.label(only[0]!)}`);
        id = only[0]!.id;
      } else {
        return this.skip(r, `cannot tell its ${kind} (pass the ${kind}'s JSON or the status tree, \`openstack loadbalancer status show LB -f json\`)`);
      }
    }
    const name = this.emitted.get(`${kind}:${id}`);
    if (name !== undefined) return name;
    return this.skip(r, this.rec(kind, id) === undefined ? `its ${kind} ${id} is not in the input` : `its ${this.label(this.rec(kind, id)!)} was not imported`);
  }

  meta(r: Rec): AnyObject['metadata'] {
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
    return { name: this.names.get(`${r.kind}:${r.id}`)!, namespace: this.namespace, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) };
  }

  /** Warn about every field of the record that no mapping consumed. */
  leftovers(r: Rec, used: ReadonlySet<string>, notes: Record<string, string> = {}): void {
    for (const [field, value] of Object.entries(r.raw)) {
      if (STRUCTURAL.has(field) || used.has(field) || !set(value)) continue;
      this.warn(r, field, notes[field] ?? `${JSON.stringify(value)} has no nslb equivalent; dropped`);
    }
  }

  emit(r: Rec, doc: { kind: Kind; metadata: AnyObject['metadata']; spec: Record<string, unknown> }): string | undefined {
    const object = { apiVersion: API_VERSION, kind: doc.kind, metadata: doc.metadata, spec: doc.spec };
    const result = validateObject(object);
    if (!result.ok) return this.skip(r, `the nslb ${doc.kind} would be invalid: ${result.issues.map(formatIssue).join('; ')}`);
    this.objects.push(object as unknown as AnyObject);
    this.emitted.set(`${r.kind}:${r.id}`, doc.metadata.name);
    return doc.metadata.name;
  }

  partial(r: Rec): boolean {
    if (!r.partial) return false;
    this.skip(r, `only the status tree names it, without its configuration: pass \`${SHOW[r.kind]} ${r.id} -f json\` too`);
    return true;
  }

  number(r: Rec, field: string): number | undefined {
    const v = r.raw[field];
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'number' ? v : Number(v);
    return Number.isFinite(n) ? n : undefined;
  }

  string(r: Rec, field: string): string | undefined {
    const v = r.raw[field];
    return typeof v === 'string' && v !== '' ? v : undefined;
  }

  common(r: Rec, spec: Record<string, unknown>, used: Set<string>, description = true): void {
    if (r.raw['admin_state_up'] === false) spec['adminStateUp'] = false;
    used.add('admin_state_up');
    const d = this.string(r, 'description');
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

  tlsTuning(r: Rec, tls: Record<string, unknown>): void {
    const versions = r.raw['tls_versions'];
    if (Array.isArray(versions) && versions.length > 0 && !sameList(versions, DEFAULT_TLS_VERSIONS)) tls['versions'] = versions;
    const ciphers = this.string(r, 'tls_ciphers');
    if (ciphers !== undefined) tls['ciphers'] = ciphers;
    const alpn = r.raw['alpn_protocols'];
    if (Array.isArray(alpn) && alpn.length > 0 && !sameList(alpn, DEFAULT_ALPN)) tls['alpnProtocols'] = alpn;
  }
}
