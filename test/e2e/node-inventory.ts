// What one agent (one --state-dir) has on the node, read straight from the kernel, OVS and /proc, never
// through nslb's own observer: the reliability tests (issue 6) count orphans and duplicates with it.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { listNetns, runCommand } from './harness.js';

export interface HaproxyProcess {
  pid: number;
  ppid: number;
  /** The -f argument. */
  config: string;
  /** Inode of its network namespace. */
  netnsInode: number | undefined;
}

export interface Inventory {
  /** Of the candidate netns names asked about, those that exist. */
  netns: string[];
  /** OVS interfaces marked external_ids:nslb-state-dir=<this state dir>, with their nslb-lb marker. */
  ovsPorts: { iface: string; lb: string | undefined }[];
  /** Every live (not zombie) haproxy process whose command line names a file under this state dir. */
  haproxy: HaproxyProcess[];
  /** Masters (a haproxy whose parent is not also one of them) by config path. */
  masters: Map<string, number[]>;
  /** Directory names under <state-dir>/lb/. */
  stateDirs: string[];
}

function procState(stat: string): { state: string; ppid: number } {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', ppid: Number(fields[1]) };
}

/** haproxy processes (masters and workers) whose command line mentions `under`. */
export async function haproxyProcesses(under: string): Promise<HaproxyProcess[]> {
  const found: HaproxyProcess[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!(argv[0] ?? '').endsWith('haproxy') || !argv.some((a) => a.includes(under))) continue;
    const { state, ppid } = procState(await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''));
    if (state === '' || state === 'Z') continue;
    const netnsInode = await stat(`/proc/${entry}/ns/net`).then(
      (s) => s.ino,
      () => undefined,
    );
    found.push({ pid: Number(entry), ppid, config: argv[argv.indexOf('-f') + 1] ?? '', netnsInode });
  }
  return found;
}

export async function netnsInode(name: string): Promise<number | undefined> {
  return stat(`/run/netns/${name}`).then(
    (s) => s.ino,
    () => undefined,
  );
}

export async function takeInventory(stateDir: string, candidateNetns: readonly string[]): Promise<Inventory> {
  const absolute = resolve(stateDir);
  const [allNetns, ports, haproxy, stateDirs] = await Promise.all([
    listNetns(),
    runCommand(['ovs-vsctl', '--timeout=5', '--format=json', '--data=json', '--columns=name,external_ids', 'list', 'Interface']),
    haproxyProcesses(absolute),
    readdir(join(absolute, 'lb')).catch(() => [] as string[]),
  ]);
  const ovsPorts: Inventory['ovsPorts'] = [];
  const parsed = JSON.parse(ports.stdout) as { data: [string, ['map', [string, string][]]][] };
  for (const [iface, [, pairs]] of parsed.data) {
    const ids = new Map(pairs);
    if (ids.get('nslb-state-dir') === absolute) ovsPorts.push({ iface, lb: ids.get('nslb-lb') });
  }
  const masters = new Map<string, number[]>();
  for (const p of haproxy) {
    if (haproxy.some((q) => q.pid === p.ppid)) continue;
    masters.set(p.config, [...(masters.get(p.config) ?? []), p.pid]);
  }
  const candidates = new Set(candidateNetns);
  return { netns: allNetns.filter((n) => candidates.has(n)).sort(), ovsPorts, haproxy, masters, stateDirs: stateDirs.sort() };
}

export interface ExpectedLb {
  netns: string;
  iface: string;
}

/**
 * Everything wrong with the inventory for exactly these load balancers: orphans (anything of this agent
 * that belongs to none of them), duplicates (two masters for one config, two ports for one load balancer),
 * and missing pieces. Empty when the node is exactly right.
 */
export async function inventoryProblems(stateDir: string, candidateNetns: readonly string[], expected: readonly ExpectedLb[]): Promise<string[]> {
  const inv = await takeInventory(stateDir, candidateNetns);
  const problems: string[] = [];
  const wantNetns = new Set(expected.map((e) => e.netns));
  const wantIfaces = new Set(expected.map((e) => e.iface));
  const configOf = (netns: string) => join(resolve(stateDir), 'lb', netns, 'haproxy.cfg');
  const wantConfigs = new Set(expected.map((e) => configOf(e.netns)));

  for (const n of inv.netns) if (!wantNetns.has(n)) problems.push(`orphan netns ${n}`);
  for (const n of wantNetns) if (!inv.netns.includes(n)) problems.push(`missing netns ${n}`);
  for (const p of inv.ovsPorts) if (!wantIfaces.has(p.iface)) problems.push(`orphan OVS port ${p.iface} (${p.lb ?? 'no nslb-lb'})`);
  for (const i of wantIfaces) {
    const n = inv.ovsPorts.filter((p) => p.iface === i).length;
    if (n !== 1) problems.push(`${n} OVS ports named ${i}`);
  }
  for (const p of inv.haproxy) if (!wantConfigs.has(p.config)) problems.push(`orphan haproxy pid ${p.pid} (${p.config})`);
  for (const e of expected) {
    const masters = inv.masters.get(configOf(e.netns)) ?? [];
    if (masters.length !== 1) {
      problems.push(`${masters.length} haproxy masters for ${e.netns}${masters.length > 1 ? ` (duplicate: pids ${masters.join(', ')})` : ''}`);
      continue;
    }
    const master = inv.haproxy.find((p) => p.pid === masters[0]);
    const inode = await netnsInode(e.netns);
    if (master?.netnsInode !== inode) problems.push(`haproxy ${masters[0]} of ${e.netns} is not in that netns`);
  }
  for (const d of inv.stateDirs) if (!wantNetns.has(d)) problems.push(`orphan state dir lb/${d}`);
  for (const n of wantNetns) if (!inv.stateDirs.includes(n)) problems.push(`missing state dir lb/${n}`);
  return problems;
}

/** SIGKILLs every haproxy whose command line names this state dir: afterAll's last resort. */
export async function killHaproxiesUnder(stateDir: string): Promise<void> {
  for (const p of await haproxyProcesses(resolve(stateDir))) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}
