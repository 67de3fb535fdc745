// Renders the keepalived 2.2 configuration of one ACTIVE_STANDBY load balancer on one node (pure: same model →
// same bytes). One process per load balancer per node, inside the load balancer's netns (DESIGN §6): one VRRP
// instance, unicast to the peer's VRRP address, both nodes starting BACKUP with `nopreempt`, so that the VIP
// moves only when its holder fails and never comes back on its own. Every golden config under
// test/golden/keepalived/ is checked by the real `keepalived -t`.
import { isIP } from 'node:net';
import { vipAddresses, type DesiredLoadBalancer } from '../desired/model.js';

/** The model of one node's side of the VRRP pair. Built from LoadBalancer.spec.vrrp and the placement. */
export interface DesiredVrrp {
  /** `<namespace>/<name>` of the LoadBalancer, for the header comment. */
  lbKey: string;
  /** The VRRP instance's name, as keepalived logs it: the load balancer's netns name. */
  name: string;
  /** The VIP interface inside the netns: where adverts go and the VIPs are added. */
  interface: string;
  /** 1–255; both nodes of the pair use the same. */
  virtualRouterId: number;
  /** 1–254; the preferred MASTER's is higher (see vrrpPriority). Only decides who wins a tie. */
  priority: number;
  /** VRRPv3 advert interval: a multiple of 10 ms (keepalived's centiseconds), 10–40950. */
  advertIntervalMs: number;
  /** This node's VRRP address (its slot of spec.vrrp.addresses), already on the interface, never moved. */
  localAddress: string;
  /** The other node's VRRP address, the only source of adverts accepted (unicast, same family). */
  peerAddress: string;
  /** The VIP first, then the additional VIPs: what the MASTER holds. Each `address` with its prefix length. */
  vips: readonly { address: string; prefixLength: number }[];
}

export interface KeepalivedPaths {
  /** scripts/haproxy-vrrp-check.sh (shipped in the package): the backstop script. */
  checkScript: string;
  /** scripts/keepalived-notify.sh (shipped in the package). */
  notifyScript: string;
  /** HAProxy's pidfile in this load balancer's state dir: what the backstop script asks. */
  haproxyPidfile: string;
  /** The FIFO keepalived writes state changes into, and the file the notify script keeps the last one in. */
  notifyFifo: string;
  stateFile: string;
  /** The track file a planned switchover writes 1 into (FAULT: the MASTER lets go) and 0 after. */
  releaseFile: string;
  /** The track file the agent writes HAProxy's health into: 0 serves, 1 does not (FAULT). */
  healthFile: string;
}

/** The track file of HAProxy's health, judged by the agent (src/drivers/keepalived/haproxy-health.ts). */
export const HEALTH_FILE_NAME = 'nslb_haproxy';
/** The track script that stands in for the agent while it is down: HAProxy's master is alive. */
export const BACKSTOP_SCRIPT_NAME = 'nslb_haproxy_backstop';
/** The name of the track file of planned switchovers (`nslb drain`, src/drivers/keepalived/handover.ts). */
export const RELEASE_FILE_NAME = 'nslb_release';

// Whether HAProxy serves is judged by the agent, in-process, for every load balancer of the node (its master
// alive every second, its runtime API every 5 s: src/drivers/keepalived/haproxy-health.ts), and written into the
// health track file, which keepalived follows with inotify: no process is forked per check. A vrrp_script is a
// fork and exec per run, per keepalived; one every second in each of a hundred load balancers cost a node a core.
// What stays a script is the backstop for when the agent is down (a crash, an upgrade) and the file says what it
// last judged: HAProxy's master alive, with shell builtins (no process but the shell), every 5 s. It fails with
// the agent's check when HAProxy dies, so it changes nothing while the agent runs. Two failures in a row move the
// VIP (Octavia's vrrp_fail_count), two successes leave FAULT. Not one: a run that times out is a failure to
// keepalived, and on a loaded node runs timed out: in a drain of 100 pairs at load average 20 (bench (w),
// 2026-12-07) a surviving node put 17 of its VIPs in FAULT within 12 s while its agent judged 2 HAProxies down, and
// the VIPs went to peers still being built; with two failures needed, the same drain had none. With the agent down,
// a dead HAProxy moves the VIP within 10 s instead of 5. Its timeout stays below its interval.
interface TrackScript {
  interval: number;
  timeout: number;
  fall: number;
  rise: number;
}
const BACKSTOP: TrackScript = { interval: 5, timeout: 3, fall: 2, rise: 2 };

