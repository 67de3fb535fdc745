// Golden HAProxy configs: each fixture renders to test/golden/haproxy/<case>.cfg byte for byte
// (`vitest -u` rewrites them; review the diff), and each rendered config must pass the real `haproxy -c`.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SSL_CLIENT_HEADERS } from '../../src/api/v1alpha1/types.js';
import type { DesiredCertificate, DesiredLoadBalancer } from '../../src/desired/model.js';
import { expandExpectedCodes } from '../../src/plan/haproxy-backend.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import { assertSafeToken, backendName, frontendName, type HaproxyPaths, UnsafeConfigValueError } from '../../src/plan/haproxy-words.js';
import { certificate, l7Policy, l7Rule, listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';
import { TestCa } from '../support/pki.js';

const run = promisify(execFile);
const HAPROXY = '/usr/sbin/haproxy';

const PING_CHECK = fileURLToPath(new URL('../../scripts/ping-check.sh', import.meta.url));

// The paths the agent uses on a node (DESIGN §2), so that the goldens read like production configs and
// do not depend on where the repository is checked out. `haproxy -c` gets the same config rendered with
// real certificate files and the real ping-check script instead (see checkPaths).
const paths: HaproxyPaths = {
  socket: '/var/lib/nslb/lb/nslb-0123456789ab/haproxy.sock',
  stateFile: '/var/lib/nslb/lb/nslb-0123456789ab/server-state',
  certsDir: '/var/lib/nslb/lb/nslb-0123456789ab/certs',
  pingCheckCommand: '/usr/lib/node_modules/nslb/scripts/ping-check.sh',
  udpCheckCommand: '/usr/lib/node_modules/nslb/scripts/udp-check.sh',
  sctpCheckCommand: '/usr/lib/node_modules/nslb/scripts/sctp-check.sh',
};

// File names as the builder derives them (16 hex digits of the PEM's hash).
const CERT_WWW = certificate('1f0e2d3c4b5a6978.pem');
const CERT_API = certificate('a1b2c3d4e5f60718.pem');
const CERT_SHOP = certificate('0a1b2c3d4e5f6071.pem');
// CA bundles and CRLs are named the same way; haproxy -c gets a real CA and a real CRL under these names.
const CLIENT_CA = certificate('c0c0c0c0c0c0c0c0.pem');
const CLIENT_CRL = certificate('c1c1c1c1c1c1c1c1.pem');
const MEMBER_CA = certificate('c2c2c2c2c2c2c2c2.pem');
const LB_CLIENT = certificate('b0b0b0b0b0b0b0b0.pem');
const CA_FILES = new Set([CLIENT_CA.fileName, MEMBER_CA.fileName]);
const CRL_FILES = new Set([CLIENT_CRL.fileName]);

const cases: Record<string, DesiredLoadBalancer> = {
  'http-round-robin': loadBalancer({
    listeners: [listener('http', { defaultPool: 'web' })],
    pools: [
      pool('web', {
        members: [member('web-1', '10.202.0.11', 8080), member('web-2', '10.202.0.12', 8080)],
        healthMonitor: monitor({ expectedCodes: '200-204', urlPath: '/healthz' }),
      }),
    ],
  }),

  'tcp-least-connections-monitor-address': loadBalancer({
    listeners: [listener('postgres', { protocol: 'TCP', port: 5432, defaultPool: 'db' })],
    pools: [
      pool('db', {
        protocol: 'TCP',
        lbAlgorithm: 'LEAST_CONNECTIONS',
        members: [
          member('db-1', '10.202.0.21', 5432, { monitorAddress: '10.203.0.21', monitorPort: 9200 }),
          member('db-2', '10.202.0.22', 5432, { monitorPort: 9200 }),
          member('db-3', '10.202.0.23', 5432),
        ],
        healthMonitor: monitor({ type: 'TCP', delay: 10, timeout: 5, maxRetries: 3, maxRetriesDown: 2 }),
      }),
    ],
  }),

  'source-ip-backup-drain-admin-down': loadBalancer({
    listeners: [listener('sticky', { protocol: 'TCP', port: 443, defaultPool: 'app' })],
    pools: [
      pool('app', {
        protocol: 'TCP',
        lbAlgorithm: 'SOURCE_IP',
        members: [
          member('primary', '10.202.0.31', 443, { weight: 10 }),
          member('standby', '10.202.0.32', 443, { backup: true }),
          member('draining', '10.202.0.33', 443, { weight: 0 }),
          member('switched-off', '10.202.0.34', 443, { adminStateUp: false }),
        ],
        healthMonitor: monitor({ type: 'TCP' }),
      }),
    ],
  }),

  // `api` and `api-alt` share `web` (timeouts come from `api`, first by name); `raw` is a TCP listener on
  // an HTTP pool (stays tcp); `mixed` is used by an HTTP and a TCP listener (must be http); `spare` is unused.
  'shared-and-mixed-pools': loadBalancer({
    listeners: [
      listener('api', { defaultPool: 'web', timeouts: { clientData: 30000, memberConnect: 3000, memberData: 30000, tcpInspect: 0 } }),
      listener('api-alt', { port: 8080, defaultPool: 'web', timeouts: { clientData: 60000, memberConnect: 9000, memberData: 90000, tcpInspect: 0 } }),
      listener('raw', { protocol: 'TCP', port: 9000, defaultPool: 'http-over-tcp' }),
      listener('mixed-http', { port: 8081, defaultPool: 'mixed' }),
      listener('mixed-tcp', { protocol: 'TCP', port: 9001, defaultPool: 'mixed' }),
    ],
    pools: [
      pool('web', { members: [member('web-1', '10.202.0.11', 80)] }),
      pool('http-over-tcp', {
        members: [member('legacy-1', '10.202.0.41', 80)],
        healthMonitor: monitor({ urlPath: '/status' }),
      }),
      pool('mixed', { members: [member('mixed-1', '10.202.0.51', 80)] }),
      pool('spare', { protocol: 'TCP', members: [member('spare-1', '10.202.0.61', 80)] }),
    ],
  }),

  'limits-and-timeouts': loadBalancer({
    listeners: [
      listener('big', {
        protocol: 'TCP',
        port: 25,
        defaultPool: 'mail',
        connectionLimit: 40000,
        timeouts: { clientData: 120000, memberConnect: 2500, memberData: 300000, tcpInspect: 4000 },
      }),
      listener('small', {
        port: 80,
        defaultPool: 'mail',
        connectionLimit: 20000,
        timeouts: { clientData: 10000, memberConnect: 1000, memberData: 10000, tcpInspect: 500 },
      }),
      listener('zero-is-unlimited', { protocol: 'TCP', port: 26, defaultPool: 'mail', connectionLimit: 0 }),
    ],
    pools: [pool('mail', { protocol: 'HTTP', members: [member('mx-1', '10.202.0.71', 25)] })],
  }),

  'listener-without-default-pool': loadBalancer({
    listeners: [listener('http'), listener('tcp', { protocol: 'TCP', port: 9000 })],
    pools: [pool('unused', { members: [member('m-1', '10.202.0.81', 80)] })],
  }),

  'admin-down-children': loadBalancer({
    listeners: [listener('off', { adminStateUp: false, defaultPool: 'on' }), listener('on', { port: 8080, defaultPool: 'off' })],
    pools: [
      pool('off', { adminStateUp: false, members: [member('m-1', '10.202.0.91', 80)], healthMonitor: monitor() }),
      pool('on', {
        members: [member('m-2', '10.202.0.92', 80)],
        healthMonitor: monitor({ adminStateUp: false }),
      }),
    ],
  }),

  'admin-down-load-balancer': loadBalancer({
    adminStateUp: false,
    listeners: [listener('http', { defaultPool: 'web' })],
    pools: [pool('web', { members: [member('web-1', '10.202.0.11', 80)], healthMonitor: monitor() })],
  }),

  'proxy-protocols': loadBalancer({
    listeners: [
      listener('v1', { protocol: 'TCP', port: 8001, defaultPool: 'proxy-v1' }),
      listener('v2', { protocol: 'TCP', port: 8002, defaultPool: 'proxy-v2' }),
      listener('web', { port: 80, defaultPool: 'proxy-http' }),
    ],
    pools: [
      pool('proxy-v1', { protocol: 'PROXY', members: [member('m-1', '10.202.1.1', 8001)], healthMonitor: monitor({ type: 'TCP' }) }),
      pool('proxy-v2', {
        protocol: 'PROXYV2',
        members: [member('m-2', '10.202.1.2', 8002, { monitorPort: 8080 })],
        healthMonitor: monitor(),
      }),
      pool('proxy-http', { protocol: 'PROXY', members: [member('m-3', '10.202.1.3', 80)] }),
    ],
  }),

  ipv6: loadBalancer({
    vip: { address: '2001:db8:100::10', family: 6, prefixLength: 64, mac: 'fa:16:3e:01:02:04' },
    listeners: [listener('http', { defaultPool: 'web' }), listener('tcp', { protocol: 'TCP', port: 22, defaultPool: 'ssh' })],
    pools: [
      pool('web', {
        members: [member('web-1', '2001:db8:200::11', 8080, { monitorAddress: '2001:db8:300::11', monitorPort: 8081 }), member('web-2', '10.202.0.12', 8080)],
        healthMonitor: monitor(),
      }),
      pool('ssh', {
        protocol: 'TCP',
        sessionPersistence: { type: 'SOURCE_IP' },
        members: [member('bastion', '::ffff:10.202.0.30', 22)],
        healthMonitor: monitor({ type: 'TCP' }),
      }),
    ],
  }),

  // An IPv6 VIP with an IPv4 additional VIP (and a second IPv6 one): every listener binds on each address
  // with the same options; SOURCE_IP keys are ipv6 (IPv4 clients stored mapped); members of both families.
  'dual-stack': loadBalancer({
    vip: {
      address: '2001:db8:100::10',
      family: 6,
      prefixLength: 64,
      gateway: '2001:db8:100::1',
      mac: 'fa:16:3e:01:02:05',
      additional: [
        { address: '10.201.0.10', family: 4, prefixLength: 24, gateway: '10.201.0.1' },
        { address: '2001:db8:101::10', family: 6, prefixLength: 64 },
      ],
    },
    listeners: [
      listener('http', { defaultPool: 'web', allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] }),
      listener('https', {
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'web',
        tls: {
          certificate: CERT_WWW,
          sniCertificates: [CERT_API],
          policy: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', alpn: ['h2', 'http/1.1'] },
        },
      }),
      listener('tcp', { protocol: 'TCP', port: 22, defaultPool: 'ssh' }),
    ],
    pools: [
      pool('web', {
        members: [member('web-4', '10.202.0.11', 8080), member('web-6', '2001:db8:200::11', 8080)],
        healthMonitor: monitor(),
      }),
      pool('ssh', {
        protocol: 'TCP',
        sessionPersistence: { type: 'SOURCE_IP' },
        members: [member('bastion-4', '10.202.0.30', 22), member('bastion-6', '2001:db8:200::30', 22)],
        healthMonitor: monitor({ type: 'TCP' }),
      }),
    ],
  }),

  'http-monitor-head-http11': loadBalancer({
    listeners: [listener('http', { defaultPool: 'web' })],
    pools: [
      pool('web', {
        members: [member('web-1', '10.202.0.11', 80)],
        healthMonitor: monitor({
          httpMethod: 'HEAD',
          urlPath: '/health/check?deep=1',
          httpVersion: '1.1',
          domainName: 'app.example.com',
          expectedCodes: '200,202',
        }),
      }),
    ],
  }),

  // HTTPS, TLS-HELLO and PING monitors; an HTTP/1.0 monitor with a Host header behind TLS termination.
  'other-monitor-types-and-tls-listener': loadBalancer({
    listeners: [
      listener('passthrough', { protocol: 'HTTPS', port: 443, defaultPool: 'tls-app' }),
      listener('terminated', {
        protocol: 'TERMINATED_HTTPS',
        port: 8443,
        defaultPool: 'plain',
        tls: { certificate: CERT_WWW, sniCertificates: [] },
      }),
      listener('hello', { protocol: 'TCP', port: 9443, defaultPool: 'tls-hello' }),
      listener('ping', { protocol: 'TCP', port: 7000, defaultPool: 'pinged' }),
    ],
    pools: [
      pool('tls-app', {
        protocol: 'HTTPS',
        members: [member('tls-1', '10.202.2.1', 443)],
        healthMonitor: monitor({ type: 'HTTPS', urlPath: '/ready', expectedCodes: '200-202,204,301' }),
      }),
      pool('plain', {
        members: [member('plain-1', '10.202.2.2', 80)],
        healthMonitor: monitor({ httpVersion: '1.0', domainName: 'legacy.example.com' }),
      }),
      pool('tls-hello', { protocol: 'TCP', members: [member('hello-1', '10.202.2.3', 443)], healthMonitor: monitor({ type: 'TLS-HELLO' }) }),
      pool('pinged', { protocol: 'TCP', members: [member('ping-1', '10.202.2.4', 7000)], healthMonitor: monitor({ type: 'PING' }) }),
    ],
  }),

  // The first crt is the default certificate; HAProxy picks the SNI ones by their names.
  'terminated-https-sni': loadBalancer({
    listeners: [
      listener('https', {
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'web',
        tls: { certificate: CERT_WWW, sniCertificates: [CERT_API, CERT_SHOP] },
      }),
    ],
    pools: [pool('web', { members: [member('web-1', '10.202.0.11', 80), member('web-2', '10.202.0.12', 80)] })],
  }),

  // Issue 7: client certificates with a CRL, the X-SSL-Client-* headers, HSTS, versions, ciphers and ALPN on
  // the bind; members verified against a CA and a CRL, with a client certificate, TLS 1.3 only. The tcp
  // pool leaves ALPN out (bytes pass through).
  'tls-in-depth': loadBalancer({
    listeners: [
      listener('mtls', {
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'verified',
        insertHeaders: {
          forwardedFor: true,
          forwardedPort: false,
          forwardedProto: true,
          sslClient: [...SSL_CLIENT_HEADERS],
        },
        tls: {
          certificate: CERT_WWW,
          sniCertificates: [CERT_API],
          clientAuthentication: 'MANDATORY',
          clientCa: CLIENT_CA,
          clientCrl: CLIENT_CRL,
          policy: {
            minVersion: 'TLSv1.2',
            maxVersion: 'TLSv1.3',
            ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256',
            ciphersuites: 'TLS_AES_128_GCM_SHA256',
            alpn: ['h2', 'http/1.1', 'http/1.0'],
          },
          hsts: { maxAge: 31536000, includeSubdomains: true, preload: true },
        },
      }),
      listener('optional', {
        protocol: 'TERMINATED_HTTPS',
        port: 8443,
        defaultPool: 'verified',
        tls: {
          certificate: CERT_SHOP,
          sniCertificates: [],
          clientAuthentication: 'OPTIONAL',
          clientCa: CLIENT_CA,
          policy: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', alpn: ['http/1.1'] },
          hsts: { maxAge: 600, includeSubdomains: false, preload: false },
        },
      }),
      listener('raw', { protocol: 'TCP', port: 9000, defaultPool: 'raw-tls' }),
    ],
    pools: [
      pool('verified', {
        tlsToMembers: true,
        memberTls: {
          ca: MEMBER_CA,
          crl: CLIENT_CRL,
          clientCertificate: LB_CLIENT,
          policy: { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', alpn: ['http/1.1'] },
        },
        members: [member('v-1', '10.202.4.1', 443), member('v-2', '10.202.4.2', 443)],
        healthMonitor: monitor({ type: 'HTTPS', urlPath: '/healthz' }),
      }),
      pool('raw-tls', {
        protocol: 'TCP',
        tlsToMembers: true,
        memberTls: { ca: MEMBER_CA, policy: { ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384', alpn: ['h2'] } },
        members: [member('r-1', '10.202.4.11', 443)],
      }),
    ],
  }),

  // TLS passthrough: tcp mode, no ssl on the bind, the members terminate TLS themselves.
  'https-passthrough': loadBalancer({
    listeners: [listener('tls', { protocol: 'HTTPS', port: 443, defaultPool: 'tls-app', connectionLimit: 1000 })],
    pools: [
      pool('tls-app', {
        protocol: 'HTTPS',
        lbAlgorithm: 'SOURCE_IP',
        members: [member('tls-1', '10.202.2.1', 443), member('tls-2', '10.202.2.2', 443)],
        healthMonitor: monitor({ type: 'TLS-HELLO' }),
      }),
    ],
  }),

  // Re-encryption to the members, with every monitor type: checks follow `ssl` except where noted.
  'tls-to-members': loadBalancer({
    listeners: [
      listener('http-check', { port: 80, defaultPool: 'http-check' }),
      listener('https-check', { port: 81, defaultPool: 'https-check' }),
      listener('hello-check', { port: 82, defaultPool: 'hello-check' }),
      listener('tcp-check', { port: 83, defaultPool: 'tcp-check' }),
      listener('unchecked', { port: 84, defaultPool: 'unchecked' }),
    ],
    pools: [
      pool('http-check', {
        tlsToMembers: true,
        members: [member('a-1', '10.202.3.1', 443), member('a-2', '10.202.3.2', 443, { monitorPort: 8080 })],
        healthMonitor: monitor({ urlPath: '/healthz' }),
      }),
      pool('https-check', {
        tlsToMembers: true,
        members: [member('b-1', '10.202.3.11', 443, { monitorPort: 8443 })],
        healthMonitor: monitor({ type: 'HTTPS' }),
      }),
      pool('hello-check', {
        tlsToMembers: true,
        members: [member('c-1', '10.202.3.21', 443)],
        healthMonitor: monitor({ type: 'TLS-HELLO' }),
      }),
      pool('tcp-check', { tlsToMembers: true, members: [member('d-1', '10.202.3.31', 443)], healthMonitor: monitor({ type: 'TCP' }) }),
      pool('unchecked', { tlsToMembers: true, members: [member('e-1', '10.202.3.41', 443)] }),
    ],
  }),

  // One pool per persistence type; `tcp-cookie` asks for cookies on a pool only tcp listeners use.
  'session-persistence': loadBalancer({
    listeners: [
      listener('source', { protocol: 'TCP', port: 5000, defaultPool: 'by-source' }),
      listener('http-cookie', { port: 80, defaultPool: 'by-http-cookie' }),
      listener('app-cookie', { port: 81, defaultPool: 'by-app-cookie' }),
      listener('raw', { protocol: 'TCP', port: 82, defaultPool: 'tcp-cookie' }),
    ],
    pools: [
      pool('by-source', {
        protocol: 'TCP',
        sessionPersistence: { type: 'SOURCE_IP' },
        members: [member('s-1', '10.202.4.1', 5000), member('s-2', '10.202.4.2', 5000)],
      }),
      pool('by-http-cookie', {
        sessionPersistence: { type: 'HTTP_COOKIE' },
        members: [member('h-1', '10.202.4.11', 80), member('h-2', '10.202.4.12', 80, { weight: 0 }), member('h-3', '10.202.4.13', 80, { backup: true })],
        healthMonitor: monitor(),
      }),
      pool('by-app-cookie', {
        sessionPersistence: { type: 'APP_COOKIE', cookieName: 'JSESSIONID' },
        members: [member('a-1', '10.202.4.21', 80), member('a-2', '10.202.4.22', 80)],
      }),
      pool('tcp-cookie', {
        sessionPersistence: { type: 'HTTP_COOKIE' },
        members: [member('t-1', '10.202.4.31', 80)],
      }),
    ],
  }),

  // PING runs scripts/ping-check.sh (and turns on fork in global); it cannot honour monitorAddress/Port.
  'every-monitor-type': loadBalancer({
    listeners: [
      listener('ping', { protocol: 'TCP', port: 7000, defaultPool: 'ping' }),
      listener('tcp', { protocol: 'TCP', port: 7001, defaultPool: 'tcp' }),
      listener('http', { port: 80, defaultPool: 'http' }),
      listener('https', { protocol: 'HTTPS', port: 443, defaultPool: 'https' }),
      listener('tls-hello', { protocol: 'HTTPS', port: 8443, defaultPool: 'tls-hello' }),
    ],
    pools: [
      pool('ping', {
        protocol: 'TCP',
        members: [member('p-1', '10.202.5.1', 7000, { monitorAddress: '10.203.5.1', monitorPort: 7777 }), member('p-2', '2001:db8:200::5', 7000)],
        healthMonitor: monitor({ type: 'PING', delay: 2, timeout: 1, maxRetries: 1, maxRetriesDown: 1 }),
      }),
      pool('tcp', { protocol: 'TCP', members: [member('t-1', '10.202.5.11', 7001)], healthMonitor: monitor({ type: 'TCP' }) }),
      pool('http', {
        members: [member('h-1', '10.202.5.21', 80)],
        healthMonitor: monitor({ httpMethod: 'POST', urlPath: '/check', expectedCodes: '200-204', httpVersion: '1.1', domainName: 'app.example.com' }),
      }),
      pool('https', {
        protocol: 'HTTPS',
        members: [member('s-1', '10.202.5.31', 443, { monitorPort: 8443 })],
        healthMonitor: monitor({ type: 'HTTPS', urlPath: '/ready' }),
      }),
      pool('tls-hello', { protocol: 'HTTPS', members: [member('l-1', '10.202.5.41', 443)], healthMonitor: monitor({ type: 'TLS-HELLO' }) }),
    ],
  }),

  // X-Forwarded-Proto says how the client reached the load balancer: http, or https where TLS ends here.
  // The tcp listener has headers switched on too, and cannot insert them.
  'insert-headers': loadBalancer({
    listeners: [
      listener('http', {
        port: 80,
        defaultPool: 'web',
        insertHeaders: { forwardedFor: true, forwardedPort: true, forwardedProto: true },
      }),
      listener('https', {
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'web',
        insertHeaders: { forwardedFor: true, forwardedPort: true, forwardedProto: true },
        tls: { certificate: CERT_WWW, sniCertificates: [] },
      }),
      listener('port-only', { port: 8080, defaultPool: 'web', insertHeaders: { forwardedFor: false, forwardedPort: true, forwardedProto: false } }),
      listener('tcp', {
        protocol: 'TCP',
        port: 9000,
        defaultPool: 'web',
        insertHeaders: { forwardedFor: true, forwardedPort: true, forwardedProto: true },
      }),
    ],
    pools: [pool('web', { members: [member('web-1', '10.202.0.11', 80)] })],
  }),

  'allowed-cidrs': loadBalancer({
    listeners: [
      listener('http', { port: 80, defaultPool: 'web', allowedCidrs: ['10.0.0.0/8', '192.168.1.7/32', '2001:db8::/32', 'fd00::1/128'] }),
      listener('tcp', { protocol: 'TCP', port: 22, defaultPool: 'ssh', allowedCidrs: ['203.0.113.0/24'] }),
      listener('open', { port: 8080, defaultPool: 'web' }),
    ],
    pools: [pool('web', { members: [member('web-1', '10.202.0.11', 80)] }), pool('ssh', { protocol: 'TCP', members: [member('bastion', '10.202.0.30', 22)] })],
  }),

  // Every action, rule type, compare type and invert. `images` and `api` are reached only through
  // policies; `api` is also the default pool of a tcp listener and must still be an http backend.
  // `to-closed` points at an admin-down pool and is left out, as in Octavia; `catch-all` has no rules.
  'l7-policies': loadBalancer({
    listeners: [
      listener('http', {
        port: 80,
        defaultPool: 'web',
        l7Policies: [
          l7Policy('block-admin', {
            action: 'REJECT',
            position: 1,
            rules: [
              l7Rule('admin-path', { type: 'PATH', compareType: 'STARTS_WITH', value: '/admin' }),
              l7Rule('not-office', { type: 'HEADER', key: 'X-Office', compareType: 'EQUAL_TO', value: 'yes', invert: true }),
            ],
          }),
          l7Policy('old-site', {
            action: 'REDIRECT_TO_URL',
            position: 2,
            redirectUrl: 'https://www.example.com/moved?from=old%20site',
            redirectHttpCode: 301,
            rules: [l7Rule('old-host', { type: 'HOST_NAME', compareType: 'EQUAL_TO', value: 'old.example.com' })],
          }),
          l7Policy('to-https', {
            action: 'REDIRECT_PREFIX',
            position: 3,
            redirectPrefix: 'https://secure.example.com',
            redirectHttpCode: 308,
            rules: [l7Rule('secure-host', { type: 'HOST_NAME', compareType: 'ENDS_WITH', value: '.secure.example.com' })],
          }),
          l7Policy('images', {
            action: 'REDIRECT_TO_POOL',
            position: 4,
            redirectPool: 'images',
            rules: [
              l7Rule('image-file', { type: 'FILE_TYPE', compareType: 'REGEX', value: '^(jpg|png|gif)$' }),
              l7Rule('no-thumbs', { type: 'PATH', compareType: 'CONTAINS', value: '/thumbs/', invert: true }),
            ],
          }),
          l7Policy('beta-users', {
            action: 'REDIRECT_TO_POOL',
            position: 5,
            redirectPool: 'api',
            rules: [
              l7Rule('beta-cookie', { type: 'COOKIE', key: 'beta', compareType: 'EQUAL_TO', value: '1' }),
              l7Rule('css-file', { type: 'FILE_TYPE', compareType: 'EQUAL_TO', value: 'css', invert: true }),
              l7Rule('dash-value', { type: 'HEADER', key: 'X-Flags', compareType: 'CONTAINS', value: '-beta' }),
            ],
          }),
          l7Policy('to-closed', {
            action: 'REDIRECT_TO_POOL',
            position: 6,
            redirectPool: 'closed',
            rules: [l7Rule('closed-path', { type: 'PATH', compareType: 'ENDS_WITH', value: '.php' })],
          }),
          l7Policy('catch-all', { action: 'REDIRECT_TO_POOL', position: 7, redirectPool: 'api' }),
        ],
      }),
      listener('raw', { protocol: 'TCP', port: 9000, defaultPool: 'api' }),
    ],
    pools: [
      pool('web', { members: [member('web-1', '10.202.0.11', 80)] }),
      pool('images', { members: [member('img-1', '10.202.6.1', 80)], healthMonitor: monitor() }),
      pool('api', { members: [member('api-1', '10.202.6.11', 8080)] }),
      pool('closed', { adminStateUp: false, members: [member('old-1', '10.202.6.21', 80)] }),
    ],
  }),

  // Position decides, not the action: the pool redirect at 1 beats the REJECT at 2 for /api/admin,
  // which plain HAProxy rules would reject (every http-request rule runs before use_backend). Also on a
  // TERMINATED_HTTPS listener, and given out of order.
  // ACTIVE_STANDBY on its second node: VIP binds non-local, stick tables shared through the peers section.
  'active-standby-node2': loadBalancer({
    vip: {
      address: '10.201.0.10',
      family: 4,
      prefixLength: 24,
      gateway: '10.201.0.1',
      mac: 'fa:16:3e:01:02:04',
      additional: [{ address: 'fd00:201::10', family: 6, prefixLength: 64 }],
    },
    placement: ['node1', 'node2'],
    ha: { node: 'node2', slot: 1, peer: 'node1', localAddress: '10.201.0.3', peerAddress: '10.201.0.2', advertIntervalMs: 200, virtualRouterId: 42 },
    listeners: [listener('http', { defaultPool: 'web' }), listener('tcp', { protocol: 'TCP', port: 9000, defaultPool: 'app' })],
    pools: [
      pool('web', { sessionPersistence: { type: 'APP_COOKIE', cookieName: 'JSESSIONID' }, members: [member('web-1', '10.202.0.11', 8080)] }),
      pool('app', { protocol: 'TCP', sessionPersistence: { type: 'SOURCE_IP' }, members: [member('app-1', '10.202.0.12', 9000)] }),
    ],
  }),

  'l7-position-order': loadBalancer({
    listeners: [
      listener('https', {
        protocol: 'TERMINATED_HTTPS',
        port: 443,
        defaultPool: 'web',
        tls: { certificate: CERT_API, sniCertificates: [] },
        l7Policies: [
          l7Policy('deny-admin', {
            action: 'REJECT',
            position: 2,
            rules: [l7Rule('admin', { type: 'PATH', compareType: 'CONTAINS', value: '/admin' })],
          }),
          l7Policy('api-first', {
            action: 'REDIRECT_TO_POOL',
            position: 1,
            redirectPool: 'api',
            rules: [l7Rule('api-path', { type: 'PATH', compareType: 'STARTS_WITH', value: '/api/' })],
          }),
          l7Policy('legacy', {
            action: 'REDIRECT_PREFIX',
            position: 3,
            redirectPrefix: 'https://legacy.example.com',
            rules: [l7Rule('legacy-cookie', { type: 'COOKIE', key: 'legacy', compareType: 'REGEX', value: '^(1|yes)$' })],
          }),
        ],
      }),
    ],
    pools: [pool('web', { members: [member('web-1', '10.202.0.11', 80)] }), pool('api', { members: [member('api-1', '10.202.6.11', 8080)] })],
  }),

  // UDP and SCTP listeners have no frontend (the kernel forwards them): their pools are check-only backends,
  // and the PROMETHEUS listener serves HAProxy's exporter on the VIP to the monitoring network only.
  'udp-sctp-checks-and-prometheus': loadBalancer({
    listeners: [
      listener('dns', { protocol: 'UDP', port: 53, defaultPool: 'resolvers' }),
      listener('sig', { protocol: 'SCTP', port: 3868, defaultPool: 'diameter' }),
      listener('dns-tcp', { protocol: 'TCP', port: 53, defaultPool: 'resolvers-tcp' }),
      listener('metrics', { protocol: 'PROMETHEUS', port: 9100, allowedCidrs: ['192.0.2.0/28', '2001:db8:1::/64'] }),
    ],
    pools: [
      pool('resolvers', {
        protocol: 'UDP',
        lbAlgorithm: 'SOURCE_IP_PORT',
        members: [
          member('r-1', '10.202.0.11', 53, { monitorPort: 5353 }),
          member('r-2', '10.202.0.12', 53, { weight: 0 }),
          member('r-3', '10.202.0.13', 53, { backup: true, adminStateUp: false }),
        ],
        healthMonitor: monitor({ type: 'UDP-CONNECT', delay: 5, timeout: 3, maxRetries: 2, maxRetriesDown: 2 }),
      }),
      pool('diameter', {
        protocol: 'SCTP',
        members: [member('d-1', '10.202.0.21', 3868)],
        healthMonitor: monitor({ type: 'SCTP', delay: 10, timeout: 5, maxRetries: 3 }),
      }),
      pool('resolvers-tcp', { protocol: 'TCP', members: [member('r-1', '10.202.0.11', 53)] }),
    ],
  }),

  empty: loadBalancer(),
};

let dir: string;
let checkPaths: HaproxyPaths;

function certificatesOf(lb: DesiredLoadBalancer): DesiredCertificate[] {
  return [
    ...lb.listeners.flatMap((l) => (l.tls === undefined ? [] : [l.tls.certificate, ...l.tls.sniCertificates, l.tls.clientCa, l.tls.clientCrl])),
    ...lb.pools.flatMap((p) => [p.memberTls?.ca, p.memberTls?.crl, p.memberTls?.clientCertificate]),
  ].filter((c): c is DesiredCertificate => c !== undefined);
}

// HAProxy loads every crt while checking, so each fixture certificate must be real PEM material: a
// throwaway self-signed certificate and its key, under the name the config refers to.
async function writeTestCertificates(certsDir: string): Promise<void> {
  await mkdir(certsDir, { recursive: true, mode: 0o700 });
  const names = new Set(Object.values(cases).flatMap((lb) => certificatesOf(lb).map((c) => c.fileName)));
  const ca = await TestCa.create(join(dir, 'ca'), 'golden CA');
  await ca.revoke(await ca.issue('revoked', { usage: 'client' }));
  const crl = await readFile(await ca.writeCrl(), 'utf8');
  await Promise.all(
    [...names].map(async (fileName) => {
      if (CA_FILES.has(fileName)) return writeFile(join(certsDir, fileName), await readFile(ca.certFile, 'utf8'), { mode: 0o600 });
      if (CRL_FILES.has(fileName)) return writeFile(join(certsDir, fileName), crl, { mode: 0o600 });
      const stem = fileName.replace(/\.pem$/, '');
      const [key, crt] = [join(dir, `${stem}.key`), join(dir, `${stem}.crt`)];
      await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${stem}.test`, '-days', '1', '-keyout', key, '-out', crt], {
        timeout: 30_000,
      });
      const pem = (await readFile(crt, 'utf8')) + (await readFile(key, 'utf8'));
      await writeFile(join(certsDir, fileName), pem, { mode: 0o600 });
    }),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-golden-'));
  checkPaths = {
    ...paths,
    certsDir: join(dir, 'certs'),
    pingCheckCommand: PING_CHECK,
    udpCheckCommand: fileURLToPath(new URL('../../scripts/udp-check.sh', import.meta.url)),
    sctpCheckCommand: fileURLToPath(new URL('../../scripts/sctp-check.sh', import.meta.url)),
  };
  await writeTestCertificates(checkPaths.certsDir);
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function haproxyCheck(config: string, name: string): Promise<{ code: number; output: string }> {
  const file = join(dir, `${name}.cfg`);
  await writeFile(file, config);
  try {
    const { stdout, stderr } = await run(HAPROXY, ['-c', '-f', file], { timeout: 10_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('renderHaproxyConfig golden files', () => {
  for (const [name, lb] of Object.entries(cases)) {
    it(`${name} matches its golden file and passes haproxy -c`, async () => {
      await expect(renderHaproxyConfig(lb, paths)).toMatchFileSnapshot(`./haproxy/${name}.cfg`);

      const { code, output } = await haproxyCheck(renderHaproxyConfig(lb, checkPaths), name);
      expect(output).toContain('Configuration file is valid');
      expect(code).toBe(0);
      // The state file does not exist before the first reload; that is the only warning allowed.
      const warnings = output.split('\n').filter((l) => l.includes('[WARNING]') && !l.includes('server state file'));
      expect(warnings).toEqual([]);
    });
  }
});

describe('renderHaproxyConfig', () => {
  const lb = cases['shared-and-mixed-pools']!;

  it('is deterministic and independent of input order', () => {
    const a = renderHaproxyConfig(lb, paths);
    expect(renderHaproxyConfig(lb, paths)).toBe(a);
    const shuffled: DesiredLoadBalancer = {
      ...lb,
      listeners: [...lb.listeners].reverse(),
      pools: [...lb.pools].reverse().map((p) => ({ ...p, members: [...p.members].reverse() })),
    };
    expect(renderHaproxyConfig(shuffled, paths)).toBe(a);
  });

  it('ends with exactly one newline and starts with the ownership header', () => {
    const cfg = renderHaproxyConfig(lb, paths);
    expect(cfg.endsWith('\n')).toBe(true);
    expect(cfg.endsWith('\n\n')).toBe(false);
    expect(cfg.split('\n')[0]).toBe('# Generated by nslb for default/web. Do not edit: changes are overwritten.');
  });

  it('names frontends, backends and servers by the contract', () => {
    expect(frontendName('http')).toBe('listener.http');
    expect(backendName('web')).toBe('pool.web');
    const cfg = renderHaproxyConfig(lb, paths);
    expect(cfg).toContain('\nfrontend listener.api\n');
    expect(cfg).toContain('\nbackend pool.web\n');
    expect(cfg).toContain('    server web-1 10.202.0.11:80 weight 1\n');
  });

  it('raises the descriptor budget when the listeners need more than the default', () => {
    expect(renderHaproxyConfig(cases['limits-and-timeouts']!, paths)).toContain('    fd-hard-limit 121000\n');
    expect(renderHaproxyConfig(cases['http-round-robin']!, paths)).toContain('    fd-hard-limit 101000\n');
  });

  it('refuses values that would change the meaning of a config line', () => {
    const evil = (patch: Partial<ReturnType<typeof member>>) => loadBalancer({ pools: [pool('web', { members: [member('m', '10.0.0.1', 80, patch)] })] });
    expect(() => renderHaproxyConfig(evil({ name: 'm\n    server x 1.2.3.4:80' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(evil({ address: '10.0.0.1 backup' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(evil({ port: Number.NaN }), paths)).toThrow(UnsafeConfigValueError);
    const hm = (patch: Partial<ReturnType<typeof monitor>>) =>
      loadBalancer({ pools: [pool('web', { members: [member('m', '10.0.0.1', 80)], healthMonitor: monitor(patch) })] });
    expect(() => renderHaproxyConfig(hm({ urlPath: '/a#b' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(hm({ domainName: 'a.example.com%[src]' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(hm({ expectedCodes: '200|.*' }), paths)).toThrow(UnsafeConfigValueError);
    expect(() => renderHaproxyConfig(loadBalancer(), { ...paths, socket: '/run/my dir/s.sock' })).toThrow(UnsafeConfigValueError);
  });

  it('orders L7 policies by position and rules by name, whatever the input order', () => {
    const ordered = cases['l7-policies']!;
    const shuffled: DesiredLoadBalancer = {
      ...ordered,
      listeners: ordered.listeners.map((l) => ({
        ...l,
        l7Policies: [...l.l7Policies].reverse().map((p) => ({ ...p, rules: [...p.rules].reverse() })),
      })),
    };
    expect(renderHaproxyConfig(shuffled, paths)).toBe(renderHaproxyConfig(ordered, paths));
  });

  it('lists a certificate once when it is also among the SNI certificates', () => {
    const lb2 = loadBalancer({
      listeners: [listener('https', { protocol: 'TERMINATED_HTTPS', port: 443, tls: { certificate: CERT_WWW, sniCertificates: [CERT_API, CERT_WWW] } })],
    });
    expect(renderHaproxyConfig(lb2, paths)).toContain(
      '    bind 10.201.0.10:443 ssl crt /var/lib/nslb/lb/nslb-0123456789ab/certs/1f0e2d3c4b5a6978.pem crt /var/lib/nslb/lb/nslb-0123456789ab/certs/a1b2c3d4e5f60718.pem\n',
    );
  });

  it('refuses what the builder must have rejected: TLS termination without a certificate, L7 on a tcp listener', () => {
    const noCert = loadBalancer({ listeners: [listener('https', { protocol: 'TERMINATED_HTTPS', port: 443 })] });
    expect(() => renderHaproxyConfig(noCert, paths)).toThrow(/without a certificate/);
    const tcpL7 = loadBalancer({ listeners: [listener('tcp', { protocol: 'TCP', l7Policies: [l7Policy('p')] })] });
    expect(() => renderHaproxyConfig(tcpL7, paths)).toThrow(/L7 policies need an HTTP listener/);
    const ghost = loadBalancer({
      listeners: [listener('http', { l7Policies: [l7Policy('p', { action: 'REDIRECT_TO_POOL', redirectPool: 'ghost' })] })],
    });
    expect(() => renderHaproxyConfig(ghost, paths)).toThrow(/redirectPool ghost/);
  });

  it('ships the PING check as an executable HAProxy can run directly', async () => {
    await expect(access(PING_CHECK, constants.X_OK)).resolves.toBeUndefined();
    expect((await readFile(PING_CHECK, 'utf8')).startsWith('#!/bin/sh\n')).toBe(true);
  });

  it('refuses a default pool that is not part of the load balancer', () => {
    const lb2 = loadBalancer({ listeners: [listener('http', { defaultPool: 'ghost' })] });
    expect(() => renderHaproxyConfig(lb2, paths)).toThrow(/defaultPool ghost/);
  });
});

describe('assertSafeToken', () => {
  it.each(['web-1', '10.0.0.1', '2001:db8::1', '/healthz?x=1&y=%20', '/var/lib/nslb/lb/nslb-0123456789ab/haproxy.sock'])('accepts %j', (s) => {
    expect(assertSafeToken(s)).toBe(s);
  });

  it.each([
    ['empty', ''],
    ['space', 'a b'],
    ['tab', 'a\tb'],
    ['newline', 'a\nb'],
    ['carriage return', 'a\rb'],
    ['hash', 'a#b'],
    ['double quote', 'a"b'],
    ['single quote', "a'b"],
    ['backslash', 'a\\b'],
    ['NUL', 'a\u0000b'],
    ['DEL', 'a\u007fb'],
    ['C1 control', 'a\u0085b'],
    ['no-break space', 'a\u00a0b'],
    ['line separator', 'a\u2028b'],
  ])('rejects %s', (_what, s) => {
    expect(() => assertSafeToken(s)).toThrow(UnsafeConfigValueError);
  });
});

describe('expandExpectedCodes', () => {
  it.each([
    ['200', [200]],
    ['200,202', [200, 202]],
    ['200-204', [200, 201, 202, 203, 204]],
    ['204, 200-201,200', [200, 201, 204]],
  ])('%s', (input, codes) => {
    expect(expandExpectedCodes(input)).toEqual(codes);
  });

  it.each(['', '20', '2000', '600', '204-200', '200,,202', 'abc', '200-'])('rejects %j', (input) => {
    expect(() => expandExpectedCodes(input)).toThrow(UnsafeConfigValueError);
  });
});
