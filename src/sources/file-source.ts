// File-watch mode's source: a directory of multi-document YAML/JSON, typically a GitOps checkout.
// Events only say "something changed"; after a short debounce the whole tree is read again into one
// consistent snapshot, so a `git pull` touching many files is reconciled once, never half-applied.
// The watched path may be a symlink swapped atomically to a new checkout (git-sync): the link's parent is
// watched too and the watcher follows the new target. A file that fails to parse or validate keeps its last
// valid contents in force; only a file that is really gone deletes its objects. A file read in the middle of
// being written (empty, or holding some of its documents) does not delete the objects it held until it has been
// left alone for a second (SETTLE_MS).
import { type BigIntStats, constants, type Stats } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { objectId, type AnyObject } from '../api/v1alpha1/types.js';
import { PARSE_LIMITS, parseDocuments, type FileIssue } from './parse.js';
import { mergeFiles } from './snapshot.js';

export interface Snapshot {
  objects: AnyObject[];
  issues: FileIssue[];
  /** Files read in this snapshot, relative to the watched path. */
  files: string[];
  /**
   * Contents of the files that objects reference (TLS certificates and keys), keyed by the path exactly as
   * written in the spec. Key material: never logged.
   */
  materials: Map<string, string>;
  /**
   * Files whose new contents would remove objects but may be half-written (see SETTLE_MS): their previous
   * contents are still in force. The file is to be read again at `untilMs` (epoch ms), event or not.
   */
  settling: { file: string; untilMs: number }[];
}

/** Paths of the TLS files an object names (relative paths are relative to the watched directory). */
export function referencedFiles(o: AnyObject): string[] {
  let paths: (string | undefined)[] = [];
  if (o.kind === 'Listener' && o.spec.tls !== undefined) {
    const tls = o.spec.tls;
    paths = [
      tls.certificateFile,
      tls.keyFile,
      ...(tls.sniCertificates ?? []).flatMap((c) => [c.certificateFile, c.keyFile]),
      tls.clientCaFile,
      tls.clientCrlFile,
    ];
  } else if (o.kind === 'Pool' && o.spec.tls !== undefined) {
    const tls = o.spec.tls;
    paths = [tls.caFile, tls.crlFile, tls.certificateFile, tls.keyFile];
  }
  return paths.filter((p): p is string => p !== undefined);
}

/** A PEM bundle with a long chain is a few tens of kilobytes; anything near this is not one. */
export const MAX_MATERIAL_BYTES = 1024 * 1024;

/** Reads every referenced file that exists; a missing one is left out and reported by the desired build. */
export async function readMaterials(root: string, objects: readonly AnyObject[]): Promise<Map<string, string>> {
  const materials = new Map<string, string>();
  for (const path of new Set(objects.flatMap(referencedFiles))) {
    try {
      const read = await readBounded(isAbsolute(path) ? path : join(root, path), MAX_MATERIAL_BYTES);
      if (read.ok) materials.set(path, read.bytes.toString('utf8'));
    } catch {
      // Not found or unreadable: buildDesired names the field and the file.
    }
  }
  return materials;
}

export type BoundedRead = { ok: true; bytes: Buffer } | { ok: false; message: string };

/**
 * Reads a file named by untrusted input: only a regular file, and never more than `limit` bytes. A manifest
 * or certificate path can be a symlink to /dev/zero (readFile would never finish and exhaust memory) or to a
 * FIFO (a plain open blocks a libuv thread forever; four of them stall every file operation of the agent), so
 * the file is opened non-blocking and checked before anything is read. Throws on open errors (ENOENT, EACCES).
 */
export async function readBounded(path: string, limit: number): Promise<BoundedRead> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { ok: false, message: `not a regular file (${fileType(st)})` };
    if (st.size > limit) return { ok: false, message: tooLarge(st.size, limit) };
    // The file may grow between stat and read (it is being written): read to the end, but stop one byte
    // past the limit. Each read asks for more than stat said is left, and a regular file returns less than
    // asked only at its end, so an unchanged file takes one read.
    const chunks: Buffer[] = [];
    let length = 0;
    while (length <= limit) {
      const want = Math.min(Math.max(st.size - length + 1, 64 * 1024), limit + 1 - length);
      const chunk = Buffer.allocUnsafe(want);
      const { bytesRead } = await handle.read(chunk, 0, want, length);
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (bytesRead < want) break;
    }
    if (length > limit) return { ok: false, message: tooLarge(length, limit, 'at least ') };
    return { ok: true, bytes: Buffer.concat(chunks, length) };
  } finally {
    await handle.close();
  }
}

