// The node Lease's renewals on the clock, for both renewers: NodeLease on the agent's main thread (node-lease.ts)
// and the thread's (node-lease-worker.ts). It loads nothing (the thread must stay small: a thread that loads
// client-node costs 80 MiB), and it does not know how a renewal is sent.
//
// A renewal every renewal period, whether or not the last one has been answered (as a kubelet's do not wait behind a
// slow one): a slow answer does not delay the next renewal, and any one that lands within the Lease keeps the node
// alive (each is a merge patch of the renewal time, so their order does not matter). At most MAX_IN_FLIGHT wait for
// their answers at once. A renewal that lands more than half a Lease after the last one that did is logged, with
// where the time went (the timer, or the request), so that a node that nearly looked dead, or did, can be told from
// one that died. A failing renewer keeps trying, as a kubelet does, and says so once per outage.

/** Renewals waiting for their answers at once, at most (a Lease duration holds four renewal periods). */
export const MAX_IN_FLIGHT = 4;

export interface RenewalClockOptions {
  renewMs: number;
  leaseMs: number;
  /** One renewal: true when it landed; false when it did neither (it was handed on, say a Lease gone); throws when it failed. */
  renew: () => Promise<boolean>;
  /** Asked before each renewal on the clock; false skips it (the thread: the main thread does not answer). */
  mayRenew?: () => boolean;
  warn: (fields: Record<string, unknown>, msg: string) => void;
  info: (fields: Record<string, unknown>, msg: string) => void;
  /** An error as the log line carries it. */
  describe: (err: unknown) => unknown;
  /** When the last renewal landed, if one did before this clock (the thread: the main thread's, just before). */
  renewedAt?: number;
  /** The timer does not keep the process alive (the main thread: the agent's life is its own). */
  unref?: boolean;
}

export class RenewalClock {
  readonly #opts: RenewalClockOptions;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Renewals on the clock sent and not answered yet (at most MAX_IN_FLIGHT). */
  readonly #inFlight = new Set<Promise<void>>();
  #failing = false;
  /** When the last renewal landed (its answer came). */
  #renewedAt: number | undefined;

  constructor(opts: RenewalClockOptions) {
    this.#opts = opts;
    this.#renewedAt = opts.renewedAt;
  }

  /** Renewals every renewal period from now on. */
  start(): void {
    this.#schedule();
  }

  /** No renewal on the clock any more; resolves when those in flight have their answers. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await Promise.all(this.#inFlight);
  }

  /** One renewal now. `timerLateMs`: how late its timer fired (this thread's event loop was busy that long). */
  async once(timerLateMs = 0): Promise<void> {
    const { leaseMs, warn, info } = this.#opts;
    const started = Date.now();
    try {
      if (!(await this.#opts.renew())) return;
      const done = Date.now();
      // Half the Lease gone since the last renewal that landed: the scheduler calls the node dead at the full Lease.
      if (this.#renewedAt !== undefined && done - this.#renewedAt > leaseMs / 2) {
        warn({ sinceLastMs: done - this.#renewedAt, leaseMs, timerLateMs, requestMs: done - started }, 'node Lease renewed late');
      }
      this.#renewedAt = done;
      if (this.#failing) info({}, 'node Lease renewed again');
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) warn({ err: this.#opts.describe(err) }, 'cannot renew the node Lease; retrying');
      this.#failing = true;
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    const { renewMs } = this.#opts;
    const due = Date.now() + renewMs;
    this.#timer = setTimeout(() => {
      if (this.#stopped) return;
      if (this.#inFlight.size < MAX_IN_FLIGHT && (this.#opts.mayRenew?.() ?? true)) {
        const renewal: Promise<void> = this.once(Date.now() - due).finally(() => this.#inFlight.delete(renewal));
        this.#inFlight.add(renewal);
      }
      this.#schedule();
    }, renewMs);
    if (this.#opts.unref === true) this.#timer.unref();
  }
}
