// `--daemon-cgroup PATH`: the daemons the agent starts (HAProxy, and whatever else is started `detached`)
// begin life in a cgroup of the host's instead of the agent's. In a container that is what lets them
// outlive it: removing a container (a DaemonSet upgrade, `podman rm`) kills every process still in its
// cgroup, hostPID or not. Under systemd (file mode) KillMode=process does the same job and this stays off.
//
// The move happens in scripts/daemon-cgroup.sh, which moves itself and then execs the start command: the
// daemon forks from a process that is already in the right place, so no child is ever left behind.
import { fileURLToPath } from 'node:url';
import type { Runner } from './run.js';

// dist/exec/ and src/exec/ are both two levels below the package root.
export const DAEMON_CGROUP_SCRIPT = fileURLToPath(new URL('../../scripts/daemon-cgroup.sh', import.meta.url));

const CGROUP_PATH = /^(\/[A-Za-z0-9_.-]+)+$/;

/** Throws unless PATH is an absolute cgroup path of plain names (`/nslb`, `/system.slice/nslb`). */
export function checkDaemonCgroup(path: string): string {
  if (!CGROUP_PATH.test(path) || path.split('/').some((p) => p === '.' || p === '..')) {
    throw new Error(`--daemon-cgroup must be an absolute cgroup path of names made of A-Z a-z 0-9 _ . - (got ${JSON.stringify(path)})`);
  }
  return path;
}

/** A runner that starts detached commands (daemons) from `cgroup`; every other command runs as before. */
export function daemonsInCgroup(run: Runner, cgroup: string | undefined): Runner {
  if (cgroup === undefined) return run;
  checkDaemonCgroup(cgroup);
  return (argv, options) => (options?.detached === true ? run([DAEMON_CGROUP_SCRIPT, cgroup, ...argv], options) : run(argv, options));
}
