// The schema keeps hostile values out of the model; the renderer must not depend on it. Starting from a
// model that uses every feature, each string (and number) in it is replaced in turn, bypassing the
// schema, and rendering must refuse: no value can add a line, a word or a comment to haproxy.cfg.
import { describe, expect, it } from 'vitest';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import { type HaproxyPaths, UnsafeConfigValueError } from '../../src/plan/haproxy-words.js';
import { certificate, l7Policy, l7Rule, listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';

const paths: HaproxyPaths = {
  socket: '/var/lib/nslb/lb/nslb-0123456789ab/haproxy.sock',
  stateFile: '/var/lib/nslb/lb/nslb-0123456789ab/server-state',
  certsDir: '/var/lib/nslb/lb/nslb-0123456789ab/certs',
  pingCheckCommand: '/usr/lib/node_modules/nslb/scripts/ping-check.sh',
};

// Every optional string is set, and only where the renderer reads it (a redirectUrl on a REJECT policy
// would be ignored, and so prove nothing).
function everyFeature(): DesiredLoadBalancer {
  return loadBalancer({
    listeners: [
      listener('https', {
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'web',
        allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'],
        insertHeaders: { forwardedFor: true, forwardedPort: true, forwardedProto: true },
        tls: { certificate: certificate('1f0e2d3c4b5a6978.pem'), sniCertificates: [certificate('a1b2c3d4e5f60718.pem')] },
        l7Policies: [
          l7Policy('reject', {
            action: 'REJECT',
            position: 1,
            rules: [
              l7Rule('host', { type: 'HOST_NAME', compareType: 'EQUAL_TO', value: 'a.example.com' }),
              l7Rule('header', { type: 'HEADER', key: 'X-Test', compareType: 'CONTAINS', value: 'x' }),
            ],
          }),
          l7Policy('url', {
            action: 'REDIRECT_TO_URL',
            position: 2,
            redirectUrl: 'https://b.example.com/',
            rules: [l7Rule('file', { type: 'FILE_TYPE', compareType: 'REGEX', value: '^png$' })],
          }),
          l7Policy('prefix', {
            action: 'REDIRECT_PREFIX',
            position: 3,
            redirectPrefix: 'https://c.example.com',
            rules: [l7Rule('cookie', { type: 'COOKIE', key: 'beta', compareType: 'STARTS_WITH', value: '1' })],
          }),
          l7Policy('pool', {
            action: 'REDIRECT_TO_POOL',
            position: 4,
            redirectPool: 'sticky',
            rules: [l7Rule('path', { type: 'PATH', compareType: 'ENDS_WITH', value: '.php', invert: true })],
          }),
        ],
      }),
      listener('tcp', { protocol: 'TCP', port: 22, defaultPool: 'pinged', connectionLimit: 100 }),
    ],
    pools: [
      pool('web', {
        tlsToMembers: true,
        sessionPersistence: { type: 'HTTP_COOKIE' },
        members: [member('web-1', '10.202.0.11', 443, { monitorAddress: '10.203.0.11', monitorPort: 8080 })],
        healthMonitor: monitor({ httpVersion: '1.1', domainName: 'app.example.com', expectedCodes: '200-204' }),
      }),
      pool('sticky', {
        sessionPersistence: { type: 'APP_COOKIE', cookieName: 'JSESSIONID' },
        members: [member('sticky-1', '10.202.0.21', 80)],
      }),
      pool('pinged', { protocol: 'PROXY', members: [member('ping-1', '10.202.0.31', 22)], healthMonitor: monitor({ type: 'PING' }) }),
    ],
  });
}

type Path = (string | number)[];

function leaves(value: unknown, path: Path = []): { path: Path; value: string | number }[] {
  if (typeof value === 'string' || typeof value === 'number') return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, [...path, i]));
  if (typeof value === 'object' && value !== null) return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
  return [];
}

function withLeaf<T>(root: T, path: Path, value: unknown): T {
  const copy = structuredClone(root);
  let node = copy as Record<string | number, unknown>;
  for (const step of path.slice(0, -1)) node = node[step] as Record<string | number, unknown>;
  node[path[path.length - 1]!] = value;
  return copy;
}