/**
 * A vrrp_script block. `init_fail`: until its first run passes, this node cannot be MASTER, so a node whose HAProxy
 * is not up yet never takes the VIP (it runs when keepalived starts).
 */
function vrrpScript(name: string, script: string, t: TrackScript): string[] {
  return [
    `vrrp_script ${name} {`,
    `    script ${script}`,
    `    interval ${t.interval}`,
    `    timeout ${t.timeout}`,
    `    fall ${t.fall}`,
    `    rise ${t.rise}`,
    '    init_fail',
    '}',
  ];
}
// Octavia's: a MASTER repeats its gratuitous ARPs / unsolicited NAs every 5 s, two at a time, so that a
// switch or a client that missed the ones sent at takeover (or flushed its cache) finds the VIP again.
const GARP_REFRESH_S = 5;
const GARP_REFRESH_REPEAT = 2;

/** spec.vrrp.advertIntervalMs's default (see docs/ha.md for the measurements behind it). */
export { DEFAULT_ADVERT_INTERVAL_MS } from '../api/v1alpha1/schemas.js';
/** spec.vrrp.virtualRouterId's default. */
export { defaultVirtualRouterId } from '../desired/topology.js';

export const PRIORITY_PREFERRED_MASTER = 100;
export const PRIORITY_OTHER = 90;

/** The priority of placement slot 0 (the preferred MASTER) and slot 1. */
export function vrrpPriority(slot: number): number {
  if (slot !== 0 && slot !== 1) throw new RangeError(`an ACTIVE_STANDBY placement has slots 0 and 1, not ${slot}`);
  return slot === 0 ? PRIORITY_PREFERRED_MASTER : PRIORITY_OTHER;
}

export class UnsafeKeepalivedValueError extends Error {
  override readonly name = 'UnsafeKeepalivedValueError';
  constructor(
    readonly value: string,
    readonly reason: string,
  ) {
    super(`refusing to render ${JSON.stringify(value)} into keepalived.conf: ${reason}`);
  }
}

// keepalived splits lines on whitespace, reads `#` and `!` as comments, `"` as quotes, `{ }` as blocks, `$` as
// a parameter expansion and a leading `@` as a config id. Every value rendered here is one of these shapes,
// none of which can hold any of that; the API schema constrains the fields first, this is the last defence.
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const INTERFACE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
// Absolute, plain names only; also what socat's address syntax (`UNIX-CONNECT:PATH`) reads literally.
const PATH = /^(\/[A-Za-z0-9_.+-]+)+$/;

function checked(value: string, pattern: RegExp, what: string): string {
  if (typeof value !== 'string') throw new UnsafeKeepalivedValueError(String(value), `${what} is not a string`);
  if (!pattern.test(value)) throw new UnsafeKeepalivedValueError(value, `not a valid ${what}`);
  return value;
}

function path(value: string, what: string): string {
  checked(value, PATH, what);
  if (value.split('/').some((p) => p === '.' || p === '..')) throw new UnsafeKeepalivedValueError(value, `${what} has . or ..`);
  return value;
}

function address(value: string, what: string): { address: string; family: 4 | 6 } {
  const family = typeof value === 'string' ? isIP(value) : 0;
  // isIP also accepts IPv6 zone ids (`fe80::1%eth0`): not an address keepalived can be given here.
  if ((family !== 4 && family !== 6) || value.includes('%')) throw new UnsafeKeepalivedValueError(String(value), `${what} is not an IP address`);
  return { address: value, family };
}

function integer(n: number, min: number, max: number, what: string): string {
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UnsafeKeepalivedValueError(String(n), `${what} must be an integer in ${min}–${max}`);
  return String(n);
}

