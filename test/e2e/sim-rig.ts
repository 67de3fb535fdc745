// Driving scripts/sim-cluster.sh from e2e tests and benchmarks: its commands, node processes and status, and
// member or client namespaces plugged into the shared provider segment (the Linux bridge sim-provider).
// No test cases here. Tests that use the rig must run under the data-plane lock like every e2e test.
import { existsSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive, readSmall, statFields } from '../../src/drivers/proc.js';
import { raiseAutogroup, REPO_ROOT, runCommand, type Host, type TestRun } from './harness.js';

export const SIM = join(REPO_ROOT, 'scripts', 'sim-cluster.sh');
export const SIM_DIR = process.env.NSLB_SIM_DIR ?? '/var/lib/nslb-sim';
export const PROVIDER = 'sim-provider';
/** config/provider-hosts: the namespaces providerHost made while this rig was up, one a line. */
const PROVIDER_HOSTS = 'provider-hosts';

/**
 * Runs a rig command; throws (with its stderr) when it fails. `up` boots every node and waits for each agent (the
 * rig's own bounds: 60 s per agent), so it gets longer than a single-node command; it says each node's progress on
 * stderr, which a timeout's error carries.
 */
export const sim = (...args: string[]) => runCommand([SIM, ...args], { timeoutMs: args[0] === 'up' ? 170_000 : 120_000 });

/** A command inside a node; its stdout, trimmed. */
export async function inNode(node: string, ...argv: string[]): Promise<string> {
  return (await sim('exec', node, '--', ...argv)).stdout.trim();
}

export const nodeStateDir = (node: string) => join(SIM_DIR, node, 'state');

/** Host PIDs of every process of the node. */
export async function nodePids(node: string): Promise<number[]> {
  return (await sim('pids', node)).stdout.split('\n').filter(Boolean).map(Number);
}

/** The parent of a process (host PID), from /proc; undefined once it is gone. */
function parentPid(pid: number): number | undefined {
  const stat = readSmall(`/proc/${pid}/stat`);
  return stat === undefined ? undefined : Number(statFields(stat)[1]);
}

/**
 * The node's processes that last: all but the commands its agent runs and waits for (`ip`, `ovs-vsctl`, `nft`… of
 * a periodic resync, and what they start), which come and go at any moment. Its daemons (OVS, HAProxy, keepalived)
 * and the agent itself are not children of the agent: HAProxy and keepalived detach. A process gone while it is
 * looked at was one of those that come and go.
 */
export async function lastingPids(node: string): Promise<number[]> {
  const pids = await nodePids(node);
  const agents = new Set<number>();
  for (const pid of pids) if ((await cmdline(pid)).includes('dist/cli/main.js')) agents.add(pid);
  const inNodeSet = new Set(pids);
  return pids.filter((pid) => {
    for (let p = parentPid(pid); p !== undefined && inNodeSet.has(p); p = parentPid(p)) if (agents.has(p)) return false;
    return alive(pid);
  });
}

/**
 * SIGTERMs the agent of each node and waits (up to `waitMs`) for it to exit: an agent under `--cpu-prof`
 * (NSLB_SIM_NODE_FLAGS) writes its profile only when it exits by itself, and the rig's `down` SIGKILLs.
 */
export async function stopAgents(nodes: readonly string[], said: (message: string) => void, waitMs = 15_000): Promise<void> {
  for (const node of nodes) {
    for (const pid of await nodePids(node)) {
      if (!(await cmdline(pid)).includes('dist/cli/main.js')) continue;
      process.kill(pid, 'SIGTERM');
      for (const end = Date.now() + waitMs; Date.now() < end && processAlive(pid); ) await new Promise((r) => setTimeout(r, 100));
      said(`${node}: agent ${pid} stopped`);
    }
  }
}

/**
 * The in-test API server runs in the calling process (a test's, or the benchmark's); the nodes' agents, HAProxies,
 * keepalived and switches run at the default priority. They stand for a control plane with CPUs of its own, as the
 * rig's relay and forwarders do (scripts/sim-cluster-kube.mjs): this puts every thread of the process at nice -10,
 * and its session's autogroup too. With the kernel's autogroup on (Debian's default), nice orders a thread only
 * against its own session's threads and every runnable session gets an equal share; each HAProxy and keepalived is
 * a daemon in a session of its own, each agent too. Without it, on this 2-core machine, a Lease GET from the
 * process to its own API server took p50 0.5-5.1 s in a 30-pair drain (2-6 ms with it), and node Lease renewals
 * took up to 6 s while 300 load balancers converged (a live node was called dead: sim-cluster-scheduling,
 * 2026-12-06). Everything the process starts later without a session of its own (probes, wrk, member servers)
 * shares that priority. Returns what puts the priorities back.
 */
