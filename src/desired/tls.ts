// Pure: a TERMINATED_HTTPS listener's `tls` + the contents of the files or Secrets it names → the PEM bundles
// HAProxy loads. The file source reads the files (keyed by the path as written in the spec), Kubernetes mode
// the Secrets (desired/secrets.ts); this only checks and combines them, so the same answers come from
// `nslb validate`, `nslb plan` and the agent.
//
// Key material never goes into a message: problems name the field and the file, never the content.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { AlpnProtocol, ListenerTls, PoolProtocol, PoolTls, TlsCertificateRef, TlsVersion } from '../api/v1alpha1/types.js';
import { TCP_ONLY_POOLS } from './defaults.js';
import { crlNextUpdate, firstBlock, pemBlocks } from './pem.js';
import type { DesiredCertificate, DesiredListenerTls, DesiredMemberTls, DesiredTlsPolicy } from './model.js';
import { SECRETS_READABLE, fileSource, lookupSecret, type MaterialSource } from './secrets.js';

export interface TlsProblem {
  reason: 'InvalidReference' | 'InvalidSpec' | 'NotSupported';
  message: string;
  /** JSON pointer into the Listener, e.g. `/spec/tls/keyFile`. */
  path: string;
}

export type TlsResult = { ok: true; tls: DesiredListenerTls } | { ok: false; problems: TlsProblem[] };
export type MemberTlsResult = { ok: true; tls: DesiredMemberTls | undefined } | { ok: false; problems: TlsProblem[] };

/** DESIGN §1's defaults for a TERMINATED_HTTPS listener. */
export const LISTENER_TLS_DEFAULTS = {
  versions: ['TLSv1.2', 'TLSv1.3'] as TlsVersion[],
  alpnProtocols: ['h2', 'http/1.1', 'http/1.0'] as AlpnProtocol[],
};