/** keepalived reads advert_int in seconds with centisecond resolution (VRRPv3). */
export function advertIntSeconds(ms: number): string {
  integer(ms, 10, 40950, 'advertIntervalMs');
  if (ms % 10 !== 0) throw new UnsafeKeepalivedValueError(String(ms), 'advertIntervalMs must be a multiple of 10 (centiseconds)');
  const whole = Math.floor(ms / 1000);
  const fraction = String(ms % 1000)
    .padStart(3, '0')
    .replace(/0+$/, '');
  return fraction === '' ? String(whole) : `${whole}.${fraction}`;
}

/** A keepalived string made of checked tokens: quoted, so that keepalived keeps it as one argument string. */
function command(...words: string[]): string {
  return `"${words.join(' ')}"`;
}

function renderVips(vrrp: DesiredVrrp, family: 4 | 6, dev: string): { same: string[]; other: string[] } {
  if (vrrp.vips.length === 0) throw new UnsafeKeepalivedValueError('', 'an instance needs at least one VIP');
  const same: string[] = [];
  const other: string[] = [];
  for (const vip of vrrp.vips) {
    const a = address(vip.address, 'VIP');
    const line = `        ${a.address}/${integer(vip.prefixLength, 0, a.family === 4 ? 32 : 128, 'VIP prefix length')} dev ${dev}`;
    // Adverts list the addresses of the instance's own family; keepalived moves the others with them when
    // they are "excluded" (IPv4 and IPv6 cannot share virtual_ipaddress).
    (a.family === family ? same : other).push(line);
  }
  return { same, other };
}

