// The nftables driver of UDP and SCTP listeners: argv builders, the parser of `nft -j list table`, and the
// few verbs the controller needs (observe, apply one transaction, delete the table, forget a member's
// flows). Every command runs inside the load balancer's namespace through `ip netns exec`; the script goes
// to `nft -f -` on stdin, so that there is no file to leave behind on a crash.
import { access } from 'node:fs/promises';
import { canonicalIp } from '../../desired/addresses.js';
import type { Runner } from '../../exec/run.js';
import { CommandError } from '../../exec/errors.js';
import {
  NFT_FAMILY,
  NFT_TABLE,
  type MemberFlows,
  type NftBaseChain,
  type NftChain,
  type NftCtTimeout,
  type NftMap,
  type NftMapKind,
  type NftRule,
  type NftState,
} from '../../plan/nft-ruleset.js';

export const NFT_BIN = process.env.NSLB_NFT ?? 'nft';
export const CONNTRACK_BIN = process.env.NSLB_CONNTRACK ?? 'conntrack';

const inNetns = (netns: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', netns, ...argv];

/** Applies the script on stdin as one transaction: all of it, or (on any error) nothing. */
export const argvApply = (netns: string): string[] => inNetns(netns, [NFT_BIN, '-f', '-']);
/** Like argvApply, but the kernel only checks the transaction and throws it away. */
export const argvCheck = (netns: string): string[] => inNetns(netns, [NFT_BIN, '-c', '-f', '-']);
export const argvList = (netns: string): string[] => inNetns(netns, [NFT_BIN, '-j', 'list', 'table', NFT_FAMILY, NFT_TABLE]);
export const argvDeleteTable = (netns: string): string[] => inNetns(netns, [NFT_BIN, 'delete', 'table', NFT_FAMILY, NFT_TABLE]);

/**
 * Forwarding on inside the namespace (both sysctls are the namespace's own, not the node's): the DNATed
 * flows are routed back out. The table's forward chain drops everything that is not such a flow.
 */
export const argvForwarding = (netns: string): string[] => inNetns(netns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);

/**
 * Deletes the conntrack entries of flows answered by one member (the reply direction comes from it), so that
 * their next packet is balanced again instead of going on to a member that is down, disabled or gone.
 */
export function argvForgetFlows(netns: string, flow: MemberFlows): string[] {
  const family = flow.address.includes(':') ? 'ipv6' : 'ipv4';
  const proto = flow.protocol === 'SCTP' ? 'sctp' : 'udp';
  return inNetns(netns, [CONNTRACK_BIN, '-D', '-f', family, '-p', proto, '--reply-src', flow.address, '--reply-port-src', String(flow.port)]);
}

// ---------------------------------------------------------------------------------------------------------
// Parsing `nft -j list table inet nslb`

export class NftParseError extends Error {
  override readonly name = 'NftParseError';
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const PROTO_NAMES: Record<string, string> = { '17': 'udp', '132': 'sctp', udp: 'udp', sctp: 'sctp', tcp: 'tcp', '6': 'tcp' };

/** One element key or value as the renderer spells it: canonical addresses, protocol names, ` . ` joins. */
function atom(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') {
    if (/^[0-9a-fA-F.:]+$/.test(v) && (v.includes('.') || v.includes(':'))) return canonicalIp(v);
    return PROTO_NAMES[v] ?? v;
  }
  if (isObj(v) && Array.isArray(v.concat)) return v.concat.map(atom).join(' . ');
  if (isObj(v) && isObj(v.jump) && typeof v.jump.target === 'string') return `jump ${v.jump.target}`;
  if (isObj(v) && isObj(v.elem)) return atom(v.elem.val);
  throw new NftParseError(`unexpected element ${JSON.stringify(v)}`);
}

/** `address . protocol . port`: the protocol may come as a number, which would otherwise read as a port. */
function verdictKey(v: unknown): string {
  if (isObj(v) && Array.isArray(v.concat) && v.concat.length === 3) {
    const [a, p, port] = v.concat as unknown[];
    return `${atom(a)} . ${PROTO_NAMES[String(p)] ?? String(p)} . ${atom(port)}`;
  }
  return atom(v);
}

function mapKind(m: Json): NftMapKind | undefined {
  const type = Array.isArray(m.type) ? m.type.join(' . ') : m.type;
  if (type === 'integer' && m.map === 'ipv4_addr . inet_service') return 'pool4';
  if (type === 'integer' && m.map === 'ipv6_addr . inet_service') return 'pool6';
  if (type === 'ipv4_addr . inet_proto . inet_service' && m.map === 'verdict') return 'verdict4';
  if (type === 'ipv6_addr . inet_proto . inet_service' && m.map === 'verdict') return 'verdict6';
  return undefined;
}

/** A chain or map of a kind nslb never makes still has a name; it is kept with an impossible kind. */
const FOREIGN_KIND = 'foreign' as NftMapKind;

/**
 * The table as NftState. Rules are known by their comment (nslb writes one on each: the digest of its
 * text), so a rule edited by hand differs. Undefined when the output has no nslb table.
 */
export function parseNftTable(json: string): NftState | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (error) {
    throw new NftParseError(`nft -j output is not JSON: ${(error as Error).message}`);
  }
  const items = isObj(doc) && Array.isArray(doc.nftables) ? (doc.nftables as unknown[]) : undefined;
  if (items === undefined) throw new NftParseError('nft -j output has no "nftables" array');
  let found = false;
  let comment = '';
  const timeouts = new Map<string, NftCtTimeout>();
  const maps = new Map<string, NftMap>();
  const chains = new Map<string, { base?: NftBaseChain; rules: NftRule[] }>();
  const ours = (o: Json) => o.family === NFT_FAMILY && (o.table === NFT_TABLE || o.name === NFT_TABLE);
  for (const item of items) {
    if (!isObj(item)) continue;
    const [kind] = Object.keys(item);
    const o = kind === undefined ? undefined : item[kind];
    if (!isObj(o) || !ours(o)) continue;
    switch (kind) {
      case 'table':
        found = true;
        comment = typeof o.comment === 'string' ? o.comment : '';
        break;
      case 'ct timeout': {
        const policy = isObj(o.policy) ? o.policy : {};
        const family = o.l3proto === 'ip6' ? 6 : 4;
        // nft leaves out states at the kernel's default (30 s unreplied).
        const unreplied = typeof policy.unreplied === 'number' ? policy.unreplied : 30;
        const replied = typeof policy.replied === 'number' ? policy.replied : 120;
        if (typeof o.name === 'string') timeouts.set(o.name, { family, unreplied, replied });
        break;
      }
      case 'map': {
        if (typeof o.name !== 'string') break;
        const elements = new Map<string, string>();
        const mk = mapKind(o) ?? FOREIGN_KIND;
        for (const e of Array.isArray(o.elem) ? o.elem : []) {
          if (Array.isArray(e) && e.length === 2) elements.set(mk === 'verdict4' || mk === 'verdict6' ? verdictKey(e[0]) : atom(e[0]), atom(e[1]));
        }
        maps.set(o.name, { kind: mk, elements });
        break;
      }
      case 'set':
        // nslb makes no named sets: one here was made by hand, and is left alone.
        break;
      case 'chain': {
        if (typeof o.name !== 'string') break;
        const chain: { base?: NftBaseChain; rules: NftRule[] } = chains.get(o.name) ?? { rules: [] };
        if (typeof o.hook === 'string') {
          chain.base = {
            type: o.type as NftBaseChain['type'],
            hook: o.hook as NftBaseChain['hook'],
            priority: typeof o.prio === 'number' ? o.prio : Number.NaN,
            policy: o.policy === 'drop' ? 'drop' : 'accept',
          };
        }
        chains.set(o.name, chain);
        break;
      }
      case 'rule': {
        if (typeof o.chain !== 'string') break;
        const chain = chains.get(o.chain) ?? { rules: [] };
        chain.rules.push({ id: typeof o.comment === 'string' ? o.comment : '', text: '' });
        chains.set(o.chain, chain);
        break;
      }
      default:
        break;
    }
  }
  if (!found) return undefined;
  return { comment, timeouts, maps, chains: chains as Map<string, NftChain> };
}

