// The node Lease renewed from a worker thread of its own (issue 17). On the main thread, behind a hundred reconciles
// on a loaded machine, the renewal's timer fired up to 8 s late and its answer was read seconds later again: live
// nodes were dead to the scheduler again and again, and each false death moved the node's load balancers away, which
// loaded the machine further (bench (w), 2026-12-07: 3 nodes, 100 pairs being made, a 6 s Lease renewed 2-25 s
// apart, 8 false deaths in 5 minutes, the circuit breaker open once). A renewal costs a thread a few milliseconds of
// CPU, and a thread gets them while the main thread's queue is long.
//
// The thread renews only while the main thread answers: its heartbeat every second. A main thread silent for
// STALL_MS (a wedged agent, not a busy one) lets the Lease run out as a dead agent's does. A thread that dies is
// replaced by renewals on the main thread, with an error in the log. Where the worker's script is not there (the
// sources run by vitest or tsx), the renewals run on the main thread (node-lease.ts), as before.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { NodeLease, type NodeLeaseOptions } from './node-lease.js';

export interface NodeLeaseRenewer {
  /** Renews once (the node is a member before the agent serves anything), then keeps renewing. */
  start(): Promise<void>;
  /** Stops renewing; the last renewal asks for the restart grace. */
  stop(): Promise<void>;
  /** Renewals that landed. */
  readonly renewals: number;
}

/** A main thread silent this long (no heartbeat) is wedged: the thread stops renewing. */
export const STALL_MS = 30_000;
const HEARTBEAT_MS = 1_000;

/** What the worker is started with (structured-cloned: no KubeConfig object, its YAML). */
export interface NodeLeaseWorkerInit {
  kubeConfig: string;
  namespace: string;
  node: string;
  leaseSeconds: number;
  renewSeconds?: number;
  restartGraceSeconds: number;
  /** The agent's log level and its logger's bindings, so that the thread's lines read as the agent's. */
  level: string;
  bindings: Record<string, unknown>;
  stallMs: number;
}

export type ToNodeLeaseWorker = { type: 'alive' } | { type: 'stop' };
export type FromNodeLeaseWorker = { type: 'started'; error?: string } | { type: 'renewed' } | { type: 'stopped' };

const WORKER_SCRIPT = new URL('./node-lease-worker.js', import.meta.url);

/** The renewer: a worker thread where its script is built (dist/), the main thread otherwise. */
export function nodeLeaseRenewer(opts: NodeLeaseOptions, script: URL = WORKER_SCRIPT): NodeLeaseRenewer {
  return existsSync(fileURLToPath(script)) ? new NodeLeaseThread(opts, script) : new NodeLease(opts);
}

export class NodeLeaseThread implements NodeLeaseRenewer {
  readonly #opts: NodeLeaseOptions;
  readonly #script: URL;
  #worker: Worker | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** Renewals on the main thread, once the thread died. */
  #fallback: NodeLease | undefined;
  #stopping = false;
  /** Started (its first renewal done), and gone. */
  #up = false;
  #exited = false;
  #renewals = 0;

  readonly #stallMs: number;

  /** `stallMs`: STALL_MS but in tests. */
  constructor(opts: NodeLeaseOptions, script: URL, stallMs = STALL_MS) {
    this.#opts = opts;
    this.#script = script;
    this.#stallMs = stallMs;
  }

  get renewals(): number {
    return this.#renewals + (this.#fallback?.renewals ?? 0);
  }

  async start(): Promise<void> {
    const { kubeConfig, logger, mayRenew: _m, onRenewed: _o, ...rest } = this.#opts;
    const init: NodeLeaseWorkerInit = {
      ...rest,
      kubeConfig: kubeConfig.exportConfig(),
      level: logger.level,
      // The thread's own logger has the process's pid and hostname already.
      bindings: Object.fromEntries(Object.entries(logger.bindings()).filter(([k]) => k !== 'pid' && k !== 'hostname')),
      stallMs: this.#stallMs,
    };
    // Not the agent's own Node flags (an --inspect port): a thread that only renews.
    const worker = new Worker(fileURLToPath(this.#script), { workerData: init, execArgv: [] });
    this.#worker = worker;
    let started: { resolve: () => void; reject: (err: Error) => void } | undefined;
    const first = new Promise<void>((resolve, reject) => {
      started = { resolve, reject };
    });
    worker.on('message', (m: FromNodeLeaseWorker) => {
      if (m.type === 'renewed') this.#renewals++;
      else if (m.type === 'started') {
        if (m.error === undefined) started?.resolve();
        else started?.reject(new Error(m.error));
      }
    });
    worker.on('error', (err) => {
      started?.reject(err);
      this.#opts.logger.error({ err }, 'the node Lease thread failed');
    });
    worker.on('exit', (code) => {
      this.#exited = true;
      clearInterval(this.#heartbeat);
      started?.reject(new Error(`the node Lease thread exited (${code}) before its first renewal`));
      if (this.#stopping || !this.#up) return;
      this.#opts.logger.error({ code }, 'the node Lease thread exited; renewing the node Lease on the main thread');
      this.#fallback = new NodeLease(this.#opts);
      void this.#fallback.start();
    });
    try {
      await first;
    } catch (err) {
      this.#opts.logger.error({ err }, 'the node Lease thread did not start; renewing the node Lease on the main thread');
      void worker.terminate();
      this.#fallback = new NodeLease(this.#opts);
      await this.#fallback.start();
      return;
    }
    this.#up = true;
    this.#beat();
    // As the main thread's timer was: the agent's life is its own, not this thread's.
    worker.unref();
  }

  #beat(): void {
    const worker = this.#worker!;
    this.#heartbeat = setInterval(() => worker.postMessage({ type: 'alive' } satisfies ToNodeLeaseWorker), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  /** Tests: no heartbeat for `ms`, as from a wedged main thread, while this thread's event loop goes on. */
  silenceHeartbeat(ms: number): void {
    clearInterval(this.#heartbeat);
    setTimeout(() => {
      if (!this.#stopping && !this.#exited) this.#beat();
    }, ms).unref();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#heartbeat);
    const worker = this.#worker;
    if (this.#fallback !== undefined) await this.#fallback.stop();
    if (worker === undefined || this.#exited) return;
    // The thread's last renewal asks for the restart grace; it answers when that is done (or gave up on it).
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, (this.#opts.leaseSeconds + 5) * 1000);
      worker.ref();
      worker.on('message', (m: FromNodeLeaseWorker) => {
        if (m.type !== 'stopped') return;
        clearTimeout(timer);
        resolve();
      });
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      worker.postMessage({ type: 'stop' } satisfies ToNodeLeaseWorker);
    });
    await worker.terminate();
  }
}
