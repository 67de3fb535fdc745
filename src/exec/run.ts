// The one place that starts processes. argv arrays only, never a shell; every call has a timeout.
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { spawnsByTool } from '../metrics/counters.js';
import { CommandError } from './errors.js';

export interface RunOptions {
  /** Written to the process's stdin (e.g. `ip -batch -`). */
  input?: string;
  timeoutMs?: number;
  /** Start a daemon: don't capture output (it would keep our pipes open) and don't wait for children. */
  detached?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export type Runner = (argv: readonly string[], options?: RunOptions) => Promise<RunResult>;

const DEFAULT_TIMEOUT_MS = 15_000;

/** Counts spawns; the bench reads it to report processes spawned per resync. */
export const spawnCounter = { count: 0 };

export const runCommand: Runner = async (argv, options = {}) => {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runCommand: empty argv');
  spawnCounter.count++;
  const tool = basename(file);
  spawnsByTool.set(tool, (spawnsByTool.get(tool) ?? 0) + 1);
  const trace = process.env.NSLB_TRACE_SPAWN === '1' ? Date.now() : undefined;
  try {
    const result = await execa(file, args, {
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
      ...(options.detached === true ? { stdout: 'ignore' as const, stderr: 'pipe' as const } : {}),
      reject: false,
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    });
    if (trace !== undefined) process.stderr.write(`spawn: ${Date.now() - trace} ms ${trace % 100000} ${argv.slice(0, 6).join(' ')}\n`);
    const stdout = typeof result.stdout === 'string' ? result.stdout : '';
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';
    if (result.failed) {
      const exitCode = typeof result.exitCode === 'number' ? result.exitCode : undefined;
      const why = result.timedOut ? `timed out after ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms` : stderr;
      throw new CommandError(argv, exitCode, why || (result.message ?? ''), { cause: result });
    }
    return { stdout, stderr };
  } catch (err) {
    if (err instanceof CommandError) throw err;
    throw new CommandError(argv, undefined, err instanceof Error ? err.message : String(err), { cause: err });
  }
};

export interface Watcher {
  /** Resolves with the exit code (or null on a signal) when the process ends. */
  readonly exited: Promise<number | null>;
  stop(): void;
}

/**
 * A long-lived process whose stdout is read line by line (e.g. `ip monitor`). argv only; it is killed when
 * stopped and never outlives the agent (it is not detached).
 */
export function runWatcher(argv: readonly string[], onLine: (line: string) => void): Watcher {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runWatcher: empty argv');
  spawnCounter.count++;
  const tool = basename(file);
  spawnsByTool.set(tool, (spawnsByTool.get(tool) ?? 0) + 1);
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { LC_ALL: 'C' } });
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