function tooLarge(size: number, limit: number, atLeast = ''): string {
  return `file is too large (${atLeast}${size} bytes; the limit is ${limit})`;
}

function fileType(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

const EXTENSIONS = ['.yaml', '.yml', '.json'];

function wanted(name: string): boolean {
  return EXTENSIONS.some((e) => name.endsWith(e)) && !name.startsWith('.');
}

/** Every manifest under dir (recursively; hidden files and directories such as .git are skipped). */
export async function listManifests(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const p = join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      // Not only regular files and symlinks: a FIFO or socket named like a manifest is reported (reading
      // never blocks on it), not skipped in silence while the objects it used to hold disappear.
      else if (wanted(entry.name)) out.push(p);
    }
  };
  await walk(dir);
  return out.map((p) => relative(dir, p)).sort();
}

/**
 * A file read whose mtime is at least this much older than the read is not read and parsed again while its
 * inode, size, mtime and ctime stay the same: with 2,000 files in the tree, reading and parsing all of them cost
 * 0.6–1.9 s per change. Younger ones are read every time, as git does with "racy" index entries: a write in the
 * same clock tick as our read would leave mtime and size unchanged.
 */
const STABLE_MS = 1_000;

/**
 * A file is not written in one step unless it is renamed into place. `cat > f`, editors that save in place and
 * generators truncate it and then write it, and `git checkout` unlinks it, creates it empty and then writes it;
 * a read can land in between (5 ms after an event, on a busy node). The empty file is valid YAML with no
 * documents, so every object it held, a whole load balancer, would be deleted and re-created a moment later.
 * So a read that removes objects from a file is not applied while the file may still be being written:
 *   - it has no documents at all (zero bytes, whitespace, comments), whatever the inode: git's new file
 *     starts empty; or it is the same inode as at the previous read (written in place, or deleted and made
 *     again with a reused inode number), where any prefix of the new contents can be read;
 *   - and it was modified less than SETTLE_MS ago.
 * Its previous contents stay in force and it is read again once it has been left alone for SETTLE_MS: only
 * then does what it removed go. A new inode with documents (renamed into place, the documented way to write)
 * is complete and applies at once, removals included, as does a file that is deleted, and anything that adds
 * or changes objects. A second: writers finish within milliseconds, but a loaded node can stall one for
 * hundreds; the cost, a removal written in place taking effect a second late, is paid by nothing automated
 * (tools rename). It must not exceed STABLE_MS: a file served from the parse cache is treated as settled.
 */
const SETTLE_MS = 1_000;

interface ParsedFile {
  /** ino, size, mtime and ctime (ns) of the file read. */
  identity: string;
  objects: AnyObject[];
  issues: FileIssue[];
}

/** Reads a directory into a snapshot, keeping the last valid contents of files that are now broken. */
export class ManifestDirectory {
  readonly path: string;
  readonly #lastValid = new Map<string, AnyObject[]>();
  readonly #parsed = new Map<string, ParsedFile>();
  /** Inode of each file at its last read, to tell a write in place from a new file. */
  readonly #inodes = new Map<string, bigint>();
  /** Files whose removals wait (SETTLE_MS): the stat of the read that found them, and when they may apply. */
  readonly #settling = new Map<string, { identity: string; untilMs: number }>();

  constructor(path: string) {
    this.path = path;
  }

