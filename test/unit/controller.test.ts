// The engine's loop on its own (src/controller/), against a node driver over an in-memory node
// (test/support/fake-node.ts): what a resync queues, backoff and retry, a terminal invalid spec, garbage
// collection limited to the agent's own state dir, publishes coalesced, and a restart after a crash mid-plan.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { Controller } from '../../src/controller/controller.js';
import { nodeNames } from '../../src/desired/names.js';
import { waitUntil } from '../../src/loop/wait.js';
import { AddressInUseError } from '../../src/drivers/netns/netns.js';
import type { Action } from '../../src/plan/actions.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { FakeNode, FakeNodeDriver } from '../support/fake-node.js';
import { lb, listener, member, monitor, pool } from './fixtures/objects.js';

/** A load balancer "web" in its own namespace, VIP 192.0.2.<octet>. */
function stack(namespace: string, octet: number): AnyObject[] {
  return [
    lb('web', { address: `192.0.2.${octet}` }, {}, namespace),
    listener('http', { defaultPool: 'app' }, namespace),
    pool('app', {}, namespace),
    member('app-1', {}, namespace),
    member('app-2', { address: '198.51.100.12' }, namespace),
    monitor('app-check', {}, namespace),
  ];
}

const netnsOf = (namespace: string): string => nodeNames(namespace, 'web').netns;
/** Whether the action is about the load balancer "web" of that namespace (its netns, or its port). */
const about = (x: Action, namespace: string): boolean => ('netns' in x ? x.netns === netnsOf(namespace) : x.iface === nodeNames(namespace, 'web').iface);

interface Agent {
  controller: Controller;
  driver: FakeNodeDriver;
  published: StatusFile[];
  reconciled: { key: string; result: 'ok' | 'error' | 'wait'; at: number }[];
  logs: Record<string, unknown>[];
}

const running: Controller[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
});

function agent(node: FakeNode, stateDir = '/var/lib/nslb-a', concurrency = 16): Agent {
  const logs: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const driver = new FakeNodeDriver(node, stateDir);
  const published: StatusFile[] = [];
  const reconciled: Agent['reconciled'] = [];
  const controller = new Controller({
    node: driver,
    stateDir,
    bridge: 'br-int',
    nodeName: 'node-1',
    concurrency,
    logger: pino({ level: 'debug' }, stream),
    publish: async (file) => {
      published.push(file);
    },
    onReconciled: (key, result) => reconciled.push({ key, result, at: Date.now() }),
  });
  running.push(controller);
  return { controller, driver, published, reconciled, logs };
}

const resyncLines = (a: Agent) => a.logs.filter((l) => l.msg === 'resync');

function lbStatus(a: Agent, namespace: string) {
  return a.controller.statuses.get(`LoadBalancer/${namespace}/web`);
}

