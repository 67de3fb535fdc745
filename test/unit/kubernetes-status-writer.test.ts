// The Kubernetes status writer against the in-test API server with a realistic delay: parallel merge patches
// under the client-side limit, the newest status only, nothing written twice, nothing lost while the server is
// down, and one log line per outage. Requests are counted (in flight at once, longest chain of one-after-
// another), never timed.
import { Writable } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pluralOf } from '../../src/api/v1alpha1/crds.js';
import type { Kind, ObjectStatus } from '../../src/api/v1alpha1/types.js';
import type { Logger } from '../../src/log/logger.js';
import { ApiRateLimiter, type RateLimit, type RequestLimiter } from '../../src/status/api-rate-limit.js';
import { KubernetesStatusWriter, keepTransitionTimes, mergePatch, type ServerView } from '../../src/status/kubernetes-writer.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { NSLB_API_VERSION, type FakeApiServer, type RequestLogEntry } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const NS = 'bulk';
const KINDS_PER_LB: Kind[] = ['LoadBalancer', 'Listener', 'Pool', 'Member'];
const T0 = '2026-01-01T00:00:00Z';

function pending(generation = 1): ObjectStatus {
  return {
    provisioningStatus: 'PENDING_CREATE',
    operatingStatus: 'OFFLINE',
    conditions: [
      { type: 'Ready', status: 'False', reason: 'Pending', message: 'reconcile in progress', lastTransitionTime: T0, ...(generation > 1 ? {} : {}) },
    ],
  };
}

function ready(generation = 1, operating: ObjectStatus['operatingStatus'] = 'ONLINE'): ObjectStatus {
  return {
    provisioningStatus: 'ACTIVE',
    operatingStatus: operating,
    observedGeneration: generation,
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Provisioned',
        message: 'applied to the node',
        lastTransitionTime: '2026-01-01T00:00:05Z',
        observedGeneration: generation,
      },
    ],
  };
}

interface Obj {
  kind: Kind;
  name: string;
}

function objects(lbs: number): Obj[] {
  const out: Obj[] = [];
  for (let i = 0; i < lbs; i++) for (const kind of KINDS_PER_LB) out.push({ kind, name: `lb${i}-${kind.toLowerCase()}` });
  return out;
}

function statusFile(objs: readonly Obj[], status: (o: Obj, i: number) => ObjectStatus): StatusFile {
  return {
    objects: objs.map((o, i) => ({ apiVersion: NSLB_API_VERSION, kind: o.kind, namespace: NS, name: o.name, spec: {}, status: status(o, i) })),
    errors: [],
  };
}

function spec(kind: Kind): Record<string, unknown> {
  switch (kind) {
    case 'LoadBalancer':
      return { vip: { address: '10.0.0.10' } };
    case 'Listener':
      return { loadBalancer: 'x', protocol: 'HTTP', port: 80 };
    case 'Pool':
      return { loadBalancer: 'x', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' };
    default:
      return { pool: 'p', address: '10.0.0.1', port: 80 };
  }
}

/** Log lines, parsed. */
function capture(): { logger: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream) as unknown as Logger, lines };
}

