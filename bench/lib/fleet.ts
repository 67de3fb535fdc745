// N load balancers of the benchmark's one shape brought up by an agent, and what is left of them on the node:
// shared by (h) deletion and cleanup and (i) density. Each phase names its own watch and state dirs.
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeNames } from '../../src/desired/names.js';
import { runCommand } from '../../test/e2e/harness.js';
import { type BenchAgent, loadBalancerStatuses } from './agent.js';
import { lbYaml } from './manifests.js';
import { checkInterrupted, log, nslbMember, now, PREFIX, sleep, vipOf } from './node-env.js';
import { ms } from './report.js';

export const NAMESPACE = 'bench';

export interface Fleet {
  names: string[];
  vips: string[];
  netns: Set<string>;
  watch: string;
  stateDir: string;
}

/** The files of N load balancers (listener, pool, m1 and m2, health monitor), VIPs from 10.230.<third>.x on. */
export async function writeFleet(root: string, tag: string, n: number, third: number): Promise<Fleet> {
  const watch = join(root, `watch-${tag}`);
  const stateDir = join(root, `state-${tag}`);
  await rm(watch, { recursive: true, force: true });
  await mkdir(watch, { recursive: true });
  const names: string[] = [];
  const vips: string[] = [];
  for (let i = 0; i < n; i++) {
    checkInterrupted();
    const name = `${tag}-${String(i).padStart(4, '0')}`;
    const vip = vipOf(230, third, i);
    names.push(name);
    vips.push(vip);
    const members = (['m1', 'm2'] as const).map((m) => ({ name: m, address: nslbMember(m) }));
    await writeFile(join(watch, `${name}.yaml`), lbYaml({ namespace: NAMESPACE, name, vip, prefixLength: PREFIX, members }));
  }
  return { names, vips, netns: new Set(names.map((x) => nodeNames(NAMESPACE, x).netns)), watch, stateDir };
}

/** Until status.json says every one is ACTIVE; the time from `since`. Throws if the agent exits. */
export async function waitActive(agent: BenchAgent, f: Fleet, what: string, since: number, timeoutMs = 30 * 60_000): Promise<number> {
  let seen = -1;
  let lastProgress = now();
  for (;;) {
    checkInterrupted();
    if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
    const mtime = (await stat(join(f.stateDir, 'status.json')).catch(() => undefined))?.mtimeMs ?? -1;
    if (mtime !== seen) {
      seen = mtime;
      const st = await loadBalancerStatuses(f.stateDir, NAMESPACE);
      const active = f.names.filter((x) => st.get(x)?.provisioningStatus === 'ACTIVE').length;
      if (active === f.names.length) return now() - since;
      if (now() - lastProgress > 10_000) {
        lastProgress = now();
        log(`${what}: ${active}/${f.names.length} ACTIVE (${ms(now() - since)})`);
      }
    }
    if (now() - since > timeoutMs) throw new Error(`${what}: not all ACTIVE after ${ms(timeoutMs)}`);
    await sleep(250);
  }
}

/**
 * Until the agent's status.json lists none of the fleet: after a deletion the node can be clean before the status
 * says so, and a fleet written again meanwhile would look ACTIVE at once to waitActive.
 */
export async function waitStatusGone(f: Fleet, what: string, timeoutMs = 60_000): Promise<void> {
  for (const end = now() + timeoutMs; ; await sleep(100)) {
    checkInterrupted();
    const st = await loadBalancerStatuses(f.stateDir, NAMESPACE);
    const left = f.names.filter((x) => st.has(x)).length;
    if (left === 0) return;
    if (now() > end) throw new Error(`${what}: ${left} of ${f.names.length} still in status.json after ${ms(timeoutMs)}`);
  }
}

/** What is left of the fleet on the node: netns, OVS ports on the bridge, HAProxy processes of its state dir. */
export interface Leftovers {
  netns: number;
  ports: number;
  haproxies: number;
}

export async function leftovers(f: Fleet, bridge: string, ifaces: ReadonlySet<string>): Promise<Leftovers> {
  const present = await readdir('/run/netns').catch(() => [] as string[]);
  const netns = present.filter((x) => f.netns.has(x)).length;
  const r = await runCommand(['ovs-vsctl', '--timeout=30', 'list-ports', bridge], { allowFailure: true });
  const ports = r.stdout.split('\n').filter((p) => ifaces.has(p.trim())).length;
  return { netns, ports, haproxies: await haproxiesUnder(f.stateDir) };
}

/** HAProxy processes whose config lives under the state dir (found in /proc, as an orphan would be). */
export async function haproxiesUnder(stateDir: string): Promise<number> {
  let count = 0;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv.some((a) => a.endsWith('haproxy'))) continue;
    const config = argv[argv.indexOf('-f') + 1];
    if (config?.startsWith(`${stateDir}/`) === true) count++;
  }
  return count;
}

export function fleetIfaces(f: Fleet): Set<string> {
  return new Set(f.names.map((x) => nodeNames(NAMESPACE, x).iface));
}

/**
 * Polls until nothing of the fleet is left: netns first (a directory read, every 100 ms), then OVS ports and
 * HAProxies (a process and a /proc scan). Returns the time from `since`, or undefined after `timeoutMs`.
 */
export async function waitGone(f: Fleet, bridge: string, since: number, what: string, timeoutMs = 5 * 60_000): Promise<{ ms?: number; left: Leftovers }> {
  const ifaces = fleetIfaces(f);
  let lastProgress = now();
  for (;;) {
    checkInterrupted();
    const present = await readdir('/run/netns').catch(() => [] as string[]);
    const netns = present.filter((x) => f.netns.has(x)).length;
    if (netns === 0) {
      const left = await leftovers(f, bridge, ifaces);
      if (left.netns + left.ports + left.haproxies === 0) return { ms: now() - since, left };
      if (now() - since > timeoutMs) return { left };
    } else if (now() - since > timeoutMs) {
      return { left: await leftovers(f, bridge, ifaces) };
    }
    if (now() - lastProgress > 5_000) {
      lastProgress = now();
      log(`${what}: ${f.netns.size - netns}/${f.netns.size} netns gone (${ms(now() - since)})`);
    }
    await sleep(netns === 0 ? 50 : 100);
  }
}
