// A development aid, never a figure in a test: NSLB_TRACE_ACTIONS=FILE makes the agent append a line when a
// reconcile starts and has planned, one per action it applies (`act KIND NETNS START END`), and one per step of a
// planned VIP handover (`step handover.NAME NETNS START END`), in epoch milliseconds that compare with the
// bench's clock on the same machine. `node bench/trace-breakdown.mjs FILE` then says
// where a new load balancer's milliseconds go in phase (a) (bench/README.md). Unset, it costs one comparison.
import { appendFileSync } from 'node:fs';

const file = process.env.NSLB_TRACE_ACTIONS;

/** Epoch milliseconds with a fraction, as the bench's probe prints them. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export const tracing = file !== undefined && file !== '';

/** Appends one line (words separated by blanks) to the trace file, when tracing. */
export function trace(...words: readonly (string | number)[]): void {
  if (!tracing) return;
  appendFileSync(file!, `${words.map((w) => (typeof w === 'number' ? w.toFixed(1) : w)).join(' ')}\n`);
}
