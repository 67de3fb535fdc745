// HAProxy's processes as /proc shows them (drivers/proc.ts), and the signals that stop them.
import type { LbPaths } from '../../desired/state-dir.js';
import { waitUntil } from '../../loop/wait.js';
import type { ObservedHaproxy } from '../../plan/observed.js';
import { netnsInode } from '../netns/netns.js';
import { cmdline, findParentsByConfig, processAlive, processNetnsInode, readPid } from '../proc.js';

/** The PID is a live haproxy running this config file (not a recycled PID or someone else's HAProxy). */
export function isOurHaproxy(pid: number, configPath: string): boolean {
  const argv = cmdline(pid);
  return processAlive(pid) && argv.some((a) => a.endsWith('haproxy')) && argv.includes(configPath);
}

/** The master's PID if the pidfile names a live HAProxy running this load balancer's config. */
export function haproxyPid(paths: LbPaths): number | undefined {
  const pid = readPid(paths.pidfile);
  return pid !== undefined && isOurHaproxy(pid, paths.config) ? pid : undefined;
}

export function observeHaproxy(paths: LbPaths, netns: string): ObservedHaproxy | undefined {
  const pid = haproxyPid(paths);
  if (pid === undefined) return undefined;
  return { pid, inNetns: haproxyInNetns(pid, netns) };
}

/** Whether the process lives in the netns of that name (not in a deleted one that had the same name). */
export function haproxyInNetns(pid: number, netns: string): boolean {
  const mine = processNetnsInode(pid);
  return mine !== undefined && mine === netnsInode(netns);
}

/** HAProxy masters running any of these config files (see findParentsByConfig). */
export function findHaproxyByConfig(configs: ReadonlySet<string>): Promise<Map<string, number>> {
  return findParentsByConfig(configs, (argv) => argv.some((a) => a.endsWith('haproxy')));
}

function exited(pid: number, timeoutMs: number): Promise<boolean> {
  return waitUntil(() => !processAlive(pid), { intervalMs: 20, timeoutMs });
}

/**
 * Hard stop (SIGTERM to the master stops its workers); SIGKILL if it does not go. With `graceMs`, a soft stop
 * first (SIGUSR1: the listeners close and the sessions in progress finish), for up to that long.
 */
export async function stopHaproxy(pid: number, configPath: string, graceMs = 0): Promise<void> {
  if (!isOurHaproxy(pid, configPath)) return;
  if (graceMs > 0) {
    try {
      process.kill(pid, 'SIGUSR1');
    } catch {
      return;
    }
    if (await exited(pid, graceMs)) return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await exited(pid, 5_000)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await exited(pid, 2_000);
}
