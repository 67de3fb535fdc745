import { it } from 'vitest';
import { parseDocuments } from '../../src/sources/parse.js';
import { buildDesired } from '../../src/desired/build.js';
import { lb, listener, pool, member } from '../unit/fixtures/objects.js';

const t = (name: string, content: string, file = 'h.yaml') => {
  const t0 = performance.now();
  let r;
  try { r = parseDocuments(file, content); } catch (e) { console.log(name, 'THREW', (e as Error).message.slice(0, 200)); return; }
  console.log(name, Math.round(performance.now() - t0) + 'ms', r.objects.length, JSON.stringify(r.issues.slice(0, 3)).slice(0, 400), r.issues.length);
};
it('scratch', () => {
  t('bom-start', '\uFEFFapiVersion: nslb.dev/v1alpha1\nkind: Pool\n');
  t('bom-second-doc', 'a: 1\n---\n\uFEFFkind: Pool\n');
  t('double-bom', '\uFEFF\uFEFFkind: Pool\n');
  t('nul', 'kind: Pool\x00\n');
  t('recursive', 'kind: &a [*a]\n');
  t('recursive-map', '&a {kind: *a}\n');
  t('deep-flow', '['.repeat(100000) + ']'.repeat(100000));
  t('deep-block', Array.from({ length: 3000 }, (_, i) => ' '.repeat(i) + 'a:').join('\n'));
  t('deep-json', '['.repeat(1000000) + ']'.repeat(1000000), 'h.json');
  t('many-keys', 'apiVersion: nslb.dev/v1alpha1\nkind: Pool\nmetadata: {name: x}\nspec:\n' + Array.from({ length: 50000 }, (_, i) => `  k${i}: 1`).join('\n'));
  t('dup-key', 'kind: Pool\nkind: Pool\n');
  t('merge', 'a: &a {x: 1}\nb: {<<: *a}\n');
  t('tag', 'kind: !!js/function "x"\n');
  t('binary', 'kind: !!binary aGVsbG8=\n');
  t('inf', 'a: .inf\n');
  t('yaml-directive', '%YAML 2.0\n---\nkind: Pool\n');
  t('tabs', 'kind:\n\t- a\n');
  const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++) { const p = String.fromCharCode(96 + i), c = String.fromCharCode(97 + i); laughs.push(`${c}: &${c} [${Array(9).fill('*' + p).join(',')}]`); }
  t('laughs', laughs.join('\n'));
  t('markers', '---\n'.repeat(200000));
  t('empty-docs-dots', '...\n'.repeat(100000));
  t('docs-999', Array(999).fill('kind: Nope').join('\n---\n'));
  t('big-string-alias', `a: &a "${'x'.repeat(1_000_000)}"\nb: [${Array(100).fill('*a').join(',')}]\n`);
  t('utf16', Buffer.from('\uFEFFkind: Pool\n', 'utf16le').toString('utf8'));
  t('anchors-many', Array.from({ length: 100000 }, (_, i) => `k${i}: &a${i} 1`).join('\n'));
});
it('leak', () => {
  const objs = [
    lb('good', { address: '192.0.2.1' }), listener('l', { loadBalancer: 'good', defaultPool: 'p' }), pool('p', { loadBalancer: 'good', sessionPersistence: { type: 'HTTP_COOKIE' } }),
    lb('victim', { address: '192.0.2.2' }), listener('v', { loadBalancer: 'victim', protocol: 'TCP', defaultPool: 'p' }),
  ];
  const d = buildDesired(objs, { defaultBridge: 'br-int' });
  console.log([...d.lbs.keys()], JSON.stringify(d.problems));
});
