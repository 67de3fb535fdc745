// Which load balancers' HAProxy an agent found already running and kept, rather than started: after a
// restart or an upgrade of the agent (a new container), that is the proof nothing was dropped. Read twice:
// before the initial sync (what was running) and after it (what still runs, with the same PID).
// Reads the state dir and /proc only.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { haproxyPid } from '../drivers/haproxy/haproxy.js';

export interface RunningHaproxy {
  /** `namespace/name` of the LoadBalancer, from the state dir's owner file. */
  key: string;
  netns: string;
  pid: number;
}

/** Every HAProxy of this state dir that runs now, with the load balancer it belongs to. */
export async function observeRunningHaproxies(stateDir: string): Promise<RunningHaproxy[]> {
  let dirs: string[];
  try {
    dirs = readdirSync(join(stateDir, 'lb'));
  } catch {
    return [];
  }
  const found: RunningHaproxy[] = [];
  for (const netns of dirs) {
    let key: string;
    try {
      key = readFileSync(join(stateDir, 'lb', netns, 'owner'), 'utf8').trim();
    } catch {
      continue;
    }
    const pid = await haproxyPid(stateDir, netns);
    if (pid !== undefined && key !== '') found.push({ key, netns, pid });
  }
  return found;
}

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
export async function reportAdopted(
  before: readonly RunningHaproxy[],
  stateDir: string,
  logger: { info: (o: object, msg: string) => void },
  emit: (e: AdoptionEvent) => void,
): Promise<void> {
  if (before.length === 0) return;
  const kept = adopted(before, await observeRunningHaproxies(stateDir));
  for (const h of kept) {
    logger.info({ lb: h.key, pid: h.pid }, 'adopted the running HAProxy without a restart');
    emit({ key: h.key, type: 'Normal', reason: 'Adopted', message: `agent started and adopted the running HAProxy (pid ${h.pid}) without a restart` });
  }
  logger.info({ adopted: kept.length, restarted: before.length - kept.length }, 'adopted load balancers already serving');
}
