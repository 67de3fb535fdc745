// The stats poll (controller/outcomes.ts): a running HAProxy that misses the runtime socket's timeout keeps its
// last answer for a while (its load balancer's status does not flap OFFLINE and back on a busy node); one that
// exited, or that has not answered for longer than the grace, has no stats.
import { describe, expect, it } from 'vitest';
import { logVrrpChange, pendingOutcome, pollStats, STATS_GRACE_MS, vrrpChange, type LbOutcome } from '../../src/controller/outcomes.js';
import type { ObservedVrrpState } from '../../src/plan/observed.js';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import type { StatRow } from '../../src/plan/haproxy-stats.js';
import type { NodeDriver } from '../../src/plan/node-driver.js';

const ROWS: StatRow[] = [{ pxname: 'l1', svname: 'FRONTEND', status: 'OPEN', type: 'frontend' } as StatRow];

function fakeNode(answer: { ok: boolean }, alive: { pid: boolean }): NodeDriver {
  return {
    showStat: async () => {
      if (!answer.ok) throw new Error('no complete answer to "show stat" within 2000 ms');
      return ROWS;
    },
    processAlive: () => alive.pid,
  } as unknown as NodeDriver;
}

function activeOutcome(): LbOutcome {
  return { ...pendingOutcome('nslb-x', 'nslbx'), phase: 'active', applied: {} as DesiredLoadBalancer, pid: 4242 };
}

