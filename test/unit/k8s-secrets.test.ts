// Issue 18: TLS from Kubernetes Secrets, as the builder sees it (materials made from Secrets), the Events
// about Secrets, the in-test API server's Secret rules and reviews, and the token check in front of
// --metrics-listen. Messages name Secrets and keys, never their content.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { buildDesired } from '../../src/desired/build.js';
import type { ObjectProblem } from '../../src/desired/model.js';
import { SECRETS_READABLE, referencedSecrets, secretMaterials, secretReadErrorKey } from '../../src/desired/secrets.js';
import { secretEvents } from '../../src/status/secret-events.js';
import { ApiError, FakeApiServer } from '../support/fake-apiserver.js';
import { TestCa, type Leaf } from '../support/pki.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';
import { lb, listener, pool } from './fixtures/objects.js';

const brief = (p: ObjectProblem) => `${p.kind} ${p.name} ${p.reason} ${p.path ?? '-'}: ${p.message}`;
const b64 = (s: string) => Buffer.from(s).toString('base64');

let dir: string;
let www: { crt: string; key: string };
let other: { crt: string; key: string };
let caPem = '';

/** Neither key's content (its base64 body, start or end) is in `text`. */
function noKeyMaterial(text: string): void {
  for (const k of [www.key, other.key]) {
    const body = k.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    expect(text).not.toContain(body.slice(0, 32));
    expect(text).not.toContain(body.slice(-32));
  }
}

const read = async (l: Leaf) => ({ crt: await readFile(l.certFile, 'utf8'), key: await readFile(l.keyFile, 'utf8') });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-secrets-unit-'));
  const ca = await TestCa.create(join(dir, 'ca'), 'unit CA');
  www = await read(await ca.issue('www.example.test', { dnsNames: ['www.example.test'] }));
  other = await read(await ca.issue('other.example.test', { dnsNames: ['other.example.test'] }));
  caPem = await readFile(ca.certFile, 'utf8');
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Materials as Kubernetes mode makes them from these Secrets (namespace default). */
function materialsOf(secrets: { name: string; type?: string; data: Record<string, string> }[], namespace = 'default'): Map<string, string> {
  const m = new Map<string, string>([[SECRETS_READABLE, '1']]);
  for (const s of secrets) {
    const data = Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, b64(v)]));
    for (const [k, v] of secretMaterials({ namespace, name: s.name, type: s.type ?? 'kubernetes.io/tls', data })) m.set(k, v);
  }
  return m;
}

const https = (tls: object, name = 'https') => listener(name, { protocol: 'TERMINATED_HTTPS', port: 443, defaultPool: 'app', tls });
const build = (materials: Map<string, string>, ...objects: AnyObject[]) =>
  buildDesired([lb('web'), pool('app'), ...objects], { defaultBridge: 'br-int', materials });

