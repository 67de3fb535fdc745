// Pure: which kernel limits the node's load depends on, what each must be for the load balancers this agent
// serves, and what nslb sets when it raises one. See docs/operations.md "Node sizing" for the reasoning.
//
// Every limit here is one for the whole machine (or the agent's own cgroup), shared by every namespace on it:
// one load balancer too many does not fail on its own, it makes the node refuse new neighbours or processes
// for everyone. Each check has a `required` value (below it the load does not fit) and a `target` (required with
// headroom, what a raise sets), so that a growing node is raised rarely, in steps, never lowered.
import { inPrefix, parseIp } from '../desired/addresses.js';
import { vipAddresses, type DesiredLoadBalancer } from '../desired/model.js';
import { HAPROXY_THREADS } from './haproxy-config.js';
import { hasKernelListeners } from './kernel-model.js';

/** Neighbour entries one load balancer's namespace may hold for clients on its VIP segment. */
export const CLIENT_NEIGHBOURS_PER_LB = 8;
/** Neighbour entries left to the rest of the node (its own interfaces, other namespaces): the kernel's gc_thresh2. */
export const NODE_NEIGHBOURS = 512;
/** Open files one load balancer's HAProxy (master and worker) holds at rest: listeners, sockets, pipes, checks. */
export const FILES_PER_LB = 64;
/** Network and mount namespaces left to the rest of the node (containers, other tools): not countable cheaply. */
export const NODE_NAMESPACES = 1024;
/** inotify watches left to the rest of the node: the kernel's old default for max_user_watches. */
export const NODE_INOTIFY_WATCHES = 8192;
/**
 * conntrack entries one load balancer's namespace may hold for its UDP and SCTP flows (one per flow, for the
 * listener's idle timeout): a DNS or syslog service with tens of thousands of clients, each from its own port.
 */
export const FLOWS_PER_KERNEL_LB = 65_536;
/** What a raise sets, as a multiple of what is required (headroom for growth until the next check). */
export const HEADROOM = 2;
/** Neighbour limits raised because the kernel refused entries grow at most to this multiple of the computed need. */
const OVERFLOW_CAP = 8;

export type Family = 'ipv4' | 'ipv6';

/** What the load balancers this agent serves need from the node. */
export interface NodeLoad {
  loadBalancers: number;
  /** Of them, how many have a HAProxy running now (their tasks and files are already counted in the node's usage). */
  running: number;
  /** Neighbour entries the load balancers' namespaces may hold, per family. */
  neighbours: Record<Family, number>;
  /** Files and directories the file source watches (one inotify watch each); absent in Kubernetes mode. */
  watchedPaths?: number;
  /** Of them, how many have UDP or SCTP listeners (forwarded by the kernel, one conntrack entry per flow). */
  kernelForwarding?: number;
}

/** What the kernel says now. A value that cannot be read (another network namespace, an older kernel) is absent. */
export interface KernelReadings {
  sysctls: Partial<Record<Sysctl, number>>;
  /** Tasks (threads) on the machine now: /proc/loadavg. */
  tasks?: number;
  /** The agent's own cgroup (systemd's TasksMax=, a pod's pids limit): tasks now and the limit (undefined = none). */
  cgroupPids?: { current: number; max: number | undefined };
  /** File handles allocated on the machine now: /proc/sys/fs/file-nr. */
  files?: number;
  /** Neighbour tables that refused new entries (table full) since the last reading. */
  overflowed: Record<Family, boolean>;
}

/** Counters of one neighbour table: entries now, and how often it was full (summed over CPUs) since boot. */
export interface NeighbourTableStats {
  entries: number;
  tableFulls: number;
}

export type RaiseResult = { ok: true } | { ok: false; reason: string };

/** What the kernel-limit checks need of the node (drivers/kernel/limits.ts on a real one). */
export interface KernelAccess {
  /** Everything planKernelLimits needs to know, except overflows. */
  read(): Omit<KernelReadings, 'overflowed'>;
  /** Writes a sysctl (only ever raising it) and reads it back. */
  raise(name: LimitName, value: number): RaiseResult;
  /** Which neighbour tables refused entries since the last call (the first call only takes the baseline). */
  pollNeighbours(): { overflowed: Record<Family, boolean>; stats: Partial<Record<Family, NeighbourTableStats>> };
}

