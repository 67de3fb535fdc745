// Kernel forwarding of UDP and SCTP listeners (DESIGN §8): the nftables state one load balancer's namespace
// should hold, as data (pure: same model → same state). HAProxy does not balance UDP and this kernel has no
// IPVS, so the packets of these listeners never reach a process: conntrack pins each flow to the member that
// its first packet was DNATed to, and a pool is a map from slot numbers to members that a transaction of
// element updates can change without touching a rule (see nft-transaction.ts).
//
// Layout of the table `inet nslb` (the name is nslb's marker in a namespace):
//   pre_raw   filter/prerouting/raw: per listener, before conntrack, drop sources outside allowedCidrs (no
//             conntrack entry is ever made for them) and give UDP flows the listener's idle timeout.
//   pre_nat   nat/prerouting/dstnat: VIP . protocol . port → the listener's chain, which DNATs through its
//             pool's slot map (numgen for ROUND_ROBIN, jhash for SOURCE_IP and SOURCE_IP_PORT).
//   post_nat  nat/postrouting/srcnat: one-arm return path: DNATed flows leave with the namespace's own address
//             (masquerade), so members answer the load balancer, never the client directly; members see the
//             load balancer as the source, as with Octavia's LVS-NAT one-arm setup.
//   forward   filter/forward, policy drop: forwarding is on in the namespace for these flows only; nothing
//             else is routed through a load balancer.
//   output    filter/output: no ICMP redirects. A one-arm load balancer sends every flow back out of the
//             interface it came in on, the case where the kernel may advise a client to bypass it; none
//             was seen on the development kernel even without this rule, which is kept as a guard.
import { createHash } from 'node:crypto';
import { canonicalCidr, canonicalIp, parseIp } from '../desired/addresses.js';

export const NFT_FAMILY = 'inet';
export const NFT_TABLE = 'nslb';

export type L4Protocol = 'UDP' | 'SCTP';
export type NftAlgorithm = 'ROUND_ROBIN' | 'SOURCE_IP' | 'SOURCE_IP_PORT';
/** The monitor's verdict: NO_CHECK (no monitor, or it is disabled) counts as up, as HAProxy's "no check". */
export type MemberHealth = 'UP' | 'DOWN' | 'NO_CHECK';

export interface NftMember {
  name: string;
  address: string;
  port: number;
  /** 0–256; 0 drains: no new flows, the member's conntrack entries keep going. */
  weight: number;
  /** Gets flows only while no other member of its pool can take them (HAProxy's `backup` with allbackups). */
  backup: boolean;
  adminStateUp: boolean;
  health: MemberHealth;
}

export interface NftPool {
  name: string;
  protocol: L4Protocol;
  lbAlgorithm: NftAlgorithm;
  adminStateUp: boolean;
  members: readonly NftMember[];
}

export interface NftListener {
  name: string;
  protocol: L4Protocol;
  port: number;
  /** Empty: every source. IPv4 and IPv6 CIDRs; a family without any is refused altogether. */
  allowedCidrs: readonly string[];
  /** A UDP flow's conntrack entry (and so its member) is forgotten after this long without a packet. */
  idleTimeoutSeconds: number;
  defaultPool: string | undefined;
  adminStateUp: boolean;
}

/** Only the UDP and SCTP part of a load balancer: what the kernel forwards. */
export interface NftLoadBalancer {
  namespace: string;
  name: string;
  /** The VIP and the additional VIPs: every listener is served on each of them, as HAProxy binds. */
  vips: readonly string[];
  listeners: readonly NftListener[];
  pools: readonly NftPool[];
}

export interface NftBaseChain {
  type: 'filter' | 'nat';
  hook: 'prerouting' | 'postrouting' | 'forward' | 'output';
  /** nft's numeric priority (`raw` = -300, `dstnat` = -100, `filter` = 0, `srcnat` = 100). */
  priority: number;
  policy: 'accept' | 'drop';
}

