// The peers section of an ACTIVE_STANDBY load balancer, and the wiring into haproxy.cfg that
// src/plan/haproxy-peers.ts describes (localpeer, the section, `peers` on stick tables, the non-local bind),
// applied here to a config rendered by renderHaproxyConfig and checked by the real `haproxy -c`: the proof
// that the wiring, once src/plan/haproxy-config.ts does it, yields a config HAProxy 2.6 accepts.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import {
  BIND_NONLOCAL,
  PEER_PORT,
  renderHaproxyPeers,
  renderLocalPeer,
  stickTablePeers,
  UnsafePeersValueError,
  type DesiredPeers,
} from '../../src/plan/haproxy-peers.js';
import { listener, loadBalancer, member, pool } from '../support/desired-lb.js';

const run = promisify(execFile);

const peers: DesiredPeers = {
  local: 'node-b.example.net',
  peers: [
    { name: 'node-b.example.net', address: '10.201.0.3' },
    { name: 'node-a.example.net', address: '10.201.0.2' },
  ],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nslb-peers-golden-'));
  // The driver writes it before every reload; without one, haproxy -c warns.
  await writeFile(join(dir, 'server-state'), '1\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What src/plan/haproxy-config.ts is to do for ACTIVE_STANDBY, done on its output. */
function wireActiveStandby(config: string, p: DesiredPeers): string {
  return config
    .replace(/^global\n/m, `global\n${renderLocalPeer(p)}\n`)
    .replace(/^defaults\n/m, `${renderHaproxyPeers(p).join('\n')}\n\ndefaults\n`)
    .replace(/^( {4}stick-table .*)$/gm, `$1 ${stickTablePeers()}`)
    .replace(/^( {4}bind \S+)(.*)$/gm, `$1$2 ${BIND_NONLOCAL}`);
}

async function haproxyCheck(config: string, name: string): Promise<{ code: number; output: string }> {
  const file = join(dir, `${name}.cfg`);
  await writeFile(file, config, { mode: 0o600 });
  try {
    const { stdout, stderr } = await run('haproxy', ['-c', '-f', file], { timeout: 10_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('renderHaproxyPeers', () => {
  it('lists both nodes in name order at their VRRP addresses, the local one named by localpeer', () => {
    expect(renderHaproxyPeers(peers)).toEqual([
      'peers nslb',
      `    peer node-a.example.net 10.201.0.2:${PEER_PORT}`,
      `    peer node-b.example.net 10.201.0.3:${PEER_PORT}`,
    ]);
    expect(renderLocalPeer(peers)).toBe('    localpeer node-b.example.net');
    expect(
      renderHaproxyPeers({
        local: 'n1',
        peers: [
          { name: 'n1', address: 'fd00::2' },
          { name: 'n2', address: 'fd00::3', port: 7000 },
        ],
      }),
    ).toEqual(['peers nslb', `    peer n1 [fd00::2]:${PEER_PORT}`, '    peer n2 [fd00::3]:7000']);
  });

  it('refuses names and addresses HAProxy would read as syntax, and a local peer that is not a peer', () => {
    const bad: DesiredPeers[] = [
      { local: 'a b', peers: [{ name: 'a b', address: '10.0.0.1' }] },
      { local: 'a', peers: [{ name: 'a', address: '10.0.0.1 #' }] },
      { local: 'a', peers: [{ name: 'a', address: 'fe80::1%eth0' }] },
      { local: 'a', peers: [{ name: 'a', address: '10.0.0.1', port: 0 }] },
      { local: 'a', peers: [{ name: 'a"', address: '10.0.0.1' }] },
      {
        local: 'c',
        peers: [
          { name: 'a', address: '10.0.0.1' },
          { name: 'b', address: '10.0.0.2' },
        ],
      },
      {
        local: 'a',
        peers: [
          { name: 'a', address: '10.0.0.1' },
          { name: 'a', address: '10.0.0.2' },
        ],
      },
    ];
    for (const p of bad) expect(() => [renderLocalPeer(p), ...renderHaproxyPeers(p)], JSON.stringify(p)).toThrow(UnsafePeersValueError);
  });

  it('wired into a rendered config with SOURCE_IP and APP_COOKIE stick tables, passes haproxy -c', async () => {
    const lb = loadBalancer({
      vip: {
        address: '10.201.0.10',
        family: 4,
        prefixLength: 24,
        gateway: '10.201.0.1',
        mac: 'fa:16:3e:01:02:03',
        additional: [{ address: 'fd00:201::10', family: 6, prefixLength: 64 }],
      },
      listeners: [listener('tcp', { protocol: 'TCP', port: 5000, defaultPool: 'by-source' }), listener('http', { port: 80, defaultPool: 'by-app-cookie' })],
      pools: [
        pool('by-source', { protocol: 'TCP', sessionPersistence: { type: 'SOURCE_IP' }, members: [member('s-1', '10.202.4.1', 5000)] }),
        pool('by-app-cookie', {
          sessionPersistence: { type: 'APP_COOKIE', cookieName: 'JSESSIONID' },
          members: [member('a-1', '10.202.4.21', 80), member('a-2', '10.202.4.22', 80)],
        }),
      ],
    });
    const config = wireActiveStandby(
      renderHaproxyConfig(lb, {
        socket: join(dir, 'haproxy.sock'),
        stateFile: join(dir, 'server-state'),
        certsDir: join(dir, 'certs'),
        pingCheckCommand: '/bin/true',
      }),
      peers,
    );
    expect(config.match(/ peers nslb$/gm)).toHaveLength(2);
    expect(config).toMatch(/^ {4}bind 10\.201\.0\.10:5000 transparent$/m);
    expect(config).toMatch(/^ {4}bind \[fd00:201::10\]:80 transparent$/m);
    const { code, output } = await haproxyCheck(config, 'wired');
    expect(output).not.toMatch(/ALERT|WARNING/);
    expect(code).toBe(0);
  });
});
