// Runs the built `nslb` CLI as a real child process, as an operator would (stop, crash, restart).
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { StatusFile } from '../../src/status/status-file.js';

const execFileP = promisify(execFile);
// NSLB_E2E_CLI runs the same tests against another build (say, the last release's dist/main.js).
export const CLI = process.env.NSLB_E2E_CLI ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli', 'main.js');

export interface AgentOptions {
  /** File-watch mode; or `kubeconfig` for Kubernetes mode. */
  watch?: string;
  kubeconfig?: string;
  namespace?: string;
  stateDir: string;
  bridge: string;
  resync?: number;
  listen?: string;
  /** Added to the agent's environment (e.g. NSLB_CRASH_AT, NSLB_HAPROXY). */
  env?: Record<string, string>;
  /** --concurrency (the agent's default when unset). */
  concurrency?: number;
  /** More flags of `nslb run`, last on the command line. */
  extraArgs?: string[];
}

const STOP_TIMEOUT_MS = 60_000;

export class Agent {
  readonly child: ChildProcess;
  readonly logs: string[] = [];
  readonly exited: Promise<number | null>;
  /** After exit, once its stdout and stderr are drained too: every line it wrote is in `logs`. */
  readonly closed: Promise<void>;

  constructor(opts: AgentOptions) {
    this.child = spawn(
      process.execPath,
      [
        CLI,
        'run',
        ...(opts.kubeconfig === undefined ? ['--watch', opts.watch ?? ''] : ['--kubernetes', '--kubeconfig', opts.kubeconfig, '--node-name', 'e2e-node']),
        ...(opts.namespace === undefined ? [] : ['--namespace', opts.namespace]),
        '--state-dir',
        opts.stateDir,
        '--bridge',
        opts.bridge,
        '--resync',
        String(opts.resync ?? 3),
        '--status-interval',
        '300',
        '--listen',
        opts.listen ?? '127.0.0.1:0',
        '--log-level',
        'debug',
        ...(opts.concurrency === undefined ? [] : ['--concurrency', String(opts.concurrency)]),
        ...(opts.extraArgs ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env === undefined ? {} : { env: { ...process.env, ...opts.env } }) },
    );
    // Whole lines only: a chunk may end mid-line, and tests parse the JSON lines.
    const collector = (): ((b: Buffer) => void) => {
      let partial = '';
      return (b) => {
        const lines = (partial + b.toString()).split('\n');
        partial = lines.pop() ?? '';
        this.logs.push(...lines.filter((l) => l !== ''));
      };
    };
    this.child.stdout?.on('data', collector());
    this.child.stderr?.on('data', collector());
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    this.closed = new Promise((resolve) => this.child.on('close', () => resolve()));
  }

  /**
   * SIGTERM, as a service manager stops it. An agent still running a minute later is SIGKILLed and the call fails:
   * a stop that hangs is a bug to see, not a process to leave behind holding its state dir.
   */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_TIMEOUT_MS).unref());
    if ((await Promise.race([this.exited, timer])) === 'hung') {
      this.child.kill('SIGKILL');
      await this.exited;
      throw new Error(
        `the agent (pid ${this.child.pid}) did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; last lines:\n${this.logs.slice(-5).join('\n')}`,
      );
    }
    return this.exited;
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export async function readStatus(stateDir: string): Promise<StatusFile | undefined> {
  try {
    return JSON.parse(await readFile(join(stateDir, 'status.json'), 'utf8')) as StatusFile;
  } catch {
    return undefined;
  }
}

export function statusOf(file: StatusFile | undefined, kind: string, name: string) {
  return file?.objects.find((o) => o.kind === kind && o.name === name)?.status;
}

/** Runs the CLI to completion; never throws on a non-zero exit. */
export async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
