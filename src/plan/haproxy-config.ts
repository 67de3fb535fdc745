// Renders the HAProxy 2.6 configuration of one load balancer (pure: same model → same bytes).
// The structure follows Octavia's combined-listeners template: one frontend per listener, one backend per
// pool, servers in name order. Every golden config under test/golden/haproxy/ is checked by the real
// `haproxy -c`, so a keyword HAProxy 2.6 rejects shows up in the tests, not on a node. The sections: global and
// defaults (here), frontends (haproxy-frontend.ts), backends (haproxy-backend.ts), TLS (haproxy-tls.ts), and what
// any value must be to reach the file (haproxy-words.ts).
import type { DesiredListener, DesiredLoadBalancer } from '../desired/model.js';
import { vipAddresses } from '../desired/model.js';
import { activeMonitor, DEFAULT_MEMBER_CONNECT_MS, DEFAULT_MEMBER_DATA_MS, renderBackend } from './haproxy-backend.js';
import { renderFrontend } from './haproxy-frontend.js';
import { renderPrometheusFrontend } from './haproxy-prometheus.js';
import { renderHaproxyPeers, renderLocalPeer, type DesiredPeers } from './haproxy-peers.js';
import { assertSafeToken, byName, hasLimit, hostPart, int, type HaproxyPaths } from './haproxy-words.js';
import { checkCommands, isKernelPool, isKernelListener } from './kernel-model.js';
import { needsExternalCheck, renderCheckBackend, type CheckedPool } from './udp-health-checks.js';

/** Worker threads of each HAProxy (`nbthread`); see renderGlobal. */
export const HAPROXY_THREADS = 1;

/** The process-wide connection target unless the listeners' own limits add up to more. */
export const DEFAULT_GLOBAL_MAXCONN = 50000;

/** Octavia's ceiling for one load balancer; also keeps fd-hard-limit a sane int. */
export const MAX_GLOBAL_MAXCONN = 1_000_000;

function globalMaxconn(listeners: DesiredListener[]): number {
  const sum = listeners.filter(hasLimit).reduce((acc, l) => acc + l.connectionLimit, 0);
  return Math.min(MAX_GLOBAL_MAXCONN, Math.max(DEFAULT_GLOBAL_MAXCONN, sum));
}

// Each proxied connection holds two descriptors (client and server side); the rest covers listeners,
// health checks and the runtime socket.
function fdHardLimit(maxconn: number): number {
  return 2 * maxconn + 1000;
}

function renderGlobal(maxconn: number, paths: HaproxyPaths, pingChecks: boolean, peers: DesiredPeers | undefined): string[] {
  const lines = [
    'global',
    // The driver starts HAProxy with -W -D; master-worker here keeps the config valid on its own.
    '    master-worker',
    // Not `maxconn`: an explicit one makes HAProxy demand 2×maxconn descriptors and refuse to start
    // where RLIMIT_NOFILE is lower and cannot be raised (containers without CAP_SYS_RESOURCE). With
    // fd-hard-limit, HAProxy derives maxconn from whichever is lower, this or the node's limit.
    `    fd-hard-limit ${int(fdHardLimit(maxconn), 'fd-hard-limit')}`,
    // One thread, not HAProxy's default of one per CPU (up to 64): a node runs hundreds or thousands of load
    // balancers that share its CPUs, so a second thread adds no capacity to the node, only memory to each
    // load balancer (about 0.3 MB of the worker's 3.9 MB here) and tasks to the kernel; how much each cost
    // depended on the node's CPU count. An Octavia amphora (1 vCPU by default) runs its HAProxy on one thread too.
    `    nbthread ${HAPROXY_THREADS}`,
    // expose-fd lets the new worker take over the listening sockets on reload, so no SYN is refused.
    `    stats socket ${assertSafeToken(paths.socket)} mode 600 level admin expose-fd listeners`,
    `    server-state-file ${assertSafeToken(paths.stateFile)}`,
    // HAProxy's internal HTTP client (Lua, OCSP updates) is never used by these configs, yet by default
    // it loads the whole system CA store at every start, check and reload: most of a new load balancer's
    // start-up CPU. Not loading it changes nothing that nslb renders.
    '    httpclient.ssl.verify none',
    // Each check a random ±5% off its interval: HAProxies started together (8 per batch) would otherwise
    // check the same members at the same instants for as long as they run.
    '    spread-checks 5',
    // No hard-stop-after: an old worker keeps serving its established connections until they end,
    // so a reload never cuts a long-lived TCP session.
    // No `log`: daemonized (-D) there is no stdout to log to, and per-request logs of every load
    // balancer in the node's syslog are not part of the contract yet. Health is read via `show stat`.
  ];
  // ACTIVE_STANDBY: which entry of the peers section is this HAProxy.
  if (peers !== undefined) lines.push(renderLocalPeer(peers));
  if (pingChecks) {
    // PING monitors run an external command, which HAProxy only allows with both switches. Forking
    // is a hardening HAProxy gives up, so only load balancers that have a PING monitor pay for it.
    lines.push('    external-check', '    insecure-fork-wanted');
  }
  return lines;
}

