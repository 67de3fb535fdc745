// Golden keepalived configs: each case renders to test/golden/keepalived/<case>.conf byte for byte (`vitest -u`
// rewrites them; review the diff), and each must pass the real `keepalived -t`, run in a private network
// namespace that has the interface the config names (test/support/keepalived-check.mjs).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BACKSTOP_SCRIPT_NAME,
  HEALTH_FILE_NAME,
  RELEASE_FILE_NAME,
  advertIntSeconds,
  defaultVirtualRouterId,
  renderKeepalivedConfig,
  UnsafeKeepalivedValueError,
  vrrpPriority,
  type DesiredVrrp,
  type KeepalivedPaths,
} from '../../src/plan/keepalived-config.js';

const run = promisify(execFile);
const CHECKER = fileURLToPath(new URL('../support/keepalived-check.mjs', import.meta.url));
const SCRIPTS = fileURLToPath(new URL('../../scripts/', import.meta.url));

const LB_DIR = '/var/lib/nslb/lb/nslb-0123456789ab';
// The paths the agent uses on a node, so the goldens read like production configs; the check gets the same
// config with the repository's scripts (keepalived -t insists that scripts exist and are safe to run as root).
const paths: KeepalivedPaths = {
  checkScript: '/usr/lib/node_modules/nslb/scripts/haproxy-vrrp-check.sh',
  notifyScript: '/usr/lib/node_modules/nslb/scripts/keepalived-notify.sh',
  haproxyPidfile: `${LB_DIR}/haproxy.pid`,
  notifyFifo: `${LB_DIR}/keepalived.fifo`,
  stateFile: `${LB_DIR}/keepalived.state`,
  releaseFile: `${LB_DIR}/keepalived.release`,
  healthFile: `${LB_DIR}/keepalived.health`,
};
const checkPaths: KeepalivedPaths = {
  ...paths,
  checkScript: join(SCRIPTS, 'haproxy-vrrp-check.sh'),
  notifyScript: join(SCRIPTS, 'keepalived-notify.sh'),
};

function vrrp(overrides: Partial<DesiredVrrp> = {}): DesiredVrrp {
  return {
    lbKey: 'default/web',
    name: 'nslb-0123456789ab',
    interface: 'nslb0123456789a',
    virtualRouterId: defaultVirtualRouterId('default/web'),
    priority: vrrpPriority(0),
    advertIntervalMs: 200,
    localAddress: '10.202.0.2',
    peerAddress: '10.202.0.3',
    vips: [{ address: '10.202.0.10', prefixLength: 24 }],
    ...overrides,
  };
}

const cases: Record<string, DesiredVrrp> = {
  'ipv4-preferred-master': vrrp(),
  'ipv4-other-slot-one-second': vrrp({
    priority: vrrpPriority(1),
    advertIntervalMs: 1000,
    localAddress: '10.202.0.3',
    peerAddress: '10.202.0.2',
    virtualRouterId: 255,
  }),
  'dual-stack-additional-vips': vrrp({
    advertIntervalMs: 150,
    vips: [
      { address: '10.202.0.10', prefixLength: 24 },
      { address: '10.202.1.10', prefixLength: 24 },
      { address: 'fd00:202::10', prefixLength: 64 },
    ],
  }),
  'ipv6-vrrp': vrrp({
    interface: 'nslbfedcba98765',
    localAddress: 'fd00:202::2',
    peerAddress: 'fd00:202::3',
    vips: [
      { address: 'fd00:202::10', prefixLength: 64 },
      { address: '10.202.0.10', prefixLength: 24 },
    ],
  }),
};

