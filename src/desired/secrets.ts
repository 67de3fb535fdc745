// Kubernetes Secrets as TLS material. The engine takes TLS material as one map of contents keyed by how the
// spec names them (file mode: the path as written); Kubernetes mode adds each Secret a Listener or Pool names
// under the keys below, so desired/tls.ts resolves `secretName` the way it resolves `certificateFile`, and
// nothing between the source and the renderer needs to know where bytes came from.
//
// Pure. Key material is only ever a map value: messages name the Secret and the key, never the content.

/** Present in the materials when Secrets can be read (Kubernetes mode); absent, `secretName` is refused. */
export const SECRETS_READABLE = 'k8s-secrets:readable';

/** The Secret types read, and the data keys they hold (DESIGN §7). */
export const SECRET_TYPES: readonly string[] = ['kubernetes.io/tls', 'Opaque'];
export const SECRET_KEYS = ['tls.crt', 'tls.key', 'ca.crt'] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

/** Materials key whose value is the Secret's `type`: present when the Secret exists. */
export function secretTypeKey(namespace: string, name: string): string {
  return `k8s-secret:${namespace}/${name}`;
}

/** Materials key whose value says why the Secret cannot be read (no RBAC in its namespace). */
export function secretReadErrorKey(namespace: string, name: string): string {
  return `k8s-secret-error:${namespace}/${name}`;
}

/** Materials key whose value is one data key of the Secret, decoded (UTF-8 PEM). */
export function secretDataKey(namespace: string, name: string, key: SecretKey): string {
  return `k8s-secret:${namespace}/${name}#${key}`;
}

export interface SecretObject {
  namespace: string;
  name: string;
  type: string;
  /** As the API serves it: base64. */
  data: Readonly<Record<string, string>>;
}

/** A Secret's entries for the materials map: its type, and the data keys nslb reads (others are dropped). */
export function secretMaterials(s: SecretObject): [string, string][] {
  const out: [string, string][] = [[secretTypeKey(s.namespace, s.name), s.type]];
  for (const key of SECRET_KEYS) {
    const b64 = s.data[key];
    if (typeof b64 === 'string') out.push([secretDataKey(s.namespace, s.name, key), Buffer.from(b64, 'base64').toString('utf8')]);
  }
  return out;
}

/** Where a piece of TLS material comes from, and how messages name it. */
export interface MaterialSource {
  /** Key into the materials map. */
  key: string;
  /** The spec field, for messages: `tls.certificateFile`, `tls.secretName`. */
  field: string;
  /** JSON pointer of that field. */
  path: string;
  /** `file "certs/www.pem"`, `Secret "web-tls" key tls.crt`. */
  what: string;
  /** How "the certificate in …" names it: `"certs/www.pem"`, `Secret "web-tls" key tls.crt`. */
  in: string;
  secret: boolean;
}

export function fileSource(file: string, field: string, path: string): MaterialSource {
  return { key: file, field, path, what: `file "${file}"`, in: `"${file}"`, secret: false };
}

export type SecretLookup =
  | { ok: true; source: (key: SecretKey) => MaterialSource }
  | { ok: false; reason: 'InvalidReference' | 'InvalidSpec'; message: string };

/** The Secret `name` of `namespace` as a source of its keys, or why it cannot be one. */
export function lookupSecret(materials: ReadonlyMap<string, string>, namespace: string, name: string, field: string, path: string): SecretLookup {
  const error = materials.get(secretReadErrorKey(namespace, name));
  if (error !== undefined) return { ok: false, reason: 'InvalidReference', message: `${field}: Secret "${name}": ${error}` };
  const type = materials.get(secretTypeKey(namespace, name));
  if (type === undefined) {
    return { ok: false, reason: 'InvalidReference', message: `${field}: Secret "${name}" not found in namespace "${namespace}"` };
  }
  if (!SECRET_TYPES.includes(type)) {
    return { ok: false, reason: 'InvalidSpec', message: `${field}: Secret "${name}" is of type ${type}; nslb reads ${SECRET_TYPES.join(' and ')} Secrets` };
  }
  return {
    ok: true,
    source: (key) => ({
      key: secretDataKey(namespace, name, key),
      field,
      path,
      what: `Secret "${name}" key ${key}`,
      in: `Secret "${name}" key ${key}`,
      secret: true,
    }),
  };
}

/** Every Secret a set of objects names, as `namespace/name` (what Kubernetes mode must read). */
export function referencedSecrets(objects: readonly { kind: string; metadata: { namespace: string }; spec: unknown }[]): Set<string> {
  const names = new Set<string>();
  const add = (namespace: string, name: unknown): void => {
    if (typeof name === 'string' && name !== '') names.add(`${namespace}/${name}`);
  };
  for (const o of objects) {
    const tls = (o.spec as { tls?: Record<string, unknown> } | undefined)?.tls;
    if (tls === undefined || tls === null || typeof tls !== 'object') continue;
    const ns = o.metadata.namespace;
    if (o.kind === 'Listener') {
      add(ns, tls.secretName);
      for (const n of Array.isArray(tls.sniSecretNames) ? tls.sniSecretNames : []) add(ns, n);
      for (const ref of Array.isArray(tls.sniCertificates) ? tls.sniCertificates : []) add(ns, (ref as { secretName?: unknown }).secretName);
    } else if (o.kind === 'Pool') {
      add(ns, tls.secretName);
      add(ns, tls.caSecretName);
    }
  }
  return names;
}

/**
 * What a watched Secret is now, after a change (and once when first listed). `rotated`: its certificate or
 * key changed while it existed (a renewal). Names only: never data.
 */
export interface SecretChange {
  namespace: string;
  name: string;
  state: 'present' | 'missing' | 'unreadable';
  rotated: boolean;
  /** Why it is unreadable. */
  message?: string;
}
