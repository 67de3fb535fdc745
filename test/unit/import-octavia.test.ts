import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { renderManifests } from '../../src/cli/import.js';
import { buildDesired } from '../../src/desired/build.js';
import { importOctavia } from '../../src/import/octavia.js';
import { sanitizeName } from '../../src/import/octavia-context.js';
import { OctaviaInputError, parseOctaviaJson, type OctaviaInput } from '../../src/import/octavia-read.js';
import { readMaterials } from '../../src/sources/file-source.js';
import { parseDocuments } from '../../src/sources/parse.js';
import { mergeFiles } from '../../src/sources/snapshot.js';

const exec = promisify(execFile);
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'octavia');

async function fixtures(set: 'api' | 'cli'): Promise<OctaviaInput[]> {
  const dir = join(FIXTURES, set);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  return Promise.all(files.map(async (f) => ({ file: `${set}/${f}`, value: parseOctaviaJson(f, await readFile(join(dir, f), 'utf8')) })));
}

function find(objects: AnyObject[], kind: string, name: string): AnyObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind} ${name} in ${objects.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

/** What `nslb validate DIR` does: parse every document, merge, resolve TLS files, cross-object checks. */
async function validateDir(dir: string): Promise<string[]> {
  const parsed = parseDocuments(join(dir, 'lb.yaml'), await readFile(join(dir, 'lb.yaml'), 'utf8'));
  const merged = mergeFiles(new Map([[join(dir, 'lb.yaml'), parsed.objects]]));
  const materials = await readMaterials(dir, merged.objects);
  const desired = buildDesired(merged.objects, { defaultBridge: 'br-int', materials });
  return [
    ...parsed.issues.map((i) => `${i.path}: ${i.message}`),
    ...merged.issues.map((i) => i.message),
    ...desired.problems.map((p) => `${p.kind}/${p.name}: ${p.message}`),
  ];
}

describe('nslb import octavia: API responses', () => {
  let result: ReturnType<typeof importOctavia>;
  let work: string;

  beforeAll(async () => {
    result = importOctavia(await fixtures('api'), { namespace: 'shop' });
    work = await mkdtemp(join(tmpdir(), 'nslb-import-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('builds every supported object, parents first, in the given namespace, with the Octavia id kept', () => {
    expect(result.objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'LoadBalancer/shop-lb',
      'Pool/web-4029d267',
      'Pool/web-8189d6a9',
      'Pool/dns-pool',
      'Listener/http',
      'Listener/https',
      'Listener/dns',
      'Member/web-server-1',
      'Member/member-3c6857f4',
      'HealthMonitor/web-hm',
      'HealthMonitor/dns-hm',
      'L7Policy/to-api',
      'L7Rule/l7rule-16621dbb',
      'L7Rule/l7rule-27f3007a',
    ]);
    for (const o of result.objects) {
      expect(o.apiVersion).toBe('nslb.dev/v1alpha1');
      expect(o.metadata.namespace).toBe('shop');
      expect(o.metadata.annotations?.['octavia.openstack.org/id']).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('LoadBalancer: VIP, description; tags kept as an annotation', () => {
    const lb = find(result.objects, 'LoadBalancer', 'shop-lb');
    expect(lb.spec).toEqual({ vip: { address: '192.0.2.10' }, description: 'Shop front end' });
    expect(lb.metadata.annotations).toEqual({
      'octavia.openstack.org/id': '8a562351-f0fb-424c-a0af-513461424ea5',
      'octavia.openstack.org/project-id': 'e3cd678b11784734bc366148aa37580e',
      'octavia.openstack.org/tags': 'shop,prod',
    });
  });

  it('Listener HTTP: port, default pool, connection limit, timeouts that differ from the defaults, headers, CIDRs', () => {
    expect(find(result.objects, 'Listener', 'http').spec).toEqual({
      loadBalancer: 'shop-lb',
      protocol: 'HTTP',
      port: 80,
      defaultPool: 'web-4029d267',
      connectionLimit: 1000,
      timeouts: { clientData: 30000 },
      insertHeaders: { 'X-Forwarded-For': true, 'X-Forwarded-Proto': true },
      allowedCidrs: ['192.0.2.0/24', '2001:db8::/32'],
    });
  });

  it('Listener TERMINATED_HTTPS: Barbican refs become certificate file placeholders; TLS settings carried', () => {
    expect(find(result.objects, 'Listener', 'https').spec).toEqual({
      loadBalancer: 'shop-lb',
      protocol: 'TERMINATED_HTTPS',
      port: 443,
      defaultPool: 'web-4029d267',
      timeouts: { memberConnect: 3000, memberData: 60000 },
      insertHeaders: { 'X-Forwarded-Proto': true },
      tls: {
        certificateFile: 'certs/https.crt',
        keyFile: 'certs/https.key',
        sniCertificates: [{ certificateFile: 'certs/https-sni-1.crt', keyFile: 'certs/https-sni-1.key' }],
        clientAuthentication: 'OPTIONAL',
        clientCaFile: 'certs/https-client-ca.pem',
        ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384',
        alpnProtocols: ['h2', 'http/1.1'],
        hsts: { maxAge: 31536000, includeSubdomains: true },
      },
      description: 'A great TLS listener',
    });
  });

  it('Pools: algorithm, APP_COOKIE persistence, admin down, TLS to members with placeholders', () => {
    expect(find(result.objects, 'Pool', 'web-4029d267').spec).toEqual({
      loadBalancer: 'shop-lb',
      protocol: 'HTTP',
      lbAlgorithm: 'ROUND_ROBIN',
      sessionPersistence: { type: 'APP_COOKIE', cookieName: 'ChocolateChip' },
      description: 'Super Round Robin Pool',
    });
    expect(find(result.objects, 'Pool', 'web-8189d6a9').spec).toEqual({
      loadBalancer: 'shop-lb',
      protocol: 'HTTP',
      lbAlgorithm: 'LEAST_CONNECTIONS',
      tls: {
        enabled: true,
        certificateFile: 'certs/web-8189d6a9-client.crt',
        keyFile: 'certs/web-8189d6a9-client.key',
        caFile: 'certs/web-8189d6a9-ca.pem',
        versions: ['TLSv1.3'],
      },
      adminStateUp: false,
    });
  });

  it('Members (listed without their pool: the pool lists them): weight, backup, monitor, admin state, IPv6', () => {
    expect(find(result.objects, 'Member', 'web-server-1').spec).toEqual({
      pool: 'web-4029d267',
      address: '192.0.2.16',
      port: 80,
      weight: 20,
      monitorPort: 8080,
    });
    expect(find(result.objects, 'Member', 'member-3c6857f4').spec).toEqual({
      pool: 'web-4029d267',
      address: '2001:db8::17',
      port: 8080,
      backup: true,
      monitorAddress: '192.0.2.99',
      adminStateUp: false,
    });
  });

  it('HealthMonitor: HTTP fields, http_version 1.1, timeout capped at delay', () => {
    expect(find(result.objects, 'HealthMonitor', 'web-hm').spec).toEqual({
      pool: 'web-4029d267',
      type: 'HTTP',
      delay: 10,
      timeout: 10,
      maxRetries: 1,
      httpMethod: 'HEAD',
      urlPath: '/healthz',
      expectedCodes: '200-204',
      httpVersion: '1.1',
      domainName: 'shop.example.com',
    });
  });

  it("L7Policy and its rules (found through the policy's rule ids)", () => {
    expect(find(result.objects, 'L7Policy', 'to-api').spec).toEqual({
      listener: 'http',
      action: 'REDIRECT_TO_POOL',
      redirectPool: 'web-8189d6a9',
      position: 1,
      description: 'API calls to the https pool',
    });
    expect(find(result.objects, 'L7Rule', 'l7rule-16621dbb').spec).toEqual({ l7Policy: 'to-api', type: 'PATH', compareType: 'STARTS_WITH', value: '/api/' });
    expect(find(result.objects, 'L7Rule', 'l7rule-27f3007a').spec).toEqual({
      l7Policy: 'to-api',
      type: 'HEADER',
      compareType: 'EQUAL_TO',
      key: 'X-Tenant',
      value: 'blocked',
      invert: true,
    });
  });

  it.each([
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): name: "Shop LB" is not a DNS-1123 label: named shop-lb'],
    ['pool "web" (4029d267-3983-4224-a3d0-afb3fe16a2cd): name: "web" is not unique among pools: named web-4029d267'],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): vip_subnet_id: '],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): flavor_id: '],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): availability_zone: '],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): vip_port_id: '],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): vip_network_id: '],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): vip_vnic_type: '],
    ['loadbalancer "Shop LB" (8a562351-f0fb-424c-a0af-513461424ea5): tags: '],
    [
      'listener "https" (1341fbaf-ad4f-4cfe-a943-ad5e14e664cb): default_tls_container_ref: Barbican secret http://198.51.100.10:9311/v1/containers/a570068c-d295-4780-91d4-3046a325db51: put the certificate chain and key (PEM) in certs/https.crt and certs/https.key',
    ],
    ['listener "https" (1341fbaf-ad4f-4cfe-a943-ad5e14e664cb): sni_container_refs[0]: Barbican secret'],
    ['listener "https" (1341fbaf-ad4f-4cfe-a943-ad5e14e664cb): client_ca_tls_container_ref: Barbican secret'],
    ['listener "https" (1341fbaf-ad4f-4cfe-a943-ad5e14e664cb): insert_headers.X-Forwarded-Prefix: not a header nslb inserts'],
    ['listener "https" (1341fbaf-ad4f-4cfe-a943-ad5e14e664cb): tags: '],
    ['pool "web" (8189d6a9-646e-4d23-b742-548dab991951): tls_container_ref: Barbican secret'],
    ['pool "web" (8189d6a9-646e-4d23-b742-548dab991951): ca_tls_container_ref: Barbican secret'],
    ['member "web-server-1" (957a1ace-1bd2-449b-8455-820b6e4b63f3): subnet_id: '],
    ['healthmonitor "web-hm" (8ed3c5ac-6efa-420c-bedb-99ba14e58db5): timeout: 15 s is longer than delay (10 s), which nslb refuses: set to 10'],
    [
      'l7policy "cert-only" (8a1412f0-4c32-4257-8b07-af4770b604fd): skipped: its rule l7rule (9d1f7e0a-5c2b-4a8e-b3f6-7e0d2c4a1b95) cannot be imported (type "SSL_CONN_HAS_CERT" is not supported',
    ],
    ['l7rule (9d1f7e0a-5c2b-4a8e-b3f6-7e0d2c4a1b95): skipped: its l7policy "cert-only" (8a1412f0-4c32-4257-8b07-af4770b604fd) was not imported'],
  ])('warns: %s', (warning) => {
    expect(result.warnings.filter((w) => w.startsWith(warning))).toHaveLength(1);
  });

  it('UDP: listener, SOURCE_IP_PORT pool and UDP-CONNECT monitor carried as they are (issue 21)', () => {
    expect(find(result.objects, 'Listener', 'dns').spec).toEqual({ loadBalancer: 'shop-lb', protocol: 'UDP', port: 53, defaultPool: 'dns-pool' });
    expect(find(result.objects, 'Pool', 'dns-pool').spec).toEqual({ loadBalancer: 'shop-lb', protocol: 'UDP', lbAlgorithm: 'SOURCE_IP_PORT' });
    expect(find(result.objects, 'HealthMonitor', 'dns-hm').spec).toEqual({ pool: 'dns-pool', type: 'UDP-CONNECT', delay: 5, timeout: 3, maxRetries: 2 });
  });

  it('warns about nothing else, and counts what it skipped', () => {
    expect(result.warnings).toHaveLength(21);
    expect(result.skipped).toBe(2);
  });

  it('the YAML passes nslb validate (schema, cross-object rules, TLS files) once the PEM files are in place', async () => {
    await writeFile(join(work, 'lb.yaml'), renderManifests(result.objects, ['test']));
    await mkdir(join(work, 'certs'));
    // One self-signed CA certificate stands in for every Barbican secret.
    await exec('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '30',
      '-subj',
      '/CN=shop.example.com',
      '-addext',
      'subjectAltName=DNS:shop.example.com',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-keyout',
      join(work, 'certs', 'key.pem'),
      '-out',
      join(work, 'certs', 'cert.pem'),
    ]);
    for (const base of ['https', 'https-sni-1', 'web-8189d6a9-client']) {
      await copyFile(join(work, 'certs', 'cert.pem'), join(work, 'certs', `${base}.crt`));
      await copyFile(join(work, 'certs', 'key.pem'), join(work, 'certs', `${base}.key`));
    }
    for (const ca of ['https-client-ca.pem', 'web-8189d6a9-ca.pem']) await copyFile(join(work, 'certs', 'cert.pem'), join(work, 'certs', ca));
    expect(await validateDir(work)).toEqual([]);
  });
});