let dir: string;
const checked = new Map<string, { code: number | null; output: string }>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-keepalived-golden-'));
  const files: string[] = [];
  for (const [name, model] of Object.entries(cases)) {
    const file = join(dir, `${name}.conf`);
    await writeFile(file, renderKeepalivedConfig(model, checkPaths), { mode: 0o600 });
    files.push(file);
  }
  const ifaces = [...new Set(Object.values(cases).map((c) => c.interface))].join(',');
  const { stdout } = await run('unshare', ['--net', '--', process.execPath, CHECKER, ifaces, ...files], { timeout: 60_000 });
  for (const r of JSON.parse(stdout) as { file: string; code: number | null; output: string }[]) checked.set(r.file, r);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('renderKeepalivedConfig golden files', () => {
  for (const [name, model] of Object.entries(cases)) {
    it(`${name} matches its golden file and passes keepalived -t`, async () => {
      await expect(renderKeepalivedConfig(model, paths)).toMatchFileSnapshot(`./keepalived/${name}.conf`);
      const result = checked.get(join(dir, `${name}.conf`));
      expect(result?.output.trim()).toBe('');
      expect(result?.code).toBe(0);
    });
  }

  it('the check fails for a config keepalived rejects (the check is not a no-op)', async () => {
    const bad = join(dir, 'bad.conf');
    await writeFile(bad, renderKeepalivedConfig(vrrp(), checkPaths).replace('advert_int 0.2', 'advert_int 0.205'), { mode: 0o600 });
    const { stdout } = await run('unshare', ['--net', '--', process.execPath, CHECKER, 'nslb0123456789a', bad], { timeout: 30_000 });
    const [r] = JSON.parse(stdout) as { code: number }[];
    expect(r?.code).not.toBe(0);
  });
});

