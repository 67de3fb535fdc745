// One manifest file → validated objects plus issues that point at file, document and field.
// Input is untrusted (a GitOps checkout anyone with push access writes), so size, document count, nesting
// and YAML alias expansion are all bounded before anything walks the loaded data.
import { isUtf8 } from 'node:buffer';
import { CORE_SCHEMA, YAMLException, loadAll } from 'js-yaml';
import type { AnyObject } from '../api/v1alpha1/types.js';
import { quote, validateObject, visible } from '../api/v1alpha1/validate.js';

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
  /**
   * Issues reported per file. A 4 MiB file of unknown keys is 300 000 issues (60 MB of messages in
   * status.json, rewritten on every change); the first ones say what is wrong just as well.
   */
  maxIssuesPerFile: 100,
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

/**
 * Parses one file. Given bytes (as the file source reads them), the file must be UTF-8: anything else is
 * reported with the line of the first bad byte, never read with replacement characters that would end up in
 * names and descriptions unnoticed (kubectl refuses such files too).
 */
export function parseDocuments(file: string, input: string | Uint8Array): ParseResult {
  const fileIssue = (message: string, document = 0, path = ''): ParseResult => ({
    objects: [],
    issues: [{ file, document, path, message }],
  });

  const bytes = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.byteLength;
  if (bytes > PARSE_LIMITS.maxFileBytes) {
    return fileIssue(`file is too large (${bytes} bytes; the limit is ${PARSE_LIMITS.maxFileBytes})`);
  }
  const decoded = typeof input === 'string' ? { ok: true as const, content: input } : decodeUtf8(input);
  if (!decoded.ok) return fileIssue(decoded.message, decoded.document);
  const { content } = decoded;

  // Loading a million empty documents takes seconds; counting their markers first does not.
  const markers = content.match(/^---(?:\s|$)/gm)?.length ?? 0;
  if (markers > PARSE_LIMITS.maxDocuments) return fileIssue(tooManyDocuments(markers));

  const loaded = isJsonFile(file) ? loadJson(content) : loadYaml(content);
  if (!loaded.ok) return fileIssue(loaded.message, loaded.document, loaded.path);
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
  const max = PARSE_LIMITS.maxIssuesPerFile;
  if (issues.length > max) {
    const more = issues.length - max;
    issues.splice(max, more, { file, document: 0, path: '', message: `${more} more problems in this file are not shown (the first ${max} are)` });
  }
  return { objects, issues };
}

// ---------------------------------------------------------------------------------------------------------
// Decoding.

type Decoded = { ok: true; content: string } | { ok: false; message: string; document: number };