// Fields that never reach haproxy.cfg: node facts used by other drivers, the PEM (written to a file of
// its own, never inlined), a monitor's object name, a policy's position (it only orders them), and the
// defaults the builder fills in where they do not apply: the HTTP fields of the PING monitor, and the
// redirect code of the REJECT and REDIRECT_TO_POOL policies.
const NOT_RENDERED = [
  /^key$/,
  /^names\./,
  /^bridge$/,
  /^vip\.(family|prefixLength|gateway|mac|vlan|mtu)$/,
  /\.pem$/,
  /^pools\.\d+\.healthMonitor\.name$/,
  /^listeners\.\d+\.l7Policies\.\d+\.position$/,
  /^pools\.2\.healthMonitor\.(httpMethod|urlPath|expectedCodes)$/,
  /^listeners\.0\.l7Policies\.[03]\.redirectHttpCode$/,
];

const HOSTILE = [
  'evil\n    server injected 192.0.2.66:80',
  'evil injected',
  'evil#injected',
  'evil"injected',
  "evil'injected",
  'evil\\injected',
  'evil\u2028injected',
];

describe('renderHaproxyConfig refuses hostile values in every field', () => {
  const lb = everyFeature();
  const baseline = renderHaproxyConfig(lb, paths);
  const fields = leaves(lb).map(({ path, value }) => ({ name: path.join('.'), path, value }));
  const rendered = fields.filter((f) => !NOT_RENDERED.some((re) => re.test(f.name)));

  it('starts from a model that renders', () => {
    expect(baseline).toContain('ssl crt ');
    expect(baseline).toContain('external-check command ');
    expect(rendered.length).toBeGreaterThan(60);
  });

  it.each(rendered.filter((f) => typeof f.value === 'string').map((f) => [f.name, f.path] as const))('%s', (_name, path) => {
    for (const evil of HOSTILE) {
      expect(() => renderHaproxyConfig(withLeaf(lb, path, evil), paths), JSON.stringify(evil)).toThrow(UnsafeConfigValueError);
    }
  });

  it.each(rendered.filter((f) => typeof f.value === 'number').map((f) => [f.name, f.path] as const))('%s (number)', (_name, path) => {
    for (const evil of [Number.NaN, 1.5, Number.POSITIVE_INFINITY]) {
      expect(() => renderHaproxyConfig(withLeaf(lb, path, evil), paths), String(evil)).toThrow(UnsafeConfigValueError);
    }
  });

  it.each(fields.filter((f) => typeof f.value === 'string' && !rendered.includes(f)).map((f) => [f.name, f.path] as const))(
    '%s never reaches the config',
    (_name, path) => {
      expect(renderHaproxyConfig(withLeaf(lb, path, HOSTILE[0]), paths)).not.toContain('injected');
    },
  );

  it.each(Object.keys(paths) as (keyof HaproxyPaths)[])('paths.%s', (key) => {
    for (const evil of HOSTILE) {
      expect(() => renderHaproxyConfig(lb, { ...paths, [key]: evil })).toThrow(UnsafeConfigValueError);
    }
  });

  // Characters that are harmless in a bare word but not where these values go.
  it.each([
    ['a header name that would end the fetch argument', ['listeners', 0, 'l7Policies', 0, 'rules', 1, 'key'], 'X-Test),src'],
    ['a cookie name that would end the fetch argument', ['pools', 1, 'sessionPersistence', 'cookieName'], 'a,b'],
    ['a policy name that would end str()', ['listeners', 0, 'l7Policies', 0, 'name'], 'a)'],
    ['a certificate outside certsDir', ['listeners', 0, 'tls', 'certificate', 'fileName'], '../../etc/key.pem'],
    ['a CIDR that is an ACL expression', ['listeners', 0, 'allowedCidrs', 0], '-f/etc/passwd'],
    ['a Host header that is a log-format expression', ['pools', 0, 'healthMonitor', 'domainName'], 'a%[src]'],
    ['an unknown rule type', ['listeners', 0, 'l7Policies', 0, 'rules', 0, 'type'], 'SSL_CONN_HAS_CERT'],
    ['an unknown listener protocol', ['listeners', 1, 'protocol'], 'QUIC'],
    ['a redirect code HAProxy would refuse', ['listeners', 0, 'l7Policies', 1, 'redirectHttpCode'], 200],
  ] as const)('%s', (_what, path, evil) => {
    expect(() => renderHaproxyConfig(withLeaf(lb, [...path], evil), paths)).toThrow(UnsafeConfigValueError);
  });

  it('writes a literal % in a redirect as %% (log-format), so it cannot start an expression', () => {
    const cfg = renderHaproxyConfig(withLeaf(lb, ['listeners', 0, 'l7Policies', 1, 'redirectUrl'], 'https://b.example.com/%[src]'), paths);
    expect(cfg).toContain(' location https://b.example.com/%%[src] ');
  });
});
