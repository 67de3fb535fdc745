// CPU time of processes from /proc (development scripts): utime + stime in clock ticks (USER_HZ, 1/100 s).
import { readdir, readFile } from 'node:fs/promises';
import { statFields } from '../../src/drivers/proc.js';

/** utime + stime of a /proc/PID/stat (or /proc/PID/task/TID/stat) text. */
export function statTicks(stat: string): number {
  const f = statFields(stat);
  return Number(f[11]) + Number(f[12]);
}

/** CPU ticks of every process now, by PID, with its command name and its reaped children's ticks. */
export async function processTicks(): Promise<Map<number, { comm: string; ticks: number; children: number }>> {
  const out = new Map<number, { comm: string; ticks: number; children: number }>();
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    if (stat === '') continue;
    // One split per process: utime + stime, and cutime + cstime (the CPU of the children it has reaped: a daemon's
    // forked checks, for one).
    const f = statFields(stat);
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    out.set(Number(e), { comm, ticks: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) });
  }
  return out;
}
