import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonCgroup, hierarchyDir, isCgroup } from '../../src/drivers/cgroup.js';
import { DAEMON_CGROUP_SCRIPT } from '../../src/exec/daemon-cgroup.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fake /sys/fs/cgroup and /proc: `hierarchies` are the dirs made (with the cgroup in them), procs the files. */
function fakeHost(opts: { v2: boolean; hierarchies: string[]; procs: Record<number, { cgroup: string; children?: number[] }> }) {
  const base = mkdtempSync(join(tmpdir(), 'nslb-cgroup-'));
  dirs.push(base);
  const root = join(base, 'cgroup');
  const proc = join(base, 'proc');
  mkdirSync(root, { recursive: true });
  if (opts.v2) writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
  for (const h of opts.hierarchies) mkdirSync(join(root, h, 'nslb'), { recursive: true });
  for (const [pid, p] of Object.entries(opts.procs)) {
    mkdirSync(join(proc, pid, 'task', pid), { recursive: true });
    writeFileSync(join(proc, pid, 'cgroup'), p.cgroup);
    writeFileSync(join(proc, pid, 'task', pid, 'children'), (p.children ?? []).map((c) => `${c} `).join(''));
  }
  return { root, proc };
}

describe('isCgroup', () => {
  it('takes the path itself, and the path seen from a cgroup namespace below the root', () => {
    expect(isCgroup('/nslb', '/nslb')).toBe(true);
    expect(isCgroup('/../../nslb', '/nslb')).toBe(true);
    expect(isCgroup('/../kubepods/nslb', '/nslb')).toBe(false);
    expect(isCgroup('/kubepods/pod1/c1', '/nslb')).toBe(false);
    expect(isCgroup('/', '/nslb')).toBe(false);
    expect(isCgroup('/nslb/sub', '/nslb')).toBe(false);
  });
});

describe('hierarchyDir', () => {
  it('names the directory of each /proc/PID/cgroup line on v2, hybrid and v1 hosts', () => {
    const v2 = fakeHost({ v2: true, hierarchies: [''], procs: {} });
    expect(hierarchyDir({ root: v2.root, proc: v2.proc }, '')).toBe(v2.root);
    const v1 = fakeHost({ v2: false, hierarchies: [], procs: {} });
    expect(hierarchyDir({ root: v1.root, proc: v1.proc }, '')).toBe(join(v1.root, 'unified'));
    expect(hierarchyDir({ root: v1.root, proc: v1.proc }, 'name=systemd')).toBe(join(v1.root, 'systemd'));
    expect(hierarchyDir({ root: v1.root, proc: v1.proc }, 'cpu,cpuacct')).toBe(join(v1.root, 'cpu,cpuacct'));
  });
});

describe('DaemonCgroup', () => {
  const noRun = async () => {
    throw new Error('no process expected');
  };

  it('finds a worker moved into a pod cgroup on cgroup v2 and leaves the master in place', () => {
    const host = fakeHost({
      v2: true,
      hierarchies: [''],
      procs: { 100: { cgroup: '0::/nslb\n', children: [101, 102] }, 101: { cgroup: '0::/kubepods/pod1/c1\n' }, 102: { cgroup: '0::/nslb\n' } },
    });
    expect(new DaemonCgroup(noRun, '/nslb', host).misplaced([100])).toEqual([101]);
  });

  it('reads paths seen from inside a cgroup namespace', () => {
    const host = fakeHost({ v2: true, hierarchies: [''], procs: { 100: { cgroup: '0::/../../nslb\n' } } });
    expect(new DaemonCgroup(noRun, '/nslb', host).misplaced([100])).toEqual([]);
  });

  it('on v1 looks only at hierarchies where the cgroup exists (those the start script joined)', () => {
    const host = fakeHost({
      v2: false,
      hierarchies: ['memory', 'systemd', 'unified'],
      procs: {
        // pids has no nslb directory: its path does not count.
        100: { cgroup: '9:name=systemd:/nslb\n8:pids:/user.slice\n4:memory:/nslb\n0::/nslb\n' },
        200: { cgroup: '9:name=systemd:/nslb\n8:pids:/user.slice\n4:memory:/docker/abc\n0::/nslb\n' },
      },
    });
    expect(new DaemonCgroup(noRun, '/nslb', host).misplaced([100, 200])).toEqual([200]);
  });

  it('skips a process that is gone, and spawns nothing when nothing is out of place', async () => {
    const host = fakeHost({ v2: true, hierarchies: [''], procs: { 100: { cgroup: '0::/nslb\n' } } });
    const c = new DaemonCgroup(noRun, '/nslb', host);
    expect(c.misplaced([100, 4242])).toEqual([]);
    await c.move([]);
  });

  it('moves and removes through the script, with an argv', async () => {
    const calls: string[][] = [];
    const c = new DaemonCgroup(async (argv) => {
      calls.push([...argv]);
      return { stdout: '', stderr: '' };
    }, '/nslb');
    await c.move([101, 7]);
    await c.remove();
    expect(calls).toEqual([
      [DAEMON_CGROUP_SCRIPT, '--move', '/nslb', '101', '7'],
      [DAEMON_CGROUP_SCRIPT, '--remove', '/nslb'],
    ]);
  });
});
