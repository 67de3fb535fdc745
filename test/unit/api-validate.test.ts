import { readFileSync } from 'node:fs';
import { load, loadAll } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { KINDS, SPEC_SCHEMAS, crdSchemaFor, formatIssue, schemaFor, validateObject, type JsonSchema, type Kind } from '../../src/api/v1alpha1/index.js';
import { l7Policy, l7Rule, lb, listener, member, monitor, pool, raw } from './fixtures/objects.js';

const EVERY_FIELD = readFileSync(new URL('./fixtures/every-field.yaml', import.meta.url), 'utf8');

/** A copy of doc with the value at a JSON pointer replaced, creating objects and arrays on the way. */
function withValue(doc: unknown, pointer: string, value: unknown): Record<string, unknown> {
  const copy = raw(doc);
  const keys = pointer.split('/').slice(1);
  let node: Record<string, unknown> = copy;
  keys.forEach((key, i) => {
    if (i === keys.length - 1) {
      node[key] = value;
      return;
    }
    node[key] ??= /^\d+$/.test(keys[i + 1] ?? '') ? [] : {};
    node = node[key] as Record<string, unknown>;
  });
  return copy;
}

function issuesOf(doc: unknown): string[] {
  const r = validateObject(doc);
  return r.ok ? [] : r.issues.map(formatIssue);
}

describe('the every-field example', () => {
  const docs = loadAll(EVERY_FIELD) as Record<string, unknown>[];

  it('covers every kind', () => {
    expect(docs.map((d) => d['kind'])).toEqual([...KINDS]);
  });

  it.each(docs.map((d) => [d['kind'] as string, d] as const))('%s validates', (_kind, doc) => {
    expect(issuesOf(doc)).toEqual([]);
  });

  it('uses every property of every spec schema', () => {
    const unused: string[] = [];
    const visit = (schema: JsonSchema, value: unknown, path: string) => {
      for (const [key, sub] of Object.entries(schema.properties ?? {})) {
        const v = (value as Record<string, unknown> | undefined)?.[key];
        if (v === undefined) unused.push(`${path}/${key}`);
        else visit(sub, sub.type === 'array' ? (v as unknown[])[0] : v, `${path}/${key}`);
        if (sub.type === 'array' && sub.items !== undefined && v !== undefined) {
          for (const item of v as unknown[]) visit(sub.items, item, `${path}/${key}/*`);
        }
      }
    };
    for (const doc of docs) visit(SPEC_SCHEMAS[doc['kind'] as Kind], doc['spec'], `${String(doc['kind'])}/spec`);
    // sniCertificates items are visited per item, so each item need not carry every field.
    expect(unused.filter((p) => !p.includes('/sniCertificates/*/'))).toEqual([]);
  });
});

describe('validateObject on valid input', () => {
  it('fills metadata.namespace on a copy and leaves the input alone', () => {
    const doc = raw(lb('web'));
    delete (doc['metadata'] as Record<string, unknown>)['namespace'];
    const before = raw(doc);
    const r = validateObject(doc);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.object.metadata.namespace).toBe('default');
    expect(doc).toEqual(before);
    expect(r.object).not.toBe(doc);
  });

  it('does not apply schema defaults (the builder does)', () => {
    const r = validateObject(raw(member('m')));
    expect(r.ok && r.object.kind === 'Member' && r.object.spec.weight).toBe(undefined);
  });

  it('accepts IPv6 everywhere an address or CIDR is taken', () => {
    expect(issuesOf(lb('web', { address: '2001:db8::10', gateway: '2001:db8::1', prefixLength: 64 }))).toEqual([]);
    expect(issuesOf(member('m', { address: '2001:db8::11', monitorAddress: '::ffff:10.0.0.1' }))).toEqual([]);
    expect(issuesOf(listener('l', { allowedCidrs: ['2001:db8::/48', '0.0.0.0/0', '::/0'] }))).toEqual([]);
  });

  it('accepts what Kubernetes puts in metadata and status', () => {
    const doc = withValue(lb('web'), '/metadata/managedFields', [{ manager: 'kubectl', fieldsV1: { 'f:spec': {} } }]);
    doc['status'] = { conditions: [{ type: 'Ready' }], whatever: 1 };
    expect(issuesOf(withValue(doc, '/metadata/ownerReferences', [{ kind: 'X', name: 'y', uid: 'z' }]))).toEqual([]);
  });
});

