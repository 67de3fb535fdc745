import { readFileSync } from 'node:fs';
import { dump } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { KINDS } from '../../src/api/v1alpha1/types.js';
import { PARSE_LIMITS, describeIssue, documentAtLine, originOf, parseDocuments } from '../../src/sources/parse.js';
import { lb, listener, member, raw } from './fixtures/objects.js';

const yaml = (...docs: unknown[]) => docs.map((d) => dump(d)).join('---\n');

describe('parseDocuments', () => {
  it('reads every document of a multi-document file', () => {
    const { objects, issues } = parseDocuments('a.yaml', yaml(lb('web'), listener('http'), member('m1')));
    expect(issues).toEqual([]);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(['LoadBalancer/web', 'Listener/http', 'Member/m1']);
  });

  it('reads the every-field example', () => {
    const content = readFileSync(new URL('./fixtures/every-field.yaml', import.meta.url), 'utf8');
    const { objects, issues } = parseDocuments('every-field.yaml', content);
    expect(issues).toEqual([]);
    expect(objects.map((o) => o.kind)).toEqual([...KINDS]);
  });

  it('skips empty documents but keeps counting them', () => {
    const content = `---\n${dump(lb('web'))}---\n---\n# nothing\n---\n${dump(raw({ ...member('m1'), spec: { pool: 'app', address: 'nope', port: 80 } }))}---\n`;
    const { objects, issues } = parseDocuments('a.yaml', content);
    expect(objects).toHaveLength(1);
    expect(issues).toEqual([
      {
        file: 'a.yaml',
        document: 4,
        path: '/spec/address',
        message: 'must be an IPv4 or IPv6 address (got "nope")',
        label: 'Member m1',
      },
    ]);
    expect(describeIssue(issues[0]!)).toBe('a.yaml: document 4 (Member m1): /spec/address: must be an IPv4 or IPv6 address (got "nope")');
  });

  it('treats an empty file as no objects', () => {
    expect(parseDocuments('a.yaml', '')).toEqual({ objects: [], issues: [] });
    expect(parseDocuments('a.yaml', '# only a comment\n')).toEqual({ objects: [], issues: [] });
  });

  it('records where each object came from', () => {
    const { objects } = parseDocuments('dir/a.yaml', `---\n---\n${yaml(lb('web'))}`);
    expect(originOf(objects[0]!)).toEqual({ file: 'dir/a.yaml', document: 2 });
  });

  it('keeps YAML 1.1 surprises out: yes is a string, no timestamps', () => {
    const { issues } = parseDocuments('a.yaml', `${dump(lb('web')).replace('name: web', 'name: web\n  uid: 2001-01-01')}status:\n  at: 2001-01-01\n`);
    expect(issues).toEqual([]);
    const bad = parseDocuments('a.yaml', `${dump(lb('web'))}`.replace('spec:\n', 'spec:\n  adminStateUp: yes\n'));
    expect(bad.issues.map(describeIssue)).toEqual(['a.yaml: document 1 (LoadBalancer web): /spec/adminStateUp: must be a boolean (got "yes")']);
  });

  it('labels a document with what can be read of it', () => {
    const { issues } = parseDocuments('a.yaml', `kind: Pool\nmetadata: {name: "x y"}\n---\n- 1\n---\n${dump(lb('web')).replace('spec:', 'spec:\n  x: 1')}`);
    const described = issues.map(describeIssue);
    expect(described.filter((d) => d.startsWith('a.yaml: document 1 (Pool): '))).toHaveLength(3);
    expect(described.filter((d) => !d.startsWith('a.yaml: document 1 '))).toEqual([
      'a.yaml: document 2: must be an object with apiVersion, kind, metadata and spec (got an array)',
      'a.yaml: document 3 (LoadBalancer web): /spec: unknown field "x" (allowed: vip, additionalVips, topology, placement, memberNetworks, vrrp, adminStateUp, description)',
    ]);
  });
});

describe('YAML syntax errors', () => {
  it('name the document, line and column', () => {
    const content = `${dump(lb('web'))}---\n${dump(listener('http'))}---\nkind: Pool\nspec: [\n`;
    const { objects, issues } = parseDocuments('a.yaml', content);
    expect(objects).toEqual([]);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: 'a.yaml', document: 3, path: '' });
    expect(issues[0]!.message).toMatch(/^YAML syntax error at line \d+, column \d+: unexpected end of the stream/);
  });

  it('count documents the way loadAll does', () => {
    const content = ['%YAML 1.2', '---', 'a: 1', '...', '# between', 'b: 1', '--- c', '---', '  d: 1'].join('\n');
    expect([1, 2, 5, 6, 7, 8].map((line) => documentAtLine(content, line))).toEqual([1, 1, 2, 3, 4, 4]);
    expect(documentAtLine('a: 1\n---\nb: [', 2)).toBe(2);
    expect(documentAtLine('# c\n\n  x', 2)).toBe(1);
  });

  it('reports duplicate keys', () => {
    const { issues } = parseDocuments('a.yaml', 'kind: Pool\nkind: Member\n');
    expect(issues[0]?.message).toBe('YAML syntax error at line 2, column 1: duplicated mapping key');
  });
});

