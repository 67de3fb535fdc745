// Issue 6, acceptance item 5: every case of the hostile input corpus (test/hostile/) goes through the real
// file-mode reading path (ManifestDirectory over a directory holding good.yaml and the hostile file) and the
// desired build, and
//   (a) nothing throws (reading, building, rendering every load balancer that builds);
//   (b) an issue or problem names the file, the document and, where a field is at fault, the field, in a
//       message of one visible line;
//   (c) good.yaml's load balancer is still there, with a desired model and an HAProxy config byte for byte
//       what they are without the hostile file;
//   (d) each case takes well under a second or two, the whole corpus well under a minute.
// And a file that breaks keeps its last valid contents in force.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { visible } from '../../src/api/v1alpha1/validate.js';
import { objectId, type AnyObject } from '../../src/api/v1alpha1/types.js';
import { buildDesired } from '../../src/desired/build.js';
import type { DesiredState } from '../../src/desired/model.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import type { HaproxyPaths } from '../../src/plan/haproxy-words.js';
import { ManifestDirectory, type Snapshot } from '../../src/sources/file-source.js';
import { describeIssue, originOf, parseDocuments } from '../../src/sources/parse.js';
import {
  ALL_FIELDS,
  FIFO_MATERIAL,
  GOOD_FILE,
  HOSTILE_STRINGS,
  LITERAL,
  MATERIALS,
  SUBDIR,
  getAt,
  hostileCases,
  literalFiles,
  victim,
  yamlOf,
  type HostileCase,
} from '../hostile/corpus.js';

const GOOD = 'default/good';
const VICTIM = 'default/victim';
const BRIDGE = 'br-int';
const PATHS: HaproxyPaths = {
  socket: '/var/lib/nslb/lb/nslb-0123456789ab/haproxy.sock',
  stateFile: '/var/lib/nslb/lb/nslb-0123456789ab/server-state',
  certsDir: '/var/lib/nslb/lb/nslb-0123456789ab/certs',
  pingCheckCommand: '/usr/lib/node_modules/nslb/scripts/ping-check.sh',
};
const CORPUS_BUDGET_MS = 40_000;

const cases = hostileCases();
/** The file place() made last. */
let placed: string | undefined;

// ---------------------------------------------------------------------------------------------------------
// The watched directory: good.yaml, the TLS material, and hostile/ holding the case's file.

async function makeRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'nslb-hostile-'));
  await copyFile(GOOD_FILE, join(root, 'good.yaml'));
  for (const [path, content] of Object.entries(MATERIALS)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  execFileSync('mkfifo', [join(root, FIFO_MATERIAL)]);
  return root;
}

/** Makes the case's file, and only it, under hostile/. */
async function place(root: string, c: HostileCase): Promise<void> {
  const path = join(root, c.file);
  if (placed !== path) {
    await rm(join(root, SUBDIR), { recursive: true, force: true });
    await mkdir(join(root, SUBDIR));
  }
  placed = path;
  // Made aside (hidden: not read) and renamed into place, as the documented way to write a file: complete when
  // it appears, so the reader applies it at once. Never written over: writing to a FIFO or through a symlink to
  // /dev/zero is not what we want.
  const aside = join(dirname(path), '.placing');
  await rm(aside, { force: true });
  const m = c.make;
  if ('content' in m) await writeFile(aside, m.content);
  else if ('literal' in m) await copyFile(m.literal, aside);
  else if ('symlink' in m) await symlink(m.symlink, aside);
  else execFileSync('mkfifo', [aside]);
  await rename(aside, path);
}

async function bytesOf(c: HostileCase): Promise<Uint8Array | undefined> {
  const m = c.make;
  if ('content' in m) return typeof m.content === 'string' ? Buffer.from(m.content) : m.content;
  if ('literal' in m) return readFile(m.literal);
  return undefined;
}

interface Read {
  snapshot: Snapshot;
  desired: DesiredState;
  configs: Map<string, string>;
}

async function readRoot(dir: ManifestDirectory): Promise<Read> {
  const snapshot = await dir.read();
  const desired = buildDesired(snapshot.objects, { defaultBridge: BRIDGE, materials: snapshot.materials });
  const configs = new Map([...desired.lbs].map(([key, lb]) => [key, renderHaproxyConfig(lb, PATHS)]));
  return { snapshot, desired, configs };
}

// ---------------------------------------------------------------------------------------------------------
// Issues (from reading) and problems (from building) in one shape: file, document, field, message.

