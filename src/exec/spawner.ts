// The agent's spawner: a small Node process of its own (this directory's spawn.js) that starts the agent's commands
// and sends back their outcome. Why a process and not the agent or a worker thread: fork() copies the page tables
// of the whole process it is called in, threads included. Measured on the 2-core machine (200 spawns of `true`,
// 8 at a time, from a 150 MB process): from the agent's main thread 1.25-1.30 s wall, event-loop lag max 80-86 ms
// (summed ~1 s), 430-450 ms CPU; from a worker thread 1.4-1.5 s, lag max 14-18 ms, 520 ms CPU; from a spawner
// process 0.54-0.57 s, lag max 7-12 ms, 15 ms CPU in the agent and 250-260 ms in the spawner (its start included).
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { errorFromReply, type Outcome, SPAWNER_FLAG, type SpawnReply, type SpawnRequest, spawnAndWait } from './spawn.js';

export interface Spawner {
  readonly process: ChildProcess;
  post(r: Omit<SpawnRequest, 'id'>): Promise<Outcome>;
}

/**
 * Starts the spawner. Its commands queued before it is up are run in this process if it fails to come up (nothing
 * of theirs ran); when it dies later, those in flight fail (they may have run: not started twice) and `onGone` is
 * called, after which the caller starts commands itself. Undefined when spawn.js is not there (sources run by tsx
 * or vitest); `script` is for the tests, which compile spawn.ts.
 */
export function startSpawner(onGone: () => void, script: URL = new URL('./spawn.js', import.meta.url)): Spawner | undefined {
  if (!existsSync(fileURLToPath(script))) return undefined;
  // Not the agent's own Node flags (an --inspect port, heap sizes): a small process.
  const child = fork(fileURLToPath(script), [SPAWNER_FLAG], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, { request: Omit<SpawnRequest, 'id'>; resolve: (o: Outcome) => void }>();
  let next = 0;
  let ready = false;
  let gone = false;
  // Referenced only while a command is in flight: an idle spawner does not keep the agent's process alive.
  const hold = (on: boolean): void => {
    if (on) {
      child.ref();
      child.channel?.ref();
    } else {
      child.unref();
      child.channel?.unref();
    }
  };
  const end = (why: string): void => {
    if (gone) return;
    gone = true;
    onGone();
    for (const { request: r, resolve } of pending.values()) {
      if (ready) resolve({ code: null, signal: null, stdout: '', stderr: '', timedOut: false, error: new Error(why) });
      else void spawnAndWait(r.file, r.args, r.options, r.timeoutMs).then(resolve);
    }
    pending.clear();
    child.kill('SIGKILL');
  };
  child.on('message', (m: SpawnReply | { ready: true }) => {
    if ('ready' in m) {
      ready = true;
      return;
    }
    const entry = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) hold(false);
    entry?.resolve({ ...m.outcome, ...(m.error === undefined ? {} : { error: errorFromReply(m.error) }) });
  });
  child.on('error', (e) => end(`spawner failed: ${e.message}`));
  child.on('exit', (code, signal) => end(`spawner exited (${signal ?? `code ${String(code)}`}) with the command in flight`));
  hold(false);
  return {
    process: child,
    post: (request) =>
      new Promise<Outcome>((resolve) => {
        if (gone) {
          void spawnAndWait(request.file, request.args, request.options, request.timeoutMs).then(resolve);
          return;
        }
        const id = next++;
        pending.set(id, { request, resolve });
        hold(true);
        child.send({ ...request, id } satisfies SpawnRequest);
      }),
  };
}