/** A limiter that counts the tokens it hands out (and can hold them back). */
class CountingLimiter implements RequestLimiter {
  taken = 0;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  constructor(readonly limit: RateLimit) {}
  close(): void {
    this.#gate = new Promise((r) => (this.#open = r));
  }
  open(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  async take(): Promise<void> {
    await this.#gate;
    this.taken++;
  }
}

const isStatusWrite = (e: RequestLogEntry): boolean => e.method === 'PATCH' && e.path.endsWith('/status');

describe('Kubernetes status writer', () => {
  let fake: FakeApiServer;
  let kc: KubeConfig;
  const view: ServerView = { cached: (kind, namespace, name) => fake.get(NSLB_API_VERSION, pluralOf(kind), namespace, name) };
  const readyEverywhere = (objs: readonly Obj[]): boolean =>
    objs.every((o) => (fake.get(NSLB_API_VERSION, pluralOf(o.kind), NS, o.name)?.status as ObjectStatus | undefined)?.conditions[0]?.status === 'True');

  beforeEach(async () => {
    ({ server: fake, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo', requestDelayMs: 20 }));
  });

  afterEach(async () => {
    await fake.stop();
  });

  function create(objs: readonly Obj[]): void {
    for (const o of objs) fake.create({ apiVersion: NSLB_API_VERSION, kind: o.kind, metadata: { namespace: NS, name: o.name }, spec: spec(o.kind) });
    fake.clearRequestLog();
  }

  it('a burst of 400 objects becomes Ready in parallel merge patches, not serial round trips, ≤ 2 writes per object', async () => {
    const objs = objects(100);
    create(objs);
    const limiter = new CountingLimiter({ qps: 1000, burst: 100 });
    const writer = new KubernetesStatusWriter(kc, view, { limiter, logger: capture().logger });
    // As the node converges: every object pending, then a quarter at a time Ready.
    writer.write(statusFile(objs, () => pending()));
    for (let q = 1; q <= 4; q++) {
      await new Promise((r) => setTimeout(r, 30));
      writer.write(statusFile(objs, (_, i) => (i < q * 100 ? ready() : pending())));
    }
    await writer.idle();
    expect(readyEverywhere(objs)).toBe(true);
    const writes = fake.statusWrites();
    expect(writes).toBeLessThanOrEqual(2 * objs.length);
    // In flight together, up to the burst; the longest chain of writes each sent after the one before was
    // answered is an order of magnitude shorter than the writes (one write at a time makes it `writes` long).
    expect(fake.peakConcurrency(isStatusWrite)).toBeGreaterThanOrEqual(50);
    expect(fake.peakConcurrency(isStatusWrite)).toBeLessThanOrEqual(100);
    expect(fake.longestChain(isStatusWrite)).toBeLessThanOrEqual(Math.ceil(writes / 10));
    // Every write took a token; every one was a merge patch of the status subresource.
    expect(limiter.taken).toBe(writes);
    expect(
      fake
        .requestLog()
        .filter(isStatusWrite)
        .every((e) => e.contentType === 'application/merge-patch+json'),
    ).toBe(true);
    expect(fake.countRequests((e) => e.method === 'PUT')).toBe(0);
    expect(writer.queue()).toEqual({ depth: 0, oldestSeconds: 0 });
    expect(writer.writes().every(([l]) => l.result === 'ok')).toBe(true);
  });

  it('writes only the newest status of an object: states superseded while waiting are never sent', async () => {
    const objs = objects(5);
    create(objs);
    const limiter = new CountingLimiter({ qps: 1000, burst: 10 });
    limiter.close();
    const writer = new KubernetesStatusWriter(kc, view, { limiter, logger: capture().logger });
    writer.write(statusFile(objs, () => pending()));
    writer.write(statusFile(objs, () => ready(1, 'OFFLINE')));
    writer.write(statusFile(objs, () => ready(1, 'ONLINE')));
    expect(writer.queue().depth).toBe(objs.length);
    limiter.open();
    await writer.idle();
    expect(fake.statusWrites()).toBe(objs.length);
    for (const o of objs) expect(fake.get(NSLB_API_VERSION, pluralOf(o.kind), NS, o.name)?.status).toMatchObject({ operatingStatus: 'ONLINE' });
  });

  it('a PENDING status waits a moment: replaced by ACTIVE within it, only ACTIVE is written; lasting longer, it is written', async () => {
    const objs = objects(2);
    create(objs);
    const writer = new KubernetesStatusWriter(kc, view, { limiter: new ApiRateLimiter({ qps: 50, burst: 100 }), logger: capture().logger });
    writer.write(statusFile(objs, () => pending()));
    writer.write(statusFile(objs, (_, i) => (i < 4 ? ready() : pending())));
    await vi.waitFor(() => expect(fake.statusWrites()).toBe(4));
    expect(fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'lb0-loadbalancer')?.status).toMatchObject({ provisioningStatus: 'ACTIVE' });
    expect(fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'lb1-loadbalancer')?.status).toBeUndefined();
    await writer.idle();
    expect(fake.statusWrites()).toBe(8);
    expect(fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'lb1-loadbalancer')?.status).toMatchObject({ provisioningStatus: 'PENDING_CREATE' });
  });

  it("leaves the scheduler's status.placement alone: not nulled by a write, not a reason to write", async () => {
    const objs = objects(1);
    create(objs);
    const lb = fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'lb0-loadbalancer')!;
    fake.updateStatus({ ...lb, status: { placement: { nodes: ['node2'] } } });
    const writer = new KubernetesStatusWriter(kc, view, { limiter: new ApiRateLimiter({ qps: 1000, burst: 100 }), logger: capture().logger });
    writer.write(statusFile(objs, () => ready()));
    await writer.idle();
    expect(fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'lb0-loadbalancer')?.status).toMatchObject({
      provisioningStatus: 'ACTIVE',
      placement: { nodes: ['node2'] },
    });
    // The server's copy differs from ours by the placement only: nothing to write.
    const writes = fake.statusWrites();
    writer.write(statusFile(objs, () => ready()));
    await writer.idle();
    expect(fake.statusWrites()).toBe(writes);
  });

  it('no write when the server holds the status already, also after a restart that forgot when conditions flipped', async () => {
    const objs = objects(10);
    create(objs);
    const limiter = new ApiRateLimiter({ qps: 50, burst: 100 });
    const writer = new KubernetesStatusWriter(kc, view, { limiter, logger: capture().logger });
    writer.write(statusFile(objs, () => ready()));
    await writer.idle();
    expect(fake.statusWrites()).toBe(objs.length);
    for (let i = 0; i < 3; i++) writer.write(statusFile(objs, () => ready()));
    await writer.idle();
    expect(fake.statusWrites()).toBe(objs.length);
    // A new agent: its controller says the conditions became True "now"; the server's times are kept.
    const restarted = new KubernetesStatusWriter(kc, view, { limiter, logger: capture().logger });
    const now = (): ObjectStatus => ({ ...ready(), conditions: [{ ...ready().conditions[0]!, lastTransitionTime: '2026-06-01T00:00:00Z' }] });
    restarted.write(statusFile(objs, now));
    await restarted.idle();
    expect(fake.statusWrites()).toBe(objs.length);
  });

  it('a field that went away is removed by the merge patch (null), and a 409 is retried for that object alone', async () => {
    const objs: Obj[] = [{ kind: 'LoadBalancer', name: 'lb' }];
    create(objs);
    const writer = new KubernetesStatusWriter(kc, view, { limiter: new ApiRateLimiter({ qps: 50, burst: 10 }), logger: capture().logger });
    writer.write(statusFile(objs, () => ({ ...ready(), vip: '10.0.0.10', node: 'n1' })));
    await writer.idle();
    fake.failNextStatusWriteWithConflict(1);
    writer.write(statusFile(objs, () => ({ ...ready(), vip: '10.0.0.10' })));
    await writer.idle();
    const status = fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'lb')?.status as Record<string, unknown>;
    expect(status.vip).toBe('10.0.0.10');
    expect(status).not.toHaveProperty('node');
    expect(Object.fromEntries(writer.writes().map(([l, n]) => [l.result, n]))).toEqual({ ok: 2, conflict: 1 });
  });

  it('API server down: nothing is lost, the newest status of each object is written when it answers, one warning', async () => {
    const objs = objects(10);
    create(objs);
    const { logger, lines } = capture();
    const writer = new KubernetesStatusWriter(kc, view, { limiter: new ApiRateLimiter({ qps: 50, burst: 100 }), logger });
    await fake.stop();
    // While it is down, members change three times.
    for (const op of ['ONLINE', 'ERROR', 'DEGRADED'] as const) writer.write(statusFile(objs, () => ready(1, op)));
    // Every object tried, and tried again after a backoff.
    const unavailable = (): number => writer.writes().reduce((n, [l, c]) => n + (l.result === 'unavailable' ? c : 0), 0);
    await vi.waitFor(() => expect(unavailable()).toBeGreaterThanOrEqual(2 * objs.length), { timeout: 5_000 });
    expect(writer.queue().depth).toBe(objs.length);
    await fake.start();
    await writer.idle();
    for (const o of objs) expect(fake.get(NSLB_API_VERSION, pluralOf(o.kind), NS, o.name)?.status).toMatchObject({ operatingStatus: 'DEGRADED' });
    expect(fake.statusWrites()).toBe(objs.length); // only the newest, once each, after the return
    const loud = lines.filter((l) => l.level >= 40);
    expect(loud.map((l) => l.msg)).toEqual(['cannot write status to the API server; keeping the newest status of each object and retrying with backoff']);
    expect(lines.filter((l) => l.msg.startsWith('the API server answers again'))).toHaveLength(1);
  });

  it('a status the CRD refuses (422) is logged once and not retried in a loop', async () => {
    const objs: Obj[] = [{ kind: 'Member', name: 'm' }];
    create(objs);
    const { logger, lines } = capture();
    const writer = new KubernetesStatusWriter(kc, view, { limiter: new ApiRateLimiter({ qps: 50, burst: 10 }), logger });
    writer.write(statusFile(objs, () => ({ ...ready(), provisioningStatus: 'SOMETHING' as never })));
    await vi.waitFor(() => expect(writer.writes()).toEqual([[{ kind: 'Member', result: 'invalid' }, 1]]));
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.statusWrites()).toBe(1);
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(1);
    // A newer status goes through at once.
    writer.write(statusFile(objs, () => ready()));
    await writer.idle();
    expect(fake.get(NSLB_API_VERSION, 'members', NS, 'm')?.status).toMatchObject({ provisioningStatus: 'ACTIVE' });
  });
});

