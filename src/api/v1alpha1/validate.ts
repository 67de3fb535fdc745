// Validation of one decoded document against its kind's schema, with messages written for the person who
// wrote the YAML: a JSON pointer to the field, what it must be, and what it was.
import { isIPv4, isIPv6 } from 'node:net';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { FORMATS, KUBERNETES_KEYWORDS, PATTERNS, type JsonSchema } from './schema-vocabulary.js';
import { schemaFor } from './schemas.js';
import { KINDS, type AnyObject, type Kind } from './types.js';

export interface ValidationIssue {
  /** JSON pointer into the document, e.g. `/spec/vip/address`; `''` is the document itself. */
  path: string;
  /** Says what is wrong without repeating the path, e.g. `must be an IPv4 or IPv6 address (got "10.0.0.300")`. */
  message: string;
}

export type ValidationResult = { ok: true; object: AnyObject } | { ok: false; issues: ValidationIssue[] };

export const DEFAULT_NAMESPACE = 'default';

/** `path: message`, or just the message for the document itself. */
export function formatIssue(i: ValidationIssue): string {
  return i.path === '' ? i.message : `${i.path}: ${i.message}`;
}

export function validateObject(doc: unknown): ValidationResult {
  if (!isPlainObject(doc)) {
    return fail([{ path: '', message: `must be an object with apiVersion, kind, metadata and spec (got ${describeValue(doc)})` }]);
  }
  const kind = doc['kind'];
  if (!isKind(kind)) return fail([kindIssue(kind)]);

  const validate = validatorFor(kind);
  if (!validate(doc)) return fail(toIssues(validate.errors ?? []));

  // The caller's document stays untouched: defaults are filled on a copy.
  const object = structuredClone(doc) as unknown as AnyObject;
  object.metadata.namespace ??= DEFAULT_NAMESPACE;
  return { ok: true, object };
}

function fail(issues: ValidationIssue[]): ValidationResult {
  return { ok: false, issues };
}

function isKind(k: unknown): k is Kind {
  return typeof k === 'string' && (KINDS as readonly string[]).includes(k);
}

function kindIssue(kind: unknown): ValidationIssue {
  const allowed = `(allowed: ${KINDS.join(', ')})`;
  if (kind === undefined) return { path: '/kind', message: `is required ${allowed}` };
  if (typeof kind !== 'string') return { path: '/kind', message: `must be a string ${allowed} (got ${describeValue(kind)})` };
  return { path: '/kind', message: `unknown kind ${quote(kind)} ${allowed}` };
}

// ---------------------------------------------------------------------------------------------------------
// ajv: one instance, one compiled validator per kind, compiled on first use.

const ajv = createAjv();
const validators = new Map<Kind, ValidateFunction>();

function createAjv(): Ajv {
  // useDefaults stays off: validation never mutates its input; src/desired/build.ts applies the defaults.
  // verbose puts the failing value and the parent schema on each error, which the messages need.
  const a = new Ajv({ strict: true, allErrors: true, verbose: true, useDefaults: false });
  for (const keyword of KUBERNETES_KEYWORDS) a.addKeyword(keyword);
  const mac = new RegExp(PATTERNS.mac.pattern);
  const formatChecks: Record<(typeof FORMATS)[number], (s: string) => boolean> = {
    ipv4: isIPv4,
    ipv6: isIPv6,
    cidr: isCidr,
    mac: (s) => mac.test(s),
  };
  for (const name of FORMATS) a.addFormat(name, { type: 'string', validate: formatChecks[name] });
  return a;
}

function validatorFor(kind: Kind): ValidateFunction {
  let v = validators.get(kind);
  if (v === undefined) {
    v = ajv.compile(schemaFor(kind));
    validators.set(kind, v);
  }
  return v;
}

/** `address/prefix` with the prefix in range for the address family. */
export function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const address = s.slice(0, slash);
  const prefix = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefix)) return false;
  const max = isIPv4(address) ? 32 : isIPv6(address) ? 128 : -1;
  return Number(prefix) <= max;
}

// ---------------------------------------------------------------------------------------------------------
// ajv errors → issues.

const PATTERN_DESCRIPTIONS = new Map<string, string>(Object.values(PATTERNS).map((p) => [p.pattern, p.description]));

const FORMAT_DESCRIPTIONS: Record<string, string> = {
  ipv4: 'an IPv4 address',
  ipv6: 'an IPv6 address',
  cidr: PATTERNS.cidr.description,
  mac: PATTERNS.mac.description,
};

