// The agent under test, run as an operator would: `node dist/cli/main.js run --watch DIR …`, its JSON log
// lines read from stderr, its status.json and its HAProxy runtime sockets read from the state dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { NSLB_CLI } from '../../test/e2e/harness.js';
import { parseServersState, type ServerState } from './report.js';

export interface ResyncLine {
  time: number;
  loadBalancers?: number;
  active?: number;
  pending?: number;
  error?: number;
  changed?: number;
  spawned?: number;
  ms?: number;
}

export interface AgentOptions {
  /** File-watch mode: this directory; or Kubernetes mode with `kubeconfig`. */
  watch?: string;
  kubeconfig?: string;
  /** More flags of `nslb run` (e.g. --service-provider). */
  args?: string[];
  stateDir: string;
  bridge: string;
  resyncS: number;
  concurrency?: number;
  /** Flags of node itself, before the CLI (e.g. --cpu-prof; NODE_OPTIONS does not take it). */
  nodeArgs?: string[];
}

export class BenchAgent {
  readonly child: ChildProcess;
  readonly startedAt: number;
  readonly resyncs: ResyncLine[] = [];
  /** The last lines (any level), for a failure message. */
  readonly tail: string[] = [];
  errors = 0;
  /** Every distinct log message seen so far (e.g. "provider: started"). */
  readonly messages = new Set<string>();
  /** host:port of /metrics, once the agent has said where it listens. */
  listen: string | undefined;
  /** The agent has logged its initial sync. */
  synced = false;
  readonly #exited: Promise<void>;

  constructor(readonly opts: AgentOptions) {
    this.startedAt = performance.timeOrigin + performance.now();
    this.child = spawn(
      process.execPath,
      [
        // NSLB_BENCH_NODE_ARGS (a development aid, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"): flags of node for every agent.
        ...(opts.nodeArgs ?? process.env.NSLB_BENCH_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? []),
        // NSLB_BENCH_CLI measures another build (say, the main branch's dist/cli/main.js) with the same phases.
        process.env.NSLB_BENCH_CLI ?? NSLB_CLI,
        'run',
        ...(opts.kubeconfig === undefined ? ['--watch', opts.watch ?? ''] : ['--kubernetes', '--kubeconfig', opts.kubeconfig, '--node-name', 'bench-node']),
        '--state-dir',
        opts.stateDir,
        '--bridge',
        opts.bridge,
        '--listen',
        '127.0.0.1:0',
        '--resync',
        String(opts.resyncS),
        '--log-level',
        'info',
        ...(opts.concurrency === undefined ? [] : ['--concurrency', String(opts.concurrency)]),
        ...(opts.args ?? []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.#exited = new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.once('error', () => resolve());
    });
    let partial = '';
    this.child.stderr?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.#line(line);
    });
  }

  #line(line: string): void {
    if (line.trim() === '') return;
    this.tail.push(line.length > 600 ? `${line.slice(0, 600)}…` : line);
    if (this.tail.length > 40) this.tail.shift();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof parsed.level === 'number' && parsed.level >= 50) this.errors++;
    if (typeof parsed.msg === 'string') this.messages.add(parsed.msg);
    if (parsed.msg === 'initial sync done') this.synced = true;
    if (typeof parsed.listen === 'string' && typeof parsed.msg === 'string' && parsed.msg.includes('/metrics')) this.listen = parsed.listen;
    if (parsed.msg !== 'resync') return;
    const num = (key: string): number | undefined => (typeof parsed[key] === 'number' ? (parsed[key] as number) : undefined);
    const r: ResyncLine = { time: num('time') ?? Date.now() };
    for (const key of ['loadBalancers', 'active', 'pending', 'error', 'changed', 'spawned', 'ms'] as const) {
      const v = num(key);
      if (v !== undefined) r[key] = v;
    }
    this.resyncs.push(r);
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('the agent did not start');
    return this.child.pid;
  }

  exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Resident and peak resident memory (VmRSS, VmHWM) in MiB, from /proc. */
  async memory(): Promise<{ rssMiB: number; peakMiB: number } | undefined> {
    try {
      const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
      const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
      return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
    } catch {
      return undefined;
    }
  }

  /**
   * The agent's own counters from /metrics, summed over labels, by metric name (e.g.
   * nslb_haproxy_reloads_total); undefined when the agent serves no /metrics.
   */
  async metrics(): Promise<Map<string, number> | undefined> {
    if (this.listen === undefined) return undefined;
    try {
      const res = await fetch(`http://${this.listen}/metrics`, { signal: AbortSignal.timeout(15_000) });
      if (!res.ok) return undefined;
      return parsePrometheusTotals(await res.text());
    } catch {
      return undefined;
    }
  }

  /** SIGTERM, SIGKILL after 10 s; load balancers keep serving (DESIGN §2). */
  async stop(): Promise<void> {
    if (this.exited()) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }
}

export interface LbStatus {
  provisioningStatus?: string;
  operatingStatus?: string;
}

/** LoadBalancer statuses from status.json by name; an empty map while the file is missing or half read. */
export async function loadBalancerStatuses(stateDir: string, namespace: string): Promise<Map<string, LbStatus>> {
  const result = new Map<string, LbStatus>();
  let text: string;
  try {
    text = await readFile(join(stateDir, 'status.json'), 'utf8');
  } catch {
    return result;
  }
  try {
    const file = JSON.parse(text) as { objects?: { kind: string; namespace: string; name: string; status?: LbStatus }[] };
    for (const o of file.objects ?? []) {
      if (o.kind === 'LoadBalancer' && o.namespace === namespace) result.set(o.name, o.status ?? {});
    }
  } catch {
    // Written atomically, so this is not expected; read again next time.
  }
  return result;
}

/** One runtime-API command over the LB's unix socket (node:net), the reply as text. */
export function runtimeCommand(socketPath: string, command: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let reply = '';
    const timer = setTimeout(() => socket.destroy(new Error(`${command} on ${socketPath}: no reply in ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${command}\n`));
    socket.on('data', (chunk: string) => {
      reply += chunk;
    });
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(reply);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Asks the runtime socket for a backend's servers (`show servers state`) every `intervalMs` until `done` says a
 * change is in force: milliseconds from `since` (epoch ms, as `now` in node-env.ts) to the answer that said so,
 * so late by at most one interval and a round trip; Infinity after `timeoutMs`.
 */
export async function untilInForce(
  socketPath: string,
  backend: string,
  since: number,
  done: (servers: Map<string, ServerState>) => boolean,
  timeoutMs: number,
  intervalMs = 2,
): Promise<number> {
  const clock = () => performance.timeOrigin + performance.now();
  for (;;) {
    try {
      const servers = parseServersState(await runtimeCommand(socketPath, `show servers state ${backend}`));
      const t = clock();
      if (done(servers)) return t - since;
    } catch {
      // Not answering for a moment: ask again.
    }
    if (clock() - since > timeoutMs) return Infinity;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The worker's PID from `show info` (in master-worker mode the stats socket is the worker's). */
export async function workerPid(socketPath: string): Promise<number | undefined> {
  try {
    const m = /^Pid: (\d+)$/m.exec(await runtimeCommand(socketPath, 'show info'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Prometheus text format → sum of every sample of each metric name (labels ignored). */
export function parsePrometheusTotals(text: string): Map<string, number> {
  const totals = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const value = Number(m[2]);
    if (Number.isFinite(value)) totals.set(m[1]!, (totals.get(m[1]!) ?? 0) + value);
  }
  return totals;
}
