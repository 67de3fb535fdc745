// The keepalived driver without a data plane: file layout and argv, the state-file parser, the checked write
// (a config that fails the check never replaces the live one), pidfiles that are not trusted unless /proc
// agrees, the two scripts keepalived runs (the HAProxy check and the notify FIFO reader), and a drained node's
// switchover that the peer did not take (not tried again for a while).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  argvCheck,
  argvStart,
  findKeepalivedByConfig,
  keepalivedConfigPaths,
  keepalivedPid,
  markKeepalivedConfigLoaded,
  observeKeepalived,
  observeKeepalivedReloadPending,
  parseVrrpState,
  readKeepalivedConfig,
  startKeepalived,
  stopKeepalived,
  writeCheckedKeepalivedConfig,
} from '../../src/drivers/keepalived/keepalived.js';
import { keepalivedFiles } from '../../src/desired/state-dir.js';
import { KeepalivedDriver, SWITCHOVER_RETRY_MS } from '../../src/drivers/keepalived/driver.js';
import { CommandError } from '../../src/exec/errors.js';
import type { Runner } from '../../src/exec/run.js';

const execFileAsync = promisify(execFile);
const CHECK = fileURLToPath(new URL('../../scripts/haproxy-vrrp-check.sh', import.meta.url));
const NOTIFY = fileURLToPath(new URL('../../scripts/keepalived-notify.sh', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-keepalived-unit-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** A process whose command line looks like keepalived running `config` (argv[0] and `-f config`). */
function fakeKeepalived(config: string): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', '-f', config], { argv0: '/usr/sbin/keepalived', stdio: 'ignore' });
  children.push(child);
  return child;
}

const refuse: Runner = async (argv) => {
  throw new Error(`unexpected command ${argv.join(' ')}`);
};

describe('keepalived files and argv', () => {
  it('keeps everything under lb/<netns>/keepalived.* (DESIGN §6)', () => {
    const f = keepalivedFiles('/var/lib/nslb', 'nslb-0123456789ab');
    expect(f).toEqual({
      dir: '/var/lib/nslb/lb/nslb-0123456789ab',
      config: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.conf',
      pidfile: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.pid',
      vrrpPidfile: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived-vrrp.pid',
      fifo: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.fifo',
      stateFile: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.state',
      reloadPending: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.reload-pending',
      release: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.release',
      handover: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.handover',
      health: '/var/lib/nslb/lb/nslb-0123456789ab/keepalived.health',
    });
    const p = keepalivedConfigPaths('/var/lib/nslb', 'nslb-0123456789ab');
    expect(p.haproxyPidfile).toBe('/var/lib/nslb/lb/nslb-0123456789ab/haproxy.pid');
    expect(p.healthFile).toBe('/var/lib/nslb/lb/nslb-0123456789ab/keepalived.health');
    expect(existsSync(p.checkScript) && existsSync(p.notifyScript)).toBe(true);
  });

  it('checks inside the netns and starts VRRP only, with pidfiles of its own', () => {
    const f = keepalivedFiles('/s', 'nslb-0123456789ab');
    expect(argvCheck('nslb-0123456789ab', '/s/x.next')).toEqual(['ip', 'netns', 'exec', 'nslb-0123456789ab', 'keepalived', '-t', '-f', '/s/x.next']);
    expect(argvStart('nslb-0123456789ab', f)).toEqual([
      'ip',
      'netns',
      'exec',
      'nslb-0123456789ab',
      'keepalived',
      '-P',
      '-f',
      f.config,
      '-p',
      f.pidfile,
      '-r',
      f.vrrpPidfile,
    ]);
  });

  it('parses the state file the notify script writes, and nothing else', () => {
    expect(parseVrrpState('MASTER 100\n')).toEqual({ state: 'MASTER', priority: 100 });
    expect(parseVrrpState('BACKUP 90')).toEqual({ state: 'BACKUP', priority: 90 });
    expect(parseVrrpState('FAULT 0\n')).toEqual({ state: 'FAULT', priority: 0 });
    expect(parseVrrpState('STOP 90\n')).toEqual({ state: 'STOP', priority: 90 });
    expect(parseVrrpState('MASTER 100 7\n')).toEqual({ state: 'MASTER', priority: 100, transitions: 7 });
    for (const bad of [undefined, '', 'MASTER', 'master 100', 'MASTER 100\nBACKUP 90\n', 'GOD 1', 'MASTER 1000']) {
      expect(parseVrrpState(bad)).toBeUndefined();
    }
  });
});

describe('checked write', () => {
  it('a config that fails the check never replaces the live one', async () => {
    const f = keepalivedFiles(join(dir, 'write'), 'nslb-aaaaaaaaaaaa');
    const ok: Runner = async () => ({ stdout: '', stderr: '' });
    await writeCheckedKeepalivedConfig(ok, 'nslb-aaaaaaaaaaaa', f, 'good\n');
    expect(readKeepalivedConfig(f)).toBe('good\n');
    expect(statSync(f.config).mode & 0o777).toBe(0o600);
    expect(statSync(f.dir).mode & 0o777).toBe(0o700);
    expect(observeKeepalivedReloadPending(f)).toBe(true);
    await markKeepalivedConfigLoaded(f);
    expect(observeKeepalivedReloadPending(f)).toBe(false);

    const checked: string[][] = [];
    const fails: Runner = async (argv) => {
      checked.push([...argv]);
      throw new CommandError(argv, 5, 'Configuration error');
    };
    await expect(writeCheckedKeepalivedConfig(fails, 'nslb-aaaaaaaaaaaa', f, 'bad\n')).rejects.toThrow(CommandError);
    expect(checked).toEqual([argvCheck('nslb-aaaaaaaaaaaa', `${f.config}.next`)]);
    expect(readKeepalivedConfig(f)).toBe('good\n');
    expect(existsSync(`${f.config}.next`)).toBe(false);
    expect(observeKeepalivedReloadPending(f)).toBe(false);
  });
});

describe('pidfiles are trusted only when /proc agrees', () => {
  it('a stale pidfile (dead PID, or a live process that is not our keepalived) names nothing', async () => {
    const f = keepalivedFiles(join(dir, 'stale'), 'nslb-bbbbbbbbbbbb');
    await writeCheckedKeepalivedConfig(async () => ({ stdout: '', stderr: '' }), 'nslb-bbbbbbbbbbbb', f, 'x\n');
    await writeFile(f.pidfile, '999999999\n');
    expect(keepalivedPid(f)).toBeUndefined();
    await writeFile(f.pidfile, `${process.pid}\n`);
    expect(keepalivedPid(f)).toBeUndefined();
    expect(await observeKeepalived(f, 'nslb-bbbbbbbbbbbb')).toBeUndefined();
    // Another keepalived (another config) is not ours either.
    const other = fakeKeepalived(join(dir, 'other.conf'));
    await new Promise((r) => setTimeout(r, 200));
    await writeFile(f.pidfile, `${other.pid}\n`);
    expect(keepalivedPid(f)).toBeUndefined();
  });

  it('a live keepalived of this config is adopted, not started twice, found without its pidfile, and stopped', async () => {
    const f = keepalivedFiles(join(dir, 'live'), 'nslb-cccccccccccc');
    await writeCheckedKeepalivedConfig(async () => ({ stdout: '', stderr: '' }), 'nslb-cccccccccccc', f, 'x\n');
    const proc = fakeKeepalived(f.config);
    await new Promise((r) => setTimeout(r, 200));
    await writeFile(f.pidfile, `${proc.pid}\n`);
    await writeFile(f.stateFile, 'BACKUP 90\n');
    expect(keepalivedPid(f)).toBe(proc.pid);
    expect(await startKeepalived(refuse, 'nslb-cccccccccccc', f)).toBe(proc.pid);
    const observed = await observeKeepalived(f, 'nslb-cccccccccccc');
    // No netns of that name here, and no VRRP child: both reported, neither guessed.
    expect(observed).toEqual({ pid: proc.pid, inNetns: false, vrrpAlive: false, vrrp: { state: 'BACKUP', priority: 90 } });
    expect(await findKeepalivedByConfig(new Set([f.config]))).toEqual(new Map([[f.config, proc.pid]]));
    const gone = new Promise((r) => proc.once('exit', r));
    await stopKeepalived(proc.pid ?? 0, f);
    await gone;
    expect(keepalivedPid(f)).toBeUndefined();
  });

  it('a start clears a stale pidfile and state before it runs keepalived', async () => {
    const f = keepalivedFiles(join(dir, 'start'), 'nslb-dddddddddddd');
    await writeCheckedKeepalivedConfig(async () => ({ stdout: '', stderr: '' }), 'nslb-dddddddddddd', f, 'x\n');
    await writeFile(f.pidfile, '999999999\n');
    await writeFile(f.stateFile, 'MASTER 100\n');
    const ran: { argv: string[]; detached: boolean }[] = [];
    let proc: ChildProcess | undefined;
    const runner: Runner = async (argv, options) => {
      ran.push({ argv: [...argv], detached: options?.detached === true });
      proc = fakeKeepalived(f.config);
      await new Promise((r) => setTimeout(r, 200));
      await writeFile(f.pidfile, `${proc.pid}\n`);
      return { stdout: '', stderr: '' };
    };
    expect(await startKeepalived(runner, 'nslb-dddddddddddd', f)).toBe(proc?.pid);
    // detached: the agent's daemon-cgroup runner starts it outside the agent's container cgroup.
    expect(ran).toEqual([{ argv: argvStart('nslb-dddddddddddd', f), detached: true }]);
    expect(existsSync(f.stateFile)).toBe(false);
  });
});

describe('scripts/haproxy-vrrp-check.sh', () => {
  const check = async (...args: string[]) => {
    try {
      await execFileAsync(CHECK, args, { timeout: 10_000 });
      return 0;
    } catch (e) {
      return (e as { code?: number }).code;
    }
  };
  it('passes while the master lives; fails when it is gone, the pidfile is missing or garbage', async () => {
    const alive = join(dir, 'check-alive.pid');
    await writeFile(alive, `${process.pid}\n`);
    expect(await check(alive)).toBe(0);
    const dead = join(dir, 'check-dead.pid');
    await writeFile(dead, '999999999\n');
    expect(await check(dead)).toBe(1);
    expect(await check(join(dir, 'missing.pid'))).toBe(1);
    const garbage = join(dir, 'check-garbage.pid');
    await writeFile(garbage, '1; reboot\n');
    expect(await check(garbage)).toBe(1);
    const subst = join(dir, 'check-subst.pid');
    await writeFile(subst, '$(reboot)\n');
    expect(await check(subst)).toBe(1);
    expect(await check()).toBe(2);
    // The runtime API is the agent's to ask: the socket of an older agent's config is accepted, not asked, so
    // that a keepalived still running that config passes on a live HAProxy until it is reloaded (an upgrade).
    expect(await check(alive, join(dir, 'no.sock'))).toBe(0);
    expect(await check(dead, join(dir, 'no.sock'))).toBe(1);
    expect(await check(alive, join(dir, 'no.sock'), 'extra')).toBe(2);
  });

  it('calls a zombie master dead, which kill -0 does not (a daemon here may be reaped late or never)', async () => {
    const pidfile = join(dir, 'check-zombie.pid');
    // The shell starts a child that exits soon, then becomes a sleep that never waits for it: a zombie.
    const parent = spawn('sh', ['-c', 'sleep 0.5 & echo $! >"$1"; exec sleep 30', 'sh', pidfile], { stdio: 'ignore' });
    children.push(parent);
    let state: string | undefined;
    for (const until = Date.now() + 5_000; state !== 'Z' && Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      const pid = (await readFile(pidfile, 'utf8').catch(() => '')).trim();
      if (pid !== '') state = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.[0];
    }
    expect(state, 'the child became a zombie').toBe('Z');
    const zombie = Number((await readFile(pidfile, 'utf8')).trim());
    expect(() => process.kill(zombie, 0)).not.toThrow();
    expect(await check(pidfile)).toBe(1);
  });
});

describe('scripts/keepalived-notify.sh', () => {
  it('keeps the last state keepalived wrote into the FIFO, in order, and ignores anything else', async () => {
    const fifo = join(dir, 'notify.fifo');
    const state = join(dir, 'notify.state');
    await execFileAsync('mkfifo', ['-m', '600', fifo]);
    const reader = spawn(NOTIFY, [state, fifo], { stdio: 'ignore' });
    children.push(reader);
    const lines = [
      'INSTANCE "nslb-x" FAULT 0',
      'INSTANCE "nslb-x" BACKUP 90',
      'GROUP "g" MASTER 90',
      'INSTANCE "nslb-x" MASTER 90',
      'INSTANCE "nslb-x" BOGUS 1',
    ];
    await writeFile(fifo, `${lines.join('\n')}\n`);
    let text: string | undefined;
    for (const until = Date.now() + 5_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      text = await readFile(state, 'utf8').catch(() => undefined);
      if (text === 'MASTER 90 3\n') break;
    }
    // The third field counts the changes of state announced (FAULT, BACKUP, MASTER).
    expect(text).toBe('MASTER 90 3\n');
    // keepalived closed its end: the script waits for the next writer rather than exiting or spinning.
    await new Promise((r) => setTimeout(r, 200));
    expect(reader.exitCode).toBeNull();
    await writeFile(fifo, 'INSTANCE "nslb-x" BACKUP 90\n');
    for (const until = Date.now() + 5_000; Date.now() < until && text !== 'BACKUP 90 4\n'; await new Promise((r) => setTimeout(r, 20))) {
      text = await readFile(state, 'utf8').catch(() => undefined);
    }
    expect(text).toBe('BACKUP 90 4\n');
  });
});

describe("a drained node's switchover (keepalived.switchOver)", () => {
  it('one that ends with this node MASTER again (the peer did not take the VIP) is not tried again for SWITCHOVER_RETRY_MS; one the peer took is', async () => {
    const stateDir = join(dir, 'switchover');
    const netns = 'nslb-lb-switch';
    const files = keepalivedFiles(stateDir, netns);
    await mkdir(files.dir, { recursive: true });
    // What configVips and configAdvertMs read of a rendered config: one VIP, adverts every 100 ms.
    await writeFile(files.config, '    advert_int 0.1\n        10.0.0.1/32 dev eth0\n');
    await writeFile(files.release, '0\n');
    await writeFile(files.stateFile, 'MASTER 100 1\n');
    const keepalived = fakeKeepalived(files.config);
    await writeFile(files.pidfile, `${keepalived.pid}\n`);
    await waitForCondition(() => keepalivedPid(files) === keepalived.pid);
    // keepalived as the release file drives it: FAULT while it says 1; then MASTER again (no peer took the VIP) or
    // BACKUP (the peer did).
    let peerTakes = false;
    const vrrp = setInterval(() => {
      const release = readFileSync(files.release, 'utf8');
      writeFileSync(files.stateFile, release === '1\n' ? 'FAULT 0 2\n' : peerTakes ? 'BACKUP 100 3\n' : 'MASTER 100 3\n');
    }, 5);
    const commands: string[] = [];
    const run: Runner = async (argv) => {
      commands.push(argv.join(' '));
      return { stdout: '', stderr: '' };
    };
    let clock = 1_000_000;
    const driver = new KeepalivedDriver(run, stateDir, { faultMs: 0, now: () => clock });
    const switchOver = () => driver.apply({ kind: 'keepalived.switchOver', netns });
    const synDrops = () => commands.filter((c) => c.endsWith('nft -f -')).length;
    /** The switchover's rest (FAULT for the master-down interval, BACKUP or MASTER again) has ended. */
    const restEnded = async () => {
      await waitForCondition(() => !existsSync(files.handover));
      await new Promise((r) => setTimeout(r, 50));
    };
    try {
      await switchOver();
      expect(synDrops()).toBe(1);
      expect(readFileSync(files.stateFile, 'utf8')).toBe('FAULT 0 2\n');
      await restEnded();
      expect(readFileSync(files.stateFile, 'utf8')).toBe('MASTER 100 3\n');
      // MASTER again: the next reconcile's switchover is refused, says why, and holds nothing off (no SYN drop).
      await expect(switchOver()).rejects.toThrow(/the peer did not take the VIP.*tried again 60 s after that/);
      clock += SWITCHOVER_RETRY_MS - 1;
      await expect(switchOver()).rejects.toThrow(/the peer did not take the VIP/);
      expect(synDrops()).toBe(1);
      // After the wait it is tried again; this time the peer takes the VIP, and nothing holds the next one back.
      clock += 1;
      peerTakes = true;
      await switchOver();
      expect(synDrops()).toBe(2);
      await restEnded();
      expect(readFileSync(files.stateFile, 'utf8')).toBe('BACKUP 100 3\n');
      await switchOver();
      expect(synDrops()).toBe(3);
      await restEnded();
      // Every SYN drop was removed again, and the release file is back to 0.
      expect(commands.filter((c) => c.includes('nft delete table inet nslb-handover'))).toHaveLength(3);
      expect(readFileSync(files.release, 'utf8')).toBe('0\n');
    } finally {
      clearInterval(vrrp);
    }
  }, 30_000);
});

async function waitForCondition(ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  for (const until = Date.now() + timeoutMs; !ok(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > until) throw new Error('condition not met in time');
  }
}
