// The stats poll (controller/outcomes.ts): a running HAProxy that misses the runtime socket's timeout keeps its
// last answer for a while (its load balancer's status does not flap OFFLINE and back on a busy node); one that
// exited, or that has not answered for longer than the grace, has no stats.
import { describe, expect, it } from 'vitest';
import { pendingOutcome, pollStats, STATS_GRACE_MS, type LbOutcome } from '../../src/controller/outcomes.js';
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
});