// ---------------------------------------------------------------------------------------------------------
// Verbs

function missingTable(error: unknown): boolean {
  return error instanceof CommandError && /No such file or directory/.test(error.stderrTail);
}

/** The namespace's nslb table, or undefined when it has none. */
export async function observeNftTable(run: Runner, netns: string): Promise<NftState | undefined> {
  try {
    const { stdout } = await run(argvList(netns));
    return parseNftTable(stdout);
  } catch (error) {
    if (missingTable(error)) return undefined;
    throw error;
  }
}

/** Applies one transaction (the lines of planNftTransaction); nothing to do for none. */
export async function applyNftTransaction(run: Runner, netns: string, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await run(argvApply(netns), { input: `${lines.join('\n')}\n` });
}

/** Idempotent: a namespace without the table is already clean. */
export async function deleteNftTable(run: Runner, netns: string): Promise<void> {
  try {
    await run(argvDeleteTable(netns));
  } catch (error) {
    if (!missingTable(error)) throw error;
  }
}

export async function ensureForwarding(run: Runner, netns: string): Promise<void> {
  await run(argvForwarding(netns));
}

/** conntrack exits 1 when no entry matched: that is the state asked for, not an error. */
export async function forgetFlows(run: Runner, netns: string, flows: readonly MemberFlows[]): Promise<void> {
  for (const flow of flows) {
    try {
      await run(argvForgetFlows(netns, flow));
    } catch (error) {
      if (!(error instanceof CommandError && /0 flow entries have been deleted/.test(error.stderrTail))) throw error;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// What the node's kernel offers SCTP

export interface SctpSupport {
  /** conntrack (and so NAT) knows SCTP: SCTP listeners can be forwarded. */
  forwarding: boolean;
  /** The kernel has an SCTP stack (CONFIG_IP_SCTP): processes on this node can be SCTP endpoints. */
  sockets: boolean;
  /** Why SCTP listeners cannot be served here; undefined when they can. */
  reason?: string;
}

/**
 * Reads /proc (the namespace-independent parts): an SCTP listener needs conntrack's SCTP tracker, which
 * every kernel with nf_conntrack_proto_sctp has (built in since 5.x when conntrack is); the SCTP socket
 * stack is not needed to forward, and monitors probe members with raw sockets.
 */
export async function probeSctp(proc = '/proc'): Promise<SctpSupport> {
  const exists = (path: string) =>
    access(`${proc}/${path}`).then(
      () => true,
      () => false,
    );
  const forwarding = await exists('sys/net/netfilter/nf_conntrack_sctp_timeout_established');
  const sockets = await exists('net/sctp');
  if (forwarding) return { forwarding, sockets };
  return {
    forwarding,
    sockets,
    reason: 'the kernel has no SCTP connection tracking (nf_conntrack_proto_sctp), so SCTP flows cannot be NATed to members',
  };
}
