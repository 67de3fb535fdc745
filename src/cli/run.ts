// `nslb run`: the agent, put together (the composition root). Stopping it (SIGTERM, SIGINT, a crash) leaves load
// balancers serving.
import { chmod, mkdir } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { reportAdopted } from '../controller/adoption.js';
import { Controller } from '../controller/controller.js';
import { KernelLimits } from '../controller/kernel-limits.js';
import { lockStateDir } from '../controller/lock.js';
import { probeSctp } from '../drivers/nft/nft.js';
import { LinuxNodeDriver } from '../drivers/node-driver.js';
import { daemonsInCgroup } from '../exec/daemon-cgroup.js';
import { commandRunner, SpawnCounter, useSpawner } from '../exec/run.js';
import { createLogger } from '../log/logger.js';
import { LatestStatusFile, StatusFileWriter } from '../status/status-file.js';
import type { AgentMode } from './agent-mode.js';
import { checkMode, mergeFlags, readFlagsFile } from './config-file.js';
import { fileMode } from './file-mode.js';
import type { FlagsFileOption, RunFlags } from './flags.js';
import { serveHttp } from './http-server.js';
import { periodsOf, reloadFlags } from './reload.js';
import { AgentSignals } from './signals.js';

export async function runAgent(commandLine: RunFlags, config?: FlagsFileOption): Promise<void> {
  // The agent is a long-lived daemon whose work is mostly waiting on processes: V8's default heap growth, tuned for
  // throughput, let its RSS grow to several times its live objects at hundreds of load balancers. This makes V8
  // collect before growing the heap (bench/: peak RSS, with no change in convergence).
  setFlagsFromString('--optimize-for-size');
  // An unreadable or invalid flags file at start is fatal (exit 1, file and line); on SIGHUP it is not.
  const readFlags = async (): Promise<RunFlags> => {
    const merged = config === undefined ? commandLine : mergeFlags(commandLine, await readFlagsFile(config.file), config.fromCommandLine);
    checkMode(merged);
    return merged;
  };
  let flags = await readFlags();
  const logger = createLogger(flags.logLevel);
  const signals = new AgentSignals();
  await mkdir(flags.stateDir, { recursive: true, mode: 0o700 });
  await chmod(flags.stateDir, 0o700);
  const unlock = await lockStateDir(flags.stateDir);

  // The agent starts hundreds of processes in a drain: from a small process of its own (exec/spawner.ts).
  useSpawner();
  const spawns = new SpawnCounter();
  const run = commandRunner(spawns);
  const node = new LinuxNodeDriver({
    run: daemonsInCgroup(run, flags.daemonCgroup),
    stateDir: flags.stateDir,
    spawns,
    ...(flags.daemonCgroup === undefined ? {} : { daemonCgroup: flags.daemonCgroup }),
  });
  const kernelLimits = new KernelLimits({ kernel: node.kernel, mode: flags.kernelLimits, logger });
  // What the kernel offers SCTP listeners, once: a kernel does not gain conntrack's SCTP tracker while running.
  const sctp = await probeSctp();
  if (sctp.reason !== undefined) logger.warn({ sctp }, 'SCTP listeners are not supported on this node');
  const statusFile = new LatestStatusFile(new StatusFileWriter(flags.stateDir), (err) => logger.error({ err }, 'cannot write status.json'));
  const engine = (): Controller => controller;
  const mode: AgentMode =
    flags.kubernetes === true
      ? await (await import('./kubernetes-mode.js')).kubernetesModeFor(flags, { engine, statusFile, run, logger })
      : fileMode(flags.watch!, engine, statusFile, logger);
  // prom-client is loaded here only: one-shot commands stay quick.
  const { createAgentMetrics } = await import('../metrics/metrics.js');
  const controller: Controller = new Controller({
    node,
    stateDir: flags.stateDir,
    bridge: flags.bridge,
    nodeName: flags.nodeName,
    concurrency: flags.concurrency,
    logger,
    publish: (file) => mode.publish(file),
    onRemoved: (key) => mode.onRemoved(key),
    onEvent: (e) => mode.onEvent(e),
    onProblem: (p) => mode.onProblem(p),
    onReconciled: (key, result, seconds) => metrics.observeReconcile(key, result, seconds),
    kernelLimits,
    ...(sctp.reason === undefined ? {} : { sctpUnsupported: sctp.reason }),
    watchedPaths: () => mode.watchedPaths(),
    spawned: () => spawns.total,
  });
  const metrics = createAgentMetrics(controller, {
    kernelLimits,
    counters: {
      engine: node.counters,
      spawnsByTool: spawns.byTool,
      spawnSecondsByTool: spawns.secondsByTool,
      publishes: controller.publishes,
    },
  });
  await mode.addMetrics(metrics);

  logger.info({ ...mode.describe, stateDir: flags.stateDir, bridge: flags.bridge }, 'nslb starting');
  const server = serveHttp(flags.listen, { ready: () => controller.synced, status: () => controller.lastStatus, metrics: () => metrics.render() }, logger);
  node.startWatching(logger);
  const runningBefore = node.runningHaproxies();
  await mode.start();
  await controller.initialSyncDone();
  logger.info('initial sync done');
  reportAdopted(
    runningBefore,
    () => node.runningHaproxies(),
    logger,
    (e) => mode.onEvent(e),
  );
  controller.startPeriodic(periodsOf(flags), () => mode.refresh());

  signals.handleReloads(async () => {
    flags = await reloadFlags(
      config,
      flags,
      readFlags,
      {
        concurrency: (n) => controller.setConcurrency(n),
        kernelLimits: (m) => kernelLimits.setMode(m),
        kubeRateLimit: (limit) => mode.setRateLimit(limit),
        periods: (p) => controller.setPeriods(p),
      },
      logger,
    );
  });
  logger.info({ signal: await signals.stopRequested() }, 'stopping; load balancers keep serving');
  controller.stopPeriodic();
  node.stopWatching();
  await signals.endReloads();
  server.close();
  await mode.stop();
  await controller.stop();
  // The last status (published by the stop) on disk before the agent exits.
  await statusFile.settled();
  await unlock();
  logger.flush();
}
