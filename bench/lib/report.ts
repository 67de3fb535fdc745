// Pure pieces of the benchmark: percentiles, wrk's summary, the criteria that decide when a change is
// visible in traffic, and the result table. No I/O here, so test/unit/bench-report.test.ts can check them.

/** Nearest-rank percentile (p in 0–100) of the finite values; undefined when there are none. */
export function percentile(values: readonly number[], p: number): number | undefined {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

export function median(values: readonly number[]): number | undefined {
  return percentile(values, 50);
}

// ---------------------------------------------------------------------------------------------------------
// wrk

export interface WrkSummary {
  requests: number;
  durationS: number;
  requestsPerSec: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** wrk's "Non-2xx or 3xx responses": status ≥ 400. */
  non2xx3xx: number;
  latencyP50Ms?: number;
  latencyP99Ms?: number;
}

/** Milliseconds from a wrk duration such as "1.23ms", "850.00us", "2.01s", "1.00m". */
export function wrkDurationMs(text: string): number | undefined {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (m === null) return undefined;
  const value = Number(m[1]);
  const unit = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'us' | 'ms' | 's' | 'm' | 'h'];
  return value * unit;
}

/** Parses wrk's (4.x) text summary. Lines wrk leaves out when their count is zero read as 0. */
export function parseWrk(stdout: string): WrkSummary {
  const requests = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(stdout);
  if (requests === null) throw new Error(`not a wrk summary: ${stdout.slice(0, 400)}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  const p50 = /^\s+50%\s+(\S+)/m.exec(stdout);
  const p99 = /^\s+99%\s+(\S+)/m.exec(stdout);
  const summary: WrkSummary = {
    requests: Number(requests[1]),
    durationS: (wrkDurationMs(`${requests[2]}${requests[3]}`) ?? 0) / 1000,
    requestsPerSec: rps === null ? 0 : Number(rps[1]),
    socketErrors: {
      connect: Number(socket?.[1] ?? 0),
      read: Number(socket?.[2] ?? 0),
      write: Number(socket?.[3] ?? 0),
      timeout: Number(socket?.[4] ?? 0),
    },
    non2xx3xx: Number(non2xx?.[1] ?? 0),
  };
  const p50Ms = p50 === null ? undefined : wrkDurationMs(p50[1] ?? '');
  const p99Ms = p99 === null ? undefined : wrkDurationMs(p99[1] ?? '');
  if (p50Ms !== undefined) summary.latencyP50Ms = p50Ms;
  if (p99Ms !== undefined) summary.latencyP99Ms = p99Ms;
  return summary;
}

export function socketErrorTotal(s: WrkSummary): number {
  return s.socketErrors.connect + s.socketErrors.read + s.socketErrors.write + s.socketErrors.timeout;
}

// ---------------------------------------------------------------------------------------------------------
// When a change is visible in traffic

/** One probe request, as bench/probe.mjs reports it (times in epoch milliseconds, fractional). */
export interface ProbeResponse {
  /** When the request was started. */
  t0: number;
  /** When the response (or the error) arrived. */
  t: number;
  /** HTTP status; 0 for a socket error. */
  s: number;
  /** The body, trimmed (a member's name), or the error code. */
  b: string;
}

/**
 * The first response after `since` that passes `accept` (e.g. status 200; body 'm3'): the moment a new load
 * balancer or an added member is first seen. Milliseconds from `since`, or undefined if none yet.
 */
export function firstSeen(responses: readonly ProbeResponse[], since: number, accept: (r: ProbeResponse) => boolean): number | undefined {
  const hit = responses.find((r) => r.t >= since && accept(r));
  return hit === undefined ? undefined : hit.t - since;
}

/**
 * The start of the first run of k consecutive successful responses (status 200), all arriving after `since`,
 * none of which `unwanted` matches, that is not followed by an unwanted one later on: the moment a removed
 * member (or one whose weight went to 0) stopped answering. Milliseconds from `since` to the first response
 * of that run, or undefined until such a run is complete.
 *
 * A response that arrived after the change was written but whose request the old configuration served can
 * begin the run by chance; with round robin over m members at most m-1 such responses precede the change,
 * so the figure can be early by at most m-1 probe periods (a few milliseconds).
 */
export function goneFor(responses: readonly ProbeResponse[], since: number, k: number, unwanted: (r: ProbeResponse) => boolean): number | undefined {
  const after = responses.filter((r) => r.t >= since);
  let runStart = -1;
  for (let i = 0; i < after.length; i++) {
    const r = after[i]!;
    if (r.s === 200 && !unwanted(r)) {
      if (runStart < 0) runStart = i;
    } else {
      runStart = -1;
    }
  }
  if (runStart < 0 || after.length - runStart < k) return undefined;
  return after[runStart]!.t - since;
}

// ---------------------------------------------------------------------------------------------------------
// When a change is in force in HAProxy

/** One server of `show servers state BACKEND` on HAProxy's runtime socket. */
export interface ServerState {
  /** srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping. */
  opState: number;
  /** srv_admin_state: maintenance and drain flags; 0 when none is set. */
  adminState: number;
  /** srv_uweight: the weight set by the config or `set server … weight`. */
  weight: number;
}

/** `show servers state` → its servers by name; fields found by the header line HAProxy prints before them. */
export function parseServersState(text: string): Map<string, ServerState> {
  const servers = new Map<string, ServerState>();
  let columns: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# ')) {
      columns = line.slice(2).trim().split(/\s+/);
      continue;
    }
    const fields = line.trim().split(/\s+/);
    const at = (name: string): string | undefined => {
      const i = columns.indexOf(name);
      return i < 0 ? undefined : fields[i];
    };
    const name = at('srv_name');
    if (name === undefined || fields.length !== columns.length) continue;
    servers.set(name, { opState: Number(at('srv_op_state')), adminState: Number(at('srv_admin_state')), weight: Number(at('srv_uweight')) });
  }
  return servers;
}

/**
 * Whether HAProxy's load balancing may pick the server now: up (running), neither in maintenance nor draining,
 * with a weight. Which request it gets first is the algorithm's business (round robin: when its turn comes).
 */
export function inRotation(s: ServerState | undefined): boolean {
  return s !== undefined && s.opState === 2 && s.adminState === 0 && s.weight > 0;
}

// ---------------------------------------------------------------------------------------------------------
// The table

export type Verdict = 'pass' | 'FAIL' | 'n/a' | 'info';

export interface Row {
  figure: string;
  value: string;
  target: string;
  verdict: Verdict;
}

export function verdict(ok: boolean | undefined): Verdict {
  return ok === undefined ? 'n/a' : ok ? 'pass' : 'FAIL';
}

/** "1.2 ms", "123 ms", "1.23 s", "12.3 s"; "n/a" for undefined, "timed out" for Infinity. */
export function ms(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return 'n/a';
  if (!Number.isFinite(value)) return 'timed out';
  if (value < 10) return `${value.toFixed(1)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 10_000) return `${(value / 1000).toFixed(2)} s`;
  return `${(value / 1000).toFixed(1)} s`;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function renderTable(rows: readonly Row[]): string {
  const lines = ['| figure | value | target | result |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${cell(r.figure)} | ${cell(r.value)} | ${cell(r.target)} | ${r.verdict} |`);
  return `${lines.join('\n')}\n`;
}
