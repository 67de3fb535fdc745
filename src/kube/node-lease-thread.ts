// The node Lease renewed from a worker thread of its own (issue 17). On the main thread, behind a hundred reconciles
// on a loaded machine, the renewal's timer fired up to 8 s late and its answer was read seconds later again: live
// nodes were dead to the scheduler again and again, and each false death moved the node's load balancers away, which
// loaded the machine further (bench (w), 2026-12-07: 3 nodes, 100 pairs being made, a 6 s Lease renewed 2-25 s
// apart, 8 false deaths in 5 minutes, the circuit breaker open once). A renewal costs a thread a few milliseconds of
// CPU, and a thread gets them while the main thread's queue is long.
//
// The main thread takes (or makes) the Lease, as node-lease.ts does, and the thread renews it with merge patches
// (node-lease-worker.ts: Node's HTTP client and the kubeconfig's credentials, not client-node; the clock, the late
// renewals and the outages are renewal-clock.ts's, as on the main thread). The thread renews
// only while the main thread answers: its heartbeat every second. A main thread silent for STALL_MS (a wedged
// agent, not a busy one) lets the Lease run out as a dead agent's does. A Lease deleted meanwhile is made again from
// the main thread; the clean stop's restart grace is asked from there too. A thread that dies is replaced by
// renewals on the main thread, with an error in the log. Where the worker's script is not there (the sources run by
// vitest or tsx), or the kubeconfig names a proxy, the renewals run on the main thread (node-lease.ts), as before.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { NodeLease, type NodeLeaseOptions } from './node-lease.js';
import { leaseUrl, namesProxy, type ThreadAuth, ThreadFeed, type ThreadFeedMessage, threadAuth, threadBindings } from './thread-http.js';

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
export const HEARTBEAT_MS = 1_000;

/** What the worker is started with (structured-cloned). */
export interface NodeLeaseWorkerInit {
  /** The Lease's URL on the API server. */
  url: string;
  name: string;
  node: string;
  leaseSeconds: number;
  renewMs: number;
  stallMs: number;
  auth: ThreadAuth;
  /** The agent's log level (pino's number) and its logger's bindings, so that the thread's lines read as the agent's. */
  levelValue: number;
  bindings: Record<string, unknown>;
}

export type ToNodeLeaseWorker = ThreadFeedMessage | { type: 'stop' };
export type FromNodeLeaseWorker = { type: 'renewed' } | { type: 'lost' } | { type: 'stopped' };

const WORKER_SCRIPT = new URL('./node-lease-worker.js', import.meta.url);

/** The renewer: a worker thread where its script is built (dist/), the main thread otherwise. */
export function nodeLeaseRenewer(opts: NodeLeaseOptions, script: URL = WORKER_SCRIPT): NodeLeaseRenewer {
  return existsSync(fileURLToPath(script)) ? new NodeLeaseThread(opts, script) : new NodeLease(opts);
}

export class NodeLeaseThread implements NodeLeaseRenewer {
  readonly #opts: NodeLeaseOptions;
  readonly #script: URL;
  readonly #stallMs: number;
  /** Takes (or makes) the Lease, makes it again when it is gone, asks for the grace on stop. */
  readonly #main: NodeLease;
  #worker: Worker | undefined;
  #feed: ThreadFeed | undefined;
  /** Renewals on the main thread, once the thread died. */
  #fallback: NodeLease | undefined;
  #stopping = false;
  #exited = false;
  #renewals = 0;

  /** `stallMs`: STALL_MS but in tests. */
  constructor(opts: NodeLeaseOptions, script: URL, stallMs = STALL_MS) {
    this.#opts = opts;
    this.#script = script;
    this.#stallMs = stallMs;
    this.#main = new NodeLease({ ...opts, periodic: false });
  }

  get renewals(): number {
    return this.#main.renewals + this.#renewals + (this.#fallback?.renewals ?? 0);
  }

  async start(): Promise<void> {
    // The first renewal from here: the node is a member before the agent serves anything.
    await this.#main.start();
    const { kubeConfig, logger, namespace } = this.#opts;
    if (namesProxy(kubeConfig)) {
      logger.info('the kubeconfig names a proxy (proxy-url), which the node Lease thread does not use; renewing the node Lease on the main thread');
      this.#fallback = new NodeLease(this.#opts);
      void this.#fallback.start();
      return;
    }
    let auth: ThreadAuth;
    let url: string;
    try {
      url = leaseUrl(kubeConfig, namespace, this.#main.name);
      auth = await threadAuth(kubeConfig);
    } catch (err) {
      this.#runOnMain(err, 'the node Lease thread cannot start');
      return;
    }
    const init: NodeLeaseWorkerInit = {
      url,
      name: this.#main.name,
      node: this.#opts.node,
      leaseSeconds: this.#opts.leaseSeconds,
      renewMs: this.#main.renewMs,
      stallMs: this.#stallMs,
      auth,
      levelValue: logger.levelVal,
      bindings: threadBindings(logger.bindings()),
    };
    // Not the agent's own Node flags (an --inspect port): a thread that only renews.
    const worker = new Worker(fileURLToPath(this.#script), { workerData: init, execArgv: [] });
    this.#worker = worker;
    worker.on('message', (m: FromNodeLeaseWorker) => {
      if (m.type === 'renewed') this.#renewals++;
      else if (m.type === 'lost' && !this.#stopping) void this.#main.renewOnce();
    });
    worker.on('error', (err) => logger.error({ err }, 'the node Lease thread failed'));
    worker.on('exit', (code) => {
      this.#exited = true;
      this.#quiet();
      if (!this.#stopping) this.#runOnMain(new Error(`exit code ${code}`), 'the node Lease thread exited');
    });
    this.#feed = new ThreadFeed(
      (m) => worker.postMessage(m satisfies ToNodeLeaseWorker),
      kubeConfig,
      HEARTBEAT_MS,
      (err) => logger.warn({ err }, 'cannot read the kubeconfig credentials for the node Lease thread; it keeps the last ones'),
    );
    // As the main thread's timer was: the agent's life is its own, not this thread's.
    worker.unref();
  }

  #runOnMain(err: unknown, what: string): void {
    this.#opts.logger.error({ err }, `${what}; renewing the node Lease on the main thread`);
    this.#fallback = new NodeLease(this.#opts);
    void this.#fallback.start();
  }

  #quiet(): void {
    this.#feed?.stop();
  }

  /** Tests: no heartbeat for `ms`, as from a wedged main thread, while this thread's event loop goes on. */
  silenceHeartbeat(ms: number): void {
    this.#feed?.silence(ms);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#quiet();
    const worker = this.#worker;
    if (this.#fallback !== undefined) await this.#fallback.stop();
    if (worker !== undefined && !this.#exited) {
      // The thread sends nothing new and waits for the renewals it has in flight, so that none lands after the grace.
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
    // The last renewal asks for the restart grace (from here, where the Lease was taken).
    if (this.#fallback === undefined) await this.#main.stop();
  }
}