describe('validateObject messages', () => {
  it('says what an address must be and what it got', () => {
    expect(issuesOf(lb('web', { address: '10.0.0.300' }))).toEqual(['/spec/vip/address: must be an IPv4 or IPv6 address (got "10.0.0.300")']);
  });

  it('checks additional VIPs: addresses, required address, at most 4', () => {
    expect(issuesOf(lb('web', {}, { additionalVips: [{ address: '2001:db8::10', prefixLength: 64, gateway: '2001:db8::1' }] }))).toEqual([]);
    expect(issuesOf(lb('web', {}, { additionalVips: [{ address: '2001:db8::g' }] }))).toEqual([
      '/spec/additionalVips/0/address: must be an IPv4 or IPv6 address (got "2001:db8::g")',
    ]);
    expect(issuesOf(withValue(lb('web'), '/spec/additionalVips', [{ prefixLength: 64 }]))).toEqual(['/spec/additionalVips/0/address: is required']);
    const five = [1, 2, 3, 4, 5].map((i) => ({ address: `2001:db8::${i}` }));
    expect(issuesOf(lb('web', {}, { additionalVips: five }))).toEqual(['/spec/additionalVips: must have at most 4 items (got 5)']);
  });

  it('reports one issue per field even when pattern and format both fail', () => {
    expect(issuesOf(lb('web', { gateway: '10.0.0.1 x' }))).toEqual(['/spec/vip/gateway: must be an IPv4 or IPv6 address (got "10.0.0.1 x")']);
  });

  it('rejects IPv6 zone ids', () => {
    expect(issuesOf(member('m', { address: 'fe80::1%eth0' }))).toEqual(['/spec/address: must be an IPv4 or IPv6 address (got "fe80::1%eth0")']);
  });

  it('names unknown fields and the allowed ones', () => {
    expect(issuesOf(withValue(lb('web'), '/spec/fooBar', 1))).toEqual([
      '/spec: unknown field "fooBar" (allowed: vip, additionalVips, topology, placement, memberNetworks, vrrp, adminStateUp, description)',
    ]);
    expect(issuesOf(withValue(lb('web'), '/metadata/nmae', 'x'))[0]).toMatch(/^\/metadata: unknown field "nmae" \(allowed: name, namespace, /);
    expect(issuesOf(withValue(lb('web'), '/extra', 1))).toEqual(['unknown field "extra" (allowed: apiVersion, kind, metadata, spec, status)']);
  });

  it('accepts the insertHeaders keys exactly', () => {
    expect(issuesOf(withValue(listener('l'), '/spec/insertHeaders/X-Forwarded-For', true))).toEqual([]);
    expect(issuesOf(withValue(listener('l'), '/spec/insertHeaders/x-forwarded-for', true))[0]).toMatch(
      /^\/spec\/insertHeaders: unknown field "x-forwarded-for"/,
    );
  });

  it('says which type was expected', () => {
    expect(issuesOf(withValue(listener('l'), '/spec/port', '80'))).toEqual(['/spec/port: must be an integer (got "80")']);
    expect(issuesOf(withValue(listener('l'), '/spec/port', 80.5))).toEqual(['/spec/port: must be an integer (got 80.5)']);
    expect(issuesOf(withValue(lb('web'), '/spec/adminStateUp', 'yes'))).toEqual(['/spec/adminStateUp: must be a boolean (got "yes")']);
    expect(issuesOf(withValue(lb('web'), '/spec/vip', null))).toEqual(['/spec/vip: must be an object (got null)']);
  });

  it('gives ranges', () => {
    expect(issuesOf(listener('l', { port: 70000 }))).toEqual(['/spec/port: must be between 1 and 65535 (got 70000)']);
    expect(issuesOf(listener('l', { port: 0 }))).toEqual(['/spec/port: must be between 1 and 65535 (got 0)']);
  });

  it('lists enum values', () => {
    expect(issuesOf(withValue(listener('l'), '/spec/protocol', 'QUIC'))).toEqual([
      '/spec/protocol: must be one of "TCP", "HTTP", "HTTPS", "TERMINATED_HTTPS", "UDP", "SCTP", "PROMETHEUS" (got "QUIC")',
    ]);
    expect(issuesOf(withValue(monitor('hm'), '/spec/httpMethod', 'get'))).toEqual([
      '/spec/httpMethod: must be one of "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "PATCH", "CONNECT" (got "get")',
    ]);
    expect(issuesOf(withValue(lb('web'), '/apiVersion', 'v1'))).toEqual(['/apiVersion: must be "nslb.dev/v1alpha1" (got "v1")']);
  });

  it('points required fields at where they are missing', () => {
    const doc = raw(listener('l'));
    delete (doc['spec'] as Record<string, unknown>)['port'];
    delete doc['metadata'];
    expect(issuesOf(doc)).toEqual(['/metadata: is required', '/spec/port: is required']);
  });

  it('names unknown kinds and lists the known ones', () => {
    const allowed = '(allowed: LoadBalancer, Listener, Pool, Member, HealthMonitor, L7Policy, L7Rule)';
    expect(issuesOf(withValue(lb('web'), '/kind', 'Foo'))).toEqual([`/kind: unknown kind "Foo" ${allowed}`]);
    const noKind = raw(lb('web'));
    delete noKind['kind'];
    expect(issuesOf(noKind)).toEqual([`/kind: is required ${allowed}`]);
  });

  it('rejects documents that are not objects', () => {
    expect(issuesOf(['a'])).toEqual(['must be an object with apiVersion, kind, metadata and spec (got an array)']);
    expect(issuesOf('kind: Pool')).toEqual(['must be an object with apiVersion, kind, metadata and spec (got "kind: Pool")']);
  });

  it('collects every issue of a document', () => {
    const doc = withValue(withValue(lb('web', { address: 'x', vlan: 5000 }), '/spec/bogus', 1), '/metadata/name', 'Web');
    expect(issuesOf(doc)).toHaveLength(4);
  });

  it('shows control characters escaped and long values cut', () => {
    const [issue] = issuesOf(withValue(lb('web'), '/metadata/name', `a\nb${'x'.repeat(200)}`));
    expect(issue).toContain('"a\\nbxxx');
    expect(issue).toContain('…")');
    expect(issue).not.toContain('\n');
  });
});

describe('numeric limits', () => {
  const cases: [string, unknown, string, unknown][] = [
    ['vlan', lb('web'), '/spec/vip/vlan', 4095],
    ['vlan', lb('web'), '/spec/vip/vlan', 0],
    ['mtu', lb('web'), '/spec/vip/mtu', 67],
    ['prefixLength', lb('web'), '/spec/vip/prefixLength', 129],
    ['weight', member('m'), '/spec/weight', 257],
    ['monitorPort', member('m'), '/spec/monitorPort', 65536],
    ['maxRetries', monitor('hm'), '/spec/maxRetries', 11],
    ['maxRetries', monitor('hm'), '/spec/maxRetries', 0],
    ['maxRetriesDown', monitor('hm'), '/spec/maxRetriesDown', 11],
    ['delay', monitor('hm'), '/spec/delay', 0],
    ['timeout', monitor('hm'), '/spec/timeout', 0],
    ['delay', monitor('hm'), '/spec/delay', 1.5],
    ['connectionLimit', listener('l'), '/spec/connectionLimit', -2],
    ['timeouts', listener('l'), '/spec/timeouts/clientData', 86_400_001],
    ['timeouts', listener('l'), '/spec/timeouts/tcpInspect', -1],
    ['hsts', listener('l'), '/spec/tls/hsts/maxAge', -1],
    ['position', l7Policy('p'), '/spec/position', 0],
    ['position', l7Policy('p'), '/spec/position', 2147483648],
    ['redirectHttpCode', l7Policy('p', { action: 'REDIRECT_TO_URL' }), '/spec/redirectHttpCode', 304],
    ['redirectHttpCode', l7Policy('p', { action: 'REDIRECT_TO_URL' }), '/spec/redirectHttpCode', 200],
  ] as [string, unknown, string, unknown][];
  it.each(cases.map(([f, doc, path, value]) => [f, path, value, doc] as const))('%s: rejects %s = %s', (_f, path, value, doc) => {
    const issues = issuesOf(withValue(doc, path, value));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(new RegExp(`^${path}: must be`));
  });

  it('accepts the bounds', () => {
    expect(issuesOf(lb('web', { vlan: 1, mtu: 65535, prefixLength: 0 }))).toEqual([]);
    expect(issuesOf(member('m', { weight: 0, port: 65535 }))).toEqual([]);
    expect(issuesOf(listener('l', { connectionLimit: -1, timeouts: { clientData: 86_400_000, tcpInspect: 0 } }))).toEqual([]);
    expect(issuesOf(l7Policy('p', { position: 1 }))).toEqual([]);
    expect(issuesOf(l7Policy('p', { position: 2147483647 }))).toEqual([]);
    for (const code of [301, 302, 303, 307, 308] as const) {
      expect(issuesOf(l7Policy('p', { action: 'REDIRECT_PREFIX', redirectPrefix: 'https://a.example', redirectHttpCode: code }))).toEqual([]);
    }
  });

  it('lists the redirect codes', () => {
    expect(issuesOf(withValue(l7Policy('p'), '/spec/redirectHttpCode', 304))).toEqual([
      '/spec/redirectHttpCode: must be one of 301, 302, 303, 307, 308 (got 304)',
    ]);
  });
});

describe('strings that reach HAProxy', () => {
  // Metadata other than name and namespace, and status, are never rendered; descriptions are free text.
  const NEVER_RENDERED = /^\/(status|metadata\/(?!name$|namespace$)[^/]+)|\/description$/;

  /** Every string in a kind's whole-object schema, as JSON pointers with `*` for array items. */
  const stringFields = (kind: Kind): string[] => {
    const out: string[] = [];
    const visit = (s: JsonSchema, path: string) => {
      if (s.type === 'string' && !NEVER_RENDERED.test(path)) out.push(path);
      for (const [k, sub] of Object.entries(s.properties ?? {})) visit(sub, `${path}/${k}`);
      if (s.items !== undefined) visit(s.items, `${path}/*`);
    };
    visit(schemaFor(kind), '');
    return out;
  };

  /** The concrete pointer and the valid value the every-field example has for a field (`*` = first item that has it). */
  const sampleOf = (doc: unknown, template: string): { pointer: string; value: string } | undefined => {
    const walk = (node: unknown, keys: string[], pointer: string): { pointer: string; value: string } | undefined => {
      const [key, ...rest] = keys;
      if (key === undefined) return typeof node === 'string' ? { pointer, value: node } : undefined;
      if (key === '*') {
        const items = Array.isArray(node) ? node : [];
        for (const [i, item] of items.entries()) {
          const found = walk(item, rest, `${pointer}/${i}`);
          if (found !== undefined) return found;
        }
        return undefined;
      }
      const next = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key] : undefined;
      return walk(next, rest, `${pointer}/${key}`);
    };
    return walk(doc, template.split('/').slice(1), '');
  };

  const docs = new Map((loadAll(EVERY_FIELD) as Record<string, unknown>[]).map((d) => [d['kind'] as Kind, d]));
  const fields = KINDS.flatMap((kind) => stringFields(kind).map((template) => [kind, template] as const));

  it('finds the fields it must (a smoke test of the walk)', () => {
    const all = fields.map(([kind, path]) => `${kind}${path}`);
    for (const f of [
      'LoadBalancer/metadata/name',
      'Listener/spec/tls/sniCertificates/*/keyFile',
      'Listener/spec/allowedCidrs/*',
      'Pool/spec/sessionPersistence/cookieName',
      'L7Policy/spec/redirectUrl',
      'L7Policy/spec/redirectPrefix',
      'L7Rule/spec/key',
      'L7Rule/spec/value',
    ]) {
      expect(all).toContain(f);
    }
    expect(all.filter((f) => f.endsWith('/description') || f.includes('/status') || f.includes('/uid'))).toEqual([]);
  });

  it('every such field has a sample in the every-field example', () => {
    expect(fields.filter(([kind, path]) => sampleOf(docs.get(kind), path) === undefined)).toEqual([]);
  });

  const hostile: [string, (good: string) => string[]][] = [
    ...(
      [
        ['space', ' '],
        ['tab', '\t'],
        ['newline', '\n'],
        ['carriage return', '\r'],
        ['hash', '#'],
        ['single quote', "'"],
        ['double quote', '"'],
        ['backslash', '\\'],
        ['NUL', '\0'],
      ] as const
    ).map(([what, ch]): [string, (good: string) => string[]] => [
      what,
      (good) => {
        const mid = Math.ceil(good.length / 2);
        return [good.slice(0, mid) + ch + good.slice(mid), good + ch, ch + good];
      },
    ]),
    ['5000-character string', (good) => [good.repeat(Math.ceil(5000 / good.length)).slice(0, 5000)]],
  ];

  const combos = fields.flatMap(([kind, template]) => hostile.map(([what, make]) => [`${kind}${template}`, what, kind, template, make] as const));
  it.each(combos)('%s rejects a %s', (_field, _what, kind, template, make) => {
    const doc = docs.get(kind);
    const sample = sampleOf(doc, template);
    expect(sample).toBeDefined();
    if (sample === undefined) return;
    for (const value of make(sample.value)) {
      const r = validateObject(withValue(doc, sample.pointer, value));
      expect(r.ok, JSON.stringify(value)).toBe(false);
      if (!r.ok) expect(r.issues.map((i) => i.path)).toContain(sample.pointer);
    }
  });

  it('every string in a spec has a pattern or an enum, except descriptions', () => {
    const loose: string[] = [];
    const visit = (s: JsonSchema, path: string) => {
      if (s.type === 'string' && s.pattern === undefined && s.enum === undefined && !path.endsWith('/description')) {
        loose.push(path);
      }
      for (const [k, sub] of Object.entries(s.properties ?? {})) visit(sub, `${path}/${k}`);
      if (s.items !== undefined) visit(s.items, `${path}/*`);
    };
    for (const kind of KINDS) visit(SPEC_SCHEMAS[kind], kind);
    expect(loose).toEqual([]);
  });
});

