// The pure scheduler (src/schedule/schedule.ts) and membership from Leases (src/schedule/membership.ts):
// deterministic, stable, balanced, anti-affinity, node selector, drain, failover and the circuit breaker.
import { describe, expect, it } from 'vitest';
import { Membership } from '../../src/schedule/membership.js';
import { schedule, type LbView, type NodeView } from '../../src/schedule/schedule.js';

const node = (name: string, extra: Partial<NodeView> = {}): NodeView => ({ name, labels: {}, alive: true, draining: false, ...extra });
const single = (key: string, extra: Partial<LbView> = {}): LbView => ({ key, topology: 'SINGLE', recorded: [], ...extra });
const pair = (key: string, extra: Partial<LbView> = {}): LbView => ({ key, topology: 'ACTIVE_STANDBY', recorded: [], ...extra });
const OPTS = { failoverThreshold: 0.5 };
const keys = (n: number, prefix = 'ns/lb') => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);

/** Load balancers per node (every slot counts). */
function spread(placements: Map<string, string[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const nodes of placements.values()) for (const n of nodes) out[n] = (out[n] ?? 0) + 1;
  return out;
}

/** Apply a schedule's placements as the next round's recorded ones. */
const recordAll = (lbs: LbView[], placements: Map<string, string[]>): LbView[] => lbs.map((l) => ({ ...l, recorded: placements.get(l.key) ?? [] }));

