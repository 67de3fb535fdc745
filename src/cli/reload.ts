// SIGHUP: re-read --config and apply the flags a running agent can change (config-file.ts says which: the
// concurrency, the periods, the kernel-limit mode, the Kubernetes API rate limit, the log level); for the others,
// a warning that they need a restart. An invalid file changes nothing.
import type { Logger } from '../log/logger.js';
import { diffFlags, fileKey, flagName } from './config-file.js';
import type { FlagsFileOption, RunFlags } from './flags.js';

/** What a running agent can change without a restart. */
export interface LiveFlags {
  concurrency(n: number): void;
  kernelLimits(mode: RunFlags['kernelLimits']): void;
  kubeRateLimit(limit: { qps: number; burst: number }): void;
  periods(p: { resyncSeconds: number; statusIntervalMs: number }): void;
}

/** Returns the flags in force after the reload. */
export async function reloadFlags(
  config: FlagsFileOption | undefined,
  running: RunFlags,
  read: () => Promise<RunFlags>,
  apply: LiveFlags,
  logger: Logger,
): Promise<RunFlags> {
  if (config === undefined) {
    logger.warn('SIGHUP: this agent has no --config file; flags unchanged');
    return running;
  }
  let next: RunFlags;
  try {
    next = await read();
  } catch (err) {
    logger.error({ config: config.file, err: (err as Error).message }, 'SIGHUP: the --config file is invalid; keeping the flags in force');
    return running;
  }
  const { live, restart } = diffFlags(running, next);
  for (const flag of restart) {
    logger.warn(
      { flag: flagName(flag), key: fileKey(flag), running: running[flag] ?? null, file: next[flag] ?? null },
      `${fileKey(flag)} changed in ${config.file}: ${flagName(flag)} cannot change while the agent runs; restart it (systemctl restart nslb) to apply`,
    );
  }
  // Flags that need a restart keep their running values, so that the next reload warns again.
  const applied: Record<string, unknown> = { ...running };
  for (const flag of live) applied[flag] = next[flag];
  const flags = applied as unknown as RunFlags;
  if (live.includes('concurrency')) apply.concurrency(flags.concurrency);
  if (live.includes('kernelLimits')) apply.kernelLimits(flags.kernelLimits);
  if (live.includes('kubeApiQps') || live.includes('kubeApiBurst')) apply.kubeRateLimit({ qps: flags.kubeApiQps, burst: flags.kubeApiBurst });
  if (live.includes('resync') || live.includes('statusInterval')) apply.periods(periodsOf(flags));
  // The reload is confirmed at info when either the old or the new level shows info (warn → info says so).
  if (!logger.isLevelEnabled('info')) logger.level = flags.logLevel;
  logger.info(
    { config: config.file, changed: Object.fromEntries(live.map((f) => [flagName(f), flags[f]])), needRestart: restart.map(flagName) },
    live.length === 0 ? 'SIGHUP: reloaded --config; nothing to change' : 'SIGHUP: reloaded --config',
  );
  logger.level = flags.logLevel;
  return flags;
}

export function periodsOf(flags: RunFlags): { resyncSeconds: number; statusIntervalMs: number } {
  return { resyncSeconds: flags.resync, statusIntervalMs: flags.statusInterval };
}
