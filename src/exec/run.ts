// The one place that starts processes. argv arrays only, never a shell; every call has a timeout.
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
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

/** The environment every command gets: ours, with messages in the C locale (the parsers read English). */
const childEnv: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
/** Output beyond this is a runaway command, not data: it is killed. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** A command that ignores SIGTERM after its timeout gets SIGKILL this much later. */
const KILL_GRACE_MS = 2_000;
/** How long a daemon's failed foreground process may leave our stderr pipe open after exiting. */
const DETACHED_GRACE_MS = 3_000;
/** After a clean exit: long enough for what it wrote before exiting to be read. */
const DETACHED_CLEAN_EXIT_MS = 20;

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  error?: Error;
}

/**
 * node:child_process directly rather than through execa: at hundreds of load balancers the agent's main thread
 * spends most of its time starting processes, and execa's per-call machinery (environment merging, abort
 * signals, stream plumbing) cost more CPU than the spawn itself (README "Architecture" has the measurement). What
 * execa gave us is kept: argv only (no shell), a timeout that ends in SIGKILL, stdin input, captured output.
 */
function spawnAndWait(file: string, args: readonly string[], options: RunOptions, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const detached = options.detached === true;
    const child = spawn(file, args, {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', detached ? 'ignore' : 'pipe', 'pipe'],
      env: childEnv,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let timedOut = false;
    let error: Error | undefined;
    let settled = false;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) {
        error ??= new Error(`output exceeded ${MAX_OUTPUT_BYTES} bytes`);
        child.kill('SIGKILL');
        return;
      }
      into.push(chunk);
    };
    child.stdout?.on('data', collect(out));
    child.stderr?.on('data', collect(err));
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    }, timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        ...(error === undefined ? {} : { error }),
      });
    };
    child.on('error', (e) => {
      error = e;
      finish(null, null);
    });
    child.on('close', (code, signal) => finish(code, signal));
    if (detached) {
      // A daemon's foreground process exits once it has forked; the daemon keeps the stderr it inherited
      // until it is up (HAProxy: until its worker is ready), which under load, or for a batch of them, can
      // be long. After a clean exit, take what was written and let go; after a failed one, wait (a while)
      // for the whole error.
      child.on('exit', (code, signal) => {
        setTimeout(
          () => {
            child.stderr?.destroy();
            finish(code, signal);
          },
          code === 0 ? DETACHED_CLEAN_EXIT_MS : DETACHED_GRACE_MS,
        ).unref();
      });
    }
    if (options.input !== undefined && child.stdin !== null) {
      // A command that exits without reading all its input (an early error) closes the pipe: its exit
      // status says what went wrong, not our EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
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
  const result = await spawnAndWait(file, args, options, timeoutMs);
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
