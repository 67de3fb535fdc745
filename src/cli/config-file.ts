// `nslb run --config FILE`: the agent's flags in a file, read at start and again on SIGHUP.
//
// The format is the one systemd's EnvironmentFile= reads, so that one file (deploy/nslb.env) serves both:
// `KEY=VALUE` lines, `#` or `;` comments, blank lines, a value optionally in "double" or 'single' quotes.
// Keys are the flags of `nslb run` in upper case with NSLB_ in front: --log-level → NSLB_LOG_LEVEL. Keys that
// do not start with NSLB_ are the process environment (systemd's business) and are ignored here, as are the
// environment-only NSLB_HAPROXY and NSLB_CRASH_AT. An unknown NSLB_ key is an error: a typo must not be
// silently ignored. Flags given on the command line win over the file.
import { readFile } from 'node:fs/promises';
import { KERNEL_LIMITS_MODES } from '../controller/kernel-limits.js';
import { checkDaemonCgroup } from '../exec/daemon-cgroup.js';
import { parseListen, parsePositiveInt, parsePositiveNumber, parseShare } from './options.js';
import type { RunFlags } from './flags.js';

export class FlagsFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`);
    this.name = 'FlagsFileError';
  }
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

type FlagName = keyof RunFlags;

interface KeySpec {
  flag: FlagName;
  /** Returns the value or throws an Error whose message says what is allowed. */
  parse: (value: string) => RunFlags[FlagName];
  /** Applied by a running agent on SIGHUP; the others need a restart. */
  live: boolean;
}

const nonEmpty =
  (what: string) =>
  (v: string): string => {
    if (v === '') throw new Error(`${what} must not be empty`);
    return v;
  };
const positive = (flag: string) => {
  const parse = parsePositiveInt(flag);
  return (v: string): number => parse(v);
};

function parseBool(v: string): boolean {
  if (v === 'true' || v === 'yes' || v === '1') return true;
  if (v === 'false' || v === 'no' || v === '0') return false;
  throw new Error(`must be true or false (got ${JSON.stringify(v)})`);
}

const KEYS: Record<string, KeySpec> = {
  NSLB_WATCH: { flag: 'watch', parse: nonEmpty('a directory'), live: false },
  NSLB_KUBERNETES: {
    flag: 'kubernetes',
    parse: (v) => {
      if (v === 'true' || v === 'yes' || v === '1') return true;
      if (v === 'false' || v === 'no' || v === '0') return false;
      throw new Error(`must be true or false (got ${JSON.stringify(v)})`);
    },
    live: false,
  },
  NSLB_KUBECONFIG: { flag: 'kubeconfig', parse: nonEmpty('a file'), live: false },
  NSLB_NAMESPACE: { flag: 'namespace', parse: nonEmpty('a namespace'), live: false },
  NSLB_STATE_DIR: { flag: 'stateDir', parse: nonEmpty('a directory'), live: false },
  NSLB_BRIDGE: { flag: 'bridge', parse: nonEmpty('a bridge name'), live: false },
  NSLB_NODE_NAME: { flag: 'nodeName', parse: nonEmpty('a node name'), live: false },
  NSLB_LISTEN: {
    flag: 'listen',
    parse: (v) => {
      parseListen(v);
      return v;
    },
    live: false,
  },
  NSLB_METRICS_LISTEN: {
    flag: 'metricsListen',
    parse: (v) => {
      parseListen(v);
      return v;
    },
    live: false,
  },
  NSLB_DAEMON_CGROUP: { flag: 'daemonCgroup', parse: checkDaemonCgroup, live: false },
  NSLB_RESYNC: { flag: 'resync', parse: positive('--resync'), live: true },
  NSLB_CONCURRENCY: { flag: 'concurrency', parse: positive('--concurrency'), live: true },
  NSLB_STATUS_INTERVAL: { flag: 'statusInterval', parse: positive('--status-interval'), live: true },
  NSLB_KERNEL_LIMITS: {
    flag: 'kernelLimits',
    parse: (v) => {
      if (!(KERNEL_LIMITS_MODES as readonly string[]).includes(v))
        throw new Error(`must be one of ${KERNEL_LIMITS_MODES.join(', ')} (got ${JSON.stringify(v)})`);
      return v;
    },
    live: true,
  },
  NSLB_SERVICE_PROVIDER: { flag: 'serviceProvider', parse: (v) => parseBool(v), live: false },
  NSLB_SERVICES_WITHOUT_CLASS: { flag: 'servicesWithoutClass', parse: (v) => parseBool(v), live: false },
  NSLB_SERVICE_MEMBERS: {
    flag: 'serviceMembers',
    parse: (v) => {
      if (v !== 'nodes' && v !== 'endpoints') throw new Error(`must be nodes or endpoints (got ${JSON.stringify(v)})`);
      return v;
    },
    live: false,
  },
  NSLB_PROVIDER_LEASE: { flag: 'providerLease', parse: positive('--provider-lease'), live: false },
  NSLB_NODE_LEASE: { flag: 'nodeLease', parse: positive('--node-lease'), live: false },
  NSLB_RESTART_GRACE: { flag: 'restartGrace', parse: positive('--restart-grace'), live: false },
  NSLB_SCHEDULER_LEASE: { flag: 'schedulerLease', parse: positive('--scheduler-lease'), live: false },
  NSLB_FAILOVER_THRESHOLD: { flag: 'failoverThreshold', parse: parseShare('--failover-threshold'), live: false },
  NSLB_DRAIN_CONCURRENCY: { flag: 'drainConcurrency', parse: positive('--drain-concurrency'), live: false },
  NSLB_KUBE_API_QPS: { flag: 'kubeApiQps', parse: parsePositiveNumber('--kube-api-qps'), live: true },
  NSLB_KUBE_API_BURST: { flag: 'kubeApiBurst', parse: positive('--kube-api-burst'), live: true },
  NSLB_LOG_LEVEL: {
    flag: 'logLevel',
    parse: (v) => {
      if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new Error(`must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(v)})`);
      return v;
    },
    live: true,
  },
};

/** Read from the process environment by nslb at start (systemd sets them from the same file); not flags. */
const ENVIRONMENT_ONLY = new Set(['NSLB_HAPROXY', 'NSLB_CRASH_AT', 'NSLB_PROVIDER_CRASH_AT']);

/** The flags a running agent applies on SIGHUP; every other one needs a restart. */
export const LIVE_FLAGS: ReadonlySet<FlagName> = new Set(
  Object.values(KEYS)
    .filter((k) => k.live)
    .map((k) => k.flag),
);

/** The command-line spelling of a flag: statusInterval → --status-interval. */
export function flagName(flag: FlagName): string {
  return `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** The file's key for a flag: statusInterval → NSLB_STATUS_INTERVAL. */
