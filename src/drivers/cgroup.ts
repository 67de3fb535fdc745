// `--daemon-cgroup`, kept: the daemons the agent started in the host cgroup it names stay there. A daemon moved
// into a container's cgroup (by hand, or by a tool that sweeps a node's processes into a slice) would be killed
// with that container, so every resync looks in /proc for one out of place and puts it back through
// scripts/daemon-cgroup.sh --move. Reading costs no process; a process is spawned only to repair. `nslb cleanup
// --daemon-cgroup` removes the directories the script made, once empty.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DAEMON_CGROUP_SCRIPT } from '../exec/daemon-cgroup.js';
import type { Runner } from '../exec/run.js';
import { readSmall } from './proc.js';

export interface CgroupPaths {
  /** Where the host's cgroup tree is mounted (the chart and scripts/run-image.sh mount it here). */
  root: string;
  proc: string;
}

export const HOST_CGROUP_PATHS: CgroupPaths = { root: '/sys/fs/cgroup', proc: '/proc' };

/**
 * The directory of the hierarchy a /proc/PID/cgroup line names: `0::` is the unified one (the root itself on a
 * cgroup v2 host, `unified/` on a hybrid one), `N:name=systemd:` is `systemd/`, `N:cpu,cpuacct:` its own name.
 */
export function hierarchyDir(paths: CgroupPaths, controllers: string): string {
  if (controllers === '') return existsSync(join(paths.root, 'cgroup.controllers')) ? paths.root : join(paths.root, 'unified');
  return join(paths.root, controllers.replace(/^name=/, ''));
}

/**
 * Whether `shown` (a path from /proc/PID/cgroup) is `cgroup`. Read from inside a cgroup namespace of its own
 * (the agent's container), a path outside it shows as `/../../nslb`: only `..` steps before the path count.
 */
export function isCgroup(shown: string, cgroup: string): boolean {
  return shown === cgroup || (shown.endsWith(cgroup) && /^(\/\.\.)+$/.test(shown.slice(0, -cgroup.length)));
}

export class DaemonCgroup {
  readonly #run: Runner;
  readonly #paths: CgroupPaths;
  readonly cgroup: string;

  constructor(run: Runner, cgroup: string, paths: CgroupPaths = HOST_CGROUP_PATHS) {
    this.#run = run;
    this.cgroup = cgroup;
    this.#paths = paths;
  }

  /**
   * Of these daemons and their children (HAProxy's workers), the PIDs not in the cgroup in some hierarchy where
   * it exists (hierarchies the start script skipped have no directory and are not looked at). /proc reads only.
   */
  misplaced(pids: readonly number[]): number[] {
    const all = new Set<number>();
    for (const pid of pids) {
      all.add(pid);
      for (const child of (readSmall(join(this.#paths.proc, String(pid), 'task', String(pid), 'children')) ?? '').split(' ')) {
        const c = Number.parseInt(child, 10);
        if (Number.isInteger(c) && c > 0) all.add(c);
      }
    }
    const out: number[] = [];
    for (const pid of all) {
      const lines = readSmall(join(this.#paths.proc, String(pid), 'cgroup'));
      if (lines === undefined) continue; // gone meanwhile
      for (const line of lines.split('\n')) {
        const m = /^\d+:([^:]*):(.*)$/.exec(line);
        if (m === null) continue;
        const [, controllers = '', shown = ''] = m;
        if (!existsSync(hierarchyDir(this.#paths, controllers) + this.cgroup)) continue;
        if (!isCgroup(shown, this.cgroup)) {
          out.push(pid);
          break;
        }
      }
    }
    return out.sort((a, b) => a - b);
  }

  /** Puts these processes back into the cgroup, in every hierarchy where it exists. One process. */
  async move(pids: readonly number[]): Promise<void> {
    if (pids.length === 0) return;
    await this.#run([DAEMON_CGROUP_SCRIPT, '--move', this.cgroup, ...pids.map(String)]);
  }

  /** Removes the cgroup's directories that hold no process any more (cleanup). One process. */
  async remove(): Promise<void> {
    await this.#run([DAEMON_CGROUP_SCRIPT, '--remove', this.cgroup]);
  }
}
