// Issue 7, acceptance 6 on the real node: re-encryption to members. Members behind TLS are reached over TLS
// and verified against Pool.tls.caFile (a wrong CA gives 503, the right one serves), a CRL takes a revoked
// member out, a client certificate satisfies members that demand one, and HTTPS health monitors use the same
// TLS settings (ONLINE for the good member, ERROR for the revoked one).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, type Leaf } from '../support/pki.js';
import { httpGet, httpGetMany, type EchoReply, type Host } from './harness.js';
import { FAST_MONITOR, ParityEnv, healthMonitor, listener, loadBalancer, member, pool, tally, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(12);

describe('TLS to members: verified, revocable, with a client certificate, monitored', () => {
  let m1: Host, m2: Host, m3: Host, m4: Host, client: Host;
  let reencDocs: ApiDoc[] = [];
  let vip: string;
  let memberCa: TestCa, wrongCa: TestCa, clientCa: TestCa;
  let lbClient: Leaf;

  beforeAll(async () => {
    await env.start();
    m1 = await env.host('m1', 11);
    m2 = await env.host('m2', 12);
    m3 = await env.host('m3', 13);
    m4 = await env.host('m4', 14);
    client = await env.host('c', 100);
    vip = env.vip(1);
    memberCa = await TestCa.create(join(env.root, 'pki', 'members'), 'nslb e2e member CA');
    wrongCa = await TestCa.create(join(env.root, 'pki', 'wrong'), 'nslb e2e wrong CA');
    clientCa = await TestCa.create(join(env.root, 'pki', 'clients'), 'nslb e2e client CA');
    const good = await memberCa.issue('m1.members.test', { dnsNames: ['m1.members.test'] });
    const revoked = await memberCa.issue('m2.members.test', { dnsNames: ['m2.members.test'] });
    const picky = await memberCa.issue('m3.members.test', { dnsNames: ['m3.members.test'] });
    const fourth = await memberCa.issue('m4.members.test', { dnsNames: ['m4.members.test'] });
    await memberCa.revoke(revoked);
    const crl = await memberCa.writeCrl();
    lbClient = await clientCa.issue('nslb-lb', { usage: 'client' });

    await env.writeWatched('tls/member-ca.pem', await readFile(memberCa.certFile));
    await env.writeWatched('tls/wrong-ca.pem', await readFile(wrongCa.certFile));
    await env.writeWatched('tls/member-crl.pem', await readFile(crl));
    await env.writeWatched('tls/lb-client.pem', await readFile(lbClient.certFile));
    await env.writeWatched('tls/lb-client.key', await readFile(lbClient.keyFile));

    await env.server(m1, { port: 8443, name: 'tls m1', tls: good });
    await env.server(m2, { port: 8443, name: 'tls m2 revoked', tls: revoked });
    await env.server(m3, { port: 8443, name: 'tls m3 picky', tls: { ...picky, clientCaFile: clientCa.certFile } });
    await env.server(m4, { port: 8443, name: 'tls m4', tls: fourth });

    const lb = 'reenc';
    const pair = (name: string, port: number, tls: Record<string, unknown>, members: [string, Host][], monitored = false) => [
      listener(`${name}-l`, { loadBalancer: lb, protocol: 'HTTP', port, defaultPool: `${name}-p` }),
      pool(`${name}-p`, { loadBalancer: lb, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN', tls: { enabled: true, ...tls } }),
      ...members.map(([m, host]) => member(`${name}-${m}`, { pool: `${name}-p`, address: host.address, port: 8443 })),
      ...(monitored ? [healthMonitor(`${name}-hm`, { pool: `${name}-p`, type: 'HTTPS', urlPath: '/healthz', ...FAST_MONITOR })] : []),
    ];
    reencDocs = [
      loadBalancer(lb, { vip: { address: vip } }),
      ...pair('right', 8001, { caFile: 'tls/member-ca.pem' }, [['m1', m1]]),
      ...pair('wrong', 8002, { caFile: 'tls/wrong-ca.pem' }, [['m1', m1]]),
      ...pair(
        'crl',
        8003,
        { caFile: 'tls/member-ca.pem', crlFile: 'tls/member-crl.pem', versions: ['TLSv1.2', 'TLSv1.3'] },
        [
          ['m1', m1],
          ['m2', m2],
        ],
        true,
      ),
      ...pair('cert', 8004, { caFile: 'tls/member-ca.pem', certificateFile: 'tls/lb-client.pem', keyFile: 'tls/lb-client.key' }, [['m3', m3]]),
      ...pair('nocert', 8005, { caFile: 'tls/member-ca.pem' }, [['m3', m3]]),
    ];
    await env.apply('reenc.yaml', reencDocs);
    await env.waitForResponse(client, `http://${vip}:8001/`, ['LoadBalancer/reenc', 'Listener/right-l', 'Pool/right-p'], { body: 'tls m1' });
  });

  afterAll(() => env.cleanup());

  it('6a. members behind TLS are reached over TLS, verified against the right CA; a wrong CA gives 503', async () => {
    const echo = JSON.parse((await httpGet(client, `http://${vip}:8001/__echo`)).body) as EchoReply;
    expect(echo).toMatchObject({ name: 'tls m1', tls: true });
    // HAProxy retries a failed connection 3 times about a second apart before it answers 503.
    expect((await httpGet(client, `http://${vip}:8002/`, { timeoutMs: 15_000 })).status).toBe(503);
  });

  it('6b. a CRL takes a revoked member out; the HTTPS monitor, with the same TLS settings, marks the good one ONLINE', async () => {
    await env.waitForOperating({ 'Member/crl-m1': 'ONLINE', 'Member/crl-m2': 'ERROR', 'Pool/crl-p': 'DEGRADED' });
    expect(tally(await httpGetMany(client, `http://${vip}:8003/`, 6))).toEqual({ 'tls m1': 6 });
  });

  it('6c. a client certificate to members satisfies a member that demands one; without it, no answer from it', async () => {
    const echo = JSON.parse((await httpGet(client, `http://${vip}:8004/__echo`)).body) as EchoReply;
    expect(echo).toMatchObject({ name: 'tls m3 picky', tls: true, clientCertificate: 'nslb-lb' });
    // Under TLS 1.3 the member refuses after the handshake, when HAProxy already sent the request: 502.
    expect([502, 503]).toContain((await httpGet(client, `http://${vip}:8005/`)).status);
  });

  it('6d. a member added to a verified pool (runtime API or reload) is reached with the same TLS settings', async () => {
    await env.apply('reenc.yaml', [...reencDocs, member('right-m4', { pool: 'right-p', address: m4.address, port: 8443 })]);
    await env.waitForActive(['Member/right-m4']);
    await env.waitForResponse(client, `http://${vip}:8001/`, ['Member/right-m4'], { body: 'tls m4' });
    expect(tally(await httpGetMany(client, `http://${vip}:8001/`, 4))).toEqual({ 'tls m1': 2, 'tls m4': 2 });
  });
});