function toIssues(errors: readonly ErrorObject[]): ValidationIssue[] {
  // An anyOf error already says what the value must be; the failing branches underneath it are noise. A
  // propertyNames error only says "property name must be valid"; the error under it says how.
  const anyOfPaths = errors.filter((e) => e.keyword === 'anyOf').map((e) => `${e.schemaPath}/`);
  const relevant = errors.filter((e) => e.keyword !== 'propertyNames' && !anyOfPaths.some((p) => e.schemaPath.startsWith(p)));

  const seen = new Set<string>();
  const issues: ValidationIssue[] = [];
  for (const e of relevant) {
    const issue = toIssue(e);
    const key = `${issue.path}\0${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push(issue);
  }
  return issues;
}

function toIssue(e: ErrorObject): ValidationIssue {
  // Map keys (labels, annotations) are the document's own text: the pointer may carry anything.
  const path = visible(e.instancePath);
  const got = `(got ${describeValue(e.data)})`;
  const parent = e.parentSchema as JsonSchema | undefined;
  if (e.propertyName !== undefined) {
    // Under propertyNames: the value at fault is a key of the object at `path`.
    const what = e.keyword === 'pattern' ? PATTERN_DESCRIPTIONS.get(String(e.schema)) : undefined;
    const must = what !== undefined ? `must be ${what}` : e.keyword === 'maxLength' ? describeLength(parent) : (e.message ?? 'is invalid');
    return { path, message: `key ${quote(e.propertyName)} ${must}` };
  }
  switch (e.keyword) {
    case 'required': {
      const field = String((e.params as { missingProperty: string }).missingProperty);
      return { path: `${path}/${escapePointer(field)}`, message: 'is required' };
    }
    case 'additionalProperties': {
      const field = String((e.params as { additionalProperty: string }).additionalProperty);
      const allowed = Object.keys(parent?.properties ?? {}).join(', ');
      return { path, message: `unknown field ${quote(field)} (allowed: ${allowed})` };
    }
    case 'type':
      return { path, message: `must be ${withArticle(String((e.params as { type: string }).type))} ${got}` };
    case 'enum': {
      const values = (parent?.enum ?? []).map((v) => (typeof v === 'string' ? quote(v) : String(v)));
      const must = values.length === 1 ? `must be ${values[0] ?? ''}` : `must be one of ${values.join(', ')}`;
      return { path, message: `${must} ${got}` };
    }
    case 'minimum':
    case 'maximum':
      return { path, message: `${describeRange(parent)} ${got}` };
    case 'minLength':
    case 'maxLength':
      return { path, message: `${describeLength(parent)} ${got}` };
    case 'multipleOf':
      return { path, message: `must be a multiple of ${String(parent?.multipleOf ?? '?')} ${got}` };
    case 'minItems':
    case 'maxItems': {
      const n = Array.isArray(e.data) ? e.data.length : 0;
      const limit = Number((e.params as { limit: number }).limit);
      const must = e.keyword === 'minItems' ? `must have at least ${limit}` : `must have at most ${limit}`;
      return { path, message: `${must} ${limit === 1 ? 'item' : 'items'} (got ${n})` };
    }
    case 'pattern': {
      const what = PATTERN_DESCRIPTIONS.get(String(e.schema)) ?? `a string matching ${String(e.schema)}`;
      return { path, message: `must be ${what} ${got}` };
    }
    case 'format':
      return { path, message: `must be ${FORMAT_DESCRIPTIONS[String(e.schema)] ?? String(e.schema)} ${got}` };
    case 'anyOf':
      return { path, message: `must be ${describeAnyOf(e.schema)} ${got}` };
    default:
      return { path, message: `${e.message ?? 'is invalid'} ${got}` };
  }
}

function describeAnyOf(branches: unknown): string {
  const formats = Array.isArray(branches) ? branches.map((b: { format?: string }) => b.format) : [];
  if (formats.length === 2 && formats.includes('ipv4') && formats.includes('ipv6')) return PATTERNS.ipAddress.description;
  const described = formats.map((f) => (f === undefined ? undefined : FORMAT_DESCRIPTIONS[f]));
  if (described.length > 0 && described.every((d) => d !== undefined)) return described.join(' or ');
  return 'one of the allowed forms';
}

function describeRange(s: JsonSchema | undefined): string {
  const min = s?.minimum;
  const max = s?.maximum;
  if (min !== undefined && max !== undefined) return `must be between ${min} and ${max}`;
  if (min !== undefined) return `must be at least ${min}`;
  return `must be at most ${max ?? '?'}`;
}

function describeLength(s: JsonSchema | undefined): string {
  const min = s?.minLength;
  const max = s?.maxLength;
  if (min !== undefined && max !== undefined) return `must be ${min} to ${max} characters long`;
  if (min !== undefined) return `must be at least ${min} characters long`;
  return `must be at most ${max ?? '?'} characters long`;
}

function withArticle(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

const MAX_SHOWN = 80;

/** A short, single-line rendering of a value for "(got …)". */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  switch (typeof v) {
    case 'string':
      return quote(v);
    case 'number':
    case 'boolean':
      return String(v);
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

/** JSON-quoted, so that newlines and control characters show as escapes; long strings are cut. */
export function quote(s: string): string {
  const shown = s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}…` : s;
  return visible(JSON.stringify(shown));
}

// What JSON.stringify leaves alone but a terminal or log viewer would not show as written: format characters
// (U+FEFF, U+200B, the bidi overrides that reorder a line, U+202E), line and paragraph separators, C1 controls,
// unassigned and private-use code points, and every space but the plain one.
const INVISIBLE = /(?! )[\p{C}\p{Z}]/gu;

/** `s` with every invisible or line-breaking character written as a \u escape: safe for a one-line message. */
export function visible(s: string): string {
  return s.replace(INVISIBLE, (c) => {
    const cp = c.codePointAt(0) ?? 0;
    return cp > 0xffff ? `\\u{${cp.toString(16)}}` : `\\u${cp.toString(16).padStart(4, '0')}`;
  });
}

function escapePointer(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
