// The agent's HAProxy health monitor (src/drivers/keepalived/haproxy-health.ts) against real processes and a real
// Unix socket: what it writes into the health track file keepalived follows. Checks are driven by hand
// (checkPids, checkApi), not by its timer, so that nothing here depends on timing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { keepalivedFiles, lbPaths } from '../../src/desired/state-dir.js';
import { HaproxyHealthMonitor, healthVerdict, nextScore, scorePasses } from '../../src/drivers/keepalived/haproxy-health.js';

const NETNS = 'nslb-0123456789ab';
let base: string;
let stateDir: string;
const children: ChildProcess[] = [];
let server: Server | undefined;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'nslb-health-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});
beforeEach(async () => {
  stateDir = await mkdtemp(join(base, 's'));
  await mkdir(lbPaths(stateDir, NETNS).dir, { recursive: true });
  await writeFile(keepalivedFiles(stateDir, NETNS).config, '# keepalived.conf\n');
});
afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
  server = undefined;
});

const healthFile = () => keepalivedFiles(stateDir, NETNS).health;
const says = () => readFile(healthFile(), 'utf8').catch(() => undefined);

/** A HAProxy stand-in: a live process named by the pidfile. */
function master(): ChildProcess {
  const c = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(c);
  return c;
}

async function pidfile(pid: number | string): Promise<void> {
  await writeFile(lbPaths(stateDir, NETNS).pidfile, `${pid}\n`);
}

/** The runtime socket: answers `show info` as HAProxy does, or (undefined) closes without a word. */
async function socket(answer: string | undefined): Promise<void> {
  server = createServer((c) => {
    c.once('data', () => (answer === undefined ? c.destroy() : c.end(answer)));
  });
  await new Promise<void>((r) => server?.listen(lbPaths(stateDir, NETNS).socket, r));
}

const SHOW_INFO = 'Name: HAProxy\nVersion: 2.6.12\nPid: 4242\n';

async function exited(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  await new Promise((r) => c.once('exit', r));
}

describe('the verdict (keepalived’s counter, rise 2 / fall 1 for the PID check)', () => {
  it('passes on the first success after a start (init_fail), needs two after a failure, fails on one', () => {
    let score = 1;
    score = nextScore(score, true);
    expect(scorePasses(score)).toBe(true);
    score = nextScore(score, false);
    expect(scorePasses(score)).toBe(false);
    score = nextScore(score, true);
    expect(scorePasses(score)).toBe(false);
    score = nextScore(score, true);
    expect(scorePasses(score)).toBe(true);
    expect(scorePasses(nextScore(nextScore(score, true), false))).toBe(false);
  });

  it('says 1 on any failure, 0 only with both checks passed, nothing before that', () => {
    expect(healthVerdict(false, 1, undefined)).toBeUndefined();
    expect(healthVerdict(true, 2, undefined)).toBeUndefined();
    expect(healthVerdict(false, 1, true)).toBeUndefined();
    expect(healthVerdict(true, 2, true)).toBe('0');
    expect(healthVerdict(true, 0, true)).toBe('1');
    expect(healthVerdict(true, 1, true)).toBe('1');
    expect(healthVerdict(true, 2, false)).toBe('1');
    expect(healthVerdict(false, 1, false)).toBe('1');
  });
});