describe('status writer helpers', () => {
  it('mergePatch nulls what went away, recursively; arrays are replaced whole', () => {
    expect(mergePatch({ a: 1, b: { c: 1, d: 2 }, e: [1] }, { b: { c: 2 }, e: [2] })).toEqual({ a: null, b: { c: 2, d: null }, e: [2] });
  });

  it('keepTransitionTimes keeps the server time of a condition that did not flip, and only then', () => {
    const server = { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: 'then' }] };
    expect(keepTransitionTimes(ready(), server).conditions[0]?.lastTransitionTime).toBe('then');
    expect(keepTransitionTimes(pending(), server).conditions[0]?.lastTransitionTime).toBe(T0);
  });
});

describe('client-side rate limit (client-go QPS and burst)', () => {
  afterEach(() => vi.useRealTimers());

  it('burst at once, then qps per second', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'performance'] });
    const limiter = new ApiRateLimiter({ qps: 10, burst: 5 });
    let done = 0;
    for (let i = 0; i < 15; i++) void limiter.take().then(() => done++);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(5);
    await vi.advanceTimersByTimeAsync(500);
    expect(done).toBe(10);
    await vi.advanceTimersByTimeAsync(500);
    expect(done).toBe(15);
    // After a quiet spell the bucket is full again, never fuller than the burst.
    await vi.advanceTimersByTimeAsync(10_000);
    for (let i = 0; i < 10; i++) void limiter.take().then(() => done++);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(20);
  });

  it('refuses what client-go would not take', () => {
    expect(() => new ApiRateLimiter({ qps: 0, burst: 1 })).toThrow('--kube-api-qps must be a positive number');
    expect(() => new ApiRateLimiter({ qps: 1, burst: 0.5 })).toThrow('--kube-api-burst must be a positive integer');
  });
});