/** Oldest first: `versions` must be a contiguous run of this list (HAProxy takes a minimum and a maximum). */
export const TLS_VERSION_ORDER: readonly TlsVersion[] = ['SSLv3', 'TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/;
const PRIVATE_KEY = /-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;
// Traditional OpenSSL encryption keeps the RSA/EC header and says so in a header line instead.
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,\s*ENCRYPTED/m;

/**
 * Resolves the `tls` of a TERMINATED_HTTPS listener. Every problem is collected (not just the first), so one
 * round of editing fixes them all.
 */
export function resolveListenerTls(
  tls: ListenerTls | undefined,
  materials: ReadonlyMap<string, string>,
  now: Date = new Date(),
  namespace = 'default',
): TlsResult {
  const problems: TlsProblem[] = [];
  if (tls === undefined) {
    return { ok: false, problems: [{ reason: 'InvalidSpec', message: 'is required on a TERMINATED_HTTPS listener', path: '/spec/tls/certificateFile' }] };
  }
  const ctx: MaterialContext = { materials, namespace, now };

  const certificate = resolvePair(tls, 'tls', '/spec/tls', ctx, problems);
  const sni = (tls.sniCertificates ?? []).map((ref, i) => resolvePair(ref, `tls.sniCertificates[${i}]`, `/spec/tls/sniCertificates/${i}`, ctx, problems));
  if (tls.sniSecretNames !== undefined && !materials.has(SECRETS_READABLE)) {
    problems.push(kubernetesOnly('tls.sniSecretNames', '/spec/tls/sniSecretNames'));
  } else {
    for (const [i, secretName] of (tls.sniSecretNames ?? []).entries()) {
      sni.push(resolveSecretPair(secretName, `tls.sniSecretNames[${i}]`, `/spec/tls/sniSecretNames/${i}`, ctx, problems));
    }
  }

  const clientAuthentication = tls.clientAuthentication ?? 'NONE';
  if (clientAuthentication !== 'NONE' && tls.clientCaFile === undefined) {
    problems.push(
      invalid(`is required when clientAuthentication is ${clientAuthentication} (the CA that signs client certificates)`, '/spec/tls/clientCaFile'),
    );
  }
  if (tls.clientCrlFile !== undefined && tls.clientCaFile === undefined) {
    problems.push(invalid('needs clientCaFile: a CRL only revokes certificates of a CA that verifies clients', '/spec/tls/clientCrlFile'));
  }
  const clientCa =
    tls.clientCaFile === undefined ? undefined : resolveCa(fileSource(tls.clientCaFile, 'tls.clientCaFile', '/spec/tls/clientCaFile'), ctx, problems);
  const clientCrl =
    tls.clientCrlFile === undefined ? undefined : resolveCrl(tls.clientCrlFile, 'tls.clientCrlFile', '/spec/tls/clientCrlFile', materials, now, problems);
  const policy = resolvePolicy(
    { versions: tls.versions ?? LISTENER_TLS_DEFAULTS.versions, ciphers: tls.ciphers, alpnProtocols: tls.alpnProtocols ?? LISTENER_TLS_DEFAULTS.alpnProtocols },
    'tls',
    '/spec/tls',
    problems,
  );
  if (problems.length > 0 || certificate === undefined) return { ok: false, problems };

  // One file per content: the same bundle twice (or the default again) would make HAProxy load it twice.
  const seen = new Set([certificate.fileName]);
  const sniCertificates: DesiredCertificate[] = [];
  for (const c of sni) {
    if (c === undefined || seen.has(c.fileName)) continue;
    seen.add(c.fileName);
    sniCertificates.push(c);
  }
  return {
    ok: true,
    tls: {
      certificate,
      sniCertificates,
      clientAuthentication,
      ...(clientCa === undefined ? {} : { clientCa }),
      ...(clientCrl === undefined ? {} : { clientCrl }),
      policy,
      ...(tls.hsts === undefined
        ? {}
        : { hsts: { maxAge: tls.hsts.maxAge, includeSubdomains: tls.hsts.includeSubdomains ?? false, preload: tls.hsts.preload ?? false } }),
    },
  };
}

/**
 * Resolves a Pool's `tls` (re-encryption to members). Undefined `tls` when it is not enabled; the other
 * fields then have no effect, which is an error rather than a silent no-op.
 */
export function resolvePoolTls(
  tls: PoolTls | undefined,
  protocol: PoolProtocol,
  materials: ReadonlyMap<string, string>,
  now: Date = new Date(),
  namespace = 'default',
): MemberTlsResult {
  if (tls === undefined) return { ok: true, tls: undefined };
  const problems: TlsProblem[] = [];
  const ctx: MaterialContext = { materials, namespace, now };
  const secrets = materials.has(SECRETS_READABLE);
  if (!secrets && tls.secretName !== undefined) problems.push(kubernetesOnly('tls.secretName', '/spec/tls/secretName'));
  if (!secrets && tls.caSecretName !== undefined) problems.push(kubernetesOnly('tls.caSecretName', '/spec/tls/caSecretName'));
  if (tls.enabled !== true) {
    const fields = [
      'caFile',
      'crlFile',
      'certificateFile',
      'keyFile',
      'versions',
      'ciphers',
      'alpnProtocols',
      ...(secrets ? (['secretName', 'caSecretName'] as const) : []),
    ] as const;
    for (const field of fields) {
      if (tls[field] !== undefined) problems.push(invalid('only takes effect with tls.enabled: true', `/spec/tls/${field}`));
    }
    return problems.length > 0 ? { ok: false, problems } : { ok: true, tls: undefined };
  }
  if (tls.caSecretName !== undefined && tls.caFile !== undefined) {
    problems.push(invalid('give caFile or caSecretName, not both', '/spec/tls/caSecretName'));
  }
  if (tls.crlFile !== undefined && tls.caFile === undefined && tls.caSecretName === undefined) {
    problems.push(invalid('needs caFile: a CRL only revokes certificates of a CA that verifies members', '/spec/tls/crlFile'));
  }
  if (tls.alpnProtocols !== undefined && tls.alpnProtocols.length > 0 && TCP_ONLY_POOLS.has(protocol)) {
    problems.push(
      invalid(`needs an HTTP pool: a ${protocol} pool passes bytes through without speaking HTTP (protocol is ${protocol})`, '/spec/tls/alpnProtocols'),
    );
  }
  let ca: DesiredCertificate | undefined;
  if (tls.caFile !== undefined) {
    ca = resolveCa(fileSource(tls.caFile, 'tls.caFile', '/spec/tls/caFile'), ctx, problems);
  } else if (tls.caSecretName !== undefined && secrets) {
    const found = lookupSecret(materials, namespace, tls.caSecretName, 'tls.caSecretName', '/spec/tls/caSecretName');
    if (found.ok) ca = resolveCa(found.source('ca.crt'), ctx, problems);
    else problems.push({ reason: found.reason, message: found.message, path: '/spec/tls/caSecretName' });
  }
  const crl = tls.crlFile === undefined ? undefined : resolveCrl(tls.crlFile, 'tls.crlFile', '/spec/tls/crlFile', materials, now, problems);
  let clientCertificate: DesiredCertificate | undefined;
  if (tls.certificateFile !== undefined || tls.keyFile !== undefined || (tls.secretName !== undefined && secrets)) {
    clientCertificate = resolvePair(tls, 'tls', '/spec/tls', ctx, problems, 'when the pool presents a client certificate');
  }
  const policy = resolvePolicy({ versions: tls.versions, ciphers: tls.ciphers, alpnProtocols: tls.alpnProtocols ?? [] }, 'tls', '/spec/tls', problems);
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    tls: {
      ...(ca === undefined ? {} : { ca }),
      ...(crl === undefined ? {} : { crl }),
      ...(clientCertificate === undefined ? {} : { clientCertificate }),
      policy,
    },
  };
}