describe('pollStats', () => {
  it('a running HAProxy that does not answer keeps its last stats for STATS_GRACE_MS, then has none', async () => {
    const answer = { ok: true };
    const node = fakeNode(answer, { pid: true });
    const o = activeOutcome();
    let now = 1_000_000;
    await pollStats(node, o, () => now);
    expect(o.stats).toEqual(ROWS);
    answer.ok = false;
    now += 1_000;
    await pollStats(node, o, () => now);
    expect(o.stats).toEqual(ROWS);
    now += STATS_GRACE_MS;
    await pollStats(node, o, () => now);
    expect(o.stats).toBeUndefined();
    // Answering again: its stats are back.
    answer.ok = true;
    await pollStats(node, o, () => now);
    expect(o.stats).toEqual(ROWS);
  });

  it('a HAProxy that exited loses its stats at the first failed poll', async () => {
    const answer = { ok: true };
    const alive = { pid: true };
    const node = fakeNode(answer, alive);
    const o = activeOutcome();
    await pollStats(node, o);
    answer.ok = false;
    alive.pid = false;
    await pollStats(node, o);
    expect(o.stats).toBeUndefined();
  });

  it('ACTIVE_STANDBY: show stat and show peers in one query; when it fails, the last peers stand while the stats do', async () => {
    const answer = { ok: true };
    let queries = 0;
    const node = {
      showStat: async () => {
        throw new Error('not asked alone');
      },
      showPeers: async () => {
        throw new Error('not asked alone');
      },
      showStatAndPeers: async () => {
        queries++;
        if (!answer.ok) throw new Error('no complete answer to "show stat;show peers" within 2000 ms');
        return { stats: ROWS, peers: [{ name: 'node2', established: true }] };
      },
      processAlive: () => true,
      keepalivedPid: () => 4343,
      vrrpState: () => undefined,
    } as unknown as NodeDriver;
    const o = { ...activeOutcome(), applied: { ha: {} } as unknown as DesiredLoadBalancer };
    let now = 1_000_000;
    await pollStats(node, o, () => now);
    expect(queries).toBe(1);
    expect(o.stats).toEqual(ROWS);
    expect(o.peers).toEqual([{ name: 'node2', established: true }]);
    answer.ok = false;
    now += 1_000;
    await pollStats(node, o, () => now);
    expect(o.peers).toEqual([{ name: 'node2', established: true }]);
    now += STATS_GRACE_MS;
    await pollStats(node, o, () => now);
    expect(o.stats).toBeUndefined();
    expect(o.peers).toBeUndefined();
  });

  it("ACTIVE_STANDBY: a poll returns the change of this node's VRRP state since the last one, flips between polls counted", async () => {
    let state: ObservedVrrpState | undefined;
    const node = {
      showStatAndPeers: async () => ({ stats: ROWS, peers: [] }),
      processAlive: () => true,
      keepalivedPid: () => 4343,
      vrrpState: () => state,
    } as unknown as NodeDriver;
    const o = { ...activeOutcome(), applied: { ha: {} } as unknown as DesiredLoadBalancer };
    // A keepalived that starts BACKUP: nothing to say.
    state = { state: 'BACKUP', priority: 90, transitions: 1 };
    expect(await pollStats(node, o)).toBeUndefined();
    expect(await pollStats(node, o)).toBeUndefined();
    state = { state: 'MASTER', priority: 90, transitions: 2 };
    expect(await pollStats(node, o)).toEqual({ from: 'BACKUP', to: 'MASTER', changes: 1 });
    // To BACKUP and back to MASTER between two polls: the same state, two changes.
    state = { state: 'MASTER', priority: 90, transitions: 4 };
    expect(await pollStats(node, o)).toEqual({ from: 'MASTER', to: 'MASTER', changes: 2 });
    state = { state: 'FAULT', priority: 0, transitions: 5 };
    expect(await pollStats(node, o)).toEqual({ from: 'MASTER', to: 'FAULT', changes: 1 });
    // keepalived stopped (by the agent): nothing to say.
    state = undefined;
    expect(await pollStats(node, o)).toBeUndefined();
  });

  it('vrrpChange: a keepalived that starts (or starts again) BACKUP is no change; any other state it comes to is', () => {
    expect(vrrpChange(undefined, { state: 'MASTER', priority: 100, transitions: 2 })).toEqual({ to: 'MASTER', changes: 1 });
    expect(vrrpChange(undefined, { state: 'BACKUP', priority: 100, transitions: 1 })).toBeUndefined();
    // keepalived started again (its count restarts): BACKUP as every new one is, unless it was MASTER before.
    expect(vrrpChange({ state: 'BACKUP', priority: 100, transitions: 7 }, { state: 'BACKUP', priority: 100, transitions: 1 })).toBeUndefined();
    expect(vrrpChange({ state: 'MASTER', priority: 100, transitions: 7 }, { state: 'BACKUP', priority: 100, transitions: 1 })).toEqual({
      from: 'MASTER',
      to: 'BACKUP',
      changes: 1,
    });
    // A state file of an older notify script (no count): the state alone.
    expect(vrrpChange({ state: 'BACKUP', priority: 100 }, { state: 'BACKUP', priority: 100 })).toBeUndefined();
    expect(vrrpChange({ state: 'BACKUP', priority: 100 }, { state: 'MASTER', priority: 100 })).toEqual({ from: 'BACKUP', to: 'MASTER', changes: 1 });
  });

  it('logVrrpChange: FAULT is a warning, the rest information, with the flips between polls', () => {
    const lines: [string, object, string][] = [];
    const logger = { info: (o: object, m: string) => lines.push(['info', o, m]), warn: (o: object, m: string) => lines.push(['warn', o, m]) };
    logVrrpChange(logger as never, 'ns/a', { from: 'BACKUP', to: 'MASTER', changes: 1 });
    logVrrpChange(logger as never, 'ns/a', { from: 'MASTER', to: 'FAULT', changes: 3 });
    expect(lines).toEqual([
      ['info', { lb: 'ns/a', from: 'BACKUP', to: 'MASTER' }, 'keepalived: this node holds the VIP now (MASTER)'],
      ['warn', { lb: 'ns/a', from: 'MASTER', to: 'FAULT', changes: 3 }, 'keepalived: FAULT, this node does not take the VIP'],
    ]);
  });
});
