// The one place that starts processes. argv arrays only, never a shell; every call has a timeout.
import { execa } from 'execa';
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
  try {
    const result = await execa(file, args, {
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
      ...(options.detached === true ? { stdout: 'ignore' as const, stderr: 'pipe' as const } : {}),
      reject: false,
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    });
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