/** versions (a contiguous range), ciphers (split into ≤ TLS 1.2 and TLS 1.3 lists), ALPN (no repeats). */
function resolvePolicy(
  given: { versions: readonly TlsVersion[] | undefined; ciphers: string | undefined; alpnProtocols: readonly AlpnProtocol[] },
  field: string,
  path: string,
  problems: TlsProblem[],
): DesiredTlsPolicy {
  const policy: DesiredTlsPolicy = { alpn: [...new Set(given.alpnProtocols)] };
  if (given.versions !== undefined && given.versions.length > 0) {
    const indexes = [...new Set(given.versions.map((v) => TLS_VERSION_ORDER.indexOf(v)))].sort((a, b) => a - b);
    const min = indexes[0] ?? 0;
    const max = indexes[indexes.length - 1] ?? 0;
    if (max - min + 1 !== indexes.length) {
      const gap = TLS_VERSION_ORDER.slice(min, max + 1).filter((_, i) => !indexes.includes(min + i));
      problems.push(
        invalid(
          `${field}.versions must be a contiguous range: HAProxy allows a minimum and a maximum version, so ${gap.join(', ')} cannot be left out between ${TLS_VERSION_ORDER[min]} and ${TLS_VERSION_ORDER[max]}`,
          `${path}/versions`,
        ),
      );
    } else {
      policy.minVersion = TLS_VERSION_ORDER[min] as TlsVersion;
      policy.maxVersion = TLS_VERSION_ORDER[max] as TlsVersion;
    }
  }
  if (given.ciphers !== undefined) {
    // TLS 1.3 suites are set apart in OpenSSL (and HAProxy): entries named TLS_* go to `ciphersuites`.
    const entries = given.ciphers.split(':');
    const suites = entries.filter((e) => e.startsWith('TLS_'));
    const legacy = entries.filter((e) => !e.startsWith('TLS_'));
    for (const [list, what] of [
      [legacy, 'TLS 1.2 cipher'],
      [suites, 'TLS 1.3 cipher suite'],
    ] as const) {
      if (list.length === 0) continue;
      // The same OpenSSL (3.0) that HAProxy links answers here: a list it cannot use at all is refused now,
      // not at `haproxy -c` where all the user would learn is that the config failed.
      try {
        createSecureContext({ ciphers: list.join(':') });
      } catch {
        problems.push(invalid(`${field}.ciphers: "${list.join(':')}" names no ${what} OpenSSL knows`, `${path}/ciphers`));
      }
    }
    if (legacy.length > 0) policy.ciphers = legacy.join(':');
    if (suites.length > 0) policy.ciphersuites = suites.join(':');
  }
  return policy;
}

/** The bundle HAProxy wants: certificate (chain) first, then the key; named by a hash of the content. */
export function certificateBundle(certificatePem: string, keyPem: string | undefined): DesiredCertificate {
  const pem = keyPem === undefined ? `${certificatePem.trim()}\n` : `${certificatePem.trim()}\n${keyPem.trim()}\n`;
  return { fileName: `${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.pem`, pem };
}

interface MaterialContext {
  materials: ReadonlyMap<string, string>;
  /** Of the object: Secrets are read from it. */
  namespace: string;
  now: Date;
}

