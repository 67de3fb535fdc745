// Waiting for something to become true, the one way: every poll loop of the agent (a device to appear, a pidfile
// to be written, a process to exit, a new HAProxy worker to answer, an informer to list) goes through here.

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface WaitOptions {
  /** Between two questions. */
  intervalMs: number;
  /** Give up after this long (default: never). */
  timeoutMs?: number;
  /**
   * Ask at once (the default), or only after the first interval: for a condition that cannot hold yet, such as
   * a new HAProxy worker right after the signal that starts it.
   */
  askAtOnce?: boolean;
}

/** Asks `done` until it says true (resolves true) or the time is up (resolves false). */
export async function waitUntil(done: () => boolean | Promise<boolean>, options: WaitOptions): Promise<boolean> {
  const until = Date.now() + (options.timeoutMs ?? Number.POSITIVE_INFINITY);
  if (options.askAtOnce === false) {
    if (Date.now() >= until) return false;
    await sleep(options.intervalMs);
  }
  for (;;) {
    if (await done()) return true;
    if (Date.now() >= until) return false;
    await sleep(options.intervalMs);
  }
}
