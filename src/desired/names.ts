// Names of what nslb creates on the node (DESIGN §2). They derive from a hash of `<namespace>/<name>` so
// that they are stable across restarts, fit the kernel's 15-character interface limit, and double as the
// marker that tells garbage collection "this is ours".
import { createHash } from 'node:crypto';
import type { LbKey } from '../api/v1alpha1/types.js';
import type { NodeNames } from './model.js';

const NETNS_PREFIX = 'nslb-';
const IFACE_PREFIX = 'nslb';
const NETNS_HEX = 12;
const IFACE_HEX = 11;

/**
 * OpenStack's MAC prefix (locally administered, unicast): VIP ports look like Neutron ports to anyone
 * reading `ovs-vsctl show`.
 */
const MAC_PREFIX = 'fa:16:3e';
/**
 * The MAC's last three bytes are hex digits 12–17 (0-based, end exclusive at 18) of the hash: right after
 * the digits the netns name uses, so MAC and names are independent slices of one digest.
 */
const MAC_HEX_START = 12;

function lbHash(namespace: string, name: string): string {
  return createHash('sha256').update(`${namespace}/${name}`).digest('hex');
}

export function nodeNames(namespace: string, name: string): NodeNames {
  const hash = lbHash(namespace, name);
  return { netns: NETNS_PREFIX + hash.slice(0, NETNS_HEX), iface: IFACE_PREFIX + hash.slice(0, IFACE_HEX) };
}

export function derivedMac(namespace: string, name: string): string {
  const hex = lbHash(namespace, name).slice(MAC_HEX_START, MAC_HEX_START + 6);
  return `${MAC_PREFIX}:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}

/** Hex digits of the hash in a member network's port name: `nslb` + 9 + a 2-digit index is 15 characters. */
const MEMBER_NET_HEX = 9;

/** The port of member network `index` (0-based) of a load balancer (DESIGN §8). */
export function memberNetworkIface(namespace: string, name: string, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 99) throw new RangeError(`member network index must be 0–99, got ${index}`);
  return IFACE_PREFIX + lbHash(namespace, name).slice(0, MEMBER_NET_HEX) + String(index).padStart(2, '0');
}

/** Whether `iface` is one of the member-network ports of the load balancer whose netns this is. */
export function isMemberNetworkIfaceOf(netns: string, iface: string): boolean {
  const prefix = IFACE_PREFIX + netns.slice(NETNS_PREFIX.length, NETNS_PREFIX.length + MEMBER_NET_HEX);
  return iface.length === prefix.length + 2 && iface.startsWith(prefix) && /^[0-9]{2}$/.test(iface.slice(prefix.length)) && iface !== ifaceOfNetns(netns);
}

/** A MAC per member network: the VIP's derivation over `<namespace>/<name>#<index>`. */
export function memberNetworkMac(namespace: string, name: string, index: number): string {
  return derivedMac(namespace, `${name}#${index}`);
}

export function lbKey(namespace: string, name: string): LbKey {
  return `${namespace}/${name}`;
}

/** The inverse of lbKey; throws on anything lbKey cannot have produced. */
export function parseLbKey(key: LbKey): { namespace: string; name: string } {
  const parts = key.split('/');
  const [namespace, name] = parts;
  if (parts.length !== 2 || namespace === undefined || name === undefined || namespace === '' || name === '') {
    throw new TypeError(`not a load balancer key (<namespace>/<name>): ${JSON.stringify(key)}`);
  }
  return { namespace, name };
}

const NETNS_NAME = new RegExp(`^${NETNS_PREFIX}[0-9a-f]{${NETNS_HEX}}$`);
const IFACE_NAME = new RegExp(`^${IFACE_PREFIX}[0-9a-f]{${IFACE_HEX}}$`);

/** Whether a network namespace name has the shape nslb gives its own (the GC marker for netns). */
export function isNslbNetnsName(s: string): boolean {
  return NETNS_NAME.test(s);
}

/** Whether an interface name has the shape nslb gives its VIP ports. */
export function isNslbIfaceName(s: string): boolean {
  return IFACE_NAME.test(s);
}

/** The VIP interface of the load balancer whose netns this is: both names are slices of one hash. */
export function ifaceOfNetns(netns: string): string {
  return IFACE_PREFIX + netns.slice(NETNS_PREFIX.length, NETNS_PREFIX.length + IFACE_HEX);
}

/**
 * Work keys are load balancer keys, or `orphan:<netns>` for something of nslb's on the node that no load
 * balancer claims (garbage collection): its owner is unknown, its netns name is all there is.
 */
const ORPHAN_PREFIX = 'orphan:';

export function orphanKey(netns: string): string {
  return `${ORPHAN_PREFIX}${netns}`;
}

export function isOrphanKey(key: string): boolean {
  return key.startsWith(ORPHAN_PREFIX);
}

/**
 * netnsOfKey's answers: every observation asks for each OVS port's load balancer, and a sha256 each time was 3 s
 * of an agent's 150 s busy main thread while 100 pairs were placed (bench/README (w), issue-17-e profiles).
 */
const netnsOfKeyCache = new Map<string, string>();
const NETNS_OF_KEY_CACHE_MAX = 20_000;

/** The netns a work key is about. Throws on a key that is neither a load balancer key nor an orphan key. */
export function netnsOfKey(key: string): string {
  if (isOrphanKey(key)) return key.slice(ORPHAN_PREFIX.length);
  const cached = netnsOfKeyCache.get(key);
  if (cached !== undefined) return cached;
  const { namespace, name } = parseLbKey(key);
  const netns = nodeNames(namespace, name).netns;
  // Keys of deleted load balancers would pile up over months: start again past a bound no node reaches.
  if (netnsOfKeyCache.size >= NETNS_OF_KEY_CACHE_MAX) netnsOfKeyCache.clear();
  netnsOfKeyCache.set(key, netns);
  return netns;
}