/** A certificate and its key, from `certificateFile` + `keyFile`, or from the Secret `secretName`. */
function resolvePair(
  ref: TlsCertificateRef,
  field: string,
  path: string,
  ctx: MaterialContext,
  problems: TlsProblem[],
  when = 'on a TERMINATED_HTTPS listener',
): DesiredCertificate | undefined {
  if (ref.secretName !== undefined) {
    if (!ctx.materials.has(SECRETS_READABLE)) {
      problems.push(kubernetesOnly(`${field}.secretName`, `${path}/secretName`));
      return undefined;
    }
    if (ref.certificateFile !== undefined || ref.keyFile !== undefined) {
      problems.push(invalid(`${field}: give secretName or certificateFile and keyFile, not both`, `${path}/secretName`));
      return undefined;
    }
    return resolveSecretPair(ref.secretName, `${field}.secretName`, `${path}/secretName`, ctx, problems);
  }
  const certificateFile = required(ref.certificateFile, `${path}/certificateFile`, problems, when);
  const keyFile = required(ref.keyFile, `${path}/keyFile`, problems, when);
  if (certificateFile === undefined || keyFile === undefined) return undefined;
  return checkPair(
    fileSource(certificateFile, `${field}.certificateFile`, `${path}/certificateFile`),
    fileSource(keyFile, `${field}.keyFile`, `${path}/keyFile`),
    certificateFile === keyFile,
    ctx,
    problems,
  );
}

/** `tls.crt` and `tls.key` of a Secret in the object's namespace. */
function resolveSecretPair(name: string, field: string, path: string, ctx: MaterialContext, problems: TlsProblem[]): DesiredCertificate | undefined {
  const found = lookupSecret(ctx.materials, ctx.namespace, name, field, path);
  if (!found.ok) {
    problems.push({ reason: found.reason, message: found.message, path });
    return undefined;
  }
  return checkPair(found.source('tls.crt'), found.source('tls.key'), false, ctx, problems);
}

function checkPair(
  cert: MaterialSource,
  keySource: MaterialSource,
  sameFile: boolean,
  ctx: MaterialContext,
  problems: TlsProblem[],
): DesiredCertificate | undefined {
  const before = problems.length;
  const certificate = read(ctx.materials, cert, problems);
  const key = read(ctx.materials, keySource, problems);
  if (certificate === undefined || key === undefined) return undefined;

  if (!CERTIFICATE.test(certificate)) {
    problems.push(invalid(`${cert.field}: ${cert.what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, cert.path));
  } else if (!sameFile && PRIVATE_KEY.test(certificate)) {
    // HAProxy would take the first key in the bundle, which may not be the one keyFile names.
    problems.push(
      invalid(
        cert.secret
          ? `${cert.field}: ${cert.what} also holds a private key; keep the key in tls.key only`
          : `${cert.field}: ${cert.what} also holds a private key; name that file in keyFile too, or keep the key out of it`,
        cert.path,
      ),
    );
  }
  if (!PRIVATE_KEY.test(key)) {
    problems.push(invalid(`${keySource.field}: ${keySource.what} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)`, keySource.path));
  } else if (ENCRYPTED_KEY.test(key)) {
    // HAProxy cannot load it without a passphrase, and an agent has nobody to ask for one.
    problems.push(invalid(`${keySource.field}: ${keySource.what} holds an encrypted key; encrypted keys are not supported`, keySource.path));
  }
  if (problems.length > before) return undefined;

  // HAProxy would load an expired certificate and serve it, and a key that does not belong to the
  // certificate fails only at `haproxy -c`: both are said here, on the field, in words.
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(firstBlock(certificate, 'CERTIFICATE') ?? '');
  } catch {
    problems.push(invalid(`${cert.field}: ${cert.what} does not hold a certificate OpenSSL can parse`, cert.path));
    return undefined;
  }
  const validity = validityProblem(x509, ctx.now);
  if (validity !== undefined) {
    problems.push(invalid(`${cert.field}: the certificate in ${cert.in} ${validity}`, cert.path));
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) {
      problems.push(invalid(`${keySource.field}: the key in ${keySource.in} does not belong to the certificate in ${cert.in}`, keySource.path));
    }
  } catch {
    problems.push(invalid(`${keySource.field}: ${keySource.what} does not hold a private key OpenSSL can parse`, keySource.path));
  }
  if (problems.length > before) return undefined;
  return certificateBundle(certificate, sameFile ? undefined : key);
}

/** A CA bundle: PEM certificates only (no key: it is copied to the node), not all of them expired. */
function resolveCa(source: MaterialSource, ctx: MaterialContext, problems: TlsProblem[]): DesiredCertificate | undefined {
  const { field, path, what } = source;
  const content = read(ctx.materials, source, problems);
  if (content === undefined) return undefined;
  const blocks = pemBlocks(content);
  if (PRIVATE_KEY.test(content)) {
    problems.push(invalid(`${field}: ${what} holds a private key; a CA bundle holds certificates only`, path));
    return undefined;
  }
  const certificates = blocks.filter((b) => b.type === 'CERTIFICATE');
  if (certificates.length === 0) {
    problems.push(invalid(`${field}: ${what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, path));
    return undefined;
  }
  const other = blocks.find((b) => b.type !== 'CERTIFICATE');
  if (other !== undefined) {
    problems.push(invalid(`${field}: ${what} holds a ${other.type} block; a CA bundle holds certificates only`, path));
    return undefined;
  }
  const parsed: X509Certificate[] = [];
  for (const [i, b] of certificates.entries()) {
    try {
      parsed.push(new X509Certificate(b.pem));
    } catch {
      problems.push(invalid(`${field}: certificate ${i + 1} in ${source.in} does not parse`, path));
      return undefined;
    }
  }
  // A bundle may carry an old CA next to its successor; only one with nothing usable left is an error.
  const problemsOf = parsed.map((c) => validityProblem(c, ctx.now));
  if (problemsOf.every((p) => p !== undefined)) {
    problems.push(invalid(`${field}: every certificate in ${source.in} is unusable: ${problemsOf[0] ?? ''}`, path));
    return undefined;
  }
  return certificateBundle(certificates.map((b) => b.pem).join('\n'), undefined);
}

