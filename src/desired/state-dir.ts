// Every path under the agent's --state-dir, named here and nowhere else (DESIGN §2, §3):
//
//   <state-dir>/agent.lock            one agent per state dir (controller/lock.ts)
//   <state-dir>/status.json           the status file (status/status-file.ts)
//   <state-dir>/observe.batch         the `ip -batch` script a resync reads netns with
//   <state-dir>/metrics-tls/          the self-signed certificate of --metrics-listen
//   <state-dir>/lb/<netns>/           one directory per load balancer (lbPaths): HAProxy's config, pidfile,
//                                     runtime socket, server state, certificates, and the owner marker;
//                                     keepalived's files beside them (keepalivedFiles)
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/desired/ and src/desired/ are both two levels below the package root.
const PING_CHECK = fileURLToPath(new URL('../../scripts/ping-check.sh', import.meta.url));
/** The external checks of UDP-CONNECT and SCTP monitors (plan/udp-health-checks.ts), shipped in the package. */
export const UDP_CHECK = fileURLToPath(new URL('../../scripts/udp-check.sh', import.meta.url));
export const SCTP_CHECK = fileURLToPath(new URL('../../scripts/sctp-check.sh', import.meta.url));

export function agentLockPath(stateDir: string): string {
  return join(stateDir, 'agent.lock');
}

export function statusFilePath(stateDir: string): string {
  return join(stateDir, 'status.json');
}

/** The script of `ip -j -batch` commands that reads one netns, run by many netns at once. */
export function observeScriptPath(stateDir: string): string {
  return join(stateDir, 'observe.batch');
}

export function metricsTlsDir(stateDir: string): string {
  return join(stateDir, 'metrics-tls');
}

/** The directory holding one directory per load balancer, named by its netns. */
export function lbRoot(stateDir: string): string {
  return join(stateDir, 'lb');
}

export interface LbPaths {
  dir: string;
  config: string;
  pidfile: string;
  socket: string;
  stateFile: string;
  /**
   * Present from the moment a new config is renamed into place until HAProxy has been (re)started or
   * signalled to reload it: after a crash in between, the file alone says "this config is not live yet".
   */
  reloadPending: string;
  /** TLS material, 0600 files in a 0700 directory, named by content hash. */
  certsDir: string;
  /** Which load balancer owns this directory (`namespace/name`): cleanup and GC name it after a crash. */
  owner: string;
  /** The `ip -batch` script that configures the VIP link inside the netns. */
  linkScript: string;
  /** The external check HAProxy runs for PING health monitors (shipped in the package, not in the state dir). */
  pingCheckCommand: string;
  udpCheckCommand: string;
  sctpCheckCommand: string;
  /** Present while nslb's nft table of this netns may exist (written before the first apply): observe it. */
  nftMarker: string;
}

export function lbPaths(stateDir: string, netns: string): LbPaths {
  const dir = join(lbRoot(stateDir), netns);
  return {
    dir,
    config: join(dir, 'haproxy.cfg'),
    pidfile: join(dir, 'haproxy.pid'),
    socket: join(dir, 'haproxy.sock'),
    stateFile: join(dir, 'server-state'),
    reloadPending: join(dir, 'reload-pending'),
    certsDir: join(dir, 'certs'),
    owner: join(dir, 'owner'),
    linkScript: join(dir, 'link.batch'),
    pingCheckCommand: PING_CHECK,
    udpCheckCommand: UDP_CHECK,
    sctpCheckCommand: SCTP_CHECK,
    nftMarker: join(dir, 'nft-table'),
  };
}

export interface KeepalivedFiles {
  dir: string;
  config: string;
  /** The parent process's (what reload and stop signal). */
  pidfile: string;
  /** The VRRP child's, which does the work. */
  vrrpPidfile: string;
  /** keepalived writes state changes into it; scripts/keepalived-notify.sh reads them. */
  fifo: string;
  /** `STATE PRIORITY`, the last state the notify script read (MASTER, BACKUP, FAULT, STOP). */
  stateFile: string;
  /** From the rename of a new config until keepalived was started with it or told to reload it. */
  reloadPending: string;
  /** keepalived's track file: a non-zero number in it puts the instance in FAULT (a MASTER lets go of the VIP). */
  release: string;
  /**
   * keepalived's track file of HAProxy's health: 0 while this node's HAProxy serves, 1 when not (FAULT). Written by
   * the agent's monitor (src/drivers/keepalived/haproxy-health.ts), read by keepalived through inotify.
   */
  health: string;
  /** From the start of a planned handover until its SYN drop is gone and the release file says 0 again. */
  handover: string;
}

/** keepalived's files, in the load balancer's directory beside HAProxy's (ACTIVE_STANDBY, DESIGN §6). */
export function keepalivedFiles(stateDir: string, netns: string): KeepalivedFiles {
  const { dir } = lbPaths(stateDir, netns);
  return {
    dir,
    config: join(dir, 'keepalived.conf'),
    pidfile: join(dir, 'keepalived.pid'),
    vrrpPidfile: join(dir, 'keepalived-vrrp.pid'),
    fifo: join(dir, 'keepalived.fifo'),
    stateFile: join(dir, 'keepalived.state'),
    reloadPending: join(dir, 'keepalived.reload-pending'),
    release: join(dir, 'keepalived.release'),
    health: join(dir, 'keepalived.health'),
    handover: join(dir, 'keepalived.handover'),
  };
}
