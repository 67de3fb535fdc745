// A leader's renewals from a worker thread of their own (leader-worker.ts). On the main thread, behind a hundred
// reconciles on a loaded node, a renewal's timer fired late and its answer was read late again, and the leader was
// fenced while nobody else wanted the Lease (bench (w): the scheduler stopped and started leading 4-7 times per
// drain of 100 pairs, each a pause in placing). The node Lease moved to a thread for the same reason
// (node-lease-thread.ts).
//
// The elector (leader.ts) still takes the Lease, decides when to lead and fences itself: it hands the Lease it
// wrote to the thread, which renews it from then on, and its fence reads the time of the thread's last renewal from
// memory they share (no message to wait for behind a long queue). A renewal the thread cannot make (a conflict, an
// error, no answer in time) ends its renewals and hands back to the elector, whose next try reads the Lease as a
// candidate does; if none lands within the renew deadline, the fence stops leading as before. The thread renews only
// while the main thread sends its heartbeat: a main thread silent for STALL_MS (wedged, not busy) lets the Lease run
// out. Started at the first leadership, so that only the leader has one.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { HEARTBEAT_MS, STALL_MS } from './node-lease-thread.js';
import { leaseUrl, namesProxy, type ThreadAuth, ThreadFeed, type ThreadFeedMessage, threadAuth, threadBindings } from './thread-http.js';

export interface LeaderWorkerInit {
  url: string;
  /** What leading means, for the log (`scheduler`, `provider`). */
  role: string;
  name: string;
  identity: string;
  leaseSeconds: number;
  retryMs: number;
  deadlineMs: number;
  stallMs: number;
  auth: ThreadAuth;
  /** One BigInt64: the epoch ms at which the last renewal that landed in time was asked for. */
  shared: SharedArrayBuffer;
  levelValue: number;
  bindings: Record<string, unknown>;
}

export type ToLeaderWorker =
  | ThreadFeedMessage
  /** Renew from this Lease (JSON, as the elector's last write left it), renewed at `renewedAt`. */
  | { type: 'renew'; lease: string; renewedAt: number }
  | { type: 'halt'; id: number }
  | { type: 'stop' };
export type FromLeaderWorker = { type: 'doubt'; reason: string } | { type: 'halted'; id: number } | { type: 'stopped' };

const WORKER_SCRIPT = new URL('./leader-worker.js', import.meta.url);

/** The Lease an elector campaigns for, and who it is. */
export interface LeaderLease {
  kubeConfig: KubeConfig;
  /** What leading means, for the log: `provider`, `scheduler`. */
  role: string;
  namespace: string;
  name: string;
  identity: string;
  /** Seconds; renew deadline and retry period follow client-go's proportions (15 / 10 / 2). */
  leaseSeconds: number;
  logger: Logger;
}

export interface LeaderThreadOptions extends LeaderLease {
  retryMs: number;
  deadlineMs: number;
  /** The worker's script; where it is not there (the sources run by vitest or tsx) the elector renews itself. */
  script?: URL;
  /** STALL_MS but in tests. */
  stallMs?: number;
}

export class LeaderThread {
  readonly #worker: Worker;
  readonly #renewedAt: BigInt64Array;
  #renewing = false;
  #exited = false;
  #stopping = false;
  #halts = 0;
  readonly #waiting = new Map<number, () => void>();
  #feed: ThreadFeed | undefined;

  /** The thread, or undefined where the elector renews on the main thread (no built script, a proxy, no cluster). */
  static async start(opts: LeaderThreadOptions): Promise<LeaderThread | undefined> {
    const script = opts.script ?? WORKER_SCRIPT;
    if (!existsSync(fileURLToPath(script))) return undefined;
    if (namesProxy(opts.kubeConfig)) {
      opts.logger.info(`the kubeconfig names a proxy (proxy-url), which the ${opts.role} Lease thread does not use; renewing the Lease on the main thread`);
      return undefined;
    }
    try {
      const url = leaseUrl(opts.kubeConfig, opts.namespace, opts.name);
      return new LeaderThread(opts, script, url, await threadAuth(opts.kubeConfig));
    } catch (err) {
      opts.logger.error({ err }, `the ${opts.role} Lease thread cannot start; renewing the Lease on the main thread`);
      return undefined;
    }
  }