describe('TLS material from Secrets', () => {
  it("tls.secretName: the Secret's tls.crt and tls.key become the listener's bundle; Opaque Secrets too", () => {
    for (const type of ['kubernetes.io/tls', 'Opaque']) {
      const d = build(materialsOf([{ name: 'web-tls', type, data: { 'tls.crt': www.crt, 'tls.key': www.key } }]), https({ secretName: 'web-tls' }));
      expect(d.problems.map(brief)).toEqual([]);
      const tls = d.lbs.get('default/web')?.listeners[0]?.tls;
      expect(tls?.certificate.pem).toContain(www.crt.trim());
      expect(tls?.certificate.pem).toContain(www.key.trim());
    }
  });

  it('sniSecretNames and sniCertificates[].secretName add SNI certificates', () => {
    const m = materialsOf([
      { name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': www.key } },
      { name: 'other-tls', data: { 'tls.crt': other.crt, 'tls.key': other.key } },
    ]);
    for (const tls of [
      { secretName: 'web-tls', sniSecretNames: ['other-tls'] },
      { secretName: 'web-tls', sniCertificates: [{ secretName: 'other-tls' }] },
    ]) {
      const d = build(m, https(tls));
      expect(d.problems.map(brief)).toEqual([]);
      expect(d.lbs.get('default/web')?.listeners[0]?.tls?.sniCertificates.map((c) => c.pem.includes(other.crt.trim()))).toEqual([true]);
    }
  });

  it('a missing, foreign-typed, incomplete, broken or unreadable Secret is an error on the object, naming it', () => {
    const cases: [Map<string, string>, object, string][] = [
      [
        materialsOf([]),
        { secretName: 'web-tls' },
        'Listener https InvalidReference /spec/tls/secretName: tls.secretName: Secret "web-tls" not found in namespace "default"',
      ],
      [
        materialsOf([{ name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': www.key } }], 'elsewhere'),
        { secretName: 'web-tls' },
        'Listener https InvalidReference /spec/tls/secretName: tls.secretName: Secret "web-tls" not found in namespace "default"',
      ],
      [
        materialsOf([{ name: 'web-tls', type: 'kubernetes.io/basic-auth', data: {} }]),
        { secretName: 'web-tls' },
        'Listener https InvalidSpec /spec/tls/secretName: tls.secretName: Secret "web-tls" is of type kubernetes.io/basic-auth; nslb reads kubernetes.io/tls and Opaque Secrets',
      ],
      [
        materialsOf([{ name: 'web-tls', type: 'Opaque', data: { 'tls.crt': www.crt } }]),
        { secretName: 'web-tls' },
        'Listener https InvalidReference /spec/tls/secretName: tls.secretName: Secret "web-tls" key tls.key not found',
      ],
      [
        materialsOf([{ name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': other.key } }]),
        { secretName: 'web-tls' },
        'Listener https InvalidSpec /spec/tls/secretName: tls.secretName: the key in Secret "web-tls" key tls.key does not belong to the certificate in Secret "web-tls" key tls.crt',
      ],
      [
        materialsOf([{ name: 'web-tls', data: { 'tls.crt': 'garbage', 'tls.key': www.key } }]),
        { secretName: 'web-tls' },
        'Listener https InvalidSpec /spec/tls/secretName: tls.secretName: Secret "web-tls" key tls.crt holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
      ],
      [
        new Map([
          [SECRETS_READABLE, '1'],
          [secretReadErrorKey('default', 'web-tls'), 'the agent may not read Secrets in namespace "default" (403 Forbidden)'],
        ]),
        { secretName: 'web-tls' },
        'Listener https InvalidReference /spec/tls/secretName: tls.secretName: Secret "web-tls": the agent may not read Secrets in namespace "default" (403 Forbidden)',
      ],
      [
        materialsOf([{ name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': www.key } }]),
        { secretName: 'web-tls', certificateFile: 'a.pem', keyFile: 'a.key' },
        'Listener https InvalidSpec /spec/tls/secretName: tls: give secretName or certificateFile and keyFile, not both',
      ],
      [
        materialsOf([]),
        { secretName: 'web-tls', sniSecretNames: ['gone'] },
        'Listener https InvalidReference /spec/tls/secretName: tls.secretName: Secret "web-tls" not found in namespace "default"',
      ],
    ];
    for (const [m, tls, want] of cases) expect(build(m, https(tls)).problems.map(brief)[0]).toBe(want);
    const all = build(
      materialsOf([{ name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': www.key } }]),
      https({ secretName: 'web-tls', sniSecretNames: ['gone'] }),
    );
    expect(all.problems.map(brief)).toEqual([
      'Listener https InvalidReference /spec/tls/sniSecretNames/0: tls.sniSecretNames[0]: Secret "gone" not found in namespace "default"',
    ]);
    for (const [m, tls] of cases) for (const p of build(m, https(tls)).problems) noKeyMaterial(p.message);
  });

  it('Pool tls.secretName is the client certificate, tls.caSecretName the CA (ca.crt) members are verified with', () => {
    const m = materialsOf([
      { name: 'client-tls', data: { 'tls.crt': www.crt, 'tls.key': www.key } },
      { name: 'members-ca', type: 'Opaque', data: { 'ca.crt': caPem } },
    ]);
    const d = build(m, pool('re', { tls: { enabled: true, secretName: 'client-tls', caSecretName: 'members-ca' } }));
    expect(d.problems.map(brief)).toEqual([]);
    expect(build(m, pool('re', { tls: { enabled: true, caSecretName: 'client-tls' } })).problems.map(brief)).toEqual([
      'Pool re InvalidReference /spec/tls/caSecretName: tls.caSecretName: Secret "client-tls" key ca.crt not found',
    ]);
    expect(build(m, pool('re', { tls: { secretName: 'client-tls' } })).problems.map(brief)).toEqual([
      'Pool re InvalidSpec /spec/tls/secretName: only takes effect with tls.enabled: true',
    ]);
  });

  it('in file mode secretName is refused as Kubernetes-only', () => {
    const d = buildDesired([lb('web'), pool('app'), https({ secretName: 'web-tls' })], { defaultBridge: 'br-int', materials: new Map() });
    expect(d.problems.map(brief)).toEqual([
      'Listener https NotSupported /spec/tls/secretName: tls.secretName is only for Kubernetes mode (Secrets); in file mode use certificateFile and keyFile',
    ]);
  });

  it('referencedSecrets lists every Secret the objects name, by namespace', () => {
    const objects = [
      https({ secretName: 'a', sniSecretNames: ['b'], sniCertificates: [{ secretName: 'c' }, { certificateFile: 'x', keyFile: 'y' }] }),
      { ...pool('re', { tls: { enabled: true, secretName: 'd', caSecretName: 'e' } }), metadata: { name: 're', namespace: 'team' } },
      listener('plain'),
    ] as AnyObject[];
    expect([...referencedSecrets(objects)].sort()).toEqual(['default/a', 'default/b', 'default/c', 'team/d', 'team/e']);
  });
});

describe('Events about Secrets', () => {
  const objects = [lb('web'), pool('app'), https({ secretName: 'web-tls' }), pool('re', { tls: { enabled: true, caSecretName: 'web-tls' } })] as AnyObject[];
  const good = () => materialsOf([{ name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': www.key, 'ca.crt': caPem } }]);

  it('missing, unreadable, invalid, rotated: on each object that names the Secret', () => {
    const at = (e: { kind: string; name: string; reason: string; type: string }) => `${e.type} ${e.reason} ${e.kind}/${e.name}`;
    expect(secretEvents({ namespace: 'default', name: 'web-tls', state: 'missing', rotated: false }, objects, materialsOf([])).map(at)).toEqual([
      'Warning SecretMissing Listener/https',
      'Warning SecretMissing Pool/re',
    ]);
    expect(
      secretEvents({ namespace: 'default', name: 'web-tls', state: 'unreadable', rotated: false, message: '403' }, objects, materialsOf([])).map(at),
    ).toEqual(['Warning SecretUnreadable Listener/https', 'Warning SecretUnreadable Pool/re']);
    expect(secretEvents({ namespace: 'default', name: 'web-tls', state: 'present', rotated: true }, objects, good()).map(at)).toEqual([
      'Normal SecretRotated Listener/https',
      'Normal SecretRotated Pool/re',
    ]);
    expect(secretEvents({ namespace: 'default', name: 'web-tls', state: 'present', rotated: false }, objects, good())).toEqual([]);
    const broken = materialsOf([{ name: 'web-tls', data: { 'tls.crt': www.crt, 'tls.key': other.key, 'ca.crt': caPem } }]);
    const events = secretEvents({ namespace: 'default', name: 'web-tls', state: 'present', rotated: true }, objects, broken);
    expect(events.map(at)).toEqual(['Warning SecretInvalid Listener/https', 'Normal SecretRotated Pool/re']);
    expect(events[0]?.message).toMatch(/does not belong to the certificate/);
    for (const e of events) noKeyMaterial(e.message);
    expect(secretEvents({ namespace: 'other', name: 'web-tls', state: 'missing', rotated: false }, objects, good())).toEqual([]);
  });
});

describe('the in-test API server: Secrets and reviews', () => {
  const api = new FakeApiServer();
  const secret = (data: Record<string, string>, more: object = {}) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 's', namespace: 'default' },
    type: 'kubernetes.io/tls',
    data,
    ...more,
  });

  it("keeps the apiserver's Secret rules: required TLS keys, immutable type and immutable data, key names", () => {
    expect(() => api.create(secret({ 'tls.crt': b64('x') }))).toThrow(ApiError);
    const created = api.create(secret({ 'tls.crt': b64('x'), 'tls.key': b64('y') }, { immutable: true }));
    expect(() => api.update({ ...created, type: 'Opaque' })).toThrow(/field is immutable/);
    expect(() => api.update({ ...created, data: { 'tls.crt': b64('z'), 'tls.key': b64('y') } })).toThrow(/immutable/);
    expect(() => api.create({ ...secret({ 'bad key': b64('x') }), type: 'Opaque', metadata: { name: 't', namespace: 'default' } })).toThrow(/valid config key/);
    api.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'u', namespace: 'default' }, stringData: { a: 'b' } });
    expect(api.get('v1', 'secrets', 'default', 'u') as { type: string; data: Record<string, string> }).toMatchObject({ type: 'Opaque', data: { a: b64('b') } });
  });

  it('answers TokenReviews and SubjectAccessReviews over HTTP, from declared tokens and grants', async () => {
    await api.start();
    try {
      api.reviews.addToken('t1', { username: 'prom', groups: ['monitoring'] });
      api.reviews.allow({ subject: 'group:monitoring', verbs: ['get'], nonResourceURLs: ['/metrics'] });
      const post = async (path: string, body: object) => {
        const r = await fetch(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { code: r.status, body: (await r.json()) as { status?: Record<string, unknown> } };
      };
      const tr = await post('/apis/authentication.k8s.io/v1/tokenreviews', { spec: { token: 't1' } });
      expect(tr.code).toBe(201);
      expect(tr.body.status).toMatchObject({ authenticated: true, user: { username: 'prom', groups: ['monitoring', 'system:authenticated'] } });
      expect((await post('/apis/authentication.k8s.io/v1/tokenreviews', { spec: { token: 'nope' } })).body.status).toMatchObject({ authenticated: false });
      expect((await post('/apis/authentication.k8s.io/v1/tokenreviews', { spec: {} })).code).toBe(422);
      const sar = (user: string, groups: string[], path: string) =>
        post('/apis/authorization.k8s.io/v1/subjectaccessreviews', { spec: { user, groups, nonResourceAttributes: { path, verb: 'get' } } });
      expect((await sar('prom', ['monitoring'], '/metrics')).body.status).toMatchObject({ allowed: true });
      expect((await sar('prom', ['monitoring'], '/status')).body.status).toMatchObject({ allowed: false });
      expect((await sar('someone', [], '/metrics')).body.status).toMatchObject({ allowed: false });
      expect((await post('/apis/authorization.k8s.io/v1/subjectaccessreviews', { spec: { user: 'x' } })).code).toBe(422);
    } finally {
      await api.stop();
    }
  });
});

describe('--metrics-listen: /metrics behind TokenReview and SubjectAccessReview', () => {
  it('401 without or with an unknown token, 403 without the permission, 404 elsewhere, metrics for the scraper; answers cached', async () => {
    const { server: api, kubeConfig: kc } = await startFakeApiServer();
    const { serveSecureMetrics } = await import('../../src/cli/metrics-server.js');
    const { runCommand } = await import('../../src/exec/run.js');
    const { createLogger } = await import('../../src/log/logger.js');
    api.reviews.addToken('prom-token', { username: 'prom' });
    api.reviews.addToken('app-token', { username: 'app' });
    api.reviews.allow({ subject: 'prom', verbs: ['get'], nonResourceURLs: ['/metrics'] });
    const stateDir = await mkdtemp(join(tmpdir(), 'nslb-metrics-unit-'));
    const server = await serveSecureMetrics({
      listen: '127.0.0.1:0',
      kubeConfig: kc,
      stateDir,
      run: runCommand,
      logger: createLogger('silent'),
      render: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'nslb_up 1\n' }),
    });
    try {
      await new Promise((r) => (server.listening ? r(undefined) : server.once('listening', r)));
      const port = (server.address() as { port: number }).port;
      const { request } = await import('node:https');
      const get = (path: string, token?: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(
            { host: '127.0.0.1', port, path, rejectUnauthorized: false, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } },
            (res) => {
              let body = '';
              res.on('data', (c) => {
                body += String(c);
              });
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on('error', reject);
          req.end();
        });
      expect((await get('/metrics')).status).toBe(401);
      expect((await get('/status')).status).toBe(401);
      expect((await get('/metrics', 'wrong')).status).toBe(401);
      expect((await get('/metrics', 'app-token')).status).toBe(403);
      expect(await get('/metrics', 'prom-token')).toEqual({ status: 200, body: 'nslb_up 1\n' });
      expect((await get('/status', 'prom-token')).status).toBe(403);
      const reviews = api.reviews.counts.tokenReviews;
      await get('/metrics', 'prom-token');
      expect(api.reviews.counts.tokenReviews).toBe(reviews);
      // The API server gone: refused (503), never let through.
      await api.stop();
      expect((await get('/metrics', 'new-token')).status).toBe(503);
    } finally {
      server.close();
      await api.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
