import { describe, expect, it } from 'vitest';
import { objectId, type AnyObject, type ListenerProtocol, type PoolProtocol } from '../../src/api/v1alpha1/types.js';
import { buildDesired, type ObjectProblem } from '../../src/desired/build.js';
import { derivedMac, nodeNames } from '../../src/desired/names.js';
import { lb, listener, member, monitor, pool, webStack } from './fixtures/objects.js';

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
        },
      ],
      pools: [
        {
          name: 'app',
          protocol: 'HTTP',
          lbAlgorithm: 'ROUND_ROBIN',
          adminStateUp: true,
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
      monitor('hm', { type: 'TCP', maxRetriesDown: 1, httpMethod: 'HEAD', urlPath: '/x', expectedCodes: '200-299', httpVersion: '1.1', domainName: 'a.example', adminStateUp: false }),
    ]);
    expect(d.problems).toEqual([]);
    const web = d.lbs.get('default/web')!;
    expect(web.bridge).toBe('br-ex');
    expect(web.adminStateUp).toBe(false);
    expect(web.vip).toEqual({ address: '2001:db8::10', family: 6, prefixLength: 64, gateway: '2001:db8::1', mac: 'fa:16:3e:aa:bb:cc', vlan: 7, mtu: 1400 });
    expect(web.listeners[0]).toMatchObject({ connectionLimit: 100, adminStateUp: false, timeouts: { clientData: 1000, memberConnect: 5000, memberData: 50000, tcpInspect: 0 } });
    expect(web.listeners[0]).not.toHaveProperty('defaultPool');
    expect(web.pools[0]).toMatchObject({ protocol: 'PROXYV2', lbAlgorithm: 'SOURCE_IP', adminStateUp: false });
    expect(web.pools[0]?.members[0]).toEqual({ name: 'm', address: '2001:db8::11', port: 8080, weight: 0, backup: true, adminStateUp: false, monitorAddress: '2001:db8::12', monitorPort: 9000 });
    expect(web.pools[0]?.healthMonitor).toMatchObject({ maxRetriesDown: 1, httpMethod: 'HEAD', urlPath: '/x', expectedCodes: '200-299', httpVersion: '1.1', domainName: 'a.example', adminStateUp: false });
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
    expect(d.problems.map(brief)).toEqual([
      'Listener http InvalidReference /spec/defaultPool: pool "app" belongs to load balancer "api", not "web"',
    ]);
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
  };
  const pairs = (Object.keys(allowed) as ListenerProtocol[]).flatMap((l) =>
    (['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'] as PoolProtocol[]).map((p) => [l, p, allowed[l].includes(p)] as const),
  );

  it.each(pairs)('%s → %s allowed: %s', (l, p, ok) => {
    const problems = build([lb('web'), listener('l', { protocol: l, defaultPool: 'app' }), pool('app', { protocol: p })]).problems;
    const pairProblem = problems.find((x) => x.path === '/spec/defaultPool');
    if (ok) expect(pairProblem).toBeUndefined();
    else expect(pairProblem && brief(pairProblem)).toBe(
      `Listener l InvalidSpec /spec/defaultPool: a ${l} listener cannot use ${p} pool "app" (pool protocol must be one of ${allowed[l].join(', ')})`,
    );
  });
});

describe('conflicts', () => {
  it('two listeners on one port: the second by name', () => {
    const d = build([lb('web'), lb('api', { address: '192.0.2.20' }), listener('b', { port: 80 }), listener('a', { port: 80 }), listener('c', { port: 80, loadBalancer: 'api' })]);
    expect(d.problems.map(brief)).toEqual([
      'Listener b Conflict /spec/port: port 80 is already used by listener "a" of load balancer "web"',
    ]);
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
    expect(problemsOf([lb('web'), lb('web')])).toEqual([
      'LoadBalancer web Conflict -: LoadBalancer default/web is defined more than once',
    ]);
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

  it('members may be of another family than the VIP', () => {
    expect(problemsOf([...webStack(), member('v6', { address: '2001:db8::11' })])).toEqual([]);
  });
});

describe('not supported yet', () => {
  const cases: [string, AnyObject, string][] = [
    ['listener HTTPS', listener('l', { protocol: 'HTTPS' }), 'Listener l NotSupported /spec/protocol: protocol HTTPS is not supported yet'],
    ['listener TERMINATED_HTTPS', listener('l', { protocol: 'TERMINATED_HTTPS' }), 'Listener l NotSupported /spec/protocol: protocol TERMINATED_HTTPS is not supported yet'],
    ['listener tls', listener('l', { tls: { certificateFile: 'a.pem' } }), 'Listener l NotSupported /spec/tls: tls is not supported yet'],
    ['listener insertHeaders', listener('l', { insertHeaders: { 'X-Forwarded-For': true } }), 'Listener l NotSupported /spec/insertHeaders: insertHeaders is not supported yet'],
    ['listener allowedCidrs', listener('l', { allowedCidrs: ['10.0.0.0/8'] }), 'Listener l NotSupported /spec/allowedCidrs: allowedCidrs is not supported yet'],
    ['pool HTTPS', pool('p', { protocol: 'HTTPS' }), 'Pool p NotSupported /spec/protocol: protocol HTTPS is not supported yet'],
    ['pool tls', pool('p', { tls: { enabled: true } }), 'Pool p NotSupported /spec/tls: tls is not supported yet'],
    ['pool sessionPersistence', pool('p', { sessionPersistence: { type: 'SOURCE_IP' } }), 'Pool p NotSupported /spec/sessionPersistence: sessionPersistence is not supported yet'],
    ['monitor PING', monitor('hm', { type: 'PING' }), 'HealthMonitor hm NotSupported /spec/type: type PING is not supported yet'],
    ['monitor HTTPS', monitor('hm', { type: 'HTTPS' }), 'HealthMonitor hm NotSupported /spec/type: type HTTPS is not supported yet'],
    ['monitor TLS-HELLO', monitor('hm', { type: 'TLS-HELLO' }), 'HealthMonitor hm NotSupported /spec/type: type TLS-HELLO is not supported yet'],
  ];

  it.each(cases)('%s', (_what, object, problem) => {
    const d = build([lb('web'), pool('app'), object]);
    expect(d.problems.map(brief)).toEqual([problem]);
    expect([...d.blocked.keys()]).toEqual(['default/web']);
    expect(d.lbs.size).toBe(0);
  });

  it('harmless empty values are accepted', () => {
    const l = listener('l', { insertHeaders: { 'X-Forwarded-For': false }, allowedCidrs: [] });
    expect(problemsOf([lb('web'), l])).toEqual([]);
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
    const d = build([lb('a', { prefixLength: 40 }), lb('b', { address: '192.0.2.20' }), listener('l', { loadBalancer: 'a', port: 1 }), listener('k', { loadBalancer: 'b', defaultPool: 'none' })]);
    expect([...d.blocked.keys()]).toEqual(['default/a', 'default/b']);
    const d2 = build([lb('a'), lb('b', { address: '192.0.2.20', prefixLength: 40 }), listener('k', { loadBalancer: 'a', defaultPool: 'none' })]);
    expect(d2.problems.map((p) => p.kind)).toEqual(['LoadBalancer', 'Listener']);
    expect([...d2.blocked.keys()]).toEqual(['default/a', 'default/b']);
  });
});