  private constructor(opts: LeaderThreadOptions, script: URL, url: string, auth: ThreadAuth) {
    const shared = new SharedArrayBuffer(8);
    this.#renewedAt = new BigInt64Array(shared);
    const init: LeaderWorkerInit = {
      url,
      role: opts.role,
      name: opts.name,
      identity: opts.identity,
      leaseSeconds: opts.leaseSeconds,
      retryMs: opts.retryMs,
      deadlineMs: opts.deadlineMs,
      stallMs: opts.stallMs ?? STALL_MS,
      auth,
      shared,
      levelValue: opts.logger.levelVal,
      bindings: threadBindings(opts.logger.bindings()),
    };
    const worker = new Worker(fileURLToPath(script), { workerData: init, execArgv: [] });
    this.#worker = worker;
    worker.on('message', (m: FromLeaderWorker) => {
      if (m.type === 'doubt') {
        this.#renewing = false;
        opts.logger.debug({ reason: m.reason, role: opts.role }, 'Lease: the thread could not renew it; the elector reads it again');
      } else if (m.type === 'halted') {
        this.#waiting.get(m.id)?.();
        this.#waiting.delete(m.id);
      }
    });
    worker.on('error', (err) => opts.logger.error({ err }, `the ${opts.role} Lease thread failed`));
    worker.on('exit', (code) => {
      this.#exited = true;
      this.#renewing = false;
      this.#quiet();
      for (const resolve of this.#waiting.values()) resolve();
      this.#waiting.clear();
      if (!this.#stopping) opts.logger.error({ code }, `the ${opts.role} Lease thread exited; renewing the Lease on the main thread`);
    });
    this.#feed = new ThreadFeed(
      (m) => this.#post(m),
      opts.kubeConfig,
      HEARTBEAT_MS,
      (err) => opts.logger.warn({ err }, `cannot read the kubeconfig credentials for the ${opts.role} Lease thread; it keeps the last ones`),
    );
    worker.unref();
  }

  #post(m: ToLeaderWorker): void {
    if (!this.#exited) this.#worker.postMessage(m);
  }

  #quiet(): void {
    this.#feed?.stop();
  }

  /** The thread runs (it may be handed the Lease). */
  get running(): boolean {
    return !this.#exited;
  }

  /** The thread renews (it was handed the Lease and has not handed it back). */
  get renewing(): boolean {
    return this.#renewing;
  }

  /** When the last renewal the thread made in time was asked for (epoch ms; 0: none). */
  get renewedAt(): number {
    return Number(Atomics.load(this.#renewedAt, 0));
  }

  /** From now on the thread renews `lease` (as the elector's write at `renewedAt` left it). */
  renewFrom(lease: object, renewedAt: number): void {
    if (this.#exited) return;
    this.#renewing = true;
    this.#post({ type: 'renew', lease: JSON.stringify(lease), renewedAt });
  }

  /** No renewal from the thread after this resolves (the one in flight has its answer). */
  halt(): Promise<void> {
    this.#renewing = false;
    if (this.#exited) return Promise.resolve();
    const id = ++this.#halts;
    // Held while the answer is awaited: at a clean stop the agent's other handles may be closed already, and an
    // unreferenced thread would let the process end before the Lease is released.
    this.#worker.ref();
    return new Promise<void>((resolve) => {
      this.#waiting.set(id, resolve);
      this.#post({ type: 'halt', id });
    }).finally(() => {
      if (this.#waiting.size === 0 && !this.#exited && !this.#stopping) this.#worker.unref();
    });
  }

  /** Halts the renewals and ends the thread. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#quiet();
    await this.halt();
    await this.#worker.terminate();
  }
}