describe('JSON files', () => {
  it('hold one object', () => {
    const { objects, issues } = parseDocuments('lb.json', JSON.stringify(lb('web')));
    expect(issues).toEqual([]);
    expect(objects).toHaveLength(1);
  });

  it('or an array of them, numbered as documents', () => {
    const { objects, issues } = parseDocuments('lb.JSON', JSON.stringify([lb('web'), { ...listener('l'), kind: 'Nope' }]));
    expect(objects).toHaveLength(1);
    expect(issues.map((i) => i.document)).toEqual([2]);
  });

  it('report syntax errors for the whole file', () => {
    const { issues } = parseDocuments('lb.json', '{"kind": ');
    expect(issues).toEqual([{ file: 'lb.json', document: 0, path: '', message: expect.stringMatching(/^JSON syntax error: /) }]);
    expect(describeIssue(issues[0]!)).toMatch(/^lb\.json: JSON syntax error: /);
  });

  it('may start with a byte order mark', () => {
    expect(parseDocuments('lb.json', `\uFEFF${JSON.stringify(lb('web'))}`).issues).toEqual([]);
  });
});

describe('hostile input', () => {
  it('rejects a file over 4 MiB without parsing it', () => {
    const content = `# ${'x'.repeat(PARSE_LIMITS.maxFileBytes)}\n`;
    const { issues } = parseDocuments('big.yaml', content);
    expect(issues).toEqual([{ file: 'big.yaml', document: 0, path: '', message: `file is too large (${content.length} bytes; the limit is 4194304)` }]);
  });

  it('counts bytes, not characters', () => {
    const content = `# ${'é'.repeat(PARSE_LIMITS.maxFileBytes / 2)}\n`;
    expect(parseDocuments('big.yaml', content).issues[0]?.message).toMatch(/^file is too large/);
  });

  it('rejects more than 1000 documents', () => {
    const content = '---\n'.repeat(1001);
    expect(parseDocuments('many.yaml', content).issues.map(describeIssue)).toEqual(['many.yaml: too many documents (at least 1001; the limit is 1000)']);
    // A file of nothing but separators stops at the limit with one issue (the test's timeout catches a hang;
    // speed itself is not asserted in tests).
    expect(parseDocuments('many.yaml', '---\n'.repeat(PARSE_LIMITS.maxFileBytes / 4)).issues).toHaveLength(1);
    expect(parseDocuments('many.json', JSON.stringify(new Array(1001).fill(null))).issues.map(describeIssue)).toEqual([
      'many.json: too many documents (at least 1001; the limit is 1000)',
    ]);
    expect(parseDocuments('ok.yaml', '---\n'.repeat(1000)).issues).toEqual([]);
  });

  it('rejects an alias bomb quickly', () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      levels.push(`${cur}: &${cur} [${new Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const content = `kind: LoadBalancer\n${levels.join('\n')}\n`;
    const { objects, issues } = parseDocuments('bomb.yaml', content);
    expect(objects).toEqual([]);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ document: 1, path: '' });
    expect(issues[0]!.message).toMatch(/too large once YAML aliases are expanded .*alias bomb/);
  });

  it('accepts ordinary use of anchors', () => {
    const content = `${dump(lb('web'))}---\n${dump(member('m1')).replace('port: 8080', 'port: &p 8080\n  monitorPort: *p')}`;
    const { objects, issues } = parseDocuments('a.yaml', content);
    expect(issues).toEqual([]);
    expect(objects[1]).toMatchObject({ spec: { port: 8080, monitorPort: 8080 } });
  });

  it('rejects deep nesting', () => {
    const content = `kind: Pool\nspec: ${'['.repeat(70)}${']'.repeat(70)}\n`;
    expect(parseDocuments('deep.yaml', content).issues[0]?.message).toBe('nested more than 64 levels deep');
    const absurd = `kind: Pool\nspec: ${'['.repeat(1_000_000)}\n`;
    expect(parseDocuments('deep.yaml', absurd).issues).toHaveLength(1);
  });

  it('rejects a self-referencing alias', () => {
    const { issues } = parseDocuments('cycle.yaml', 'kind: Pool\nspec: &a [*a]\n');
    expect(issues).toHaveLength(1);
  });
});
