import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { objectId, type AnyObject, type ApiObject, type ListenerProtocol, type PoolProtocol } from '../../src/api/v1alpha1/types.js';
import { buildDesired } from '../../src/desired/build.js';
import type { DesiredState, ObjectProblem } from '../../src/desired/model.js';
import { derivedMac, nodeNames } from '../../src/desired/names.js';
import { selfSignedSync, traditionalKeySync } from '../support/pki.js';
import { l7Policy, l7Rule, lb, listener, member, monitor, pool, webStack } from './fixtures/objects.js';

const opts = { defaultBridge: 'br-int' };
const build = (objects: AnyObject[]) => buildDesired(objects, opts);
const brief = (p: ObjectProblem) => `${p.kind} ${p.name} ${p.reason} ${p.path ?? '-'}: ${p.message}`;
const problemsOf = (objects: AnyObject[]) => build(objects).problems.map(brief);

describe('a valid load balancer', () => {
  it('gets every default filled in', () => {
    const d = build(webStack());
    expect(d.problems).toEqual([]);
    expect(d.blocked.size).toBe(0);
    expect(d.lbs.get('default/web')).toEqual({
      key: 'default/web',
      namespace: 'default',
      name: 'web',
      names: nodeNames('default', 'web'),
      bridge: 'br-int',
      vip: { address: '192.0.2.10', family: 4, prefixLength: 24, mac: derivedMac('default', 'web') },
      adminStateUp: true,
      listeners: [
        {
          name: 'http',
          protocol: 'HTTP',
          port: 80,
          defaultPool: 'app',
          connectionLimit: -1,
          timeouts: { clientData: 50000, memberConnect: 5000, memberData: 50000, tcpInspect: 0 },
          adminStateUp: true,
          insertHeaders: { forwardedFor: false, forwardedPort: false, forwardedProto: false },
          allowedCidrs: [],
          l7Policies: [],
        },
      ],
      pools: [
        {
          name: 'app',
          protocol: 'HTTP',
          lbAlgorithm: 'ROUND_ROBIN',
          adminStateUp: true,
          tlsToMembers: false,
          members: [
            { name: 'app-1', address: '198.51.100.11', port: 8080, weight: 1, backup: false, adminStateUp: true },
            { name: 'app-2', address: '198.51.100.12', port: 8080, weight: 1, backup: false, adminStateUp: true },
          ],
          healthMonitor: {
            name: 'app-check',
            type: 'HTTP',
            delay: 5,
            timeout: 3,
            maxRetries: 3,
            maxRetriesDown: 3,
            httpMethod: 'GET',
            urlPath: '/',
            expectedCodes: '200',
            adminStateUp: true,
          },
        },
      ],
    });
  });

  it('keeps what is given', () => {
    const d = build([
      lb('web', { address: '2001:DB8::10', gateway: '2001:db8::1', mac: 'FA:16:3E:AA:BB:CC', bridge: 'br-ex', vlan: 7, mtu: 1400 }, { adminStateUp: false }),
      listener('tcp', { protocol: 'TCP', port: 5432, connectionLimit: 100, timeouts: { clientData: 1000 }, adminStateUp: false }),
      pool('app', { protocol: 'PROXYV2', lbAlgorithm: 'SOURCE_IP', adminStateUp: false }),
      member('m', { address: '2001:db8::0:11', weight: 0, backup: true, monitorAddress: '2001:DB8::12', monitorPort: 9000, adminStateUp: false }),
      monitor('hm', {
        type: 'TCP',
        maxRetriesDown: 1,
        httpMethod: 'HEAD',
        urlPath: '/x',
        expectedCodes: '200-299',
        httpVersion: '1.1',
        domainName: 'a.example',
        adminStateUp: false,
      }),
    ]);
    expect(d.problems).toEqual([]);
    const web = d.lbs.get('default/web')!;
    expect(web.bridge).toBe('br-ex');
    expect(web.adminStateUp).toBe(false);
    expect(web.vip).toEqual({ address: '2001:db8::10', family: 6, prefixLength: 64, gateway: '2001:db8::1', mac: 'fa:16:3e:aa:bb:cc', vlan: 7, mtu: 1400 });
    expect(web.listeners[0]).toMatchObject({
      connectionLimit: 100,
      adminStateUp: false,
      timeouts: { clientData: 1000, memberConnect: 5000, memberData: 50000, tcpInspect: 0 },
    });
    expect(web.listeners[0]).not.toHaveProperty('defaultPool');
    expect(web.pools[0]).toMatchObject({ protocol: 'PROXYV2', lbAlgorithm: 'SOURCE_IP', adminStateUp: false });
    expect(web.pools[0]?.members[0]).toEqual({
      name: 'm',
      address: '2001:db8::11',
      port: 8080,
      weight: 0,
      backup: true,
      adminStateUp: false,
      monitorAddress: '2001:db8::12',
      monitorPort: 9000,
    });
    expect(web.pools[0]?.healthMonitor).toMatchObject({
      maxRetriesDown: 1,
      httpMethod: 'HEAD',
      urlPath: '/x',
      expectedCodes: '200-299',
      httpVersion: '1.1',
      domainName: 'a.example',
      adminStateUp: false,
    });
  });

  it('maps every object to its load balancer', () => {
    const d = build(webStack());
    expect([...d.owners]).toEqual(webStack().map((o) => [objectId(o), 'default/web']));
  });

  it('does not depend on input order', () => {
    const objects = [
      ...webStack(),
      listener('b-second', { port: 81 }),
      listener('a-first', { port: 82 }),
      member('app-0', { address: '198.51.100.10' }),
      lb('api', { address: '192.0.2.20' }),
      lb('web', { address: '192.0.2.30' }, {}, 'aaa'),
      listener('broken', { loadBalancer: 'nope' }),
    ];
    const forward = build(objects);
    const backward = build([...objects].reverse());
    expect(backward).toEqual(forward);
    expect([...forward.lbs.keys()]).toEqual(['aaa/web', 'default/api', 'default/web']);
    const web = forward.lbs.get('default/web')!;
    expect(web.listeners.map((l) => l.name)).toEqual(['a-first', 'b-second', 'http']);
    expect(web.pools[0]?.members.map((m) => m.name)).toEqual(['app-0', 'app-1', 'app-2']);
  });

  it('uses the default bridge given', () => {
    expect(buildDesired([lb('web')], { defaultBridge: 'br-lb' }).lbs.get('default/web')?.bridge).toBe('br-lb');
  });
});

