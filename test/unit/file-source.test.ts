// The file source on a real directory (no root needed): snapshots, last valid contents, symlink swaps.
import { link, mkdtemp, mkdir, rename, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSource, ManifestDirectory, type Snapshot } from '../../src/sources/file-source.js';

const lb = (name: string, address: string): string => `apiVersion: nslb.dev/v1alpha1
kind: LoadBalancer
metadata: { name: ${name} }
spec: { vip: { address: ${address} } }
`;

let dir: string;
/** Sources started by watching(), stopped even when a test fails half-way. */
const started: FileSource[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-fs-'));
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
});

const names = (s: Snapshot): string[] => s.objects.map((o) => o.metadata.name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const address = (s: Snapshot, name: string): string | undefined => {
  const o = s.objects.find((x) => x.metadata.name === name);
  return o?.kind === 'LoadBalancer' ? o.spec.vip.address : undefined;
};

/** Replaces a file as the documented way to write does: a new file renamed over the old one. */
async function replace(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

interface Watching {
  source: FileSource;
  snapshots: Snapshot[];
  /** Date.now() when each snapshot came. */
  times: number[];
  until: (ok: (s: Snapshot) => boolean, ms?: number) => Promise<Snapshot>;
}

/** A FileSource on dir with the agent's own debounce, every snapshot recorded. */
async function watching(): Promise<Watching> {
  const snapshots: Snapshot[] = [];
  const times: number[] = [];
  const source = new FileSource(dir, {
    onSnapshot: (s) => {
      snapshots.push(s);
      times.push(Date.now());
    },
    onError: (e) => {
      throw e;
    },
  });
  started.push(source);
  await source.start();
  const until = async (ok: (s: Snapshot) => boolean, ms = 5_000): Promise<Snapshot> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const last = snapshots.at(-1);
      if (last !== undefined && ok(last)) return last;
      await sleep(10);
    }
    throw new Error(`no such snapshot within ${ms} ms; the last one holds ${JSON.stringify(snapshots.at(-1)?.objects.map((o) => o.metadata.name))}`);
  };
  return { source, snapshots, times, until };
}

describe('ManifestDirectory', () => {
  it('reads every yaml, yml and json file, recursively, skipping hidden ones', async () => {
    await mkdir(join(dir, 'sub'));
    await mkdir(join(dir, '.git'));
    await writeFile(join(dir, 'a.yaml'), lb('a', '10.201.0.1'));
    await writeFile(join(dir, 'sub', 'b.yml'), lb('b', '10.201.0.2'));
    await writeFile(
      join(dir, 'c.json'),
      JSON.stringify({ apiVersion: 'nslb.dev/v1alpha1', kind: 'LoadBalancer', metadata: { name: 'c' }, spec: { vip: { address: '10.201.0.3' } } }),
    );
    await writeFile(join(dir, '.git', 'd.yaml'), lb('d', '10.201.0.4'));
    await writeFile(join(dir, 'README.md'), '# not a manifest');
    const s = await new ManifestDirectory(dir).read();
    expect(names(s).sort()).toEqual(['a', 'b', 'c']);
    expect(s.issues).toEqual([]);
  });

  it('keeps the last valid contents of a file that breaks, and reports it', async () => {
    const d = new ManifestDirectory(dir);
    await writeFile(join(dir, 'a.yaml'), lb('a', '10.201.0.1'));
    await d.read();
    await writeFile(join(dir, 'a.yaml'), lb('a', '10.201.0.300'));
    const s = await d.read();
    expect(names(s)).toEqual(['a']);
    expect(s.objects[0]?.kind === 'LoadBalancer' && s.objects[0].spec.vip.address).toBe('10.201.0.1');
    expect(s.issues).toEqual([expect.objectContaining({ file: 'a.yaml', document: 1, path: '/spec/vip/address' })]);
  });

  it('parses a file that has not changed since a read (older than a second) once, and sees any change to it', async () => {
    const d = new ManifestDirectory(dir);
    const file = join(dir, 'a.yaml');
    const aged = async (secondsAgo: number) => {
      const t = new Date(Date.now() - secondsAgo * 1000);
      await utimes(file, t, t);
    };
    await writeFile(file, lb('a', '10.201.0.1'));
    await aged(10);
    const first = (await d.read()).objects[0];
    expect((await d.read()).objects[0]).toBe(first);
    // Same size, another address: a new mtime (and ctime) says it changed.
    await writeFile(file, lb('a', '10.201.0.2'));
    await aged(5);
    const second = (await d.read()).objects[0];
    expect(second).not.toBe(first);
    expect(second?.kind === 'LoadBalancer' && second.spec.vip.address).toBe('10.201.0.2');
    // Written just now: read again every time (a write in the same clock tick would not change its mtime).
    await writeFile(file, lb('a', '10.201.0.3'));
    const young = (await d.read()).objects[0];
    expect((await d.read()).objects[0]).not.toBe(young);
  });

  it('deletes the objects of a file that is removed', async () => {
    const d = new ManifestDirectory(dir);
    await writeFile(join(dir, 'a.yaml'), lb('a', '10.201.0.1'));
    await writeFile(join(dir, 'b.yaml'), lb('b', '10.201.0.2'));
    await d.read();
    await rm(join(dir, 'b.yaml'));
    expect(names(await d.read())).toEqual(['a']);
  });
});

