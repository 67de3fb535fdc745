// One manifest file → validated objects plus issues that point at file, document and field.
// Input is untrusted (a GitOps checkout anyone with push access writes), so size, document count, nesting
// and YAML alias expansion are all bounded before anything walks the loaded data.
import { CORE_SCHEMA, YAMLException, loadAll } from 'js-yaml';
import type { AnyObject } from '../api/v1alpha1/types.js';
import { validateObject } from '../api/v1alpha1/validate.js';

export interface FileIssue {
  file: string;
  /** 1-based document number within the file; 0 when the issue concerns the whole file. */
  document: number;
  /** JSON pointer into the document; '' for the document (or file) itself. */
  path: string;
  message: string;
  /** `Kind name` of the document when it could be read, e.g. `Member web-1`. */
  label?: string;
}

export const PARSE_LIMITS = {
  maxFileBytes: 4 * 1024 * 1024,
  maxDocuments: 1000,
  /**
   * js-yaml 4 shares aliased nodes instead of copying them, so `*alias` costs nothing to load but a
   * "billion laughs" file explodes in whatever walks it next (validation, JSON, status). This bounds the
   * size of the data as if every alias were expanded, summed over the file.
   */
  maxExpandedChars: 16 * 1024 * 1024,
  maxDepth: 64,
} as const;

export interface ParseResult {
  objects: AnyObject[];
  issues: FileIssue[];
}

/** Where each object returned by parseDocuments came from (for messages about objects, e.g. duplicates). */
const origins = new WeakMap<AnyObject, { file: string; document: number }>();

export function originOf(o: AnyObject): { file: string; document: number } | undefined {
  return origins.get(o);
}

export function parseDocuments(file: string, content: string): ParseResult {
  const fileIssue = (message: string, document = 0): ParseResult => ({
    objects: [],
    issues: [{ file, document, path: '', message }],
  });

  const bytes = Buffer.byteLength(content, 'utf8');
  if (bytes > PARSE_LIMITS.maxFileBytes) {
    return fileIssue(`file is too large (${bytes} bytes; the limit is ${PARSE_LIMITS.maxFileBytes})`);
  }

  // Loading a million empty documents takes seconds; counting their markers first does not.
  const markers = content.match(/^---(?:\s|$)/gm)?.length ?? 0;
  if (markers > PARSE_LIMITS.maxDocuments) return fileIssue(tooManyDocuments(markers));

  const loaded = isJsonFile(file) ? loadJson(content) : loadYaml(content);
  if (!loaded.ok) return fileIssue(loaded.message, loaded.document);
  const docs = loaded.documents;
  if (docs.length > PARSE_LIMITS.maxDocuments) {
    return fileIssue(tooManyDocuments(docs.length));
  }

  const oversized = checkExpandedSize(docs);
  if (oversized !== undefined) return fileIssue(oversized.message, oversized.document);

  const objects: AnyObject[] = [];
  const issues: FileIssue[] = [];
  docs.forEach((doc, i) => {
    // An empty document (a stray or trailing `---`) is not an object and not an error.
    if (doc === null || doc === undefined) return;
    const document = i + 1;
    const result = validateObject(doc);
    if (result.ok) {
      origins.set(result.object, { file, document });
      objects.push(result.object);
      return;
    }
    const label = documentLabel(doc);
    for (const issue of result.issues) {
      issues.push({ file, document, ...issue, ...(label === undefined ? {} : { label }) });
    }
  });
  return { objects, issues };
}

function tooManyDocuments(atLeast: number): string {
  return `too many documents (at least ${atLeast}; the limit is ${PARSE_LIMITS.maxDocuments})`;
}

/** `examples/lb.yaml: document 2 (Member web-1): /spec/address: must be …` */
export function describeIssue(i: FileIssue): string {
  const where = [i.file];
  if (i.document > 0) where.push(`document ${i.document}${i.label === undefined ? '' : ` (${i.label})`}`);
  if (i.path !== '') where.push(i.path);
  return `${where.join(': ')}: ${i.message}`;
}

// ---------------------------------------------------------------------------------------------------------
// Loading.