describe('nslb import octavia: openstack CLI output (show, list, status show)', () => {
  it('relates list output through the status tree, warns for a member only the status tree knows', async () => {
    const result = importOctavia(await fixtures('cli'));
    expect(result.skipped).toBe(0);
    expect(result.objects.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      'LoadBalancer/default/lb-0c1d2e3f',
      'Pool/default/db',
      'Listener/default/tcp-listener',
      'Member/default/member-aa000001',
      'Member/default/member-aa000002',
      'Member/default/member-aa000003',
      'HealthMonitor/default/hm-bb000001',
    ]);
    expect(find(result.objects, 'Listener', 'tcp-listener').spec).toEqual({ loadBalancer: 'lb-0c1d2e3f', protocol: 'TCP', port: 5432, defaultPool: 'db' });
    expect(find(result.objects, 'Pool', 'db').spec).toEqual({ loadBalancer: 'lb-0c1d2e3f', protocol: 'TCP', lbAlgorithm: 'SOURCE_IP' });
    expect(find(result.objects, 'Member', 'member-aa000002').spec).toEqual({ pool: 'db', address: '198.51.100.32', port: 5432, weight: 0 });
    expect(find(result.objects, 'HealthMonitor', 'hm-bb000001').spec).toEqual({
      pool: 'db',
      type: 'TCP',
      delay: 5,
      timeout: 4,
      maxRetries: 3,
      maxRetriesDown: 2,
    });
    expect(result.warnings).toContain(
      "member (aa000003-0000-4000-8000-000000000003): weight: only the status tree names this member: weight, backup, monitor and admin state are nslb's defaults",
    );
  });

  it('the status tree alone is not enough: every object but members is skipped, saying which command to run', async () => {
    const [status] = (await fixtures('cli')).filter((i) => i.file.endsWith('status-show.json'));
    const result = importOctavia([status!]);
    expect(result.objects).toEqual([]);
    expect(result.warnings[0]).toBe(
      'loadbalancer (0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e): skipped: only the status tree names it, without its configuration: pass `openstack loadbalancer show 0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e -f json` too',
    );
  });
});

