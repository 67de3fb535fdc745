// `nslb run --watch DIR`: the agent. Stopping it (SIGTERM, SIGINT, a crash) leaves load balancers serving.
import { netnsWatch } from '../drivers/netns/watch.js';
import { ovsMonitor } from '../drivers/ovs/monitor.js';
import { createServer, type Server } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { mkdir, chmod } from 'node:fs/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { lockStateDir } from '../controller/lock.js';
import { KernelLimits, type KernelLimitsMode } from '../controller/kernel-limits.js';
import { Manager, type ManagerOptions } from '../controller/manager.js';
import { HOST_PATHS } from '../drivers/kernel/limits.js';
import { runCommand } from '../exec/run.js';
import { daemonsInCgroup } from '../exec/daemon-cgroup.js';
import { observeRunningHaproxies, reportAdopted } from '../controller/adoption.js';
import { createLogger } from '../log/logger.js';
import { FileSource } from '../sources/file-source.js';
import { describeIssue } from '../sources/parse.js';
import { StatusFileWriter, type StatusFile } from '../status/status-file.js';
import { withMemberStats } from '../status/traffic.js';
import type { AgentMetrics } from '../metrics/metrics.js';
import { checkMode, diffFlags, fileKey, flagName, mergeFlags, readFlagsFile } from './config-file.js';
import { parseListen } from './options.js';

export interface RunFlags {
  watch?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  /** Kubernetes mode: only this namespace. */
  namespace?: string;
  stateDir: string;
  bridge: string;
  nodeName: string;
  listen: string;
  /** Kubernetes mode: /metrics over HTTPS for callers the API server authenticates and authorizes. */
  metricsListen?: string;
  /** Start daemons (HAProxy) in this cgroup of the host's, so that they outlive the agent's container. */
  daemonCgroup?: string;
  resync: number;
  concurrency: number;
  logLevel: string;
  /** Milliseconds between HAProxy stats polls (operating status). */
  statusInterval: number;
  /** raise: raise kernel limits that are too low for the load; check: report them only. */
  kernelLimits: KernelLimitsMode;
  /** Kubernetes mode: also serve Services of type LoadBalancer (class nslb.dev/haproxy). */
  serviceProvider?: boolean;
  /** With serviceProvider: also Services of type LoadBalancer that name no class. */
  servicesWithoutClass?: boolean;
  /** With serviceProvider: members are the nodes on the NodePort, or the endpoints directly. */
  serviceMembers?: 'nodes' | 'endpoints';
  /** With serviceProvider: seconds of the provider's leader-election Lease. */
  providerLease?: number;
  /** Kubernetes mode: status and Event writes per second, and at once (client-go's QPS and burst). */
  kubeApiQps: number;
  kubeApiBurst: number;
}

function serveHttp(listen: string, manager: Manager, lastStatus: () => StatusFile | undefined, metrics: AgentMetrics): Server {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    switch (req.url?.split('?')[0]) {
      case '/metrics':
        void metrics.render().then(
          (m) => send(200, m.body, m.contentType),
          (err: unknown) => send(500, `cannot render metrics: ${String(err)}\n`),
        );
        return;
      case '/healthz':
        return send(200, 'ok\n');
      case '/readyz':
        return manager.synced ? send(200, 'ok\n') : send(503, 'initial sync in progress\n');
      case '/status':
        return send(200, `${JSON.stringify(lastStatus() ?? { objects: [], errors: [] }, null, 2)}\n`, 'application/json');
      default:
        return send(404, 'not found\n');
    }
  });
  server.listen(port, host);
  return server;
}

/** What the agent reads desired objects from: a watched directory or the Kubernetes API. */
interface AgentSource {
  start(): Promise<void>;
  /** Re-read now (the periodic resync). */
  refresh(): Promise<void>;
  stop(): Promise<void>;
}

// @kubernetes/client-node is loaded in Kubernetes mode only: in file mode it would cost about a second of
// start-up and tens of MB of memory for nothing.
async function kubeConfigFor(flags: RunFlags): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (flags.kubeconfig !== undefined) kc.loadFromFile(flags.kubeconfig);
  else kc.loadFromCluster();
  return kc;
}

/** `--config FILE`: the flags file, and which flags the command line gave (those win over the file). */
export interface FlagsFileOption {
  file: string;
  fromCommandLine: ReadonlySet<keyof RunFlags>;
}

