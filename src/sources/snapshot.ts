// Many files → one set of objects. Which copy of a duplicated object wins must not depend on the order
// files were read or changed in, or the reconciler would flap between them: the lexicographically first
// file wins, always.
import { KINDS, objectId, type AnyObject } from '../api/v1alpha1/types.js';
import { originOf, type FileIssue } from './parse.js';

export interface MergeResult {
  /** Sorted by kind (in KINDS order), namespace, name. */
  objects: AnyObject[];
  issues: FileIssue[];
}

export function mergeFiles(files: ReadonlyMap<string, AnyObject[]>): MergeResult {
  const winners = new Map<string, { file: string; object: AnyObject }>();
  const issues: FileIssue[] = [];
  for (const file of [...files.keys()].sort(compareStrings)) {
    for (const object of files.get(file) ?? []) {
      const id = objectId(object);
      const first = winners.get(id);
      if (first === undefined) {
        winners.set(id, { file, object });
      } else {
        issues.push(duplicateIssue(file, object, first));
      }
    }
  }
  const objects = [...winners.values()].map((w) => w.object).sort(compareObjects);
  return { objects, issues };
}

function duplicateIssue(file: string, object: AnyObject, first: { file: string; object: AnyObject }): FileIssue {
  const { kind, metadata } = object;
  const firstDocument = originOf(first.object)?.document;
  const where = firstDocument === undefined ? first.file : `${first.file} document ${firstDocument}`;
  return {
    file,
    document: originOf(object)?.document ?? 0,
    path: '/metadata/name',
    message: `duplicate ${kind} ${metadata.namespace}/${metadata.name}: already defined in ${where}, which is used; this copy is ignored`,
    label: `${kind} ${metadata.name}`,
  };
}

/** Code-unit order: the same on every machine and locale, unlike localeCompare. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Kind (in KINDS order), then namespace, then name. */
export function compareObjects(a: AnyObject, b: AnyObject): number {
  return (
    KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind) ||
    compareStrings(a.metadata.namespace, b.metadata.namespace) ||
    compareStrings(a.metadata.name, b.metadata.name)
  );
}