describe('renderKeepalivedConfig', () => {
  it('starts both nodes BACKUP with nopreempt, unicast to the peer only, VRRPv3', () => {
    const text = renderKeepalivedConfig(vrrp(), paths);
    expect(text).toMatch(/^ {4}state BACKUP$/m);
    expect(text).toMatch(/^ {4}nopreempt$/m);
    expect(text).toMatch(/^ {4}unicast_src_ip 10\.202\.0\.2$/m);
    expect(text).toMatch(/unicast_peer \{\n {8}10\.202\.0\.3\n {4}\}/);
    expect(text).toMatch(/^ {4}check_unicast_src$/m);
    expect(text).toMatch(/^ {4}vrrp_version 3$/m);
    expect(text).not.toMatch(/state MASTER/);
  });

  it("follows the agent's health file, and keeps one pidfile script every 5 s as the backstop for when the agent is down", () => {
    const text = renderKeepalivedConfig(vrrp(), paths);
    const block = (kind: string, name: string) => new RegExp(`^${kind} ${name} \\{\n((?: {4}.*\n)*)}$`, 'm').exec(text)?.[1] ?? '';
    const settings = (kind: string, name: string) =>
      Object.fromEntries(
        block(kind, name)
          .trim()
          .split('\n')
          .map((l) => [l.trim().split(' ')[0], l.trim().slice(l.trim().indexOf(' ') + 1)]),
      );
    const backstop = settings('vrrp_script', BACKSTOP_SCRIPT_NAME);
    // The pidfile only: with no socket the script starts no process but the shell.
    expect(backstop.script).toBe(`"${paths.checkScript} ${paths.haproxyPidfile}"`);
    expect(backstop.interval).toBe('5');
    expect(Number(backstop.timeout)).toBeLessThan(Number(backstop.interval));
    // Two failures in a row (Octavia's vrrp_fail_count): one run that times out on a loaded node is not a dead HAProxy.
    expect(backstop.fall).toBe('2');
    expect(backstop.rise).toBe('2');
    expect(backstop.init_fail).toBe('init_fail');
    // The one vrrp_script: nothing asks the runtime socket from keepalived (the agent does).
    expect(text.match(/^vrrp_script /gm)).toHaveLength(1);
    expect(text).not.toContain('haproxy.sock');
    const health = settings('track_file', HEALTH_FILE_NAME);
    expect(health.file).toBe(`"${paths.healthFile}"`);
    // weight 0: non-zero is FAULT. A missing file starts at 1 (no MASTER before HAProxy was judged); an existing
    // one is the agent's verdict and is not overwritten.
    expect(health.weight).toBe('0');
    expect(health.init_file).toBe('1');
    // Tracked by the instance, with no weight: a failure of either is FAULT.
    expect(text).toMatch(new RegExp(`track_script \\{\n {8}${BACKSTOP_SCRIPT_NAME}\n {4}}`));
    expect(text).toMatch(new RegExp(`track_file \\{\n {8}${HEALTH_FILE_NAME}\n {8}${RELEASE_FILE_NAME}\n {4}}`));
  });

  it('keeps IPv4 and IPv6 VIPs apart: the instance family in virtual_ipaddress, the other excluded', () => {
    const text = renderKeepalivedConfig(cases['dual-stack-additional-vips'] ?? vrrp(), paths);
    expect(text).toMatch(/virtual_ipaddress \{\n {8}10\.202\.0\.10\/24 dev nslb0123456789a\n {8}10\.202\.1\.10\/24 dev nslb0123456789a\n {4}\}/);
    expect(text).toMatch(/virtual_ipaddress_excluded \{\n {8}fd00:202::10\/64 dev nslb0123456789a\n {4}\}/);
  });

  it('renders advert intervals in keepalived seconds', () => {
    expect(advertIntSeconds(1000)).toBe('1');
    expect(advertIntSeconds(200)).toBe('0.2');
    expect(advertIntSeconds(150)).toBe('0.15');
    expect(advertIntSeconds(10)).toBe('0.01');
    expect(advertIntSeconds(2500)).toBe('2.5');
    expect(advertIntSeconds(40950)).toBe('40.95');
    for (const bad of [0, 5, 15, 40960, 99.5, Number.NaN]) expect(() => advertIntSeconds(bad)).toThrow(UnsafeKeepalivedValueError);
  });

  it('derives a stable virtual router id in 1–255 from the key', () => {
    expect(defaultVirtualRouterId('default/web')).toBe(defaultVirtualRouterId('default/web'));
    for (let i = 0; i < 500; i++) {
      const id = defaultVirtualRouterId(`ns/lb-${i}`);
      expect(id).toBeGreaterThanOrEqual(1);
      expect(id).toBeLessThanOrEqual(255);
    }
    expect(vrrpPriority(0)).toBeGreaterThan(vrrpPriority(1));
    expect(() => vrrpPriority(2)).toThrow(RangeError);
  });

  it('refuses every value that could change the meaning of a line', () => {
    const hostile: Partial<DesiredVrrp>[] = [
      { name: 'a b' },
      { name: 'x}\nvrrp_instance y {' },
      { name: '$EVIL' },
      { lbKey: 'default/web # comment' },
      { interface: 'eth0 dev lo' },
      { interface: 'a-very-long-interface-name' },
      { localAddress: '10.0.0.1 10.0.0.9' },
      { localAddress: 'fe80::1%eth0', peerAddress: 'fe80::2' },
      { peerAddress: '10.0.0.3\n}' },
      { localAddress: '10.202.0.2', peerAddress: 'fd00::3' },
      { localAddress: '10.202.0.2', peerAddress: '10.202.0.2' },
      { vips: [{ address: '10.0.0.10"', prefixLength: 24 }] },
      { vips: [{ address: '10.0.0.10', prefixLength: 33 }] },
      { vips: [{ address: 'fd00::10', prefixLength: 64 }] },
      { vips: [] },
      { virtualRouterId: 0 },
      { virtualRouterId: 256 },
      { priority: 255 },
      { priority: 0 },
      { advertIntervalMs: 5 },
    ];
    for (const h of hostile) expect(() => renderKeepalivedConfig(vrrp(h), paths), JSON.stringify(h)).toThrow(UnsafeKeepalivedValueError);
    const badPaths: Partial<KeepalivedPaths>[] = [
      { checkScript: 'relative/check.sh' },
      { checkScript: '/x/check.sh; rm -rf /' },
      { haproxyPidfile: '/x/a b.pid' },
      { haproxyPidfile: 'haproxy.pid' },
      { healthFile: '/x/a b.health' },
      { healthFile: '/x/"health' },
      { notifyFifo: '/x/"fifo' },
      { stateFile: '/x/../etc/passwd' },
    ];
    for (const p of badPaths) expect(() => renderKeepalivedConfig(vrrp(), { ...paths, ...p }), JSON.stringify(p)).toThrow(UnsafeKeepalivedValueError);
  });
});