describe('references', () => {
  it('a listener or pool naming a missing load balancer has no owner and blocks nothing', () => {
    const d = build([...webStack(), listener('orphan', { loadBalancer: 'nope' }), pool('lost', { loadBalancer: 'nope' })]);
    expect(d.problems.map(brief)).toEqual([
      'Listener orphan InvalidReference /spec/loadBalancer: load balancer "nope" does not exist in namespace "default"',
      'Pool lost InvalidReference /spec/loadBalancer: load balancer "nope" does not exist in namespace "default"',
    ]);
    expect(d.blocked.size).toBe(0);
    expect(d.lbs.has('default/web')).toBe(true);
    expect(d.owners.has('Listener/default/orphan')).toBe(false);
  });

  it('references do not cross namespaces', () => {
    expect(problemsOf([lb('web'), listener('l', {}, 'other')])).toEqual([
      'Listener l InvalidReference /spec/loadBalancer: load balancer "web" does not exist in namespace "other"',
    ]);
  });

  it('members and monitors need an existing pool', () => {
    const d = build([...webStack(), member('m9', { pool: 'nope' }), monitor('hm9', { pool: 'nope' })]);
    expect(d.problems.map(brief)).toEqual([
      'Member m9 InvalidReference /spec/pool: pool "nope" does not exist in namespace "default"',
      'HealthMonitor hm9 InvalidReference /spec/pool: pool "nope" does not exist in namespace "default"',
    ]);
    expect(d.blocked.size).toBe(0);
  });

  it('members of a pool without a load balancer are reported too', () => {
    expect(problemsOf([pool('app', { loadBalancer: 'gone' }), member('m')])).toEqual([
      'Pool app InvalidReference /spec/loadBalancer: load balancer "gone" does not exist in namespace "default"',
      'Member m InvalidReference /spec/pool: pool "app" belongs to load balancer "gone", which does not exist',
    ]);
  });

  it('a missing default pool blocks the load balancer', () => {
    const d = build([lb('web'), listener('http', { defaultPool: 'nope' }), lb('api', { address: '192.0.2.20' })]);
    const problem = 'Listener http InvalidReference /spec/defaultPool: pool "nope" does not exist in namespace "default"';
    expect(d.problems.map(brief)).toEqual([problem]);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
    expect(d.blocked.get('default/web')?.map(brief)).toEqual([problem]);
    expect([...d.lbs.keys()]).toEqual(['default/api']);
    expect(d.owners.get('Listener/default/http')).toBe('default/web');
  });

  it('the default pool must belong to the same load balancer', () => {
    const d = build([lb('web'), lb('api', { address: '192.0.2.20' }), listener('http', { defaultPool: 'app' }), pool('app', { loadBalancer: 'api' })]);
    expect(d.problems.map(brief)).toEqual(['Listener http InvalidReference /spec/defaultPool: pool "app" belongs to load balancer "api", not "web"']);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
    expect([...d.lbs.keys()]).toEqual(['default/api']);
  });

  it('every object is owned or has a problem', () => {
    const objects = [
      ...webStack(),
      listener('x', { loadBalancer: 'nope' }),
      pool('p2', { loadBalancer: 'nope' }),
      member('m2', { pool: 'p2' }),
      monitor('hm2', { pool: 'p2' }),
      member('m3', { pool: 'none' }),
      l7Policy('p-orphan', { listener: 'x' }),
      l7Policy('p-none', { listener: 'none' }),
      l7Rule('r-orphan', { l7Policy: 'p-orphan' }),
      l7Rule('r-none', { l7Policy: 'none' }),
      l7Policy('deny'),
      l7Rule('admin'),
    ];
    const d = build(objects);
    const withProblems = new Set(d.problems.map((p) => `${p.kind}/${p.namespace}/${p.name}`));
    expect(objects.filter((o) => !d.owners.has(objectId(o)) && !withProblems.has(objectId(o)))).toEqual([]);
  });
});

describe('listener → pool protocols', () => {
  const allowed: Record<ListenerProtocol, PoolProtocol[]> = {
    TCP: ['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'],
    HTTP: ['HTTP', 'PROXY', 'PROXYV2'],
    TERMINATED_HTTPS: ['HTTP', 'PROXY', 'PROXYV2'],
    HTTPS: ['HTTPS', 'TCP', 'PROXY', 'PROXYV2'],
    UDP: ['UDP'],
    SCTP: ['SCTP'],
    PROMETHEUS: [],
  };
  const pairs = (Object.keys(allowed) as ListenerProtocol[]).flatMap((l) =>
    (['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2', 'UDP', 'SCTP'] as PoolProtocol[]).map((p) => [l, p, allowed[l].includes(p)] as const),
  );

  it.each(pairs)('%s → %s allowed: %s', (l, p, ok) => {
    const problems = build([lb('web'), listener('l', { protocol: l, defaultPool: 'app' }), pool('app', { protocol: p })]).problems;
    const pairProblem = problems.find((x) => x.path === '/spec/defaultPool');
    if (ok) expect(pairProblem).toBeUndefined();
    else if (l === 'PROMETHEUS')
      expect(pairProblem && brief(pairProblem)).toBe(
        "Listener l InvalidSpec /spec/defaultPool: a PROMETHEUS listener has no pool: it answers with the load balancer's own metrics",
      );
    else
      expect(pairProblem && brief(pairProblem)).toBe(
        `Listener l InvalidSpec /spec/defaultPool: a ${l} listener cannot use ${p} pool "app" (pool protocol must be one of ${allowed[l].join(', ')})`,
      );
  });
});

describe('conflicts', () => {
  it('two listeners on one port: the second by name', () => {
    const d = build([
      lb('web'),
      lb('api', { address: '192.0.2.20' }),
      listener('b', { port: 80 }),
      listener('a', { port: 80 }),
      listener('c', { port: 80, loadBalancer: 'api' }),
    ]);
    expect(d.problems.map(brief)).toEqual(['Listener b Conflict /spec/port: port 80 is already used by listener "a" of load balancer "web"']);
    expect([...d.lbs.keys()]).toEqual(['default/api']);
  });

  it('two load balancers with one VIP on one segment: the second by namespace, then name', () => {
    expect(problemsOf([lb('b'), lb('a'), lb('a', {}, {}, 'zz'), lb('a', {}, {}, 'aa')])).toEqual([
      'LoadBalancer a Conflict /spec/vip/address: VIP 192.0.2.10 on bridge br-int (untagged) is already used by load balancer aa/a',
      'LoadBalancer b Conflict /spec/vip/address: VIP 192.0.2.10 on bridge br-int (untagged) is already used by load balancer aa/a',
      'LoadBalancer a Conflict /spec/vip/address: VIP 192.0.2.10 on bridge br-int (untagged) is already used by load balancer aa/a',
    ]);
  });

  it('a VIP is compared in canonical form, per bridge and VLAN', () => {
    expect(problemsOf([lb('a', { address: '2001:db8::1', vlan: 5 }), lb('b', { address: '2001:DB8:0::1', vlan: 5 })])).toEqual([
      'LoadBalancer b Conflict /spec/vip/address: VIP 2001:db8::1 on bridge br-int VLAN 5 is already used by load balancer default/a',
    ]);
    expect(problemsOf([lb('a'), lb('b', { vlan: 5 }), lb('c', { bridge: 'br-ex' }), lb('d', { bridge: 'br-int', vlan: 6 })])).toEqual([]);
    expect(problemsOf([lb('a'), lb('b', { bridge: 'br-int' })])).toHaveLength(1);
  });

  it('one health monitor per pool: the second by name', () => {
    expect(problemsOf([...webStack(), monitor('a-check')])).toEqual([
      'HealthMonitor app-check Conflict /spec/pool: pool "app" already has health monitor "a-check"',
    ]);
  });

  it('one member per address and port in a pool', () => {
    expect(problemsOf([...webStack(), member('app-3', { address: '198.51.100.11' }), member('app-4', { address: '198.51.100.11', port: 8081 })])).toEqual([
      'Member app-3 Conflict /spec/address: 198.51.100.11 port 8080 is already member "app-1" of pool "app"',
    ]);
  });

  it('the same object twice in the input', () => {
    expect(problemsOf([lb('web'), lb('web')])).toEqual(['LoadBalancer web Conflict -: LoadBalancer default/web is defined more than once']);
  });
});

