import { describe, expect, it } from 'vitest';
import { Slots } from '../../src/loop/slots.js';

describe('Slots', () => {
  it('runs at most N at once, the rest in the order asked, and frees a slot when a run fails', async () => {
    const slots = new Slots(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const releases: (() => void)[] = [];
    const job = (i: number, fail = false) =>
      slots.run(async () => {
        running++;
        most = Math.max(most, running);
        order.push(i);
        await new Promise<void>((r) => releases.push(r));
        running--;
        if (fail) throw new Error(`job ${i}`);
        return i;
      });
    const jobs = [job(0, true), job(1), job(2), job(3)];
    await Promise.resolve();
    expect(order).toEqual([0, 1]);
    expect(slots.waiting).toBe(2);
    releases.shift()!();
    await expect(jobs[0]).rejects.toThrow('job 0');
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([0, 1, 2]);
    while (releases.length > 0 || order.length < 4) {
      releases.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    await expect(Promise.all(jobs.slice(1))).resolves.toEqual([1, 2, 3]);
    expect(most).toBe(2);
    expect(slots.waiting).toBe(0);
  });

  it('refuses a count that is not a positive integer', () => {
    expect(() => new Slots(0)).toThrow(RangeError);
  });
});
