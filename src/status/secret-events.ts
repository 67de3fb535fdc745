// Kubernetes Events about the Secrets that Listeners and Pools name: missing, unreadable, broken, rotated.
// Pure: a change of one Secret + the objects and materials now → the Events, on each object naming it (the
// object whose status says ERROR is the one a user looks at). Messages name the Secret and its keys, never
// their content. cli/kubernetes-mode.ts sends them through the Event recorder.
import type { AnyObject } from '../api/v1alpha1/types.js';
import { resolveListenerTls, resolvePoolTls } from '../desired/tls.js';
import type { SecretChange } from '../desired/secrets.js';

export interface SecretEvent {
  kind: 'Listener' | 'Pool';
  namespace: string;
  name: string;
  type: 'Normal' | 'Warning';
  reason: 'SecretMissing' | 'SecretUnreadable' | 'SecretInvalid' | 'SecretRotated';
  message: string;
}

type Use = 'pair' | 'ca';

/** How each object of the namespace uses the Secret `name`: as a certificate and key, or as a CA bundle. */
function usesOf(objects: readonly AnyObject[], namespace: string, name: string): { kind: 'Listener' | 'Pool'; name: string; use: Use }[] {
  const out: { kind: 'Listener' | 'Pool'; name: string; use: Use }[] = [];
  for (const o of objects) {
    if (o.metadata.namespace !== namespace) continue;
    if (o.kind === 'Listener') {
      const tls = o.spec.tls;
      const names = [tls?.secretName, ...(tls?.sniSecretNames ?? []), ...(tls?.sniCertificates ?? []).map((r) => r.secretName)];
      if (names.includes(name)) out.push({ kind: 'Listener', name: o.metadata.name, use: 'pair' });
    } else if (o.kind === 'Pool') {
      if (o.spec.tls?.secretName === name) out.push({ kind: 'Pool', name: o.metadata.name, use: 'pair' });
      if (o.spec.tls?.caSecretName === name) out.push({ kind: 'Pool', name: o.metadata.name, use: 'ca' });
    }
  }
  return out;
}

/** What is wrong with the Secret for this use, in the same words the object's status uses; none: []. */
function problemsOf(use: Use, namespace: string, name: string, materials: ReadonlyMap<string, string>, now: Date): string[] {
  const result =
    use === 'pair'
      ? resolveListenerTls({ secretName: name }, materials, now, namespace)
      : resolvePoolTls({ enabled: true, caSecretName: name }, 'HTTP', materials, now, namespace);
  return result.ok ? [] : result.problems.map((p) => p.message);
}

export function secretEvents(change: SecretChange, objects: readonly AnyObject[], materials: ReadonlyMap<string, string>, now = new Date()): SecretEvent[] {
  const { namespace, name } = change;
  const events: SecretEvent[] = [];
  const seen = new Set<string>();
  for (const u of usesOf(objects, namespace, name)) {
    const id = `${u.kind}/${u.name}/${u.use}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const at = { kind: u.kind, namespace, name: u.name } as const;
    const keeps = 'the load balancer keeps serving what was applied last';
    if (change.state === 'missing') {
      events.push({ ...at, type: 'Warning', reason: 'SecretMissing', message: `Secret "${name}" not found in namespace "${namespace}"; ${keeps}` });
    } else if (change.state === 'unreadable') {
      events.push({ ...at, type: 'Warning', reason: 'SecretUnreadable', message: `Secret "${name}": ${change.message ?? 'cannot be read'}; ${keeps}` });
    } else {
      const problems = problemsOf(u.use, namespace, name, materials, now);
      if (problems.length > 0) {
        events.push({ ...at, type: 'Warning', reason: 'SecretInvalid', message: `${problems.join('; ')}; ${keeps}` });
      } else if (change.rotated) {
        events.push({
          ...at,
          type: 'Normal',
          reason: 'SecretRotated',
          message: `Secret "${name}" changed; applying its new ${u.use === 'ca' ? 'CA bundle' : 'certificate'} with a hitless reload`,
        });
      }
    }
  }
  return events;
}