/** `id` is what tells rules apart in an observed table (the rule's comment); `text` is empty when observed. */
export interface NftRule {
  id: string;
  text: string;
}

export interface NftChain {
  base?: NftBaseChain;
  rules: readonly NftRule[];
}

/** pool4/pool6: slot → `address . port`; verdict4/verdict6: `address . protocol . port` → `jump chain`. */
export type NftMapKind = 'pool4' | 'pool6' | 'verdict4' | 'verdict6';

export interface NftMap {
  kind: NftMapKind;
  /** For pool maps, the protocol of the member port (the typeof declaration needs one). */
  protocol?: L4Protocol;
  elements: ReadonlyMap<string, string>;
}

export interface NftCtTimeout {
  family: 4 | 6;
  /** Seconds for a UDP flow seen in one direction only, and once answered. */
  unreplied: number;
  replied: number;
}

/** What the table holds, by name; compared object by object, element by element. */
export interface NftState {
  comment: string;
  timeouts: ReadonlyMap<string, NftCtTimeout>;
  maps: ReadonlyMap<string, NftMap>;
  chains: ReadonlyMap<string, NftChain>;
}

/**
 * Slots per pool map, at least: every member with a weight gets one, so a pool of more members gets the next
 * power of two. 256 keeps the share of a weight-1 member next to a weight-256 one, and the skew of a number of
 * members that does not divide it, within 1/256 (IPVS's sh scheduler has 256 buckets too).
 */
export const MIN_SLOTS = 256;
/** The kernel's default for a UDP flow seen in one direction (nf_conntrack_udp_timeout). */
const UNREPLIED_SECONDS = 30;
export const MAX_IDLE_TIMEOUT_SECONDS = 86_400;
export const MAX_WEIGHT = 256;

const PRIORITY = { raw: -300, dstnat: -100, filter: 0, srcnat: 100 } as const;

export class UnsafeNftValueError extends Error {
  override readonly name = 'UnsafeNftValueError';
  constructor(
    readonly value: string,
    readonly reason: string,
  ) {
    super(`refusing to render ${JSON.stringify(value)} into the nftables ruleset: ${reason}`);
  }
}

// The API's names (DNS-1123 labels). They become parts of nft identifiers, where `-` would need quoting:
// it is mapped to `_`, which a label cannot contain, so two names never meet.
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function label(s: string, what: string): string {
  if (typeof s !== 'string' || !LABEL.test(s)) throw new UnsafeNftValueError(String(s), `${what} is not a DNS-1123 label`);
  return s;
}

function ident(s: string, what: string): string {
  return label(s, what).replaceAll('-', '_');
}

function intIn(n: number, min: number, max: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UnsafeNftValueError(String(n), `${what} must be an integer ${min}–${max}`);
  return n;
}

/** A canonical address of the given family (nft prints them canonically; observed state compares equal). */
function address(s: string, what: string, family?: 4 | 6): { text: string; family: 4 | 6 } {
  const ip = typeof s === 'string' ? parseIp(s) : undefined;
  if (ip === undefined) throw new UnsafeNftValueError(String(s), `${what} is not an IP address`);
  if (family !== undefined && ip.family !== family) throw new UnsafeNftValueError(s, `${what} is not IPv${family}`);
  return { text: canonicalIp(s), family: ip.family };
}

function cidr(s: string): { text: string; family: 4 | 6 } {
  const text = typeof s === 'string' ? canonicalCidr(s) : undefined;
  if (text === undefined) throw new UnsafeNftValueError(String(s), 'allowedCidrs entry is not an address/prefix');
  const family = parseIp(text.slice(0, text.indexOf('/')))?.family ?? 4;
  return { text, family };
}

const PROTO: Record<L4Protocol, string> = { UDP: 'udp', SCTP: 'sctp' };

function proto(p: L4Protocol): string {
  if (!Object.hasOwn(PROTO, p)) throw new UnsafeNftValueError(String(p), 'protocol must be UDP or SCTP');
  return PROTO[p];
}

