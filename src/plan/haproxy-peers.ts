// The HAProxy `peers` section of an ACTIVE_STANDBY load balancer (pure): the two HAProxies of the pair push
// every stick-table change to each other, so SOURCE_IP and APP_COOKIE persistence survive a failover (the
// BACKUP already knows which member each client sticks to). A peer is a node of the placement: its name is
// the node name, its address the node's VRRP address (always on that node, unlike the VIP), its port
// PEER_PORT. HAProxy finds itself among them by `localpeer` in `global`; a reload passes the local table
// from the old worker to the new one through the same section.
//
// Wiring into haproxy.cfg (src/plan/haproxy-config.ts): `localpeer <name>` in `global`, this section after
// `defaults`, ` peers <PEERS_SECTION>` at the end of every `stick-table` line, and BIND_NONLOCAL on every VIP
// `bind` line so that the BACKUP listens on a VIP it does not hold yet.
import { isIP } from 'node:net';

/** The section's name, as stick tables refer to it. */
export const PEERS_SECTION = 'nslb';

/** Octavia's peer port. Bound on the VRRP address only, so a listener on a VIP may use the same port. */
export const PEER_PORT = 1025;

/**
 * The bind option that lets HAProxy listen on an address that is not (yet) on any interface: the BACKUP's
 * listeners are bound and ready when keepalived adds the VIP, and serve from the first packet. HAProxy 2.6
 * has no `freebind` on bind lines; `transparent` sets IP_TRANSPARENT / IPV6_TRANSPARENT (root has the
 * CAP_NET_ADMIN it needs), which allows the non-local bind and intercepts nothing without TPROXY rules, of
 * which the load balancer's netns has none. Per socket and in the config, unlike the equivalent sysctls
 * (net.ipv4.ip_nonlocal_bind, net.ipv6.ip_nonlocal_bind in the netns, which work too): `haproxy -c`, the
 * goldens and drift repair all see it, and no netns-wide setting has to be observed.
 */
export const BIND_NONLOCAL = 'transparent';

export interface HaproxyPeer {
  /** The node name (`--node-name` of its agent). */
  name: string;
  /** The node's VRRP address. */
  address: string;
  port?: number;
}

export interface DesiredPeers {
  /** This node's name: one of `peers`, and what `localpeer` says. */
  local: string;
  peers: readonly HaproxyPeer[];
}

export class UnsafePeersValueError extends Error {
  override readonly name = 'UnsafePeersValueError';
  constructor(
    readonly value: string,
    readonly reason: string,
  ) {
    super(`refusing to render ${JSON.stringify(value)} into haproxy.cfg's peers section: ${reason}`);
  }
}

// Node names are Kubernetes node names or hostnames (DNS-1123 subdomains); nothing HAProxy would read as
// syntax (whitespace, `#`, quotes, backslashes) fits.
const PEER_NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?$/;

function peerName(name: string): string {
  if (typeof name !== 'string' || !PEER_NAME.test(name)) throw new UnsafePeersValueError(String(name), 'not a valid peer (node) name');
  return name;
}

function peerAddress(peer: HaproxyPeer): string {
  const family = typeof peer.address === 'string' && !peer.address.includes('%') ? isIP(peer.address) : 0;
  if (family === 0) throw new UnsafePeersValueError(String(peer.address), 'not an IP address');
  const port = peer.port ?? PEER_PORT;
  if (!Number.isSafeInteger(port) || port < 1 || port > 65535) throw new UnsafePeersValueError(String(port), 'not a port');
  return `${family === 6 ? `[${peer.address}]` : peer.address}:${port}`;
}

/** `localpeer NAME`, for HAProxy's `global` section. */
export function renderLocalPeer(peers: DesiredPeers): string {
  return `    localpeer ${peerName(peers.local)}`;
}

/** The `peers` section, peers in name order (the same bytes on both nodes but for localpeer). */
export function renderHaproxyPeers(peers: DesiredPeers): string[] {
  const names = peers.peers.map((p) => peerName(p.name));
  if (new Set(names).size !== names.length) throw new UnsafePeersValueError(names.join(' '), 'peer names must be distinct');
  if (!names.includes(peerName(peers.local))) throw new UnsafePeersValueError(peers.local, 'the local peer is not one of the peers');
  const sorted = [...peers.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return [`peers ${PEERS_SECTION}`, ...sorted.map((p) => `    peer ${p.name} ${peerAddress(p)}`)];
}

/** What a `stick-table` line of an ACTIVE_STANDBY load balancer ends with. */
export function stickTablePeers(): string {
  return `peers ${PEERS_SECTION}`;
}

/** One remote peer in HAProxy's `show peers`: its name and whether its session is established now. */
export interface PeerSession {
  name: string;
  /** `(remote,active)` (a session applet exists) and `last_status=ESTA` (its handshake succeeded). */
  established: boolean;
}

/**
 * Parses `show peers` (HAProxy 2.6): each peer is a line such as
 * `0x…: id=node2(remote,active) addr=10.0.0.3:1025 last_status=ESTA last_hdshk=1s`, followed by indented
 * details. `active` says a session to the peer exists; ESTA that its last handshake succeeded.
 */
export function parseShowPeers(text: string): PeerSession[] {
  const peers: PeerSession[] = [];
  for (const line of text.split('\n')) {
    const m = /\bid=([^(\s]+)\(remote,(active|inactive)\).*\blast_status=(\w+)/.exec(line);
    if (m !== null) peers.push({ name: m[1] ?? '', established: m[2] === 'active' && m[3] === 'ESTA' });
  }
  return peers;
}
