// Network namespaces and the VIP link inside them: argv builders, parsers, and thin apply functions.
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readdir } from 'node:fs/promises';
import { PartialBatchError } from '../../exec/batcher.js';
import { CommandError } from '../../exec/errors.js';
import { canonicalCidr, canonicalIp } from '../../desired/addresses.js';
import type { Runner } from '../../exec/run.js';
import { RetryLater } from '../../loop/work-queue.js';
import type { DefaultGateways, Forwarding, ObservedLink, ObservedNetns, ObservedRoute } from '../../plan/observed.js';

export const NETNS_DIR = '/run/netns';

/** Every named netns on the node; a directory read, no process. */
export async function observeNetnsNames(): Promise<string[]> {
  try {
    return (await readdir(NETNS_DIR)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The inode of a named netns, to tell whether a process lives in it (or in a deleted one of the same name). */
export function netnsInode(netns: string): number | undefined {
  try {
    return statSync(`${NETNS_DIR}/${netns}`).ino;
  } catch {
    return undefined;
  }
}

interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  scope: string;
}
interface IpLink {
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  addr_info?: IpAddrInfo[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  /** Absent for the main table. */
  table?: string;
}
/** A main-table route through a gateway. */
type ViaRoute = IpRoute & { gateway: string };
interface IpNetconf {
  family: string;
  interface: string;
  forwarding?: boolean;
}

/**
 * What one read of a netns asks `ip -j -batch`: the links with their addresses of both families (`addr show`
 * without -4/-6 also gives each link's MAC, MTU and flags); the unicast routes of both families (`ip -batch`
 * takes no per-line -4/-6, and `route show` without a family lists IPv4 only, except with `table all`, which
 * lists every family; the main table's routes are the ones without a `table` field): the default routes of
 * the VIP and the member networks' routes; and the namespace's forwarding switches (`netconf show`, whose
 * changes `ip monitor netconf` reports, unlike other sysctls).
 */
const OBSERVE_COMMANDS = 'addr show\nroute show table all type unicast\nnetconf show\n';
/** JSON lines one read prints: one per command. */
const OBSERVE_LINES = 3;

export function argvObserveNetns(netns: string): { argv: string[]; input: string } {
  return { argv: ['ip', '-n', netns, '-j', '-batch', '-'], input: OBSERVE_COMMANDS };
}

export function parseObserveNetns(netns: string, iface: string, stdout: string): ObservedNetns {
  const [linksLine = '[]', routesLine = '[]', netconfLine = '[]'] = stdout.split('\n').filter((l) => l.trim() !== '');
  const links = JSON.parse(linksLine) as IpLink[];
  const routes = (JSON.parse(routesLine) as IpRoute[]).filter((r): r is ViaRoute => r.table === undefined && r.gateway !== undefined);
  const lo = links.find((l) => l.ifname === 'lo');
  const vip = links.find((l) => l.ifname === iface);
  const result: ObservedNetns = { name: netns, loUp: lo?.flags.includes('UP') ?? false };
  if (vip !== undefined) result.link = toObservedLink(vip, []);
  const others = links.filter((l) => l.ifname !== 'lo' && l.ifname !== iface).map((l) => toObservedLink(l, routes));
  if (others.length > 0) result.otherLinks = others;
  const gateways: DefaultGateways = {};
  for (const r of routes) {
    if (r.dst !== 'default') continue;
    const family = r.gateway.includes(':') ? 6 : 4;
    gateways[family] ??= r.gateway;
  }
  if (gateways[4] !== undefined || gateways[6] !== undefined) result.defaultGateways = gateways;
  const forwarding: Forwarding = {};
  for (const c of JSON.parse(netconfLine) as IpNetconf[]) {
    if (c.interface !== 'all' || c.forwarding === undefined) continue;
    if (c.family === 'inet') forwarding[4] = c.forwarding;
    if (c.family === 'inet6') forwarding[6] = c.forwarding;
  }
  if (forwarding[4] !== undefined || forwarding[6] !== undefined) result.forwarding = forwarding;
  return result;
}

/** ip prints a host route without its prefix length. */
function routeOf(r: ViaRoute): ObservedRoute {
  const gateway = canonicalIp(r.gateway);
  const dst = r.dst.includes('/') ? r.dst : `${r.dst}/${gateway.includes(':') ? 128 : 32}`;
  return { destination: canonicalCidr(dst) ?? r.dst, gateway };
}

function toObservedLink(l: IpLink, routes: readonly ViaRoute[]): ObservedLink {
  const link: ObservedLink = {
    name: l.ifname,
    up: l.flags.includes('UP'),
    mac: l.address.toLowerCase(),
    mtu: l.mtu,
    addresses: (l.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`),
  };
  const own = routes.filter((r) => r.dev === l.ifname && r.dst !== 'default').map(routeOf);
  if (own.length > 0) link.routes = own;
  return link;
}

/**
 * Reads many netns from one `ip -batch` (see execInNetnsBatch): each runs `ip -j -batch SCRIPT`, the same
 * commands as observeNetns, and prints a JSON line each. `script` is where that script is kept. Throws if
 * any read fails or the output does not add up: the caller then reads them one by one.
 */
export async function observeNetnsMany(run: Runner, targets: readonly { netns: string; iface: string }[], script: string): Promise<ObservedNetns[]> {
  mkdirSync(dirname(script), { recursive: true, mode: 0o700 });
  writeFileSync(script, OBSERVE_COMMANDS, { mode: 0o600 });
  const stdout = await execInNetnsBatch(
    run,
    targets.map((t) => ({ netns: t.netns, argv: ['ip', '-j', '-batch', script] })),
  );
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== OBSERVE_LINES * targets.length) {
    throw new Error(`ip -batch read of ${targets.length} netns printed ${lines.length} lines, not ${OBSERVE_LINES * targets.length}`);
  }
  return targets.map((t, i) => parseObserveNetns(t.netns, t.iface, `${lines.slice(OBSERVE_LINES * i, OBSERVE_LINES * (i + 1)).join('\n')}\n`));
}

export async function observeNetns(run: Runner, netns: string, iface: string): Promise<ObservedNetns> {
  const { argv, input } = argvObserveNetns(netns);
  const { stdout } = await run(argv, { input });
  return parseObserveNetns(netns, iface, stdout);
}

/** Whether a device of that name is in the host namespace (an OVS internal port not moved yet). */
export function hostHasLink(iface: string): boolean {
  try {
    return existsSync(`/sys/class/net/${iface}`);
  } catch {
    return false;
  }
}

/** `ip -batch` lines that add a netns and give it a netns id here, so that `ip monitor all-nsid` sees it. */
export function netnsAddLines(netns: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(netns)) throw new Error(`unsafe netns name: ${JSON.stringify(netns)}`);
  return `netns add ${netns}\nnetns set ${netns} auto\n`;
}

/**
 * The `ip -batch` line that switches the announcements (announceArgv) on for every link of a netns. Set once
 * the netns exists, beside its VIP link's move and before the link comes up, the link's configure (plan:
 * `netnsAnnounces`) needs no `netns exec` of its own. `all` rather than the link's own switches (which go with
 * the device when it changes netns) or `default` (copied when the device arrives): the kernel ORs `all` with
 * the link's own (IPv4's arp_notify takes the larger, IPv6's ndisc_notify either), whenever the link arrived.
 */
export function netnsAnnounceLine(netns: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(netns)) throw new Error(`unsafe netns name: ${JSON.stringify(netns)}`);
  return `netns exec ${netns} sysctl -q -w net.ipv4.conf.all.arp_notify=1 net.ipv6.conf.all.ndisc_notify=1\n`;
}

/** Switches the announcements on in each netns (netnsAnnounceLine): one process. */
export async function announceInNetns(run: Runner, names: readonly string[]): Promise<void> {
  await run(['ip', '-batch', '-'], { input: names.map(netnsAnnounceLine).join('') });
}

export async function ensureNetns(run: Runner, netns: string): Promise<void> {
  if (netnsInode(netns) !== undefined) return;
  await run(['ip', '-batch', '-'], { input: netnsAddLines(netns) });
}

/** Several at once, in one process. */
export async function ensureNetnsMany(run: Runner, names: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const n of names) if (netnsInode(n) === undefined) missing.push(n);
  if (missing.length === 0) return;
  await run(['ip', '-batch', '-'], { input: missing.map(netnsAddLines).join('') });
}

/** Netns and their ids (`ip -j netns list`): one process. */
export async function observeNetnsIds(run: Runner): Promise<{ name: string; id?: number }[]> {
  const { stdout } = await run(['ip', '-j', 'netns', 'list']);
  const list = stdout.trim() === '' ? [] : (JSON.parse(stdout) as { name: string; id?: number }[]);
  return list.map((e) => (typeof e.id === 'number' ? { name: e.name, id: e.id } : { name: e.name }));
}

/** Gives netns an id here (one process for all). */
export async function assignNetnsIds(run: Runner, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  for (const n of names) if (!/^[A-Za-z0-9._-]+$/.test(n)) throw new Error(`unsafe netns name: ${JSON.stringify(n)}`);
  await run(['ip', '-force', '-batch', '-'], { input: names.map((n) => `netns set ${n} auto\n`).join('') });
}

export async function deleteNetns(run: Runner, netns: string): Promise<void> {
  if (netnsInode(netns) === undefined) return;
  await run(['ip', 'netns', 'delete', netns]);
}

/**
 * Several netns deleted by one `ip -batch` (those still there). Without -force ip stops at a line that fails
 * (a netns deleted by hand in between): the caller then deletes the rest one by one, each with its own error.
 */
export async function deleteNetnsMany(run: Runner, names: readonly string[]): Promise<void> {
  const present = names.filter((n) => netnsInode(n) !== undefined);
  for (const n of present) if (!/^[A-Za-z0-9._-]+$/.test(n)) throw new Error(`unsafe netns name: ${JSON.stringify(n)}`);
  if (present.length === 0) return;
  await run(['ip', '-batch', '-'], { input: present.map((n) => `netns delete ${n}\n`).join('') });
}

export async function moveLinkToNetns(run: Runner, iface: string, netns: string, replaceStale = false): Promise<void> {
  if (replaceStale) {
    try {
      await run(['ip', '-n', netns, 'link', 'del', 'dev', iface]);
    } catch (err) {
      if (!/Cannot find device/i.test((err as Error).message)) throw err;
    }
  }
  await run(['ip', 'link', 'set', 'dev', iface, 'netns', netns]);
}

/** Moves several host devices into their netns in one process. */
export async function moveLinksToNetns(run: Runner, moves: readonly { iface: string; netns: string }[]): Promise<void> {
  for (const m of moves) {
    if (!/^[A-Za-z0-9._-]+$/.test(m.iface) || !/^[A-Za-z0-9._-]+$/.test(m.netns)) throw new Error(`unsafe move: ${JSON.stringify(m)}`);
  }
  await run(['ip', '-batch', '-'], { input: moves.map((m) => `link set dev ${m.iface} netns ${m.netns}\n`).join('') });
}

export interface LinkConfig {
  netns: string;
  iface: string;
  mac: string;
  mtu?: number;
  /** `address/prefix`: the VIP, then the additional VIPs. */
  addresses: readonly string[];
  removeAddresses: readonly string[];
  /** One per family at most: each becomes that family's default route. */
  gateways: readonly string[];
  /** Member networks: routes through this link. */
  routes?: readonly { destination: string; gateway: string }[];
  /** Member networks: routes through this link to delete first. */
  removeRoutes?: readonly { destination: string; gateway: string }[];
  /** IPv4 addresses to find unused on the segment (an ARP probe) before any address is added. */
  probe?: readonly string[];
  /** The netns switched the announcements on for all its links when it was added (netnsAnnounceLine). */
  netnsAnnounces?: boolean;
}

/**
 * The link sends a gratuitous ARP (IPv4) and an unsolicited NA (IPv6) for its addresses when it comes up.
 * Every VIP port does: a SINGLE load balancer re-placed on another node keeps its MAC, but the segment's
 * switches still forward that MAC to the dead node's port, and its clients wait out their neighbour entries,
 * until the new port sends a frame (an IPv4-only port sends none by itself: no IPv6 link-local, no DAD). An
 * ACTIVE_STANDBY node's VRRP address that moves to a new node is otherwise still resolved to the old node's
 * MAC by the peer, whose unicast adverts then go nowhere: the newcomer would take the VIP too. Set inside
 * the netns, on the VIP port only, before the batch brings it up.
 */
export function announceArgv(iface: string): string[] {
  if (!/^[A-Za-z0-9._-]+$/.test(iface)) throw new Error(`unsafe interface name: ${JSON.stringify(iface)}`);
  return ['sysctl', '-q', '-w', `net.ipv4.conf.${iface}.arp_notify=1`, `net.ipv6.conf.${iface}.ndisc_notify=1`];
}

/** The `ip -batch` script that configures the VIP link: every line idempotent (`replace`, `set`). */
export function renderLinkBatch(c: LinkConfig): string {
  const routes = c.routes ?? [];
  const removeRoutes = c.removeRoutes ?? [];
  for (const token of [
    c.iface,
    c.mac,
    ...c.addresses,
    ...c.gateways,
    ...c.removeAddresses,
    String(c.mtu ?? ''),
    ...[...routes, ...removeRoutes].flatMap((r) => [r.destination, r.gateway]),
  ]) {
    if (/[\s#"'\\]/.test(token)) throw new Error(`unsafe token for ip -batch: ${JSON.stringify(token)}`);
  }
  const lines = ['link set dev lo up', `link set dev ${c.iface} address ${c.mac}`];
  if (c.mtu !== undefined) lines.push(`link set dev ${c.iface} mtu ${c.mtu}`);
  // An IPv4-only VIP port has no use for IPv6, yet by default it would make up a link-local address when it
  // comes up and send DAD, router solicitations and MLD reports: multicast that the bridge floods to every
  // other port. With hundreds of load balancers on one bridge that flood alone kept ovs-vswitchd busy.
  const v6 = c.addresses.some((a) => a.includes(':'));
  lines.push(`link set dev ${c.iface} addrgenmode ${v6 ? 'eui64' : 'none'}`);
  // Routes before addresses: each was there when observed, and deleting an address may take its routes along.
  for (const r of removeRoutes) lines.push(`route del ${r.destination} via ${r.gateway} dev ${c.iface}`);
  for (const old of c.removeAddresses) lines.push(`address del ${old} dev ${c.iface}`);
  // nodad: a VIP must answer at once; the planner already refuses duplicate VIPs on one bridge. Without -4/-6
  // on the command line, ip takes each line's family from its address.
  for (const a of c.addresses) lines.push(`address replace ${a} dev ${c.iface}${a.includes(':') ? ' nodad' : ''}`);
  lines.push(`link set dev ${c.iface} up`);
  for (const g of c.gateways) lines.push(`route replace default via ${g} dev ${c.iface}`);
  for (const r of routes) lines.push(`route replace ${r.destination} via ${r.gateway} dev ${c.iface}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Probes per address and the wait for an answer, in whole seconds (iputils' arping takes no fractions). An
 * address in use is answered within milliseconds and arping exits at once; a free one costs the second.
 */
const PROBE_COUNT = 2;
const PROBE_DEADLINE_S = 1;

/**
 * How soon a configure that found its address in use probes again: a short fixed delay, not the failure
 * backoff (whose doubling left a drain's newcomers probing 13 s apart after the leaving node had let go),
 * spread over half of it so that the keys waiting together do not spawn their probes together.
 */
export const ADDRESS_WAIT_MS = 500;

/**
 * An address another host on the segment answered for: the configure waits (the reconcile is tried again
 * after ADDRESS_WAIT_MS or so; a wait, not a failure).
 */
export class AddressInUseError extends RetryLater {
  constructor(address: string, netns: string, options?: { cause?: unknown }) {
    super(
      ADDRESS_WAIT_MS + Math.floor(Math.random() * (ADDRESS_WAIT_MS / 2)),
      `${address} is in use on the segment (another host answered an ARP probe for it): it is not added to ${netns} until it is released, ` +
        'as when the node that had this placement slot is still leaving',
      options,
    );
  }
}

/**
 * The commands (each to run inside the netns, in order) that bring the link up without addresses, so that it
 * can send ARP probes (RFC 5227 duplicate address detection: `arping -D` exits 1 when someone answers), and
 * then probe for each address in `c.probe`. Empty without probes.
 */
export function probeArgvs(c: LinkConfig): string[][] {
  if (c.probe === undefined || c.probe.length === 0) return [];
  for (const token of [c.iface, c.mac, ...c.probe]) {
    if (!/^[A-Za-z0-9.:_-]+$/.test(token)) throw new Error(`unsafe token for a probe: ${JSON.stringify(token)}`);
  }
  return [
    ['ip', 'link', 'set', 'dev', c.iface, 'address', c.mac, 'up'],
    ...c.probe.map((a) => ['arping', '-D', '-q', '-c', String(PROBE_COUNT), '-w', String(PROBE_DEADLINE_S), '-I', c.iface, a]),
  ];
}

/**
 * After probing, the addresses were added to a link that was already up, which announced nothing (arp_notify
 * acts when a link comes up): one gratuitous ARP each, so that the peer sends its adverts here at once, not to
 * the previous holder's MAC until its neighbour entry ages out. arping sends it at once, then waits a second
 * (configureLink does not wait for that).
 */
export function announceProbedArgvs(c: LinkConfig): string[][] {
  return (c.probe ?? []).map((a) => ['arping', '-U', '-q', '-c', '1', '-w', '1', '-I', c.iface, a]);
}

/**
 * Configures one load balancer's link. Without probes: the announce switches and the link script, both inside
 * its netns, from one `ip -batch` of `netns exec` lines (one process from us rather than two: a new load
 * balancer waits for each); `script` is where the link script is kept (0600). A path `ip -batch` cannot read
 * back as one word, or no `script`, takes separate processes instead. With probes (an ACTIVE_STANDBY pair
 * port before its VRRP address): always separate processes, in order (the link up without addresses, each
 * RFC 5227 probe, the link script, a gratuitous ARP each), since arping's exit status is what tells an
 * address in use from a failure.
 */
export async function configureLink(run: Runner, c: LinkConfig, script?: string): Promise<void> {
  const probes = probeArgvs(c);
  if (probes.length === 0 && c.netnsAnnounces === true) {
    await run(['ip', '-n', c.netns, '-batch', '-'], { input: renderLinkBatch(c) });
    return;
  }
  if (probes.length === 0 && script !== undefined) {
    let batch: string | undefined;
    try {
      batch = renderNetnsExecBatch([
        { netns: c.netns, argv: announceArgv(c.iface) },
        { netns: c.netns, argv: ['ip', '-batch', script] },
      ]);
    } catch {
      batch = undefined;
    }
    if (batch !== undefined) {
      mkdirSync(dirname(script), { recursive: true, mode: 0o700 });
      writeFileSync(script, renderLinkBatch(c), { mode: 0o600 });
      await run(['ip', '-batch', '-'], { input: batch });
      return;
    }
  }
  await run(['ip', 'netns', 'exec', c.netns, ...announceArgv(c.iface)]);
  for (const argv of probes) {
    try {
      await run(['ip', 'netns', 'exec', c.netns, ...argv]);
    } catch (err) {
      // arping -D exits 1 when someone answered; other failures (2: no such device, …) are what they are.
      if (argv[0] === 'arping' && err instanceof CommandError && err.exitCode === 1) throw new AddressInUseError(argv.at(-1)!, c.netns, { cause: err });
      throw err;
    }
  }
  await run(['ip', '-n', c.netns, '-batch', '-'], { input: renderLinkBatch(c) });
  // Not awaited: arping sends at once and then sits out its one-second deadline, which held every newcomer of a
  // drain a second longer. A failed announcement costs what it always did (the peer's neighbour entry re-resolves).
  for (const argv of announceProbedArgvs(c)) void run(['ip', 'netns', 'exec', c.netns, ...argv]).catch(() => undefined);
}

/**
 * Items per `ip -batch` of `netns exec` lines. ip runs them one after the other: batches of a few keep the
 * agent from forking once per load balancer, and several batches at once keep every core busy.
 */
export const NETNS_BATCH_SIZE = 8;

/** A command to run inside a netns. */
export interface NetnsCommand {
  netns: string;
  argv: readonly string[];
}

/** What `ip -batch` reads as one word (it splits lines on blanks and honours quotes). */
const BATCH_WORD = /^[A-Za-z0-9._/:=,@+%-]+$/;

/**
 * The `ip -batch` script that runs each command in its netns: `netns exec NS argv…` lines. One process from
 * us for many: the forks are ip's (a small process, cheap to fork), not the agent's. Throws on a word that
 * `ip -batch` would not read back as one word; callers then run the commands one by one.
 */
export function renderNetnsExecBatch(cmds: readonly NetnsCommand[]): string {
  for (const c of cmds) {
    for (const word of [c.netns, ...c.argv]) {
      if (!BATCH_WORD.test(word)) throw new Error(`cannot pass ${JSON.stringify(word)} through ip -batch`);
    }
  }
  return cmds.map((c) => `netns exec ${c.netns} ${c.argv.join(' ')}\n`).join('');
}

/**
 * Runs the commands in order, each in its netns, from one `ip -batch`. Never with -force: iproute2's
 * `netns exec` in batch mode forks, and a child that cannot enter its netns goes on reading the batch
 * itself; without -force it stops at that line instead, as the parent does, so nothing runs twice.
 * On a failure, PartialBatchError says how many commands went through before the one that failed (from
 * ip's "Command failed -:N"); the ones after it did not run.
 */
export async function execInNetnsBatch(run: Runner, cmds: readonly NetnsCommand[], options: { detached?: boolean } = {}): Promise<string> {
  const input = renderNetnsExecBatch(cmds);
  try {
    const { stdout } = await run(['ip', '-batch', '-'], {
      input,
      timeoutMs: 15_000 + 2_000 * cmds.length,
      ...(options.detached === true ? { detached: true } : {}),
    });
    return stdout;
  } catch (err) {
    const line = /Command failed -:(\d+)/.exec(err instanceof Error ? err.message : String(err))?.[1];
    const done = line === undefined ? 0 : Number(line) - 1;
    throw new PartialBatchError(done, `ip -batch stopped after ${done} commands: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
