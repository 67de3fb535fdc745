// What /proc says about the daemons the drivers start (HAProxy, keepalived): pidfiles, liveness, the netns a
// process lives in, and the parents found by their config file when a pidfile is gone. Small files read
// synchronously: a resync reads a dozen per load balancer, and the thread-pool round trips of fs/promises cost far
// more than the reads themselves. No process is spawned here.
import { readFileSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

/** A small file's text, or undefined when it cannot be read (gone, or not there yet). */
export function readSmall(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The PID a pidfile holds (its first line), if it is one. */
export function readPid(pidfile: string): number | undefined {
  const pid = Number.parseInt(readSmall(pidfile)?.trim().split('\n')[0] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): state, ppid, … */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** Alive and not a zombie (a daemon's parent here may never reap it). One /proc read. */
export function processAlive(pid: number): boolean {
  const state = statFields(readSmall(`/proc/${pid}/stat`) ?? '')[0];
  return state !== undefined && state !== '' && state !== 'Z';
}

/** The process's argv, as /proc has it (empty when it is gone). */
export function cmdline(pid: number): string[] {
  return (readSmall(`/proc/${pid}/cmdline`) ?? '').split('\0');
}

/** The inode of the network namespace the process lives in. */
export function processNetnsInode(pid: number): number | undefined {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return undefined;
  }
}

/**
 * The parent of the processes whose argv `matches` and whose `-f` names one of these config files, by config
 * (the master of HAProxy's workers, keepalived's parent): found by scanning /proc, the fallback when a pidfile
 * is gone (the state dir deleted by hand), so that a driver adopts or stops the process instead of starting a
 * second one.
 */
export async function findParentsByConfig(configs: ReadonlySet<string>, matches: (argv: readonly string[]) => boolean): Promise<Map<string, number>> {
  const found = new Map<string, { pid: number; ppid: number }[]>();
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!matches(argv)) continue;
    const config = argv[argv.indexOf('-f') + 1];
    if (config === undefined || !configs.has(config)) continue;
    const fields = statFields(await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''));
    if (fields[0] === 'Z' || fields[0] === '') continue;
    found.set(config, [...(found.get(config) ?? []), { pid: Number(entry), ppid: Number(fields[1]) }]);
  }
  const parents = new Map<string, number>();
  for (const [config, procs] of found) {
    // The parent is the one whose parent is not one of them (workers are its children).
    const parent = procs.find((p) => !procs.some((q) => q.pid === p.ppid));
    if (parent !== undefined) parents.set(config, parent.pid);
  }
  return parents;
}
