import { describe, expect, it } from 'vitest';
import { RetryLater, WorkQueue } from '../../src/loop/work-queue.js';

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('tells how each run ended and counts retries; depth is what waits for a worker (for /metrics)', async () => {
    const told: [string, string][] = [];
    let fails = 2;
    const q = new WorkQueue(
      async (k) => {
        await tick();
        if (k === 'bad' && fails-- > 0) throw new Error('no');
      },
      {
        concurrency: 1,
        baseDelayMs: 1,
        onProcessed: (key, result, seconds) => {
          expect(seconds).toBeGreaterThanOrEqual(0);
          told.push([key, result]);
        },
      },
    );
    q.add('a');
    q.add('b');
    q.add('bad');
    expect(q.depth).toBe(2); // 'a' is running
    await q.idle();
    expect(q.depth).toBe(0);
    expect(told).toEqual([
      ['a', 'ok'],
      ['b', 'ok'],
      ['bad', 'error'],
      ['bad', 'error'],
      ['bad', 'ok'],
    ]);
    expect(q.retries).toBe(2);
  });

  it('merges repeats of a key that is waiting', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        await tick();
      },
      { concurrency: 1 },
    );
    q.add('a');
    q.add('b');
    q.add('b');
    q.add('b');
    await q.idle();
    expect(seen).toEqual(['a', 'b']);
  });

  it('never runs one key twice at once, and runs it again if it was queued while running', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        runs++;
        maxRunning = Math.max(maxRunning, running);
        await tick(20);
        running--;
      },
      { concurrency: 4 },
    );
    q.add('a');
    await tick();
    q.add('a');
    q.add('a');
    await q.idle();
    expect(maxRunning).toBe(1);
    expect(runs).toBe(2);
  });

  it('runs different keys concurrently up to the limit', async () => {
    let running = 0;
    let maxRunning = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await tick(20);
        running--;
      },
      { concurrency: 3 },
    );
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k);
    await q.idle();
    expect(maxRunning).toBe(3);
  });

  it('retries a failing key with per-key exponential backoff, and forgets on success', async () => {
    const times: number[] = [];
    const q = new WorkQueue(
      async () => {
        times.push(Date.now());
        if (times.length < 4) throw new Error('not yet');
      },
      { concurrency: 1, baseDelayMs: 20, maxDelayMs: 1000 },
    );
    q.add('a');
    await q.idle();
    expect(times).toHaveLength(4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(78);
    expect(q.failures('a')).toBe(0);
  });

  it('a key that waits (RetryLater) comes back after its own delay: not a failure, no retry counted, no backoff step', async () => {
    const told: [string, string][] = [];
    const delays: number[] = [];
    let runs = 0;
    const q = new WorkQueue(
      async () => {
        runs++;
        if (runs === 1) throw new Error('broken once');
        if (runs <= 5) throw new RetryLater(7, 'address still in use');
      },
      { concurrency: 1, baseDelayMs: 1, onProcessed: (key, result) => told.push([key, result]) },
    );
    const addAfter = q.addAfter.bind(q);
    q.addAfter = (key, ms) => {
      delays.push(ms);
      addAfter(key, ms);
    };
    q.add('a');
    await q.idle();
    expect(told.map(([, r]) => r)).toEqual(['error', 'wait', 'wait', 'wait', 'wait', 'ok']);
    // One failure's backoff (1 ms), then the wait's own delay each time, not a doubling backoff.
    expect(delays).toEqual([1, 7, 7, 7, 7]);
    expect(q.retries).toBe(1);
    expect(q.failures('a')).toBe(0);
  });

  it('quiet() resolves once every key was tried, while a failing key waits in backoff (idle() does not)', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'broken') throw new Error('bridge missing');
      },
      { concurrency: 2, baseDelayMs: 60_000 },
    );
    q.add('broken');
    q.add('a');
    q.add('b');
    let idle = false;
    void q.idle().then(() => {
      idle = true;
    });
    await q.quiet();
    expect(seen.sort()).toEqual(['a', 'b', 'broken']);
    expect(q.failures('broken')).toBe(1);
    await tick(20);
    expect(idle).toBe(false);
    await q.stop();
  });
});