type Loaded = { ok: true; documents: unknown[] } | { ok: false; message: string; document: number };

function isJsonFile(file: string): boolean {
  return file.toLowerCase().endsWith('.json');
}

/** A JSON file holds one object, or an array of them (each counts as a document). */
function loadJson(content: string): Loaded {
  let value: unknown;
  try {
    value = JSON.parse(content.replace(/^\uFEFF/, ''));
  } catch (err) {
    return { ok: false, message: `JSON syntax error: ${errorMessage(err)}`, document: 0 };
  }
  return { ok: true, documents: Array.isArray(value) ? value : [value] };
}

function loadYaml(content: string): Loaded {
  try {
    // CORE_SCHEMA: plain data only; no timestamps, binary, sets or merge keys turning up as surprises.
    return { ok: true, documents: loadAll(content, null, { schema: CORE_SCHEMA }) };
  } catch (err) {
    if (err instanceof YAMLException) {
      const { line, column } = err.mark;
      return {
        ok: false,
        message: `YAML syntax error at line ${line + 1}, column ${column + 1}: ${err.reason}`,
        document: documentAtLine(content, line),
      };
    }
    // Not a syntax error: e.g. the stack overflowing on absurd nesting, or a self-referencing alias.
    return { ok: false, message: `YAML could not be loaded: ${errorMessage(err)}`, document: 0 };
  }
}

/**
 * The 1-based number of the document that contains a 0-based line, counted the way loadAll counts:
 * `---` starts a document, `...` ends one, and content outside any document starts an implicit one.
 * Markers are recognised at column 0 only, which YAML forbids inside any scalar, so this is exact.
 */
export function documentAtLine(content: string, line: number): number {
  const lines = content.split(/\r?\n/, line + 1);
  let documents = 0;
  let inDocument = false;
  for (const text of lines) {
    if (/^---(\s|$)/.test(text)) {
      documents++;
      inDocument = true;
    } else if (/^\.\.\.(\s|$)/.test(text)) {
      inDocument = false;
    } else if (!inDocument && /^[^\s#%]/.test(text)) {
      documents++;
      inDocument = true;
    }
  }
  return Math.max(documents, 1);
}

/** Walks the loaded data as if aliases were expanded, stopping as soon as a limit is crossed. */
function checkExpandedSize(docs: readonly unknown[]): { message: string; document: number } | undefined {
  let budget = PARSE_LIMITS.maxExpandedChars;
  for (const [i, doc] of docs.entries()) {
    const stack: { value: unknown; depth: number }[] = [{ value: doc, depth: 0 }];
    while (stack.length > 0) {
      const { value, depth } = stack.pop()!;
      if (depth > PARSE_LIMITS.maxDepth) {
        return { message: `nested more than ${PARSE_LIMITS.maxDepth} levels deep`, document: i + 1 };
      }
      budget -= sizeOf(value);
      if (budget < 0) {
        return {
          message: `too large once YAML aliases are expanded (over ${PARSE_LIMITS.maxExpandedChars} characters): an alias bomb?`,
          document: i + 1,
        };
      }
      if (typeof value === 'object' && value !== null) {
        for (const child of Object.values(value)) stack.push({ value: child, depth: depth + 1 });
      }
    }
  }
  return undefined;
}

/** Roughly the characters a value adds to its JSON form, not counting its children. */
function sizeOf(value: unknown): number {
  if (typeof value === 'string') return value.length + 3;
  if (Array.isArray(value)) return 2 + value.length;
  if (typeof value === 'object' && value !== null) {
    return Object.keys(value).reduce((n, k) => n + k.length + 4, 2);
  }
  return 8;
}

// ---------------------------------------------------------------------------------------------------------

function documentLabel(doc: unknown): string | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const { kind, metadata } = doc as { kind?: unknown; metadata?: { name?: unknown } };
  const name = typeof metadata === 'object' && metadata !== null ? metadata.name : undefined;
  // Only plain words make it into a label; anything else would garble a one-line message.
  const word = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9._-]{1,253}$/.test(v);
  const parts = [kind, name].filter(word);
  return parts.length > 0 ? parts.join(' ') : undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