export const SYSCTLS = [
  'net.ipv4.neigh.default.gc_thresh3',
  'net.ipv4.neigh.default.gc_thresh2',
  'net.ipv6.neigh.default.gc_thresh3',
  'net.ipv6.neigh.default.gc_thresh2',
  'kernel.pid_max',
  'kernel.threads-max',
  'user.max_net_namespaces',
  'user.max_mnt_namespaces',
  'fs.file-max',
  'fs.inotify.max_user_watches',
  'net.netfilter.nf_conntrack_max',
] as const;
export type Sysctl = (typeof SYSCTLS)[number];

/** A limit that is not a sysctl nslb may write: the agent's cgroup's pids.max (systemd or the kubelet own it). */
export const CGROUP_PIDS = 'cgroup pids.max';
export type LimitName = Sysctl | typeof CGROUP_PIDS;

/**
 * What a limit too low breaks. `neighbours-*`: the node refuses new neighbour entries of that family, so a load
 * balancer of that family may be unreachable for new clients and cannot resolve its members (never ONLINE then).
 * `neighbour-gc-*`: entries idle for 5 s are dropped and resolved again (churn, not refusal). The others make
 * creating load balancers (netns, HAProxy) or watching manifests fail. `conntrack`: a load balancer with more UDP or
 * SCTP flows than it allows drops new ones ("nf_conntrack: table full, dropping packet").
 */
export type Impact =
  | 'neighbours-ipv4'
  | 'neighbours-ipv6'
  | 'neighbour-gc-ipv4'
  | 'neighbour-gc-ipv6'
  | 'processes'
  | 'namespaces'
  | 'files'
  | 'watches'
  | 'conntrack';

export interface LimitCheck {
  name: LimitName;
  /** Absent when it cannot be read here. */
  current?: number;
  /** Below this the load does not fit. */
  required: number;
  /** What nslb sets when it raises (required with headroom, rounded up). */
  target: number;
  impact: Impact;
  /** nslb may write it (a sysctl); false for limits others own, which are reported only. */
  settable: boolean;
  /** Why this much, in one line (logs, status, docs). */
  why: string;
}

export type LimitVerdict = 'ok' | 'raise' | 'insufficient' | 'unknown';

/** ok: enough; raise: too low and nslb may raise it; insufficient: too low and nslb will not or cannot; unknown: unreadable. */
export function verdictOf(check: LimitCheck, mayRaise: boolean): LimitVerdict {
  if (check.current === undefined) return 'unknown';
  if (check.current >= check.required) return 'ok';
  return mayRaise && check.settable ? 'raise' : 'insufficient';
}

const roundUp = (n: number, step = 1024): number => Math.ceil(n / step) * step;
const withHeadroom = (required: number): number => roundUp(required * HEADROOM);

/** Distinct neighbours one load balancer's namespace resolves, per family (zero for a family it has no address of). */
export function neighboursOf(lb: DesiredLoadBalancer): Record<Family, number> {
  const result: Record<Family, number> = { ipv4: 0, ipv6: 0 };
  const own = vipAddresses(lb.vip);
  for (const family of [4, 6] as const) {
    const addresses = own.filter((a) => a.family === family);
    if (addresses.length === 0) continue;
    const onLink = new Set<string>();
    for (const p of lb.pools) {
      for (const m of p.members) {
        for (const target of [m.address, m.monitorAddress]) {
          const ip = target === undefined ? undefined : parseIp(target);
          if (ip === undefined || ip.family !== family) continue;
          const local = addresses.some((a) => {
            const net = parseIp(a.address);
            return net !== undefined && inPrefix(ip, net, a.prefixLength);
          });
          // Off-link members are reached through the gateway: one entry, counted below.
          if (local) onLink.add(target!);
        }
      }
    }
    const gateway = addresses.some((a) => a.gateway !== undefined) ? 1 : 0;
    result[family === 4 ? 'ipv4' : 'ipv6'] = onLink.size + gateway + CLIENT_NEIGHBOURS_PER_LB;
  }
  return result;
}

