// Informers (list + watch caches) that stop for good. client-node 1.x's ListWatch.stop() aborts the watch it
// holds, but a watch being opened at that moment (a re-watch after the 30 s request timeout, after a 410, or a
// list still in flight) is stored only once its response arrives: stop() misses it, the stream stays open,
// its events still reach the callbacks, and its socket keeps a stopped agent from exiting. Upstream fixed this
// after 1.x (kubernetes-client/javascript#3052). Here every watch is opened under a generation: stop() moves to
// the next one and aborts the open watches, and a watch that opens after stop(), or of an older generation, is
// aborted as soon as it opens. (A list still in flight at stop() may then report that abort as an error: the
// callers ignore errors once stopped.)
import { ListWatch, Watch, type Informer, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';

type ListFn<T extends KubernetesObject> = ConstructorParameters<typeof ListWatch<T>>[2];
type WatchArgs = Parameters<Watch['watch']>;

class FencedWatch extends Watch {
  #generation = 0;
  #closed = false;
  readonly #open = new Set<AbortController>();

  override async watch(path: WatchArgs[0], query: WatchArgs[1], callback: WatchArgs[2], done: WatchArgs[3]): Promise<AbortController> {
    const generation = this.#generation;
    let controller: AbortController | undefined;
    controller = await super.watch(path, query, callback, (err) => {
      if (controller !== undefined) this.#open.delete(controller);
      done(err);
    });
    if (this.#closed || generation !== this.#generation) {
      controller.abort();
    } else {
      this.#open.add(controller);
    }
    return controller;
  }

  /** Aborts every open watch, and every watch that opens until reopen(). */
  fence(): void {
    this.#closed = true;
    this.#generation++;
    for (const c of this.#open) c.abort();
    this.#open.clear();
  }

  /** Watches may open again; one asked for before the last fence() is still aborted when it opens. */
  reopen(): void {
    this.#closed = false;
    this.#generation++;
  }

  /** Watches open now (tests). */
  get open(): number {
    return this.#open.size;
  }
}

/** The cache as callers read it (client-node types list() as readonly; callers copy before they change it). */
export type StoppableInformer<T extends KubernetesObject> = Informer<T> & {
  list(namespace?: string): T[];
  get(name: string, namespace?: string): T | undefined;
  readonly openWatches: number;
};

/**
 * A ListWatch (not started) whose stop() leaves no watch open, even one being opened at that moment.
 * start() after stop() works as before.
 */
export function makeInformer<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  path: string,
  list: ListFn<T>,
  selectors: { labelSelector?: string; fieldSelector?: string } = {},
): StoppableInformer<T> {
  const watch = new FencedWatch(kubeConfig);
  const informer = new ListWatch<T>(path, watch, list, false, selectors.labelSelector, selectors.fieldSelector);
  const start = informer.start.bind(informer);
  const stop = informer.stop.bind(informer);
  informer.start = async (): Promise<void> => {
    watch.reopen();
    await start();
  };
  informer.stop = async (): Promise<void> => {
    watch.fence();
    await stop();
  };
  Object.defineProperty(informer, 'openWatches', { get: () => watch.open });
  return informer as unknown as StoppableInformer<T>;
}