export async function runAgent(commandLine: RunFlags, config?: FlagsFileOption): Promise<void> {
  // The agent is a long-lived daemon whose work is mostly waiting on processes: V8's default heap growth,
  // tuned for throughput, let its RSS reach ~250 MB at 500 load balancers for ~30 MB of live objects. This
  // makes V8 collect before growing the heap (measured: peak RSS roughly halved, no change in convergence).
  setFlagsFromString('--optimize-for-size');
  // An unreadable or invalid flags file at start is fatal (exit 1, file and line); on SIGHUP it is not.
  const flagsFor = async (): Promise<RunFlags> => {
    const merged = config === undefined ? commandLine : mergeFlags(commandLine, await readFlagsFile(config.file), config.fromCommandLine);
    checkMode(merged);
    return merged;
  };
  let flags = await flagsFor();
  const logger = createLogger(flags.logLevel);
  // Signal handlers first, and never removed: a SIGTERM that arrives while we start, or a second one while we
  // stop, ends the agent at once; the first one after start-up stops it gracefully.
  let stopping = false;
  let onStop: ((signal: NodeJS.Signals) => void) | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    // Still starting (nothing to stop gracefully yet), or a second signal: go now, as the default action would.
    if (onStop === undefined || stopping) process.exit(signal === 'SIGINT' ? 130 : 143);
    stopping = true;
    onStop(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGHUP re-reads --config (systemctl reload). Node's default for SIGHUP is to exit: never let it.
  let onReload: (() => Promise<void>) | undefined;
  let reloadPending = false;
  let reloading: Promise<void> = Promise.resolve();
  const onHup = (): void => {
    if (onReload === undefined) {
      reloadPending = true;
      return;
    }
    reloading = reloading.then(onReload);
  };
  process.on('SIGHUP', onHup);

  await mkdir(flags.stateDir, { recursive: true, mode: 0o700 });
  await chmod(flags.stateDir, 0o700);
  const unlock = await lockStateDir(flags.stateDir);

  const fileWriter = new StatusFileWriter(flags.stateDir);
  let lastStatus: StatusFile | undefined;
  let sink: (file: StatusFile) => Promise<void> = async (file) => {
    await fileWriter.write(file);
  };
  let onRemoved: ((key: string) => Promise<void>) | undefined;
  let onEvent: ManagerOptions['onEvent'];
  let onProblem: ManagerOptions['onProblem'];
  let setKubeRateLimit: ((limit: { qps: number; burst: number }) => void) | undefined;
  // prom-client is loaded here only: one-shot commands stay quick.
  const { createAgentMetrics } = await import('../metrics/metrics.js');
  const kernelLimits = new KernelLimits({ paths: HOST_PATHS, mode: flags.kernelLimits, logger });
  let files: FileSource | undefined;
  const manager: Manager = new Manager({
    run: daemonsInCgroup(runCommand, flags.daemonCgroup),
    stateDir: flags.stateDir,
    bridge: flags.bridge,
    nodeName: flags.nodeName,
    concurrency: flags.concurrency,
    logger,
    publish: async (file) => {
      // Members' traffic figures go to status.json and /status only (see status/traffic.ts).
      const withStats = withMemberStats(file, manager.loadBalancerStats());
      lastStatus = withStats;
      await sink(withStats);
    },
    onRemoved: async (key) => onRemoved?.(key),
    onEvent: (e) => onEvent?.(e),
    onProblem: (p) => onProblem?.(p),
    onReconciled: (key, result, seconds) => metrics.observeReconcile(key, result, seconds),
    kernelLimits,
    watchedPaths: () => files?.watchedPaths(),
  });
  const metrics = createAgentMetrics(manager, { kernelLimits });

  let source: AgentSource;
  let closeSecure = (): void => {};
  if (flags.kubernetes === true) {
    const kc = await kubeConfigFor(flags);
    const { kubernetesMode } = await import('./kubernetes-mode.js');
    const k8s = kubernetesMode({
      kubeConfig: kc,
      ...(flags.namespace === undefined ? {} : { namespace: flags.namespace }),
      nodeName: flags.nodeName,
      rateLimit: { qps: flags.kubeApiQps, burst: flags.kubeApiBurst },
      manager,
      logger,
      metrics,
      fileWriter,
      ...(flags.serviceProvider === true
        ? {
            provider: {
              withoutClass: flags.servicesWithoutClass === true,
              members: flags.serviceMembers === 'endpoints' ? 'Endpoints' : 'Nodes',
              leaseSeconds: flags.providerLease ?? 15,
            },
          }
        : {}),
    });
    sink = (file) => k8s.publish(file);
    onRemoved = (key) => k8s.onRemoved(key);
    onEvent = k8s.onEvent;
    onProblem = (p) => k8s.onProblem(p);
    setKubeRateLimit = (limit) => k8s.setRateLimit(limit);
    source = k8s;
    if (flags.metricsListen !== undefined) {
      const { serveSecureMetrics } = await import('./metrics-server.js');
      const secure = await serveSecureMetrics({
        listen: flags.metricsListen, kubeConfig: kc, stateDir: flags.stateDir, run: runCommand, logger, render: () => metrics.render(),
      });
      closeSecure = () => secure.close();
    }
  } else {
    let logged = new Set<string>();
    files = new FileSource(flags.watch!, {
      onSnapshot: (s) => {
        // Each broken file is logged once when it breaks, not on every resync's re-read.
        const now = new Set<string>();
        for (const issue of s.issues) {
          const text = describeIssue(issue);
          if (!logged.has(text)) logger.warn({ file: issue.file, document: issue.document }, text);
          now.add(text);
        }
        logged = now;
        manager.setSourceError(undefined);
        manager.setSnapshot(s.objects, s.issues, s.materials);
      },
      onError: (err) => {
        logger.error({ err }, 'cannot read the watched directory; keeping the last snapshot');
        manager.setSourceError(`cannot read the watched directory ${flags.watch!}: ${err.message}; nothing is torn down, the last valid snapshot stays in force`);
      },
    });
    source = files;
  }

  const mode = flags.kubernetes === true ? { kubernetes: flags.namespace ?? 'all namespaces' } : { watch: flags.watch };
  logger.info({ ...mode, stateDir: flags.stateDir, bridge: flags.bridge }, 'nslb starting');
  if (!isLoopback(parseListen(flags.listen).host)) {
    logger.warn({ listen: flags.listen }, '--listen is not on loopback: /status (every load balancer\'s spec) and /metrics answer anyone who reaches it, unauthenticated');
  }
  const server = serveHttp(flags.listen, manager, () => lastStatus, metrics);
  server.on('listening', () => {
    const a = server.address();
    const at = a !== null && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : flags.listen;
    logger.info({ listen: at }, 'serving /healthz, /readyz, /status, /metrics');
  });
  server.on('error', (err) => logger.error({ err, listen: flags.listen }, 'cannot serve health endpoints'));
  // Changes inside the load balancers' netns arrive as events; unchanged netns are not read again.
  netnsWatch.start(logger);
  ovsMonitor.start(logger);
  const runningBefore = await observeRunningHaproxies(flags.stateDir);
  await source.start();
  await manager.initialSyncDone();
  logger.info('initial sync done');
  await reportAdopted(runningBefore, flags.stateDir, logger, (e) => onEvent?.(e));
  const stopExitWatch = manager.watchHaproxyExits();

  let resync: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;
  const startTimers = (): void => {
    clearInterval(resync);
    clearInterval(poll);
    resync = setInterval(() => {
      void (async () => {
        await source.refresh();
        await manager.resync();
      })().catch((err: unknown) => logger.error({ err }, 'resync failed'));
    }, flags.resync * 1000);
    poll = setInterval(() => {
      manager.pollStats().catch((err: unknown) => logger.error({ err }, 'stats poll failed'));
    }, flags.statusInterval);
  };
  startTimers();

  onReload = async () => {
    if (config === undefined) {
      logger.warn('SIGHUP: this agent has no --config file; flags unchanged');
      return;
    }
    let next: RunFlags;
    try {
      next = await flagsFor();
    } catch (err) {
      logger.error({ config: config.file, err: (err as Error).message }, 'SIGHUP: the --config file is invalid; keeping the flags in force');
      return;
    }
    const { live, restart } = diffFlags(flags, next);
    for (const flag of restart) {
      logger.warn(
        { flag: flagName(flag), key: fileKey(flag), running: flags[flag] ?? null, file: next[flag] ?? null },
        `${fileKey(flag)} changed in ${config.file}: ${flagName(flag)} cannot change while the agent runs; restart it (systemctl restart nslb) to apply`,
      );
    }
    // Flags that need a restart keep their running values, so that the next reload warns again.
    const applied: Record<string, unknown> = { ...flags };
    for (const flag of live) applied[flag] = next[flag];
    flags = applied as unknown as RunFlags;
    if (live.includes('concurrency')) manager.setConcurrency(flags.concurrency);
    if (live.includes('kernelLimits')) kernelLimits.setMode(flags.kernelLimits);
    if (live.includes('kubeApiQps') || live.includes('kubeApiBurst')) setKubeRateLimit?.({ qps: flags.kubeApiQps, burst: flags.kubeApiBurst });
    if (live.includes('resync') || live.includes('statusInterval')) startTimers();
    // The reload is confirmed at info when either the old or the new level shows info (warn → info says so).
    if (!logger.isLevelEnabled('info')) logger.level = flags.logLevel;
    logger.info(
      { config: config.file, changed: Object.fromEntries(live.map((f) => [flagName(f), flags[f]])), needRestart: restart.map(flagName) },
      live.length === 0 ? 'SIGHUP: reloaded --config; nothing to change' : 'SIGHUP: reloaded --config',
    );
    logger.level = flags.logLevel;
  };
  if (reloadPending) onHup();

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'stopping; load balancers keep serving');
      resolve();
    };
    onStop = stop;
  });
  clearInterval(resync);
  clearInterval(poll);
  stopExitWatch();
  netnsWatch.stop();
  ovsMonitor.stop();
  onReload = async () => {};
  await reloading;
  server.close();
  closeSecure();
  await source.stop();
  await manager.stop();
  await unlock();
  logger.flush();
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