export function nodeLoadOf(lbs: Iterable<DesiredLoadBalancer>, running: number, watchedPaths?: number): NodeLoad {
  const load: NodeLoad = { loadBalancers: 0, running, neighbours: { ipv4: 0, ipv6: 0 } };
  let kernelForwarding = 0;
  for (const lb of lbs) {
    load.loadBalancers++;
    const n = neighboursOf(lb);
    load.neighbours.ipv4 += n.ipv4;
    load.neighbours.ipv6 += n.ipv6;
    if (hasKernelListeners(lb)) kernelForwarding++;
  }
  if (kernelForwarding > 0) load.kernelForwarding = kernelForwarding;
  if (watchedPaths !== undefined) load.watchedPaths = watchedPaths;
  return load;
}

/** Tasks one load balancer holds: the HAProxy master and its worker's threads (however many CPUs the node has). */
export const TASKS_PER_LB = 1 + HAPROXY_THREADS;

function neighbourChecks(family: Family, load: NodeLoad, readings: KernelReadings): LimitCheck[] {
  const need = load.neighbours[family] + NODE_NEIGHBOURS;
  const thresh3 = `net.${family}.neigh.default.gc_thresh3` as const;
  const thresh2 = `net.${family}.neigh.default.gc_thresh2` as const;
  const current3 = readings.sysctls[thresh3];
  let required = need;
  let target = withHeadroom(need);
  let why = `${load.neighbours[family]} neighbour entries for ${load.loadBalancers} load balancers (members, gateway, ${CLIENT_NEIGHBOURS_PER_LB} clients each) + ${NODE_NEIGHBOURS} for the rest of the node`;
  // The kernel refused entries although the computed need fits: something else on the node holds them. Grow in
  // steps, but boundedly: a flood of neighbours from a segment must not raise the limit forever.
  if (readings.overflowed[family] && current3 !== undefined && current3 < need * OVERFLOW_CAP) {
    required = Math.max(required, current3 + 1);
    target = Math.max(target, Math.min(roundUp(current3 * HEADROOM), roundUp(need * OVERFLOW_CAP)));
    why = `the kernel refused new ${family} neighbours at ${current3} entries (table full); ${why}`;
  }
  return [
    { name: thresh3, ...(current3 === undefined ? {} : { current: current3 }), required, target, impact: `neighbours-${family}`, settable: true, why },
    {
      name: thresh2,
      ...(readings.sysctls[thresh2] === undefined ? {} : { current: readings.sysctls[thresh2] }),
      // Above gc_thresh2 the kernel drops entries idle for 5 s; the steady state should stay under it.
      required: Math.ceil(required / 2),
      target: roundUp(required),
      impact: `neighbour-gc-${family}`,
      settable: true,
      why: `half of gc_thresh3's requirement: above it idle entries are dropped every 5 s`,
    },
  ];
}

/**
 * Every limit the load depends on, with what it must be. Limits whose usage the node can tell (tasks, files) count
 * what is in use now minus this agent's running load balancers, plus every load balancer it serves; the others
 * count this agent's load plus a fixed allowance for the rest of the node.
 */