function renderDefaults(): string[] {
  return [
    'defaults',
    '    mode tcp',
    '    load-server-state-from-file global',
    '    retries 3',
    '    option redispatch',
    // Fallbacks only: every frontend and backend sets its own timeouts below.
    `    timeout connect ${DEFAULT_MEMBER_CONNECT_MS}`,
    '    timeout client 50000',
    `    timeout server ${DEFAULT_MEMBER_DATA_MS}`,
  ];
}

/** The two nodes of an ACTIVE_STANDBY pair, at their VRRP addresses (always on their node, unlike the VIP). */
export function peersOf(lb: DesiredLoadBalancer): DesiredPeers | undefined {
  const { ha } = lb;
  if (ha === undefined) return undefined;
  return {
    local: ha.node,
    peers: [
      { name: ha.node, address: ha.localAddress },
      { name: ha.peer, address: ha.peerAddress },
    ],
  };
}

export function renderHaproxyConfig(lb: DesiredLoadBalancer, paths: HaproxyPaths): string {
  // UDP and SCTP listeners have no frontend (the kernel forwards them); their pools get check-only backends.
  const listeners = byName(lb.listeners).filter((l) => !isKernelListener(l));
  const pools = byName(lb.pools);
  // Names are checked before they are used as keys, so that a hostile pool name is reported as such
  // rather than as a dangling reference.
  const poolsByName = new Map(pools.map((p) => [assertSafeToken(p.name), p]));
  const maxconn = globalMaxconn(listeners);
  const vipHosts = vipAddresses(lb.vip).map((a) => hostPart(a.address));
  const pingChecks = pools.some((p) => activeMonitor(p)?.type === 'PING' || (isKernelPool(p) && needsExternalCheck(p as CheckedPool)));
  const commands = checkCommands(paths);
  const peers = peersOf(lb);

  const sections: string[][] = [
    [`# Generated by nslb for ${assertSafeToken(lb.namespace)}/${assertSafeToken(lb.name)}. Do not edit: changes are overwritten.`],
    renderGlobal(maxconn, paths, pingChecks, peers),
    renderDefaults(),
    ...(peers === undefined ? [] : [renderHaproxyPeers(peers)]),
    ...listeners.map((l) => (l.protocol === 'PROMETHEUS' ? renderPrometheusFrontend(lb, l, vipHosts) : renderFrontend(lb, l, vipHosts, poolsByName, paths))),
    ...pools.map((p) => (isKernelPool(p) ? renderCheckBackend(p as CheckedPool, commands) : renderBackend(lb, p, listeners, maxconn, paths))),
  ];
  return `${sections.map((s) => s.join('\n')).join('\n\n')}\n`;
}