describe('spec rules', () => {
  it('monitor timeout must not exceed delay', () => {
    expect(problemsOf([...webStack().slice(0, 5), monitor('hm', { delay: 3, timeout: 4 })])).toEqual([
      'HealthMonitor hm InvalidSpec /spec/timeout: must not exceed delay (3) (got 4)',
    ]);
    expect(problemsOf([...webStack().slice(0, 5), monitor('hm', { delay: 3, timeout: 3 })])).toEqual([]);
  });

  it('expected code ranges run upwards', () => {
    expect(problemsOf([...webStack().slice(0, 5), monitor('hm', { expectedCodes: '204-200' })])).toEqual([
      'HealthMonitor hm InvalidSpec /spec/expectedCodes: range must run from low to high (got "204-200")',
    ]);
  });

  it('the gateway is in the VIP family and prefix', () => {
    expect(problemsOf([lb('a', { gateway: '2001:db8::1' })])).toEqual([
      'LoadBalancer a InvalidSpec /spec/vip/gateway: must be an IPv4 address like the VIP (got "2001:db8::1")',
    ]);
    expect(problemsOf([lb('a', { gateway: '192.0.3.1' })])).toEqual([
      'LoadBalancer a InvalidSpec /spec/vip/gateway: must be inside the VIP prefix 192.0.2.0/24 (got "192.0.3.1")',
    ]);
    expect(problemsOf([lb('a', { gateway: '192.0.3.1', prefixLength: 16 })])).toEqual([]);
    expect(problemsOf([lb('a', { address: '2001:db8::10', gateway: '2001:db8:0:1::1' })])).toEqual([
      'LoadBalancer a InvalidSpec /spec/vip/gateway: must be inside the VIP prefix 2001:db8::/64 (got "2001:db8:0:1::1")',
    ]);
  });

  it('an IPv4 prefix is at most 32', () => {
    expect(problemsOf([lb('a', { prefixLength: 33 })])).toEqual([
      'LoadBalancer a InvalidSpec /spec/vip/prefixLength: must be at most 32 for an IPv4 VIP (got 33)',
    ]);
    expect(problemsOf([lb('a', { address: '2001:db8::1', prefixLength: 128 })])).toEqual([]);
  });

  it('the VIP MAC is unicast', () => {
    expect(problemsOf([lb('a', { mac: '01:00:5e:00:00:01' })])).toEqual([
      'LoadBalancer a InvalidSpec /spec/vip/mac: must be a unicast MAC address (got "01:00:5e:00:00:01")',
    ]);
  });

  it('additional VIPs: own prefix and gateway checks, no repeated address, one gateway per family', () => {
    const extra = (additionalVips: NonNullable<ApiObject<'LoadBalancer'>['spec']['additionalVips']>, vip = {}) =>
      problemsOf([lb('a', vip, { additionalVips })]);
    expect(extra([{ address: '2001:db8::10', gateway: '2001:db8::1' }], { gateway: '192.0.2.1' })).toEqual([]);
    expect(extra([{ address: '2001:db8::10', gateway: '192.0.2.1' }])).toEqual([
      'LoadBalancer a InvalidSpec /spec/additionalVips/0/gateway: must be an IPv6 address like the additional VIP (got "192.0.2.1")',
    ]);
    expect(extra([{ address: '2001:db8::10', gateway: '2001:db8:1::1' }])).toEqual([
      'LoadBalancer a InvalidSpec /spec/additionalVips/0/gateway: must be inside the additional VIP prefix 2001:db8::/64 (got "2001:db8:1::1")',
    ]);
    expect(extra([{ address: '198.51.100.10', prefixLength: 33 }])).toEqual([
      'LoadBalancer a InvalidSpec /spec/additionalVips/0/prefixLength: must be at most 32 for an IPv4 additional VIP (got 33)',
    ]);
    expect(extra([{ address: '2001:db8::10' }, { address: '2001:DB8:0::10' }, { address: '192.0.2.10' }])).toEqual([
      'LoadBalancer a InvalidSpec /spec/additionalVips/1/address: must differ from /spec/additionalVips/0/address (both are 2001:db8::10)',
      'LoadBalancer a InvalidSpec /spec/additionalVips/2/address: must differ from /spec/vip/address (both are 192.0.2.10)',
    ]);
    expect(extra([{ address: '198.51.100.10', gateway: '198.51.100.1' }], { gateway: '192.0.2.1' })).toEqual([
      'LoadBalancer a InvalidSpec /spec/additionalVips/0/gateway: only one IPv4 gateway is allowed (the namespace has one IPv4 default route); /spec/vip/gateway already sets it',
    ]);
  });

  it('an additional VIP is unique on its segment like a VIP', () => {
    expect(problemsOf([lb('a', {}, { additionalVips: [{ address: '2001:db8::10' }] }), lb('b', { address: '2001:db8::10' })])).toEqual([
      'LoadBalancer b Conflict /spec/vip/address: VIP 2001:db8::10 on bridge br-int (untagged) is already used by load balancer default/a',
    ]);
    expect(problemsOf([lb('a'), lb('b', { address: '192.0.2.11' }, { additionalVips: [{ address: '192.0.2.10' }] })])).toEqual([
      'LoadBalancer b Conflict /spec/additionalVips/0/address: VIP 192.0.2.10 on bridge br-int (untagged) is already used by load balancer default/a',
    ]);
    expect(
      problemsOf([lb('a', {}, { additionalVips: [{ address: '2001:db8::10' }] }), lb('b', { vlan: 7 }, { additionalVips: [{ address: '2001:db8::10' }] })]),
    ).toEqual([]);
  });

  it('additional VIPs reach the desired model with their defaults', () => {
    const d = build([
      lb(
        'a',
        { address: '2001:db8::10', gateway: '2001:db8::1' },
        {
          additionalVips: [
            { address: '192.0.2.10', gateway: '192.0.2.1' },
            { address: '198.51.100.10', prefixLength: 28 },
          ],
        },
      ),
    ]);
    expect(d.lbs.get('default/a')?.vip).toMatchObject({
      address: '2001:db8::10',
      family: 6,
      prefixLength: 64,
      gateway: '2001:db8::1',
      additional: [
        { address: '192.0.2.10', family: 4, prefixLength: 24, gateway: '192.0.2.1' },
        { address: '198.51.100.10', family: 4, prefixLength: 28 },
      ],
    });
    expect(build([lb('a')]).lbs.get('default/a')?.vip.additional).toBeUndefined();
  });

  it('members may be of another family than the VIP', () => {
    expect(problemsOf([...webStack(), member('v6', { address: '2001:db8::11' })])).toEqual([]);
  });
});