  async read(): Promise<Snapshot> {
    const root = await realpath(this.path);
    const files = await listManifests(root);
    const issues: FileIssue[] = [];
    const present = new Set(files);
    for (const file of [...this.#lastValid.keys()]) if (!present.has(file)) this.#lastValid.delete(file);
    for (const map of [this.#parsed, this.#inodes, this.#settling]) for (const file of [...map.keys()]) if (!present.has(file)) map.delete(file);
    const settling: Snapshot['settling'] = [];
    const startedMs = Date.now();
    for (const file of files) {
      let content: Buffer;
      let identity: string | undefined;
      let st: BigIntStats;
      let inPlace: boolean;
      try {
        // A manifest symlinked out of the checkout (to /etc/shadow, say) would be read as root and quoted,
        // a line at a time, into error messages and status.json. Argo CD refuses such links too.
        const real = await realpath(join(root, file));
        const inside = relative(root, real);
        if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
          issues.push({ file, document: 0, path: '', message: 'is a symbolic link to outside the watched directory; not read' });
          continue;
        }
        st = await stat(real, { bigint: true });
        inPlace = this.#inodes.get(file) === st.ino;
        this.#inodes.set(file, st.ino);
        const mtimeMs = Number(st.mtimeNs / 1_000_000n);
        if (st.isFile() && startedMs - mtimeMs >= STABLE_MS) identity = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
        const known = this.#parsed.get(file);
        if (identity !== undefined && known?.identity === identity) {
          this.#settling.delete(file);
          if (known.issues.length === 0) this.#lastValid.set(file, known.objects);
          else issues.push(...known.issues);
          continue;
        }
        const read = await readBounded(real, PARSE_LIMITS.maxFileBytes);
        if (!read.ok) {
          issues.push({ file, document: 0, path: '', message: read.message });
          continue;
        }
        content = read.bytes;
      } catch (err) {
        issues.push({ file, document: 0, path: '', message: `cannot read: ${(err as Error).message}` });
        continue;
      }
      // Bytes, not a string: the parser decodes strictly, so a file that is not UTF-8 is reported rather than
      // read with replacement characters.
      const parsed = parseDocuments(file, content);
      const untilMs = parsed.issues.length === 0 ? this.#settleUntil(file, st, inPlace, content.length, parsed.objects) : undefined;
      if (untilMs !== undefined) settling.push({ file, untilMs });
      else this.#settling.delete(file);
      if (parsed.issues.length > 0) issues.push(...parsed.issues);
      else if (untilMs === undefined) this.#lastValid.set(file, parsed.objects);
      if (identity === undefined || untilMs !== undefined) this.#parsed.delete(file);
      else this.#parsed.set(file, { identity, objects: parsed.objects, issues: parsed.issues });
    }
    const merged = mergeFiles(this.#lastValid);
    const materials = await readMaterials(root, merged.objects);
    return { objects: merged.objects, issues: [...issues, ...merged.issues], files, materials, settling };
  }

  /** When the valid contents just read may replace the file's previous ones; undefined: now (SETTLE_MS). */
  #settleUntil(file: string, st: BigIntStats, inPlace: boolean, bytesRead: number, objects: readonly AnyObject[]): number | undefined {
    const before = this.#lastValid.get(file);
    if (before === undefined || (objects.length > 0 && !inPlace)) return undefined;
    const after = new Set(objects.map(objectId));
    if (before.every((o) => after.has(objectId(o)))) return undefined;
    const nowMs = Date.now();
    // Fewer bytes than stat said (or more): written while it was read; its mtime is already stale.
    const changing = BigInt(bytesRead) !== st.size;
    const identity = changing ? '' : `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    let hold = this.#settling.get(file);
    if (hold === undefined || changing || hold.identity !== identity) {
      // From the file's mtime, but never later than now: an mtime in the future (a skewed NFS server, `touch
      // -d`) must not hold the file longer than SETTLE_MS after it was first seen so.
      const sinceMs = changing ? nowMs : Math.min(Number(st.mtimeNs / 1_000_000n), nowMs);
      hold = { identity, untilMs: sinceMs + SETTLE_MS };
      this.#settling.set(file, hold);
    }
    return nowMs < hold.untilMs ? hold.untilMs : undefined;
  }
}

/**
 * The quiet time after the last event before the tree is read. A checkout writes its files back to back
 * (well under a millisecond apart), so 5 ms still reads a `git pull` once, whole; every millisecond here is
 * a millisecond added to each change (a member added through the runtime API takes effect milliseconds after).
 * Checkouts swapped in by a symlink (git-sync) are atomic whatever this is.
 */
const DEFAULT_DEBOUNCE_MS = 5;

export interface FileSourceOptions {
  debounceMs?: number;
  onSnapshot: (s: Snapshot) => void;
  onError: (err: Error) => void;
}

export class FileSource {
  readonly #dir: ManifestDirectory;
  readonly #opts: FileSourceOptions;
  #watcher: FSWatcher | undefined;
  #linkWatcher: FSWatcher | undefined;
  #target = '';
  #timer: NodeJS.Timeout | undefined;
  /** The read again of files whose removals wait (Snapshot.settling): it must come without an event. */
  #recheck: NodeJS.Timeout | undefined;
  #stopped = false;
  #reading: Promise<void> = Promise.resolve();

  constructor(path: string, opts: FileSourceOptions) {
    this.#dir = new ManifestDirectory(path);
    this.#opts = opts;
  }

  async start(): Promise<void> {
    await this.#watchTarget();
    // The parent of the watched path, depth 0: sees a symlink swapped to a new checkout.
    const parent = dirname(this.#dir.path);
    const name = basename(this.#dir.path);
    this.#linkWatcher = chokidar.watch(parent, {
      depth: 0,
      ignoreInitial: true,
      followSymlinks: false,
      ignored: (p: string) => p !== parent && basename(p) !== name,
    });
    this.#linkWatcher.on('all', () => this.changed());
    this.#linkWatcher.on('error', (e) => this.#opts.onError(e as Error));
    await this.refresh();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#recheck);
    await Promise.all([this.#watcher?.close(), this.#linkWatcher?.close()]);
  }

  /** Files and directories watched now: one inotify watch each (the kernel's fs.inotify.max_user_watches). */
  watchedPaths(): number | undefined {
    if (this.#watcher === undefined) return undefined;
    let n = 0;
    for (const entries of Object.values(this.#watcher.getWatched())) n += entries.length;
    return n;
  }

  /** Something may have changed: read again after the debounce (repeats within it are merged). */
  changed(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.refresh(), this.#opts.debounceMs ?? DEFAULT_DEBOUNCE_MS);
  }

  /** Read now (also used by the periodic resync, in case an event was missed). */
  async refresh(): Promise<void> {
    this.#reading = this.#reading.then(async () => {
      try {
        await this.#watchTarget();
        const snapshot = await this.#dir.read();
        this.#opts.onSnapshot(snapshot);
        this.#scheduleRecheck(snapshot.settling);
      } catch (err) {
        // The directory is gone or is not one: drop its watcher, so that a directory coming back at that path
        // is watched afresh (the old watcher would stay blind to it, leaving edits to the next resync).
        await this.#forgetTarget();
        this.#opts.onError(err as Error);
      }
    });
    await this.#reading;
  }

  #scheduleRecheck(settling: Snapshot['settling']): void {
    clearTimeout(this.#recheck);
    this.#recheck = undefined;
    if (this.#stopped || settling.length === 0) return;
    const untilMs = Math.min(...settling.map((s) => s.untilMs));
    // One more millisecond: a read at untilMs - 0.5 (Date.now() is whole) would find it still settling.
    this.#recheck = setTimeout(() => void this.refresh(), Math.max(0, untilMs - Date.now()) + 1);
  }

  async #forgetTarget(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    this.#target = '';
    await watcher?.close().catch(() => undefined);
  }

  async #watchTarget(): Promise<void> {
    const target = await realpath(this.#dir.path);
    if (target === this.#target && this.#watcher !== undefined) return;
    if (!(await stat(target)).isDirectory()) throw new Error(`${this.#dir.path} is not a directory`);
    await this.#watcher?.close();
    this.#target = target;
    this.#watcher = chokidar.watch(target, {
      ignoreInitial: true,
      ignored: (p: string) => basename(p).startsWith('.') && p !== target,
      awaitWriteFinish: false,
    });
    this.#watcher.on('all', () => this.changed());
    // chokidar reports one change of a file per 50 ms and drops the others: a file truncated and written 20 ms
    // later would be read empty and its contents not read again before the next resync. Raw events are every
    // inotify event, unthrottled (hidden files, such as an editor's swap file, are not ours).
    this.#watcher.on('raw', (_event, path) => {
      if (typeof path !== 'string' || !basename(path).startsWith('.')) this.changed();
    });
    this.#watcher.on('error', (e) => this.#opts.onError(e as Error));
  }
}
