// Health checks of UDP and SCTP members, run by the load balancer's own HAProxy (pure rendering + reading).
//
// Why HAProxy: Octavia runs keepalived's LVS checkers (MISC_CHECK scripts, TCP_CHECK, HTTP_GET), but
// keepalived's checker process needs IPVS, which this kernel lacks (it exits "IPVS: Can't initialize ipvs",
// FATAL). HAProxy already runs in every load balancer's namespace, already implements Octavia's monitor
// semantics here (delay → inter, timeout → timeout check, maxRetries → rise, maxRetriesDown → fall), checks
// TCP and HTTP itself and runs an external command for the rest (as PING does already), and its `show stat`
// is what the status aggregation reads for every other pool. A UDP or SCTP pool gets a backend that no
// frontend uses: its servers only carry checks. HAProxy never sees a packet of the pool's traffic.
//
// Servers are named after members, so status (ONLINE/ERROR/OFFLINE/DRAINING/NO_MONITOR) comes out of the
// same aggregation as for TCP pools; they point at monitorAddress/monitorPort when given, because an
// external check is handed the server's own address (the traffic goes through nft, not through it).
import type { DesiredHealthMonitor, DesiredMember } from '../desired/model.js';
import { expandExpectedCodes } from './haproxy-backend.js';
import type { StatRow } from './haproxy-stats.js';
import { assertSafeToken, backendName, UnsafeConfigValueError } from './haproxy-words.js';
import type { MemberHealth } from './nft-ruleset.js';

export type UdpMonitorType = 'UDP-CONNECT' | 'SCTP' | 'PING' | 'TCP' | 'HTTP';

/** A pool's monitor as the desired model has it, of a type a kernel pool may have (its name is not rendered). */
export type UdpHealthMonitor = Omit<DesiredHealthMonitor, 'name' | 'type'> & { type: UdpMonitorType };

/** A member as the check-only backend needs it (the network it is reached through changes nothing here). */
export type CheckedMember = Omit<DesiredMember, 'network'>;

export interface CheckedPool {
  name: string;
  adminStateUp: boolean;
  members: readonly CheckedMember[];
  healthMonitor?: UdpHealthMonitor;
}

/** Absolute paths of the external check commands (scripts/udp-check.sh, sctp-check.sh, ping-check.sh). */
export interface CheckCommands {
  udpConnect: string;
  sctp: string;
  ping: string;
}

const EXTERNAL: Partial<Record<UdpMonitorType, keyof CheckCommands>> = { 'UDP-CONNECT': 'udpConnect', SCTP: 'sctp', PING: 'ping' };

/** Whether a pool's checks need HAProxy's `external-check` and `insecure-fork-wanted` in `global`. */
export function needsExternalCheck(pool: CheckedPool): boolean {
  const hm = pool.healthMonitor;
  return hm?.adminStateUp === true && EXTERNAL[hm.type] !== undefined;
}

function int(n: number, what: string): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new UnsafeConfigValueError(String(n), `${what} is not a non-negative integer`);
  return String(n);
}

function hostPart(address: string): string {
  assertSafeToken(address);
  if (!/^[0-9A-Fa-f.:]+$/.test(address)) throw new UnsafeConfigValueError(address, 'not an IP address');
  return address.includes(':') ? `[${address}]` : address;
}

function monitorLines(hm: UdpHealthMonitor, commands: CheckCommands): string[] {
  const lines: string[] = [];
  const external = EXTERNAL[hm.type];
  if (external !== undefined) {
    lines.push('    option external-check', `    external-check command ${assertSafeToken(commands[external])}`);
  } else if (hm.type === 'HTTP') {
    const send = ['http-check send', `meth ${assertSafeToken(hm.httpMethod)}`, `uri ${assertSafeToken(hm.urlPath)}`];
    if (hm.httpVersion !== undefined) send.push(`ver HTTP/${assertSafeToken(hm.httpVersion)}`);
    if (hm.domainName !== undefined) {
      if (hm.domainName.includes('%')) throw new UnsafeConfigValueError(hm.domainName, 'contains %');
      send.push(`hdr Host ${assertSafeToken(hm.domainName)}`);
    }
    const codes = expandExpectedCodes(hm.expectedCodes);
    const expect = codes.length === 1 ? `http-check expect status ${codes[0]}` : `http-check expect rstatus ^(${codes.join('|')})$`;
    lines.push('    option httpchk', `    ${send.join(' ')}`, `    ${expect}`);
  } else if (hm.type !== 'TCP') {
    throw new UnsafeConfigValueError(String(hm.type), 'unknown health monitor type for a UDP or SCTP pool');
  }
  lines.push(`    timeout check ${int(hm.timeout, 'timeout')}s`);
  lines.push(`    default-server inter ${int(hm.delay, 'delay')}s fall ${int(hm.maxRetriesDown, 'maxRetriesDown')} rise ${int(hm.maxRetries, 'maxRetries')}`);
  return lines;
}

/** The check-only backend of one UDP or SCTP pool (same name as a TCP pool's backend: `pool.<name>`). */
export function renderCheckBackend(pool: CheckedPool, commands: CheckCommands): string[] {
  const hm = pool.healthMonitor?.adminStateUp === true ? pool.healthMonitor : undefined;
  const lines = [`backend ${backendName(assertSafeToken(pool.name))}`];
  if (!pool.adminStateUp) lines.push('    disabled');
  // mode tcp: the checks above are layer 4 or HTTP over TCP; the member's UDP or SCTP port is only ever
  // probed by the external commands. No balance, timeouts or persistence: no traffic comes here.
  lines.push('    mode tcp');
  if (hm !== undefined) lines.push(...monitorLines(hm, commands));
  const byName = [...pool.members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const m of byName) {
    const parts = [
      'server',
      assertSafeToken(m.name),
      `${hostPart(m.monitorAddress ?? m.address)}:${int(m.monitorPort ?? m.port, 'port')}`,
      `weight ${int(m.weight, 'weight')}`,
    ];
    if (hm !== undefined) parts.push('check');
    if (m.backup) parts.push('backup');
    if (!m.adminStateUp) parts.push('disabled');
    lines.push(`    ${parts.join(' ')}`);
  }
  return lines;
}

/**
 * Each member's health as HAProxy's checks judge it: "UP" and "UP 1/3" (still up while a fall is being
 * confirmed) are UP, "DOWN" and "DOWN 1/2" DOWN, "no check" NO_CHECK. MAINT (admin down) and NOLB/DRAIN
 * say nothing about the check: the member's previous health stands (admin state and weight come from the spec).
 */
export function memberHealthFromStats(rows: readonly StatRow[], poolName: string, previous?: ReadonlyMap<string, MemberHealth>): Map<string, MemberHealth> {
  const backend = backendName(poolName);
  const health = new Map<string, MemberHealth>();
  for (const row of rows) {
    if (row.type !== 'server' || row.pxname !== backend) continue;
    const s = row.status;
    if (s === 'no check') health.set(row.svname, 'NO_CHECK');
    else if (s.startsWith('UP')) health.set(row.svname, 'UP');
    else if (s.startsWith('DOWN')) health.set(row.svname, 'DOWN');
    else {
      const before = previous?.get(row.svname);
      if (before !== undefined) health.set(row.svname, before);
    }
  }
  return health;
}