describe('nslb import octavia: shapes, names, errors', () => {
  it('reads a fully populated create body (objects nested in objects, no ids)', () => {
    const result = importOctavia([
      {
        file: 'create.json',
        value: {
          loadbalancer: {
            name: 'Best LB',
            vip_address: '203.0.113.50',
            listeners: [
              {
                name: 'http_listener',
                protocol: 'HTTP',
                protocol_port: 80,
                default_pool: {
                  name: 'rr_pool',
                  protocol: 'HTTP',
                  lb_algorithm: 'ROUND_ROBIN',
                  healthmonitor: { type: 'HTTP', delay: 3, timeout: 1, max_retries: 2, url_path: '/index.html' },
                  members: [{ address: '192.0.2.16', protocol_port: 80 }],
                },
              },
            ],
          },
        },
      },
    ]);
    expect(result.objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'LoadBalancer/best-lb',
      'Pool/rr-pool',
      'Listener/http-listener',
      'Member/member-1',
      'HealthMonitor/hm-1',
    ]);
    expect(find(result.objects, 'Listener', 'http-listener').spec).toMatchObject({ loadBalancer: 'best-lb', defaultPool: 'rr-pool' });
    expect(find(result.objects, 'HealthMonitor', 'hm-1').spec).toEqual({
      pool: 'rr-pool',
      type: 'HTTP',
      delay: 3,
      timeout: 1,
      maxRetries: 2,
      urlPath: '/index.html',
    });
    expect(find(result.objects, 'LoadBalancer', 'best-lb').metadata.annotations).toBeUndefined();
  });

  it('SCTP and PROMETHEUS listeners are carried; what the kernel cannot do is said and dropped (issue 21)', () => {
    const result = importOctavia([
      {
        file: 'create.json',
        value: {
          loadbalancer: {
            name: 'sig',
            vip_address: '203.0.113.60',
            listeners: [
              {
                name: 'diameter',
                protocol: 'SCTP',
                protocol_port: 3868,
                connection_limit: 100,
                default_pool: {
                  name: 'peers',
                  protocol: 'SCTP',
                  lb_algorithm: 'LEAST_CONNECTIONS',
                  healthmonitor: { type: 'SCTP', delay: 5, timeout: 2, max_retries: 3 },
                  members: [{ address: '192.0.2.30', protocol_port: 3868, subnet_id: 'c0ffee00-0000-4000-8000-000000000001' }],
                },
              },
              { name: 'metrics', protocol: 'PROMETHEUS', protocol_port: 9100, allowed_cidrs: ['192.0.2.0/28'] },
            ],
          },
        },
      },
    ]);
    expect(find(result.objects, 'Listener', 'diameter').spec).toEqual({ loadBalancer: 'sig', protocol: 'SCTP', port: 3868, defaultPool: 'peers' });
    expect(find(result.objects, 'Pool', 'peers').spec).toEqual({ loadBalancer: 'sig', protocol: 'SCTP', lbAlgorithm: 'ROUND_ROBIN' });
    expect(find(result.objects, 'HealthMonitor', 'hm-1').spec).toMatchObject({ type: 'SCTP' });
    expect(find(result.objects, 'Listener', 'metrics').spec).toEqual({
      loadBalancer: 'sig',
      protocol: 'PROMETHEUS',
      port: 9100,
      allowedCidrs: ['192.0.2.0/28'],
    });
    expect(result.warnings.some((w) => w.includes('connection_limit: 100: the kernel forwards SCTP'))).toBe(true);
    expect(result.warnings.some((w) => w.includes('lb_algorithm: the kernel forwards SCTP flows without counting'))).toBe(true);
    expect(result.warnings.some((w) => w.includes('subnet_id:') && w.includes('spec.memberNetworks'))).toBe(true);
    expect(result.skipped).toBe(0);
    const built = buildDesired(result.objects as AnyObject[], { defaultBridge: 'br-int' });
    expect(built.problems).toEqual([]);
  });

  it('sanitizes names to DNS-1123 labels', () => {
    expect(sanitizeName('Web_Server #1')).toBe('web-server-1');
    expect(sanitizeName('---')).toBe('');
    expect(sanitizeName('x'.repeat(80))).toHaveLength(63);
  });

  it('additional_vips become additionalVips (addresses only: subnets are not known here)', () => {
    const result = importOctavia([
      {
        file: 'lb.json',
        value: { loadbalancer: { id: 'lb1', vip_address: '2001:db8::10', additional_vips: [{ subnet_id: 's4', ip_address: '192.0.2.10' }] } },
      },
    ]);
    expect(find(result.objects, 'LoadBalancer', 'lb-lb1').spec).toEqual({ vip: { address: '2001:db8::10' }, additionalVips: [{ address: '192.0.2.10' }] });
    expect(result.warnings.find((w) => w.includes('additional_vips: their Neutron subnets are not known here'))).toBeDefined();
  });

  it('an object the schema refuses is skipped with the field and the reason', () => {
    const result = importOctavia([
      { file: 'lb.json', value: { loadbalancer: { id: 'lb1', vip_address: '192.0.2.1' } } },
      { file: 'pool.json', value: { pool: { id: 'p1', loadbalancers: [{ id: 'lb1' }], protocol: 'HTTP', lb_algorithm: 'ROUND_ROBIN' } } },
      {
        file: 'rules.json',
        value: {
          l7policies: [{ id: 'pol1', listener_id: 'l1', action: 'REJECT', rules: [{ id: 'r1', type: 'PATH', compare_type: 'EQUAL_TO', value: '/a b' }] }],
        },
      },
      { file: 'l.json', value: { listener: { id: 'l1', loadbalancers: [{ id: 'lb1' }], protocol: 'HTTP', protocol_port: 80 } } },
      { file: 'm.json', value: { member: { id: 'm1', pool_id: 'p1', address: 'not-an-ip', protocol_port: 80 } } },
    ]);
    expect(result.objects.map((o) => o.kind)).toEqual(['LoadBalancer', 'Pool', 'Listener']);
    expect(result.warnings.find((w) => w.startsWith('member (m1): skipped: the nslb Member would be invalid: /spec/address'))).toBeDefined();
    expect(result.warnings.find((w) => w.startsWith('l7policy (pol1): skipped: its rule l7rule (r1) cannot be imported (/spec/value'))).toBeDefined();
  });

  it('malformed JSON: file, line and column', () => {
    expect(() => parseOctaviaJson('lb.json', '{\n  "loadbalancer": {\n    "id": "x",\n  }\n}')).toThrow(/^lb\.json: not valid JSON at line 4, column 3: /);
  });

  it('an unexpected shape: file and JSON path', () => {
    expect(() => importOctavia([{ file: 'l.json', value: { listeners: [{ protocol: 'HTTP', protocol_port: 80 }, 'x'] } }])).toThrow(
      new OctaviaInputError('l.json', '$.listeners[1]', 'expected an object, got "x"'),
    );
    expect(() => importOctavia([{ file: 'x.json', value: [{ flavor: 'small' }] }])).toThrow(/^x\.json: \$\[0\]: cannot tell which Octavia object this is/);
    expect(() => importOctavia([{ file: 'n.json', value: 42 }])).toThrow('n.json: $: expected a JSON object or array');
  });

  it('a listener whose load balancer is not in the input is skipped, and so is everything under it', () => {
    const result = importOctavia([
      { file: 'l.json', value: { listener: { id: 'l1', loadbalancers: [{ id: 'lb9' }], protocol: 'HTTP', protocol_port: 80, l7policies: [{ id: 'p1' }] } } },
      { file: 'p.json', value: { l7policy: { id: 'p1', listener_id: 'l1', action: 'REJECT' } } },
    ]);
    expect(result.objects).toEqual([]);
    expect(result.warnings).toEqual([
      'listener (l1): skipped: its loadbalancer lb9 is not in the input',
      'l7policy (p1): skipped: its listener (l1) was not imported',
    ]);
  });
});
