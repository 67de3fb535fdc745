// The kernel limits of src/plan/kernel-limits.ts: read from /proc and /sys, and raised by writing /proc/sys.
// Small files read and written synchronously: no process is started, and a check costs well under a millisecond.
//
// The neighbour-table sysctls and /proc/net/stat exist only in the host's network namespace (the kernel keeps
// one table for every namespace and shows its limits in init_net only): an agent running elsewhere reads them
// as absent and leaves them alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Family, KernelAccess, KernelReadings, NeighbourTableStats, RaiseResult, Sysctl } from '../../plan/kernel-limits.js';
import { SYSCTLS } from '../../plan/kernel-limits.js';

export interface KernelPaths {
  /** /proc, or a fake tree in tests. */
  proc: string;
  /** /sys/fs/cgroup, or a fake tree in tests. */
  cgroup: string;
}

export const HOST_PATHS: KernelPaths = { proc: '/proc', cgroup: '/sys/fs/cgroup' };

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function sysctlPath(paths: KernelPaths, name: string): string {
  return join(paths.proc, 'sys', ...name.split('.'));
}

export function readSysctl(paths: KernelPaths, name: string): number | undefined {
  const text = readText(sysctlPath(paths, name))?.trim();
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  return Number(text);
}

/** `/proc/net/stat/arp_cache` (ndisc_cache for IPv6): a header, then one line of hex counters per CPU. */
export function parseNeighbourStats(text: string): NeighbourTableStats | undefined {
  const lines = text.trim().split('\n');
  const header = lines[0]?.trim().split(/\s+/) ?? [];
  const entriesAt = header.indexOf('entries');
  const fullsAt = header.indexOf('table_fulls');
  if (entriesAt < 0 || fullsAt < 0 || lines.length < 2) return undefined;
  let tableFulls = 0;
  let entries = 0;
  for (const line of lines.slice(1)) {
    const fields = line.trim().split(/\s+/);
    // `entries` is the table's (the same on every line); the other counters are per CPU.
    entries = Number.parseInt(fields[entriesAt] ?? '0', 16);
    tableFulls += Number.parseInt(fields[fullsAt] ?? '0', 16);
  }
  return Number.isFinite(entries) && Number.isFinite(tableFulls) ? { entries, tableFulls } : undefined;
}

export function readNeighbourStats(paths: KernelPaths): Partial<Record<Family, NeighbourTableStats>> {
  const result: Partial<Record<Family, NeighbourTableStats>> = {};
  for (const [family, file] of [
    ['ipv4', 'arp_cache'],
    ['ipv6', 'ndisc_cache'],
  ] as const) {
    const text = readText(join(paths.proc, 'net', 'stat', file));
    const stats = text === undefined ? undefined : parseNeighbourStats(text);
    if (stats !== undefined) result[family] = stats;
  }
  return result;
}

/** The tasks (threads) on the machine: the total of /proc/loadavg's fourth field (`running/total`). */
export function parseLoadavgTasks(text: string): number | undefined {
  const m = /^\S+\s+\S+\s+\S+\s+\d+\/(\d+)/.exec(text);
  return m === null ? undefined : Number(m[1]);
}

/**
 * The tightest pids limit over the agent's cgroup and its ancestors (systemd's TasksMax= sits on the unit, a
 * pod's limit on the pod), with the tasks counted at that level. cgroup v2 (`0::/path`) and v1 (`N:pids:/path`).
 */
export function readCgroupPids(paths: KernelPaths): { current: number; max: number | undefined } | undefined {
  const self = readText(join(paths.proc, 'self', 'cgroup'));
  if (self === undefined) return undefined;
  let base: string | undefined;
  let rel: string | undefined;
  for (const line of self.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers!.split(',').includes('pids')) {
      base = join(paths.cgroup, 'pids');
      rel = path;
      break;
    }
    if (controllers === '') {
      base = paths.cgroup;
      rel = path;
    }
  }
  if (base === undefined || rel === undefined) return undefined;
  let best: { current: number; max: number | undefined } | undefined;
  const parts = rel.split('/').filter((p) => p !== '');
  for (let depth = parts.length; depth >= 0; depth--) {
    const dir = join(base, ...parts.slice(0, depth));
    const current = Number(readText(join(dir, 'pids.current'))?.trim());
    const maxText = readText(join(dir, 'pids.max'))?.trim();
    if (!Number.isFinite(current) || maxText === undefined) continue;
    const max = maxText === 'max' ? undefined : Number(maxText);
    if (max === undefined || !Number.isFinite(max)) {
      best ??= { current, max: undefined };
      continue;
    }
    if (best?.max === undefined || max - current < best.max - best.current) best = { current, max };
  }
  return best;
}

