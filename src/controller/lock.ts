// One agent per state dir. The lock is a file holding the agent's PID: a second agent refuses to start while
// that process is alive and is an nslb agent; a crashed agent's lock (its PID gone or reused by something
// else) is taken over, so a crash never leaves the node without an agent.
import { link, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { agentLockPath } from '../desired/state-dir.js';

export class StateDirLockedError extends Error {
  override readonly name = 'StateDirLockedError';
}

async function isAgent(pid: number): Promise<boolean> {
  try {
    // /proc/PID also answers for a thread ID, with its process's command line: after a reboot (or in a fresh
    // PID namespace) the old agent's PID may be a thread of this very agent. Only a process can hold the lock.
    const tgid = /^Tgid:\s*(\d+)$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (Number(tgid) !== pid) return false;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return argv.includes('run') && argv.some((a) => a.includes('nslb') || a.endsWith('main.js'));
  } catch {
    return false;
  }
}

/** Takes the lock or throws StateDirLockedError; returns the release function. */
export async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  const path = agentLockPath(stateDir);
  const mine = `${path}.${process.pid}`;
  await writeFile(mine, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(mine, path); // atomic: fails if the lock exists
        return async () => {
          await rm(path, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder !== process.pid && (await isAgent(holder))) {
        throw new StateDirLockedError(
          `another nslb agent (pid ${holder}) is running with --state-dir ${stateDir}; stop it first, or give this one another --state-dir`,
        );
      }
      await unlink(path).catch(() => undefined); // stale: its agent is gone
    }
    throw new StateDirLockedError(`cannot take ${path}: it keeps changing; is another agent starting?`);
  } finally {
    await unlink(mine).catch(() => undefined);
  }
}
