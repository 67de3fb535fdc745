// Starting one process and waiting for it: what run.ts does, in the agent's process or, for the agent, in its
// spawner process (spawner.ts), which runs this file as its main module.
// child_process.spawn is synchronous up to the child's exec: libuv (1.46, Node 20) fork()s, which copies the page
// tables of the whole calling process (p50 4 ms at 200 MB RSS, 13 ms at 650 MB, against 1 ms at 50 MB), then waits
// on a pipe until the child has exec'd or failed. On a node whose CPUs are starved that wait is tens to hundreds
// of milliseconds per process, and a drain starts hundreds: in the agent it stalled the event loop for seconds
// (bench/README (w)). In a small process of its own, the fork is cheap and only that process waits.
import { spawn } from 'node:child_process';

export interface RunOptions {
  /** Written to the process's stdin (e.g. `ip -batch -`). */
  input?: string;
  timeoutMs?: number;
  /** Start a daemon: don't capture output (it would keep our pipes open) and don't wait for children. */
  detached?: boolean;
}

/** The environment every command gets: ours, with messages in the C locale (the parsers read English). */
export const childEnv: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
/** Output beyond this is a runaway command, not data: it is killed. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** A command that ignores SIGTERM after its timeout gets SIGKILL this much later. */
const KILL_GRACE_MS = 2_000;
/** How long a daemon's failed foreground process may leave our stderr pipe open after exiting. */
const DETACHED_GRACE_MS = 3_000;
/** After a clean exit: long enough for what it wrote before exiting to be read. */
const DETACHED_CLEAN_EXIT_MS = 20;

export interface Outcome {
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
export function spawnAndWait(file: string, args: readonly string[], options: RunOptions, timeoutMs: number): Promise<Outcome> {
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

/** What the agent asks of its spawner: one command. */
export interface SpawnRequest {
  id: number;
  file: string;
  args: readonly string[];
  options: RunOptions;
  timeoutMs: number;
}

/** An Error crosses the process boundary as its message and its errno fields (`code` ENOENT, `syscall`, `path`). */
export interface SpawnReply {
  id: number;
  outcome: Omit<Outcome, 'error'>;
  error?: { message: string; code?: string; errno?: number; syscall?: string; path?: string };
}

export function errorFromReply(e: NonNullable<SpawnReply['error']>): Error {
  const { message, ...fields } = e;
  return Object.assign(new Error(message), fields);
}

function replyError(e: Error): NonNullable<SpawnReply['error']> {
  const { code, errno, syscall, path } = e as NodeJS.ErrnoException;
  return {
    message: e.message,
    ...(code === undefined ? {} : { code }),
    ...(errno === undefined ? {} : { errno }),
    ...(syscall === undefined ? {} : { syscall }),
    ...(path === undefined ? {} : { path }),
  };
}

/** The spawner's argv marker (spawner.ts starts this file with it). */
export const SPAWNER_FLAG = '--nslb-spawner';

if (process.argv.includes(SPAWNER_FLAG) && process.send !== undefined) {
  const send = process.send.bind(process);
  process.on('message', (r: SpawnRequest) => {
    void spawnAndWait(r.file, r.args, r.options, r.timeoutMs).then(({ error, ...outcome }) => {
      const reply: SpawnReply = { id: r.id, outcome, ...(error === undefined ? {} : { error: replyError(error) }) };
      send(reply);
    });
  });
  // The agent gone (exited, killed): so is its spawner. What it started runs on, as the agent's own would.
  process.on('disconnect', () => process.exit(0));
  send({ ready: true });
}