export function planKernelLimits(load: NodeLoad, readings: KernelReadings): LimitCheck[] {
  const checks: LimitCheck[] = [];
  const current = (name: Sysctl): { current?: number } => {
    const v = readings.sysctls[name];
    return v === undefined ? {} : { current: v };
  };
  const lbs = load.loadBalancers;
  if (load.neighbours.ipv4 > 0) checks.push(...neighbourChecks('ipv4', load, readings));
  if (load.neighbours.ipv6 > 0) checks.push(...neighbourChecks('ipv6', load, readings));

  const perLb = TASKS_PER_LB;
  const tasksWhy = `${perLb} tasks per load balancer (HAProxy master + ${HAPROXY_THREADS} worker thread${HAPROXY_THREADS === 1 ? '' : 's'})`;
  if (readings.tasks !== undefined) {
    const others = Math.max(0, readings.tasks - load.running * perLb);
    const required = others + lbs * perLb;
    const why = `${tasksWhy} × ${lbs} + ${others} tasks of the rest of the node`;
    for (const name of ['kernel.pid_max', 'kernel.threads-max'] as const) {
      checks.push({ name, ...current(name), required, target: withHeadroom(required), impact: 'processes', settable: true, why });
    }
  }
  if (readings.cgroupPids?.max !== undefined) {
    const others = Math.max(0, readings.cgroupPids.current - load.running * perLb);
    const required = others + lbs * perLb;
    checks.push({
      name: CGROUP_PIDS,
      current: readings.cgroupPids.max,
      required,
      target: withHeadroom(required),
      impact: 'processes',
      settable: false,
      why: `${tasksWhy} × ${lbs} + ${others} other tasks in the agent's cgroup (HAProxy runs in it)`,
    });
  }
  for (const [name, perLbNs] of [
    ['user.max_net_namespaces', 1],
    ['user.max_mnt_namespaces', 1],
  ] as const) {
    const required = lbs * perLbNs + NODE_NAMESPACES;
    const what = name === 'user.max_net_namespaces' ? 'one network namespace' : 'one mount namespace (ip netns exec) for its HAProxy';
    checks.push({
      name,
      ...current(name),
      required,
      target: withHeadroom(required),
      impact: 'namespaces',
      settable: true,
      why: `${what} per load balancer × ${lbs} + ${NODE_NAMESPACES} for the rest of the node`,
    });
  }
  if (readings.files !== undefined) {
    const others = Math.max(0, readings.files - load.running * FILES_PER_LB);
    const required = others + lbs * FILES_PER_LB;
    checks.push({
      name: 'fs.file-max',
      ...current('fs.file-max'),
      required,
      target: withHeadroom(required),
      impact: 'files',
      settable: true,
      why: `${FILES_PER_LB} open files per load balancer × ${lbs} + ${others} open on the rest of the node`,
    });
  }
  if (load.watchedPaths !== undefined) {
    const required = load.watchedPaths + NODE_INOTIFY_WATCHES;
    checks.push({
      name: 'fs.inotify.max_user_watches',
      ...current('fs.inotify.max_user_watches'),
      required,
      target: withHeadroom(required),
      impact: 'watches',
      settable: true,
      why: `one watch per file and directory under --watch (${load.watchedPaths}) + ${NODE_INOTIFY_WATCHES} for the rest of the node`,
    });
  }
  if (load.kernelForwarding !== undefined && load.kernelForwarding > 0) {
    // Each namespace's own entries are counted against it (the kernel keeps a count per namespace), so the need
    // is one load balancer's flows however many there are. Only the host's namespace may write it.
    checks.push({
      name: 'net.netfilter.nf_conntrack_max',
      ...current('net.netfilter.nf_conntrack_max'),
      required: FLOWS_PER_KERNEL_LB,
      target: withHeadroom(FLOWS_PER_KERNEL_LB),
      impact: 'conntrack',
      settable: true,
      why: `${FLOWS_PER_KERNEL_LB} UDP/SCTP flows in each namespace of the ${load.kernelForwarding} load balancers with UDP or SCTP listeners (the limit counts per namespace)`,
    });
  }
  return checks;
}

/** Families whose neighbour table refuses (or would refuse) new entries, given the verdicts after any raise. */
export function refusingFamilies(checks: readonly { check: LimitCheck; verdict: LimitVerdict }[]): Set<Family> {
  const result = new Set<Family>();
  for (const { check, verdict } of checks) {
    if (verdict !== 'insufficient') continue;
    if (check.impact === 'neighbours-ipv4') result.add('ipv4');
    if (check.impact === 'neighbours-ipv6') result.add('ipv6');
  }
  return result;
}
