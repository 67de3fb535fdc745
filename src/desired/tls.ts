// Pure: a TERMINATED_HTTPS listener's `tls` + the contents of the files it names → the PEM bundles HAProxy
// loads. The file source reads the files (keyed by the path as written in the spec); this only checks and
// combines them, so the same answers come from `nslb validate`, `nslb plan` and the agent.
//
// Key material never goes into a message: problems name the field and the file, never the content.
import { createHash } from 'node:crypto';
import type { ListenerTls, TlsCertificateRef } from '../api/v1alpha1/types.js';
import type { DesiredCertificate, DesiredListenerTls } from './model.js';

export interface TlsProblem {
  reason: 'InvalidReference' | 'InvalidSpec' | 'NotSupported';
  message: string;
  /** JSON pointer into the Listener, e.g. `/spec/tls/keyFile`. */
  path: string;
}

export type TlsResult = { ok: true; tls: DesiredListenerTls } | { ok: false; problems: TlsProblem[] };

/** Listener.tls fields that issue 7 (client certificates, TLS policy, Kubernetes Secrets) brings. */
const LATER_FIELDS = ['clientCaFile', 'clientCrlFile', 'versions', 'ciphers', 'alpnProtocols', 'hsts'] as const;

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/;
const PRIVATE_KEY = /-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;
// Traditional OpenSSL encryption keeps the RSA/EC header and says so in a header line instead.
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,\s*ENCRYPTED/m;

/**
 * Resolves the `tls` of a TERMINATED_HTTPS listener. Every problem is collected (not just the first), so one
 * round of editing fixes them all.
 */
export function resolveListenerTls(tls: ListenerTls | undefined, materials: ReadonlyMap<string, string>): TlsResult {
  const problems: TlsProblem[] = [];
  if (tls === undefined) {
    return { ok: false, problems: [{ reason: 'InvalidSpec', message: 'is required on a TERMINATED_HTTPS listener', path: '/spec/tls/certificateFile' }] };
  }

  for (const field of LATER_FIELDS) {
    if (tls[field] !== undefined) problems.push(notSupported(`tls.${field}`, `/spec/tls/${field}`));
  }
  if (tls.clientAuthentication !== undefined && tls.clientAuthentication !== 'NONE') {
    problems.push(notSupported(`tls.clientAuthentication ${tls.clientAuthentication}`, '/spec/tls/clientAuthentication'));
  }
  if (tls.sniSecretNames !== undefined) problems.push(kubernetesOnly('tls.sniSecretNames', '/spec/tls/sniSecretNames'));

  const certificate = resolvePair(tls, 'tls', '/spec/tls', materials, problems);
  const sni = (tls.sniCertificates ?? []).map((ref, i) =>
    resolvePair(ref, `tls.sniCertificates[${i}]`, `/spec/tls/sniCertificates/${i}`, materials, problems),
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
  return { ok: true, tls: { certificate, sniCertificates } };
}

/** The bundle HAProxy wants: certificate (chain) first, then the key; named by a hash of the content. */
export function certificateBundle(certificatePem: string, keyPem: string | undefined): DesiredCertificate {
  const pem = keyPem === undefined ? `${certificatePem.trim()}\n` : `${certificatePem.trim()}\n${keyPem.trim()}\n`;
  return { fileName: `${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.pem`, pem };
}

function resolvePair(
  ref: TlsCertificateRef,
  field: string,
  path: string,
  materials: ReadonlyMap<string, string>,
  problems: TlsProblem[],
): DesiredCertificate | undefined {
  if (ref.secretName !== undefined) {
    problems.push(kubernetesOnly(`${field}.secretName`, `${path}/secretName`));
    return undefined;
  }
  const before = problems.length;
  const certificateFile = required(ref.certificateFile, `${path}/certificateFile`, problems);
  const keyFile = required(ref.keyFile, `${path}/keyFile`, problems);
  if (certificateFile === undefined || keyFile === undefined) return undefined;
  const certificate = read(materials, certificateFile, `${field}.certificateFile`, `${path}/certificateFile`, problems);
  const key = read(materials, keyFile, `${field}.keyFile`, `${path}/keyFile`, problems);
  if (certificate === undefined || key === undefined) return undefined;

  const sameFile = certificateFile === keyFile;
  if (!CERTIFICATE.test(certificate)) {
    problems.push(invalid(`${field}.certificateFile: file "${certificateFile}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, `${path}/certificateFile`));
  } else if (!sameFile && PRIVATE_KEY.test(certificate)) {
    // HAProxy would take the first key in the bundle, which may not be the one keyFile names.
    problems.push(
      invalid(
        `${field}.certificateFile: file "${certificateFile}" also holds a private key; name that file in keyFile too, or keep the key out of it`,
        `${path}/certificateFile`,
      ),
    );
  }
  if (!PRIVATE_KEY.test(key)) {
    problems.push(invalid(`${field}.keyFile: file "${keyFile}" holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)`, `${path}/keyFile`));
  } else if (ENCRYPTED_KEY.test(key)) {
    // HAProxy cannot load it without a passphrase, and an agent has nobody to ask for one.
    problems.push(invalid(`${field}.keyFile: file "${keyFile}" holds an encrypted key; encrypted keys are not supported`, `${path}/keyFile`));
  }
  if (problems.length > before) return undefined;
  return certificateBundle(certificate, sameFile ? undefined : key);
}

function required(value: string | undefined, path: string, problems: TlsProblem[]): string | undefined {
  if (value === undefined) problems.push(invalid('is required on a TERMINATED_HTTPS listener', path));
  return value;
}

function read(
  materials: ReadonlyMap<string, string>,
  file: string,
  field: string,
  path: string,
  problems: TlsProblem[],
): string | undefined {
  const content = materials.get(file);
  if (content === undefined) problems.push({ reason: 'InvalidReference', message: `${field}: file "${file}" not found`, path });
  return content;
}

function invalid(message: string, path: string): TlsProblem {
  return { reason: 'InvalidSpec', message, path };
}

function notSupported(what: string, path: string): TlsProblem {
  return { reason: 'NotSupported', message: `${what} is not supported yet`, path };
}

function kubernetesOnly(field: string, path: string): TlsProblem {
  return {
    reason: 'NotSupported',
    message: `${field} is only for Kubernetes mode, which cannot read Secrets yet; use certificateFile and keyFile`,
    path,
  };
}
