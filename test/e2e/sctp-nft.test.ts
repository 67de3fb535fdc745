// SCTP listeners forwarded by the kernel. This kernel has no SCTP sockets (CONFIG_IP_SCTP is not set) but
// conntrack and NAT handle SCTP, so forwarding works; the members and the client here speak the first two
// steps of the handshake (INIT, INIT-ACK) over raw sockets (test/e2e/sctp-raw.py), which is enough to see
// which member answered, from where, and that the answer comes back from the VIP with the client's tag.
//
// Run under the data-plane lock: flock -o /tmp/nslb-dataplane.lock npx vitest run test/e2e/sctp-nft.test.ts
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthFollower } from '../../src/drivers/nft/health-follower.js';
import { applyNftTransaction, ensureForwarding, observeNftTable, probeSctp } from '../../src/drivers/nft/nft.js';
import { runCommand as run } from '../../src/exec/run.js';
import { renderNftState, type NftLoadBalancer, type NftMember } from '../../src/plan/nft-ruleset.js';
import { planNftTransaction } from '../../src/plan/nft-transaction.js';
import { renderCheckBackend } from '../../src/plan/udp-health-checks.js';
import { createBridge, createHost, deleteBridge, deleteHost, ensureNode, REPO_ROOT, runCommand, uniqueRun, waitFor, type Host } from './harness.js';

const SCTP_RAW = join(REPO_ROOT, 'test', 'e2e', 'sctp-raw.py');
const PORT = 2905;
const t = uniqueRun(22);
let lbHost: Host;
let m1: Host;
let m2: Host;
let client: Host;
let client2: Host;
let bridge: string;
const servers = new Map<string, ChildProcess>();

interface Answer {
  sport: number;
  name?: string;
  seenFrom?: string;
  error?: string;
}

function model(lbAlgorithm: NftLoadBalancer['pools'][number]['lbAlgorithm']): NftLoadBalancer {
  const member = (name: string, host: Host): NftMember => ({
    name,
    address: host.address,
    port: PORT,
    weight: 1,
    backup: false,
    adminStateUp: true,
    health: 'NO_CHECK',
  });
  return {
    namespace: 'e2e',
    name: 'sctp',
    vips: [lbHost.address],
    listeners: [
      { name: 'm3ua', protocol: 'SCTP', port: PORT, allowedCidrs: [`${t.subnet}.0/24`], idleTimeoutSeconds: 30, defaultPool: 'stp', adminStateUp: true },
    ],
    pools: [{ name: 'stp', protocol: 'SCTP', lbAlgorithm, adminStateUp: true, members: [member('m1', m1), member('m2', m2)] }],
  };
}

async function apply(lb: NftLoadBalancer): Promise<void> {
  await applyNftTransaction(run, lbHost.netns, planNftTransaction(await observeNftTable(run, lbHost.netns), renderNftState(lb)));
}

async function ask(from: Host, sports: number[]): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (const sport of sports) {
    const { stdout } = await runCommand([
      'ip',
      'netns',
      'exec',
      from.netns,
      'python3',
      SCTP_RAW,
      'ask',
      '--to',
      lbHost.address,
      '--port',
      String(PORT),
      '--sport',
      String(sport),
    ]);
    answers.push(JSON.parse(stdout) as Answer);
  }
  return answers;
}

beforeAll(async () => {
  await ensureNode();
  bridge = await createBridge(t.name('br'));
  lbHost = await createHost({ name: t.name('lb'), bridge, address: t.cidr(10) });
  m1 = await createHost({ name: t.name('m1'), bridge, address: t.cidr(11) });
  m2 = await createHost({ name: t.name('m2'), bridge, address: t.cidr(12) });
  client = await createHost({ name: t.name('c1'), bridge, address: t.cidr(50) });
  client2 = await createHost({ name: t.name('c2'), bridge, address: t.cidr(51) });
  await startMember('m1', m1);
  await startMember('m2', m2);
  await ensureForwarding(run, lbHost.netns);
});

async function startMember(name: string, host: Host): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', host.netns, 'python3', SCTP_RAW, 'serve', '--name', name, '--port', String(PORT)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  servers.set(name, child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`sctp member ${name} exited ${code}`)));
  });
}