function decodeUtf8(bytes: Uint8Array): Decoded {
  if (isUtf8(bytes)) return { ok: true, content: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8') };
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bom = utf16Or32Bom(bytes);
  if (bom !== undefined) return { ok: false, message: `not UTF-8: the file starts with a ${bom} byte order mark; save it as UTF-8`, document: 0 };
  const at = Math.max(0, firstInvalidUtf8(bytes));
  // Everything before the bad byte is valid UTF-8, so line and column are exact; a bad byte is never a
  // newline, so the lossy decoding of the whole file has the same lines (for the document number).
  const before = buffer.subarray(0, at).toString('utf8');
  const lines = before.split(/\r\n|\r|\n/);
  const line = lines.length;
  const column = (lines.at(-1) ?? '').length + 1;
  const byte = (bytes[at] ?? 0).toString(16).toUpperCase().padStart(2, '0');
  return {
    ok: false,
    message: `not valid UTF-8: byte 0x${byte} at line ${line}, column ${column}; save the file as UTF-8`,
    document: documentAtLine(buffer.toString('utf8'), line - 1),
  };
}

function utf16Or32Bom(b: Uint8Array): string | undefined {
  if (b[0] === 0xff && b[1] === 0xfe) return b[2] === 0 && b[3] === 0 ? 'UTF-32LE' : 'UTF-16LE';
  if (b[0] === 0xfe && b[1] === 0xff) return 'UTF-16BE';
  if (b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff) return 'UTF-32BE';
  return undefined;
}

/** Offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629); -1 if none. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const lead = b[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes after the lead, and the smallest code point that needs that many (no overlongs).
    const [n, min] =
      lead >= 0xc2 && lead <= 0xdf ? [1, 0x80] : lead >= 0xe0 && lead <= 0xef ? [2, 0x800] : lead >= 0xf0 && lead <= 0xf4 ? [3, 0x10000] : [0, 0];
    if (n === 0 || i + n >= b.length) return i;
    let cp = lead & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const c = b[i + k]!;
      if ((c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

function tooManyDocuments(atLeast: number): string {
  return `too many documents (at least ${atLeast}; the limit is ${PARSE_LIMITS.maxDocuments})`;
}

/** `examples/lb.yaml: document 2 (Member web-1): /spec/address: must be …` */
export function describeIssue(i: FileIssue): string {
  // A file name is whatever the checkout holds: a newline or a bidi override in it must not forge a line.
  const where = [visible(i.file)];
  if (i.document > 0) where.push(`document ${i.document}${i.label === undefined ? '' : ` (${i.label})`}`);
  if (i.path !== '') where.push(i.path);
  return `${where.join(': ')}: ${i.message}`;
}

// ---------------------------------------------------------------------------------------------------------
// Loading.

type Loaded = { ok: true; documents: unknown[] } | { ok: false; message: string; document: number; path?: string };

function isJsonFile(file: string): boolean {
  return file.toLowerCase().endsWith('.json');
}

/** A JSON file holds one object, or an array of them (each counts as a document). */
function loadJson(content: string): Loaded {
  const text = content.replace(/^\uFEFF/, '');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // V8 quotes a piece of the file in its message, newlines and all: one line, and not much of it.
    return { ok: false, message: `JSON syntax error: ${visible(errorMessage(err)).slice(0, 200)}`, document: 0 };
  }
  // JSON.parse keeps the last of two equal keys without a word: a reviewer reads `"kind": "LoadBalancer"` at
  // the top while the agent uses the `"kind": "Pool"` further down. YAML refuses duplicate keys; so does this.
  const duplicate = duplicateJsonKey(text, Array.isArray(value));
  if (duplicate !== undefined) {
    const { key, document, path } = duplicate;
    return { ok: false, message: `JSON duplicate key ${quote(key)}: each key may occur once per object`, document, path };
  }
  return { ok: true, documents: Array.isArray(value) ? value : [value] };
}

/**
 * The first key that occurs twice in one JSON object, with the 1-based document (element of a top-level
 * array) and the JSON pointer of that object. Only called on text JSON.parse accepted, so it need not check
 * syntax: it tracks strings, nesting and array positions.
 */
function duplicateJsonKey(text: string, topLevelArray: boolean): { key: string; document: number; path: string } | undefined {
  type Frame = { keys: Set<string>; key: string } | { index: number };
  const stack: Frame[] = [];
  const pointer = (frames: Frame[]): string => frames.map((f) => `/${'index' in f ? f.index : f.key.replaceAll('~', '~0').replaceAll('/', '~1')}`).join('');
  const where = (): { document: number; path: string } => {
    // The frames around the object that has the key twice make its pointer.
    const outer = stack.slice(0, -1);
    if (!topLevelArray) return { document: 1, path: pointer(outer) };
    const top = stack[0];
    return { document: top !== undefined && 'index' in top ? top.index + 1 : 0, path: pointer(outer.slice(1)) };
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const top = stack.at(-1);
      let next = end + 1;
      while (/\s/.test(text[next] ?? '')) next++;
      if (top !== undefined && 'keys' in top && text[next] === ':') {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (top.keys.has(key)) return { key, ...where() };
        top.keys.add(key);
        top.key = key;
      }
      i = end;
    } else if (c === '{') {
      stack.push({ keys: new Set(), key: '' });
    } else if (c === '[') {
      stack.push({ index: 0 });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack.at(-1);
      if (top !== undefined && 'index' in top) top.index++;
    }
  }
  return undefined;
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
        // The reason can quote the file (an unknown tag's name): one line, and not much of it.
        message: `YAML syntax error at line ${line + 1}, column ${column + 1}: ${visible(err.reason).slice(0, 200)}`,
        document: documentAtLine(content, line),
      };
    }
    // Not a syntax error: e.g. the stack overflowing on absurd nesting, or a self-referencing alias.
    return { ok: false, message: `YAML could not be loaded: ${visible(errorMessage(err)).slice(0, 200)}`, document: 0 };
  }
}

/**
 * The 1-based number of the document that contains a 0-based line, counted the way loadAll counts:
 * `---` starts a document, `...` ends one, and content outside any document starts an implicit one.
 * Markers are recognised at column 0 only, which YAML forbids inside any scalar, so this is exact.
 */
export function documentAtLine(content: string, line: number): number {
  // js-yaml counts a lone CR as a line break too (old Mac line endings).
  const lines = content.split(/\r\n|\r|\n/, line + 1);
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
