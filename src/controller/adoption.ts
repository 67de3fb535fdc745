// Which load balancers' HAProxy an agent found already running and kept, rather than started: after a
// restart or an upgrade of the agent (a new container), that is the proof nothing was dropped. The node driver
// is asked twice: before the initial sync (what was running) and after it (what still runs, with the same PID).
import type { RunningHaproxy } from '../plan/node-driver.js';

/** Those of `before` that still run with the same PID: adopted, not restarted. */
export function adopted(before: readonly RunningHaproxy[], after: readonly RunningHaproxy[]): RunningHaproxy[] {
  const now = new Map(after.map((h) => [h.netns, h.pid]));
  return before.filter((h) => now.get(h.netns) === h.pid);
}

export interface AdoptionEvent {
  key: string;
  type: 'Normal';
  reason: 'Adopted';
  message: string;
}

/**
 * After the initial sync: one log line and one Event per load balancer whose HAProxy this agent kept as it
 * found it (an agent restart or upgrade that dropped nothing), and a summary line.
 */
export function reportAdopted(
  before: readonly RunningHaproxy[],
  after: () => readonly RunningHaproxy[],
  logger: { info: (o: object, msg: string) => void },
  emit: (e: AdoptionEvent) => void,
): void {
  if (before.length === 0) return;
  const kept = adopted(before, after());
  for (const h of kept) {
    logger.info({ lb: h.key, pid: h.pid }, 'adopted the running HAProxy without a restart');
    emit({ key: h.key, type: 'Normal', reason: 'Adopted', message: `agent started and adopted the running HAProxy (pid ${h.pid}) without a restart` });
  }
  logger.info({ adopted: kept.length, restarted: before.length - kept.length }, 'adopted load balancers already serving');
}
