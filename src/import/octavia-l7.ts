// Octavia L7 policies and rules → L7Policy, L7Rule. Rules are built with their policy, and a policy is imported only
// with all its rules: rules are ANDed, so dropping one would widen the policy.
import { API_VERSION } from '../api/v1alpha1/types.js';
import { formatIssue, validateObject } from '../api/v1alpha1/validate.js';
import type { Rec } from './octavia-read.js';
import { SHOW, type ImportContext } from './octavia-context.js';

const RULE_TYPES = ['HOST_NAME', 'PATH', 'FILE_TYPE', 'HEADER', 'COOKIE'];

export function importL7Policy(cx: ImportContext, r: Rec): void {
  if (cx.partial(r)) return;
  const used = new Set(['action', 'redirect_pool_id', 'redirect_url', 'redirect_prefix', 'redirect_http_code', 'position']);
  const listener = cx.emittedParent(r, 'listener', cx.parent(r, 'listener', ['listener_id'], 'l7policies'), 'listener_id');
  if (listener === undefined) return;
  // Rules are ANDed: dropping one would widen the policy (a REJECT without rules rejects everything).
  const rules = cx.recsOf('l7rule').filter((rule) => cx.parent(rule, 'l7policy', ['l7policy_id'], 'rules') === r.id);
  for (const rule of rules) {
    const problem = ruleProblem(cx, rule);
    if (problem !== undefined)
      return void cx.skip(
        r,
        `its rule ${cx.label(rule)} cannot be imported (${problem}), and a policy without one of its rules would match more than it does in Octavia`,
      );
  }
  const action = cx.string(r, 'action');
  const spec: Record<string, unknown> = { listener, action };
  if (action === 'REDIRECT_TO_POOL') {
    const poolId = cx.string(r, 'redirect_pool_id');
    const pool = poolId === undefined ? undefined : cx.emitted.get(`pool:${poolId}`);
    if (pool === undefined) return void cx.skip(r, `its redirect pool ${poolId ?? '(none)'} was not imported`);
    spec['redirectPool'] = pool;
  }
  const url = cx.string(r, 'redirect_url');
  if (url !== undefined && action === 'REDIRECT_TO_URL') spec['redirectUrl'] = url;
  const prefix = cx.string(r, 'redirect_prefix');
  if (prefix !== undefined && action === 'REDIRECT_PREFIX') spec['redirectPrefix'] = prefix;
  const code = cx.number(r, 'redirect_http_code');
  if (code !== undefined && code !== 302 && (action === 'REDIRECT_TO_URL' || action === 'REDIRECT_PREFIX')) spec['redirectHttpCode'] = code;
  const position = cx.number(r, 'position');
  if (position !== undefined) spec['position'] = position;
  cx.common(r, spec, used);
  cx.leftovers(r, used);
  if (cx.emit(r, { kind: 'L7Policy', metadata: cx.meta(r), spec }) === undefined) return;
  for (const rule of rules) importL7Rule(cx, rule, cx.emitted.get(`l7policy:${r.id}`)!);
}

function ruleProblem(cx: ImportContext, r: Rec): string | undefined {
  if (r.partial) return `only the status tree names it: pass \`${SHOW.l7rule} ${r.id} -f json\``;
  const type = cx.string(r, 'type');
  if (type === undefined || !RULE_TYPES.includes(type)) return `type ${JSON.stringify(type ?? null)} is not supported (${RULE_TYPES.join(', ')})`;
  const result = validateObject({ apiVersion: API_VERSION, kind: 'L7Rule', metadata: { name: 'x' }, spec: ruleSpec(cx, r, 'x') });
  return result.ok ? undefined : result.issues.map(formatIssue).join('; ');
}

function ruleSpec(cx: ImportContext, r: Rec, policy: string): Record<string, unknown> {
  const spec: Record<string, unknown> = { l7Policy: policy, type: r.raw['type'], compareType: r.raw['compare_type'], value: r.raw['value'] };
  const key = cx.string(r, 'key');
  if (key !== undefined) spec['key'] = key;
  if (r.raw['invert'] === true) spec['invert'] = true;
  if (r.raw['admin_state_up'] === false) spec['adminStateUp'] = false;
  return spec;
}

function importL7Rule(cx: ImportContext, r: Rec, policy: string): void {
  cx.leftovers(r, new Set(['type', 'compare_type', 'value', 'key', 'invert', 'admin_state_up']));
  cx.emit(r, { kind: 'L7Rule', metadata: cx.meta(r), spec: ruleSpec(cx, r, policy) });
}

/** Rules are built with their policy: those left over had no policy, or one that was not imported. */
export function importLeftoverRules(cx: ImportContext): void {
  for (const r of cx.recsOf('l7rule')) {
    if (cx.emitted.has(`l7rule:${r.id}`) || cx.warnings.some((w) => w.startsWith(`${cx.label(r)}: skipped`))) continue;
    const id = cx.parent(r, 'l7policy', ['l7policy_id'], 'rules');
    const policy = cx.rec('l7policy', id);
    cx.skip(r, policy === undefined ? `its l7policy ${id ?? '(not named in the input)'} is not in the input` : `its ${cx.label(policy)} was not imported`);
  }
}
