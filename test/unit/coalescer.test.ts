// src/loop/coalescer.ts: callers who ask while a run is under way share the next run, never an older one.
import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../src/loop/coalescer.js';

describe('Coalescer', () => {
  it('N callers at once cost two runs, and each gets a run that began after it asked', async () => {
    let runs = 0;
    const gates: (() => void)[] = [];
    const c = new Coalescer(async () => {
      const n = ++runs;
      await new Promise<void>((resolve) => gates.push(resolve));
      return n;
    });
    const first = c.run();
    const later = [c.run(), c.run(), c.run()];
    expect(runs).toBe(1);
    gates.shift()!();
    expect(await first).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(runs).toBe(2);
    gates.shift()!();
    expect(await Promise.all(later)).toEqual([2, 2, 2]);
    // Nothing running: a caller starts a run of its own at once.
    const alone = c.run();
    expect(runs).toBe(3);
    gates.shift()!();
    expect(await alone).toBe(3);
  });

  it('a failed run does not stop the one queued behind it', async () => {
    let runs = 0;
    const c = new Coalescer(async () => {
      runs++;
      await new Promise((resolve) => setImmediate(resolve));
      if (runs === 1) throw new Error('first run failed');
      return runs;
    });
    const first = c.run();
    const second = c.run();
    await expect(first).rejects.toThrow('first run failed');
    expect(await second).toBe(2);
  });
});
