#!/usr/bin/env node
// The `nslb` command (DESIGN §3). Thin: parse flags, call one function, exit with its code.
import { Command, InvalidArgumentError, Option } from 'commander';
import { KERNEL_LIMITS_MODES, type KernelLimitsMode } from '../controller/kernel-limits.js';
import { cleanup } from './cleanup.js';
import { drain } from './drain.js';
import { LOG_LEVELS } from './config-file.js';
import { importOctaviaFiles } from './import.js';
import { DEFAULTS, parsePositiveInt, parsePositiveNumber, parseShare } from './options.js';
import { printPlan } from './plan.js';
import type { RunFlags } from './flags.js';
import { showStatus } from './status.js';
import { validate } from './validate.js';

function positive(flag: string, parse: (v: string) => number = parsePositiveInt(flag)) {
  return (v: string): number => {
    try {
      return parse(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

const stateDirOption = (): Option => new Option('--state-dir <dir>', 'where nslb keeps its state').default(DEFAULTS.stateDir);
const bridgeOption = (): Option => new Option('--bridge <name>', 'default OVS bridge for VIP ports').default(DEFAULTS.bridge);

const program = new Command('nslb')
  .description('Declarative load balancers for Linux network nodes: one netns, OVS port and HAProxy per load balancer.')
  .showHelpAfterError();

program
  .command('run')
  .description('reconcile load balancers forever (--watch DIR, or --kubernetes)')
  .option('--watch <dir>', 'directory of *.yaml, *.yml, *.json manifests (may be a symlink to a checkout)')
  .option('--kubernetes', 'Kubernetes mode: watch the nslb.dev custom resources')
  .option('--kubeconfig <file>', 'kubeconfig for --kubernetes (default: in-cluster config)')
  .option('--namespace <ns>', 'with --kubernetes: only this namespace (default: all)')
  .addOption(stateDirOption())
  .addOption(bridgeOption())
  .option('--node-name <name>', 'this node, as reported in status', DEFAULTS.nodeName)
  .option('--listen <host:port>', '/healthz, /readyz, /status, /metrics, unauthenticated: keep it on loopback', DEFAULTS.listen)
  .option(
    '--metrics-listen <host:port>',
    'with --kubernetes: /metrics over HTTPS, for bearer tokens the API server authenticates and authorizes (GET /metrics)',
  )
  .option('--daemon-cgroup <path>', "start HAProxy in this host cgroup (e.g. /nslb) so that it outlives the agent's container")
  .option('--resync <seconds>', 'full resync (drift repair) period', positive('--resync'), DEFAULTS.resync)
  .option('--concurrency <n>', 'load balancers reconciled at once', positive('--concurrency'), DEFAULTS.concurrency)
  .option('--status-interval <ms>', 'how often HAProxy stats are read for operating status', positive('--status-interval'), 1000)
  .option(
    '--kube-api-qps <n>',
    'with --kubernetes: status and Event writes per second to the API server (client-go QPS)',
    positive('--kube-api-qps', parsePositiveNumber('--kube-api-qps')),
    DEFAULTS.kubeApiQps,
  )
  .option('--kube-api-burst <n>', 'with --kubernetes: writes that may go at once (client-go burst)', positive('--kube-api-burst'), DEFAULTS.kubeApiBurst)
  .addOption(new Option('--log-level <level>', 'how much to log').choices(LOG_LEVELS).default(DEFAULTS.logLevel))
  .addOption(
    new Option(
      '--kernel-limits <mode>',
      'raise: raise kernel limits the load balancers need (neighbour tables, pid_max, …; upward only); check: only report those too low',
    )
      .choices(KERNEL_LIMITS_MODES)
      .default(DEFAULTS.kernelLimits),
  )
  .option('--service-provider', 'with --kubernetes: also serve Services of type LoadBalancer with spec.loadBalancerClass nslb.dev/haproxy')
  .option('--services-without-class', 'with --service-provider: also Services of type LoadBalancer that name no class')
  .addOption(
    new Option(
      '--service-members <members>',
      'with --service-provider: members are the Ready nodes on the NodePort, or the ready endpoints (pods routable from this node)',
    )
      .choices(['nodes', 'endpoints'])
      .default('nodes'),
  )
  .option(
    '--provider-lease <seconds>',
    'with --service-provider: seconds of the Lease nslb-provider that lets one agent at a time be the provider',
    positive('--provider-lease'),
    15,
  )
  .option(
    '--node-lease <seconds>',
    'with --kubernetes: seconds of the Lease nslb-node-<node>, renewed every quarter of it; a node whose Lease expired is dead and what it served is placed again',
    positive('--node-lease'),
    6,
  )
  .option(
    '--restart-grace <seconds>',
    'with --kubernetes: on a clean stop (upgrade, restart) the node Lease is renewed for this long, so that nothing moves while the agent is replaced',
    positive('--restart-grace'),
    30,
  )
  .option(
    '--scheduler-lease <seconds>',
    'with --kubernetes: seconds of the Lease nslb-scheduler that lets one agent at a time schedule',
    positive('--scheduler-lease'),
    10,
  )
  .option(
    '--failover-threshold <share>',
    'with --kubernetes: when more than this share of the known nodes is dead at once, nothing is moved off them (circuit breaker, Octavia failover_threshold)',
    positive('--failover-threshold', parseShare('--failover-threshold')),
    0.5,
  )
  .option(
    '--drain-concurrency <n>',
    'with --kubernetes: a drain (nslb.dev/drain=true) hands over at most this many load balancers at once (a pair whose MASTER leaves the node, a SINGLE one); a pair whose BACKUP leaves moves at once',
    positive('--drain-concurrency'),
    DEFAULTS.drainConcurrency,
  )
  .option('--config <file>', 'flags file (NSLB_LOG_LEVEL=debug lines, as deploy/nslb.env); re-read on SIGHUP; the command line wins')
  .action(async (o: Record<string, unknown>, command: Command) => {
    const flags: RunFlags = {
      ...(typeof o.watch === 'string' ? { watch: o.watch } : {}),
      ...(o.kubernetes === true ? { kubernetes: true } : {}),
      ...(typeof o.kubeconfig === 'string' ? { kubeconfig: o.kubeconfig } : {}),
      ...(typeof o.namespace === 'string' ? { namespace: o.namespace } : {}),
      stateDir: o.stateDir as string,
      bridge: o.bridge as string,
      nodeName: o.nodeName as string,
      listen: o.listen as string,
      ...(typeof o.metricsListen === 'string' ? { metricsListen: o.metricsListen } : {}),
      ...(typeof o.daemonCgroup === 'string' ? { daemonCgroup: o.daemonCgroup } : {}),
      resync: o.resync as number,
      concurrency: o.concurrency as number,
      logLevel: o.logLevel as string,
      statusInterval: o.statusInterval as number,
      kernelLimits: o.kernelLimits as KernelLimitsMode,
      ...(o.serviceProvider === true ? { serviceProvider: true } : {}),
      ...(o.servicesWithoutClass === true ? { servicesWithoutClass: true } : {}),
      serviceMembers: o.serviceMembers as 'nodes' | 'endpoints',
      providerLease: o.providerLease as number,
      nodeLease: o.nodeLease as number,
      restartGrace: o.restartGrace as number,
      schedulerLease: o.schedulerLease as number,
      failoverThreshold: o.failoverThreshold as number,
      drainConcurrency: o.drainConcurrency as number,
      kubeApiQps: o.kubeApiQps as number,
      kubeApiBurst: o.kubeApiBurst as number,
    };
    const fromCommandLine = new Set((Object.keys(flags) as (keyof RunFlags)[]).filter((k) => command.getOptionValueSource(k) === 'cli'));
    // Loaded here only: the agent's modules (the Kubernetes client, prom-client) take seconds to load,
    // which one-shot commands should not pay.
    const { runAgent } = await import('./run.js');
    await runAgent(flags, typeof o.config === 'string' ? { file: o.config, fromCommandLine } : undefined);
  });

program
  .command('validate')
  .description('validate manifest files and directories offline')
  .argument('<path...>')
  .addOption(bridgeOption())
  .action(async (paths: string[], o: { bridge: string }) => {
    process.exitCode = await validate(paths, o);
  });

program
  .command('plan')
  .description('print the actions a reconcile would take now; change nothing')
  .requiredOption('--watch <dir>', 'directory of manifests')
  .addOption(stateDirOption())
  .addOption(bridgeOption())
  .option('--node-name <name>', 'plan as the agent of this node does (spec.placement, ACTIVE_STANDBY)', DEFAULTS.nodeName)
  .action(async (o: { watch: string; stateDir: string; bridge: string; nodeName: string }) => {
    process.exitCode = await printPlan(o);
  });

program
  .command('status')
  .description('status tree of every load balancer, or of those named (namespace/name, or name in any namespace)')
  .argument('[lb...]', 'load balancers to show (default: all)')
  .option('--lb <name>', 'a load balancer to show (repeatable; same as naming it as an argument)', (v: string, all: string[]) => [...all, v], [] as string[])
  .addOption(
    new Option('-o, --output <format>', 'output format (colour only for table on a terminal, never with NO_COLOR)')
      .choices(['table', 'json', 'yaml'])
      .default('table'),
  )
  .option('--wait', 'block until every object shown is ACTIVE (exit 0), or one is ERROR or time runs out (exit 1)', false)
  .option('--timeout <seconds>', 'with --wait', positive('--timeout'), 300)
  .addOption(stateDirOption())
  .action(async (lbs: string[], o: { output: 'table' | 'json' | 'yaml'; wait: boolean; timeout: number; stateDir: string; lb: string[] }) => {
    process.exitCode = await showStatus({ output: o.output, wait: o.wait, timeout: o.timeout, stateDir: o.stateDir, lbs: [...lbs, ...o.lb] });
  });

program
  .command('cleanup')
  .description("remove everything nslb created on this node (found by nslb's markers only)")
  .option('--dry-run', 'print what would be removed', false)
  .addOption(
    new Option('--scope <scope>', "node: everything with nslb's markers; state-dir: only what the agent with --state-dir made")
      .choices(['node', 'state-dir'])
      .default('node'),
  )
  .addOption(stateDirOption())
  .addOption(bridgeOption())
  .option('--daemon-cgroup <path>', "the agent's --daemon-cgroup: its directories are removed too, once empty")
  .action(async (o: { stateDir: string; dryRun: boolean; scope: 'node' | 'state-dir'; daemonCgroup?: string }) => {
    process.exitCode = await cleanup(o);
  });

program
  .command('drain')
  .description('on NODE: hand the MASTER role of every ACTIVE_STANDBY load balancer to its peer without losing a request')
  .argument('<node>', "this node's --node-name (the agent of --state-dir must be it)")
  .option('--dry-run', 'say what would move', false)
  .option('--force', 'hand over even when the peer is not ready (nobody may serve the VIP then)', false)
  .addOption(stateDirOption())
  .action(async (node: string, o: { stateDir: string; dryRun: boolean; force: boolean }) => {
    process.exitCode = await drain({ node, ...o });
  });

program
  .command('import')
  .description('convert load balancers from another system into nslb YAML')
  .command('octavia')
  .description("Octavia's JSON (API responses, `openstack loadbalancer … -f json`, the status tree) → nslb YAML; warnings on stderr")
  .argument('<file...>', 'JSON files ("-" for stdin)')
  .option('--namespace <ns>', 'metadata.namespace of every object', 'default')
  .option('-o, --output <file>', 'write the YAML here instead of stdout')
  .action(async (files: string[], o: { namespace: string; output?: string }) => {
    process.exitCode = await importOctaviaFiles(files, o);
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`nslb: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
