// HAProxy in master-worker mode, one per load balancer, started inside its netns. Files live under
// <state-dir>/lb/<netns>/. A new config is checked with `haproxy -c` before an atomic rename, so a config
// that fails the check never replaces a good one; a reload (SIGUSR2 to the master) passes the listening
// sockets to the new worker (`expose-fd listeners`) and old workers finish their connections.
// Observation reads small files in /proc and the state dir synchronously: a resync reads a dozen per load
// balancer, and the thread-pool round trips of fs/promises cost far more than the reads themselves.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Runner } from '../../exec/run.js';
import type { ObservedHaproxy } from '../observed.js';
import { netnsInode } from '../netns/netns.js';
import { engineCounters } from '../../metrics/counters.js';
import { carriedServerState, runtimeAnswerOk, type RuntimeCommand } from '../../plan/runtime-diff.js';
import { queryRuntime } from './stats.js';

export const HAPROXY_BIN = process.env.NSLB_HAPROXY ?? 'haproxy';

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
  /** The external check HAProxy runs for PING health monitors (shipped in the package). */
  pingCheckCommand: string;
}

// dist/drivers/haproxy/ and src/drivers/haproxy/ are both three levels below the package root.
const PING_CHECK = fileURLToPath(new URL('../../../scripts/ping-check.sh', import.meta.url));

export function lbPaths(stateDir: string, netns: string): LbPaths {
  const dir = join(stateDir, 'lb', netns);
  return {
    dir,
    config: join(dir, 'haproxy.cfg'),
    pidfile: join(dir, 'haproxy.pid'),
    socket: join(dir, 'haproxy.sock'),
    stateFile: join(dir, 'server-state'),
    reloadPending: join(dir, 'reload-pending'),
    certsDir: join(dir, 'certs'),
    pingCheckCommand: PING_CHECK,
  };
}

async function readPid(pidfile: string): Promise<number | undefined> {
  try {
    // In master-worker mode the pidfile holds the master's PID.
    const pid = Number.parseInt(readFileSync(pidfile, 'utf8').trim().split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The PID is a live haproxy running this config file (not a recycled PID or someone else's HAProxy). */
export async function isOurHaproxy(pid: number, configPath: string): Promise<boolean> {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return processAliveSync(pid) && argv.some((a) => a.endsWith('haproxy')) && argv.includes(configPath);
  } catch {
    return false;
  }
}

async function processNetnsInode(pid: number): Promise<number | undefined> {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return undefined;
  }
}

/** The master's PID if the pidfile names a live HAProxy running this load balancer's config. */
export async function haproxyPid(stateDir: string, netns: string): Promise<number | undefined> {
  const paths = lbPaths(stateDir, netns);
  const pid = await readPid(paths.pidfile);
  return pid !== undefined && (await isOurHaproxy(pid, paths.config)) ? pid : undefined;
}

/** Alive and not a zombie (a daemon's parent here may never reap it). One /proc read. */
export async function processAlive(pid: number): Promise<boolean> {
  return processAliveSync(pid);
}

function processAliveSync(pid: number): boolean {
  try {
    return statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): state, ppid, … */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** Reads only /proc and the state dir: no process is spawned. */
export async function observeHaproxy(paths: LbPaths, netns: string): Promise<ObservedHaproxy | undefined> {
  const pid = await readPid(paths.pidfile);
  if (pid === undefined || !(await isOurHaproxy(pid, paths.config))) return undefined;
  return { pid, inNetns: await observeHaproxyPid(pid, netns) };
}

/** Whether the process lives in the netns of that name (not in a deleted one that had the same name). */
export async function observeHaproxyPid(pid: number, netns: string): Promise<boolean> {
  const [mine, want] = await Promise.all([processNetnsInode(pid), netnsInode(netns)]);
  return mine !== undefined && mine === want;
}

/**
 * HAProxy masters running any of these config files, found by scanning /proc: the fallback when a pidfile is
 * gone (the state dir deleted by hand) so that we adopt or stop the process instead of starting a second one.
 */
export async function findHaproxyByConfig(configs: ReadonlySet<string>): Promise<Map<string, number>> {
  const found = new Map<string, { pid: number; ppid: number }[]>();
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv.some((a) => a.endsWith('haproxy'))) continue;
    const config = argv[argv.indexOf('-f') + 1];
    if (config === undefined || !configs.has(config)) continue;
    const fields = statFields(await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''));
    if (fields[0] === 'Z') continue;
    found.set(config, [...(found.get(config) ?? []), { pid: Number(entry), ppid: Number(fields[1]) }]);
  }
  const masters = new Map<string, number>();
  for (const [config, procs] of found) {
    // The master is the one whose parent is not one of them (workers are its children).
    const master = procs.find((p) => !procs.some((q) => q.pid === p.ppid));
    if (master !== undefined) masters.set(config, master.pid);
  }
  return masters;
}