describe('schedule', () => {
  const three = [node('node1'), node('node2'), node('node3')];

  it('balanced: 300 SINGLE load balancers on 3 nodes, 100 each, each on exactly one node', () => {
    const r = schedule(
      three,
      keys(300).map((k) => single(k)),
      OPTS,
    );
    expect(spread(r.placements)).toEqual({ node1: 100, node2: 100, node3: 100 });
    for (const nodes of r.placements.values()) expect(nodes).toHaveLength(1);
    expect(r.changes).toHaveLength(300);
    expect(r.changes.every((c) => c.reason === 'new')).toBe(true);
  });

  it('least-loaded first: a new load balancer goes to the emptiest node; ties by name', () => {
    const lbs = [single('a/x', { recorded: ['node1'] }), single('a/y', { recorded: ['node1'] }), single('a/z', { recorded: ['node2'] }), single('a/new')];
    expect(schedule(three, lbs, OPTS).placements.get('a/new')).toEqual(['node3']);
    expect(schedule(three, [single('a/only')], OPTS).placements.get('a/only')).toEqual(['node1']);
  });

  it('deterministic: the same inputs in any order give the same placements', () => {
    const lbs = [...keys(50).map((k) => single(k)), ...keys(20, 'p/as').map((k) => pair(k))];
    const a = schedule(three, lbs, OPTS);
    const b = schedule([...three].reverse(), [...lbs].reverse(), OPTS);
    expect([...b.placements].sort()).toEqual([...a.placements].sort());
  });

  it('stable: once recorded, nothing moves while its nodes live, even when a node joins or the load is uneven', () => {
    const first = schedule(
      three.slice(0, 2),
      keys(30).map((k) => single(k)),
      OPTS,
    );
    const recorded = recordAll(
      keys(30).map((k) => single(k)),
      first.placements,
    );
    const again = schedule([...three, node('node4')], recorded, OPTS);
    expect(again.changes).toEqual([]);
    // A newcomer fills the empty node first.
    expect(schedule([...three, node('node4')], [...recorded, single('ns/new')], OPTS).placements.get('ns/new')).toEqual(['node3']);
  });

  it('ACTIVE_STANDBY: two different nodes, MASTERs spread too', () => {
    const r = schedule(
      three,
      keys(30).map((k) => pair(k)),
      OPTS,
    );
    for (const nodes of r.placements.values()) {
      expect(nodes).toHaveLength(2);
      expect(nodes[0]).not.toBe(nodes[1]);
    }
    expect(spread(r.placements)).toEqual({ node1: 20, node2: 20, node3: 20 });
  });

  it('node selector: only Nodes with every label; none matching is unschedulable and says why', () => {
    const nodes = [node('node1', { labels: { zone: 'a' } }), node('node2', { labels: { zone: 'b', ssd: 'true' } }), node('node3', { labels: { zone: 'b' } })];
    const r = schedule(nodes, [single('a/b', { nodeSelector: { zone: 'b', ssd: 'true' } }), single('a/z', { nodeSelector: { zone: 'c' } })], OPTS);
    expect(r.placements.get('a/b')).toEqual(['node2']);
    expect(r.placements.has('a/z')).toBe(false);
    expect(r.unschedulable).toEqual([{ key: 'a/z', message: '1 node(s) needed, 0 live node(s) matching zone=c not draining' }]);
    // ACTIVE_STANDBY with one eligible node: not placed at all (a half pair would have no peer, and its node would
    // have to change slot later), and reported.
    const p = schedule(nodes, [pair('a/p', { nodeSelector: { zone: 'a' } })], OPTS);
    expect(p.placements.has('a/p')).toBe(false);
    expect(p.changes).toEqual([]);
    expect(p.unschedulable).toEqual([{ key: 'a/p', message: '2 node(s) needed, 1 live node(s) matching zone=a not draining' }]);
  });

  it('anti-affinity: load balancers of one group go to different nodes while there are enough, whatever the load', () => {
    const busy = keys(10, 'x/busy').map((k) => single(k, { recorded: ['node1'] }));
    const group = ['g/a', 'g/b', 'g/c'].map((k) => single(k, { antiAffinity: 'shop' }));
    const r = schedule(three, [...busy, ...group], OPTS);
    expect(new Set(['g/a', 'g/b', 'g/c'].map((k) => r.placements.get(k)![0])).size).toBe(3);
    // Without the group the least-loaded rule keeps them off node1.
    const plain = schedule(three, [...busy, ...['g/a', 'g/b', 'g/c'].map((k) => single(k))], OPTS);
    expect(['g/a', 'g/b', 'g/c'].map((k) => plain.placements.get(k)![0])).not.toContain('node1');
  });

  it('explicit spec.placement.nodes wins, is recorded as it is, and counts as load', () => {
    const lbs = [single('a/e', { explicit: ['node9'] }), single('a/f', { explicit: ['node1'], recorded: ['node1'] }), single('a/n')];
    const r = schedule(three, lbs, OPTS);
    expect(r.placements.get('a/e')).toEqual(['node9']);
    expect(r.changes.find((c) => c.key === 'a/e')).toMatchObject({ to: ['node9'], reason: 'explicit' });
    expect(r.changes.find((c) => c.key === 'a/f')).toBeUndefined();
    expect(r.placements.get('a/n')).toEqual(['node2']);
  });

  it('node death: what it served goes to live nodes, spread; the rest stays', () => {
    const lbs = recordAll(
      keys(90).map((k) => single(k)),
      schedule(
        three,
        keys(90).map((k) => single(k)),
        OPTS,
      ).placements,
    );
    const dead = [node('node1'), node('node2', { alive: false }), node('node3')];
    const r = schedule(dead, lbs, OPTS);
    expect(r.changes).toHaveLength(30);
    expect(r.changes.every((c) => c.from[0] === 'node2' && c.reason === 'node-dead')).toBe(true);
    expect(spread(r.placements)).toEqual({ node1: 45, node3: 45 });
    expect(r.breaker.open).toBe(false);
  });

  it("ACTIVE_STANDBY is slot-stable: the dead node's slot (and VRRP address) goes to a new node, the survivor keeps its own", () => {
    const nodes = [node('node1', { alive: false }), node('node2'), node('node3')];
    const r = schedule(nodes, [pair('a/m', { recorded: ['node1', 'node2'], master: 'node2' }), pair('a/b', { recorded: ['node2', 'node1'] })], OPTS);
    expect(r.placements.get('a/m')).toEqual(['node3', 'node2']);
    expect(r.placements.get('a/b')).toEqual(['node2', 'node3']);
    expect(r.changes.map((c) => c.reason)).toEqual(['node-dead', 'node-dead']);
    // No node to take the slot: the dead node stays recorded in it (the pair is DEGRADED), and it is said why.
    const two = [node('node1', { alive: false }), node('node2')];
    const d = schedule(two, [pair('a/m', { recorded: ['node1', 'node2'] })], { failoverThreshold: 0.6 });
    expect(d.placements.get('a/m')).toEqual(['node1', 'node2']);
    expect(d.changes).toEqual([]);
    expect(d.unschedulable.map((u) => u.key)).toEqual(['a/m']);
    // Both dead: a new pair on live nodes.
    const both = schedule(
      [node('node1', { alive: false }), node('node2', { alive: false }), node('node3'), node('node4'), node('node5')],
      [pair('a/m', { recorded: ['node1', 'node2'] })],
      OPTS,
    );
    expect(both.placements.get('a/m')).toEqual(['node3', 'node4']);
  });

  it('drain of ACTIVE_STANDBY: the draining slot moves once the other node is ready, one slot at a time, MASTER last', () => {
    const nodes = [node('node1', { draining: true }), node('node2'), node('node3')];
    // The other node is not ready (yet): nothing moves.
    expect(schedule(nodes, [pair('a/p', { recorded: ['node1', 'node2'], master: 'node1', ready: ['node1'] })], OPTS).changes).toEqual([]);
    // Ready: the draining MASTER's slot goes to node3, node2 keeps slot 1 (its agent is not touched; node1's agent
    // stops keepalived first, handing the VIP to node2 at once).
    const moved = schedule(nodes, [pair('a/p', { recorded: ['node1', 'node2'], master: 'node1', ready: ['node1', 'node2'] })], OPTS);
    expect(moved.changes).toEqual([{ key: 'a/p', from: ['node1', 'node2'], to: ['node3', 'node2'], reason: 'drain' }]);
    // A draining BACKUP the same way.
    const backup = schedule(nodes, [pair('a/q', { recorded: ['node2', 'node1'], master: 'node2', ready: ['node1', 'node2'] })], OPTS);
    expect(backup.changes).toEqual([{ key: 'a/q', from: ['node2', 'node1'], to: ['node2', 'node3'], reason: 'drain' }]);
    // Both nodes draining: the one that is not MASTER moves first; the MASTER's slot waits for the newcomer to be ready.
    const both = [node('node1', { draining: true }), node('node2', { draining: true }), node('node3'), node('node4')];
    const first = schedule(both, [pair('a/p', { recorded: ['node1', 'node2'], master: 'node1', ready: ['node1', 'node2'] })], OPTS);
    expect(first.changes).toEqual([{ key: 'a/p', from: ['node1', 'node2'], to: ['node1', 'node3'], reason: 'drain' }]);
    expect(schedule(both, [pair('a/p', { recorded: ['node1', 'node3'], master: 'node1', ready: ['node1'] })], OPTS).changes).toEqual([]);
    const second = schedule(both, [pair('a/p', { recorded: ['node1', 'node3'], master: 'node1', ready: ['node1', 'node3'] })], OPTS);
    expect(second.changes).toEqual([{ key: 'a/p', from: ['node1', 'node3'], to: ['node4', 'node3'], reason: 'drain' }]);
    // No node to go to: it stays (and is reported).
    const none = schedule([node('node1', { draining: true }), node('node2')], [pair('a/p', { recorded: ['node1', 'node2'], ready: ['node1', 'node2'] })], OPTS);
    expect(none.changes).toEqual([]);
    expect(none.unschedulable.map((u) => u.key)).toEqual(['a/p']);
  });

  it('drain pacing (maxDrainMoves): at most that many handovers of a MASTER at once, each in flight until another node reports MASTER', () => {
    const nodes = [node('node1', { draining: true }), node('node2'), node('node3')];
    const ready = (key: string, recorded: string[]) => pair(key, { recorded, master: recorded[0]!, ready: recorded });
    const lbs = keys(5).map((k) => ready(k, ['node1', 'node2']));
    const paced = { ...OPTS, maxDrainMoves: 2 };
    // Two move (in key order), the rest wait.
    const first = schedule(nodes, lbs, paced);
    expect(first.changes.map((c) => c.key)).toEqual(['ns/lb000', 'ns/lb001']);
    expect(first.changes.every((c) => c.reason === 'drain' && c.to[0] === 'node3')).toBe(true);
    // Placed off node1, which still reports itself MASTER (its agent has not let the VIP go yet): in flight.
    const moving = [
      pair('ns/lb000', { recorded: ['node3', 'node2'], master: 'node1', ready: ['node1', 'node2'] }),
      pair('ns/lb001', { recorded: ['node3', 'node2'], master: 'node1', ready: ['node1', 'node2'] }),
      ...lbs.slice(2),
    ];
    expect(schedule(nodes, moving, paced).changes).toEqual([]);
    // One handed over (node2 MASTER), its new BACKUP on node3 not ready yet: that no longer holds the drain
    // (before: it did, until node3 was ready). One more moves.
    moving[0] = pair('ns/lb000', { recorded: ['node3', 'node2'], master: 'node2', ready: ['node2'] });
    expect(schedule(nodes, moving, paced).changes.map((c) => c.key)).toEqual(['ns/lb002']);
    // A pair unready elsewhere (not a handover) does not hold the drain either.
    const degraded = [pair('ns/other', { recorded: ['node2', 'node3'], master: 'node2', ready: ['node2'] }), ...lbs];
    expect(schedule(nodes, degraded, { ...OPTS, maxDrainMoves: 1 }).changes).toHaveLength(1);
    // Nor does one in ERROR that still names node1 MASTER.
    const broken = pair('ns/broken', { recorded: ['node3', 'node2'], master: 'node1', ready: ['node1'], failed: true });
    expect(schedule(nodes, [broken, ...lbs], { ...OPTS, maxDrainMoves: 1 }).changes.map((c) => c.key)).toEqual(['ns/lb000']);
    // A dead node's load balancers are failed over at once, whatever the budget.
    const dead = [node('node1', { alive: false }), node('node2'), node('node3')];
    expect(schedule(dead, lbs, { ...OPTS, maxDrainMoves: 1 }).changes).toHaveLength(5);
    // Without a bound, all at once.
    expect(schedule(nodes, lbs, OPTS).changes).toHaveLength(5);
  });

  it('drain pacing: a pair whose draining node is its BACKUP (the other node MASTER and ready) moves at once, unpaced', () => {
    const nodes = [node('node1', { draining: true }), node('node2'), node('node3')];
    const backups = keys(4, 'ns/b').map((k) => pair(k, { recorded: ['node2', 'node1'], master: 'node2', ready: ['node1', 'node2'] }));
    const masters = keys(3, 'ns/m').map((k) => pair(k, { recorded: ['node1', 'node2'], master: 'node1', ready: ['node1', 'node2'] }));
    const r = schedule(nodes, [...backups, ...masters], { ...OPTS, maxDrainMoves: 1 });
    // Every BACKUP slot at once (before: one load balancer in all), and one MASTER.
    expect(r.changes.map((c) => c.key)).toEqual([...keys(4, 'ns/b'), 'ns/m000']);
    expect(r.changes.filter((c) => c.key.startsWith('ns/b')).every((c) => c.to[0] === 'node2' && c.to[1] === 'node3')).toBe(true);
    // The MASTER not known (no status yet), or not ready: paced as a handover.
    const unknown = keys(3, 'ns/u').map((k) => pair(k, { recorded: ['node2', 'node1'], ready: ['node1', 'node2'] }));
    expect(schedule(nodes, unknown, { ...OPTS, maxDrainMoves: 1 }).changes).toHaveLength(1);
    // ... and in flight until ready where it is placed (no MASTER to see leave).
    const unknownMoved = [pair('ns/u000', { recorded: ['node2', 'node3'], ready: ['node2'] }), ...unknown.slice(1)];
    expect(schedule(nodes, unknownMoved, { ...OPTS, maxDrainMoves: 1 }).changes).toEqual([]);
    // Never a pair's last ready node: the other node not ready, nothing moves, budget or not.
    const lonely = pair('ns/l', { recorded: ['node2', 'node1'], master: 'node1', ready: ['node1'] });
    expect(schedule(nodes, [lonely], OPTS).changes).toEqual([]);
    // SINGLE load balancers are handovers (an outage while each moves): paced, in flight until ready on the new node.
    const singles = keys(3, 'ns/s').map((k) => single(k, { recorded: ['node1'], ready: ['node1'] }));
    expect(schedule(nodes, singles, { ...OPTS, maxDrainMoves: 2 }).changes).toHaveLength(2);
    const movedSingle = single('ns/s000', { recorded: ['node2'] });
    expect(schedule(nodes, [movedSingle, ...singles.slice(1)], { ...OPTS, maxDrainMoves: 2 }).changes.map((c) => c.key)).toEqual(['ns/s001']);
  });

  it('drain, MASTER first: a draining MASTER keeps its slot until the pair reports the peer MASTER, then moves unpaced; or when the wait runs out', () => {
    const since = 1_000_000;
    const nodes = [node('node1', { draining: true, drainingSince: since }), node('node2'), node('node3')];
    const masters = keys(3, 'ns/m').map((k) => pair(k, { recorded: ['node1', 'node2'], master: 'node1', ready: ['node1', 'node2'] }));
    const backup = pair('ns/b', { recorded: ['node2', 'node1'], master: 'node2', ready: ['node1', 'node2'] });
    const opts = { ...OPTS, maxDrainMoves: 1, switchFirstMs: 30_000 };
    // While node1's agent hands the role over, nothing moves, not even a pair node1 is BACKUP of (its re-placement
    // would take CPU from the switchovers); the scheduler is told when to look again.
    const waiting = schedule(nodes, [...masters, backup], { ...opts, now: since + 5_000 });
    expect(waiting.changes).toEqual([]);
    expect(waiting.switchDeadline).toBe(since + 30_000);
    // One switched, two not yet: still nothing.
    expect(schedule(nodes, [{ ...masters[0]!, master: 'node2' }, ...masters.slice(1), backup], { ...opts, now: since + 5_000 }).changes).toEqual([]);
    // Mid-switch, node1 FAULT and node2 not MASTER yet: no MASTER is reported, and that pair holds node1's slots too
    // (moving them would start the re-placement beside node2's takeover); the deadline still bounds the wait.
    const { master: _, ...unknown } = masters[2]!;
    const midSwitch = [{ ...masters[0]!, master: 'node2' }, { ...masters[1]!, master: 'node2' }, unknown];
    expect(schedule(nodes, [...midSwitch, backup], { ...opts, now: since + 5_000 }).changes).toEqual([]);
    expect(schedule(nodes, [...midSwitch, backup], { ...opts, now: since + 5_000 }).switchDeadline).toBe(since + 30_000);
    expect(schedule(nodes, midSwitch, { ...opts, now: since + 30_000 }).changes.map((c) => c.key)).toContain('ns/m002');
    // Other nodes' drains are not held by node1's.
    expect(
      schedule(nodes, [...masters, pair('ns/x', { recorded: ['node3', 'node2'], master: 'node2', ready: ['node2', 'node3'] })], { ...opts, now: since })
        .changes,
    ).toEqual([]);
    const node3Draining = [
      node('node1', { draining: true, drainingSince: since }),
      node('node2'),
      node('node3', { draining: true, drainingSince: since }),
      node('node4'),
    ];
    const onNode3 = pair('ns/x', { recorded: ['node3', 'node2'], master: 'node2', ready: ['node2', 'node3'] });
    expect(schedule(node3Draining, [...masters, onNode3], { ...opts, now: since }).changes.map((c) => c.key)).toEqual(['ns/x']);
    // Switched (node2 reports MASTER): every slot moves at once, whatever the budget, and node2 keeps its own.
    const switched = masters.map((l) => ({ ...l, master: 'node2' }));
    const moved = schedule(nodes, [...switched, backup], { ...opts, now: since + 6_000 });
    expect(moved.changes).toEqual([
      { key: 'ns/b', from: ['node2', 'node1'], to: ['node2', 'node3'], reason: 'drain' },
      ...keys(3, 'ns/m').map((key) => ({ key, from: ['node1', 'node2'], to: ['node3', 'node2'], reason: 'drain' })),
    ]);
    expect(moved.switchDeadline).toBeUndefined();
    // Not switched in time: moved as before (a handover when node1 lets it go), paced.
    const late = schedule(nodes, masters, { ...opts, now: since + 30_000 });
    expect(late.changes.map((c) => c.key)).toEqual(['ns/m000']);
    // A peer that is draining too, or not ready: no wait for a switch that could not happen (the rules above apply).
    const bothDraining = [node('node1', { draining: true, drainingSince: since }), node('node2', { draining: true, drainingSince: since }), node('node3')];
    expect(schedule(bothDraining, masters, { ...opts, now: since }).changes.map((c) => c.to)).toEqual([
      ['node1', 'node3'],
      ['node1', 'node3'],
      ['node1', 'node3'],
    ]);
    // Without switchFirstMs (the pure default), no wait at all.
    expect(schedule(nodes, masters, { ...OPTS, maxDrainMoves: 1, now: since }).changes).toHaveLength(1);
  });

  it('drain: SINGLE moves away at once; nothing new goes to a draining node', () => {
    const nodes = [node('node1', { draining: true }), node('node2'), node('node3')];
    const s = schedule(nodes, [single('a/s', { recorded: ['node1'] })], OPTS);
    expect(s.changes).toEqual([{ key: 'a/s', from: ['node1'], to: ['node2'], reason: 'drain' }]);
    // Nothing new goes to a draining node.
    expect(
      [
        ...schedule(
          nodes,
          keys(4).map((k) => single(k)),
          OPTS,
        ).placements.values(),
      ].flat(),
    ).not.toContain('node1');
  });

  it('circuit breaker: more than the threshold of nodes dead at once → nothing moves off them; new ones are still placed', () => {
    const nodes = [node('node1', { alive: false }), node('node2', { alive: false }), node('node3')];
    const lbs = [single('a/1', { recorded: ['node1'] }), single('a/2', { recorded: ['node2'] }), single('a/3', { recorded: ['node3'] }), single('a/new')];
    const r = schedule(nodes, lbs, OPTS);
    expect(r.breaker).toEqual({ open: true, dead: ['node1', 'node2'], known: 3, held: ['a/1', 'a/2'] });
    expect(r.changes).toEqual([{ key: 'a/new', from: [], to: ['node3'], reason: 'new' }]);
    // At the threshold (1 of 2) failover still happens: a two-node cluster fails over.
    const two = schedule([node('node1', { alive: false }), node('node2')], [single('a/1', { recorded: ['node1'] })], OPTS);
    expect(two.breaker.open).toBe(false);
    expect(two.placements.get('a/1')).toEqual(['node2']);
    // With a higher threshold, 2 dead of 3 still fail over.
    expect(schedule(nodes, lbs, { failoverThreshold: 0.7 }).placements.get('a/1')).toEqual(['node3']);
  });

  it('no live node: nothing placed, recorded placements kept, reported unschedulable', () => {
    const r = schedule([node('node1', { alive: false })], [single('a/1', { recorded: ['node1'] }), single('a/2')], { failoverThreshold: 1 });
    expect(r.changes).toEqual([]);
    expect(r.placements.get('a/1')).toEqual(['node1']);
    expect(r.unschedulable.map((u) => u.key)).toEqual(['a/1', 'a/2']);
  });
});