export function renderKeepalivedConfig(vrrp: DesiredVrrp, paths: KeepalivedPaths): string {
  const name = checked(vrrp.name, NAME, 'instance name');
  const lbKey = checked(vrrp.lbKey, /^[a-z0-9][a-z0-9.-]{0,252}\/[a-z0-9][a-z0-9-]{0,62}$/, 'load balancer key');
  const dev = checked(vrrp.interface, INTERFACE, 'interface name');
  const local = address(vrrp.localAddress, 'local VRRP address');
  const peer = address(vrrp.peerAddress, 'peer VRRP address');
  if (local.family !== peer.family) {
    throw new UnsafeKeepalivedValueError(`${local.address} ${peer.address}`, 'the two VRRP addresses must be of one family');
  }
  if (local.address === peer.address) throw new UnsafeKeepalivedValueError(local.address, 'the two VRRP addresses must differ');
  const { same, other } = renderVips(vrrp, local.family, dev);
  const script = path(paths.checkScript, 'check script');
  const pidfile = path(paths.haproxyPidfile, 'HAProxy pidfile');
  const backstop = command(script, pidfile);
  const notify = command(path(paths.notifyScript, 'notify script'), path(paths.stateFile, 'state file'));

  const lines = [
    `# Generated by nslb for ${lbKey}. Do not edit: changes are overwritten.`,
    'global_defs {',
    `    router_id ${name}`,
    // Scripts run as root (they read HAProxy's 0600 pidfile directory) and keepalived refuses any script, or
    // directory above it, that another user could write: a check script is code run as root.
    '    script_user root',
    '    enable_script_security',
    // Sub-second adverts need VRRPv3 (v2 counts whole seconds); IPv6 is v3 only anyway.
    '    vrrp_version 3',
    `    vrrp_notify_fifo ${path(paths.notifyFifo, 'notify FIFO')}`,
    `    vrrp_notify_fifo_script ${notify}`,
    '}',
    '',
    ...vrrpScript(BACKSTOP_SCRIPT_NAME, backstop, BACKSTOP),
    '',
    // The agent's verdict on HAProxy: weight 0 makes a non-zero value FAULT. A missing file is created with 1
    // (the agent writes it before it starts keepalived; this covers a hand deletion before a start), so that no
    // node is MASTER before its HAProxy was judged. Without `overwrite`: an existing file is the agent's verdict,
    // on a start as on a SIGHUP reload (keepalived 2.2 leaves an existing file alone on reloads either way).
    `track_file ${HEALTH_FILE_NAME} {`,
    `    file "${path(paths.healthFile, 'health file')}"`,
    '    weight 0',
    '    init_file 1',
    '}',
    '',
    // A planned switchover writes 1 here: weight 0 makes a non-zero value FAULT, which drops the VIP and sends
    // a priority-0 advert (the peer takes over at once); 0 again and the node is BACKUP. keepalived watches it
    // with inotify, so the handover waits for no check interval; it starts at 0 whatever a crash left in it.
    `track_file ${RELEASE_FILE_NAME} {`,
    `    file "${path(paths.releaseFile, 'release file')}"`,
    '    weight 0',
    '    init_file 0 overwrite',
    '}',
    '',
    `vrrp_instance ${name} {`,
    // Both nodes start BACKUP: with nopreempt, a node that starts (or comes back) while its peer is MASTER
    // stays BACKUP whatever the priorities; nopreempt needs a BACKUP start to apply at all.
    '    state BACKUP',
    '    nopreempt',
    `    interface ${dev}`,
    `    virtual_router_id ${integer(vrrp.virtualRouterId, 1, 255, 'virtual router id')}`,
    `    priority ${integer(vrrp.priority, 1, 254, 'priority')}`,
    `    advert_int ${advertIntSeconds(vrrp.advertIntervalMs)}`,
    `    unicast_src_ip ${local.address}`,
    '    unicast_peer {',
    `        ${peer.address}`,
    '    }',
    // Adverts from anyone but the peer are ignored: another host on the segment cannot take the VIP.
    '    check_unicast_src',
    // Without it, a VIP in the VRRP addresses' subnet is a secondary address, and deleting the primary (the
    // VRRP address) would silently take the VIP with it.
    '    promote_secondaries',
    // After a partition heals both nodes are MASTER; the lower priority steps down and first sends one more
    // advert so that the winner re-announces the VIP (the last gratuitous ARPs the network saw were the loser's).
    '    higher_prio_send_advert true',
    `    garp_master_refresh ${GARP_REFRESH_S}`,
    `    garp_master_refresh_repeat ${GARP_REFRESH_REPEAT}`,
    '    virtual_ipaddress {',
    ...same,
    '    }',
    ...(other.length === 0 ? [] : ['    virtual_ipaddress_excluded {', ...other, '    }']),
    '    track_script {',
    `        ${BACKSTOP_SCRIPT_NAME}`,
    '    }',
    '    track_file {',
    `        ${HEALTH_FILE_NAME}`,
    `        ${RELEASE_FILE_NAME}`,
    '    }',
    '}',
  ];
  if (same.length === 0) {
    // VRRPv3 adverts carry the instance family's addresses; an instance with none is valid but its peer could
    // not tell the pair apart from another one. The VRRP addresses must share a family with one VIP.
    throw new UnsafeKeepalivedValueError(local.address, "no VIP is of the VRRP addresses' family");
  }
  return `${lines.join('\n')}\n`;
}

/** This node's side of the VRRP pair of an ACTIVE_STANDBY load balancer; undefined for SINGLE. */
export function desiredVrrp(lb: DesiredLoadBalancer): DesiredVrrp | undefined {
  const { ha } = lb;
  if (ha === undefined) return undefined;
  return {
    lbKey: lb.key,
    name: lb.names.netns,
    interface: lb.names.iface,
    virtualRouterId: ha.virtualRouterId,
    priority: vrrpPriority(ha.slot),
    advertIntervalMs: ha.advertIntervalMs,
    localAddress: ha.localAddress,
    peerAddress: ha.peerAddress,
    vips: vipAddresses(lb.vip).map((a) => ({ address: a.address, prefixLength: a.prefixLength })),
  };
}

/** The keepalived config of an ACTIVE_STANDBY load balancer on this node; undefined for SINGLE. */
export function renderKeepalivedFor(lb: DesiredLoadBalancer, paths: KeepalivedPaths): string | undefined {
  const vrrp = desiredVrrp(lb);
  return vrrp === undefined ? undefined : renderKeepalivedConfig(vrrp, paths);
}