interface Report {
  file: string;
  document: number;
  path: string;
  message: string;
  /** As a person reads it: `nslb validate`'s line. */
  text: string;
}

function reportsOf({ snapshot, desired }: Read): Report[] {
  const byId = new Map(snapshot.objects.map((o) => [objectId(o), o]));
  const issues = snapshot.issues.map((i) => ({ file: i.file, document: i.document, path: i.path, message: i.message, text: describeIssue(i) }));
  const problems = desired.problems.map((p) => {
    const object = byId.get(`${p.kind}/${p.namespace}/${p.name}`);
    const at = object === undefined ? undefined : originOf(object);
    const file = at?.file ?? '?';
    const document = at?.document ?? -1;
    const path = p.path ?? '';
    return { file, document, path, message: p.message, text: `${visible(file)}: document ${document} (${p.kind} ${p.name}): ${path}: ${p.message}` };
  });
  return [...issues, ...problems];
}

function objectsFrom(snapshot: Snapshot, file: string): AnyObject[] {
  return snapshot.objects.filter((o) => originOf(o)?.file === file);
}

const json = (v: unknown): string => JSON.stringify(v);

// ---------------------------------------------------------------------------------------------------------

let root: string;
let baseline: { model: string; config: string; objects: string };
let total = 0;
const slowest: [string, number][] = [];

beforeAll(async () => {
  root = await makeRoot();
  const alone = await readRoot(new ManifestDirectory(root));
  const good = alone.desired.lbs.get(GOOD);
  if (good === undefined || alone.desired.problems.length > 0 || alone.snapshot.issues.length > 0) {
    throw new Error(`good.yaml does not build on its own: ${json(reportsOf(alone))}`);
  }
  baseline = { model: json(good), config: alone.configs.get(GOOD) ?? '', objects: json(objectsFrom(alone.snapshot, 'good.yaml')) };
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  const groups = new Map<string, number>();
  for (const c of cases) groups.set(`${c.group} (${c.expect.outcome})`, (groups.get(`${c.group} (${c.expect.outcome})`) ?? 0) + 1);
  slowest.sort((a, b) => b[1] - a[1]);
  console.log(
    `hostile corpus: ${cases.length} cases in ${Math.round(total)} ms\n` +
      [...groups].map(([g, n]) => `  ${String(n).padStart(5)}  ${g}`).join('\n') +
      `\n  slowest: ${slowest
        .slice(0, 5)
        .map(([id, ms]) => `${id} ${Math.round(ms)} ms`)
        .join('; ')}`,
  );
});

describe('the corpus', () => {
  it('has at least 150 rejected cases, and every group', () => {
    expect(cases.filter((c) => c.expect.outcome === 'rejected').length).toBeGreaterThanOrEqual(150);
    expect(new Set(cases.map((c) => c.group))).toEqual(
      new Set([
        'literal',
        'string field',
        'map key',
        'wrong type',
        'out of range',
        'unknown field',
        'unknown kind',
        'unknown apiVersion',
        'not an object',
        'bad name',
        'bad namespace',
        'bad IP',
        'bad CIDR',
        'bad MAC',
        'cross-object rule',
        'reference',
        'TLS material',
        'duplicate',
        'huge',
        'file type',
        'file name',
      ]),
    );
    expect(new Set(cases.map((c) => c.id)).size).toBe(cases.length);
  });

  it('has an expectation for every literal file and a file for every expectation', () => {
    expect(literalFiles()).toEqual(Object.keys(LITERAL).sort());
  });

  it('puts every hostile string into every string field of every kind', () => {
    const strings = ALL_FIELDS.filter((f) => f.schema.type === 'string');
    for (const f of [
      'Listener /spec/tls/sniCertificates/0/keyFile',
      'L7Rule /spec/value',
      'LoadBalancer /metadata/annotations/note',
      'Pool /spec/tls/alpnProtocols/0',
      'L7Policy /metadata/name',
    ]) {
      expect(strings.map((s) => `${s.kind} ${s.path}`)).toContain(f);
    }
    const ids = new Set(cases.map((c) => c.id));
    for (const s of strings) {
      for (const variant of Object.keys(HOSTILE_STRINGS)) expect(ids).toContain(`string field: ${s.kind} ${s.path} ${variant}`);
    }
  });

  it('starts from a victim that builds without a problem', async () => {
    await place(root, {
      id: 'victim',
      group: 'victim',
      file: `${SUBDIR}/victim.yaml`,
      make: { content: yamlOf(victim()) },
      expect: { outcome: 'rejected', document: 0 },
    });
    const read = await readRoot(new ManifestDirectory(root));
    expect(reportsOf(read)).toEqual([]);
    expect([...read.desired.lbs.keys()]).toEqual([GOOD, VICTIM]);
  });
});