export function fileKey(flag: FlagName): string {
  return `NSLB_${flag.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function unquote(raw: string, file: string, line: number): string {
  const q = raw[0];
  if ((q === '"' || q === "'") && raw.length >= 2 && raw.endsWith(q)) raw = raw.slice(1, -1);
  // Escapes and nested quotes are read differently by systemd and by shells: refuse them rather than guess.
  if (/["'\\]/.test(raw)) throw new FlagsFileError(file, line, 'a value may be wrapped in one pair of quotes but contain no quotes or backslashes');
  return raw;
}

/** Parses the text of a flags file. Pure; throws FlagsFileError naming the file, line and what is allowed. */
export function parseFlagsFile(text: string, file: string): Partial<RunFlags> {
  const result: Partial<Record<FlagName, unknown>> = {};
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (const [i, rawLine] of lines.entries()) {
    const n = i + 1;
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq).trim();
    if (eq < 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new FlagsFileError(file, n, `expected KEY=VALUE (e.g. NSLB_LOG_LEVEL=info), got ${JSON.stringify(line.slice(0, 80))}`);
    }
    const value = unquote(line.slice(eq + 1).trim(), file, n);
    if (!key.startsWith('NSLB_') || ENVIRONMENT_ONLY.has(key)) continue;
    const spec = KEYS[key];
    if (spec === undefined) {
      throw new FlagsFileError(
        file,
        n,
        `unknown key ${key}; allowed: ${Object.keys(KEYS).join(', ')} (and ${[...ENVIRONMENT_ONLY].join(', ')}, which are environment only)`,
      );
    }
    const previous = seen.get(key);
    if (previous !== undefined) throw new FlagsFileError(file, n, `${key} is already set on line ${previous}`);
    seen.set(key, n);
    try {
      result[spec.flag] = spec.parse(value);
    } catch (err) {
      throw new FlagsFileError(file, n, `${key}: ${(err as Error).message}`);
    }
  }
  return result as Partial<RunFlags>;
}

export async function readFlagsFile(file: string): Promise<Partial<RunFlags>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new FlagsFileError(file, 0, `cannot read the flags file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseFlagsFile(text, file);
}

/**
 * The flags in force: `base` (the command line over the defaults), then the file for every flag that was not
 * given on the command line. A key removed from the file falls back to the default on the next reload.
 */
export function mergeFlags(base: RunFlags, file: Partial<RunFlags>, fromCommandLine: ReadonlySet<FlagName>): RunFlags {
  const merged: Record<string, unknown> = { ...base };
  for (const [flag, value] of Object.entries(file)) {
    if (!fromCommandLine.has(flag as FlagName) && value !== undefined) merged[flag] = value;
  }
  return merged as unknown as RunFlags;
}

/** Which flags differ, split into those a running agent applies and those that need a restart. */
export function diffFlags(running: RunFlags, next: RunFlags): { live: FlagName[]; restart: FlagName[] } {
  const live: FlagName[] = [];
  const restart: FlagName[] = [];
  const keys = new Set([...Object.keys(running), ...Object.keys(next)] as FlagName[]);
  for (const flag of keys) {
    if (running[flag] === next[flag]) continue;
    (LIVE_FLAGS.has(flag) ? live : restart).push(flag);
  }
  return { live, restart };
}

/** The --watch / --kubernetes rule, checked on the merged flags. */
export function checkMode(flags: RunFlags): void {
  if (flags.kubernetes !== true && flags.watch === undefined) {
    throw new Error('nslb run needs --watch DIR (file-watch mode) or --kubernetes (or NSLB_WATCH / NSLB_KUBERNETES in --config)');
  }
  if (flags.kubernetes === true && flags.watch !== undefined) throw new Error('--watch and --kubernetes exclude each other');
  // Without an API server there is nobody to ask whether a caller's token may read /metrics.
  if (flags.metricsListen !== undefined && flags.kubernetes !== true) {
    throw new Error('--metrics-listen needs --kubernetes (it authenticates callers through the API server); in file mode use --listen');
  }
  if (flags.serviceProvider === true && flags.kubernetes !== true) throw new Error('--service-provider needs --kubernetes: it serves Kubernetes Services');
}
