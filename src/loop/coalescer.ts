// One run of a piece of work for every caller that asks while it is running (a node-wide read, a scan of /proc):
// the callers who arrive meanwhile share the next run.

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
