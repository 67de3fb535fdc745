// HAProxy's processes as /proc shows them, and the signals that stop them. Small files read synchronously: a
// resync reads a dozen per load balancer, and the thread-pool round trips of fs/promises cost far more than the
// reads themselves. No process is spawned here.
import { readFileSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import type { LbPaths } from '../../desired/state-dir.js';
import { waitUntil } from '../../loop/wait.js';
import type { ObservedHaproxy } from '../../plan/observed.js';
import { netnsInode } from '../netns/netns.js';

export function readPid(pidfile: string): number | undefined {
  try {
    // In master-worker mode the pidfile holds the master's PID.
    const pid = Number.parseInt(readFileSync(pidfile, 'utf8').trim().split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The PID is a live haproxy running this config file (not a recycled PID or someone else's HAProxy). */
export function isOurHaproxy(pid: number, configPath: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return processAlive(pid) && argv.some((a) => a.endsWith('haproxy')) && argv.includes(configPath);
  } catch {
    return false;
  }
}

function processNetnsInode(pid: number): number | undefined {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return undefined;
  }
}

/** The master's PID if the pidfile names a live HAProxy running this load balancer's config. */
export function haproxyPid(paths: LbPaths): number | undefined {
  const pid = readPid(paths.pidfile);
  return pid !== undefined && isOurHaproxy(pid, paths.config) ? pid : undefined;
}

/** Alive and not a zombie (a daemon's parent here may never reap it). One /proc read. */
export function processAlive(pid: number): boolean {
  try {
    return statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): state, ppid, … */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
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

/**
 * HAProxy masters running any of these config files, found by scanning /proc: the fallback when a pidfile is
 * gone (the state dir deleted by hand) so that we adopt or stop the process instead of starting a second one.
 */
export async function findHaproxyByConfig(configs: ReadonlySet<string>): Promise<Map<string, number>> {
  const found = new Map<string, { pid: number; ppid: number }[]>();
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv.some((a) => a.endsWith('haproxy'))) continue;
    const config = argv[argv.indexOf('-f') + 1];
    if (config === undefined || !configs.has(config)) continue;
    const fields = statFields(await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''));
    if (fields[0] === 'Z') continue;
    found.set(config, [...(found.get(config) ?? []), { pid: Number(entry), ppid: Number(fields[1]) }]);
  }
  const masters = new Map<string, number>();
  for (const [config, procs] of found) {
    // The master is the one whose parent is not one of them (workers are its children).
    const master = procs.find((p) => !procs.some((q) => q.pid === p.ppid));
    if (master !== undefined) masters.set(config, master.pid);
  }
  return masters;
}

function exited(pid: number, timeoutMs: number): Promise<boolean> {
  return waitUntil(() => !processAlive(pid), { intervalMs: 20, timeoutMs });
}

/** Hard stop (SIGTERM to the master stops its workers); SIGKILL if it does not go. */
export async function stopHaproxy(pid: number, configPath: string): Promise<void> {
  if (!isOurHaproxy(pid, configPath)) return;
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
