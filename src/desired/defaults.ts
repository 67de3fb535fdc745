// What the API leaves out, filled in when a load balancer is assembled (DESIGN §1's defaults), and Octavia's
// protocol pairings, which the cross-object checks enforce.
import type { ListenerProtocol, PoolProtocol } from '../api/v1alpha1/types.js';

export const SPEC_DEFAULTS = {
  adminStateUp: true,
  prefixLength: { 4: 24, 6: 64 },
  connectionLimit: -1,
  timeouts: { clientData: 50_000, memberConnect: 5_000, memberData: 50_000, tcpInspect: 0 },
  weight: 1,
  backup: false,
  maxRetriesDown: 3,
  httpMethod: 'GET',
  urlPath: '/',
  expectedCodes: '200',
  insertHeader: false,
  redirectHttpCode: 302,
  invert: false,
} as const;

/** Octavia's listener → pool protocol pairs. */
export const ALLOWED_POOL_PROTOCOLS: Readonly<Record<ListenerProtocol, readonly PoolProtocol[]>> = {
  TCP: ['TCP', 'HTTP', 'HTTPS', 'PROXY', 'PROXYV2'],
  HTTP: ['HTTP', 'PROXY', 'PROXYV2'],
  TERMINATED_HTTPS: ['HTTP', 'PROXY', 'PROXYV2'],
  HTTPS: ['HTTPS', 'TCP', 'PROXY', 'PROXYV2'],
  // Forwarded by the kernel (nftables): the member speaks what the client speaks.
  UDP: ['UDP'],
  SCTP: ['SCTP'],
  // HAProxy's own exporter answers: there is no pool to send anything to.
  PROMETHEUS: [],
};

/** Listener and pool protocols the kernel forwards (nftables in the namespace), never HAProxy (DESIGN §8). */
export const KERNEL_PROTOCOLS: ReadonlySet<ListenerProtocol | PoolProtocol> = new Set(['UDP', 'SCTP']);
/** Algorithms nftables can express per flow; LEAST_CONNECTIONS would need a count per member. */
export const KERNEL_ALGORITHMS = ['ROUND_ROBIN', 'SOURCE_IP', 'SOURCE_IP_PORT'] as const;

/** Listener protocols HAProxy runs in `mode http`: the only ones with headers, cookies and L7 policies. */
export const HTTP_LISTENERS: ReadonlySet<ListenerProtocol> = new Set(['HTTP', 'TERMINATED_HTTPS']);
/** Pool protocols that only ever pair with tcp-mode listeners (see ALLOWED_POOL_PROTOCOLS): no cookies, no ALPN. */
export const TCP_ONLY_POOLS: ReadonlySet<PoolProtocol> = new Set(['TCP', 'HTTPS']);