async function stopMember(name: string): Promise<void> {
  const child = servers.get(name);
  servers.delete(name);
  if (child === undefined || child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

afterAll(async () => {
  for (const s of servers.values()) s.kill('SIGTERM');
  for (const h of [client2, client, m2, m1, lbHost]) if (h !== undefined) await deleteHost(h.name);
  if (bridge !== undefined) await deleteBridge(bridge);
});

describe('SCTP listener forwarded by nftables', () => {
  it('the node forwards SCTP (conntrack and NAT have it) though it has no SCTP sockets', async () => {
    const sctp = await probeSctp();
    expect(sctp.forwarding).toBe(true);
    const sockets = await runCommand(
      ['ip', 'netns', 'exec', lbHost.netns, 'python3', '-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)'],
      { allowFailure: true },
    );
    expect(sockets.exitCode === 0).toBe(sctp.sockets);
  });

  it('ROUND_ROBIN alternates, and members see the load balancer as the source', async () => {
    await apply(model('ROUND_ROBIN'));
    const answers = await ask(
      client,
      Array.from({ length: 8 }, (_, i) => 42000 + i),
    );
    const names = answers.map((a) => a.name ?? a.error);
    expect(names.filter((n) => n === 'm1')).toHaveLength(4);
    for (let i = 1; i < names.length; i++) expect(names[i]).not.toBe(names[i - 1]);
    expect(new Set(answers.map((a) => a.seenFrom))).toEqual(new Set([lbHost.address]));
  });

  it('SOURCE_IP keeps a client on its member; SOURCE_IP_PORT keeps a client port on its member', async () => {
    await apply(model('SOURCE_IP'));
    for (const c of [client, client2]) {
      const names = (
        await ask(
          c,
          Array.from({ length: 8 }, (_, i) => 42100 + i),
        )
      ).map((a) => a.name ?? a.error);
      expect(new Set(names).size, names.join(',')).toBe(1);
    }
    await apply(model('SOURCE_IP_PORT'));
    const ports = Array.from({ length: 12 }, (_, i) => 42200 + i);
    const first = (await ask(client, ports)).map((a) => a.name ?? a.error);
    expect(new Set(first)).toEqual(new Set(['m1', 'm2']));
    await runCommand(['ip', 'netns', 'exec', lbHost.netns, 'conntrack', '-F']);
    expect((await ask(client, ports)).map((a) => a.name ?? a.error)).toEqual(first);
  });

  it('a source outside allowedCidrs gets no answer', async () => {
    await apply({ ...model('ROUND_ROBIN'), listeners: [{ ...model('ROUND_ROBIN').listeners[0]!, allowedCidrs: [`${client2.address}/32`] }] });
    expect((await ask(client, [42300]))[0]?.error).toBe('timeout');
    expect((await ask(client2, [42301]))[0]?.name).toMatch(/^m[12]$/);
  });

  it('an SCTP monitor (nmap INIT scan from HAProxy) takes a member out when it stops answering and back in', async () => {
    await apply(model('ROUND_ROBIN'));
    const dir = await mkdtemp(join(tmpdir(), 'nslb-sctp-'));
    const socket = join(dir, 'haproxy.sock');
    const pidFile = join(dir, 'haproxy.pid');
    const spec = model('ROUND_ROBIN');
    const checkOnly = renderCheckBackend(
      {
        ...spec.pools[0]!,
        healthMonitor: {
          type: 'SCTP',
          delay: 1,
          timeout: 1,
          maxRetries: 2,
          maxRetriesDown: 2,
          httpMethod: 'GET',
          urlPath: '/',
          expectedCodes: '200',
          adminStateUp: true,
        },
      },
      { udpConnect: '/bin/false', sctp: join(REPO_ROOT, 'scripts', 'sctp-check.sh'), ping: '/bin/false' },
    );
    await writeFile(
      join(dir, 'haproxy.cfg'),
      [
        'global',
        `    stats socket ${socket} mode 600 level admin`,
        '    external-check',
        '    insecure-fork-wanted',
        'defaults',
        '    mode tcp',
        '    timeout connect 5s',
        '    timeout client 5s',
        '    timeout server 5s',
        ...checkOnly,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    await runCommand(['ip', 'netns', 'exec', lbHost.netns, 'haproxy', '-D', '-p', pidFile, '-f', join(dir, 'haproxy.cfg')]);
    const follower = new HealthFollower({ run, netns: lbHost.netns, socketPath: socket, intervalMs: 250, model: () => spec });
    const members = async () =>
      new Set(
        (
          await ask(
            client,
            Array.from({ length: 4 }, (_, i) => 43000 + Math.floor(Math.random() * 20000) + i),
          )
        ).map((a) => a.name ?? a.error),
      );
    let pid: number | undefined;
    try {
      pid = Number((await readFile(pidFile, 'utf8')).trim());
      follower.start();
      await stopMember('m2');
      await waitFor(
        async () => {
          const got = await members();
          return got.size === 1 && got.has('m1');
        },
        { timeoutMs: 20_000, message: 'm2 to be taken out' },
      );
      await startMember('m2', m2);
      await waitFor(async () => (await members()).size === 2, { timeoutMs: 20_000, message: 'm2 to come back' });
    } finally {
      await follower.stop();
      if (pid !== undefined) process.kill(pid, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