describe('Kubernetes Secrets are not read yet', () => {
  const https = (tls: NonNullable<ApiObject<'Listener'>['spec']['tls']>) =>
    listener('l', { protocol: 'TERMINATED_HTTPS', tls: { certificateFile: 'certs/web.pem', keyFile: 'certs/web.key', ...tls } });
  const secrets = 'is only for Kubernetes mode (Secrets); in file mode use certificateFile and keyFile';
  const cases: [string, AnyObject, string][] = [
    [
      'listener tls.secretName',
      listener('l', { protocol: 'TERMINATED_HTTPS', tls: { secretName: 'web-tls' } }),
      `Listener l NotSupported /spec/tls/secretName: tls.secretName ${secrets}`,
    ],
    [
      'listener SNI secretName',
      https({ sniCertificates: [{ secretName: 'api-tls' }] }),
      `Listener l NotSupported /spec/tls/sniCertificates/0/secretName: tls.sniCertificates[0].secretName ${secrets}`,
    ],
    ['listener sniSecretNames', https({ sniSecretNames: ['api-tls'] }), `Listener l NotSupported /spec/tls/sniSecretNames: tls.sniSecretNames ${secrets}`],
    ['pool tls.secretName', pool('p', { tls: { enabled: true, secretName: 'x' } }), `Pool p NotSupported /spec/tls/secretName: tls.secretName ${secrets}`],
    [
      'pool tls.caSecretName',
      pool('p', { tls: { enabled: true, caSecretName: 'x' } }),
      `Pool p NotSupported /spec/tls/caSecretName: tls.caSecretName ${secrets}`,
    ],
  ];

  it.each(cases)('%s', (_what, object, problem) => {
    const d = buildDesired([lb('web'), pool('app'), object], { defaultBridge: 'br-int', materials: WEB_MATERIALS });
    expect(d.problems.map(brief)).toEqual([problem]);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
    expect(d.lbs.size).toBe(0);
  });

  it('clientAuthentication NONE needs no CA', () => {
    const d = buildDesired([lb('web'), https({ clientAuthentication: 'NONE' })], { defaultBridge: 'br-int', materials: WEB_MATERIALS });
    expect(d.problems).toEqual([]);
  });
});

