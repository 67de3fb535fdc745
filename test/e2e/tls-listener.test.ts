// Issue 7, acceptance 1-5 on the real node: client certificates (MANDATORY, OPTIONAL, CRL, two CAs, the
// X-SSL-Client-* headers), SNI, ALPN and HTTP/2, HSTS, TLS versions and ciphers of TERMINATED_HTTPS
// listeners. One load balancer with one listener per setting, so that keeping them apart is tested too.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, type Leaf } from '../support/pki.js';
import { httpGet, runCommand, tlsPeerCertificate, type EchoReply, type Host } from './harness.js';
import { ParityEnv, listener, loadBalancer, member, pool } from './parity-env.js';
import { opensslConnect, tlsHandshake } from './tls-tools.js';

const env = ParityEnv.create(10);
const WWW = 'www.example.test';
const API = 'api.example.test';
const SHOP = 'shop.example.test';

// Listener ports on the one VIP.
const MANDATORY = 443;
const OPTIONAL = 8443;
const OTHER_CA = 9443;
const OLD_TLS = 10443;
const HTTP1_FIRST = 11443;
const STRICT = 12443;

describe('TLS listeners: client certificates, SNI, ALPN, HSTS, versions and ciphers', () => {
  let m1: Host, client: Host;
  let vip: string;
  let caA: TestCa, caB: TestCa;
  let alice: Leaf, mallory: Leaf, bob: Leaf;

  /** curl against the VIP as `name`, verifying the server with CA A, with a client certificate if given. */
  const get = (port: number, who?: Leaf, extra: string[] = [], path = '/') =>
    httpGet(client, `https://${WWW}:${port}${path}`, {
      curlArgs: ['--cacert', caA.certFile, '--resolve', `${WWW}:${port}:${vip}`, ...(who ? ['--cert', who.certFile, '--key', who.keyFile] : []), ...extra],
    });

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    vip = env.vip(1);
    caA = await TestCa.create(join(env.root, 'pki', 'a'), 'nslb e2e CA A');
    caB = await TestCa.create(join(env.root, 'pki', 'b'), 'nslb e2e CA B');
    const servers = new Map<string, Leaf>();
    for (const name of [WWW, API, SHOP]) servers.set(name, await caA.issue(name, { dnsNames: [name] }));
    alice = await caA.issue('alice', { usage: 'client' });
    mallory = await caA.issue('mallory', { usage: 'client' });
    bob = await caB.issue('bob', { usage: 'client' });
    await caA.revoke(mallory);
    const crl = await caA.writeCrl();
    for (const [name, leaf] of servers) {
      await env.writeWatched(`certs/${name}.pem`, await readFile(leaf.certFile));
      await env.writeWatched(`certs/${name}.key`, await readFile(leaf.keyFile));
    }
    await env.writeWatched('certs/ca-a.pem', await readFile(caA.certFile));
    await env.writeWatched('certs/crl-a.pem', await readFile(crl));
    await env.writeWatched('certs/ca-b.pem', await readFile(caB.certFile));
    await env.server(m1, { port: 8080, name: 'member m1' });

    const cert = (name: string) => ({ certificateFile: `certs/${name}.pem`, keyFile: `certs/${name}.key` });
    const common = { loadBalancer: 'tls1', protocol: 'TERMINATED_HTTPS', defaultPool: 'tls1-p' };
    await env.apply('tls1.yaml', [
      loadBalancer('tls1', { vip: { address: vip } }),
      listener('mand', {
        ...common,
        port: MANDATORY,
        insertHeaders: {
          'X-SSL-Client-Verify': true,
          'X-SSL-Client-Has-Cert': true,
          'X-SSL-Client-DN': true,
          'X-SSL-Client-CN': true,
          'X-SSL-Issuer': true,
          'X-SSL-Client-SHA1': true,
          'X-SSL-Client-Not-Before': true,
          'X-SSL-Client-Not-After': true,
        },
        tls: {
          ...cert(WWW),
          sniCertificates: [cert(API)],
          clientAuthentication: 'MANDATORY',
          clientCaFile: 'certs/ca-a.pem',
          clientCrlFile: 'certs/crl-a.pem',
          hsts: { maxAge: 31536000, includeSubdomains: true, preload: true },
        },
      }),
      listener('opt', {
        ...common,
        port: OPTIONAL,
        insertHeaders: { 'X-SSL-Client-Verify': true, 'X-SSL-Client-Has-Cert': true, 'X-SSL-Client-CN': true },
        tls: { ...cert(WWW), sniCertificates: [cert(API)], clientAuthentication: 'OPTIONAL', clientCaFile: 'certs/ca-a.pem', clientCrlFile: 'certs/crl-a.pem' },
      }),
      listener('other', { ...common, port: OTHER_CA, tls: { ...cert(SHOP), clientAuthentication: 'MANDATORY', clientCaFile: 'certs/ca-b.pem' } }),
      listener('old', { ...common, port: OLD_TLS, tls: { ...cert(WWW), versions: ['TLSv1.1', 'TLSv1.2'], ciphers: 'DEFAULT:@SECLEVEL=0' } }),
      listener('h1first', { ...common, port: HTTP1_FIRST, tls: { ...cert(WWW), alpnProtocols: ['http/1.1', 'h2'] } }),
      listener('strict', { ...common, port: STRICT, tls: { ...cert(WWW), versions: ['TLSv1.2'], ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' } }),
      pool('tls1-p', { loadBalancer: 'tls1', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('tls1-m1', { pool: 'tls1-p', address: m1.address, port: 8080 }),
    ]);
    await env.waitForResponse(client, `https://${WWW}:${OPTIONAL}/`, ['LoadBalancer/tls1', 'Listener/opt', 'Listener/mand', 'Pool/tls1-p'], {
      curlArgs: ['--cacert', caA.certFile, '--resolve', `${WWW}:${OPTIONAL}:${vip}`],
      body: 'member m1',
    });
  });

  afterAll(() => env.cleanup());

  it('1a. MANDATORY refuses no certificate and a revoked one, admits a valid one', async () => {
    expect((await get(MANDATORY)).status).toBe(0);
    expect((await get(MANDATORY, mallory)).status).toBe(0);
    expect(await get(MANDATORY, alice)).toMatchObject({ status: 200, body: 'member m1\n' });
  });

  it('1b. OPTIONAL admits no certificate and a valid one, refuses a revoked one', async () => {
    expect(await get(OPTIONAL)).toMatchObject({ status: 200, body: 'member m1\n' });
    expect(await get(OPTIONAL, alice)).toMatchObject({ status: 200, body: 'member m1\n' });
    expect((await get(OPTIONAL, mallory)).status).toBe(0);
  });

  it('1c. two listeners with different CAs each admit only their own clients', async () => {
    expect((await get(MANDATORY, bob)).status).toBe(0);
    expect((await get(OTHER_CA, alice, ['--cacert', caA.certFile, '--resolve', `${SHOP}:${OTHER_CA}:${vip}`])).status).toBe(0);
    const shop = await httpGet(client, `https://${SHOP}:${OTHER_CA}/`, {
      curlArgs: ['--cacert', caA.certFile, '--resolve', `${SHOP}:${OTHER_CA}:${vip}`, '--cert', bob.certFile, '--key', bob.keyFile],
    });
    expect(shop).toMatchObject({ status: 200, body: 'member m1\n' });
    expect((await get(OPTIONAL, bob)).status).toBe(0);
  });

  it('1d. X-SSL-Client-* headers carry the verify result, DN, CN, issuer, SHA1 and validity to the member', async () => {
    const echo = JSON.parse((await get(MANDATORY, alice, ['-H', 'X-SSL-Client-CN: forged'], '/__echo')).body) as EchoReply;
    const x509 = new X509Certificate(await readFile(alice.certFile));
    const asn1Time = (d: string) => new Date(d).toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
    expect(echo.headers).toMatchObject({
      'x-ssl-client-verify': '0',
      'x-ssl-client-has-cert': '1',
      'x-ssl-client-cn': 'alice',
      'x-ssl-client-dn': '/CN=alice',
      'x-ssl-issuer': '/CN=nslb e2e CA A',
      'x-ssl-client-sha1': x509.fingerprint.replaceAll(':', '').toUpperCase(),
      'x-ssl-client-not-before': asn1Time(x509.validFrom),
      'x-ssl-client-not-after': asn1Time(x509.validTo),
    });
    // Without a certificate: verify and has-cert say so, and a header the client made up is not passed on.
    const none = JSON.parse((await get(OPTIONAL, undefined, ['-H', 'X-SSL-Client-CN: forged'], '/__echo')).body) as EchoReply;
    expect(none.headers).toMatchObject({ 'x-ssl-client-verify': '0', 'x-ssl-client-has-cert': '0' });
    expect(none.headers['x-ssl-client-cn']).toBeUndefined();
    const withCert = JSON.parse((await get(OPTIONAL, alice, [], '/__echo')).body) as EchoReply;
    expect(withCert.headers).toMatchObject({ 'x-ssl-client-has-cert': '1', 'x-ssl-client-cn': 'alice' });
  });

  it('2. SNI: no SNI or an unknown name gets the default certificate, each name its own, listeners kept apart', async () => {
    const subject = async (port: number, servername?: string) => (await tlsPeerCertificate(client, vip, port, servername)).subject;
    expect(await subject(OPTIONAL)).toBe(WWW);
    expect(await subject(OPTIONAL, 'unknown.example.test')).toBe(WWW);
    expect(await subject(OPTIONAL, WWW)).toBe(WWW);
    expect(await subject(OPTIONAL, API)).toBe(API);
    // SHOP is another listener's certificate: this one does not serve it.
    expect(await subject(OPTIONAL, SHOP)).toBe(WWW);
    expect(await subject(OTHER_CA, API)).toBe(SHOP);
    expect(await subject(OTHER_CA)).toBe(SHOP);
    // curl verifies the name: only right if HAProxy picked the SNI certificate.
    const api = await httpGet(client, `https://${API}:${OPTIONAL}/`, { curlArgs: ['--cacert', caA.certFile, '--resolve', `${API}:${OPTIONAL}:${vip}`] });
    expect(api).toMatchObject({ status: 200, body: 'member m1\n' });
  });

  it('3. ALPN: the first common protocol of the listener list; none when nothing is common; HTTP/2 with h2', async () => {
    expect((await tlsHandshake(client, vip, OPTIONAL, { servername: WWW, alpn: ['http/1.1', 'h2'] })).alpn).toBe('h2');
    expect((await tlsHandshake(client, vip, HTTP1_FIRST, { servername: WWW, alpn: ['h2', 'http/1.1'] })).alpn).toBe('http/1.1');
    const unsupported = await tlsHandshake(client, vip, OPTIONAL, { servername: WWW, alpn: ['spdy/3', 'h3'], request: true });
    expect(unsupported).toMatchObject({ ok: true, alpn: null, subject: WWW, response: 'HTTP/1.1 200 OK' });

    const version = async (port: number) => {
      const { stdout } = await runCommand([
        'ip',
        'netns',
        'exec',
        client.netns,
        'curl',
        '-s',
        '--http2',
        '-o',
        '/dev/null',
        '-w',
        '%{http_version}',
        '--cacert',
        caA.certFile,
        '--resolve',
        `${WWW}:${port}:${vip}`,
        `https://${WWW}:${port}/`,
      ]);
      return stdout;
    };
    expect(await version(OPTIONAL)).toBe('2');
    expect(await version(HTTP1_FIRST)).toBe('1.1');
  });

  it('4. HSTS equals what the fields ask for, and is absent where not configured', async () => {
    expect((await get(MANDATORY, alice)).headers['strict-transport-security']).toEqual(['max-age=31536000; includeSubDomains; preload']);
    expect((await get(OPTIONAL)).headers['strict-transport-security']).toBeUndefined();
  });

  it('5. versions and ciphers restrict what a client can negotiate: a TLS 1.1 client is refused by default', async () => {
    const tls11 = ['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', WWW];
    const refused = await opensslConnect(client, vip, OPTIONAL, tls11);
    expect(refused.ok, refused.output).toBe(false);
    const admitted = await opensslConnect(client, vip, OLD_TLS, tls11);
    expect(admitted.ok, admitted.output).toBe(true);
    expect(admitted.protocol).toBe('TLSv1.1');
    // The default range stops at TLS 1.2 from below; TLS 1.3 is in it.
    expect((await opensslConnect(client, vip, OPTIONAL, ['-tls1_3', '-servername', WWW])).protocol).toBe('TLSv1.3');
    // TLS 1.2 only, one cipher: another cipher and TLS 1.3 are refused.
    expect((await opensslConnect(client, vip, STRICT, ['-tls1_3', '-servername', WWW])).ok).toBe(false);
    expect((await opensslConnect(client, vip, STRICT, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256', '-servername', WWW])).ok).toBe(false);
    const strict = await opensslConnect(client, vip, STRICT, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384', '-servername', WWW]);
    expect(strict.ok, strict.output).toBe(true);
    expect(strict.output).toContain('ECDHE-ECDSA-AES256-GCM-SHA384');
  });
});
