// The node Lease's renewal clock (src/kube/renewal-clock.ts), shared by the main thread's renewer and the thread's:
// on the clock whether or not the last renewal was answered, at most four waiting, a late renewal said with where
// its time went, one warning per outage, the thread's "may I" asked before each, and a stop that waits for the
// renewals in flight. Fake timers: the clock's own timer and Date.now() move together.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_IN_FLIGHT, RenewalClock, type RenewalClockOptions } from '../../src/kube/renewal-clock.js';

interface Said {
  level: 'warn' | 'info';
  fields: Record<string, unknown>;
  msg: string;
}

/** A renewal the test answers: `land()`, `fail(err)` or `handOn()` (neither). */
interface Pending {
  land(): void;
  fail(err: unknown): void;
  handOn(): void;
}

function clock(over: Partial<RenewalClockOptions> = {}) {
  const said: Said[] = [];
  const pending: Pending[] = [];
  const c = new RenewalClock({
    renewMs: 1_000,
    leaseMs: 4_000,
    renew: () =>
      new Promise<boolean>((resolve, reject) => {
        pending.push({ land: () => resolve(true), fail: reject, handOn: () => resolve(false) });
      }),
    warn: (fields, msg) => said.push({ level: 'warn', fields, msg }),
    info: (fields, msg) => said.push({ level: 'info', fields, msg }),
    describe: (err) => (err instanceof Error ? err.message : String(err)),
    ...over,
  });
  return { c, said, pending };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the node Lease renewal clock', () => {
  it('renews every period whether or not the last renewal was answered, with at most four waiting', async () => {
    const { c, pending } = clock();
    c.start();
    await vi.advanceTimersByTimeAsync(3_000);
    expect(pending).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pending).toHaveLength(MAX_IN_FLIGHT);
    // One answered: the next tick sends one again.
    pending[0]?.land();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pending).toHaveLength(MAX_IN_FLIGHT + 1);
    for (const p of pending) p.land();
    await c.stop();
  });

  it('says a renewal landed more than half a Lease after the last that did, with how late its timer fired and how long it took', async () => {
    const { c, said, pending } = clock({ renewedAt: Date.now() });
    c.start();
    await vi.advanceTimersByTimeAsync(1_000);
    // Answered 2.5 s after it was sent: 3.5 s since the last renewal, against a 4 s Lease.
    await vi.advanceTimersByTimeAsync(2_500);
    pending[0]?.land();
    await vi.advanceTimersByTimeAsync(0);
    const late = said.filter((s) => s.msg === 'node Lease renewed late');
    expect(late).toHaveLength(1);
    expect(late[0]?.fields).toMatchObject({ sinceLastMs: 3_500, leaseMs: 4_000, timerLateMs: 0, requestMs: 2_500 });
    // The ones after it, answered at once, are on time.
    for (const p of pending.slice(1)) p.land();
    await vi.advanceTimersByTimeAsync(0);
    expect(said.filter((s) => s.msg === 'node Lease renewed late')).toHaveLength(1);
    await c.stop();
  });

  it('an outage is said once, and its end once; a renewal handed on is neither', async () => {
    const { c, said, pending } = clock();
    const p1 = c.once();
    pending[0]?.fail(new Error('connect ECONNREFUSED'));
    await p1;
    for (let i = 1; i < 4; i++) {
      const p = c.once();
      pending[i]?.fail(new Error('connect ECONNREFUSED'));
      await p;
    }
    const p5 = c.once();
    pending[4]?.handOn();
    await p5;
    expect(said).toEqual([{ level: 'warn', fields: { err: 'connect ECONNREFUSED' }, msg: 'cannot renew the node Lease; retrying' }]);
    const p6 = c.once();
    pending[5]?.land();
    await p6;
    expect(said.map((s) => s.msg)).toEqual(['cannot renew the node Lease; retrying', 'node Lease renewed again']);
  });

  it('asks mayRenew before each renewal on the clock, and sends none while it says no', async () => {
    let may = true;
    const { c, pending } = clock({ mayRenew: () => may });
    c.start();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(pending).toHaveLength(2);
    may = false;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pending).toHaveLength(2);
    may = true;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pending).toHaveLength(3);
    for (const p of pending) p.land();
    await c.stop();
  });

  it('stop() sends no more and waits for the renewals in flight', async () => {
    const { c, pending } = clock();
    c.start();
    await vi.advanceTimersByTimeAsync(2_000);
    let stopped = false;
    const s = c.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pending).toHaveLength(2);
    expect(stopped).toBe(false);
    pending[0]?.land();
    pending[1]?.fail(new Error('x'));
    await s;
    expect(stopped).toBe(true);
  });
});