describe('each hostile case, read next to good.yaml', () => {
  for (const c of cases) {
    it(c.id, async () => {
      await place(root, c);
      const started = performance.now();
      let read: Read | undefined;
      let thrown: unknown;
      try {
        read = await readRoot(new ManifestDirectory(root));
      } catch (err) {
        thrown = err;
      }
      const elapsed = performance.now() - started;
      total += elapsed;
      slowest.push([c.id, elapsed]);

      // (a) nothing escapes.
      expect(thrown).toBeUndefined();
      if (read === undefined) return;
      const reports = reportsOf(read);
      const mine = reports.filter((r) => r.file === c.file);

      // (b) the file, the document and the field are named, on one visible line.
      const e = c.expect;
      if (e.outcome === 'rejected') {
        const wanted = `document ${e.document}, path ${e.path ?? '(any)'}, message ${String(e.message ?? '(any)')}`;
        const found = mine.find(
          (r) => r.document === e.document && (e.path === undefined || r.path === e.path) && (e.message === undefined || e.message.test(r.message)),
        );
        expect(found, `want ${wanted}; got:\n${mine.map((r) => r.text).join('\n')}`).toBeDefined();
      } else {
        expect(mine.map((r) => r.text)).toEqual([]);
        const object = objectsFrom(read.snapshot, c.file).find((o) => originOf(o)?.document === e.document);
        expect(getAt(object, e.path)).toEqual(e.value);
        expect(read.configs.has(VICTIM)).toBe(true);
      }
      for (const r of mine) {
        expect(r.text).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u);
        expect(r.text.length).toBeLessThan(1_000);
        // Never the content of a file it names: /etc/passwd's first line, the test material's base64.
        expect(r.message).not.toMatch(/root:x:|MIIB/);
      }

      // (c) good is untouched.
      expect(reports.filter((r) => r.file === 'good.yaml').map((r) => r.text)).toEqual([]);
      expect(read.desired.blocked.has(GOOD)).toBe(false);
      expect(json(read.desired.lbs.get(GOOD))).toBe(baseline.model);
      expect(read.configs.get(GOOD)).toBe(baseline.config);
      expect(json(objectsFrom(read.snapshot, 'good.yaml'))).toBe(baseline.objects);
      // Time is reported (the slowest cases, above), not asserted: a hang hits the test's timeout, and speed
      // belongs to bench/.
    });
  }

  it('took well under a minute for the whole corpus', () => {
    expect(total).toBeLessThan(CORPUS_BUDGET_MS);
  });
});

describe('a file that breaks keeps its last valid contents', () => {
  it('for every case: valid, read, overwritten with the case, read: the old objects are still in force', async () => {
    // One ManifestDirectory for the whole run, as in the agent. The valid victim is written (and read) again
    // only when the previous case replaced it for good: a new file name, or a case that parsed.
    const dir = new ManifestDirectory(root);
    let kept = 0;
    let inForce: { file: string; objects: string } | undefined;
    for (const c of cases) {
      if (inForce?.file !== c.file) {
        await place(root, { ...c, make: { content: c.file.endsWith('.json') ? JSON.stringify(victim()) : yamlOf(victim()) } });
        const objects = objectsFrom(await dir.read(), c.file);
        expect(objects, c.id).toHaveLength(7);
        inForce = { file: c.file, objects: json(objects) };
      }

      await place(root, c);
      const after = await dir.read();
      const bytes = await bytesOf(c);
      // A file "breaks" when it cannot be read or does not parse and validate; otherwise its objects replace
      // the old ones (and the desired build reports what is wrong with them).
      const breaks = bytes === undefined || parseDocuments(c.file, bytes).issues.length > 0;
      if (breaks) {
        expect(json(objectsFrom(after, c.file)), c.id).toBe(inForce.objects);
        expect(
          after.issues.some((i) => i.file === c.file),
          c.id,
        ).toBe(true);
        kept++;
      } else {
        const parsed = parseDocuments(c.file, bytes).objects.map((o) => objectId(o));
        expect(
          objectsFrom(after, c.file).every((o) => parsed.includes(objectId(o))),
          c.id,
        ).toBe(true);
        inForce = undefined;
      }
      expect(json(objectsFrom(after, 'good.yaml')), c.id).toBe(baseline.objects);
    }
    expect(kept).toBeGreaterThanOrEqual(150);
  }, 120_000);
});
