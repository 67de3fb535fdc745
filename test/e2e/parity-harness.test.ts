// Proves the parity suite's own tools on this node, with no nslb involved: the member server's TLS, PROXY
// protocol, cookie, slow-request and health-code modes, and the harness's raw-connection, TLS-peer and PKI
// helpers. If this file fails, a red parity-*.test.ts says nothing about nslb.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, httpGet, rawExchange, tlsPeerCertificate, type EchoReply, type Host, type HttpServerHandle, type TestPki } from './harness.js';
import { ParityEnv, sleep } from './parity-env.js';

const env = ParityEnv.create(9);

/** A PROXY v2 header (TCP over IPv4) for src:sport → dst:dport. */
function proxyV2(src: string, dst: string, sport: number, dport: number): Buffer {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const head = Buffer.from([0x21, 0x11, 0x00, 12]);
  const addresses = Buffer.alloc(12);
  for (const [i, o] of src.split('.').entries()) addresses.writeUInt8(Number(o), i);
  for (const [i, o] of dst.split('.').entries()) addresses.writeUInt8(Number(o), 4 + i);
  addresses.writeUInt16BE(sport, 8);
  addresses.writeUInt16BE(dport, 10);
  return Buffer.concat([signature, head, addresses]);
}

function bodyOf(raw: string): string {
  return raw.slice(raw.indexOf('\r\n\r\n') + 4);
}

describe('parity harness (no nslb)', () => {
  let member: Host;
  let client: Host;
  let pki: TestPki;
  let plain: HttpServerHandle;
  let tls: HttpServerHandle;

  beforeAll(async () => {
    await env.start();
    member = await env.host('m1', 11);
    client = await env.host('c', 100);
    pki = await createTestPki(join(env.root, 'pki'), [{ name: 'member.example.test', dnsNames: ['member.example.test'] }]);
    const leaf = pki.leaves.get('member.example.test')!;
    plain = await env.server(member, { port: 8080, name: 'plain', setCookie: 'APPSESSION=plain-1' });
    tls = await env.server(member, { port: 8443, name: 'tls', tls: leaf });
    await env.server(member, { port: 8090, name: 'proxy', proxyProtocol: true });
    await env.server(member, { port: 8091, name: 'h204', healthStatus: 204 });
  });

  afterAll(() => env.cleanup());

  it('makes a CA and a leaf certificate that curl verifies, and serves HTTPS with it', async () => {
    expect(await readFile(pki.caCert, 'utf8')).toContain('BEGIN CERTIFICATE');
    const r = await httpGet(client, 'https://member.example.test:8443/__echo', {
      curlArgs: ['--cacert', pki.caCert, '--resolve', `member.example.test:8443:${member.address}`],
    });
    expect(r.status, r.error ?? '').toBe(200);
    const echo = JSON.parse(r.body) as EchoReply;
    expect(echo).toMatchObject({ name: 'tls', tls: true, servername: 'member.example.test', proxy: null });
    const peer = await tlsPeerCertificate(client, member.address, 8443, 'member.example.test');
    expect(peer).toMatchObject({ subject: 'member.example.test', issuer: 'nslb e2e CA', subjectAltName: 'DNS:member.example.test' });
    // Plain HTTP to the TLS port gets no HTTP answer.
    expect((await httpGet(client, `http://${member.address}:8443/`, { timeoutMs: 2000 })).status).not.toBe(200);
    await tls.setHealthStatus(503);
    expect((await httpGet(client, `${tls.url}/healthz`, { curlArgs: ['-k'] })).status).toBe(503);
    await tls.setHealthy(true);
  });

  it('parses PROXY v1 and v2 headers and echoes the original addresses; no header means proxy null', async () => {
    const request = 'GET /__echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const v1 = await rawExchange(client, member.address, 8090, { send: `PROXY TCP4 192.0.2.7 198.51.100.9 40001 443\r\n${request}` });
    expect(JSON.parse(bodyOf(v1.received)).proxy).toEqual({
      version: 1,
      command: 'PROXY',
      protocol: 'TCP4',
      sourceAddress: '192.0.2.7',
      destinationAddress: '198.51.100.9',
      sourcePort: 40001,
      destinationPort: 443,
    });
    const v2 = await rawExchange(client, member.address, 8090, {
      send: Buffer.concat([proxyV2('192.0.2.8', '198.51.100.10', 40002, 80), Buffer.from(request)]),
    });
    const echo = JSON.parse(bodyOf(v2.received)) as EchoReply;
    expect(echo.proxy).toEqual({
      version: 2,
      command: 'PROXY',
      protocol: 'TCP4',
      sourceAddress: '192.0.2.8',
      destinationAddress: '198.51.100.10',
      sourcePort: 40002,
      destinationPort: 80,
    });
    expect(echo.remoteAddress).toBe(client.address);
    const none = await httpGet(client, `http://${member.address}:8090/__echo`);
    expect(JSON.parse(none.body)).toMatchObject({ name: 'proxy', proxy: null });
  });

  it('sets the configured cookie, answers chosen status codes and 404 for missing paths', async () => {
    const r = await httpGet(client, `${plain.url}/`);
    expect(r.headers['set-cookie']).toEqual(['APPSESSION=plain-1; Path=/']);
    expect((await httpGet(client, `${plain.url}/__status/503`)).status).toBe(503);
    expect((await httpGet(client, `${plain.url}/__missing/healthz`)).status).toBe(404);
  });

  it('holds /__slow requests and counts them as in flight', async () => {
    const slow = httpGet(client, `${plain.url}/__slow?ms=1500`, { timeoutMs: 5000 });
    await sleep(300);
    expect(await plain.inflight()).toBe(1);
    const r = await slow;
    expect(r).toMatchObject({ status: 200, body: 'plain\n' });
    expect(await plain.inflight()).toBe(0);
  });

  it('answers /healthz with the configured code and logs method, path, version and Host of each check', async () => {
    const h204 = `http://${member.address}:8091`;
    expect((await httpGet(client, `${h204}/healthz?pool=a`, { curlArgs: ['-X', 'POST', '--http1.0'] })).status).toBe(204);
    expect((await httpGet(client, `${h204}/healthz?pool=b`, { curlArgs: ['-I'], headers: { Host: 'health.example.test' } })).status).toBe(204);
    const log = await httpGet(client, `${h204}/__health/log`);
    expect(JSON.parse(log.body)).toEqual([
      { method: 'POST', url: '/healthz?pool=a', httpVersion: '1.0', host: `${member.address}:8091` },
      { method: 'HEAD', url: '/healthz?pool=b', httpVersion: '1.1', host: 'health.example.test' },
    ]);
  });

  it('raw connections: a refused port closes at once, an idle HTTP connection stays open', async () => {
    const refused = await rawExchange(client, member.address, 8099, { waitMs: 2000 });
    expect(refused).toMatchObject({ connected: false, closed: true });
    expect(refused.error).toMatch(/ECONNREFUSED/);
    const idle = await rawExchange(client, member.address, 8080, { waitMs: 1500 });
    expect(idle).toMatchObject({ connected: true, closed: false, received: '' });
  });
});
