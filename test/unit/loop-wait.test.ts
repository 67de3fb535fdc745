// waitUntil, the one poll loop: asks at once (or after one interval), stops as soon as the answer is yes, gives up
// when the time is up.
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../../src/loop/wait.js';

describe('waitUntil', () => {
  it('resolves true as soon as the condition holds, asking at the interval', async () => {
    let asked = 0;
    expect(await waitUntil(() => ++asked === 3, { intervalMs: 5, timeoutMs: 1_000 })).toBe(true);
    expect(asked).toBe(3);
  });

  it('resolves false once the time is up, having asked at least once', async () => {
    let asked = 0;
    const started = Date.now();
    const never = (): boolean => {
      asked++;
      return false;
    };
    expect(await waitUntil(never, { intervalMs: 10, timeoutMs: 50 })).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
    expect(asked).toBeGreaterThanOrEqual(2);
  });

  it('asks only after the first interval when told to', async () => {
    const started = Date.now();
    let firstAskAfter = -1;
    await waitUntil(
      () => {
        firstAskAfter = Date.now() - started;
        return true;
      },
      { intervalMs: 30, askAtOnce: false },
    );
    expect(firstAskAfter).toBeGreaterThanOrEqual(25);
  });

  it('awaits an asynchronous condition', async () => {
    let n = 0;
    expect(await waitUntil(async () => ++n > 1, { intervalMs: 1 })).toBe(true);
  });
});
