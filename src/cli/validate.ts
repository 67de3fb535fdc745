// `nslb validate PATH…`: offline checks of files and directories; exit 1 with file, document and field.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { AnyObject } from '../api/v1alpha1/types.js';
import { objectId } from '../api/v1alpha1/types.js';
import { buildDesired } from '../desired/build.js';
import { describeIssue, originOf, parseDocuments, type FileIssue } from '../sources/parse.js';
import { mergeFiles } from '../sources/snapshot.js';
import { listManifests, readMaterials } from '../sources/file-source.js';

async function expand(path: string): Promise<string[]> {
  const s = await stat(path);
  if (!s.isDirectory()) return [path];
  return (await listManifests(path)).map((f) => join(path, f));
}

export async function validate(paths: readonly string[], flags: { bridge: string }): Promise<number> {
  const files = new Map<string, AnyObject[]>();
  const issues: FileIssue[] = [];
  for (const path of paths) {
    let list: string[];
    try {
      list = await expand(path);
    } catch (err) {
      issues.push({ file: path, document: 0, path: '', message: `cannot read: ${(err as Error).message}` });
      continue;
    }
    for (const file of list) {
      const parsed = parseDocuments(file, await readFile(file, 'utf8'));
      issues.push(...parsed.issues);
      files.set(file, parsed.objects);
    }
  }
  const merged = mergeFiles(files);
  issues.push(...merged.issues);
  // TLS paths are relative to the directory being validated (the watched directory in `run`).
  const only = paths.length === 1 ? paths[0]! : undefined;
  const base =
    only === undefined
      ? '.'
      : (await stat(only).then(
            (s) => s.isDirectory(),
            () => false,
          ))
        ? only
        : dirname(only);
  const materials = await readMaterials(base, merged.objects);
  const origin = new Map<string, string>();
  for (const o of merged.objects) {
    const where = originOf(o);
    if (where !== undefined) origin.set(objectId(o), `${where.file}: document ${where.document}`);
  }
  const desired = buildDesired(merged.objects, { defaultBridge: flags.bridge, materials });

  for (const issue of issues) process.stdout.write(`${describeIssue(issue)}\n`);
  for (const p of desired.problems) {
    const id = `${p.kind}/${p.namespace}/${p.name}`;
    process.stdout.write(`${origin.get(id) ?? '?'}: ${p.kind} ${p.namespace}/${p.name}${p.path === undefined ? '' : ` ${p.path}`}: ${p.message}\n`);
  }
  const errors = issues.length + desired.problems.length;
  const count = merged.objects.length;
  process.stderr.write(errors === 0 ? `${count} objects valid in ${files.size} files\n` : `${errors} errors\n`);
  return errors === 0 ? 0 : 1;
}