describe('field formats', () => {
  const accepts = (doc: unknown, path: string, values: string[]) => values.filter((v) => issuesOf(withValue(doc, path, v)).length > 0);
  const rejects = (doc: unknown, path: string, values: string[]) => values.filter((v) => issuesOf(withValue(doc, path, v)).length === 0);

  it('file paths: relative or absolute, no ".." segments', () => {
    const path = '/spec/tls/certificateFile';
    expect(
      accepts(listener('l'), path, ['web.pem', 'certs/web.pem', '/etc/ssl/web.pem', './web.pem', '.hidden/x', '..pem', 'a/.../b', 'a_b+c@d=e,f:g~h-i.pem']),
    ).toEqual([]);
    expect(rejects(listener('l'), path, ['..', '../web.pem', 'certs/../../etc/shadow', 'certs/..', 'a//b', 'certs/', '', '/', 'a;b', 'a$b', 'ä.pem'])).toEqual(
      [],
    );
  });

  it('urlPath: absolute, RFC 3986 characters without quotes', () => {
    const path = '/spec/urlPath';
    expect(accepts(monitor('hm'), path, ['/', '/healthz', '/a/b.c?x=1&y=%20', '/~user/(x)*+,;=:@!$-_'])).toEqual([]);
    expect(rejects(monitor('hm'), path, ['healthz', '', '/a b', "/it's", '/a"b', '/a#b', '/a\\b', '/a<b', `/${'a'.repeat(1024)}`])).toEqual([]);
  });

  it('expectedCodes: a code, a list or a range of 100-599', () => {
    const path = '/spec/expectedCodes';
    expect(accepts(monitor('hm'), path, ['200', '200,202', '200,202,301', '200-204', '100-599'])).toEqual([]);
    expect(rejects(monitor('hm'), path, ['600', '099', '20', '2000', '200-', '200,', ',200', '200-204,301', '200 ,202', '200-204-206', 'abc'])).toEqual([]);
  });

  it('domainName: a host name', () => {
    const path = '/spec/domainName';
    expect(accepts(monitor('hm'), path, ['localhost', 'app.example.com', 'a-1.B2.example'])).toEqual([]);
    expect(rejects(monitor('hm'), path, ['-a.com', 'a-.com', 'a..b', '.a', 'a_b.com', `${'a'.repeat(64)}.com`])).toEqual([]);
  });

  it('addresses, CIDRs and MACs', () => {
    expect(rejects(lb('web'), '/spec/vip/address', ['10.0.0', '010.0.0.1', '1.2.3.4.5', '::g', 'localhost', '10.0.0.1/24'])).toEqual([]);
    expect(rejects(listener('l'), '/spec/allowedCidrs/0', ['10.0.0.0/33', '2001:db8::/129', '10.0.0.0', '10.0.0.0/08', 'x/8'])).toEqual([]);
    expect(rejects(lb('web'), '/spec/vip/mac', ['fa:16:3e:00:00', 'fa-16-3e-00-00-01', 'fa:16:3e:00:00:0g'])).toEqual([]);
  });

  it('HTTP tokens: header and cookie names', () => {
    const good = ['X-Api-Version', 'JSESSIONID', 'a', '!$&*+.^_`|~-', 'Cookie_1'];
    const bad = ['', 'X Api', 'a%b', 'a:b', 'a;b', 'a,b', 'a(b)', 'a/b', 'a=b', 'a[b]', 'a{b}', 'a@b', 'a?b', 'ä', '#a', "a'b", 'a\u007f', 'x'.repeat(256)];
    expect(accepts(l7Rule('r'), '/spec/key', good)).toEqual([]);
    expect(rejects(l7Rule('r'), '/spec/key', bad)).toEqual([]);
    const appCookie = pool('p', { sessionPersistence: { type: 'APP_COOKIE' } });
    expect(accepts(appCookie, '/spec/sessionPersistence/cookieName', good)).toEqual([]);
    expect(rejects(appCookie, '/spec/sessionPersistence/cookieName', bad)).toEqual([]);
  });

  it('L7 rule values: printable ASCII without whitespace, quotes, "#" or backslash', () => {
    const path = '/spec/value';
    expect(accepts(l7Rule('r'), path, ['/api', '^/api/v[0-9]+$', '[.]jpg$', 'a.example.com', 'x=1&y=%20', '(a|b)*?{2}<>@!~`', 'x'.repeat(255)])).toEqual([]);
    expect(rejects(l7Rule('r'), path, ['', 'a b', '\\.jpg', 'a#b', '"a"', "'a'", 'a\u007f', 'é', 'a\u00a0b', 'x'.repeat(256)])).toEqual([]);
  });

  it('the value schema tells regex writers what to do instead of a backslash', () => {
    expect(SPEC_SCHEMAS.L7Rule.properties?.['value']?.description).toContain('"[.]"');
  });

  it('redirect URLs and prefixes: absolute http(s), no fragment', () => {
    for (const path of ['/spec/redirectUrl', '/spec/redirectPrefix']) {
      const good = ['http://a', 'https://www.example.com', 'https://a.example:8443/x/y?z=1&w=%2F', 'http://[2001:db8::1]/', 'https://u@a.example/~x'];
      const bad = [
        '',
        'www.example.com',
        '/path',
        'ftp://a.example',
        'https://',
        'https:///x',
        'https://a b',
        'https://a#frag',
        'https://a/"x"',
        "https://a/'x'",
        'https://a\\b',
        'javascript:alert(1)',
        `https://${'a'.repeat(2041)}`,
      ];
      expect(accepts(l7Policy('p'), path, good)).toEqual([]);
      expect(rejects(l7Policy('p'), path, bad)).toEqual([]);
    }
  });

  it('names: DNS-1123 labels of at most 63 characters', () => {
    expect(accepts(lb('web'), '/metadata/name', ['a', 'web-1', '0', 'a'.repeat(63)])).toEqual([]);
    expect(rejects(lb('web'), '/metadata/name', ['Web', '-web', 'web-', 'web.1', 'a'.repeat(64), ''])).toEqual([]);
  });
});

