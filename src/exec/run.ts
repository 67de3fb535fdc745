// The one place that starts processes. argv arrays only, never a shell; every call has a timeout.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CommandError } from './errors.js';
import { childEnv, errorFromReply, type Outcome, type RunOptions, type SpawnReply, type SpawnRequest, spawnAndWait } from './spawn.js';

export type { RunOptions } from './spawn.js';

export interface RunResult {
  stdout: string;
  stderr: string;
}

export type Runner = (argv: readonly string[], options?: RunOptions) => Promise<RunResult>;

const DEFAULT_TIMEOUT_MS = 15_000;

/**
 * Processes started, in all and by program (`ip`, `ovs-vsctl`, `haproxy`…): the resync's summary line says how
 * many it cost, /metrics shows them by tool. The agent makes one and gives it to its runner and watchers.
 */
export class SpawnCounter {
  total = 0;
  readonly byTool = new Map<string, number>();
  /** Wall time from spawn to exit, by program: where the agent waits on processes (bench figure (j)). */
  readonly secondsByTool = new Map<string, number>();

  count(file: string): void {
    this.total++;
    const tool = basename(file);
    this.byTool.set(tool, (this.byTool.get(tool) ?? 0) + 1);
  }

  took(file: string, seconds: number): void {
    const tool = basename(file);
    this.secondsByTool.set(tool, (this.secondsByTool.get(tool) ?? 0) + seconds);
  }
}

/** Set once the agent asks for it (useSpawnWorker): commands then start on a worker thread. */
let worker: { post: (r: Omit<SpawnRequest, 'id'>) => Promise<Outcome>; thread: Worker } | undefined;

/**
 * Starts the agent's commands from a worker thread (spawn.ts says why). Without one (not built, or the worker
 * cannot start) and after the worker has died, commands start on the calling thread as before: a command in
 * flight when the worker dies fails (it may have run; it is not started twice), later ones run here.
 * A worker that fails to load (before it is online) has started nothing: its queued commands run here.
 * `script` is for the tests, whose sources are TypeScript (they pass spawn.ts compiled).
 */
export function useSpawnWorker(options: { script?: URL } = {}): Worker | undefined {
  if (worker !== undefined) return worker.thread;
  const url = options.script ?? new URL('./spawn.js', import.meta.url);
  // Run from sources (tsx, vitest) there is no spawn.js: commands start on the main thread, as before.
  if (!existsSync(fileURLToPath(url))) return undefined;
  let thread: Worker;
  try {
    thread = new Worker(url, { workerData: { nslbSpawner: true } });
  } catch {
    return undefined;
  }
  const pending = new Map<number, { request: Omit<SpawnRequest, 'id'>; resolve: (o: Outcome) => void }>();
  let next = 0;
  let online = false;
  thread.once('online', () => {
    online = true;
  });
  const gone = (why: string): void => {
    if (worker?.thread === thread) worker = undefined;
    for (const { request: r, resolve } of pending.values()) {
      if (online) resolve({ code: null, signal: null, stdout: '', stderr: '', timedOut: false, error: new Error(why) });
      else void spawnAndWait(r.file, r.args, r.options, r.timeoutMs).then(resolve);
    }
    pending.clear();
  };
  thread.on('message', (m: SpawnReply) => {
    const resolve = pending.get(m.id)?.resolve;
    pending.delete(m.id);
    // Referenced only while a command is in flight: an idle worker does not keep the process alive.
    if (pending.size === 0) thread.unref();
    resolve?.({ ...m.outcome, ...(m.error === undefined ? {} : { error: errorFromReply(m.error) }) });
  });
  thread.on('error', (e) => gone(`spawn worker failed: ${e.message}`));
  thread.on('exit', (code) => gone(`spawn worker exited (code ${code}) with the command in flight`));
  thread.unref();
  worker = {
    thread,
    post: (r) =>
      new Promise<Outcome>((resolve) => {
        const id = next++;
        pending.set(id, { request: r, resolve });
        thread.ref();
        thread.postMessage({ ...r, id } satisfies SpawnRequest);
      }),
  };
  return thread;
}

/** A runner that counts what it starts into `spawns`, if given. */
export function commandRunner(spawns?: SpawnCounter): Runner {
  return async (argv, options = {}) => {
    const [file] = argv;
    if (file === undefined) throw new Error('runCommand: empty argv');
    if (spawns === undefined) return runOnce(argv, options);
    spawns.count(file);
    const started = performance.now();
    try {
      return await runOnce(argv, options);
    } finally {
      spawns.took(file, (performance.now() - started) / 1000);
    }
  };
}

/** Runs one command, counted nowhere: for one-shot commands and tests. */
export const runCommand: Runner = commandRunner();

async function runOnce(argv: readonly string[], options: RunOptions): Promise<RunResult> {
  const [file = '', ...args] = argv;
  const trace = process.env.NSLB_TRACE_SPAWN === '1' ? Date.now() : undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const result = await (worker === undefined ? spawnAndWait(file, args, options, timeoutMs) : worker.post({ file, args, options, timeoutMs }));
  if (trace !== undefined) process.stderr.write(`spawn: ${Date.now() - trace} ms ${trace % 100000} ${argv.slice(0, 6).join(' ')}\n`);
  if (result.error !== undefined) throw new CommandError(argv, undefined, result.error.message, { cause: result.error });
  if (result.timedOut) throw new CommandError(argv, undefined, `timed out after ${timeoutMs} ms`);
  if (result.code !== 0) {
    const why = result.stderr || (result.signal !== null ? `killed by ${result.signal}` : `exit code ${String(result.code)}`);
    throw new CommandError(argv, result.code ?? undefined, why);
  }
  return { stdout: result.stdout, stderr: result.stderr };
}

export interface Watcher {
  /** Resolves with the exit code (or null on a signal) when the process ends. */
  readonly exited: Promise<number | null>;
  stop(): void;
}

/**
 * A long-lived process whose stdout is read line by line (e.g. `ip monitor`). argv only; it is killed when
 * stopped and never outlives the agent (it is not detached).
 */
export function runWatcher(argv: readonly string[], onLine: (line: string) => void, spawns?: SpawnCounter): Watcher {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runWatcher: empty argv');
  spawns?.count(file);
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'ignore'], env: childEnv });
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  });
  return {
    exited,
    stop: () => {
      child.kill('SIGTERM');
    },
  };
}
