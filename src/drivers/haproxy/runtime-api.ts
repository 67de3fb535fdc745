// HAProxy's runtime API (its admin socket, one per load balancer): one command, one answer, no process; and the
// member changes plan/runtime-diff.ts computed, sent through it.
import { createConnection } from 'node:net';
import type { LbPaths } from '../../desired/state-dir.js';
import { waitUntil } from '../../loop/wait.js';
import type { DriverCounters } from '../../plan/node-driver.js';
import type { RuntimeCommand } from '../../plan/runtime-diff.js';

/** The runtime API could not be reached in time, or answered something that is not what was asked. */
export class RuntimeApiError extends Error {
  override readonly name = 'RuntimeApiError';
  readonly socketPath: string | undefined;
  readonly command: string | undefined;
  constructor(message: string, options: { socketPath?: string; command?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.socketPath = options.socketPath;
    this.command = options.command;
  }
}

/**
 * Sends one command to HAProxy's runtime API (non-interactive: HAProxy answers, then closes) and
 * returns the whole answer. Rejects on a connection error or when the answer takes longer than timeoutMs.
 */
export async function queryRuntime(socketPath: string, command: string, timeoutMs = 2000): Promise<string> {
  return queryRuntimeAll(socketPath, [command], timeoutMs);
}

/** A timer this much past its time means the event loop was blocked (see queryRuntimeAll). */
const LATE_TIMER_MS = 50;

/**
 * Several commands in one connection (HAProxy runs the `;`-separated commands of a line in order and answers each
 * in turn): the answers one after the other. A connection per command was a visible share of a busy agent's event
 * loop (the stats poll of a hundred ACTIVE_STANDBY pairs: `show stat` and `show peers` each, every poll).
 */
export async function queryRuntimeAll(socketPath: string, commands: readonly string[], timeoutMs = 2000): Promise<string> {
  for (const command of commands) {
    if (/[\r\n;]/.test(command)) {
      // HAProxy reads a line break or a `;` as the start of another command on this admin-level socket.
      throw new RuntimeApiError('command contains a line break or a ;', { socketPath, command });
    }
  }
  const command = commands.join(';');
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket = createConnection({ path: socketPath });
    const finish = (err: RuntimeApiError | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err === undefined) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(err);
    };
    // A timeout counted in the event loop's own time: when the timer runs late (the loop was blocked: a busy
    // agent), an answer may be waiting on the socket unread (its data and its end take a poll phase each, after
    // the timer), and a HAProxy that answered in time would be called silent. A late timer gives it once more
    // the same time, in which the loop reads what is pending.
    const started = Date.now();
    let extended = false;
    const onTimeout = (): void => {
      if (!extended && Date.now() - started - timeoutMs > LATE_TIMER_MS) {
        extended = true;
        timer = setTimeout(onTimeout, timeoutMs);
        return;
      }
      finish(new RuntimeApiError(`${socketPath}: no complete answer to "${command}" within ${timeoutMs} ms`, { socketPath, command }));
    };
    let timer = setTimeout(onTimeout, timeoutMs);
    socket.on('connect', () => socket.write(`${command}\n`));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish(undefined));
    socket.on('error', (cause: Error) => {
      finish(new RuntimeApiError(`${socketPath}: ${cause.message}`, { socketPath, command, cause }));
    });
  });
}

/** Whether HAProxy's answer to a runtime command means it was applied. */
export function runtimeAnswerOk(command: string, answer: string): boolean {
  const text = answer.trim();
  if (command.startsWith('add server ')) return text.startsWith('New server registered');
  if (command.startsWith('del server ')) return text.startsWith('Server deleted');
  if (command.includes(' addr ')) return text === '' || text.startsWith('IP changed') || text.startsWith('no need to change');
  return text === '';
}

const DELETE_RETRY_MS = 2_000;

/**
 * Sends member changes over the runtime socket, in order. Resolves false as soon as HAProxy refuses one that
 * must succeed (the caller reloads instead); a refused deletion of a member that still has connections is
 * fine: it is in maintenance already and takes no new traffic.
 */
export async function applyRuntimeCommands(paths: LbPaths, commands: readonly RuntimeCommand[], counters: DriverCounters): Promise<boolean> {
  const send = async (command: string): Promise<string | undefined> => {
    try {
      return await queryRuntime(paths.socket, command, 2_000);
    } catch {
      return undefined;
    }
  };
  // A server in maintenance can be deleted once its last in-flight request is done (entering maintenance
  // closed its idle connections): try again for a moment before leaving it behind in maintenance.
  const deleteServer = async (id: string): Promise<boolean> => {
    let deleted = false;
    await waitUntil(
      async () => {
        const answer = await send(`del server ${id}`);
        if (answer === undefined) return true;
        deleted = runtimeAnswerOk('del server ', answer);
        return deleted || !/connection|stream|session|queue/i.test(answer);
      },
      { intervalMs: 10, timeoutMs: DELETE_RETRY_MS },
    );
    return deleted;
  };
  for (const c of commands) {
    let answer: string | undefined;
    if (c.command.startsWith('del server ')) {
      answer = (await deleteServer(c.command.slice('del server '.length))) ? 'Server deleted.' : '';
    } else {
      answer = await send(c.command);
      if (answer === undefined) return false;
      const id = /^add server (\S+)/.exec(c.command)?.[1];
      if (id !== undefined && /already exists/i.test(answer)) {
        // Left in maintenance by an earlier removal that still had a request in flight: it goes now.
        await send(`set server ${id} state maint`);
        if (!(await deleteServer(id))) return false;
        answer = await send(c.command);
        if (answer === undefined) return false;
      }
    }
    if (runtimeAnswerOk(c.command, answer)) {
      counters.runtimeUpdates++;
    } else if (c.mayBeRefused !== true) {
      return false;
    }
    if (c.ifConfigMaintenance !== undefined) {
      const { backend, server, commands: replace } = c.ifConfigMaintenance;
      let state: string;
      try {
        state = await queryRuntime(paths.socket, `show servers state ${backend}`, 2_000);
      } catch {
        return false;
      }
      // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state …; 0x04 = config maintenance.
      const fields = state
        .split('\n')
        .map((l) => l.split(' '))
        .find((f) => f[1] === backend && f[3] === server);
      if (fields === undefined) return false;
      if ((Number(fields[6]) & 0x04) !== 0 && !(await applyRuntimeCommands(paths, replace, counters))) return false;
    }
  }
  return true;
}

/** The PID of the worker that answers the runtime socket now, or undefined when none answers. */
export async function runtimeWorkerPid(paths: LbPaths): Promise<number | undefined> {
  try {
    const match = /^Pid: (\d+)$/m.exec(await queryRuntime(paths.socket, 'show info', 1_000));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}