/** A CRL file: one or more PEM X509 CRL blocks and nothing else. */
function resolveCrl(
  file: string,
  field: string,
  path: string,
  materials: ReadonlyMap<string, string>,
  now: Date,
  problems: TlsProblem[],
): DesiredCertificate | undefined {
  const content = read(materials, fileSource(file, field, path), problems);
  if (content === undefined) return undefined;
  const blocks = pemBlocks(content);
  const crls = blocks.filter((b) => b.type === 'X509 CRL');
  if (crls.length === 0 || crls.length !== blocks.length) {
    problems.push(invalid(`${field}: file "${file}" must hold PEM CRLs only (-----BEGIN X509 CRL-----)`, path));
    return undefined;
  }
  // A CRL past its nextUpdate makes OpenSSL refuse every certificate of its CA ("CRL has expired"): said
  // here, on the field, rather than by clients that all fail at once.
  for (const [i, b] of crls.entries()) {
    const next = crlNextUpdate(b.der);
    if (next === undefined) {
      problems.push(invalid(`${field}: CRL ${i + 1} in "${file}" is not a DER CertificateList inside its PEM armour`, path));
      return undefined;
    }
    if (next !== null && next.getTime() < now.getTime()) {
      problems.push(invalid(`${field}: CRL ${i + 1} in "${file}" expired on ${next.toISOString()} (its nextUpdate); issue a new one`, path));
      return undefined;
    }
  }
  return certificateBundle(crls.map((b) => b.pem).join('\n'), undefined);
}

function validityProblem(c: X509Certificate, now: Date): string | undefined {
  const from = new Date(c.validFrom);
  const to = new Date(c.validTo);
  if (to.getTime() < now.getTime()) return `expired on ${to.toISOString()}`;
  if (from.getTime() > now.getTime()) return `is not valid before ${from.toISOString()}`;
  return undefined;
}

function required(value: string | undefined, path: string, problems: TlsProblem[], when: string): string | undefined {
  if (value === undefined) problems.push(invalid(`is required ${when}`, path));
  return value;
}

function read(materials: ReadonlyMap<string, string>, source: MaterialSource, problems: TlsProblem[]): string | undefined {
  const content = materials.get(source.key);
  if (content === undefined) problems.push({ reason: 'InvalidReference', message: `${source.field}: ${source.what} not found`, path: source.path });
  return content;
}

function invalid(message: string, path: string): TlsProblem {
  return { reason: 'InvalidSpec', message, path };
}

function kubernetesOnly(field: string, path: string): TlsProblem {
  return {
    reason: 'NotSupported',
    message: `${field} is only for Kubernetes mode (Secrets); in file mode use certificateFile and keyFile`,
    path,
  };
}