describe('Membership', () => {
  const lease = (node: string, renewTime: string, holder = node, seconds = 6) => ({
    name: `nslb-node-${node}`,
    holderIdentity: holder,
    renewTime,
    leaseDurationSeconds: seconds,
  });

  it('alive while renewed; dead one duration after the last renewal was first seen (observer clock only)', () => {
    const m = new Membership();
    // A renewTime far in the past (another clock) does not matter: the count starts when it is seen.
    expect(m.observe([lease('node1', '2001-01-01T00:00:00Z')], 1_000)).toEqual([{ node: 'node1', alive: true, expiresAt: 7_000 }]);
    expect(m.observe([lease('node1', '2001-01-01T00:00:00Z')], 6_999)[0]!.alive).toBe(true);
    expect(m.observe([lease('node1', '2001-01-01T00:00:00Z')], 7_000)[0]!.alive).toBe(false);
    // A renewal brings it back.
    expect(m.observe([lease('node1', '2001-01-01T00:00:05Z')], 8_000)[0]).toEqual({ node: 'node1', alive: true, expiresAt: 14_000 });
    expect(Membership.nextExpiry(m.observe([lease('node1', '2001-01-01T00:00:05Z')], 9_000), 9_000)).toBe(14_000);
  });

  it('a released Lease (no holder) is dead at once; other Leases are not members', () => {
    const m = new Membership();
    const members = m.observe([lease('node1', 't', ''), { name: 'nslb-scheduler', holderIdentity: 'node2', renewTime: 't', leaseDurationSeconds: 15 }], 0);
    expect(members).toEqual([{ node: 'node1', alive: false, expiresAt: 0 }]);
  });

  it('a longer duration on the last renewal (a clean stop) keeps the node alive through a restart', () => {
    const m = new Membership();
    m.observe([lease('node1', 'a')], 0);
    expect(m.observe([lease('node1', 'b', 'node1', 30)], 1_000)[0]!.alive).toBe(true);
    expect(m.observe([lease('node1', 'b', 'node1', 30)], 25_000)[0]!.alive).toBe(true);
    expect(m.observe([lease('node1', 'b', 'node1', 30)], 31_000)[0]!.alive).toBe(false);
  });

  it('a renewal read from the API server counts from then; the lagging cache showing older records does not count again', () => {
    const m = new Membership();
    const at = (s: number) => `2001-01-01T00:00:0${s}.000000Z`;
    m.observe([lease('node1', at(0))], 0);
    expect(m.observe([lease('node1', at(0))], 6_000)[0]!.alive).toBe(false);
    // The fresh read found renewals the watch has not delivered.
    m.saw(lease('node1', at(4)), 6_500);
    expect(m.observe([lease('node1', at(0))], 6_600)[0]).toEqual({ node: 'node1', alive: true, expiresAt: 12_500 });
    // The watch catches up, through an older renewal: neither is new (no clocks compared: it lags until it shows at(4)).
    expect(m.observe([lease('node1', at(2))], 10_000)[0]!.expiresAt).toBe(12_500);
    expect(m.observe([lease('node1', at(4))], 11_000)[0]!.expiresAt).toBe(12_500);
    expect(m.observe([lease('node1', at(4))], 12_500)[0]!.alive).toBe(false);
    // The next renewal is; so is another holder's (its clock does not compare).
    expect(m.observe([lease('node1', at(6))], 13_000)[0]).toEqual({ node: 'node1', alive: true, expiresAt: 19_000 });
    expect(m.observe([lease('node1', at(1), 'node1-new')], 14_000)[0]!.expiresAt).toBe(20_000);
    // A cache that never shows the record read (a relist went past it) lags for one duration at most.
    m.saw(lease('node1', at(3), 'node1-new'), 15_000);
    expect(m.observe([lease('node1', at(5), 'node1-new')], 20_999)[0]!.expiresAt).toBe(21_000);
    expect(m.observe([lease('node1', at(5), 'node1-new')], 21_000)[0]).toEqual({ node: 'node1', alive: true, expiresAt: 27_000 });
    // A read of another kind of Lease is ignored.
    m.saw({ name: 'nslb-scheduler', holderIdentity: 'node1', renewTime: 'x', leaseDurationSeconds: 15 }, 13_000);
    expect(m.observe([lease('node1', at(1), 'node1-new')], 14_000).map((x) => x.node)).toEqual(['node1']);
  });
});