export async function readConfig(paths: LbPaths): Promise<string | undefined> {
  try {
    return readFileSync(paths.config, 'utf8');
  } catch {
    return undefined;
  }
}

export async function ensureStateDir(paths: LbPaths): Promise<void> {
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  await chmod(paths.dir, 0o700);
}

/**
 * Writes a file only its owner may read. Not fsync'd: what these files guard against is the agent dying
 * between two steps, and the page cache outlives the agent; a node that loses power loses every netns and
 * HAProxy with it, and the agent builds them again from the desired state. (An fsync cost ~4 ms idle and
 * far more under load, twice per config change.)
 */
async function writePrivateFile(path: string, content: string, mode: number): Promise<void> {
  const handle = await open(path, 'w', mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
}

/** Names of the certificate files present (contents are never read back: they are named by their hash). */
export async function observeCertFiles(paths: LbPaths): Promise<string[]> {
  try {
    return readdirSync(paths.certsDir).filter((f) => f.endsWith('.pem')).sort();
  } catch {
    return [];
  }
}

export interface CertificateFile {
  fileName: string;
  pem: string;
}

async function writeCertificates(paths: LbPaths, certificates: readonly CertificateFile[]): Promise<void> {
  if (certificates.length === 0) return;
  await mkdir(paths.certsDir, { recursive: true, mode: 0o700 });
  await chmod(paths.certsDir, 0o700);
  const present = new Set(await observeCertFiles(paths));
  for (const c of certificates) {
    if (present.has(c.fileName)) continue;
    // Written under a temporary name and renamed: HAProxy never reads half a key.
    const tmp = join(paths.certsDir, `.${c.fileName}.tmp`);
    await writePrivateFile(tmp, c.pem, 0o600);
    await rename(tmp, join(paths.certsDir, c.fileName));
  }
}

async function removeStaleCertificates(paths: LbPaths, keep: readonly CertificateFile[]): Promise<void> {
  const wanted = new Set(keep.map((c) => c.fileName));
  for (const f of await observeCertFiles(paths)) {
    if (!wanted.has(f)) await rm(join(paths.certsDir, f), { force: true });
  }
}

/**
 * Write the config (and the certificate files it names) next to the live one, check it with the real parser,
 * then rename over the live one. A config that fails the check is removed and the error thrown: the running
 * HAProxy keeps the old one. Certificates the new config no longer names are removed after the rename
 * (running workers hold theirs in memory).
 */
export async function writeCheckedConfig(
  run: Runner,
  paths: LbPaths,
  config: string,
  certificates: readonly CertificateFile[] = [],
  options: { reloadFollows?: boolean; check?: boolean } = {},
): Promise<void> {
  await ensureStateDir(paths);
  await writeCertificates(paths, certificates);
  const next = `${paths.config}.next`;
  await writePrivateFile(next, config, 0o600);
  if (options.check !== false) {
    try {
      await run([HAPROXY_BIN, '-c', '-q', '-f', next]);
    } catch (err) {
      await rm(next, { force: true });
      throw err;
    }
  }
  if (options.reloadFollows !== false) await saveServerState(paths, config);
  // Before the rename: a crash right after it must not leave a config on disk that HAProxy never loaded
  // and that the next reconcile would find "already right".
  await writePrivateFile(paths.reloadPending, '', 0o600);
  await rename(next, paths.config);
  await removeStaleCertificates(paths, certificates);
}

/**
 * Before a reload, as Octavia does: dump the running servers' state (health, maintenance, weight) into the
 * file HAProxy loads at start (`server-state-file`), keeping only servers whose line does not change, so
 * members stay UP across the reload instead of starting over, and a changed member takes its new config.
 * Without a HAProxy to ask, or if it does not answer, no state is carried (never a stale one).
 */
export async function saveServerState(paths: LbPaths, nextConfig: string): Promise<void> {
  const current = await readConfig(paths);
  let dump: string | undefined;
  if (current !== undefined) {
    try {
      dump = await queryRuntime(paths.socket, 'show servers state', 2_000);
    } catch {
      dump = undefined;
    }
  }
  if (current === undefined || dump === undefined || !/^\d+\n/.test(dump)) {
    await rm(paths.stateFile, { force: true });
    return;
  }
  await writePrivateFile(paths.stateFile, carriedServerState(dump, current, nextConfig), 0o600);
}

const DELETE_RETRY_MS = 2_000;

/**
 * Sends member changes over the runtime socket, in order. Resolves false as soon as HAProxy refuses one that
 * must succeed (the caller reloads instead); a refused deletion of a member that still has connections is
 * fine: it is in maintenance already and takes no new traffic.
 */
export async function applyRuntimeCommands(paths: LbPaths, commands: readonly RuntimeCommand[]): Promise<boolean> {
  const send = async (command: string): Promise<string | undefined> => {
    try {
      return await queryRuntime(paths.socket, command, 2_000);
    } catch {
      return undefined;
    }
  };
  // A server in maintenance can be deleted once its last in-flight request is done (entering maintenance
  // closed its idle connections): try again for a moment before leaving it behind in maintenance.
  const deleteServer = async (id: string): Promise<boolean> => {
    const until = Date.now() + DELETE_RETRY_MS;
    for (;;) {
      const answer = await send(`del server ${id}`);
      if (answer === undefined) return false;
      if (runtimeAnswerOk('del server ', answer)) return true;
      if (!/connection|stream|session|queue/i.test(answer) || Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  for (const c of commands) {
    let answer: string | undefined;
    if (c.command.startsWith('del server ')) {
      answer = (await deleteServer(c.command.slice('del server '.length))) ? 'Server deleted.' : '';
    } else {
      answer = await send(c.command);
      if (answer === undefined) return false;
      const id = /^add server (\S+)/.exec(c.command)?.[1];
      if (id !== undefined && /already exists/i.test(answer)) {
        // Left in maintenance by an earlier removal that still had a request in flight: it goes now.
        await send(`set server ${id} state maint`);
        if (!(await deleteServer(id))) return false;
        answer = await send(c.command);
        if (answer === undefined) return false;
      }
    }
    if (runtimeAnswerOk(c.command, answer)) {
      engineCounters.runtimeUpdates++;
    } else if (c.mayBeRefused !== true) {
      return false;
    }
    if (c.ifConfigMaintenance !== undefined) {
      const { backend, server, commands: replace } = c.ifConfigMaintenance;
      let state: string;
      try {
        state = await queryRuntime(paths.socket, `show servers state ${backend}`, 2_000);
      } catch {
        return false;
      }
      // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state …; 0x04 = config maintenance.
      const fields = state.split('\n').map((l) => l.split(' ')).find((f) => f[1] === backend && f[3] === server);
      if (fields === undefined) return false;
      if ((Number(fields[6]) & 0x04) !== 0 && !(await applyRuntimeCommands(paths, replace))) return false;
    }
  }
  return true;
}

/** Whether a config was written that HAProxy has not been started with or told to reload since. */
export async function observeReloadPending(paths: LbPaths): Promise<boolean> {
  return existsSync(paths.reloadPending);
}

/** HAProxy was started with, or signalled to reload, the config on disk. */
export async function markConfigLoaded(paths: LbPaths): Promise<void> {
  await rm(paths.reloadPending, { force: true });
}

/** HAProxy's command line (master-worker, daemon), to run inside the load balancer's netns. */
export function haproxyStartCommand(paths: LbPaths): string[] {
  return [HAPROXY_BIN, '-W', '-D', '-f', paths.config, '-p', paths.pidfile];
}

export function argvStart(netns: string, paths: LbPaths): string[] {
  return ['ip', 'netns', 'exec', netns, ...haproxyStartCommand(paths)];
}

/**
 * Starts HAProxy's daemon in the netns, on its own (one process). Not when the pidfile (removed before any
 * start) already names our HAProxy with this config: a batch that failed after this start went through.
 */
export async function launchHaproxy(run: Runner, netns: string, paths: LbPaths): Promise<void> {
  const pid = await readPid(paths.pidfile);
  if (pid !== undefined && (await isOurHaproxy(pid, paths.config))) return;
  await run(argvStart(netns, paths), { detached: true, timeoutMs: 20_000 });
}

/**
 * Starts HAProxy for this load balancer and returns its master's PID. `launch` runs the command (the agent
 * merges the starts of load balancers created together into one `ip -batch`); by default, on its own.
 */
export async function startHaproxy(
  run: Runner,
  netns: string,
  paths: LbPaths,
  launch: () => Promise<void> = () => launchHaproxy(run, netns, paths),
): Promise<number> {
  await unlink(paths.pidfile).catch(() => undefined);
  // A fresh process starts with fresh health: a state file from an earlier process may name servers and
  // addresses this config no longer has.
  await rm(paths.stateFile, { force: true });
  engineCounters.haproxyStarts++;
  await launch();
  // The daemon writes the pidfile before it lets go of our stderr; a slow one gets a few seconds more.
  let pid = await readPid(paths.pidfile);
  for (const until = Date.now() + 5_000; pid === undefined && Date.now() < until; pid = await readPid(paths.pidfile)) {
    await new Promise((r) => setTimeout(r, 20));
  }
  if (pid === undefined) throw new Error(`haproxy in ${netns} started but wrote no pidfile ${paths.pidfile}`);
  await chmod(paths.socket, 0o600).catch(() => undefined);
  return pid;
}

/** The PID of the worker that answers the runtime socket now, or undefined when none answers. */
async function runtimeWorkerPid(paths: LbPaths): Promise<number | undefined> {
  try {
    const match = /^Pid: (\d+)$/m.exec(await queryRuntime(paths.socket, 'show info', 1_000));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/**
 * SIGUSR2 makes the master re-read the config and start a new worker with the inherited sockets. Resolves
 * true once a new worker answers the runtime socket; false when none does within timeoutMs: HAProxy could not
 * apply a config that `haproxy -c` accepted (a listener port it cannot bind), its master has fallen back to
 * wait mode and the old worker no longer listens. The signal alone would report success either way.
 */
export async function reloadHaproxy(pid: number, paths: LbPaths, timeoutMs = 5_000): Promise<boolean> {
  const before = await runtimeWorkerPid(paths);
  process.kill(pid, 'SIGUSR2');
  if (before === undefined) {
    engineCounters.haproxyReloads.ok++;
    return true; // no worker to compare with: trust the signal, as before
  }
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    const now = await runtimeWorkerPid(paths);
    if (now !== undefined && now !== before) {
      engineCounters.haproxyReloads.ok++;
      return true;
    }
  }
  engineCounters.haproxyReloads.failed++;
  return false;
}

async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (!processAliveSync(pid)) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Hard stop (SIGTERM to the master stops its workers); SIGKILL if it does not go. */
export async function stopHaproxy(pid: number, configPath: string): Promise<void> {
  if (!(await isOurHaproxy(pid, configPath))) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await exited(pid, 5_000)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await exited(pid, 2_000);
}

export async function deleteStateDir(paths: LbPaths): Promise<void> {
  await rm(paths.dir, { recursive: true, force: true });
}
