import { describe, expect, it } from 'vitest';
import type { AnyObject, ObjectStatus } from '../../src/api/v1alpha1/types.js';
import { buildDesired } from '../../src/desired/build.js';
import { computeStatuses, type OutcomeView } from '../../src/status/compute.js';

const objects = [
  {
    apiVersion: 'nslb.dev/v1alpha1',
    kind: 'LoadBalancer',
    metadata: { name: 'web', namespace: 'default', generation: 2 },
    spec: { vip: { address: '10.201.0.10' } },
  },
  {
    apiVersion: 'nslb.dev/v1alpha1',
    kind: 'Member',
    metadata: { name: 'lost', namespace: 'default', generation: 1 },
    spec: { pool: 'nope', address: '10.201.0.11', port: 80 },
  },
] as AnyObject[];
const desired = buildDesired(objects, { defaultBridge: 'br-int' });
const outcome = (phase: OutcomeView['phase']): Map<string, OutcomeView> =>
  new Map([
    [
      'default/web',
      {
        phase,
        netns: 'nslb-x',
        iface: 'nslbx',
        appliedGenerations: new Map([['LoadBalancer/default/web', 2]]),
        ...(phase === 'active' ? { applied: desired.lbs.get('default/web')! } : {}),
      },
    ],
  ]);

describe('computeStatuses', () => {
  it('reports ACTIVE with observedGeneration once applied; a dangling reference is ERROR with its reason', () => {
    const s = computeStatuses({ objects, desired, outcomes: outcome('active'), previous: new Map(), now: 't1', node: 'n1' });
    expect(s.get('LoadBalancer/default/web')).toMatchObject({ provisioningStatus: 'ACTIVE', observedGeneration: 2, node: 'n1', vip: '10.201.0.10' });
    expect(s.get('Member/default/lost')).toMatchObject({ provisioningStatus: 'ERROR', operatingStatus: 'ERROR' });
    expect(s.get('Member/default/lost')?.conditions[0]).toMatchObject({ type: 'Ready', status: 'False', reason: 'InvalidReference' });
  });

  it('moves lastTransitionTime only when Ready flips', () => {
    const first = computeStatuses({ objects, desired, outcomes: outcome('pending'), previous: new Map(), now: 't1', node: 'n' });
    expect(first.get('LoadBalancer/default/web')?.provisioningStatus).toBe('PENDING_CREATE');
    const same = computeStatuses({ objects, desired, outcomes: outcome('pending'), previous: first, now: 't2', node: 'n' });
    expect(same.get('LoadBalancer/default/web')?.conditions[0]?.lastTransitionTime).toBe('t1');
    const flipped = computeStatuses({ objects, desired, outcomes: outcome('active'), previous: same, now: 't3', node: 'n' });
    expect(flipped.get('LoadBalancer/default/web')?.conditions[0]).toMatchObject({ status: 'True', lastTransitionTime: 't3' });
    const again = computeStatuses({ objects, desired, outcomes: outcome('active'), previous: flipped, now: 't4', node: 'n' });
    expect(again.get('LoadBalancer/default/web')?.conditions[0]?.lastTransitionTime).toBe('t3');
    // The member's problem never changed: its time is still the first one.
    expect(again.get('Member/default/lost')?.conditions[0]?.lastTransitionTime).toBe('t1');
  });

  it('never reports a load balancer ONLINE while the node refuses neighbours of its family, and says why', () => {
    const withListener = [
      objects[0]!,
      {
        apiVersion: 'nslb.dev/v1alpha1',
        kind: 'Listener',
        metadata: { name: 'l', namespace: 'default', generation: 1 },
        spec: { loadBalancer: 'web', protocol: 'TCP', port: 80 },
      },
    ] as AnyObject[];
    const d = buildDesired(withListener, { defaultBridge: 'br-int' });
    const outcomes = new Map<string, OutcomeView>([
      [
        'default/web',
        {
          phase: 'active',
          netns: 'nslb-x',
          iface: 'nslbx',
          appliedGenerations: new Map([
            ['LoadBalancer/default/web', 2],
            ['Listener/default/l', 1],
          ]),
          applied: d.lbs.get('default/web')!,
          stats: [{ pxname: 'listener.l', svname: 'FRONTEND', status: 'OPEN', type: 'frontend' }],
        },
      ],
    ]);
    const run = (now: string, previous: Map<string, ObjectStatus>, refusing?: Set<'ipv4' | 'ipv6'>) =>
      computeStatuses({
        objects: withListener,
        desired: d,
        outcomes,
        previous,
        now,
        node: 'n',
        ...(refusing === undefined ? {} : { refusing: { families: refusing, condition } }),
      });
    const condition = {
      type: 'KernelLimitsSufficient',
      status: 'False' as const,
      reason: 'NeighbourTableTooSmall',
      message: 'net.ipv4.neigh.default.gc_thresh3 is 1024, needs 5512',
    };
    const base = run('t1', new Map());
    expect(base.get('LoadBalancer/default/web')?.operatingStatus).toBe('ONLINE');
    const refused = run('t2', base, new Set(['ipv4']));
    const lb = refused.get('LoadBalancer/default/web');
    expect(lb?.operatingStatus).toBe('DEGRADED');
    expect(lb?.provisioningStatus).toBe('ACTIVE');
    expect(lb?.conditions.find((c) => c.type === 'KernelLimitsSufficient')).toMatchObject({ ...condition, lastTransitionTime: 't2' });
    const later = run('t3', refused, new Set(['ipv4']));
    expect(later.get('LoadBalancer/default/web')?.conditions.find((c) => c.type === 'KernelLimitsSufficient')?.lastTransitionTime).toBe('t2');
    // Another family's table: this IPv4-only load balancer is not affected.
    const v6 = run('t2', base, new Set(['ipv6']));
    expect(v6.get('LoadBalancer/default/web')?.operatingStatus).toBe('ONLINE');
    expect(v6.get('LoadBalancer/default/web')?.conditions.map((c) => c.type)).toEqual(['Ready']);
  });
});
