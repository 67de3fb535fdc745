// Pure: the one nft transaction (the lines of one `nft -f` file, which the kernel applies all or nothing)
// that takes a namespace's table from what is observed to what is desired. Member changes and health
// transitions only change slot maps, so they become element deletes and adds: no rule is touched, no
// packet ever meets a half-filled map, and conntrack keeps every existing flow where it was. Changed
// listeners flush and refill only their own chains, inside the same transaction. What cannot be repaired
// object by object (a map or base chain of another kind, made by hand) rebuilds the table, still atomically.
import {
  NFT_FAMILY,
  NFT_TABLE,
  ruleId,
  type NftBaseChain,
  type NftChain,
  type NftCtTimeout,
  type NftMap,
  type NftMapKind,
  type NftState,
} from './nft-ruleset.js';

const T = `${NFT_FAMILY} ${NFT_TABLE}`;

const MAP_TYPES: Record<NftMapKind, (m: NftMap) => string> = {
  // typeof rather than `type integer : …`: nft needs the key's size, which only an expression gives it. The
  // modulus in the expression does not matter (the key is a 32-bit integer either way).
  pool4: (m) => `typeof numgen inc mod 256 : ip daddr . ${protoOf(m)} dport`,
  pool6: (m) => `typeof numgen inc mod 256 : ip6 daddr . ${protoOf(m)} dport`,
  verdict4: () => 'type ipv4_addr . inet_proto . inet_service : verdict',
  verdict6: () => 'type ipv6_addr . inet_proto . inet_service : verdict',
};

function protoOf(m: NftMap): string {
  return m.protocol === 'SCTP' ? 'sctp' : 'udp';
}

function sameBase(a: NftBaseChain | undefined, b: NftBaseChain | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.type === b.type && a.hook === b.hook && a.priority === b.priority && a.policy === b.policy;
}

function sameRules(a: NftChain, b: NftChain): boolean {
  return a.rules.length === b.rules.length && a.rules.every((r, i) => r.id === b.rules[i]?.id);
}

function sameTimeout(a: NftCtTimeout, b: NftCtTimeout): boolean {
  return a.family === b.family && a.unreplied === b.unreplied && a.replied === b.replied;
}

/** Whether the observed table can be brought to the desired one object by object. */
function repairable(observed: NftState, desired: NftState): boolean {
  for (const [name, m] of desired.maps) {
    const o = observed.maps.get(name);
    if (o !== undefined && o.kind !== m.kind) return false;
  }
  for (const [name, c] of desired.chains) {
    const o = observed.chains.get(name);
    if (o !== undefined && !sameBase(o.base, c.base)) return false;
  }
  for (const [name, t] of desired.timeouts) {
    const o = observed.timeouts.get(name);
    if (o !== undefined && !sameTimeout(o, t)) return false;
  }
  return true;
}

function addChain(name: string, c: NftChain): string {
  if (c.base === undefined) return `add chain ${T} ${name}`;
  const b = c.base;
  return `add chain ${T} ${name} { type ${b.type} hook ${b.hook} priority ${b.priority}; policy ${b.policy}; }`;
}

function addRules(name: string, c: NftChain): string[] {
  return c.rules.map((r) => {
    if (r.text === '' || r.id !== ruleId(r.text)) throw new Error(`rule of chain ${name} has no text or a stale id`);
    return `add rule ${T} ${name} ${r.text} comment "${r.id}"`;
  });
}

function addTimeout(name: string, t: NftCtTimeout): string {
  const l3 = t.family === 4 ? 'ip' : 'ip6';
  return `add ct timeout ${T} ${name} { protocol udp; l3proto ${l3}; policy = { unreplied : ${t.unreplied}, replied : ${t.replied} }; }`;
}

function elementLines(name: string, observed: ReadonlyMap<string, string>, desired: ReadonlyMap<string, string>): string[] {
  const removed: string[] = [];
  const added: string[] = [];
  for (const [k, v] of observed) if (desired.get(k) !== v) removed.push(k);
  for (const [k, v] of desired) if (observed.get(k) !== v) added.push(`${k} : ${v}`);
  const lines: string[] = [];
  // A changed element is deleted and added again: nft has no "replace element", and within one
  // transaction the two are one change.
  if (removed.length > 0) lines.push(`delete element ${T} ${name} { ${removed.join(', ')} }`);
  if (added.length > 0) lines.push(`add element ${T} ${name} { ${added.join(', ')} }`);
  return lines;
}

const EMPTY: NftState = { comment: '', timeouts: new Map(), maps: new Map(), chains: new Map() };

/**
 * The transaction from `observed` (undefined: no table) to `desired` (undefined: no table wanted), as nft
 * script lines; empty when they already agree. Ordered so that nothing is referenced before it exists or
 * deleted while still referenced.
 */
export function planNftTransaction(observed: NftState | undefined, desired: NftState | undefined): string[] {
  if (desired === undefined) return observed === undefined ? [] : [`delete table ${T}`];
  const lines: string[] = [];
  let from = observed;
  if (from !== undefined && !repairable(from, desired)) {
    lines.push(`delete table ${T}`);
    from = undefined;
  }
  if (from === undefined) lines.push(`add table ${T} { comment "${desired.comment}"; }`);
  const o = from ?? EMPTY;

  for (const [name, t] of desired.timeouts) if (!o.timeouts.has(name)) lines.push(addTimeout(name, t));
  for (const [name, m] of desired.maps) if (!o.maps.has(name)) lines.push(`add map ${T} ${name} { ${MAP_TYPES[m.kind](m)}; }`);

  const fill: string[] = [];
  for (const [name, c] of desired.chains) {
    const oc = o.chains.get(name);
    if (oc === undefined) {
      lines.push(addChain(name, c));
      fill.push(name);
    } else if (!sameRules(oc, c)) {
      lines.push(`flush chain ${T} ${name}`);
      fill.push(name);
    }
  }
  for (const name of fill) lines.push(...addRules(name, desired.chains.get(name) ?? { rules: [] }));

  for (const [name, m] of desired.maps) lines.push(...elementLines(name, o.maps.get(name)?.elements ?? new Map(), m.elements));

  for (const name of o.chains.keys()) if (!desired.chains.has(name)) lines.push(`delete chain ${T} ${name}`);
  for (const name of o.maps.keys()) if (!desired.maps.has(name)) lines.push(`delete map ${T} ${name}`);
  for (const name of o.timeouts.keys()) if (!desired.timeouts.has(name)) lines.push(`delete ct timeout ${T} ${name}`);
  return lines;
}

/** The whole table as one script, as the first apply sends it: what the golden files show. */
export function renderNftScript(desired: NftState): string {
  return `${planNftTransaction(undefined, desired).join('\n')}\n`;
}
