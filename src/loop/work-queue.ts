// A keyed work queue in the manner of client-go's: a key queued while it is waiting is merged; a key queued
// while it is being processed runs once more afterwards (never twice at once); failures are retried with a
// per-key exponential backoff, forgotten on success. A handler that is waiting for something outside (an
// address another node still holds) throws RetryLater: the key comes back after that fixed delay, which is
// neither a failure nor a step of the backoff (client-go's AddAfter rather than AddRateLimited). The engine
// (controller/) and the Service provider (provider/) are each built on one.
import { waitUntil } from './wait.js';

/** How a run of the handler ended: `wait` is a RetryLater. */
export type ProcessResult = 'ok' | 'error' | 'wait';

/** Thrown by a handler that cannot go on yet and is not failing: run the key again after `delayMs`. */
export class RetryLater extends Error {
  readonly delayMs: number;
  constructor(delayMs: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.delayMs = delayMs;
  }
}

export interface QueueOptions {
  concurrency: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Told after each run of the handler: how it ended and how long it took (for /metrics). */
  onProcessed?: (key: string, result: ProcessResult, seconds: number) => void;
}

export type Handler = (key: string) => Promise<void>;

export class WorkQueue {
  readonly #handler: Handler;
  #concurrency: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onProcessed: QueueOptions['onProcessed'];
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #idleWaiters: (() => void)[] = [];
  readonly #quietWaiters: (() => void)[] = [];
  #running = 0;
  #stopped = false;
  #retries = 0;

  constructor(handler: Handler, options: QueueOptions) {
    this.#handler = handler;
    this.#concurrency = Math.max(1, options.concurrency);
    this.#baseDelayMs = options.baseDelayMs ?? 200;
    this.#maxDelayMs = options.maxDelayMs ?? 60_000;
    this.#onProcessed = options.onProcessed;
  }

  add(key: string): void {
    if (this.#stopped || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#processing.has(key)) this.#queue.push(key);
    this.#pump();
  }

  /** Queue after a delay; an earlier pending delay for the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#stopped || this.#timers.has(key)) return;
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.#timers.set(key, timer);
  }

  /** Change how many keys run at once (SIGHUP with a new --concurrency); running keys finish as they are. */
  setConcurrency(n: number): void {
    this.#concurrency = Math.max(1, n);
    this.#pump();
  }

  /** Queued or being handled now: a reconcile of it is coming anyway. */
  busy(key: string): boolean {
    return this.#dirty.has(key) || this.#processing.has(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  get length(): number {
    return this.#queue.length;
  }

  /** Keys waiting for a worker (not those running, nor those waiting out a backoff). */
  get depth(): number {
    return this.#queue.length;
  }

  /** Retries scheduled since the queue was made (one per failed run of the handler). */
  get retries(): number {
    return this.#retries;
  }

  /** Resolves when nothing is queued, running or waiting on a backoff timer. */
  async idle(): Promise<void> {
    if (this.#isIdle()) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Resolves when nothing is queued or running; keys waiting on a backoff timer do not count. "Every key
   * has been tried once": a key that keeps failing (a missing bridge) must not hold up the others' resync.
   */
  async quiet(): Promise<void> {
    if (this.#isQuiet()) return;
    await new Promise<void>((resolve) => this.#quietWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#queue.length = 0;
    this.#dirty.clear();
    await waitUntil(() => this.#running === 0, { intervalMs: 10 });
  }

  #isIdle(): boolean {
    return this.#isQuiet() && this.#timers.size === 0;
  }

  #isQuiet(): boolean {
    return this.#queue.length === 0 && this.#running === 0;
  }

  #pump(): void {
    while (!this.#stopped && this.#running < this.#concurrency && this.#queue.length > 0) {
      const key = this.#queue.shift()!;
      this.#dirty.delete(key);
      this.#processing.add(key);
      this.#running++;
      void this.#process(key);
    }
    if (this.#isQuiet()) for (const w of this.#quietWaiters.splice(0)) w();
    if (this.#isIdle()) for (const w of this.#idleWaiters.splice(0)) w();
  }

  async #process(key: string): Promise<void> {
    const started = performance.now();
    try {
      await this.#handler(key);
      this.#failures.delete(key);
      this.#onProcessed?.(key, 'ok', (performance.now() - started) / 1000);
    } catch (err) {
      if (err instanceof RetryLater) {
        this.#onProcessed?.(key, 'wait', (performance.now() - started) / 1000);
        this.addAfter(key, err.delayMs);
        return;
      }
      this.#onProcessed?.(key, 'error', (performance.now() - started) / 1000);
      this.#retries++;
      const n = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, n);
      this.addAfter(key, Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (n - 1)));
    } finally {
      this.#processing.delete(key);
      this.#running--;
      if (this.#dirty.has(key)) this.#queue.push(key);
      this.#pump();
    }
  }
}