/** Everything src/plan/kernel-limits.ts needs to know, except overflows (see NeighbourWatch). */
export function readKernel(paths: KernelPaths): Omit<KernelReadings, 'overflowed'> {
  const sysctls: Partial<Record<Sysctl, number>> = {};
  for (const name of SYSCTLS) {
    const v = readSysctl(paths, name);
    if (v !== undefined) sysctls[name] = v;
  }
  const readings: Omit<KernelReadings, 'overflowed'> = { sysctls };
  const loadavg = readText(join(paths.proc, 'loadavg'));
  const tasks = loadavg === undefined ? undefined : parseLoadavgTasks(loadavg);
  if (tasks !== undefined) readings.tasks = tasks;
  const pids = readCgroupPids(paths);
  if (pids !== undefined) readings.cgroupPids = pids;
  const fileNr = Number(
    readText(join(paths.proc, 'sys', 'fs', 'file-nr'))
      ?.trim()
      .split(/\s+/)[0],
  );
  if (Number.isFinite(fileNr)) readings.files = fileNr;
  return readings;
}

/**
 * Writes a sysctl and reads it back. Only ever called with a value above the current one (callers check), so it
 * never lowers anything; the read-back catches a kernel that clamps the value silently.
 */
export function ensureSysctlAtLeast(paths: KernelPaths, name: string, value: number): RaiseResult {
  const before = readSysctl(paths, name);
  if (before !== undefined && before >= value) return { ok: true };
  try {
    writeFileSync(sysctlPath(paths, name), `${value}\n`);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why: Record<string, string> = {
      EACCES: 'permission denied (the agent needs root in the host, or a privileged container)',
      EPERM: 'operation not permitted (the agent needs root in the host, or a privileged container)',
      EROFS: '/proc/sys is read-only here (an unprivileged container, or ProtectKernelTunables=)',
      EINVAL: `the kernel refuses ${value} (above its maximum)`,
      ENOENT: 'not present on this kernel or in this network namespace',
    };
    return { ok: false, reason: why[e.code ?? ''] ?? e.message };
  }
  const after = readSysctl(paths, name);
  if (after === undefined || after < value) return { ok: false, reason: `the kernel kept ${after ?? 'no value'} after writing ${value}` };
  return { ok: true };
}

/**
 * Tells which neighbour tables refused entries since the last call: the kernel's `table_fulls` counter grew.
 * The first call only takes the baseline.
 */
export class NeighbourWatch {
  readonly #paths: KernelPaths;
  #last: Partial<Record<Family, NeighbourTableStats>> | undefined;

  constructor(paths: KernelPaths) {
    this.#paths = paths;
  }

  poll(): { overflowed: Record<Family, boolean>; stats: Partial<Record<Family, NeighbourTableStats>> } {
    const stats = readNeighbourStats(this.#paths);
    const before = this.#last;
    this.#last = stats;
    const grew = (f: Family): boolean => {
      const now = stats[f];
      const then = before?.[f];
      return now !== undefined && then !== undefined && now.tableFulls > then.tableFulls;
    };
    return { overflowed: { ipv4: grew('ipv4'), ipv6: grew('ipv6') }, stats };
  }
}

/** The kernel limits of the node the agent runs on (HOST_PATHS), or of a fake tree in tests. */
export class KernelDriver implements KernelAccess {
  readonly #paths: KernelPaths;
  readonly #neighbours: NeighbourWatch;

  constructor(paths: KernelPaths) {
    this.#paths = paths;
    this.#neighbours = new NeighbourWatch(paths);
  }

  read(): Omit<KernelReadings, 'overflowed'> {
    return readKernel(this.#paths);
  }

  raise(name: string, value: number): RaiseResult {
    return ensureSysctlAtLeast(this.#paths, name, value);
  }

  pollNeighbours(): { overflowed: Record<Family, boolean>; stats: Partial<Record<Family, NeighbourTableStats>> } {
    return this.#neighbours.poll();
  }
}
