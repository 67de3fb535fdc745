// Golden HAProxy configs: each fixture renders to test/golden/haproxy/<case>.cfg byte for byte
// (`vitest -u` rewrites them; review the diff), and each rendered config must pass the real `haproxy -c`.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import {
  assertSafeToken,
  backendName,
  expandExpectedCodes,
  frontendName,
  renderHaproxyConfig,
  UnsafeConfigValueError,
} from '../../src/plan/haproxy-config.js';
import { listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';

const run = promisify(execFile);
const HAPROXY = '/usr/sbin/haproxy';

// The paths the agent uses on a node (DESIGN §2), so that the goldens read like production configs.
const paths = {
  socket: '/var/lib/nslb/lb/nslb-0123456789ab/haproxy.sock',
  stateFile: '/var/lib/nslb/lb/nslb-0123456789ab/server-state',
};

const cases: Record<string, DesiredLoadBalancer> = {
  'http-round-robin': loadBalancer({
    listeners: [listener('http', { defaultPool: 'web' })],
    pools: [
      pool('web', {
        members: [member('web-1', '10.202.0.11', 8080), member('web-2', '10.202.0.12', 8080)],
        healthMonitor: monitor({ expectedCodes: '200-204', urlPath: '/healthz' }),
      }),
    ],
  }),

  'tcp-least-connections-monitor-address': loadBalancer({
    listeners: [listener('postgres', { protocol: 'TCP', port: 5432, defaultPool: 'db' })],
    pools: [
      pool('db', {
        protocol: 'TCP',
        lbAlgorithm: 'LEAST_CONNECTIONS',
        members: [
          member('db-1', '10.202.0.21', 5432, { monitorAddress: '10.203.0.21', monitorPort: 9200 }),
          member('db-2', '10.202.0.22', 5432, { monitorPort: 9200 }),
          member('db-3', '10.202.0.23', 5432),
        ],
        healthMonitor: monitor({ type: 'TCP', delay: 10, timeout: 5, maxRetries: 3, maxRetriesDown: 2 }),
      }),
    ],
  }),

  'source-ip-backup-drain-admin-down': loadBalancer({
    listeners: [listener('sticky', { protocol: 'TCP', port: 443, defaultPool: 'app' })],
    pools: [
      pool('app', {
        protocol: 'TCP',
        lbAlgorithm: 'SOURCE_IP',
        members: [
          member('primary', '10.202.0.31', 443, { weight: 10 }),
          member('standby', '10.202.0.32', 443, { backup: true }),
          member('draining', '10.202.0.33', 443, { weight: 0 }),
          member('switched-off', '10.202.0.34', 443, { adminStateUp: false }),
        ],
        healthMonitor: monitor({ type: 'TCP' }),
      }),
    ],
  }),

  // `api` and `api-alt` share `web` (timeouts come from `api`, first by name); `raw` is a TCP listener on
  // an HTTP pool (stays tcp); `mixed` is used by an HTTP and a TCP listener (must be http); `spare` is unused.
  'shared-and-mixed-pools': loadBalancer({
    listeners: [
      listener('api', { defaultPool: 'web', timeouts: { clientData: 30000, memberConnect: 3000, memberData: 30000, tcpInspect: 0 } }),
      listener('api-alt', { port: 8080, defaultPool: 'web', timeouts: { clientData: 60000, memberConnect: 9000, memberData: 90000, tcpInspect: 0 } }),
      listener('raw', { protocol: 'TCP', port: 9000, defaultPool: 'http-over-tcp' }),
      listener('mixed-http', { port: 8081, defaultPool: 'mixed' }),
      listener('mixed-tcp', { protocol: 'TCP', port: 9001, defaultPool: 'mixed' }),
    ],
    pools: [
      pool('web', { members: [member('web-1', '10.202.0.11', 80)] }),
      pool('http-over-tcp', {
        members: [member('legacy-1', '10.202.0.41', 80)],
        healthMonitor: monitor({ urlPath: '/status' }),
      }),
      pool('mixed', { members: [member('mixed-1', '10.202.0.51', 80)] }),
      pool('spare', { protocol: 'TCP', members: [member('spare-1', '10.202.0.61', 80)] }),
    ],
  }),

  'limits-and-timeouts': loadBalancer({
    listeners: [
      listener('big', {
        protocol: 'TCP',
        port: 25,
        defaultPool: 'mail',
        connectionLimit: 40000,
        timeouts: { clientData: 120000, memberConnect: 2500, memberData: 300000, tcpInspect: 4000 },
      }),
      listener('small', {
        port: 80,
        defaultPool: 'mail',
        connectionLimit: 20000,
        timeouts: { clientData: 10000, memberConnect: 1000, memberData: 10000, tcpInspect: 500 },
      }),
      listener('zero-is-unlimited', { protocol: 'TCP', port: 26, defaultPool: 'mail', connectionLimit: 0 }),
    ],
    pools: [pool('mail', { protocol: 'HTTP', members: [member('mx-1', '10.202.0.71', 25)] })],
  }),

  'listener-without-default-pool': loadBalancer({
    listeners: [listener('http'), listener('tcp', { protocol: 'TCP', port: 9000 })],
    pools: [pool('unused', { members: [member('m-1', '10.202.0.81', 80)] })],
  }),

  'admin-down-children': loadBalancer({
    listeners: [
      listener('off', { adminStateUp: false, defaultPool: 'on' }),
      listener('on', { port: 8080, defaultPool: 'off' }),
    ],
    pools: [
      pool('off', { adminStateUp: false, members: [member('m-1', '10.202.0.91', 80)], healthMonitor: monitor() }),
      pool('on', {
        members: [member('m-2', '10.202.0.92', 80)],
        healthMonitor: monitor({ adminStateUp: false }),
      }),
    ],
  }),

  'admin-down-load-balancer': loadBalancer({
    adminStateUp: false,
    listeners: [listener('http', { defaultPool: 'web' })],
    pools: [pool('web', { members: [member('web-1', '10.202.0.11', 80)], healthMonitor: monitor() })],
  }),

  'proxy-protocols': loadBalancer({
    listeners: [
      listener('v1', { protocol: 'TCP', port: 8001, defaultPool: 'proxy-v1' }),
      listener('v2', { protocol: 'TCP', port: 8002, defaultPool: 'proxy-v2' }),
      listener('web', { port: 80, defaultPool: 'proxy-http' }),
    ],
    pools: [
      pool('proxy-v1', { protocol: 'PROXY', members: [member('m-1', '10.202.1.1', 8001)], healthMonitor: monitor({ type: 'TCP' }) }),
      pool('proxy-v2', {
        protocol: 'PROXYV2',
        members: [member('m-2', '10.202.1.2', 8002, { monitorPort: 8080 })],
        healthMonitor: monitor(),
      }),
      pool('proxy-http', { protocol: 'PROXY', members: [member('m-3', '10.202.1.3', 80)] }),
    ],
  }),

  ipv6: loadBalancer({
    vip: { address: '2001:db8:100::10', family: 6, prefixLength: 64, mac: 'fa:16:3e:01:02:04' },
    listeners: [listener('http', { defaultPool: 'web' }), listener('tcp', { protocol: 'TCP', port: 22, defaultPool: 'ssh' })],
    pools: [
      pool('web', {
        members: [
          member('web-1', '2001:db8:200::11', 8080, { monitorAddress: '2001:db8:300::11', monitorPort: 8081 }),
          member('web-2', '10.202.0.12', 8080),
        ],
        healthMonitor: monitor(),
      }),
      pool('ssh', { protocol: 'TCP', members: [member('bastion', '::ffff:10.202.0.30', 22)], healthMonitor: monitor({ type: 'TCP' }) }),
    ],
  }),

  'http-monitor-head-http11': loadBalancer({
    listeners: [listener('http', { defaultPool: 'web' })],
    pools: [
      pool('web', {
        members: [member('web-1', '10.202.0.11', 80)],
        healthMonitor: monitor({
          httpMethod: 'HEAD',
          urlPath: '/health/check?deep=1',
          httpVersion: '1.1',
          domainName: 'app.example.com',
          expectedCodes: '200,202',
        }),
      }),
    ],
  }),

  // HTTPS, TLS-HELLO and PING monitors; an HTTP/1.0 monitor with a Host header; TERMINATED_HTTPS kept down.
  'other-monitor-types-and-tls-listener': loadBalancer({
    listeners: [
      listener('passthrough', { protocol: 'HTTPS', port: 443, defaultPool: 'tls-app' }),
      listener('terminated', { protocol: 'TERMINATED_HTTPS', port: 8443, defaultPool: 'plain' }),
      listener('hello', { protocol: 'TCP', port: 9443, defaultPool: 'tls-hello' }),
      listener('ping', { protocol: 'TCP', port: 7000, defaultPool: 'pinged' }),
    ],
    pools: [
      pool('tls-app', {
        protocol: 'HTTPS',
        members: [member('tls-1', '10.202.2.1', 443)],
        healthMonitor: monitor({ type: 'HTTPS', urlPath: '/ready', expectedCodes: '200-202,204,301' }),
      }),
      pool('plain', {
        members: [member('plain-1', '10.202.2.2', 80)],
        healthMonitor: monitor({ httpVersion: '1.0', domainName: 'legacy.example.com' }),
      }),
      pool('tls-hello', { protocol: 'TCP', members: [member('hello-1', '10.202.2.3', 443)], healthMonitor: monitor({ type: 'TLS-HELLO' }) }),
      pool('pinged', { protocol: 'TCP', members: [member('ping-1', '10.202.2.4', 7000)], healthMonitor: monitor({ type: 'PING' }) }),
    ],
  }),

  empty: loadBalancer(),
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-golden-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function haproxyCheck(config: string, name: string): Promise<{ code: number; output: string }> {
  const file = join(dir, `${name}.cfg`);
  await writeFile(file, config);
  try {
    const { stdout, stderr } = await run(HAPROXY, ['-c', '-f', file], { timeout: 10_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('renderHaproxyConfig golden files', () => {
  for (const [name, lb] of Object.entries(cases)) {
    it(`${name} matches its golden file and passes haproxy -c`, async () => {
      const config = renderHaproxyConfig(lb, paths);
      await expect(config).toMatchFileSnapshot(`./haproxy/${name}.cfg`);

      const { code, output } = await haproxyCheck(config, name);
      expect(output).toContain('Configuration file is valid');
      expect(code).toBe(0);
      // The state file does not exist before the first reload; that is the only warning allowed.
      const warnings = output.split('\n').filter((l) => l.includes('[WARNING]') && !l.includes('server state file'));
      expect(warnings).toEqual([]);
    });
  }
});

describe('renderHaproxyConfig', () => {
  const lb = cases['shared-and-mixed-pools']!;

  it('is deterministic and independent of input order', () => {
    const a = renderHaproxyConfig(lb, paths);
    expect(renderHaproxyConfig(lb, paths)).toBe(a);
    const shuffled: DesiredLoadBalancer = {
      ...lb,
      listeners: [...lb.listeners].reverse(),
      pools: [...lb.pools].reverse().map((p) => ({ ...p, members: [...p.members].reverse() })),
    };
    expect(renderHaproxyConfig(shuffled, paths)).toBe(a);
  });

  it('ends with exactly one newline and starts with the ownership header', () => {
    const cfg = renderHaproxyConfig(lb, paths);
    expect(cfg.endsWith('\n')).toBe(true);
    expect(cfg.endsWith('\n\n')).toBe(false);
    expect(cfg.split('\n')[0]).toBe('# Generated by nslb for default/web. Do not edit: changes are overwritten.');
  });

  it('names frontends, backends and servers by the contract', () => {
    expect(frontendName('http')).toBe('listener.http');
    expect(backendName('web')).toBe('pool.web');
    const cfg = renderHaproxyConfig(lb, paths);
    expect(cfg).toContain('\nfrontend listener.api\n');
    expect(cfg).toContain('\nbackend pool.web\n');
    expect(cfg).toContain('    server web-1 10.202.0.11:80 weight 1\n');
  });

  it('raises the descriptor budget when the listeners need more than the default', () => {
    expect(renderHaproxyConfig(cases['limits-and-timeouts']!, paths)).toContain('    fd-hard-limit 121000\n');
    expect(renderHaproxyConfig(cases['http-round-robin']!, paths)).toContain('    fd-hard-limit 101000\n');
  });

  it('refuses values that would change the meaning of a config line', () => {
    const evil = (patch: Partial<ReturnType<typeof member>>) =>
      loadBalancer({ pools: [pool('web', { members: [member('m', '10.0.0.1', 80, patch)] })] });
    expect(() => renderHaproxyConfig(evil({ name: 'm\n    server x 1.2.3.4:80' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(evil({ address: '10.0.0.1 backup' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(evil({ port: Number.NaN }), paths)).toThrow(UnsafeConfigValueError);
    const hm = (patch: Partial<ReturnType<typeof monitor>>) =>
      loadBalancer({ pools: [pool('web', { members: [member('m', '10.0.0.1', 80)], healthMonitor: monitor(patch) })] });
    expect(() => renderHaproxyConfig(hm({ urlPath: '/a#b' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(hm({ domainName: 'a.example.com%[src]' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(hm({ expectedCodes: '200|.*' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(loadBalancer(), { ...paths, socket: '/run/my dir/s.sock' })).toThrow(UnsafeConfigValueError);
  });

  it('refuses a default pool that is not part of the load balancer', () => {
    const lb2 = loadBalancer({ listeners: [listener('http', { defaultPool: 'ghost' })] });
    expect(() => renderHaproxyConfig(lb2, paths)).toThrow(/defaultPool ghost/);
  });
});

describe('assertSafeToken', () => {
  it.each(['web-1', '10.0.0.1', '2001:db8::1', '/healthz?x=1&y=%20', '/var/lib/nslb/lb/nslb-0123456789ab/haproxy.sock'])(
    'accepts %j',
    (s) => {
      expect(assertSafeToken(s)).toBe(s);
    },
  );

  it.each([
    ['empty', ''],
    ['space', 'a b'],
    ['tab', 'a\tb'],
    ['newline', 'a\nb'],
    ['carriage return', 'a\rb'],
    ['hash', 'a#b'],
    ['double quote', 'a"b'],
    ['single quote', "a'b"],
    ['backslash', 'a\\b'],
    ['NUL', 'a\u0000b'],
    ['DEL', 'a\u007fb'],
    ['C1 control', 'a\u0085b'],
    ['no-break space', 'a\u00a0b'],
    ['line separator', 'a\u2028b'],
  ])('rejects %s', (_what, s) => {
    expect(() => assertSafeToken(s)).toThrow(UnsafeConfigValueError);
  });
});

describe('expandExpectedCodes', () => {
  it.each([
    ['200', [200]],
    ['200,202', [200, 202]],
    ['200-204', [200, 201, 202, 203, 204]],
    ['204, 200-201,200', [200, 201, 204]],
  ])('%s', (input, codes) => {
    expect(expandExpectedCodes(input)).toEqual(codes);
  });

  it.each(['', '20', '2000', '600', '204-200', '200,,202', 'abc', '200-'])('rejects %j', (input) => {
    expect(() => expandExpectedCodes(input)).toThrow(UnsafeConfigValueError);
  });
});