describe('the schemas themselves', () => {
  const walk = (s: JsonSchema, path: string, visit: (s: JsonSchema, path: string) => void) => {
    visit(s, path);
    for (const [k, sub] of Object.entries(s.properties ?? {})) walk(sub, `${path}/${k}`, visit);
    if (s.items !== undefined) walk(s.items, `${path}/*`, visit);
    if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${path}/{}`, visit);
  };

  it.each([...KINDS])('%s: every node is typed, no $ref/const/oneOf/uniqueItems, objects are closed', (kind) => {
    const problems: string[] = [];
    walk(schemaFor(kind), kind, (s, path) => {
      const keys = Object.keys(s);
      if (typeof s.type !== 'string') problems.push(`${path}: no type`);
      for (const k of ['$ref', 'const', 'oneOf', 'uniqueItems']) if (keys.includes(k)) problems.push(`${path}: ${k}`);
      if (s.properties !== undefined && s.additionalProperties !== false) problems.push(`${path}: open object`);
    });
    expect(problems).toEqual([]);
  });

  it('carries the defaults DESIGN gives', () => {
    const spec = (k: Kind) => SPEC_SCHEMAS[k].properties ?? {};
    expect(spec('LoadBalancer')['adminStateUp']?.default).toBe(true);
    expect(spec('Member')['weight']?.default).toBe(1);
    expect(spec('Member')['backup']?.default).toBe(false);
    expect(spec('HealthMonitor')['maxRetriesDown']?.default).toBe(3);
    expect(spec('HealthMonitor')['httpMethod']?.default).toBe('GET');
    expect(spec('HealthMonitor')['urlPath']?.default).toBe('/');
    expect(spec('HealthMonitor')['expectedCodes']?.default).toBe('200');
    expect(spec('Listener')['connectionLimit']?.default).toBe(-1);
    const timeouts = spec('Listener')['timeouts']?.properties ?? {};
    expect(Object.fromEntries(Object.entries(timeouts).map(([k, v]) => [k, v.default]))).toEqual({
      clientData: 50000,
      memberConnect: 5000,
      memberData: 50000,
      tcpInspect: 0,
    });
    expect(spec('LoadBalancer')['vip']?.properties?.['prefixLength']?.default).toBeUndefined();
    expect(spec('L7Policy')['redirectHttpCode']?.default).toBe(302);
    expect(spec('L7Policy')['adminStateUp']?.default).toBe(true);
    expect(spec('L7Policy')['position']?.default).toBeUndefined();
    expect(spec('L7Rule')['invert']?.default).toBe(false);
    expect(spec('L7Rule')['adminStateUp']?.default).toBe(true);
  });

  it('crdSchemaFor drops what Kubernetes forbids and keeps the rest', () => {
    const crd = crdSchemaFor('Listener');
    const problems: string[] = [];
    walk(crd, 'Listener', (s, path) => {
      if (s.properties !== undefined && s.additionalProperties !== undefined) problems.push(path);
    });
    expect(problems).toEqual([]);
    expect(crd.properties?.['metadata']).toEqual({ type: 'object' });
    expect(crd.properties?.['status']?.['x-kubernetes-preserve-unknown-fields']).toBe(true);
    expect(crd.properties?.['spec']?.properties?.['port']).toEqual(SPEC_SCHEMAS.Listener.properties?.['port']);
    // The source schema is untouched.
    expect(schemaFor('Listener').properties?.['spec']?.additionalProperties).toBe(false);
  });

  it.each([...KINDS])('crdSchemaFor(%s) has the whole spec and no closed objects', (kind) => {
    const crd = crdSchemaFor(kind);
    const spec = crd.properties?.['spec'];
    expect(Object.keys(spec?.properties ?? {})).toEqual(Object.keys(SPEC_SCHEMAS[kind].properties ?? {}));
    expect(spec?.required).toEqual(SPEC_SCHEMAS[kind].required);
    expect(JSON.stringify(crd)).not.toContain('"additionalProperties":false');
  });

  it('the CRD keeps the integer enum of redirect codes', () => {
    expect(crdSchemaFor('L7Policy').properties?.['spec']?.properties?.['redirectHttpCode']).toEqual({
      type: 'integer',
      description: 'Status code of a redirect',
      enum: [301, 302, 303, 307, 308],
      default: 302,
    });
  });

  it('is plain JSON (it ends up in CRD YAML)', () => {
    for (const kind of KINDS) expect(load(JSON.stringify(schemaFor(kind)))).toEqual(schemaFor(kind));
  });
});
