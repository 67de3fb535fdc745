// Issue 7, acceptance 8 on the real node: certificate and key material. Files 0600 under the load balancer's
// certs/, a rotated certificate served with no failed request, an expired certificate or a key of another
// certificate reported as ERROR while the previous good configuration keeps serving, no key material in the
// agent's log, and certs/ gone with the load balancer.
import { X509Certificate } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, type Leaf } from '../support/pki.js';
import { waitFor, type Host } from './harness.js';
import { ParityEnv, listener, loadBalancer, member, pool } from './parity-env.js';
import { startHttpsLoop, tlsHandshake } from './tls-tools.js';

const env = ParityEnv.create(11);
const WWW = 'www.example.test';

describe('TLS material: 0600 files, atomic rotation, refused bad material, removal', () => {
  let m1: Host, client: Host;
  let vip: string;
  let ca: TestCa;
  const serial = async (leaf: Leaf) => new X509Certificate(await readFile(leaf.certFile)).serialNumber.toUpperCase();
  const install = async (cert: Leaf, key: Leaf = cert) => {
    // Key first, then certificate: in between the pair does not match, which must not cost a request either.
    await env.writeWatched('certs/www.key', await readFile(key.keyFile));
    await env.writeWatched('certs/www.pem', await readFile(cert.certFile));
  };
  const listenerStatus = async () => (await env.status())?.objects.find((o) => o.kind === 'Listener' && o.name === 'mat-l')?.status;
  const certsDir = () => join(env.lbDir('mat'), 'certs');

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    vip = env.vip(1);
    ca = await TestCa.create(join(env.root, 'pki'), 'nslb e2e CA');
    await env.writeWatched('certs/ca.pem', await readFile(ca.certFile));
    await install(await ca.issue(WWW, { dnsNames: [WWW] }));
    await env.server(m1, { port: 8080, name: 'member m1' });
    await env.apply('mat.yaml', [
      loadBalancer('mat', { vip: { address: vip } }),
      listener('mat-l', {
        loadBalancer: 'mat',
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'mat-p',
        // A CA file too, so that every kind of material is on the node.
        tls: { certificateFile: 'certs/www.pem', keyFile: 'certs/www.key', clientAuthentication: 'OPTIONAL', clientCaFile: 'certs/ca.pem' },
      }),
      pool('mat-p', { loadBalancer: 'mat', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('mat-m1', { pool: 'mat-p', address: m1.address, port: 8080 }),
    ]);
    await env.waitForResponse(client, `https://${WWW}/`, ['LoadBalancer/mat', 'Listener/mat-l'], {
      curlArgs: ['--cacert', ca.certFile, '--resolve', `${WWW}:443:${vip}`],
      body: 'member m1',
    });
  });

  afterAll(() => env.cleanup());

  it('8a. certificate, key and CA are files of mode 0600 in a 0700 certs/ of the load balancer', async () => {
    const files = await readdir(certsDir());
    expect(files).toHaveLength(2); // the certificate+key bundle and the CA
    expect((await stat(certsDir())).mode & 0o777).toBe(0o700);
    for (const f of files) expect((await stat(join(certsDir(), f))).mode & 0o777, f).toBe(0o600);
  });

  it('8b. a rotated certificate is served after the change, with no failed request; the old file is removed', async () => {
    const before = await readdir(certsDir());
    const next = await ca.issue(`${WWW}-2`, { dnsNames: [WWW] });
    const loop = startHttpsLoop(client, { host: vip, port: 443, servername: WWW, ca: ca.certFile });
    try {
      await waitFor(async () => loop.ok() >= 5, { timeoutMs: 10_000, message: 'the HTTPS loop to get going' });
      await install(next);
      await loop.waitForSerial(await serial(next), 20_000);
      const after = loop.ok();
      await waitFor(async () => loop.ok() >= after + 5, { timeoutMs: 10_000, message: 'requests after the rotation' });
    } finally {
      await loop.stop();
    }
    expect(loop.failures()).toEqual([]);
    expect(loop.serials()).toHaveLength(2);
    const now = await readdir(certsDir());
    expect(now).toHaveLength(2);
    expect(now.filter((f) => !before.includes(f))).toHaveLength(1);
  });

  it('8c. an expired certificate, or a key of another certificate, is an ERROR and the last good one keeps serving', async () => {
    const serving = (await tlsHandshake(client, vip, 443, { servername: WWW })).subject;
    const servingSerial = (await readdir(certsDir())).sort().join(',');
    const expired = await ca.issue('old.example.test', { dnsNames: [WWW], expired: true });
    await install(expired);
    await waitFor(async () => (await listenerStatus())?.provisioningStatus === 'ERROR', { timeoutMs: 20_000, message: 'Listener ERROR' });
    const ready = (await listenerStatus())?.conditions.find((c) => c.type === 'Ready');
    expect(ready?.message).toMatch(/tls\.certificateFile: the certificate in "certs\/www\.pem" expired on 2020-01-02/);
    const still = await tlsHandshake(client, vip, 443, { servername: WWW, request: true });
    expect(still).toMatchObject({ ok: true, subject: serving, response: 'HTTP/1.1 200 OK' });
    expect((await readdir(certsDir())).sort().join(',')).toBe(servingSerial);

    const good = await ca.issue(`${WWW}-3`, { dnsNames: [WWW] });
    const stranger = await ca.issue('stranger.example.test');
    await install(good, stranger);
    await waitFor(async () => /does not belong to the certificate/.test((await listenerStatus())?.conditions.find((c) => c.type === 'Ready')?.message ?? ''), {
      timeoutMs: 20_000,
      message: 'Listener ERROR for the mismatched key',
    });
    expect((await listenerStatus())?.provisioningStatus).toBe('ERROR');
    expect(await tlsHandshake(client, vip, 443, { servername: WWW, request: true })).toMatchObject({ ok: true, subject: serving, response: 'HTTP/1.1 200 OK' });

    await install(good);
    await waitFor(async () => (await listenerStatus())?.provisioningStatus === 'ACTIVE', { timeoutMs: 20_000, message: 'Listener ACTIVE again' });
    await waitFor(async () => (await tlsHandshake(client, vip, 443, { servername: WWW })).subject === `${WWW}-3`, {
      timeoutMs: 20_000,
      message: 'the fixed certificate served',
    });
  });

  it('8d. no key material in the agent log', async () => {
    const keyFiles = (await readdir(ca.dir)).filter((f) => f.endsWith('.key'));
    const logs = env.agent!.logs.join('\n');
    let lines = 0;
    for (const f of keyFiles) {
      for (const line of (await readFile(join(ca.dir, f), 'utf8')).split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'))) {
        lines++;
        expect(logs.includes(line), `a line of ${f} in the agent log`).toBe(false);
      }
    }
    expect(lines).toBeGreaterThan(0);
  });

  it('8e. the material goes with the load balancer', async () => {
    await env.removeWatched('mat.yaml');
    await waitFor(
      async () =>
        await stat(env.lbDir('mat')).then(
          () => false,
          () => true,
        ),
      { timeoutMs: 20_000, message: 'state dir of mat removed' },
    );
  });
});
