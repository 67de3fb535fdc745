// Issue 7: TLS in depth. What the builder says about certificate material and TLS settings (field, file,
// what is wrong; never the key), and that a load balancer using every TLS field renders to a config the real
// `haproxy -c` accepts with the CA, CRL and client certificate files in place.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnyObject, ApiObject } from '../../src/api/v1alpha1/types.js';
import { formatIssue, validateObject } from '../../src/api/v1alpha1/validate.js';
import { buildDesired } from '../../src/desired/build.js';
import type { ObjectProblem } from '../../src/desired/model.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import { renderHstsValue } from '../../src/plan/haproxy-tls.js';
import { desiredCertificates } from '../../src/plan/plan.js';
import { TestCa, type Leaf } from '../support/pki.js';
import { lb, listener, member, monitor, pool } from './fixtures/objects.js';

const run = promisify(execFile);
const brief = (p: ObjectProblem) => `${p.kind} ${p.name} ${p.reason} ${p.path ?? '-'}: ${p.message}`;

let dir: string;
const materials = new Map<string, string>();
let serverKey = '';

async function put(name: string, file: string): Promise<void> {
  materials.set(name, await readFile(file, 'utf8'));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-tls-unit-'));
  const ca = await TestCa.create(join(dir, 'ca'), 'unit CA');
  const other = await TestCa.create(join(dir, 'other'), 'other CA');
  const www: Leaf = await ca.issue('www.example.test', { dnsNames: ['www.example.test'] });
  const expired = await ca.issue('old.example.test', { dnsNames: ['old.example.test'], expired: true });
  const client = await ca.issue('client', { usage: 'client' });
  const revoked = await ca.issue('revoked', { usage: 'client' });
  await ca.revoke(revoked);
  const crl = await ca.writeCrl();
  await put('www.pem', www.certFile);
  await put('www.key', www.keyFile);
  await put('old.pem', expired.certFile);
  await put('old.key', expired.keyFile);
  await put('client.pem', client.certFile);
  await put('client.key', client.keyFile);
  await put('ca.pem', ca.certFile);
  await put('other-ca.pem', other.certFile);
  await put('crl.pem', crl);
  materials.set('ca-with-key.pem', `${await readFile(ca.certFile, 'utf8')}${await readFile(ca.keyFile, 'utf8')}`);
  materials.set('not-pem.txt', 'hello\n');
  serverKey = materials.get('www.key') ?? '';
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const TERMINATED = { certificateFile: 'www.pem', keyFile: 'www.key' };
const https = (tls: Partial<NonNullable<ApiObject<'Listener'>['spec']['tls']>>, more: Partial<ApiObject<'Listener'>['spec']> = {}) =>
  listener('https', { protocol: 'TERMINATED_HTTPS', port: 443, defaultPool: 'app', tls: { ...TERMINATED, ...tls }, ...more });
const problems = (...objects: AnyObject[]) => buildDesired([lb('web'), pool('app'), ...objects], { defaultBridge: 'br-int', materials }).problems.map(brief);

describe('certificate material', () => {
  it('an expired certificate is an InvalidSpec problem that says when it expired', () => {
    expect(problems(https({ certificateFile: 'old.pem', keyFile: 'old.key' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/certificateFile: tls.certificateFile: the certificate in "old.pem" expired on 2020-01-02T00:00:00.000Z',
    ]);
  });

  it('a certificate that expires later is refused once that moment has come (expiry is checked at build time)', () => {
    const later = new Date(Date.now() + 30 * 86_400_000);
    const d = buildDesired([lb('web'), pool('app'), https({})], { defaultBridge: 'br-int', materials, now: later });
    expect(d.problems.map(brief)[0]).toMatch(/tls\.certificateFile: the certificate in "www.pem" expired on /);
  });

  it('a key that does not belong to the certificate', () => {
    expect(problems(https({ keyFile: 'client.key' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/keyFile: tls.keyFile: the key in "client.key" does not belong to the certificate in "www.pem"',
    ]);
    expect(problems(pool('re', { tls: { enabled: true, certificateFile: 'client.pem', keyFile: 'www.key' } }))).toEqual([
      'Pool re InvalidSpec /spec/tls/keyFile: tls.keyFile: the key in "www.key" does not belong to the certificate in "client.pem"',
    ]);
  });

  it('a CA bundle must hold certificates only', () => {
    expect(problems(https({ clientAuthentication: 'MANDATORY', clientCaFile: 'not-pem.txt' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/clientCaFile: tls.clientCaFile: file "not-pem.txt" holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
    ]);
    expect(problems(https({ clientAuthentication: 'MANDATORY', clientCaFile: 'ca-with-key.pem' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/clientCaFile: tls.clientCaFile: file "ca-with-key.pem" holds a private key; a CA bundle holds certificates only',
    ]);
    expect(problems(https({ clientAuthentication: 'MANDATORY', clientCaFile: 'crl.pem' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/clientCaFile: tls.clientCaFile: file "crl.pem" holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
    ]);
    expect(problems(pool('re', { tls: { enabled: true, caFile: 'gone.pem' } }))).toEqual([
      'Pool re InvalidReference /spec/tls/caFile: tls.caFile: file "gone.pem" not found',
    ]);
  });

  it('a CRL file must hold CRLs only', () => {
    expect(problems(https({ clientAuthentication: 'OPTIONAL', clientCaFile: 'ca.pem', clientCrlFile: 'ca.pem' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/clientCrlFile: tls.clientCrlFile: file "ca.pem" must hold PEM CRLs only (-----BEGIN X509 CRL-----)',
    ]);
  });

  it('a CRL past its nextUpdate is refused (OpenSSL would refuse every certificate of its CA)', () => {
    const later = new Date(Date.now() + 30 * 86_400_000);
    const d = buildDesired([lb('web'), pool('app', { tls: { enabled: true, caFile: 'ca.pem', crlFile: 'crl.pem' } })], {
      defaultBridge: 'br-int',
      materials,
      now: later,
    });
    expect(d.problems.map(brief)).toContainEqual(
      expect.stringMatching(
        /^Pool app InvalidSpec \/spec\/tls\/crlFile: tls\.crlFile: CRL 1 in "crl\.pem" expired on \S+ \(its nextUpdate\); issue a new one$/,
      ),
    );
    expect(problems(pool('re', { tls: { enabled: true, caFile: 'ca.pem', crlFile: 'crl.pem' } }))).toEqual([]);
  });

  it('never quotes key material', () => {
    const all = problems(https({ certificateFile: 'www.key', keyFile: 'client.key', clientCaFile: 'ca-with-key.pem', clientAuthentication: 'MANDATORY' }));
    expect(all.length).toBeGreaterThan(0);
    const keyLines = serverKey.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
    for (const line of keyLines) expect(all.join('\n')).not.toContain(line);
  });
});

describe('TLS settings', () => {
  it('client authentication needs a CA, a CRL needs a CA', () => {
    expect(problems(https({ clientAuthentication: 'MANDATORY' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/clientCaFile: is required when clientAuthentication is MANDATORY (the CA that signs client certificates)',
    ]);
    expect(problems(https({ clientCrlFile: 'crl.pem' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/clientCrlFile: needs clientCaFile: a CRL only revokes certificates of a CA that verifies clients',
    ]);
    expect(problems(pool('re', { tls: { enabled: true, crlFile: 'crl.pem' } }))).toEqual([
      'Pool re InvalidSpec /spec/tls/crlFile: needs caFile: a CRL only revokes certificates of a CA that verifies members',
    ]);
  });

  it('versions must be a contiguous range', () => {
    expect(problems(https({ versions: ['TLSv1.1', 'TLSv1.3'] }))).toEqual([
      'Listener https InvalidSpec /spec/tls/versions: tls.versions must be a contiguous range: HAProxy allows a minimum and a maximum version, so TLSv1.2 cannot be left out between TLSv1.1 and TLSv1.3',
    ]);
  });

  it('a cipher string: the schema refuses its syntax, the builder a list OpenSSL cannot use', () => {
    const bad = validateObject({ ...https({ ciphers: 'HIGH !aNULL' }) });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues.map(formatIssue).join('\n')).toContain('/spec/tls/ciphers: must be an OpenSSL cipher list');
    expect(validateObject({ ...https({ ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256' }) }).ok).toBe(true);
    expect(problems(https({ ciphers: 'NO-SUCH-CIPHER' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/ciphers: tls.ciphers: "NO-SUCH-CIPHER" names no TLS 1.2 cipher OpenSSL knows',
    ]);
    expect(problems(https({ ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:TLS_NO_SUCH_SUITE' }))).toEqual([
      'Listener https InvalidSpec /spec/tls/ciphers: tls.ciphers: "TLS_NO_SUCH_SUITE" names no TLS 1.3 cipher suite OpenSSL knows',
    ]);
  });

  it('fields for another protocol', () => {
    expect(problems(listener('plain', { insertHeaders: { 'X-SSL-Client-CN': true } }))).toEqual([
      'Listener plain InvalidSpec /spec/insertHeaders/X-SSL-Client-CN: is only allowed on TERMINATED_HTTPS listeners (protocol is HTTP)',
    ]);
    expect(problems(listener('plain', { protocol: 'HTTP', tls: { clientAuthentication: 'MANDATORY' } }))).toEqual([
      'Listener plain InvalidSpec /spec/tls: is only allowed on TERMINATED_HTTPS listeners (protocol is HTTP)',
    ]);
    expect(problems(pool('raw', { protocol: 'TCP', tls: { enabled: true, alpnProtocols: ['h2'] } }))).toEqual([
      'Pool raw InvalidSpec /spec/tls/alpnProtocols: needs an HTTP pool: a TCP pool passes bytes through without speaking HTTP (protocol is TCP)',
    ]);
    expect(problems(pool('off', { tls: { caFile: 'ca.pem' } }))).toEqual(['Pool off InvalidSpec /spec/tls/caFile: only takes effect with tls.enabled: true']);
    expect(validateObject(https({ hsts: { includeSubdomains: true } as never })).ok).toBe(false);
  });

  it('HSTS renders as one HAProxy word with escaped spaces', () => {
    expect(renderHstsValue({ maxAge: 31536000, includeSubdomains: true, preload: true })).toBe('max-age=31536000;\\ includeSubDomains;\\ preload');
    expect(renderHstsValue({ maxAge: 0, includeSubdomains: false, preload: false })).toBe('max-age=0');
  });
});

describe('a load balancer using every TLS field', () => {
  const objects = (): AnyObject[] => [
    lb('web'),
    https(
      {
        clientAuthentication: 'MANDATORY',
        clientCaFile: 'ca.pem',
        clientCrlFile: 'crl.pem',
        versions: ['TLSv1.2', 'TLSv1.3'],
        ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256',
        alpnProtocols: ['h2', 'http/1.1'],
        hsts: { maxAge: 31536000, includeSubdomains: true, preload: true },
      },
      { insertHeaders: { 'X-SSL-Client-Verify': true, 'X-SSL-Client-CN': true, 'X-SSL-Client-SHA1': true } },
    ),
    pool('app', {
      tls: {
        enabled: true,
        caFile: 'other-ca.pem',
        crlFile: 'crl.pem',
        certificateFile: 'client.pem',
        keyFile: 'client.key',
        versions: ['TLSv1.3'],
        alpnProtocols: ['http/1.1'],
      },
    }),
    member('app-1', { address: '192.0.2.21', port: 8443 }),
    monitor('app-check', { type: 'HTTPS', urlPath: '/healthz' }),
  ];

  it('renders bind and server options and passes haproxy -c with the files it names', async () => {
    const d = buildDesired(objects(), { defaultBridge: 'br-int', materials });
    expect(d.problems.map(brief)).toEqual([]);
    const model = d.lbs.get('default/web')!;
    const certsDir = join(dir, 'lb', 'certs');
    await mkdir(certsDir, { recursive: true });
    const files = desiredCertificates(model);
    // default certificate, client CA, CRL, the pool's CA and client certificate (the CRL once).
    expect(files).toHaveLength(5);
    for (const f of files) await writeFile(join(certsDir, f.fileName), f.pem, { mode: 0o600 });
    const config = renderHaproxyConfig(model, {
      socket: join(dir, 'lb', 'haproxy.sock'),
      stateFile: join(dir, 'lb', 'state'),
      certsDir,
      pingCheckCommand: '/bin/true',
    });
    const bind = config.split('\n').find((l) => l.startsWith('    bind '))!;
    expect(bind).toMatch(
      / ssl crt \S+ verify required ca-file \S+ crl-file \S+ ssl-min-ver TLSv1\.2 ssl-max-ver TLSv1\.3 ciphers ECDHE-ECDSA-AES128-GCM-SHA256 ciphersuites TLS_AES_128_GCM_SHA256 alpn h2,http\/1\.1$/,
    );
    expect(config).toContain('    http-response set-header Strict-Transport-Security max-age=31536000;\\ includeSubDomains;\\ preload\n');
    expect(config).toContain('    http-request set-header X-SSL-Client-Verify %[ssl_c_verify]\n');
    expect(config).toContain('    http-request del-header X-SSL-Client-CN\n    http-request set-header X-SSL-Client-CN %[ssl_c_s_dn(cn)] if { ssl_c_used }\n');
    const server = config.split('\n').find((l) => l.startsWith('    server '))!;
    expect(server).toMatch(/ check check-ssl ssl verify required ca-file \S+ crl-file \S+ crt \S+ ssl-min-ver TLSv1\.3 ssl-max-ver TLSv1\.3 alpn http\/1\.1$/);
    expect(server).not.toContain('sni');
    const file = join(dir, 'lb', 'haproxy.cfg');
    await writeFile(file, config);
    const { stdout, stderr } = await run('haproxy', ['-c', '-f', file]);
    expect(`${stdout}${stderr}`).toContain('Configuration file is valid');
  });
});
