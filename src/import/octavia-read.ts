// Octavia's JSON, read: every shape a migration brings (API responses, create bodies, the status tree, the
// openstack CLI's `show`/`list -f json`) collected into one record per object, indexed by id, with the relations
// the input states (nesting, the status tree). See octavia.ts for the whole import.

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

export type OKind = 'loadbalancer' | 'listener' | 'pool' | 'member' | 'healthmonitor' | 'l7policy' | 'l7rule';
export type Json = Record<string, unknown>;

export interface Rec {
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

// Collecting records from every shape.

export const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

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
export function idList(v: unknown): string[] {
  if (typeof v === 'string') return v.split(/[\s,]+/).filter((s) => s !== '');
  if (!Array.isArray(v)) return [];
  return v.flatMap((e) => (typeof e === 'string' ? [e] : isObj(e) && typeof e['id'] === 'string' ? [e['id']] : []));
}

export class Collector {
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
      kind === 'loadbalancer'
        ? [
            ['listeners', 'listener'],
            ['pools', 'pool'],
          ]
        : kind === 'listener'
          ? [['l7policies', 'l7policy']]
          : kind === 'pool'
            ? [['members', 'member']]
            : kind === 'l7policy'
              ? [['rules', 'l7rule']]
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
      for (const [j, p] of arr(l['pools']).entries()) pool(p, `${path}.pools[${j}]`);
      arr(l['l7policies']).forEach((p, j) => {
        if (!isObj(p)) return;
        const policyId = this.add('l7policy', p, `${path}.l7policies[${j}]`, { partial: true, parent: listenerId });
        arr(p['rules']).forEach((r, k) => {
          if (isObj(r)) this.add('l7rule', r, `${path}.l7policies[${j}].rules[${k}]`, { partial: true, parent: policyId });
        });
      });
    });
    for (const [i, p] of arr(lb['pools']).entries()) pool(p, `${where}.pools[${i}]`);
  }
}

const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A status tree's load balancer: listeners carry pools/l7policies, and there is no VIP. */
function isStatusTree(lb: Json): boolean {
  if ('vip_address' in lb) return false;
  return (
    arr(lb['listeners']).some((l) => isObj(l) && ('pools' in l || 'l7policies' in l)) ||
    (!('vip_address' in lb) && 'operating_status' in lb && Array.isArray(lb['pools']) && arr(lb['pools']).some((p) => isObj(p) && 'members' in p))
  );
}

export function collect(c: Collector, input: OctaviaInput): void {
  const { file, value } = input;
  const fail = (path: string, message: string): never => {
    throw new OctaviaInputError(file, path, message);
  };
  const bare = (o: unknown, path: string): void => {
    if (!isObj(o)) fail(path, `expected an Octavia object, got ${Array.isArray(o) ? 'an array' : JSON.stringify(o)}`);
    const kind = guessKind(o as Json);
    if (kind === undefined)
      fail(path, 'cannot tell which Octavia object this is (no vip_address, lb_algorithm, protocol_port, address, delay, action or compare_type)');
    c.full(kind!, o as Json, path);
  };
  if (Array.isArray(value)) {
    for (const [i, o] of value.entries()) bare(o, `$[${i}]`);
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
