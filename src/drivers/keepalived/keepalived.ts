// keepalived for ACTIVE_STANDBY load balancers: one process per load balancer per node, started inside the
// load balancer's netns (VRRP subsystem only), its files under <state-dir>/lb/<netns>/keepalived.* (DESIGN §6).
// The same habits as the HAProxy driver: a new config is checked with `keepalived -t` (inside the netns: the
// check insists that the interface exists) before an atomic rename, so a config that fails the check never
// replaces a good one; a pidfile names the process only if /proc agrees; nothing is started twice.
// Observation reads /proc and the state dir only: no process is spawned.
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { keepalivedFiles, lbPaths, type KeepalivedFiles } from '../../desired/state-dir.js';
import type { Runner } from '../../exec/run.js';
import { waitUntil } from '../../loop/wait.js';
import type { KeepalivedPaths } from '../../plan/keepalived-config.js';
import type { ObservedKeepalived, ObservedVrrpState, VrrpState } from '../../plan/observed.js';
import { netnsInode } from '../netns/netns.js';
import { cmdline, findParentsByConfig, processAlive, processNetnsInode, readPid, statFields } from '../proc.js';

export type { ObservedKeepalived, ObservedVrrpState, VrrpState };

function readSmall(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export const KEEPALIVED_BIN = process.env.NSLB_KEEPALIVED ?? 'keepalived';

// dist/drivers/keepalived/ and src/drivers/keepalived/ are both three levels below the package root.
const CHECK_SCRIPT = fileURLToPath(new URL('../../../scripts/haproxy-vrrp-check.sh', import.meta.url));
const NOTIFY_SCRIPT = fileURLToPath(new URL('../../../scripts/keepalived-notify.sh', import.meta.url));

/** What src/plan/keepalived-config.ts renders into the config: the scripts and the files they use. */
export function keepalivedConfigPaths(stateDir: string, netns: string): KeepalivedPaths {
  const files = keepalivedFiles(stateDir, netns);
  const haproxy = lbPaths(stateDir, netns);
  return {
    checkScript: CHECK_SCRIPT,
    notifyScript: NOTIFY_SCRIPT,
    haproxyPidfile: haproxy.pidfile,
    notifyFifo: files.fifo,
    stateFile: files.stateFile,
    releaseFile: files.release,
    healthFile: files.health,
  };
}

/**
 * Parses the state file (`MASTER 100 3`: state, priority, and the changes of state keepalived announced since
 * it started; the count is absent in files of an older notify script). Undefined for anything else (missing,
 * half-written, unknown).
 */
export function parseVrrpState(text: string | undefined): ObservedVrrpState | undefined {
  const m = /^(MASTER|BACKUP|FAULT|STOP) (\d{1,3})(?: (\d{1,12}))?\n?$/.exec(text ?? '');
  if (m === null) return undefined;
  return { state: m[1] as VrrpState, priority: Number(m[2]), ...(m[3] === undefined ? {} : { transitions: Number(m[3]) }) };
}

/** The VIPs a rendered keepalived.conf moves (virtual_ipaddress and virtual_ipaddress_excluded): `ADDR/LEN dev IF`. */
export function configVips(config: string): string[] {
  return [...config.matchAll(/^ {8}([0-9A-Fa-f.:]+)\/\d{1,3} dev \S+$/gm)].map((m) => m[1]!);
}

/** advert_int of a rendered keepalived.conf, in ms; undefined if it has none. */
export function configAdvertMs(config: string): number | undefined {
  const m = /^ {4}advert_int (\d+(?:\.\d+)?)$/m.exec(config);
  return m === null ? undefined : Math.round(Number(m[1]) * 1000);
}

/**
 * Processes found to be a keepalived running a config file, by PID, with their start time (/proc/PID/stat field 22):
 * the same PID with the same start time is the same process, whose argv does not change (keepalived does not
 * exec), so its cmdline need not be read again. Each load balancer's keepalived is checked several times a second
 * (stats poll, exit watch, health monitor); this halves the /proc reads, which block the agent's event loop.
 * Only a positive answer is kept: a process read between its fork and its exec shows its parent's argv.
 */
const verified = new Map<number, { start: string; config: string }>();
/** Bounds the cache (PIDs of keepalived processes that exited are dropped when next looked at, or all at once here). */
const VERIFIED_MAX = 20_000;

/** The PID is a live keepalived running this config file (not a recycled PID or another keepalived). */
export function isOurKeepalived(pid: number, configPath: string): boolean {
  const fields = statFields(readSmall(`/proc/${pid}/stat`) ?? '');
  const state = fields[0];
  if (state === undefined || state === '' || state === 'Z') {
    verified.delete(pid);
    return false;
  }
  const start = fields[19] ?? '';
  const known = verified.get(pid);
  if (known !== undefined && known.start === start) return known.config === configPath;
  verified.delete(pid);
  const argv = cmdline(pid);
  const f = argv.indexOf('-f');
  const config = f < 0 ? undefined : argv[f + 1];
  if (!(argv[0] ?? '').endsWith('keepalived') || config === undefined) return false;
  if (verified.size >= VERIFIED_MAX) verified.clear();
  verified.set(pid, { start, config });
  return config === configPath;
}

/** The parent's PID if the pidfile names a live keepalived running this load balancer's config. */
export function keepalivedPid(files: KeepalivedFiles): number | undefined {
  const pid = readPid(files.pidfile);
  return pid !== undefined && isOurKeepalived(pid, files.config) ? pid : undefined;
}

/** Whether the process lives in the netns of that name (not in a deleted one that had the same name). */
export function inNetns(pid: number, netns: string): boolean {
  const mine = processNetnsInode(pid);
  return mine !== undefined && mine === netnsInode(netns);
}

/** Reads only /proc and the state dir. Undefined when no keepalived of ours runs this config. */
export function observeKeepalived(files: KeepalivedFiles, netns: string): ObservedKeepalived | undefined {
  const pid = keepalivedPid(files);
  if (pid === undefined) return undefined;
  const vrrpPid = readPid(files.vrrpPidfile);
  const vrrp = parseVrrpState(readSmall(files.stateFile));
  return {
    pid,
    inNetns: inNetns(pid, netns),
    vrrpAlive: vrrpPid !== undefined && isOurKeepalived(vrrpPid, files.config) && statFields(readSmall(`/proc/${vrrpPid}/stat`) ?? '')[1] === String(pid),
    ...(vrrp === undefined ? {} : { vrrp }),
  };
}

/** keepalived parents running any of these config files (see findParentsByConfig); a `keepalived -t` is no parent. */
export function findKeepalivedByConfig(configs: ReadonlySet<string>): Promise<Map<string, number>> {
  return findParentsByConfig(configs, (argv) => (argv[0] ?? '').endsWith('keepalived') && !argv.includes('-t'));
}

export function readKeepalivedConfig(files: KeepalivedFiles): string | undefined {
  return readSmall(files.config);
}

export function observeKeepalivedReloadPending(files: KeepalivedFiles): boolean {
  return existsSync(files.reloadPending);
}

async function writePrivateFile(path: string, content: string): Promise<void> {
  const handle = await open(path, 'w', 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
}

/** `keepalived -t` inside the netns: it refuses a config naming an interface it cannot see. */
export function argvCheck(netns: string, configPath: string): string[] {
  return ['ip', 'netns', 'exec', netns, KEEPALIVED_BIN, '-t', '-f', configPath];
}

/**
 * keepalived's command line: VRRP only (-P), pidfiles of its own (the defaults under /run are one per host,
 * and every load balancer has a keepalived), daemonized, logging to syslog as `Keepalived_vrrp`.
 */
export function keepalivedStartCommand(files: KeepalivedFiles): string[] {
  return [KEEPALIVED_BIN, '-P', '-f', files.config, '-p', files.pidfile, '-r', files.vrrpPidfile];
}

export function argvStart(netns: string, files: KeepalivedFiles): string[] {
  return ['ip', 'netns', 'exec', netns, ...keepalivedStartCommand(files)];
}

/**
 * Writes the config next to the live one, checks it with the real parser in the netns, then renames it over
 * the live one. A config that fails the check is removed and the error thrown: the running keepalived keeps
 * the old one. The pending marker is written before the rename, so that after a crash between the rename and
 * the reload the next reconcile does not find the new config "already right".
 */
export async function writeCheckedKeepalivedConfig(run: Runner, netns: string, files: KeepalivedFiles, config: string): Promise<void> {
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  await chmod(files.dir, 0o700);
  const next = `${files.config}.next`;
  await writePrivateFile(next, config);
  try {
    await run(argvCheck(netns, next));
  } catch (err) {
    await rm(next, { force: true });
    throw err;
  }
  await writePrivateFile(files.reloadPending, '');
  await rename(next, files.config);
}

/** keepalived was started with, or signalled to reload, the config on disk. */
export async function markKeepalivedConfigLoaded(files: KeepalivedFiles): Promise<void> {
  await rm(files.reloadPending, { force: true });
}

/**
 * Starts keepalived in the netns (a daemon, so `detached`: the agent's daemon-cgroup runner starts it from the
 * host's cgroup and it outlives an agent container) and returns the parent's PID. Not when the pidfile
 * already names our keepalived with this config: a start that failed after the process came up went through.
 * A stale pidfile (a dead or foreign PID) is not trusted: removed, then keepalived starts.
 */
export async function startKeepalived(run: Runner, netns: string, files: KeepalivedFiles): Promise<number> {
  const running = keepalivedPid(files);
  if (running !== undefined) return running;
  await unlink(files.pidfile).catch(() => undefined);
  await unlink(files.vrrpPidfile).catch(() => undefined);
  // The state of a process that is gone says nothing about the next one.
  await rm(files.stateFile, { force: true });
  await run(argvStart(netns, files), { detached: true, timeoutMs: 20_000 });
  let pid: number | undefined;
  await waitUntil(
    () => {
      pid = keepalivedPid(files);
      return pid !== undefined;
    },
    { intervalMs: 20, timeoutMs: 5_000 },
  );
  if (pid === undefined) throw new Error(`keepalived in ${netns} started but wrote no pidfile ${files.pidfile}`);
  return pid;
}

/**
 * SIGHUP makes keepalived re-read its config; instances whose identity did not change keep their state (a
 * MASTER stays MASTER), so a reload does not move the VIP. keepalived has no way to say it applied the new
 * config, so this trusts the signal, as the HAProxy driver does without a worker to compare.
 */
export function reloadKeepalived(pid: number, files: KeepalivedFiles): boolean {
  if (!isOurKeepalived(pid, files.config)) return false;
  process.kill(pid, 'SIGHUP');
  return true;
}

function exited(pid: number, timeoutMs: number): Promise<boolean> {
  return waitUntil(() => !processAlive(pid), { intervalMs: 20, timeoutMs });
}

/**
 * SIGTERM: keepalived removes the VIPs it holds and sends a priority-0 advert, so that the peer takes over at
 * once instead of after the master-down timer (a planned switchover). SIGKILL if it does not go. The state file
 * goes with the process: its notify script is ended before it can record the stop, and a stale MASTER there
 * must not outlive the keepalived that wrote it.
 */
export async function stopKeepalived(pid: number, files: KeepalivedFiles): Promise<void> {
  if (!isOurKeepalived(pid, files.config)) return;
  try {
    process.kill(pid, 'SIGTERM');
    if (!(await exited(pid, 5_000))) {
      process.kill(pid, 'SIGKILL');
      await exited(pid, 2_000);
    }
  } catch {
    // gone already
  }
  await rm(files.stateFile, { force: true });
}

/** Removes keepalived's files from the state dir (the rest of the directory belongs to the HAProxy driver). */
export async function deleteKeepalivedFiles(files: KeepalivedFiles): Promise<void> {
  for (const f of [
    files.config,
    `${files.config}.next`,
    files.pidfile,
    files.vrrpPidfile,
    files.fifo,
    files.stateFile,
    `${files.stateFile}.tmp`,
    files.reloadPending,
    files.release,
    files.handover,
    files.health,
    `${files.health}.tmp`,
  ]) {
    await rm(f, { force: true });
  }
}
