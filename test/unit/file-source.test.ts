// The file source on a real directory (no root needed): snapshots, last valid contents, symlink swaps.
import { mkdtemp, mkdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
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
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-fs-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const names = (s: Snapshot): string[] => s.objects.map((o) => o.metadata.name);

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