const FAMILIES = [4, 6] as const;
const ipFamily = (f: 4 | 6) => (f === 4 ? 'ip' : 'ip6');

// Names of the table's objects. Fixed ones start with a letter that no per-object name uses as its prefix.
export const chainNames = { raw: 'pre_raw', nat: 'pre_nat', postNat: 'post_nat', forward: 'forward', output: 'output' } as const;
export const guardMapName = (f: 4 | 6) => `guard${f}`;
export const listenMapName = (f: 4 | 6) => `listen${f}`;
export const guardChainName = (listener: string, f: 4 | 6) => `g_${ident(listener, 'listener name')}_${f}`;
export const natChainName = (listener: string, f: 4 | 6) => `l_${ident(listener, 'listener name')}_${f}`;
export const poolMapName = (pool: string, f: 4 | 6) => `p_${ident(pool, 'pool name')}_${f}`;
export const timeoutName = (f: 4 | 6, seconds: number) => `t_udp${f}_${seconds}`;

/** The rule's id: a digest of its text, carried as its comment, so that a rule changed by hand shows up. */
export function ruleId(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function rule(text: string): NftRule {
  return { id: ruleId(text), text };
}

/** jhash's seed: fixed per load balancer, so a client hashes to the same slot on every node and after every apply. */
export function hashSeed(namespace: string, name: string): string {
  return `0x${createHash('sha256').update(`${namespace}/${name}`).digest('hex').slice(0, 8)}`;
}

export function slotCount(pool: NftPool): number {
  let n = MIN_SLOTS;
  while (n < pool.members.length) n *= 2;
  return n;
}

/** Members that may take new flows: enabled, weighted and not DOWN; backups only when no primary is. */
export function eligibleMembers(pool: NftPool, family: 4 | 6): NftMember[] {
  if (!pool.adminStateUp) return [];
  const usable = [...pool.members]
    .filter((m) => m.adminStateUp && m.weight > 0 && m.health !== 'DOWN')
    .filter((m) => address(m.address, `member ${m.name} address`).family === family)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const primaries = usable.filter((m) => !m.backup);
  return primaries.length > 0 ? primaries : usable.filter((m) => m.backup);
}

/**
 * Slot → member, by smooth weighted round robin (nginx's): each member gets slots in proportion to its weight,
 * spread out rather than in runs, so that `numgen inc` over the slots alternates between members.
 */
export function assignSlots(members: readonly NftMember[], slots: number): NftMember[] {
  if (members.length === 0) return [];
  const total = members.reduce((sum, m) => sum + m.weight, 0);
  const current = members.map(() => 0);
  const table: NftMember[] = [];
  for (let s = 0; s < slots; s++) {
    let best = 0;
    for (let i = 0; i < members.length; i++) {
      current[i] = (current[i] ?? 0) + (members[i]?.weight ?? 0);
      if ((current[i] ?? 0) > (current[best] ?? 0)) best = i;
    }
    current[best] = (current[best] ?? 0) - total;
    const m = members[best];
    if (m !== undefined) table.push(m);
  }
  return table;
}

function validateMember(m: NftMember): void {
  label(m.name, 'member name');
  address(m.address, `member ${m.name} address`);
  intIn(m.port, 1, 65535, `member ${m.name} port`);
  intIn(m.weight, 0, MAX_WEIGHT, `member ${m.name} weight`);
  if (!['UP', 'DOWN', 'NO_CHECK'].includes(m.health)) throw new UnsafeNftValueError(String(m.health), 'unknown member health');
}

function selector(pool: NftPool, f: 4 | 6, seed: string): string {
  const slots = slotCount(pool);
  switch (pool.lbAlgorithm) {
    case 'ROUND_ROBIN':
      return `numgen inc mod ${slots}`;
    case 'SOURCE_IP':
      return `jhash ${ipFamily(f)} saddr mod ${slots} seed ${seed}`;
    case 'SOURCE_IP_PORT':
      return `jhash ${ipFamily(f)} saddr . ${proto(pool.protocol)} sport mod ${slots} seed ${seed}`;
    default:
      throw new UnsafeNftValueError(String(pool.lbAlgorithm as unknown), 'lbAlgorithm must be ROUND_ROBIN, SOURCE_IP or SOURCE_IP_PORT');
  }
}

function baseChains(): [string, NftChain][] {
  const vmapRule = (f: 4 | 6, map: string) => rule(`${ipFamily(f)} daddr . meta l4proto . th dport vmap @${map}`);
  return [
    [
      chainNames.raw,
      { base: { type: 'filter', hook: 'prerouting', priority: PRIORITY.raw, policy: 'accept' }, rules: FAMILIES.map((f) => vmapRule(f, guardMapName(f))) },
    ],
    [
      chainNames.nat,
      { base: { type: 'nat', hook: 'prerouting', priority: PRIORITY.dstnat, policy: 'accept' }, rules: FAMILIES.map((f) => vmapRule(f, listenMapName(f))) },
    ],
    [
      chainNames.postNat,
      { base: { type: 'nat', hook: 'postrouting', priority: PRIORITY.srcnat, policy: 'accept' }, rules: [rule('ct status dnat masquerade')] },
    ],
    [chainNames.forward, { base: { type: 'filter', hook: 'forward', priority: PRIORITY.filter, policy: 'drop' }, rules: [rule('ct status dnat accept')] }],
    [
      chainNames.output,
      {
        base: { type: 'filter', hook: 'output', priority: PRIORITY.filter, policy: 'accept' },
        rules: [rule('icmp type redirect drop'), rule('icmpv6 type nd-redirect drop')],
      },
    ],
  ];
}

/**
 * The state the namespace's table should have, or undefined when the load balancer has no UDP or SCTP
 * listener (then there is no table at all). Throws UnsafeNftValueError on anything that is not safe to render.
 */
export function renderNftState(lb: NftLoadBalancer): NftState | undefined {
  label(lb.namespace, 'namespace');
  label(lb.name, 'load balancer name');
  if (lb.listeners.length === 0) return undefined;
  const vips = lb.vips.map((v) => address(v, 'VIP'));
  const seed = hashSeed(lb.namespace, lb.name);
  const pools = new Map<string, NftPool>();
  for (const p of lb.pools) {
    label(p.name, 'pool name');
    proto(p.protocol);
    p.members.forEach(validateMember);
    if (new Set(p.members.map((m) => m.name)).size !== p.members.length) throw new UnsafeNftValueError(p.name, 'pool has two members of one name');
    if (pools.has(p.name)) throw new UnsafeNftValueError(p.name, 'two pools of one name');
    pools.set(p.name, p);
  }

  const timeouts = new Map<string, NftCtTimeout>();
  const maps = new Map<string, NftMap>();
  const chains = new Map<string, NftChain>(baseChains());
  const guard: Record<4 | 6, Map<string, string>> = { 4: new Map(), 6: new Map() };
  const listen: Record<4 | 6, Map<string, string>> = { 4: new Map(), 6: new Map() };

  for (const l of [...lb.listeners].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    label(l.name, 'listener name');
    const p = proto(l.protocol);
    const port = intIn(l.port, 1, 65535, `listener ${l.name} port`);
    const idle = intIn(l.idleTimeoutSeconds, 1, MAX_IDLE_TIMEOUT_SECONDS, `listener ${l.name} idleTimeoutSeconds`);
    const allowed = l.allowedCidrs.map(cidr);
    if (!l.adminStateUp || l.defaultPool === undefined) continue;
    const pool = pools.get(label(l.defaultPool, 'defaultPool'));
    if (pool === undefined) throw new UnsafeNftValueError(l.defaultPool, `listener ${l.name}: no such pool`);
    if (pool.protocol !== l.protocol) throw new UnsafeNftValueError(pool.name, `listener ${l.name} is ${l.protocol}, its pool ${pool.protocol}`);

    for (const f of FAMILIES) {
      const mine = vips.filter((v) => v.family === f);
      if (mine.length === 0) continue;
      const guardRules: NftRule[] = [];
      if (allowed.length > 0) {
        const cidrs = [...new Set(allowed.filter((c) => c.family === f).map((c) => c.text))].sort();
        // A listener that allows only the other family refuses this one outright, as HAProxy's ACL would.
        guardRules.push(rule(cidrs.length === 0 ? 'drop' : `${ipFamily(f)} saddr != { ${cidrs.join(', ')} } drop`));
      }
      if (l.protocol === 'UDP') {
        const t = timeoutName(f, idle);
        timeouts.set(t, { family: f, unreplied: Math.min(UNREPLIED_SECONDS, idle), replied: idle });
        guardRules.push(rule(`ct timeout set "${t}"`));
      }
      const key = (vip: string) => `${vip} . ${p} . ${port}`;
      for (const v of mine) {
        if (listen[f].has(key(v.text))) throw new UnsafeNftValueError(key(v.text), 'two listeners on one VIP, protocol and port');
      }
      if (guardRules.length > 0) {
        const g = guardChainName(l.name, f);
        chains.set(g, { rules: guardRules });
        for (const v of mine) guard[f].set(key(v.text), `jump ${g}`);
      }
      const mapName = poolMapName(pool.name, f);
      const n = natChainName(l.name, f);
      chains.set(n, { rules: [rule(`meta l4proto ${p} dnat ${ipFamily(f)} to ${selector(pool, f, seed)} map @${mapName}`)] });
      for (const v of mine) listen[f].set(key(v.text), `jump ${n}`);
      if (!maps.has(mapName)) {
        const elements = new Map<string, string>();
        assignSlots(eligibleMembers(pool, f), slotCount(pool)).forEach((m, slot) => {
          elements.set(String(slot), `${address(m.address, 'member address', f).text} . ${m.port}`);
        });
        maps.set(mapName, { kind: f === 4 ? 'pool4' : 'pool6', protocol: pool.protocol, elements });
      }
    }
  }
  for (const f of FAMILIES) {
    maps.set(guardMapName(f), { kind: f === 4 ? 'verdict4' : 'verdict6', elements: guard[f] });
    maps.set(listenMapName(f), { kind: f === 4 ? 'verdict4' : 'verdict6', elements: listen[f] });
  }
  return { comment: `nslb ${lb.namespace}/${lb.name}`, timeouts, maps, chains };
}

/** The flows a member answers: its conntrack entries are found by the reply direction's source. */
export interface MemberFlows {
  protocol: L4Protocol;
  address: string;
  port: number;
}

function servingTargets(lb: NftLoadBalancer): Map<string, MemberFlows> {
  const targets = new Map<string, MemberFlows>();
  for (const p of lb.pools) {
    if (!p.adminStateUp) continue;
    for (const m of p.members) {
      if (!m.adminStateUp || m.health === 'DOWN') continue;
      const a = canonicalIp(m.address);
      targets.set(`${p.protocol} ${a} ${m.port}`, { protocol: p.protocol, address: a, port: m.port });
    }
  }
  return targets;
}

/**
 * Members whose existing flows must move after a change: they served before (enabled, not DOWN, weight or
 * not) and no longer can (DOWN, disabled, removed, moved, or their pool disabled). Their conntrack entries are
 * deleted so that a client's next packet is balanced again, rather than sent on to a member that will not
 * answer until the entry times out. A drained member (weight 0) is not here: its flows keep going.
 */
export function flowsToForget(before: NftLoadBalancer, after: NftLoadBalancer): MemberFlows[] {
  const still = servingTargets(after);
  return [...servingTargets(before)].filter(([key]) => !still.has(key)).map(([, flows]) => flows);
}