describe('HaproxyHealthMonitor', () => {
  it('finds the load balancers with a keepalived config, writes 0 for a HAProxy that serves, 0644', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    await mkdir(lbPaths(stateDir, 'nslb-bbbbbbbbbbbb').dir, { recursive: true });
    m.scan();
    expect(m.watched()).toEqual([NETNS]);
    await pidfile(master().pid!);
    await socket(SHOW_INFO);
    m.checkPids();
    // HAProxy's master lives but its API was not asked yet: no verdict, the file is left alone.
    expect(await says()).toBeUndefined();
    await m.checkApi(NETNS);
    expect(await says()).toBe('0\n');
    expect((await stat(healthFile())).mode & 0o777).toBe(0o644);
    expect(existsSync(`${healthFile()}.tmp`)).toBe(false);
  });

  it('calls a master that exited dead, zombie or gone, and needs two passes to say 0 again', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.scan();
    await socket(SHOW_INFO);
    // The shell starts a child that exits soon, then becomes a sleep that never waits for it: a zombie.
    const pf = lbPaths(stateDir, NETNS).pidfile;
    const parent = spawn('sh', ['-c', 'sleep 0.3 & echo $! >"$1"; exec sleep 30', 'sh', pf], { stdio: 'ignore' });
    children.push(parent);
    let zombie = 0;
    for (const until = Date.now() + 5_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      const pid = Number((await readFile(pf, 'utf8').catch(() => '')).trim());
      if (pid > 0) {
        if (zombie === 0) {
          m.checkPids();
          await m.checkApi(NETNS);
          expect(await says(), 'alive before it exits').toBe('0\n');
          zombie = pid;
        }
        const state = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.[0];
        if (state === 'Z') break;
      }
    }
    expect((await readFile(`/proc/${zombie}/stat`, 'utf8')).split(') ')[1]?.[0], 'the child became a zombie').toBe('Z');
    m.checkPids();
    expect(await says(), 'a zombie master is dead').toBe('1\n');

    // Reaped: the pidfile names no process at all.
    parent.kill('SIGKILL');
    await exited(parent);
    m.checkPids();
    expect(await says()).toBe('1\n');

    // A new master: one pass is not enough after a failure (rise 2), two are, with its API asked again.
    await pidfile(master().pid!);
    m.checkPids();
    await m.checkApi(NETNS);
    expect(await says()).toBe('1\n');
    m.checkPids();
    expect(await says()).toBe('0\n');
  });

  it('says 1 when the master lives but its runtime API does not answer twice in a row (API_FALL), and 0 on the next answer', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.scan();
    await pidfile(master().pid!);
    await socket('Name: HAProxy\nPid: 77\n');
    m.checkPids();
    await m.checkApi(NETNS);
    expect(await says()).toBe('0\n');
    await new Promise<void>((r) => server?.close(() => r()));
    await socket(undefined);
    // One silent check is not enough: a node too busy to read an answer in time is not a hung HAProxy.
    await m.checkApi(NETNS);
    expect(await says(), 'one failed API check').toBe('0\n');
    await m.checkApi(NETNS);
    expect(await says(), 'two failed API checks in a row').toBe('1\n');
    await new Promise<void>((r) => server?.close(() => r()));
    await socket('Name: HAProxy\nPid: 77\n');
    await m.checkApi(NETNS);
    expect(await says()).toBe('0\n');
  });

  it('repairs a hand edit at a PID check once inotify reported it (drift), and a deleted file too', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.scan();
    await pidfile(999999999);
    m.checkPids();
    expect(await says()).toBe('1\n');
    // PID checks as the timer makes them, until the file is repaired (inotify's event comes asynchronously).
    const repaired = async () => {
      for (let i = 0; i < 100 && (await says()) !== '1\n'; i++) {
        await new Promise((r) => setTimeout(r, 20));
        m.checkPids();
      }
      return says();
    };
    await writeFile(healthFile(), '0\n');
    expect(await repaired()).toBe('1\n');
    await rm(healthFile());
    expect(await repaired()).toBe('1\n');
    m.stop();
  });

  it('reads the health file only when inotify says it changed, or after an API check', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.scan();
    await pidfile(master().pid!);
    await socket(SHOW_INFO);
    m.checkPids();
    await m.checkApi(NETNS);
    expect(await says()).toBe('0\n');
    // A write of the same verdict is read and left as it is; a write of another is repaired.
    await writeFile(healthFile(), '0\n');
    const writes = m.counters.writes;
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 20));
      m.checkPids();
    }
    expect(m.counters.writes).toBe(writes);
    await writeFile(healthFile(), '1\n');
    for (let i = 0; i < 100 && (await says()) !== '0\n'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      m.checkPids();
    }
    expect(await says()).toBe('0\n');
    expect(m.counters.writes).toBe(writes + 1);
    m.stop();
  });

  it('before a start writes 1 unless HAProxy was judged; before a reload fills only a missing file, with checks made then', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.beforeStart(NETNS);
    expect(await says()).toBe('1\n');
    await pidfile(master().pid!);
    await socket(SHOW_INFO);
    // An existing file is left to the checks.
    await writeFile(healthFile(), '0\n');
    await m.beforeReload(NETNS);
    expect(await says()).toBe('0\n');
    await rm(healthFile());
    await m.beforeReload(NETNS);
    expect(await says()).toBe('0\n');
    m.checkPids();
    await m.checkApi(NETNS);
    m.beforeStart(NETNS);
    expect(await says()).toBe('0\n');
  });

  it('forgets a load balancer whose keepalived config is gone, and writes nothing for it after', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.scan();
    await rm(keepalivedFiles(stateDir, NETNS).config);
    m.scan();
    expect(m.watched()).toEqual([]);
    await pidfile(999999999);
    m.checkPids();
    expect(await says()).toBeUndefined();
  });

  it('after the agent stopped keepalived: not watched again by a scan while the config is there, nothing written; a start watches it again', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.scan();
    m.stopped(NETNS);
    m.scan();
    expect(m.watched()).toEqual([]);
    // The teardown stops HAProxy next: no verdict, no write.
    await pidfile(999999999);
    m.checkPids();
    expect(await says()).toBeUndefined();
    m.beforeStart(NETNS);
    expect(m.watched()).toEqual([NETNS]);
    m.scan();
    expect(m.watched()).toEqual([NETNS]);
  });

  it('keeps no process alive: its timer is unref’d, stop ends it', async () => {
    const m = new HaproxyHealthMonitor({ stateDir });
    m.start();
    expect(m.running).toBe(true);
    m.stop();
    expect(m.running).toBe(false);
  });
});