describe('FileSource', () => {
  it('reconciles a burst of changes from one snapshot after the debounce', async () => {
    const snapshots: Snapshot[] = [];
    const source = new FileSource(dir, {
      debounceMs: 150,
      onSnapshot: (s) => snapshots.push(s),
      onError: (e) => {
        throw e;
      },
    });
    await source.start();
    expect(snapshots).toHaveLength(1);
    for (let i = 0; i < 10; i++) await writeFile(join(dir, `lb${i}.yaml`), lb(`lb${i}`, `10.201.0.${i + 1}`));
    await new Promise((r) => setTimeout(r, 800));
    await source.stop();
    expect(snapshots.length).toBeLessThanOrEqual(3);
    expect(names(snapshots.at(-1)!)).toHaveLength(10);
  });

  it('follows a symlink swapped atomically to a new checkout', async () => {
    await mkdir(join(dir, 'v1'));
    await mkdir(join(dir, 'v2'));
    await writeFile(join(dir, 'v1', 'lb.yaml'), lb('one', '10.201.0.1'));
    await writeFile(join(dir, 'v2', 'lb.yaml'), lb('two', '10.201.0.2'));
    await symlink(join(dir, 'v1'), join(dir, 'current'));
    const snapshots: Snapshot[] = [];
    const source = new FileSource(join(dir, 'current'), {
      debounceMs: 50,
      onSnapshot: (s) => snapshots.push(s),
      onError: (e) => {
        throw e;
      },
    });
    await source.start();
    expect(names(snapshots.at(-1)!)).toEqual(['one']);
    await symlink(join(dir, 'v2'), join(dir, 'current.new'));
    await rename(join(dir, 'current.new'), join(dir, 'current'));
    const until = Date.now() + 3000;
    while (names(snapshots.at(-1)!)[0] !== 'two' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await source.stop();
    expect(names(snapshots.at(-1)!)).toEqual(['two']);
    // A file edited in the old checkout after the swap is not ours any more.
  });
});

// A file written in place (truncated, then written: `cat > f`, many editors) or re-created by git (unlinked,
// created empty, then written) can be read between the steps. Empty is valid YAML (no documents): without care
// every object the file held would be deleted, and its load balancer torn down, for a moment.
describe('a file read while it is being written', () => {
  const two = `${lb('a', '10.201.0.1')}---\n${lb('b', '10.201.0.2')}`;

  it('never loses the objects of a file rewritten in place, and applies its new contents', async () => {
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    const { source, snapshots, until } = await watching();
    expect(names(snapshots.at(-1)!)).toEqual(['a', 'b']);
    const from = snapshots.length;
    await truncate(file, 0); // what `cat > f` does first
    await sleep(40); // a writer that is slow to write (a loaded node, a generator): several debounces long
    await writeFile(file, two.replace('10.201.0.2', '10.201.0.22'));
    // chokidar reports one change of a file per 50 ms: the write's own event is swallowed, yet it is read.
    await until((s) => address(s, 'b') === '10.201.0.22', 900);
    await sleep(1_300); // past the settling time: nothing else happens
    await source.stop();
    expect(snapshots.length).toBeGreaterThan(from);
    for (const s of snapshots.slice(from)) expect(names(s)).toEqual(['a', 'b']);
    expect(address(snapshots.at(-1)!, 'b')).toBe('10.201.0.22');
  });

  it('never loses the objects of a file that git re-creates (unlinked, created empty, written)', async () => {
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    const { source, snapshots, until } = await watching();
    const from = snapshots.length;
    await rm(file);
    await writeFile(file, '', { flag: 'wx' }); // open(O_CREAT|O_EXCL)
    await sleep(40);
    await writeFile(file, two.replace('10.201.0.1', '10.201.0.11'));
    await until((s) => address(s, 'a') === '10.201.0.11');
    await source.stop();
    // Between the unlink and the create the file is really gone; a read can land there only if git pauses
    // for more than the debounce between them, which the test does not.
    for (const s of snapshots.slice(from)) expect(names(s)).toEqual(['a', 'b']);
  });

  it('deletes the objects of a file the user empties, once it has been left alone for a second', async () => {
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    const { source, snapshots, times, until } = await watching();
    const from = snapshots.length;
    await writeFile(file, '# retired\n');
    await until((s) => s.settling.length > 0);
    expect(names(snapshots.at(-1)!)).toEqual(['a', 'b']);
    // The periodic resync reads meanwhile: it neither applies the emptiness early nor loses the re-read.
    await source.refresh();
    expect(names(snapshots.at(-1)!)).toEqual(['a', 'b']);
    // No further event comes: the source reads the file again by itself.
    const emptied = await until((s) => s.objects.length === 0, 4_000);
    await source.stop();
    expect(emptied.settling).toEqual([]);
    expect(emptied.issues).toEqual([]);
    const at = snapshots.indexOf(emptied);
    const held = snapshots.slice(from, at);
    expect(held.length).toBeGreaterThan(0);
    for (const s of held) expect(names(s)).toEqual(['a', 'b']);
    expect(times[at]).toBeGreaterThanOrEqual((await stat(file)).mtimeMs + 1000);
  });

  it('reads a file written in place twice within 50 ms (chokidar reports only the first change)', async () => {
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    const { source, snapshots, until } = await watching();
    const from = snapshots.length;
    await writeFile(file, two.replace('10.201.0.1', '10.201.0.11'));
    await sleep(20);
    await writeFile(file, two.replace('10.201.0.1', '10.201.0.12'));
    await until((s) => address(s, 'a') === '10.201.0.12');
    await source.stop();
    // writeFile truncates before it writes: a read between the two sees an empty or partial file, and the
    // source rightly holds that as a removal (settling). What must hold is that nothing was ever removed.
    for (const s of snapshots.slice(from)) expect(names(s).sort().join()).toBe('a,b');
    expect(snapshots.at(-1)?.settling).toEqual([]);
  });

  it('deletes the objects of a file that is removed at once', async () => {
    await replace(join(dir, 'a.yaml'), lb('a', '10.201.0.1'));
    await replace(join(dir, 'b.yaml'), lb('b', '10.201.0.2'));
    const { source, snapshots, until } = await watching();
    const from = snapshots.length;
    await rm(join(dir, 'b.yaml'));
    await until((s) => names(s).join() === 'a', 900);
    await source.stop();
    for (const s of snapshots.slice(from)) expect(s.settling).toEqual([]);
  });

  it('applies a file renamed into place that drops a document at once', async () => {
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    const { source, snapshots, until } = await watching();
    const from = snapshots.length;
    await replace(file, lb('a', '10.201.0.1'));
    await until((s) => names(s).join() === 'a', 900);
    await source.stop();
    for (const s of snapshots.slice(from)) expect(s.settling).toEqual([]);
  });
});

describe('ManifestDirectory: when a change that removes objects waits', () => {
  const two = `${lb('a', '10.201.0.1')}---\n${lb('b', '10.201.0.2')}`;
  const ago = async (path: string, seconds: number) => {
    const t = new Date(Date.now() - seconds * 1000);
    await utimes(path, t, t);
  };

  it('holds an empty file written within the last second; applies one written longer ago', async () => {
    const d = new ManifestDirectory(dir);
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    await d.read();
    await writeFile(file, '\n---\n# nothing\n');
    const held = await d.read();
    expect(names(held)).toEqual(['a', 'b']);
    const { mtimeMs } = await stat(file);
    expect(held.settling).toEqual([{ file: 'lbs.yaml', untilMs: expect.closeTo(mtimeMs + 1000, -1) }]);
    // Read again (a resync, another file's event) within the second: still held, same deadline.
    expect((await d.read()).settling).toEqual(held.settling);
    await ago(file, 5);
    const applied = await d.read();
    expect(names(applied)).toEqual([]);
    expect(applied.settling).toEqual([]);
  });

  it('holds a file rewritten in place that lost a document; applies one renamed into place at once', async () => {
    const d = new ManifestDirectory(dir);
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    await d.read();
    await writeFile(file, lb('a', '10.201.0.1'));
    const held = await d.read();
    expect(names(held)).toEqual(['a', 'b']);
    expect(held.settling.map((s) => s.file)).toEqual(['lbs.yaml']);
    await replace(file, lb('a', '10.201.0.1'));
    const renamed = await d.read();
    expect(names(renamed)).toEqual(['a']);
    expect(renamed.settling).toEqual([]);
  });

  it('applies at once what an in-place write adds or changes', async () => {
    const d = new ManifestDirectory(dir);
    const file = join(dir, 'lbs.yaml');
    await replace(file, lb('a', '10.201.0.1'));
    await d.read();
    await writeFile(file, two.replace('10.201.0.1', '10.201.0.11'));
    const grown = await d.read();
    expect(names(grown)).toEqual(['a', 'b']);
    expect(address(grown, 'a')).toBe('10.201.0.11');
    expect(grown.settling).toEqual([]);
  });

  it('holds an empty file re-created by git (a new inode), and not a new file that starts empty', async () => {
    const d = new ManifestDirectory(dir);
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    await writeFile(join(dir, 'new.yaml'), '');
    await d.read();
    // Kept alive under a hidden name, so that the new file cannot get its inode number (ext4 reuses them).
    await link(file, join(dir, '.old'));
    await rm(file);
    await writeFile(file, '', { flag: 'wx' });
    expect((await stat(file)).ino).not.toBe((await stat(join(dir, '.old'))).ino);
    const held = await d.read();
    expect(names(held)).toEqual(['a', 'b']);
    expect(held.settling.map((s) => s.file)).toEqual(['lbs.yaml']);
  });

  it('never holds a file for longer than a second after it is first seen, whatever its mtime says', async () => {
    const d = new ManifestDirectory(dir);
    const file = join(dir, 'lbs.yaml');
    await replace(file, two);
    await d.read();
    await writeFile(file, '');
    const future = new Date(Date.now() + 3_600_000);
    await utimes(file, future, future);
    const held = await d.read();
    expect(names(held)).toEqual(['a', 'b']);
    expect(held.settling[0]?.untilMs).toBeLessThanOrEqual(Date.now() + 1000);
  });
});