describe('the controller against a fake node', () => {
  it('a resync queues only the load balancers with work to do', async () => {
    const node = new FakeNode();
    const a = agent(node);
    a.controller.setSnapshot([...stack('ns1', 11), ...stack('ns2', 12), ...stack('ns3', 13)], []);
    await a.controller.initialSyncDone();
    expect(['ns1', 'ns2', 'ns3'].map((ns) => lbStatus(a, ns)?.provisioningStatus)).toEqual(['ACTIVE', 'ACTIVE', 'ACTIVE']);

    // Nothing changed: one node-wide observation, no reconcile, no action.
    const applied = a.driver.applied.length;
    const observations = a.driver.observations.length;
    a.reconciled.length = 0;
    await a.controller.resync();
    await a.controller.idle();
    expect(resyncLines(a).at(-1)).toMatchObject({ loadBalancers: 3, active: 3, changed: 0 });
    expect(a.reconciled).toEqual([]);
    expect(a.driver.applied.length).toBe(applied);
    expect(a.driver.observations.slice(observations)).toEqual([{ targets: [netnsOf('ns1'), netnsOf('ns2'), netnsOf('ns3')], nodeWide: true }]);

    // One netns deleted by hand: that load balancer, and only it, is reconciled and repaired.
    node.deleteNetnsByHand(netnsOf('ns2'));
    await a.controller.resync();
    await a.controller.idle();
    expect(resyncLines(a).at(-1)).toMatchObject({ changed: 1 });
    expect(a.reconciled.map((r) => r.key)).toEqual(['ns2/web']);
    const repairs = a.driver.applied.slice(applied);
    expect(repairs.length).toBeGreaterThan(0);
    expect(repairs.every((x) => about(x, 'ns2'))).toBe(true);
    expect(node.netns.has(netnsOf('ns2'))).toBe(true);
  });

  it('a periodic resync that outlasts its period is not started twice: the ticks in between are skipped and counted', async () => {
    const node = new FakeNode();
    const a = agent(node);
    a.controller.setSnapshot(stack('ns1', 11), []);
    await a.controller.initialSyncDone();
    const before = resyncLines(a).length;
    let refreshes = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    a.controller.startPeriodic({ resyncSeconds: 0.01, statusIntervalMs: 60_000 }, async () => {
      refreshes++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (refreshes === 1) await held; // the first periodic resync is slow (a bulk creation's)
      inFlight--;
    });
    // Several periods go by while the first is held.
    await waitUntil(() => a.logs.filter((l) => l.msg === 'resync still running; this tick is skipped').length >= 3, { intervalMs: 5, timeoutMs: 5_000 });
    expect(refreshes).toBe(1);
    release();
    await waitUntil(() => resyncLines(a).length > before, { intervalMs: 5, timeoutMs: 5_000 });
    a.controller.stopPeriodic();
    expect(maxInFlight).toBe(1);
    expect(resyncLines(a)[before]).toMatchObject({ loadBalancers: 1, skippedTicks: expect.any(Number) });
    expect(resyncLines(a)[before]!.skippedTicks as number).toBeGreaterThanOrEqual(3);
  });

  it('a periodic resync waits while a planned handover is under way (its window is on the same event loop)', async () => {
    const node = new FakeNode();
    const a = agent(node);
    a.controller.setSnapshot(stack('ns1', 11), []);
    await a.controller.initialSyncDone();
    let handovers = 1;
    a.driver.handoversInFlight = () => handovers;
    let refreshes = 0;
    a.controller.startPeriodic({ resyncSeconds: 0.01, statusIntervalMs: 60_000 }, async () => {
      refreshes++;
    });
    // Many periods go by: the tick waits, the ones after it are skipped.
    await waitUntil(() => a.logs.filter((l) => l.msg === 'resync still running; this tick is skipped').length >= 5, { intervalMs: 5, timeoutMs: 5_000 });
    expect(refreshes).toBe(0);
    handovers = 0;
    await waitUntil(() => refreshes > 0, { intervalMs: 5, timeoutMs: 5_000 });
    a.controller.stopPeriodic();
  });

  it('placement (Kubernetes mode): only what is placed here is served and reported; moved away, it is removed', async () => {
    const node = new FakeNode();
    const a = agent(node);
    let here = new Set(['ns1/web', 'ns2/web']);
    const objects = [...stack('ns1', 11), ...stack('ns2', 12), ...stack('ns3', 13)];
    a.controller.setSnapshot(objects, [], new Map(), { served: (key) => here.has(key) });
    await a.controller.initialSyncDone();
    await a.controller.idle();
    expect([...node.netns].sort()).toEqual([netnsOf('ns1'), netnsOf('ns2')].sort());
    // ns3's objects are another node's to report.
    expect(a.published.at(-1)!.objects.filter((o) => o.namespace === 'ns3')).toEqual([]);
    expect(lbStatus(a, 'ns1')?.provisioningStatus).toBe('ACTIVE');
    // ns2 moves away, ns3 comes here.
    here = new Set(['ns1/web', 'ns3/web']);
    a.controller.setSnapshot(objects, [], new Map(), { served: (key) => here.has(key) });
    await waitUntil(() => node.netns.has(netnsOf('ns3')) && !node.netns.has(netnsOf('ns2')), { intervalMs: 10, timeoutMs: 5_000 });
    expect([...node.netns].sort()).toEqual([netnsOf('ns1'), netnsOf('ns3')].sort());
  });

  it('a failed reconcile is ERROR with its message and is retried with growing backoff until it converges', async () => {
    const node = new FakeNode();
    const a = agent(node);
    let failures = 2;
    a.driver.failWith = (x) => (x.kind === 'haproxy.start' && failures-- > 0 ? new Error('haproxy: cannot bind socket') : undefined);
    a.controller.setSnapshot(stack('ns1', 11), []);
    expect(await waitUntil(() => lbStatus(a, 'ns1')?.provisioningStatus === 'ACTIVE', { intervalMs: 10, timeoutMs: 5_000 })).toBe(true);
    expect(a.reconciled.map((r) => r.result)).toEqual(['error', 'error', 'ok']);
    const [first, second, third] = a.reconciled.map((r) => r.at) as [number, number, number];
    expect(third - second).toBeGreaterThan(second - first);
    await a.controller.idle();
    const errors = a.published.flatMap((f) => f.objects).filter((o) => o.kind === 'LoadBalancer' && o.status.provisioningStatus === 'ERROR');
    expect(errors.at(0)?.status.conditions[0]).toMatchObject({ status: 'False', reason: 'ApplyFailed', message: 'haproxy: cannot bind socket' });
    expect(node.haproxy.size).toBe(1);
  });

  it('a reconcile waiting for another node (an address still in use) is PENDING, not ERROR, logged once, retried without backoff', async () => {
    const node = new FakeNode();
    const a = agent(node);
    let waits = 3;
    a.driver.failWith = (x) => (x.kind === 'haproxy.start' && waits-- > 0 ? new AddressInUseError('192.0.2.2', 'nslb-x') : undefined);
    a.controller.setSnapshot(stack('ns1', 11), []);
    expect(await waitUntil(() => lbStatus(a, 'ns1')?.provisioningStatus === 'ACTIVE', { intervalMs: 10, timeoutMs: 10_000 })).toBe(true);
    expect(a.reconciled.map((r) => r.result)).toEqual(['wait', 'wait', 'wait', 'ok']);
    await a.controller.idle();
    const states = a.published
      .flatMap((f) => f.objects)
      .filter((o) => o.kind === 'LoadBalancer')
      .map((o) => o.status.provisioningStatus);
    expect(states).not.toContain('ERROR');
    expect(a.logs.filter((l) => l.msg === 'waiting')).toHaveLength(1);
    expect(a.logs.filter((l) => l.msg === 'reconcile failed; will retry with backoff')).toHaveLength(0);
  });

  it('an invalid spec is terminal: nothing applied, no retries, status says why, the last valid config keeps serving', async () => {
    const node = new FakeNode();
    const a = agent(node);
    a.controller.setSnapshot([lb('web', {}, {}, 'ns1'), listener('http', { defaultPool: 'nope' }, 'ns1')], []);
    await a.controller.initialSyncDone();
    // Looked at once per snapshot and per resync (here: one each), never retried with backoff.
    expect(a.reconciled.map((r) => r.result)).toEqual(['ok', 'ok']);
    await new Promise((r) => setTimeout(r, 600));
    expect(a.reconciled).toHaveLength(2);
    expect(a.driver.applied).toEqual([]);
    expect(lbStatus(a, 'ns1')?.conditions[0]).toMatchObject({ status: 'False', reason: 'ChildInvalid' });
    expect(a.controller.statuses.get('Listener/ns1/http')).toMatchObject({ provisioningStatus: 'ERROR' });

    // Valid, then broken again: the applied config stays, no action runs, status says the last valid one serves.
    a.controller.setSnapshot(stack('ns1', 11), []);
    await a.controller.idle();
    expect(lbStatus(a, 'ns1')?.provisioningStatus).toBe('ACTIVE');
    const pid = node.haproxy.get(netnsOf('ns1'))?.pid;
    const applied = a.driver.applied.length;
    a.controller.setSnapshot([...stack('ns1', 11), listener('https', { port: 443, defaultPool: 'nope' }, 'ns1')], []);
    await a.controller.idle();
    await a.controller.resync();
    await a.controller.idle();
    expect(a.driver.applied.length).toBe(applied);
    expect(node.haproxy.get(netnsOf('ns1'))?.pid).toBe(pid);
    expect(lbStatus(a, 'ns1')).toMatchObject({ provisioningStatus: 'ERROR', conditions: [expect.objectContaining({ reason: 'ChildInvalid' })] });
    expect(a.controller.statuses.get('Pool/ns1/app')?.provisioningStatus).toBe('ACTIVE');
  });

  it('garbage collection removes only what this agent (its state dir) made', async () => {
    const node = new FakeNode();
    const b = agent(node, '/var/lib/nslb-b');
    b.controller.setSnapshot(stack('b', 12), []);
    await b.controller.initialSyncDone();
    const first = agent(node, '/var/lib/nslb-a');
    first.controller.setSnapshot(stack('a', 11), []);
    await first.controller.initialSyncDone();
    expect(node.haproxy.size).toBe(2);

    // Agent a restarts with an empty desired state: its load balancer is an orphan to it; b's is not its own.
    const a = agent(node, '/var/lib/nslb-a');
    a.controller.setSnapshot([], []);
    await a.controller.initialSyncDone();
    await a.controller.idle();
    expect(a.driver.applied.length).toBeGreaterThan(0);
    expect(a.driver.applied.every((x) => about(x, 'a'))).toBe(true);
    expect(node.netns.has(netnsOf('a'))).toBe(false);
    expect(node.stateDirs.has(netnsOf('a'))).toBe(false);
    expect(node.netns.has(netnsOf('b'))).toBe(true);
    expect(node.haproxy.has(netnsOf('b'))).toBe(true);
    expect(node.ports.has(nodeNames('b', 'web').iface)).toBe(true);
    await b.controller.resync();
    await b.controller.idle();
    expect(resyncLines(b).at(-1)).toMatchObject({ active: 1, changed: 0 });
  });

  it('publishes of load balancers converging at once are coalesced', async () => {
    const node = new FakeNode();
    const a = agent(node, '/var/lib/nslb-a', 64);
    const objects = Array.from({ length: 40 }, (_, i) => stack(`ns${i}`, 10 + i)).flat();
    a.controller.setSnapshot(objects, []);
    await a.controller.initialSyncDone();
    const last = a.published.at(-1);
    expect(last?.objects.filter((o) => o.kind === 'LoadBalancer' && o.status.provisioningStatus === 'ACTIVE')).toHaveLength(40);
    // 40 reconciles ask for a publish twice each (pending, converged): a handful were written.
    expect(a.published.length).toBeLessThanOrEqual(6);
  });

  it("after a crash at any point of a new load balancer's plan, a restarted agent finishes it: no orphan, no duplicate", async () => {
    const full = agent(new FakeNode());
    full.controller.setSnapshot(stack('ns1', 11), []);
    await full.controller.initialSyncDone();
    const steps = full.driver.applied.length;
    expect(steps).toBeGreaterThanOrEqual(5);
    for (let crashAt = 0; crashAt < steps; crashAt++) {
      const node = new FakeNode();
      const before = agent(node);
      before.driver.crashAfter = crashAt;
      before.controller.setSnapshot(stack('ns1', 11), []);
      expect(await waitUntil(() => before.driver.applied.length === crashAt, { intervalMs: 5, timeoutMs: 2_000 })).toBe(true);
      running.splice(running.indexOf(before.controller), 1);

      const after = agent(node);
      after.controller.setSnapshot(stack('ns1', 11), []);
      await after.controller.initialSyncDone();
      expect(lbStatus(after, 'ns1')?.provisioningStatus, `crash before step ${crashAt}`).toBe('ACTIVE');
      expect(node.haproxy.size).toBe(1);
      expect([...node.ports.keys()]).toEqual([nodeNames('ns1', 'web').iface]);
      expect([...node.netns]).toEqual([netnsOf('ns1')]);
      // What went through before the crash is not done again.
      const redone = after.driver.applied.filter((x) => before.driver.applied.some((y) => y.kind === x.kind && x.kind !== 'link.configure'));
      expect(redone, `crash before step ${crashAt}`).toEqual([]);
      await after.controller.resync();
      await after.controller.idle();
      expect(resyncLines(after).at(-1)).toMatchObject({ changed: 0 });
    }
  });
});
