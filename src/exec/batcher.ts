// Merges the same kind of work from load balancers reconciled at once into one process: their `ovs-vsctl`
// transactions into one transaction, their `ip` commands into one `ip -batch`. What arrives while a batch
// is being gathered (one turn of the event loop) goes together; if the batch fails, each item is run on its
// own so that the error lands on the load balancer it belongs to.

export class Batcher<T> {
  readonly #runBatch: (items: T[]) => Promise<void>;
  readonly #runOne: (item: T) => Promise<void>;
  #pending: { item: T; resolve: () => void; reject: (err: unknown) => void }[] = [];
  #scheduled = false;

  constructor(runBatch: (items: T[]) => Promise<void>, runOne: (item: T) => Promise<void>) {
    this.#runBatch = runBatch;
    this.#runOne = runOne;
  }

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 1) {
      const [only] = batch;
      await this.#runOne(only!.item).then(only!.resolve, only!.reject);
      return;
    }
    try {
      await this.#runBatch(batch.map((b) => b.item));
      for (const b of batch) b.resolve();
    } catch {
      await Promise.all(batch.map((b) => this.#runOne(b.item).then(b.resolve, b.reject)));
    }
  }
}

/**
 * Runs `fn` for callers that arrive while it runs once more afterwards, together: each caller gets a result
 * that began after it asked (never an older one), and N callers at once cost two runs, not N.
 */
export class Coalescer<R> {
  readonly #fn: () => Promise<R>;
  #running: Promise<R> | undefined;
  #next: Promise<R> | undefined;

  constructor(fn: () => Promise<R>) {
    this.#fn = fn;
  }

  run(): Promise<R> {
    if (this.#running === undefined) return this.#start();
    if (this.#next === undefined) {
      this.#next = this.#running.then(
        () => this.#start(),
        () => this.#start(),
      );
    }
    return this.#next;
  }

  #start(): Promise<R> {
    this.#next = undefined;
    const p = this.#fn();
    this.#running = p;
    const clear = (): void => {
      if (this.#running === p) this.#running = undefined;
    };
    p.then(clear, clear);
    return p;
  }
}