export function raiseControlPlane(nice = -10): () => void {
  const threads = new Map<number, number>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      threads.set(Number(t), getPriority(Number(t)));
    } catch {
      // gone already
    }
  }
  for (const [tid] of threads) setPriority(tid, nice);
  const restoreAutogroup = raiseAutogroup('self', nice);
  return () => {
    restoreAutogroup();
    for (const [tid, before] of threads) {
      try {
        setPriority(tid, before);
      } catch {
        // a thread that ended meanwhile
      }
    }
  };
}

export function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

export async function cmdline(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
}

export interface NodeStatus {
  node: string;
  state: 'running' | 'agent-down' | 'killed' | 'off';
  agent: 'up' | 'starting' | 'down';
  wire: 'up' | 'cut';
  listen: string;
  processes: number;
  rssMiB: number;
  stateDir: string;
}

export async function simStatus(): Promise<Record<string, NodeStatus>> {
  const rows = JSON.parse((await sim('status', '-o', 'json')).stdout) as NodeStatus[];
  return Object.fromEntries(rows.map((r) => [r.node, r]));
}

// Recorded by `up` (config/owner-pid): a rig whose test process died is a leftover the next run may remove.
process.env.NSLB_SIM_OWNER_PID = String(process.pid);

/**
 * Takes down a rig left by a test process that died, and refuses to run over one in use (by a live test, or
 * by a person: the rig is one per machine).
 */
export async function assertNoRig(): Promise<void> {
  if (!existsSync(join(SIM_DIR, 'config'))) return;
  const owner = Number((await readFile(join(SIM_DIR, 'config', 'owner-pid'), 'utf8').catch(() => '')).trim());
  if (owner > 0 && owner !== process.pid && !alive(owner)) {
    // Its member and client namespaces first: they are this machine's, not the rig's, and `down` leaves them.
    for (const name of (await readFile(join(SIM_DIR, 'config', PROVIDER_HOSTS), 'utf8').catch(() => '')).split('\n').filter(Boolean)) {
      await deleteProviderHost({ netns: name, vethHost: `${name}-h` });
    }
    await sim('down');
    return;
  }
  throw new Error(`a simulated cluster is already up in ${SIM_DIR}: run scripts/sim-cluster.sh down first`);
}

/** A namespace of this machine plugged into sim-provider by a veth: a member or client on the segment. */
export async function providerHost(run: TestRun, suffix: string, hostOctet: number): Promise<Host> {
  const name = run.name(suffix);
  const host: Host = {
    name,
    netns: name,
    bridge: PROVIDER,
    address: run.ip(hostOctet),
    prefixLength: 24,
    vethHost: `${name}-h`,
    mac: '',
  };
  await deleteProviderHost(host);
  // Recorded before it exists: a test process that dies leaves it to the next run's assertNoRig.
  await appendFile(join(SIM_DIR, 'config', PROVIDER_HOSTS), `${name}\n`).catch(() => undefined);
  await runCommand(['ip', 'netns', 'add', name]);
  await runCommand(['ip', 'link', 'add', host.vethHost, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
  await runCommand(['ip', 'link', 'set', 'dev', host.vethHost, 'master', PROVIDER, 'up']);
  await runCommand(['ip', '-n', name, 'addr', 'add', run.cidr(hostOctet), 'dev', 'eth0']);
  await runCommand(['ip', '-n', name, 'link', 'set', 'dev', 'eth0', 'up']);
  await runCommand(['ip', '-n', name, 'link', 'set', 'dev', 'lo', 'up']);
  return host;
}

export async function deleteProviderHost(host: Pick<Host, 'netns' | 'vethHost'>): Promise<void> {
  await runCommand(['ip', 'link', 'del', 'dev', host.vethHost], { allowFailure: true });
  await runCommand(['ip', 'netns', 'del', host.netns], { allowFailure: true });
}