describe('protocols that used to be refused', () => {
  it('HTTPS listeners (passthrough) and HTTPS pools', () => {
    const d = build([lb('web'), listener('l', { protocol: 'HTTPS', port: 443, defaultPool: 'app' }), pool('app', { protocol: 'HTTPS' })]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]).toMatchObject({ protocol: 'HTTPS' });
    expect(d.lbs.get('default/web')?.listeners[0]).not.toHaveProperty('tls');
    expect(d.lbs.get('default/web')?.pools[0]).toMatchObject({ protocol: 'HTTPS', tlsToMembers: false });
  });

  it.each(['PING', 'TCP', 'HTTP', 'HTTPS', 'TLS-HELLO'] as const)('health monitor %s', (type) => {
    const d = build([...webStack().slice(0, 5), monitor('hm', { type })]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.pools[0]?.healthMonitor?.type).toBe(type);
  });

  it('HTTP fields on a non-HTTP monitor are ignored, not refused', () => {
    const d = build([
      ...webStack().slice(0, 5),
      monitor('hm', { type: 'TCP', urlPath: '/x', httpMethod: 'POST', expectedCodes: '201', httpVersion: '1.1', domainName: 'a.example' }),
    ]);
    expect(d.problems).toEqual([]);
  });

  it('pool tls.enabled means TLS to the members', () => {
    const d = build([...webStack(), pool('plain', { tls: { enabled: false } }), pool('secure', { tls: { enabled: true } })]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.pools.map((p) => [p.name, p.tlsToMembers])).toEqual([
      ['app', false],
      ['plain', false],
      ['secure', true],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// TLS termination.

// Certificates are parsed (expiry, key match), so the fixtures are real: self-signed, made once per run.
// SECRET stands for key material that must never show up in a message.
const SECRET = 'S3CR3T-KEY-MATERIAL-d41d8cd98f00b204';
const WEB = selfSignedSync('www.example.test');
const CERT = WEB.cert;
const KEY = WEB.key;
const API = selfSignedSync('api.example.test');
// A chain: the leaf, then another certificate (standing in for an intermediate).
const API_CERT = `${API.cert}${selfSignedSync('intermediate').cert}`;
const API_KEY = traditionalKeySync(API.key);
const WEB_MATERIALS: ReadonlyMap<string, string> = new Map([
  ['certs/web.pem', CERT],
  ['certs/web.key', KEY],
  ['/etc/nslb/api.pem', API_CERT],
  ['/etc/nslb/api.key', API_KEY],
]);

const bundle = (cert: string, key: string) => {
  const pem = `${cert.trim()}\n${key.trim()}\n`;
  return { fileName: `${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.pem`, pem };
};

describe('TERMINATED_HTTPS', () => {
  const terminated = (tls: ApiObject<'Listener'>['spec']['tls'] | undefined, more: Partial<ApiObject<'Listener'>['spec']> = {}) =>
    listener('https', { protocol: 'TERMINATED_HTTPS', port: 443, ...(tls === undefined ? {} : { tls }), ...more });
  const buildTls = (l: AnyObject, materials: ReadonlyMap<string, string> = WEB_MATERIALS) =>
    buildDesired([lb('web'), l], { defaultBridge: 'br-int', materials });

  it('bundles certificate and key into one PEM named by its hash', () => {
    const d = buildTls(terminated({ certificateFile: 'certs/web.pem', keyFile: 'certs/web.key' }));
    expect(d.problems).toEqual([]);
    const tls = d.lbs.get('default/web')?.listeners[0]?.tls;
    expect(tls).toEqual({
      certificate: bundle(CERT, KEY),
      sniCertificates: [],
      clientAuthentication: 'NONE',
      policy: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', alpn: ['h2', 'http/1.1', 'http/1.0'] },
    });
    expect(tls?.certificate.pem).toBe(`${CERT.trim()}\n${KEY.trim()}\n`);
    expect(tls?.certificate.fileName).toMatch(/^[0-9a-f]{16}\.pem$/);
  });

  it('SNI certificates in the order given, without duplicates or the default again', () => {
    const d = buildTls(
      terminated({
        certificateFile: 'certs/web.pem',
        keyFile: 'certs/web.key',
        sniCertificates: [
          { certificateFile: '/etc/nslb/api.pem', keyFile: '/etc/nslb/api.key' },
          { certificateFile: 'certs/web.pem', keyFile: 'certs/web.key' },
          { certificateFile: '/etc/nslb/api.pem', keyFile: '/etc/nslb/api.key' },
        ],
      }),
    );
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]?.tls?.sniCertificates).toEqual([bundle(API_CERT, API_KEY)]);
  });

  it('a certificate file that holds the key too may be named twice', () => {
    const both = `${CERT}${KEY}`;
    const d = buildTls(terminated({ certificateFile: 'both.pem', keyFile: 'both.pem' }), new Map([['both.pem', both]]));
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]?.tls?.certificate.pem).toBe(`${both.trim()}\n`);
  });

  it('a rotated certificate is a new file name', () => {
    const before = buildTls(terminated({ certificateFile: 'certs/web.pem', keyFile: 'certs/web.key' }));
    const after = buildTls(
      terminated({ certificateFile: 'certs/web.pem', keyFile: 'certs/web.key' }),
      new Map([...WEB_MATERIALS, ['certs/web.pem', selfSignedSync('www.example.test', { keyPem: KEY }).cert]]),
    );
    const name = (d: DesiredState) => d.lbs.get('default/web')?.listeners[0]?.tls?.certificate.fileName;
    expect(name(after)).not.toBe(name(before));
  });

  it('requires a certificate and key', () => {
    expect(buildTls(terminated(undefined)).problems.map(brief)).toEqual([
      'Listener https InvalidSpec /spec/tls/certificateFile: is required on a TERMINATED_HTTPS listener',
    ]);
    expect(buildTls(terminated({})).problems.map(brief)).toEqual([
      'Listener https InvalidSpec /spec/tls/certificateFile: is required on a TERMINATED_HTTPS listener',
      'Listener https InvalidSpec /spec/tls/keyFile: is required on a TERMINATED_HTTPS listener',
    ]);
    expect(buildTls(terminated({ certificateFile: 'certs/web.pem', sniCertificates: [{ keyFile: 'certs/web.key' }] })).problems.map(brief)).toEqual([
      'Listener https InvalidSpec /spec/tls/keyFile: is required on a TERMINATED_HTTPS listener',
      'Listener https InvalidSpec /spec/tls/sniCertificates/0/certificateFile: is required on a TERMINATED_HTTPS listener',
    ]);
  });

  it('names the field and the file that is missing', () => {
    const d = buildTls(
      terminated({
        certificateFile: 'certs/nope.pem',
        keyFile: 'certs/web.key',
        sniCertificates: [{ certificateFile: '/etc/nslb/api.pem', keyFile: 'gone.key' }],
      }),
    );
    expect(d.problems.map(brief)).toEqual([
      'Listener https InvalidReference /spec/tls/certificateFile: tls.certificateFile: file "certs/nope.pem" not found',
      'Listener https InvalidReference /spec/tls/sniCertificates/0/keyFile: tls.sniCertificates[0].keyFile: file "gone.key" not found',
    ]);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
  });

  it('without materials every file is missing', () => {
    const d = build([lb('web'), terminated({ certificateFile: 'certs/web.pem', keyFile: 'certs/web.key' })]);
    expect(d.problems.map((p) => p.reason)).toEqual(['InvalidReference', 'InvalidReference']);
  });

  it('checks what the files hold', () => {
    const materials = new Map([
      ['key-as-cert.pem', KEY],
      ['cert-as-key.pem', CERT],
      ['with-key.pem', `${CERT}${KEY}`],
      ['encrypted.key', `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${SECRET}\n-----END ENCRYPTED PRIVATE KEY-----\n`],
      [
        'legacy-encrypted.key',
        `-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n${SECRET}\n-----END RSA PRIVATE KEY-----\n`,
      ],
      ['rsa.key', traditionalKeySync(KEY)],
      ['cert.pem', CERT],
    ]);
    const problems = (certificateFile: string, keyFile: string) =>
      buildTls(terminated({ certificateFile, keyFile }), materials).problems.map((p) => `${p.path ?? '-'}: ${p.message}`);
    expect(problems('key-as-cert.pem', 'cert-as-key.pem')).toEqual([
      '/spec/tls/certificateFile: tls.certificateFile: file "key-as-cert.pem" holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
      '/spec/tls/keyFile: tls.keyFile: file "cert-as-key.pem" holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)',
    ]);
    expect(problems('cert.pem', 'encrypted.key')).toEqual([
      '/spec/tls/keyFile: tls.keyFile: file "encrypted.key" holds an encrypted key; encrypted keys are not supported',
    ]);
    expect(problems('cert.pem', 'legacy-encrypted.key')).toEqual([
      '/spec/tls/keyFile: tls.keyFile: file "legacy-encrypted.key" holds an encrypted key; encrypted keys are not supported',
    ]);
    expect(problems('with-key.pem', 'rsa.key')).toEqual([
      '/spec/tls/certificateFile: tls.certificateFile: file "with-key.pem" also holds a private key; name that file in keyFile too, or keep the key out of it',
    ]);
    expect(problems('cert.pem', 'rsa.key')).toEqual([]);
    expect(buildTls(terminated({ certificateFile: 'cert.pem', keyFile: 'rsa.key' }), materials).problems.every((p) => p.reason === 'InvalidSpec')).toBe(true);
  });

  it('never puts key material into a message', () => {
    const materials = new Map([
      ...WEB_MATERIALS,
      ['key-as-cert.pem', KEY],
      ['with-key.pem', `${CERT}${KEY}`],
      ['encrypted.key', `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${SECRET}\n-----END ENCRYPTED PRIVATE KEY-----\n`],
      ['garbage.key', SECRET],
    ]);
    const broken = [
      terminated({ certificateFile: 'key-as-cert.pem', keyFile: 'garbage.key' }),
      terminated({ certificateFile: 'with-key.pem', keyFile: 'encrypted.key' }, { port: 444 }),
      terminated(
        { certificateFile: 'certs/web.pem', keyFile: 'certs/web.key', sniCertificates: [{ certificateFile: 'garbage.key', keyFile: 'key-as-cert.pem' }] },
        { port: 445 },
      ),
    ].map((l, i) => ({ ...l, metadata: { ...l.metadata, name: `l${i}` } }));
    const d = buildDesired([lb('web'), ...broken], { defaultBridge: 'br-int', materials });
    expect(d.problems.length).toBeGreaterThanOrEqual(5);
    expect(JSON.stringify(d.problems)).not.toContain(SECRET);
    expect(JSON.stringify([...d.blocked])).not.toContain(SECRET);
  });

  it('tls belongs on TERMINATED_HTTPS listeners only', () => {
    for (const protocol of ['HTTP', 'HTTPS', 'TCP'] as const) {
      expect(buildTls(listener('l', { protocol, tls: { certificateFile: 'certs/web.pem', keyFile: 'certs/web.key' } })).problems.map(brief)).toEqual([
        `Listener l InvalidSpec /spec/tls: is only allowed on TERMINATED_HTTPS listeners (protocol is ${protocol})`,
      ]);
    }
  });
});

describe('listener options', () => {
  it('insertHeaders become three booleans', () => {
    const d = build([lb('web'), listener('a', { insertHeaders: { 'X-Forwarded-For': true, 'X-Forwarded-Proto': false } }), listener('b', { port: 81 })]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners.map((l) => l.insertHeaders)).toEqual([
      { forwardedFor: true, forwardedPort: false, forwardedProto: false },
      { forwardedFor: false, forwardedPort: false, forwardedProto: false },
    ]);
  });

  it('insertHeaders need an HTTP listener (as Octavia)', () => {
    expect(problemsOf([lb('web'), listener('l', { protocol: 'TCP', insertHeaders: { 'X-Forwarded-Port': true } })])).toEqual([
      'Listener l InvalidSpec /spec/insertHeaders: is only allowed on HTTP and TERMINATED_HTTPS listeners (protocol is TCP)',
    ]);
    expect(problemsOf([lb('web'), listener('l', { protocol: 'HTTPS', insertHeaders: { 'X-Forwarded-For': true } })])).toHaveLength(1);
    // All false asks for nothing, so there is nothing to refuse.
    expect(problemsOf([lb('web'), listener('l', { protocol: 'TCP', insertHeaders: { 'X-Forwarded-For': false } })])).toEqual([]);
  });

  it('allowedCidrs are canonical networks, deduplicated, in order, of either family', () => {
    const d = build([
      lb('web'),
      listener('l', { protocol: 'TCP', allowedCidrs: ['10.0.0.5/24', '2001:DB8:0::1/48', '10.0.0.0/24', '192.0.2.7/32', '0.0.0.0/0', '2001:db8::/48'] }),
    ]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]?.allowedCidrs).toEqual(['10.0.0.0/24', '2001:db8::/48', '192.0.2.7/32', '0.0.0.0/0']);
  });

  it('an allowed CIDR that skipped validation is refused, not guessed at', () => {
    expect(problemsOf([lb('web'), listener('l', { allowedCidrs: ['10.0.0.0/8', '10.0.0.0/33'] })])).toEqual([
      'Listener l InvalidSpec /spec/allowedCidrs/1: must be a CIDR such as 10.0.0.0/24 or 2001:db8::/64 (got "10.0.0.0/33")',
    ]);
  });
});

