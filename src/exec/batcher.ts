// Merges the same kind of work from load balancers reconciled at once into one process: their `ovs-vsctl`
// transactions into one transaction, their `ip` commands into one `ip -batch`. What arrives while a batch
// is being gathered (one turn of the event loop) goes together; if the batch fails, each item is run on its
// own so that the error lands on the load balancer it belongs to.

/** A batch that stopped at an item: the `done` items before it went through, the rest did not run. */
export class PartialBatchError extends Error {
  readonly done: number;

  constructor(done: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.done = done;
  }
}

export interface BatcherOptions {
  /**
   * At most this many items per batch; more go in further batches at once. For work a batch does one item
   * after the other (an `ip -batch` of `netns exec` lines): one big batch would leave the other cores idle.
   */
  maxBatch?: number;
  /**
   * One batch at a time: what arrives while a batch runs waits for it and goes in the next one. For work that
   * the kernel or OVSDB does one transaction at a time anyway (netns, link moves, OVS ports): load balancers
   * that reach the same step a few milliseconds apart share a process instead of each starting its own, and
   * the first one waits for nothing.
   */
  serial?: boolean;
}

export class Batcher<T> {
  readonly #runBatch: (items: T[]) => Promise<void>;
  readonly #runOne: (item: T) => Promise<void>;
  readonly #maxBatch: number;
  readonly #serial: boolean;
  #running = false;
  #pending: { item: T; resolve: () => void; reject: (err: unknown) => void }[] = [];
  #scheduled = false;

  constructor(runBatch: (items: T[]) => Promise<void>, runOne: (item: T) => Promise<void>, options: BatcherOptions = {}) {
    this.#runBatch = runBatch;
    this.#runOne = runOne;
    this.#maxBatch = options.maxBatch ?? Number.POSITIVE_INFINITY;
    this.#serial = options.serial === true;
  }

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#pending.length === 0 || (this.#serial && this.#running)) return;
    this.#scheduled = true;
    setImmediate(() => void this.#flush());
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const batch = this.#pending.splice(0, this.#maxBatch);
    if (this.#serial) {
      this.#running = true;
      try {
        await this.#run(batch);
      } finally {
        this.#running = false;
        this.#schedule();
      }
      return;
    }
    // The rest (beyond maxBatch) goes in its own batch now, alongside this one.
    this.#schedule();
    await this.#run(batch);
  }

  async #run(batch: { item: T; resolve: () => void; reject: (err: unknown) => void }[]): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch;
      await this.#runOne(only!.item).then(only!.resolve, only!.reject);
      return;
    }
    let done = 0;
    try {
      await this.#runBatch(batch.map((b) => b.item));
      done = batch.length;
    } catch (err) {
      // Each item not known to have gone through runs on its own, so that its error lands on its owner.
      if (err instanceof PartialBatchError) done = Math.max(0, Math.min(err.done, batch.length));
    }
    for (const b of batch.slice(0, done)) b.resolve();
    await Promise.all(batch.slice(done).map((b) => this.#runOne(b.item).then(b.resolve, b.reject)));
  }
}
