// The one place that starts processes. argv arrays only, never a shell; every call has a timeout.
import { type ChildProcess, spawn } from 'node:child_process';
import { basename } from 'node:path';
import { CommandError } from './errors.js';
import { childEnv, type RunOptions, spawnAndWait } from './spawn.js';
import { type Spawner, startSpawner } from './spawner.js';

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

/** Set once the agent asks for it (useSpawner): commands then start in the spawner process (spawner.ts). */
let spawner: Spawner | undefined;

/**
 * The agent's commands start in a small process of its own from now on (spawner.ts says why); after it has died,
 * here again. Returns it (the tests kill it), or undefined when there is none (run from sources).
 */
export function useSpawner(options: { script?: URL } = {}): ChildProcess | undefined {
  if (spawner !== undefined) return spawner.process;
  const started = startSpawner(() => {
    if (spawner === started) spawner = undefined;
  }, options.script);
  spawner = started;
  return started?.process;
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
  const result = await (spawner === undefined ? spawnAndWait(file, args, options, timeoutMs) : spawner.post({ file, args, options, timeoutMs }));
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
