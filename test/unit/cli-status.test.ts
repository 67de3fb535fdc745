// `nslb status` on a status.json written by the test: the tree, members' traffic, colour rules, the
// load balancer filter, and every way `--wait` ends (ACTIVE: 0; ERROR: 1; time out: 1 saying what is pending).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ObjectStatus } from '../../src/api/v1alpha1/types.js';
import { formatBytes, formatStatusTable, selectLoadBalancers, showStatus, useColour, type StatusFlags, type StatusIo } from '../../src/cli/status.js';
import type { StatusFile, StatusFileObject } from '../../src/status/status-file.js';
import type { MemberStats } from '../../src/status/status-file.js';

type Prov = ObjectStatus['provisioningStatus'];
type Oper = ObjectStatus['operatingStatus'];

function obj(
  kind: string,
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
  prov: Prov = 'ACTIVE',
  oper: Oper = 'ONLINE',
  stats?: MemberStats,
): StatusFileObject {
  const ready = prov === 'ACTIVE';
  return {
    apiVersion: 'nslb.dev/v1alpha1',
    kind,
    namespace,
    name,
    spec,
    status: {
      provisioningStatus: prov,
      operatingStatus: oper,
      conditions: [
        {
          type: 'Ready',
          status: ready ? 'True' : 'False',
          reason: ready ? 'Provisioned' : 'Pending',
          message: ready ? 'applied to the node' : prov === 'ERROR' ? 'bridge br-x does not exist' : 'reconcile in progress',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    },
    ...(stats === undefined ? {} : { stats }),
  };
}

/** One load balancer `name` in `ns`: listener, pool, monitor, two members (m1 with traffic, m2 failing its check). */
function lbObjects(ns: string, name: string, over: { memberProv?: Prov } = {}): StatusFileObject[] {
  return [
    {
      ...obj('LoadBalancer', ns, name, { vip: { address: '10.0.0.5' } }),
      status: { ...obj('LoadBalancer', ns, name, {}).status, vip: '10.0.0.5', netns: 'nslb-0123456789ab' },
    },
    obj('Listener', ns, `${name}-l`, { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` }),
    obj('Pool', ns, `${name}-p`, { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }, 'ACTIVE', 'DEGRADED'),
    obj('HealthMonitor', ns, `${name}-hm`, { pool: `${name}-p`, type: 'HTTP' }),
    obj('Member', ns, `${name}-m1`, { pool: `${name}-p`, address: '10.0.0.11', port: 8080 }, over.memberProv ?? 'ACTIVE', 'ONLINE', {
      currentSessions: 2,
      totalSessions: 1234,
      bytesIn: 1536,
      bytesOut: 5 * 1024 * 1024,
      checkStatus: 'L7OK',
      lastCheck: 'Layer7 check passed: OK',
      state: 'UP',
    }),
    obj('Member', ns, `${name}-m2`, { pool: `${name}-p`, address: '10.0.0.12', port: 8080 }, 'ACTIVE', 'ERROR', {
      currentSessions: 0,
      totalSessions: 0,
      bytesIn: 0,
      bytesOut: 0,
      checkStatus: 'L4CON',
      lastCheck: 'Layer4 connection problem: Connection refused',
      state: 'DOWN',
    }),
  ];
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC is what starts a colour code
const ANSI = /\u001b\[[0-9;]*m/g;

describe('nslb status table', () => {
  const file: StatusFile = { objects: lbObjects('team-a', 'web'), errors: [] };

  it('draws the tree with each member’s sessions, bytes and check', () => {
    const text = formatStatusTable(file);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+PROVISIONING\s+OPERATING\s+DETAIL\s+SESSIONS\s+TOTAL\s+BYTES IN\s+BYTES OUT\s+CHECK$/);
    expect(lines[1]).toMatch(/^loadbalancer team-a\/web\s+ACTIVE\s+ONLINE\s+vip 10\.0\.0\.5 netns nslb-0123456789ab$/);
    expect(lines[2]).toMatch(/^ {2}listener web-l\s+ACTIVE\s+ONLINE\s+HTTP:80$/);
    expect(lines[3]).toMatch(/^ {4}pool web-p\s+ACTIVE\s+DEGRADED\s+HTTP ROUND_ROBIN$/);
    expect(lines[4]).toMatch(/^ {6}healthmonitor web-hm\s+ACTIVE\s+ONLINE\s+HTTP$/);
    expect(lines[5]).toMatch(/^ {6}member web-m1\s+ACTIVE\s+ONLINE\s+10\.0\.0\.11:8080\s+2\s+1234\s+1\.5 KiB\s+5\.0 MiB\s+L7OK$/);
    expect(lines[6]).toMatch(
      /^ {6}member web-m2\s+ACTIVE\s+ERROR\s+10\.0\.0\.12:8080\s+0\s+0\s+0 B\s+0 B\s+L4CON \(Layer4 connection problem: Connection refused\)$/,
    );
    // Columns line up: the CHECK column starts at the same place on both member lines.
    expect(lines[5]!.indexOf('L7OK')).toBe(lines[6]!.indexOf('L4CON'));
    expect(text).not.toMatch(ANSI);
  });

  it('leaves the traffic columns out when no member has figures (HAProxy not asked yet)', () => {
    const bare: StatusFile = { objects: file.objects.map(({ stats: _stats, ...o }) => o), errors: [] };
    expect(formatStatusTable(bare).split('\n')[0]).toMatch(/^NAME\s+PROVISIONING\s+OPERATING\s+DETAIL$/);
  });

  it('paints status words when asked, without moving the columns', () => {
    const plain = formatStatusTable(file);
    const painted = formatStatusTable(file, { colour: true });
    expect(painted).toContain('\u001b[32mACTIVE\u001b[0m');
    expect(painted).toContain('\u001b[33mDEGRADED\u001b[0m');
    expect(painted).toContain('\u001b[31mERROR\u001b[0m');
    expect(painted).toContain('\u001b[31mL4CON (Layer4 connection problem: Connection refused)\u001b[0m');
    expect(painted.replace(ANSI, '')).toBe(plain);
  });

  it('says why an object is in ERROR, below the table', () => {
    const broken: StatusFile = {
      objects: lbObjects('team-a', 'web', { memberProv: 'ERROR' }),
      errors: [{ file: 'bad.yaml', document: 2, message: 'spec.port: must be <= 65535' }],
    };
    const text = formatStatusTable(broken);
    expect(text).toContain('! Member team-a/web-m1: bridge br-x does not exist');
    expect(text).toContain('! bad.yaml: document 2: spec.port: must be <= 65535');
  });

  it("says when the node's kernel limits are too low, and nothing while they hold", () => {
    const condition = (status: 'True' | 'False', message: string) => ({
      type: 'KernelLimitsSufficient',
      status,
      reason: status === 'True' ? 'Raised' : 'NeighbourTableTooSmall',
      message,
      lastTransitionTime: '2026-01-01T00:00:00Z',
    });
    const low: StatusFile = {
      ...file,
      node: {
        name: 'net-1',
        conditions: [condition('False', 'net.ipv4.neigh.default.gc_thresh3 is 1024, needs 5512: sysctl -w net.ipv4.neigh.default.gc_thresh3=11264')],
      },
    };
    expect(formatStatusTable(low)).toContain(
      '! node net-1: KernelLimitsSufficient=False (NeighbourTableTooSmall): net.ipv4.neigh.default.gc_thresh3 is 1024, needs 5512: sysctl -w net.ipv4.neigh.default.gc_thresh3=11264',
    );
    const fine: StatusFile = { ...file, node: { name: 'net-1', conditions: [condition('True', 'raised by nslb: …')] } };
    expect(formatStatusTable(fine)).not.toContain('! node');
  });

  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [10 * 1024, '10 KiB'],
    [3.5 * 1024 ** 3, '3.5 GiB'],
  ])('formatBytes(%d) is %s', (n, text) => {
    expect(formatBytes(n)).toBe(text);
  });
});

describe('colour', () => {
  const io = (isTTY: boolean, env: Record<string, string> = {}): StatusIo => ({ stdout: { write: () => true, isTTY }, stderr: { write: () => true }, env });

  it('only for a table on a terminal, and never with NO_COLOR', () => {
    expect(useColour(io(true), 'table')).toBe(true);
    expect(useColour(io(false), 'table')).toBe(false);
    expect(useColour(io(true, { NO_COLOR: '1' }), 'table')).toBe(false);
    // no-color.org: an empty NO_COLOR does not count.
    expect(useColour(io(true, { NO_COLOR: '' }), 'table')).toBe(true);
    expect(useColour(io(true), 'json')).toBe(false);
    expect(useColour(io(true), 'yaml')).toBe(false);
  });
});

describe('the load balancer filter', () => {
  const file: StatusFile = {
    objects: [
      ...lbObjects('team-a', 'web'),
      ...lbObjects('team-a', 'api'),
      ...lbObjects('team-b', 'web'),
      obj('Member', 'team-a', 'stray', { pool: 'nowhere', address: '10.0.0.99', port: 1 }, 'ERROR', 'ERROR'),
      obj('L7Policy', 'team-a', 'web-pol', { listener: 'web-l', action: 'REJECT' }),
      obj('L7Rule', 'team-a', 'web-pol-r', { l7Policy: 'web-pol', type: 'PATH', compareType: 'STARTS_WITH', value: '/' }),
    ],
    errors: [],
  };
  const ids = (f: StatusFile): string[] => f.objects.map((o) => `${o.kind}/${o.namespace}/${o.name}`);

  it('by namespace/name: that load balancer and everything under it', () => {
    const { file: cut, unmatched } = selectLoadBalancers(file, ['team-a/web']);
    expect(unmatched).toEqual([]);
    expect(ids(cut)).toEqual([
      'LoadBalancer/team-a/web',
      'Listener/team-a/web-l',
      'Pool/team-a/web-p',
      'HealthMonitor/team-a/web-hm',
      'Member/team-a/web-m1',
      'Member/team-a/web-m2',
      'L7Policy/team-a/web-pol',
      'L7Rule/team-a/web-pol-r',
    ]);
  });

  it('by bare name: in every namespace', () => {
    const { file: cut } = selectLoadBalancers(file, ['web']);
    expect(cut.objects.filter((o) => o.kind === 'LoadBalancer').map((o) => `${o.namespace}/${o.name}`)).toEqual(['team-a/web', 'team-b/web']);
    expect(ids(cut)).not.toContain('Member/team-a/stray');
  });

  it('several, and names that match nothing are reported', () => {
    const { file: cut, unmatched } = selectLoadBalancers(file, ['api', 'team-b/web', 'nope', 'team-c/web']);
    expect(cut.objects.filter((o) => o.kind === 'LoadBalancer').map((o) => `${o.namespace}/${o.name}`)).toEqual(['team-a/api', 'team-b/web']);
    expect(unmatched).toEqual(['nope', 'team-c/web']);
  });
});

describe('showStatus', () => {
  let stateDir: string;
  let out: string;
  let err: string;
  const io = (isTTY = false, env: Record<string, string> = {}): StatusIo => ({
    stdout: { write: (t: string) => (out += t), isTTY },
    stderr: { write: (t: string) => (err += t) },
    env,
  });
  const flags = (over: Partial<StatusFlags> = {}): StatusFlags => ({ stateDir, output: 'table', wait: false, timeout: 1, ...over });
  const write = (file: StatusFile): Promise<void> => writeFile(join(stateDir, 'status.json'), JSON.stringify(file));

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'nslb-status-'));
    out = '';
    err = '';
  });
  afterEach(() => rm(stateDir, { recursive: true, force: true }));

  it('without status.json: exit 1 and says where it looked', async () => {
    expect(await showStatus(flags(), io())).toBe(1);
    expect(err).toContain(`${stateDir}/status.json does not exist`);
  });

  it('shows only the load balancers named; an unknown name is exit 1 listing the known ones', async () => {
    await write({ objects: [...lbObjects('team-a', 'web'), ...lbObjects('team-a', 'api')], errors: [] });
    expect(await showStatus(flags({ lbs: ['api'] }), io())).toBe(0);
    expect(out).toContain('loadbalancer team-a/api');
    expect(out).not.toContain('team-a/web');
    out = '';
    expect(await showStatus(flags({ lbs: ['nope'] }), io())).toBe(1);
    expect(out).toBe('');
    expect(err).toBe('no load balancer nope in status.json (known: team-a/web, team-a/api)\n');
  });

  it('colours a table on a terminal, never JSON or YAML, never with NO_COLOR', async () => {
    await write({ objects: lbObjects('team-a', 'web'), errors: [] });
    await showStatus(flags(), io(true));
    expect(out).toMatch(ANSI);
    out = '';
    await showStatus(flags(), io(true, { NO_COLOR: '1' }));
    expect(out).not.toMatch(ANSI);
    out = '';
    await showStatus(flags({ output: 'json' }), io(true));
    expect(out).not.toMatch(ANSI);
    expect((JSON.parse(out) as StatusFile).objects.find((o) => o.name === 'web-m1')?.stats?.totalSessions).toBe(1234);
    out = '';
    await showStatus(flags({ output: 'yaml', lbs: ['web'] }), io(true));
    expect(out).not.toMatch(ANSI);
    expect(out).toContain('totalSessions: 1234');
  });

  describe('--wait', () => {
    it('every object ACTIVE: exit 0, prints the tree, nothing on stderr', async () => {
      await write({ objects: lbObjects('team-a', 'web'), errors: [] });
      expect(await showStatus(flags({ wait: true }), io(), 10)).toBe(0);
      expect(out).toContain('loadbalancer team-a/web');
      expect(err).toBe('');
    });

    it('waits while objects are pending, and ends with 0 once they are ACTIVE', async () => {
      await write({ objects: lbObjects('team-a', 'web', { memberProv: 'PENDING_CREATE' }), errors: [] });
      const waiting = showStatus(flags({ wait: true, timeout: 60 }), io(), 10);
      await new Promise((r) => setTimeout(r, 100));
      expect(out).toBe('');
      await write({ objects: lbObjects('team-a', 'web'), errors: [] });
      expect(await waiting).toBe(0);
    });

    it('one object in ERROR: exit 1, saying which and why', async () => {
      await write({ objects: lbObjects('team-a', 'web', { memberProv: 'ERROR' }), errors: [] });
      expect(await showStatus(flags({ wait: true }), io(), 10)).toBe(1);
      expect(err).toBe('failed: Member team-a/web-m1: bridge br-x does not exist\n');
    });

    it('a broken manifest file: exit 1, naming it', async () => {
      await write({ objects: lbObjects('team-a', 'web'), errors: [{ file: 'bad.yaml', document: 1, message: 'not YAML' }] });
      expect(await showStatus(flags({ wait: true }), io(), 10)).toBe(1);
      expect(err).toBe('failed: bad.yaml document 1: not YAML\n');
    });

    it('time runs out: exit 1, listing what is still pending', async () => {
      await write({ objects: lbObjects('team-a', 'web', { memberProv: 'PENDING_UPDATE' }), errors: [] });
      expect(await showStatus(flags({ wait: true, timeout: 1 }), io(), 50)).toBe(1);
      expect(err).toBe('timed out after 1s waiting for every object to be ACTIVE; still pending: Member team-a/web-m1 (PENDING_UPDATE)\n');
      expect(out).toContain('member web-m1');
    });

    it('time runs out without status.json, or before a named load balancer appears: exit 1, saying so', async () => {
      expect(await showStatus(flags({ wait: true, timeout: 1 }), io(), 50)).toBe(1);
      expect(err).toContain('status.json does not exist');
      err = '';
      await write({ objects: lbObjects('team-a', 'web'), errors: [] });
      expect(await showStatus(flags({ wait: true, timeout: 1, lbs: ['team-a/api'] }), io(), 50)).toBe(1);
      expect(err).toBe('timed out after 1s waiting for every object to be ACTIVE: no load balancer team-a/api in status.json\n');
    });

    it('with a filter, only the named load balancer has to be ACTIVE', async () => {
      await write({ objects: [...lbObjects('team-a', 'web'), ...lbObjects('team-a', 'api', { memberProv: 'ERROR' })], errors: [] });
      expect(await showStatus(flags({ wait: true, lbs: ['web'] }), io(), 10)).toBe(0);
      expect(await showStatus(flags({ wait: true, lbs: ['api'] }), io(), 10)).toBe(1);
    });
  });
});