describe('session persistence', () => {
  const stack = (
    sp: NonNullable<ApiObject<'Pool'>['spec']['sessionPersistence']>,
    listenerProtocol: ListenerProtocol = 'HTTP',
    poolProtocol: PoolProtocol = 'HTTP',
  ) => [lb('web'), listener('l', { protocol: listenerProtocol, defaultPool: 'app' }), pool('app', { protocol: poolProtocol, sessionPersistence: sp })];

  it('is carried over as given', () => {
    for (const sp of [{ type: 'SOURCE_IP' }, { type: 'HTTP_COOKIE' }, { type: 'APP_COOKIE', cookieName: 'JSESSIONID' }] as const) {
      const d = build(stack(sp));
      expect(d.problems).toEqual([]);
      expect(d.lbs.get('default/web')?.pools[0]?.sessionPersistence).toEqual(sp);
    }
    expect(build(webStack()).lbs.get('default/web')?.pools[0]).not.toHaveProperty('sessionPersistence');
  });

  it('APP_COOKIE needs a cookie name, and only APP_COOKIE takes one (as Octavia)', () => {
    expect(problemsOf(stack({ type: 'APP_COOKIE' }))).toEqual([
      'Pool app InvalidSpec /spec/sessionPersistence/cookieName: is required for APP_COOKIE persistence',
    ]);
    expect(problemsOf(stack({ type: 'HTTP_COOKIE', cookieName: 'X' }))).toEqual([
      'Pool app InvalidSpec /spec/sessionPersistence/cookieName: is only allowed with APP_COOKIE persistence (type is HTTP_COOKIE)',
    ]);
    expect(problemsOf(stack({ type: 'SOURCE_IP', cookieName: 'X' }, 'TCP', 'TCP'))).toEqual([
      'Pool app InvalidSpec /spec/sessionPersistence/cookieName: is only allowed with APP_COOKIE persistence (type is SOURCE_IP)',
    ]);
  });

  it('cookies need HTTP on every listener that uses the pool', () => {
    expect(problemsOf(stack({ type: 'HTTP_COOKIE' }, 'TCP', 'HTTP'))).toEqual([
      'Pool app InvalidSpec /spec/sessionPersistence/type: HTTP_COOKIE persistence needs HTTP, but TCP listener "l" uses this pool',
    ]);
    expect(problemsOf(stack({ type: 'APP_COOKIE', cookieName: 'S' }, 'TCP', 'PROXY'))).toEqual([
      'Pool app InvalidSpec /spec/sessionPersistence/type: APP_COOKIE persistence needs HTTP, but TCP listener "l" uses this pool',
    ]);
    // (The listener has no certificate; only the pool is of interest here.)
    expect(problemsOf(stack({ type: 'HTTP_COOKIE' }, 'TERMINATED_HTTPS', 'PROXYV2')).filter((p) => p.startsWith('Pool'))).toEqual([]);
  });

  it('cookies never work on a TCP or HTTPS pool, used or not', () => {
    expect(problemsOf([lb('web'), pool('app', { protocol: 'TCP', sessionPersistence: { type: 'HTTP_COOKIE' } })])).toEqual([
      'Pool app InvalidSpec /spec/sessionPersistence/type: HTTP_COOKIE persistence needs HTTP, but a TCP pool is only used by TCP and HTTPS listeners',
    ]);
    expect(problemsOf(stack({ type: 'SOURCE_IP' }, 'HTTPS', 'HTTPS'))).toEqual([]);
  });

  it('a pool shared by an HTTP and a TCP listener is fine without cookies', () => {
    const d = build([
      lb('web'),
      listener('http', { defaultPool: 'app' }),
      listener('tcp', { protocol: 'TCP', port: 81, defaultPool: 'app' }),
      pool('app', { sessionPersistence: { type: 'SOURCE_IP' } }),
    ]);
    expect(d.problems).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// L7.

/** web: HTTP listener "http" → pool app; pool "api" for redirects; policy "deny" with rule "admin". */
const l7Stack = (): AnyObject[] => [...webStack(), pool('api'), l7Policy('deny'), l7Rule('admin')];

describe('L7 policies', () => {
  it('are assembled onto their listener with defaults', () => {
    const d = build(l7Stack());
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]?.l7Policies).toEqual([
      {
        name: 'deny',
        action: 'REJECT',
        position: 1,
        redirectHttpCode: 302,
        rules: [{ name: 'admin', type: 'PATH', compareType: 'STARTS_WITH', value: '/admin', invert: false }],
      },
    ]);
    expect(d.owners.get('L7Policy/default/deny')).toBe('default/web');
    expect(d.owners.get('L7Rule/default/admin')).toBe('default/web');
  });

  it("carry each action's target", () => {
    const d = build([
      ...l7Stack(),
      l7Policy('to-api', { action: 'REDIRECT_TO_POOL', redirectPool: 'api' }),
      l7Policy('to-url', { action: 'REDIRECT_TO_URL', redirectUrl: 'https://www.example.com/moved', redirectHttpCode: 301 }),
      l7Policy('to-https', { action: 'REDIRECT_PREFIX', redirectPrefix: 'https://www.example.com', redirectHttpCode: 308 }),
      l7Rule('r1', { l7Policy: 'to-api' }),
      l7Rule('r2', { l7Policy: 'to-url' }),
      l7Rule('r3', { l7Policy: 'to-https' }),
    ]);
    expect(d.problems).toEqual([]);
    const policies = d.lbs.get('default/web')?.listeners[0]?.l7Policies ?? [];
    expect(policies.map(({ rules: _rules, ...p }) => p)).toEqual([
      { name: 'deny', action: 'REJECT', position: 1, redirectHttpCode: 302 },
      { name: 'to-api', action: 'REDIRECT_TO_POOL', position: 2, redirectPool: 'api', redirectHttpCode: 302 },
      { name: 'to-https', action: 'REDIRECT_PREFIX', position: 3, redirectPrefix: 'https://www.example.com', redirectHttpCode: 308 },
      { name: 'to-url', action: 'REDIRECT_TO_URL', position: 4, redirectUrl: 'https://www.example.com/moved', redirectHttpCode: 301 },
    ]);
  });

  it('need an existing listener, whose load balancer owns them', () => {
    const d = build([...webStack(), l7Policy('p', { listener: 'nope' }), l7Rule('r', { l7Policy: 'p' })]);
    expect(d.problems.map(brief)).toEqual([
      'L7Policy p InvalidReference /spec/listener: listener "nope" does not exist in namespace "default"',
      'L7Rule r InvalidReference /spec/l7Policy: L7 policy "p" has no load balancer: listener "nope" does not exist',
    ]);
    expect(d.blocked.size).toBe(0);
    expect(d.owners.has('L7Policy/default/p')).toBe(false);
  });

  it('a listener without a load balancer leaves its policies and rules without one', () => {
    expect(problemsOf([listener('l', { loadBalancer: 'gone' }), l7Policy('p', { listener: 'l' }), l7Rule('r', { l7Policy: 'p' })])).toEqual([
      'Listener l InvalidReference /spec/loadBalancer: load balancer "gone" does not exist in namespace "default"',
      'L7Policy p InvalidReference /spec/listener: listener "l" belongs to load balancer "gone", which does not exist',
      'L7Rule r InvalidReference /spec/l7Policy: L7 policy "p" has no load balancer: listener "l" belongs to load balancer "gone", which does not exist',
    ]);
  });

  it('rules need an existing policy', () => {
    expect(problemsOf([...l7Stack(), l7Rule('r', { l7Policy: 'nope' })])).toEqual([
      'L7Rule r InvalidReference /spec/l7Policy: L7 policy "nope" does not exist in namespace "default"',
    ]);
  });

  it('a problem on a policy or rule blocks its load balancer', () => {
    const d = build([...l7Stack(), l7Rule('bad', { type: 'HEADER' }), lb('api', { address: '192.0.2.20' })]);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
    expect([...d.lbs.keys()]).toEqual(['default/api']);
  });

  it('only on HTTP and TERMINATED_HTTPS listeners', () => {
    for (const protocol of ['TCP', 'HTTPS'] as const) {
      expect(problemsOf([lb('web'), listener('http', { protocol }), l7Policy('deny'), l7Rule('admin')])).toEqual([
        `L7Policy deny InvalidSpec /spec/listener: L7 policies need an HTTP or TERMINATED_HTTPS listener (listener "http" is ${protocol})`,
      ]);
    }
  });

  it('each action requires its own target and refuses the others', () => {
    expect(problemsOf([...l7Stack(), l7Policy('p', { action: 'REDIRECT_TO_POOL' })])).toEqual([
      'L7Policy p InvalidSpec /spec/redirectPool: is required for action REDIRECT_TO_POOL',
    ]);
    expect(problemsOf([...l7Stack(), l7Policy('p', { action: 'REDIRECT_TO_URL' })])).toEqual([
      'L7Policy p InvalidSpec /spec/redirectUrl: is required for action REDIRECT_TO_URL',
    ]);
    expect(problemsOf([...l7Stack(), l7Policy('p', { action: 'REDIRECT_PREFIX' })])).toEqual([
      'L7Policy p InvalidSpec /spec/redirectPrefix: is required for action REDIRECT_PREFIX',
    ]);
    expect(
      problemsOf([
        ...l7Stack(),
        l7Policy('p', { action: 'REJECT', redirectPool: 'api', redirectUrl: 'http://a', redirectPrefix: 'http://b', redirectHttpCode: 301 }),
      ]),
    ).toEqual([
      'L7Policy p InvalidSpec /spec/redirectPool: is only allowed with action REDIRECT_TO_POOL (action is REJECT)',
      'L7Policy p InvalidSpec /spec/redirectUrl: is only allowed with action REDIRECT_TO_URL (action is REJECT)',
      'L7Policy p InvalidSpec /spec/redirectPrefix: is only allowed with action REDIRECT_PREFIX (action is REJECT)',
      'L7Policy p InvalidSpec /spec/redirectHttpCode: is only allowed with actions REDIRECT_TO_URL and REDIRECT_PREFIX (action is REJECT)',
    ]);
    expect(problemsOf([...l7Stack(), l7Policy('p', { action: 'REDIRECT_TO_POOL', redirectPool: 'api', redirectHttpCode: 307 })])).toEqual([
      'L7Policy p InvalidSpec /spec/redirectHttpCode: is only allowed with actions REDIRECT_TO_URL and REDIRECT_PREFIX (action is REDIRECT_TO_POOL)',
    ]);
  });

  it('a redirect pool exists, belongs to the same load balancer and fits the listener', () => {
    const others = [lb('other', { address: '192.0.2.20' }), pool('theirs', { loadBalancer: 'other' }), pool('tcp', { protocol: 'TCP' })];
    expect(problemsOf([...l7Stack(), ...others, l7Policy('p', { action: 'REDIRECT_TO_POOL', redirectPool: 'nope' })])).toEqual([
      'L7Policy p InvalidReference /spec/redirectPool: pool "nope" does not exist in namespace "default"',
    ]);
    const d = build([...l7Stack(), ...others, l7Policy('p', { action: 'REDIRECT_TO_POOL', redirectPool: 'theirs' })]);
    expect(d.problems.map(brief)).toEqual(['L7Policy p InvalidReference /spec/redirectPool: pool "theirs" belongs to load balancer "other", not "web"']);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
    expect([...d.lbs.keys()]).toEqual(['default/other']);
    expect(problemsOf([...l7Stack(), ...others, l7Policy('p', { action: 'REDIRECT_TO_POOL', redirectPool: 'tcp' })])).toEqual([
      'L7Policy p InvalidSpec /spec/redirectPool: a HTTP listener cannot use TCP pool "tcp" (pool protocol must be one of HTTP, PROXY, PROXYV2)',
    ]);
  });

  it('admin-down policies, and policies without an enabled rule (as Octavia), are left out', () => {
    const d = build([
      ...l7Stack(),
      l7Policy('off', { adminStateUp: false }),
      l7Rule('off-rule', { l7Policy: 'off' }),
      l7Policy('empty'),
      l7Policy('rules-off'),
      l7Rule('r-off', { l7Policy: 'rules-off', adminStateUp: false }),
    ]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]?.l7Policies.map((p) => [p.name, p.position])).toEqual([['deny', 1]]);
    // Still owned, so status can report on them.
    expect(['off', 'empty', 'rules-off'].map((n) => d.owners.get(`L7Policy/default/${n}`))).toEqual(['default/web', 'default/web', 'default/web']);
  });

  it('go to the listener they name', () => {
    const d = build([...l7Stack(), listener('other', { port: 81 }), l7Policy('p2', { listener: 'other' }), l7Rule('r2', { l7Policy: 'p2' })]);
    const web = d.lbs.get('default/web')!;
    expect(web.listeners.map((l) => [l.name, l.l7Policies.map((p) => p.name)])).toEqual([
      ['http', ['deny']],
      ['other', ['p2']],
    ]);
  });
});

describe('L7 policy position', () => {
  const policies = (...specs: [string, number | undefined][]) =>
    specs.flatMap(([name, position]) => [l7Policy(name, position === undefined ? {} : { position }), l7Rule(`${name}-rule`, { l7Policy: name })]);
  const order = (objects: AnyObject[]) =>
    build([...webStack(), ...objects])
      .lbs.get('default/web')
      ?.listeners[0]?.l7Policies.map((p) => `${p.position}:${p.name}`);

  it('a policy inserted at position 1 goes first', () => {
    expect(order(policies(['a', undefined], ['b', undefined]))).toEqual(['1:a', '2:b']);
    expect(order(policies(['a', undefined], ['b', undefined], ['z', 1]))).toEqual(['1:z', '2:a', '3:b']);
  });

  it('omitted = last; ties by name; renumbered 1..n', () => {
    expect(order(policies(['last', undefined], ['c', 7], ['b', 7], ['a', 40], ['d', 2]))).toEqual(['1:d', '2:b', '3:c', '4:a', '5:last']);
  });

  it('admin-down policies leave no gap', () => {
    const objects = policies(['a', 1], ['b', 2], ['c', 3]).map((o) =>
      o.kind === 'L7Policy' && o.metadata.name === 'b' ? l7Policy('b', { position: 2, adminStateUp: false }) : o,
    );
    expect(order(objects)).toEqual(['1:a', '2:c']);
  });

  it('does not depend on input order', () => {
    const objects = [...webStack(), ...policies(['x', 3], ['y', undefined], ['w', 3], ['v', 1])];
    expect(build([...objects].reverse())).toEqual(build(objects));
  });
});

describe('L7 rules', () => {
  it('are sorted by name, keep key and invert, drop admin-down ones', () => {
    const d = build([
      ...l7Stack(),
      l7Rule('b-host', { type: 'HOST_NAME', compareType: 'EQUAL_TO', value: 'www.example.com', invert: true }),
      l7Rule('a-cookie', { type: 'COOKIE', compareType: 'REGEX', key: 'session', value: '^[a-f0-9]+$' }),
      l7Rule('c-off', { adminStateUp: false }),
    ]);
    expect(d.problems).toEqual([]);
    expect(d.lbs.get('default/web')?.listeners[0]?.l7Policies[0]?.rules).toEqual([
      { name: 'a-cookie', type: 'COOKIE', compareType: 'REGEX', key: 'session', value: '^[a-f0-9]+$', invert: false },
      { name: 'admin', type: 'PATH', compareType: 'STARTS_WITH', value: '/admin', invert: false },
      { name: 'b-host', type: 'HOST_NAME', compareType: 'EQUAL_TO', value: 'www.example.com', invert: true },
    ]);
  });

  it('HEADER and COOKIE need a key; the others refuse one', () => {
    expect(problemsOf([...l7Stack(), l7Rule('h', { type: 'HEADER' }), l7Rule('k', { type: 'COOKIE' })])).toEqual([
      'L7Rule h InvalidSpec /spec/key: is required for HEADER rules (the header name)',
      'L7Rule k InvalidSpec /spec/key: is required for COOKIE rules (the cookie name)',
    ]);
    for (const type of ['HOST_NAME', 'PATH', 'FILE_TYPE'] as const) {
      expect(problemsOf([...l7Stack(), l7Rule('r', { type, compareType: 'EQUAL_TO', key: 'X-A' })])).toEqual([
        `L7Rule r InvalidSpec /spec/key: is only allowed on HEADER and COOKIE rules (type is ${type})`,
      ]);
    }
    expect(problemsOf([...l7Stack(), l7Rule('r', { type: 'HEADER', key: 'X-Api', compareType: 'CONTAINS', value: 'v2' })])).toEqual([]);
  });

  it('FILE_TYPE compares with EQUAL_TO or REGEX only (as Octavia)', () => {
    for (const compareType of ['STARTS_WITH', 'ENDS_WITH', 'CONTAINS'] as const) {
      expect(problemsOf([...l7Stack(), l7Rule('r', { type: 'FILE_TYPE', compareType, value: 'jpg' })])).toEqual([
        `L7Rule r InvalidSpec /spec/compareType: must be EQUAL_TO or REGEX for FILE_TYPE rules (got ${compareType})`,
      ]);
    }
    for (const compareType of ['EQUAL_TO', 'REGEX'] as const) {
      expect(problemsOf([...l7Stack(), l7Rule('r', { type: 'FILE_TYPE', compareType, value: 'jpg' })])).toEqual([]);
    }
  });
});

describe('blocking', () => {
  it('collects every problem of a load balancer tree and leaves the others serving', () => {
    const d = build([
      ...webStack(),
      listener('bad-port', { port: 80 }),
      monitor('z-check', { pool: 'app' }),
      lb('api', { address: '192.0.2.20' }),
      listener('api-http', { loadBalancer: 'api' }),
    ]);
    expect(d.blocked.get('default/web')?.map(brief)).toEqual([
      'Listener http Conflict /spec/port: port 80 is already used by listener "bad-port" of load balancer "web"',
      'HealthMonitor z-check Conflict /spec/pool: pool "app" already has health monitor "app-check"',
    ]);
    expect([...d.lbs.keys()]).toEqual(['default/api']);
    expect(d.owners.get('HealthMonitor/default/z-check')).toBe('default/web');
  });
});

describe('blocked order', () => {
  it('is namespace/name order, not problem order', () => {
    const d = build([
      lb('a', { prefixLength: 40 }),
      lb('b', { address: '192.0.2.20' }),
      listener('l', { loadBalancer: 'a', port: 1 }),
      listener('k', { loadBalancer: 'b', defaultPool: 'none' }),
    ]);
    expect([...d.blocked.keys()]).toEqual(['default/a', 'default/b']);
    const d2 = build([lb('a'), lb('b', { address: '192.0.2.20', prefixLength: 40 }), listener('k', { loadBalancer: 'a', defaultPool: 'none' })]);
    expect(d2.problems.map((p) => p.kind)).toEqual(['LoadBalancer', 'Listener']);
    expect([...d2.blocked.keys()]).toEqual(['default/a', 'default/b']);
  });
});
