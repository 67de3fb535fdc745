// Membership, leader election and the scheduler against the in-test API server: the node Lease is held and
// renewed (and extended on a clean stop), a leader that cannot renew stops before anyone else can start
// (fencing), and the scheduler records placements in status.placement.nodes, re-places what a dead node
// served, leaves everything else alone, and stops at the circuit breaker with an Event.
import type { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaderElector } from '../../src/kube/leader.js';
import { NodeLease } from '../../src/kube/node-lease.js';
import { NodeLeaseWatch, Scheduler, type SchedulerEvent } from '../../src/schedule/scheduler.js';
import type { FakeApiServer, Obj } from '../support/fake-apiserver.js';
import { agentKubeConfig, startFakeApiServer } from '../support/fake-apiserver-client.js';

const NS = 'nslb-system';
const V = 'nslb.dev/v1alpha1';
const logger = pino({ level: 'silent' });
let api: FakeApiServer;
let kc: KubeConfig;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(f: () => T | undefined | false, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
const leaseOf = (name: string, ns = NS) => api.get('coordination.k8s.io/v1', 'leases', ns, name) as Obj | undefined;
const placementOf = (ns: string, name: string): string[] | undefined => (api.get(V, 'loadbalancers', ns, name) as Obj | undefined)?.status?.placement?.nodes;

/** Samples two electors every 5 ms; stop() ends it and says how often both were leading at once. */
function leadersAtOnce(a: { leading: boolean }, b: { leading: boolean }): { stop(): number } {
  let both = 0;
  const timer = setInterval(() => {
    if (a.leading && b.leading) both++;
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return both;
    },
  };
}

beforeAll(async () => {
  ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo' }));
});

afterAll(async () => {
  await api.stop();
});

describe('NodeLease', () => {
  it('creates nslb-node-<node>, renews it every quarter of its duration, and asks for the restart grace on a clean stop', async () => {
    const l = new NodeLease({ kubeConfig: kc, namespace: 'agents', node: 'n1', leaseSeconds: 1, restartGraceSeconds: 30, logger });
    await l.start();
    const first = leaseOf('nslb-node-n1', 'agents')!;
    expect(first.spec).toMatchObject({ holderIdentity: 'n1', leaseDurationSeconds: 1, leaseTransitions: 0 });
    await until(() => leaseOf('nslb-node-n1', 'agents')!.spec.renewTime !== first.spec.renewTime, 2_000, 'a renewal');
    // Someone deletes it: it comes back.
    api.delete('coordination.k8s.io/v1', 'leases', 'agents', 'nslb-node-n1');
    await until(() => leaseOf('nslb-node-n1', 'agents'), 2_000, 'the Lease again');
    await l.stop();
    expect(leaseOf('nslb-node-n1', 'agents')!.spec).toMatchObject({ holderIdentity: 'n1', leaseDurationSeconds: 30 });
    const stopped = leaseOf('nslb-node-n1', 'agents')!.spec.renewTime;
    await sleep(600);
    expect(leaseOf('nslb-node-n1', 'agents')!.spec.renewTime).toBe(stopped);
  });
});

describe('NodeLease under late answers', () => {
  it('renewals land even when every answer comes after the client gave up: no 409 on a resourceVersion it never saw', async () => {
    // The agent's client (a renewal is given up after two renewal periods: 500 ms here); answers 1 s late.
    const l = new NodeLease({ kubeConfig: agentKubeConfig(api.url), namespace: 'late', node: 'n2', leaseSeconds: 1, restartGraceSeconds: 30, logger });
    await l.start();
    const since = Date.now();
    api.setAnswerDelay(1_000, 'leases');
    await sleep(2_500);
    api.setAnswerDelay(0);
    const writes = api.requestLog().filter((e) => e.at >= since && e.path.includes('/namespaces/late/leases/') && (e.method === 'PUT' || e.method === 'PATCH'));
    // Before: the first renewal landed, its answer was lost, and every later one was refused (409) for the
    // resourceVersion that landed write replaced: the node looked dead while its agent was alive and writing.
    expect(writes.filter((e) => e.status === 409)).toEqual([]);
    expect(writes.filter((e) => e.status === 200).length).toBeGreaterThanOrEqual(2);
    // Answers on time again: the agent sees its renewals work.
    const seen = l.renewals;
    await until(() => l.renewals > seen, 3_000, 'a renewal answered');
    await l.stop();
    expect(leaseOf('nslb-node-n2', 'late')!.spec).toMatchObject({ holderIdentity: 'n2', leaseDurationSeconds: 30 });
  }, 15_000);
});

describe('NodeLease under slow answers', () => {
  it('renews on the clock while answers come later than a renewal period, and counts those that come within the Lease', async () => {
    // Lease 2 s, a renewal every 500 ms; every answer 1.3 s late: later than the next renewal is due, within the Lease.
    const l = new NodeLease({ kubeConfig: agentKubeConfig(api.url), namespace: 'slow', node: 'n3', leaseSeconds: 2, restartGraceSeconds: 30, logger });
    await l.start();
    api.setAnswerDelay(1_300, 'leases');
    const since = Date.now();
    const seen = l.renewals;
    await sleep(3_000);
    const writes = api.requestLog().filter((e) => e.at >= since && e.path.includes('/namespaces/slow/leases/') && e.method === 'PATCH' && e.status === 200);
    const answered = l.renewals - seen;
    api.setAnswerDelay(0);
    await l.stop();
    // Before: the next renewal waited for the last one's answer, which the client gave up on after two renewal
    // periods (1 s here): about one write in 1.5 s landed, and not one was counted; the node looked dead to itself.
    expect(writes.length).toBeGreaterThanOrEqual(4);
    expect(answered).toBeGreaterThanOrEqual(3);
    expect(leaseOf('nslb-node-n3', 'slow')!.spec).toMatchObject({ holderIdentity: 'n3', leaseDurationSeconds: 30 });
  }, 15_000);
});

describe('LeaderElector fencing', () => {
  it('a leader whose renewals hang stops leading within the renew deadline (on its own clock); never two leaders', async () => {
    const log: string[] = [];
    const elector = (identity: string) =>
      new LeaderElector({
        kubeConfig: kc,
        role: 'scheduler',
        namespace: NS,
        name: 'fence-test',
        identity,
        leaseSeconds: 2,
        logger,
        onStartedLeading: async () => void log.push(`${identity} start ${Date.now()}`),
        onStoppedLeading: async () => void log.push(`${identity} stop ${Date.now()}`),
      });
    const a = elector('a');
    const b = elector('b');
    const overlap = leadersAtOnce(a, b);
    a.start();
    await until(() => a.leading, 2_000, 'a leading');
    b.start();
    await sleep(300);
    // Every request now takes 5 s: a cannot renew, and stops leading on its own clock.
    api.setRequestDelay(5_000);
    const hung = Date.now();
    await until(() => !a.leading, 2_000, 'a fenced');
    // The safety bound, not a speed: stopped before a candidate could take the Lease (one duration after it saw
    // the last renewal, which was before the hang).
    expect(Date.now() - hung).toBeLessThan(2_000);
    expect(log.at(-1)).toMatch(/^a stop/);
    api.setRequestDelay(0);
    // Then one of them leads again (a may renew its own Lease first), never both.
    await until(() => a.leading || b.leading, 8_000, 'a leader again');
    await sleep(500);
    expect(overlap.stop()).toBe(0);
    await b.stop();
    await a.stop();
  }, 20_000);
});

describe('LeaderElector renewal fast path', () => {
  it('a leader renews with one conditional write from the Lease it last wrote, no read; a conflict falls back to read + write', async () => {
    const e = new LeaderElector({
      kubeConfig: kc,
      role: 'scheduler',
      namespace: NS,
      name: 'fast-path-test',
      identity: 'a',
      leaseSeconds: 2,
      logger,
      onStartedLeading: async () => {},
      onStoppedLeading: async () => {},
    });
    const path = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/fast-path-test`;
    /** The elector's answered requests to its Lease after position `from`, in order: 'GET 200', 'PUT 409', … */
    const asked = (from: number) =>
      api
        .requestLog()
        .filter((r) => r.started > from && r.ended > 0 && r.path === path)
        .sort((x, y) => x.started - y.started)
        .map((r) => `${r.method} ${r.status}`);
    const mark = () => Math.max(0, ...api.requestLog().map((r) => r.started));
    e.start();
    await until(() => e.leading, 2_000, 'a leading');
    const since = mark();
    await until(() => asked(since).filter((r) => r === 'PUT 200').length >= 3, 5_000, 'three renewals');
    // Before: every renewal was a GET and then a PUT (both to be answered within the renew deadline).
    expect(asked(since).filter((r) => r.startsWith('GET'))).toEqual([]);
    // Someone else writes the Lease (the holder unchanged): the next fast write is refused (409) and the same try
    // reads the Lease and renews from it; then one write per renewal again.
    const lease = leaseOf('fast-path-test')!;
    api.update({ ...lease, metadata: { ...lease.metadata, labels: { touched: 'yes' } } });
    const touched = mark();
    await until(
      () =>
        asked(touched)
          .join(',')
          .match(/^PUT 409,GET 200,PUT 200,PUT 200,PUT 200/),
      5_000,
      'the fallback, then fast renewals',
    );
    expect(e.leading).toBe(true);
    expect(leaseOf('fast-path-test')!.spec.holderIdentity).toBe('a');
    await e.stop();
  }, 20_000);
});

describe('LeaderElector callbacks', () => {
  it('a leader whose start (or a previous stop) takes long goes on renewing meanwhile, and stays the leader', async () => {
    let started = 0;
    const e = new LeaderElector({
      kubeConfig: kc,
      role: 'scheduler',
      namespace: NS,
      name: 'slow-callback-test',
      identity: 'a',
      // Renew deadline 1.33 s; the start below takes twice that.
      leaseSeconds: 2,
      logger,
      onStartedLeading: async () => {
        started++;
        await sleep(2_700);
      },
      onStoppedLeading: async () => {},
    });
    e.start();
    await until(() => e.leading, 2_000, 'a leading');
    const renewTime = () => leaseOf('slow-callback-test')?.spec?.renewTime as string | undefined;
    const first = renewTime();
    // While onStartedLeading still runs, the Lease is renewed (a renewal loop waiting for it would let the fence
    // stop a leader that is only busy, and start it again, over and over).
    await until(() => renewTime() !== first, 2_000, 'a renewal during the slow start');
    await sleep(2_000);
    expect(e.leading).toBe(true);
    expect(started).toBe(1);
    await e.stop();
  }, 15_000);
});

describe('LeaderElector stepDown', () => {
  it('a leader that steps down stops, releases the Lease (another candidate takes it at once) and stands aside', async () => {
    const log: string[] = [];
    const elector = (identity: string) =>
      new LeaderElector({
        kubeConfig: kc,
        role: 'scheduler',
        namespace: NS,
        name: 'step-down-test',
        identity,
        // A candidate would wait 4 s for an expiry: taking over sooner shows the release.
        leaseSeconds: 4,
        logger,
        onStartedLeading: async () => void log.push(`${identity} start`),
        onStoppedLeading: async () => void log.push(`${identity} stop`),
      });
    const a = elector('a');
    const b = elector('b');
    const overlap = leadersAtOnce(a, b);
    a.start();
    await until(() => a.leading, 2_000, 'a leading');
    b.start();
    await sleep(600);
    expect(b.leading).toBe(false);
    const stepped = Date.now();
    await a.stepDown();
    expect(a.leading).toBe(false);
    expect(log.at(-1)).toBe('a stop');
    await until(() => b.leading, 3_000, 'b leading');
    // Taken from a released Lease, not after an expiry (4 s from when b last saw a renew).
    expect(Date.now() - stepped).toBeLessThan(3_000);
    expect(leaseOf('step-down-test')!.spec.holderIdentity).toBe('b');
    // b goes away cleanly (releasing): a, still standing aside, does not take it before its pause ends.
    await b.stop();
    await sleep(300);
    expect(a.leading).toBe(false);
    await until(() => a.leading, 6_000, 'a leading again after its pause');
    expect(overlap.stop()).toBe(0);
    await a.stop();
  }, 20_000);
});

describe('NodeLeaseWatch', () => {
  it("watched from the agent's start, a new leader calls a node dead that went silent before it took over", async () => {
    const ns = 'lease-watch';
    const spec = () => ({ holderIdentity: 'w1', leaseDurationSeconds: 1, renewTime: new Date().toISOString() });
    api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'nslb-node-w1', namespace: ns }, spec: spec() });
    const watch = new NodeLeaseWatch(kc, ns, logger);
    await watch.start();
    await until(() => watch.observe().find((m) => m.node === 'w1')?.alive, 2_000, 'w1 seen alive');
    // w1 renews once more, then dies: silent for longer than its Lease.
    const cur = leaseOf('nslb-node-w1', ns)!;
    api.update({ ...cur, spec: spec() });
    await until(() => watch.observe().find((m) => m.node === 'w1')?.alive === false, 3_000, 'w1 dead to the watch');
    const options = {
      kubeConfig: kc,
      namespace: 'nothing-here',
      leaseNamespace: ns,
      failoverThreshold: 0.5,
      logger,
      leading: () => false,
      emit: () => undefined,
    };
    // A scheduler started now with the agent's watch knows at once; one that starts watching now must first wait
    // one Lease duration, because it never saw w1 renew.
    const informed = new Scheduler({ ...options, leaseWatch: watch });
    const fresh = new Scheduler(options);
    await Promise.all([informed.start(), fresh.start()]);
    expect(informed.inputs().nodes.find((n) => n.name === 'w1')?.alive).toBe(false);
    expect(fresh.inputs().nodes.find((n) => n.name === 'w1')?.alive).toBe(true);
    await Promise.all([informed.stop(), fresh.stop()]);
    // The scheduler's stop leaves the agent's watch running.
    expect(watch.observe().map((m) => m.node)).toEqual(['w1']);
    await watch.stop();
  }, 15_000);
});

describe('Scheduler before its caches have listed', () => {
  it('a node Lease list that fails: nothing is decided (no write, no FailedScheduling) until it lists', async () => {
    const ns = 'unsynced';
    api.create({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'nslb-node-u1', namespace: ns },
      spec: { holderIdentity: 'u1', leaseDurationSeconds: 30, renewTime: new Date().toISOString() },
    });
    api.create({ apiVersion: V, kind: 'LoadBalancer', metadata: { name: 'lb', namespace: ns }, spec: { vip: { address: '10.9.0.10' } } });
    // The first lists of Leases fail: before, the scheduler ran with no node known and told every load
    // balancer it had nowhere to go.
    // Five: their backoff (0.2 + 0.4 + 0.8 + 1.6 s) outlasts start() on a busy machine.
    api.failNext({ method: 'GET', plural: 'leases', namespace: ns, watch: false, code: 500 }, 5);
    const events: SchedulerEvent[] = [];
    const scheduler = new Scheduler({
      kubeConfig: kc,
      namespace: ns,
      leaseNamespace: ns,
      failoverThreshold: 0.5,
      logger,
      leading: () => true,
      emit: (e) => void events.push(e),
    });
    try {
      await scheduler.start();
      expect(scheduler.synced).toBe(false);
      expect(placementOf(ns, 'lb')).toBeUndefined();
      await until(() => placementOf(ns, 'lb'), 20_000, 'placed once the Leases are listed');
      expect(scheduler.synced).toBe(true);
      expect(placementOf(ns, 'lb')).toEqual(['u1']);
      // The Event follows the write's response, which can arrive after the object already shows the placement.
      await until(() => events.length > 0 || undefined, 5_000, 'the Scheduled Event');
      expect(events.map((e) => e.reason)).toEqual(['Scheduled']);
    } finally {
      await scheduler.stop();
      // The next tests' scheduler watches every namespace: it must not find this one (its node has no Lease there).
      api.delete(V, 'loadbalancers', ns, 'lb');
    }
  }, 30_000);
});

describe('Scheduler', () => {
  const lb = (ns: string, name: string, spec: Obj = {}, labels?: Record<string, string>) => ({
    apiVersion: V,
    kind: 'LoadBalancer',
    metadata: { name, namespace: ns, ...(labels === undefined ? {} : { labels }) },
    spec: { vip: { address: '10.9.0.10' }, ...spec },
  });
  /** Renews node Leases by hand (a node that stops being renewed is a dead node). */
  const renewing = new Set<string>();
  const renew = () => {
    for (const n of renewing) {
      const cur = leaseOf(`nslb-node-${n}`);
      // 3 s: renewed every 200 ms, a busy machine (the whole unit suite in parallel) still renews in time.
      const spec = { holderIdentity: n, leaseDurationSeconds: 3, renewTime: new Date().toISOString() };
      if (cur === undefined) api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: `nslb-node-${n}`, namespace: NS }, spec });
      else api.update({ ...cur, spec });
    }
  };
  let timer: NodeJS.Timeout;
  const events: SchedulerEvent[] = [];
  let scheduler: Scheduler;
  let leading = true;

  beforeAll(async () => {
    for (const n of ['s1', 's2', 's3']) renewing.add(n);
    renew();
    timer = setInterval(renew, 200);
    for (let i = 0; i < 30; i++) api.create(lb('shop', `lb${String(i).padStart(2, '0')}`));
    api.create(lb('shop', 'pinned', { placement: { nodes: ['s1'] } }));
    api.create(lb('shop', 'picky', { placement: { nodeSelector: { disk: 'ssd' } } }));
    api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 's3', labels: { disk: 'ssd' } }, spec: {}, status: {} });
    scheduler = new Scheduler({ kubeConfig: kc, leaseNamespace: NS, failoverThreshold: 0.5, logger, leading: () => leading, emit: (e) => void events.push(e) });
    await scheduler.start();
  });

  afterAll(async () => {
    clearInterval(timer);
    await scheduler.stop();
  });

  const all = () =>
    (api.list(V, 'loadbalancers', 'shop') as Obj[]).map((o) => [o.metadata.name as string, (o.status?.placement?.nodes ?? []) as string[]] as const);
  const spread = () => {
    const out: Record<string, number> = {};
    for (const [, nodes] of all()) for (const n of nodes) out[n] = (out[n] ?? 0) + 1;
    return out;
  };

  it('places every load balancer once, balanced, recording explicit ones and honouring the node selector', async () => {
    await until(() => all().every(([, nodes]) => nodes.length === 1), 5_000, 'every placement');
    expect(placementOf('shop', 'pinned')).toEqual(['s1']);
    expect(placementOf('shop', 'picky')).toEqual(['s3']);
    // 32 over 3: no node more than one above another.
    const counts = Object.values(spread());
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    await until(() => events.filter((e) => e.reason === 'Scheduled').length === 32, 10_000, 'an Event per placement');
    // The agents' status writes (other fields) do not disturb it, and nothing is rewritten.
    const writes = scheduler.writes;
    const o = api.get(V, 'loadbalancers', 'shop', 'lb00') as Obj;
    api.updateStatus({ ...o, status: { ...o.status, provisioningStatus: 'ACTIVE' } });
    await sleep(1_500);
    expect(scheduler.writes).toBe(writes);
  });

  it('a node whose Lease expires: what it served moves to live nodes, nothing else moves, each with an Event', async () => {
    const before = new Map(all());
    const onS2 = [...before].filter(([, n]) => n[0] === 's2').map(([k]) => k);
    renewing.delete('s2');
    await until(() => onS2.every((k) => placementOf('shop', k)?.[0] !== 's2'), 10_000, 're-placement');
    // The Event follows the write's answer: wait for it too.
    await until(() => events.filter((e) => e.reason === 'Rescheduled').length >= onS2.length, 10_000, 'an Event per move');
    for (const [k, nodes] of all()) {
      if (onS2.includes(k)) expect(['s1', 's3']).toContain(nodes[0]);
      else expect(nodes).toEqual(before.get(k));
    }
    expect(
      events
        .filter((e) => e.reason === 'Rescheduled')
        .map((e) => e.regarding.name)
        .sort(),
    ).toEqual([...onS2].sort());
  });

  it('the circuit breaker: two of three dead → nothing moves, an Event on the scheduler Lease; one back → failover resumes', async () => {
    renewing.add('s2');
    await sleep(1_000);
    const before = new Map(all());
    renewing.delete('s2');
    renewing.delete('s3');
    await until(() => events.find((e) => e.reason === 'FailoverSuppressed'), 10_000, 'the breaker Event');
    const e = events.find((x) => x.reason === 'FailoverSuppressed')!;
    expect(e).toMatchObject({ type: 'Warning', regarding: { kind: 'Lease', name: 'nslb-scheduler', namespace: NS } });
    expect(e.note).toMatch(/2 of 3 nodes are dead \(s2, s3\)/);
    await sleep(500);
    expect(new Map(all())).toEqual(before);
    renewing.add('s2');
    await until(() => events.find((x) => x.reason === 'FailoverResumed'), 10_000, 'failover resumed');
    await until(() => all().every(([k, n]) => k === 'picky' || n[0] !== 's3'), 10_000, 'what s3 served moved');
    // picky can only go to s3 (the selector): it stays recorded there, unschedulable.
    expect(placementOf('shop', 'picky')).toEqual(['s3']);
    expect(events.some((x) => x.reason === 'FailedScheduling' && x.regarding.name === 'picky')).toBe(true);
  });

  it('a scheduler that no longer leads writes nothing', async () => {
    // What the last test set moving is written first (a write in flight completes).
    let last = -1;
    while (last !== scheduler.writes) {
      last = scheduler.writes;
      await sleep(300);
    }
    leading = false;
    const writes = scheduler.writes;
    api.create(lb('shop', 'late'));
    await sleep(500);
    expect(placementOf('shop', 'late')).toBeUndefined();
    expect(scheduler.writes).toBe(writes);
    leading = true;
    scheduler.kick();
    await until(() => placementOf('shop', 'late'), 5_000, 'placed once leading');
    // Paused (a Lease lost): nothing is written, the caches stay; resumed (the Lease taken again), what changed
    // meanwhile is placed at once, without listing again.
    leading = false;
    await scheduler.pause();
    const lists = api.countRequests((e) => e.method === 'GET' && !e.watch && e.path.endsWith('/loadbalancers'));
    api.create(lb('shop', 'later'));
    await sleep(500);
    expect(placementOf('shop', 'later')).toBeUndefined();
    leading = true;
    scheduler.resume();
    await until(() => placementOf('shop', 'later'), 5_000, 'placed once resumed');
    expect(api.countRequests((e) => e.method === 'GET' && !e.watch && e.path.endsWith('/loadbalancers'))).toBe(lists);
  });
});

describe('Scheduler on a node being drained', () => {
  it('hands scheduling over (once) instead of writing the drain, while another node could schedule', async () => {
    const ns = 'drain-leases';
    const renew = () => {
      for (const n of ['d1', 'd2']) {
        const cur = leaseOf(`nslb-node-${n}`, ns);
        const spec = { holderIdentity: n, leaseDurationSeconds: 5, renewTime: new Date().toISOString() };
        if (cur === undefined) api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: `nslb-node-${n}`, namespace: ns }, spec });
        else api.update({ ...cur, spec });
      }
    };
    renew();
    const timer = setInterval(renew, 200);
    for (const n of ['d1', 'd2']) api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {}, status: {} });
    api.create({
      apiVersion: V,
      kind: 'LoadBalancer',
      metadata: { name: 'x', namespace: 'drainshop' },
      spec: { vip: { address: '10.9.0.11' }, placement: { nodeSelector: {} } },
    });
    let calls = 0;
    const s = new Scheduler({
      kubeConfig: kc,
      namespace: 'drainshop',
      leaseNamespace: ns,
      failoverThreshold: 0.5,
      logger,
      leading: () => true,
      emit: () => undefined,
      nodeName: 'd1',
      onOwnNodeDraining: () => void calls++,
    });
    try {
      await s.start();
      const placed = await until(() => placementOf('drainshop', 'x'), 5_000, 'x placed');
      expect(calls).toBe(0);
      // d2 is being drained: not this scheduler's node, it schedules on.
      const label = (name: string, drain: boolean) => {
        const n = api.get('v1', 'nodes', '', name) as Obj;
        api.update({ ...n, metadata: { ...n.metadata, labels: drain ? { 'nslb.dev/drain': 'true' } : {} } });
      };
      if (placed[0] === 'd2') {
        label('d2', true);
        await until(() => placementOf('drainshop', 'x')?.[0] === 'd1', 5_000, 'x off d2');
        label('d2', false);
      }
      // Its own node drained: it writes nothing and asks (once) to hand over.
      for (let last = -1; last !== s.writes; await sleep(300)) last = s.writes;
      const writes = s.writes;
      label('d1', true);
      await until(() => calls === 1, 5_000, 'the hand-over');
      s.kick();
      await sleep(500);
      expect(calls).toBe(1);
      expect(s.writes).toBe(writes);
      expect(placementOf('drainshop', 'x')).toEqual(['d1']);
    } finally {
      clearInterval(timer);
      await s.stop();
    }
  }, 20_000);
});

describe('Scheduler when the Lease watch lags (a loaded API server)', () => {
  it('a node whose renewals the watch has not shown is read from the API server before it is called dead; its own node is alive to a leader', async () => {
    const ns = 'lag-leases';
    const shop = 'lagshop';
    const renewing = new Set(['g1', 'g2', 'g3']);
    const renew = () => {
      for (const n of renewing) {
        const cur = leaseOf(`nslb-node-${n}`, ns);
        const spec = { holderIdentity: n, leaseDurationSeconds: 2, renewTime: new Date().toISOString() };
        if (cur === undefined) api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: `nslb-node-${n}`, namespace: ns }, spec });
        else api.update({ ...cur, spec });
      }
    };
    renew();
    const timer = setInterval(renew, 200);
    for (let i = 0; i < 6; i++) {
      api.create({ apiVersion: V, kind: 'LoadBalancer', metadata: { name: `lb${i}`, namespace: shop }, spec: { vip: { address: `10.9.1.${10 + i}` } } });
    }
    const events: SchedulerEvent[] = [];
    // g1 is this agent's node.
    const s = new Scheduler({
      kubeConfig: kc,
      namespace: shop,
      leaseNamespace: ns,
      // No breaker in the way: without the read, the lag would move everything off g2 and g3.
      failoverThreshold: 0.9,
      logger,
      leading: () => true,
      emit: (e) => void events.push(e),
      nodeName: 'g1',
      writeTimeoutMs: 2_000,
    });
    const all = () =>
      new Map((api.list(V, 'loadbalancers', shop) as Obj[]).map((o) => [o.metadata.name as string, (o.status?.placement?.nodes ?? []).join(',')]));
    const reads = (node: string) => api.countRequests((e) => e.method === 'GET' && !e.watch && e.path.endsWith(`/leases/nslb-node-${node}`));
    try {
      await s.start();
      await until(() => [...all().values()].every((n) => n !== '') || undefined, 5_000, 'every load balancer placed');
      const before = all();
      expect(new Set(before.values())).toEqual(new Set(['g1', 'g2', 'g3']));
      // The watch lags for three Lease durations while every node renews: the scheduler's cache shows no renewal.
      api.holdWatches('leases');
      await sleep(6_000);
      expect(all(), 'nothing moved while every node renewed').toEqual(before);
      expect(events.filter((e) => e.reason === 'Rescheduled')).toEqual([]);
      expect(reads('g2')).toBeGreaterThan(0);
      // Now g2 really stops, and so do g1's renewals (this agent's process starved, say): g2 is read, found dead
      // and what it served moves; g1 is alive to itself: what it serves stays.
      renewing.delete('g2');
      renewing.delete('g1');
      const onG2 = [...before].filter(([, n]) => n === 'g2').map(([k]) => k);
      await until(() => onG2.every((k) => all().get(k) !== 'g2') || undefined, 10_000, "g2's load balancers moved");
      for (const [k, n] of all()) expect(n, k).toBe(onG2.includes(k) ? all().get(k) : before.get(k));
      expect(onG2.every((k) => ['g1', 'g3'].includes(all().get(k)!))).toBe(true);
    } finally {
      api.releaseWatches('leases');
      clearInterval(timer);
      await s.stop();
    }
  }, 30_000);
});
