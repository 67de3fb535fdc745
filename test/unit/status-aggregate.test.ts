// Operating-status aggregation (DESIGN §1, as Octavia): one table per rule, then the captured HAProxy 2.6
// output of test/unit/fixtures/haproxy/ read end to end.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { OperatingStatus } from '../../src/api/v1alpha1/types.js';
import type { DesiredLoadBalancer, DesiredMember, DesiredPool } from '../../src/desired/model.js';
import { parseShowStat, type StatRow } from '../../src/plan/haproxy-stats.js';
import { operatingStatuses } from '../../src/status/aggregate.js';
import { listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';

const fe = (name: string, status: string, extra: Partial<StatRow> = {}): StatRow => ({
  pxname: `listener.${name}`,
  svname: 'FRONTEND',
  status,
  type: 'frontend',
  ...extra,
});
const be = (name: string, status = 'UP'): StatRow => ({ pxname: `pool.${name}`, svname: 'BACKEND', status, type: 'backend' });
const srv = (poolName: string, name: string, status: string, weight = 1): StatRow => ({
  pxname: `pool.${poolName}`,
  svname: name,
  status,
  weight,
  type: 'server',
});

describe('member status', () => {
  function memberStatus(m: Partial<DesiredMember>, status: string | undefined): OperatingStatus | undefined {
    const lb = loadBalancer({ pools: [pool('p', { members: [member('m', '10.0.0.1', 80, m)] })] });
    const rows = [be('p'), ...(status === undefined ? [] : [srv('p', 'm', status, m.weight ?? 1)])];
    return operatingStatuses(lb, rows).members.get('p/m');
  }

  it.each<[string, Partial<DesiredMember>, string | undefined, OperatingStatus]>([
    ['admin-down wins over UP', { adminStateUp: false }, 'UP', 'OFFLINE'],
    ['admin-down wins over DOWN', { adminStateUp: false }, 'DOWN', 'OFFLINE'],
    ['missing row', {}, undefined, 'OFFLINE'],
    ['MAINT', {}, 'MAINT', 'OFFLINE'],
    ['MAINT via a tracked server', {}, 'MAINT (via pool.q/n)', 'OFFLINE'],
    ['MAINT by resolution', {}, 'MAINT (resolution)', 'OFFLINE'],
    ['MAINT beats weight 0', { weight: 0 }, 'MAINT', 'OFFLINE'],
    ['DRAIN', {}, 'DRAIN', 'DRAINING'],
    ['DRAIN in transition', {}, 'DRAIN 1/3', 'DRAINING'],
    ['weight 0 and UP', { weight: 0 }, 'UP', 'DRAINING'],
    ['weight 0 and DOWN', { weight: 0 }, 'DOWN', 'DRAINING'],
    ['weight 0 without checks', { weight: 0 }, 'no check', 'DRAINING'],
    ['no check', {}, 'no check', 'NO_MONITOR'],
    ['UP', {}, 'UP', 'ONLINE'],
    ['UP, going down', {}, 'UP 1/3', 'ONLINE'],
    ['UP by agent', {}, 'UP (agent)', 'ONLINE'],
    ['DOWN', {}, 'DOWN', 'ERROR'],
    ['DOWN, coming up', {}, 'DOWN 1/2', 'ERROR'],
    ['DOWN by agent', {}, 'DOWN (agent)', 'ERROR'],
    ['NOLB', {}, 'NOLB', 'DRAINING'],
    ['NOLB in transition', {}, 'NOLB 1/2', 'DRAINING'],
    ['a state unknown to nslb', {}, 'SOMETHING NEW', 'OFFLINE'],
  ])('%s', (_what, m, status, expected) => {
    expect(memberStatus(m, status)).toBe(expected);
  });
});

describe('pool status', () => {
  /** backend null: HAProxy has no such backend. */
  function poolStatus(p: Partial<DesiredPool>, statuses: string[], backend: string | null): OperatingStatus | undefined {
    const members = statuses.map((_, i) => member(`m${i}`, '10.0.0.1', 80 + i));
    const lb = loadBalancer({ pools: [pool('p', { members, ...p })] });
    const rows = [...(backend === null ? [] : [be('p', backend)]), ...statuses.map((s, i) => srv('p', `m${i}`, s))];
    return operatingStatuses(lb, rows).pools.get('p');
  }

  it.each<[string, Partial<DesiredPool>, string[], string | null, OperatingStatus]>([
    ['admin-down', { adminStateUp: false }, ['UP'], 'UP', 'OFFLINE'],
    ['not in the running HAProxy', {}, ['UP'], null, 'OFFLINE'],
    ['no members', {}, [], 'DOWN', 'ONLINE'],
    ['all members up', {}, ['UP', 'UP'], 'UP', 'ONLINE'],
    ['draining and unmonitored members', {}, ['UP', 'DRAIN', 'no check', 'NOLB'], 'UP', 'ONLINE'],
    ['some members failing', {}, ['UP', 'DOWN'], 'UP', 'DEGRADED'],
    ['all members failing', {}, ['DOWN', 'DOWN 1/2'], 'DOWN', 'ERROR'],
    ['all enabled members failing, one in maintenance', {}, ['DOWN', 'MAINT'], 'DOWN', 'ERROR'],
    ['every member in maintenance', {}, ['MAINT', 'MAINT'], 'DOWN', 'ONLINE'],
    ['failing members and a drained one, backend still up', {}, ['DOWN', 'DRAIN'], 'UP', 'DEGRADED'],
    ['failing members and a drained one, backend DOWN', {}, ['DOWN', 'DRAIN'], 'DOWN', 'ERROR'],
  ])('%s', (_what, p, statuses, backend, expected) => {
    expect(poolStatus(p, statuses, backend)).toBe(expected);
  });

  it('does not count admin-down members as enabled', () => {
    const lb = loadBalancer({
      pools: [pool('p', { members: [member('a', '10.0.0.1', 80), member('b', '10.0.0.2', 80, { adminStateUp: false })] })],
    });
    const tree = operatingStatuses(lb, [be('p', 'DOWN'), srv('p', 'a', 'DOWN'), srv('p', 'b', 'MAINT')]);
    expect(tree.pools.get('p')).toBe('ERROR');
  });
});

describe('listener status', () => {
  function listenerStatus(adminUp: boolean, lbUp: boolean, row: StatRow | undefined): OperatingStatus | undefined {
    const lb = loadBalancer({ adminStateUp: lbUp, listeners: [listener('l', { adminStateUp: adminUp })] });
    return operatingStatuses(lb, row === undefined ? [] : [row]).listeners.get('l');
  }

  it.each<[string, boolean, boolean, StatRow | undefined, OperatingStatus]>([
    ['admin-down', false, true, fe('l', 'OPEN'), 'OFFLINE'],
    ['load balancer admin-down', true, false, fe('l', 'OPEN'), 'OFFLINE'],
    ['admin-down without a row', false, true, undefined, 'OFFLINE'],
    ['OPEN', true, true, fe('l', 'OPEN', { sessions: 3, sessionLimit: 100 }), 'ONLINE'],
    ['FULL', true, true, fe('l', 'FULL'), 'DEGRADED'],
    ['OPEN at its maxconn (how 2.6 shows FULL)', true, true, fe('l', 'OPEN', { sessions: 100, sessionLimit: 100 }), 'DEGRADED'],
    ['STOP', true, true, fe('l', 'STOP'), 'ERROR'],
    ['PAUSED', true, true, fe('l', 'PAUSED'), 'ERROR'],
    ['missing frontend', true, true, undefined, 'ERROR'],
    ['a server row of the same name does not count', true, true, { ...fe('l', 'OPEN'), type: 'server' }, 'ERROR'],
  ])('%s', (_what, adminUp, lbUp, row, expected) => {
    expect(listenerStatus(adminUp, lbUp, row)).toBe(expected);
  });
});

describe('health monitor status', () => {
  it.each<[boolean, StatRow[] | undefined, OperatingStatus]>([
    [true, [], 'ONLINE'],
    [false, [], 'OFFLINE'],
    [true, undefined, 'ONLINE'],
    [false, undefined, 'OFFLINE'],
  ])('adminStateUp %s, stats %j → %s', (adminStateUp, stats, expected) => {
    const lb = loadBalancer({ pools: [pool('p', { healthMonitor: monitor({ adminStateUp }) }), pool('q')] });
    const tree = operatingStatuses(lb, stats);
    expect(tree.healthMonitors.get('p')).toBe(expected);
    expect(tree.healthMonitors.has('q')).toBe(false);
  });
});

describe('load balancer status', () => {
  // Listener `l` and pool `p` with the given statuses, produced through the rules above.
  function lbStatus(listenerRow: StatRow | 'admin-down' | 'none', poolMembers: string[] | 'admin-down' | 'none', lbUp = true) {
    const listeners = listenerRow === 'none' ? [] : [listener('l', { adminStateUp: listenerRow !== 'admin-down' })];
    const pools =
      poolMembers === 'none'
        ? []
        : [
            pool('p', {
              adminStateUp: poolMembers !== 'admin-down',
              members: (poolMembers === 'admin-down' ? ['UP'] : poolMembers).map((_, i) => member(`m${i}`, '10.0.0.1', 80)),
            }),
          ];
    const rows: StatRow[] = [be('p', 'UP')];
    if (typeof listenerRow === 'object') rows.push(listenerRow);
    if (Array.isArray(poolMembers)) for (const [i, s] of poolMembers.entries()) rows.push(srv('p', `m${i}`, s));
    return operatingStatuses(loadBalancer({ adminStateUp: lbUp, listeners, pools }), rows).loadBalancer;
  }

  it.each<[string, StatRow | 'admin-down' | 'none', string[] | 'admin-down' | 'none', boolean, OperatingStatus]>([
    ['admin-down, however its children are', fe('l', 'STOP'), ['DOWN'], false, 'OFFLINE'],
    ['no children', 'none', 'none', true, 'ONLINE'],
    ['all children online', fe('l', 'OPEN'), ['UP'], true, 'ONLINE'],
    ['a degraded listener', fe('l', 'FULL'), ['UP'], true, 'DEGRADED'],
    ['a degraded pool', fe('l', 'OPEN'), ['UP', 'DOWN'], true, 'DEGRADED'],
    ['a failing listener beats a degraded pool', fe('l', 'STOP'), ['UP', 'DOWN'], true, 'ERROR'],
    ['a failing pool beats a degraded listener', fe('l', 'FULL'), ['DOWN'], true, 'ERROR'],
    ['offline children do not make it worse', 'admin-down', 'admin-down', true, 'ONLINE'],
    ['an offline listener next to a degraded pool', 'admin-down', ['UP', 'DOWN'], true, 'DEGRADED'],
    ['draining and unmonitored members count as working', fe('l', 'OPEN'), ['DRAIN', 'no check'], true, 'ONLINE'],
  ])('%s', (_what, l, p, lbUp, expected) => {
    expect(lbStatus(l, p, lbUp)).toBe(expected);
  });
});

describe('without stats (HAProxy not running or not answering)', () => {
  it('reports the load balancer, listeners, pools and members OFFLINE', () => {
    const lb = loadBalancer({
      listeners: [listener('l', { defaultPool: 'p' })],
      pools: [pool('p', { members: [member('m', '10.0.0.1', 80)], healthMonitor: monitor() })],
    });
    const tree = operatingStatuses(lb, undefined);
    expect(tree.loadBalancer).toBe('OFFLINE');
    expect(Object.fromEntries(tree.listeners)).toEqual({ l: 'OFFLINE' });
    expect(Object.fromEntries(tree.pools)).toEqual({ p: 'OFFLINE' });
    expect(Object.fromEntries(tree.members)).toEqual({ 'p/m': 'OFFLINE' });
    expect(Object.fromEntries(tree.healthMonitors)).toEqual({ p: 'ONLINE' });
  });
});

describe('captured HAProxy 2.6 output', () => {
  // The model behind test/unit/fixtures/haproxy/show-stat-2.6.cfg.
  const lb: DesiredLoadBalancer = loadBalancer({
    namespace: 'default',
    name: 'capture',
    listeners: [
      listener('full', { protocol: 'TCP', port: 18423, defaultPool: 'plain', connectionLimit: 1 }),
      listener('off', { protocol: 'TCP', port: 18422, defaultPool: 'web', adminStateUp: false }),
      listener('web', { port: 18421, defaultPool: 'web' }),
    ],
    pools: [
      pool('off', { protocol: 'TCP', adminStateUp: false, members: [member('x', '127.0.0.1', 18426)] }),
      pool('plain', { protocol: 'TCP', members: [member('plain', '127.0.0.1', 18426)] }),
      pool('slow', {
        members: [
          member('going-down', '127.0.0.1', 18499),
          member('going-up', '127.0.0.1', 18427),
          member('up', '127.0.0.1', 18424),
          member('up-drained', '127.0.0.1', 18424),
          member('wrong-status', '127.0.0.1', 18424, { monitorPort: 18425 }),
        ],
        healthMonitor: monitor({ delay: 1, timeout: 1, maxRetries: 3, maxRetriesDown: 3, expectedCodes: '200,202' }),
      }),
      pool('web', {
        members: [
          member('down', '127.0.0.1', 18499),
          member('drain', '127.0.0.1', 18424, { weight: 0 }),
          member('drained', '127.0.0.1', 18424),
          member('maint', '127.0.0.1', 18424, { adminStateUp: false }),
          member('up', '127.0.0.1', 18424),
        ],
        healthMonitor: monitor({ delay: 1, timeout: 1, maxRetries: 1, maxRetriesDown: 1 }),
      }),
    ],
  });
  const stats = parseShowStat(readFileSync(new URL('./fixtures/haproxy/show-stat-2.6.csv', import.meta.url), 'utf8'));

  it('aggregates as Octavia would', () => {
    const tree = operatingStatuses(lb, stats);
    expect(Object.fromEntries(tree.listeners)).toEqual({ full: 'DEGRADED', off: 'OFFLINE', web: 'ONLINE' });
    expect(Object.fromEntries(tree.members)).toEqual({
      'off/x': 'OFFLINE',
      'plain/plain': 'NO_MONITOR',
      'slow/going-down': 'ERROR',
      'slow/going-up': 'ERROR',
      'slow/up': 'ONLINE',
      'slow/up-drained': 'DRAINING',
      'slow/wrong-status': 'ERROR',
      'web/down': 'ERROR',
      'web/drain': 'DRAINING',
      'web/drained': 'ERROR',
      'web/maint': 'OFFLINE',
      'web/up': 'ERROR',
    });
    expect(Object.fromEntries(tree.pools)).toEqual({ off: 'OFFLINE', plain: 'ONLINE', slow: 'DEGRADED', web: 'ERROR' });
    expect(Object.fromEntries(tree.healthMonitors)).toEqual({ slow: 'ONLINE', web: 'ONLINE' });
    expect(tree.loadBalancer).toBe('ERROR');
  });
});
