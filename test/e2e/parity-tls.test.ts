// Issue 3, acceptance 1 and 2: TLS termination with a certificate made in the test (verified against its
// CA) and SNI; TLS passthrough; TLS to members; PROXY v1 and v2 headers reaching a member that parses them.
// Also X-Forwarded-Proto/Port on a TERMINATED_HTTPS listener (acceptance 7's "https" half).
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, httpGet, httpGetMany, tlsPeerCertificate, type EchoReply, type Host, type TestPki } from './harness.js';
import { ParityEnv, listener, loadBalancer, member, pool, tally } from './parity-env.js';

const env = ParityEnv.create(4);
const WWW = 'www.example.test';
const API = 'api.example.test';
const MEMBER = 'member.example.test';

describe('parity: TLS termination, SNI, passthrough, TLS to members, PROXY protocol', () => {
  let m1: Host, m2: Host, client: Host;
  let pki: TestPki;
  let ca: string;

  /** curl arguments that resolve `name` to the VIP and verify the server against the test CA. */
  const verified = (name: string, vip: string, port = 443): string[] => ['--cacert', ca, '--resolve', `${name}:${port}:${vip}`];

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    client = await env.host('c', 100);
    pki = await createTestPki(join(env.root, 'pki'), [
      { name: WWW, dnsNames: [WWW] },
      { name: API, dnsNames: [API] },
      { name: MEMBER, dnsNames: [MEMBER] },
    ]);
    ca = pki.caCert;
    // The listener's certificates live in the watched directory, as a GitOps checkout would hold them.
    for (const name of [WWW, API]) {
      const leaf = pki.leaves.get(name)!;
      await env.writeWatched(`certs/${name}.pem`, await readFile(leaf.certFile));
      await env.writeWatched(`certs/${name}.key`, await readFile(leaf.keyFile));
    }
    const memberTls = pki.leaves.get(MEMBER)!;
    await env.server(m1, { port: 8080, name: 'member m1' });
    await env.server(m1, { port: 8443, name: 'tls m1', tls: memberTls });
    await env.server(m2, { port: 8443, name: 'tls m2', tls: memberTls });
    await env.server(m1, { port: 8090, name: 'proxy m1', proxyProtocol: true });
  });

  afterAll(() => env.cleanup());

  const terminatedTls = {
    certificateFile: `certs/${WWW}.pem`,
    keyFile: `certs/${WWW}.key`,
    sniCertificates: [{ certificateFile: `certs/${API}.pem`, keyFile: `certs/${API}.key` }],
  };

  it('1. TERMINATED_HTTPS: the member answers over HTTPS verified against the test CA; SNI picks the certificate', async () => {
    const vip = env.vip(1);
    await env.apply('term.yaml', [
      loadBalancer('term', { vip: { address: vip } }),
      listener('term-l', {
        loadBalancer: 'term',
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'term-p',
        insertHeaders: { 'X-Forwarded-For': true, 'X-Forwarded-Port': true, 'X-Forwarded-Proto': true },
        tls: terminatedTls,
      }),
      pool('term-p', { loadBalancer: 'term', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('term-m1', { pool: 'term-p', address: m1.address, port: 8080 }),
    ]);
    const keys = ['LoadBalancer/term', 'Listener/term-l', 'Pool/term-p'];
    await env.waitForResponse(client, `https://${WWW}/`, keys, { curlArgs: verified(WWW, vip), body: 'member m1' });

    // curl checks the chain and the host name: the API name only verifies if HAProxy picked the SNI certificate.
    const api = await httpGet(client, `https://${API}/`, { curlArgs: verified(API, vip) });
    expect(api.error).toBeNull();
    expect(api).toMatchObject({ status: 200, body: 'member m1\n' });

    const bySni = async (servername?: string) => (await tlsPeerCertificate(client, vip, 443, servername)).subject;
    expect(await bySni(API)).toBe(API);
    expect(await bySni(WWW)).toBe(WWW);
    expect(await bySni('other.example.test')).toBe(WWW); // unknown name: the default certificate
    expect(await bySni()).toBe(WWW); // no SNI at all
    expect((await tlsPeerCertificate(client, vip, 443, API)).issuer).toBe('nslb e2e CA');

    // What the member sees behind TLS termination: plain HTTP with the forwarded headers.
    const echo = JSON.parse((await httpGet(client, `https://${WWW}/__echo`, { curlArgs: verified(WWW, vip) })).body) as EchoReply;
    expect(echo.tls).toBe(false);
    expect(echo.headers).toMatchObject({ 'x-forwarded-for': client.address, 'x-forwarded-port': '443', 'x-forwarded-proto': 'https' });

    // TLS material is copied under the load balancer's certs/ with mode 0600, and never logged.
    const certsDir = join(env.lbDir('term'), 'certs');
    const files = await readdir(certsDir);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect((await stat(join(certsDir, f))).mode & 0o777, f).toBe(0o600);
    const keyBody = (await readFile(pki.leaves.get(WWW)!.keyFile, 'utf8')).split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
    expect(keyBody.length).toBeGreaterThan(0);
    const logs = env.agent!.logs.join('\n');
    for (const line of keyBody) expect(logs.includes(line), 'private key material in the agent log').toBe(false);
  });

  it('2a. HTTPS passthrough: the client completes TLS with the member itself (its certificate), balanced', async () => {
    const vip = env.vip(2);
    await env.apply('pass.yaml', [
      loadBalancer('pass', { vip: { address: vip } }),
      listener('pass-l', { loadBalancer: 'pass', protocol: 'HTTPS', port: 443, defaultPool: 'pass-p' }),
      pool('pass-p', { loadBalancer: 'pass', protocol: 'HTTPS', lbAlgorithm: 'ROUND_ROBIN' }),
      member('pass-m1', { pool: 'pass-p', address: m1.address, port: 8443 }),
      member('pass-m2', { pool: 'pass-p', address: m2.address, port: 8443 }),
    ]);
    const keys = ['LoadBalancer/pass', 'Listener/pass-l', 'Pool/pass-p'];
    await env.waitForResponse(client, `https://${MEMBER}/`, keys, { curlArgs: verified(MEMBER, vip) });
    const bodies = await httpGetMany(client, `https://${MEMBER}/`, 4, { curlArgs: verified(MEMBER, vip) });
    expect(tally(bodies)).toEqual({ 'tls m1': 2, 'tls m2': 2 });
    expect((await tlsPeerCertificate(client, vip, 443, MEMBER)).subject).toBe(MEMBER);
    const echo = JSON.parse((await httpGet(client, `https://${MEMBER}/__echo`, { curlArgs: verified(MEMBER, vip) })).body) as EchoReply;
    // The member terminated TLS and saw the client's SNI: nothing in between decrypted it.
    expect(echo).toMatchObject({ tls: true, servername: MEMBER });
  });

  it('2b. TLS to members: an HTTP listener re-encrypts to a pool with tls.enabled', async () => {
    const vip = env.vip(3);
    await env.apply('reenc.yaml', [
      loadBalancer('reenc', { vip: { address: vip } }),
      listener('reenc-l', { loadBalancer: 'reenc', protocol: 'HTTP', port: 80, defaultPool: 'reenc-p' }),
      pool('reenc-p', { loadBalancer: 'reenc', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN', tls: { enabled: true } }),
      // This member speaks only TLS: a plain HTTP request to it gets no answer.
      member('reenc-m1', { pool: 'reenc-p', address: m1.address, port: 8443 }),
    ]);
    const keys = ['LoadBalancer/reenc', 'Listener/reenc-l', 'Pool/reenc-p', 'Member/reenc-m1'];
    await env.waitForResponse(client, `http://${vip}/`, keys, { body: 'tls m1' });
    const echo = JSON.parse((await httpGet(client, `http://${vip}/__echo`)).body) as EchoReply;
    expect(echo).toMatchObject({ name: 'tls m1', tls: true });
  });

  it('2c. TLS to members behind TERMINATED_HTTPS: decrypted at the VIP, encrypted again to the member', async () => {
    const vip = env.vip(4);
    await env.apply('reenc-t.yaml', [
      loadBalancer('reenct', { vip: { address: vip } }),
      listener('reenct-l', { loadBalancer: 'reenct', protocol: 'TERMINATED_HTTPS', port: 443, defaultPool: 'reenct-p', tls: terminatedTls }),
      pool('reenct-p', { loadBalancer: 'reenct', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN', tls: { enabled: true } }),
      member('reenct-m1', { pool: 'reenct-p', address: m1.address, port: 8443 }),
    ]);
    const keys = ['LoadBalancer/reenct', 'Listener/reenct-l', 'Pool/reenct-p', 'Member/reenct-m1'];
    await env.waitForResponse(client, `https://${WWW}/`, keys, { curlArgs: verified(WWW, vip), body: 'tls m1' });
    expect((await tlsPeerCertificate(client, vip, 443, WWW)).subject).toBe(WWW); // the VIP's certificate, not the member's
    const echo = JSON.parse((await httpGet(client, `https://${WWW}/__echo`, { curlArgs: verified(WWW, vip) })).body) as EchoReply;
    expect(echo).toMatchObject({ name: 'tls m1', tls: true });
  });

  it('2d. PROXY and PROXYV2 pools: the member parses the header and sees the client address', async () => {
    const vip = env.vip(5);
    const cases = [
      { name: 'tcp-v1', listener: 'TCP', port: 9001, pool: 'PROXY', version: 1 },
      { name: 'tcp-v2', listener: 'TCP', port: 9002, pool: 'PROXYV2', version: 2 },
      { name: 'http-v1', listener: 'HTTP', port: 8001, pool: 'PROXY', version: 1 },
      { name: 'http-v2', listener: 'HTTP', port: 8002, pool: 'PROXYV2', version: 2 },
    ] as const;
    await env.apply('proxy.yaml', [
      loadBalancer('proxy', { vip: { address: vip } }),
      ...cases.flatMap((c) => [
        listener(`px-${c.name}`, { loadBalancer: 'proxy', protocol: c.listener, port: c.port, defaultPool: `px-${c.name}-p` }),
        pool(`px-${c.name}-p`, { loadBalancer: 'proxy', protocol: c.pool, lbAlgorithm: 'ROUND_ROBIN' }),
        member(`px-${c.name}-m`, { pool: `px-${c.name}-p`, address: m1.address, port: 8090 }),
      ]),
    ]);
    for (const c of cases) {
      const url = `http://${vip}:${c.port}/__echo`;
      const response = await env.waitForResponse(client, url, ['LoadBalancer/proxy', `Listener/px-${c.name}`, `Pool/px-${c.name}-p`]);
      const echo = JSON.parse(response.body) as EchoReply;
      expect(echo.proxy, c.name).toMatchObject({
        version: c.version,
        command: 'PROXY',
        protocol: 'TCP4',
        sourceAddress: client.address,
        destinationAddress: vip,
        destinationPort: c.port,
      });
      // The TCP peer is the load balancer: the client's address arrived only through the header.
      expect(echo.remoteAddress, c.name).toBe(vip);
    }
  });
});
