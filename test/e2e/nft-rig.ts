// The set-up the e2e tests of the nft driver share (udp-nft, sctp-nft): a load balancer namespace, two members
// and two clients on one bridge of their own, forwarding on in the namespace; the driver's observe → plan →
// one transaction as the agent does it; and a HAProxy running only the check-only backend of a kernel pool,
// whose `show stat` the health follower reads.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyNftTransaction, ensureForwarding, observeNftTable } from '../../src/drivers/nft/nft.js';
import { runCommand as run } from '../../src/exec/run.js';
import { renderNftState, type NftLoadBalancer, type NftMember } from '../../src/plan/nft-ruleset.js';
import { planNftTransaction } from '../../src/plan/nft-transaction.js';
import { renderCheckBackend, type CheckCommands, type CheckedPool, type UdpHealthMonitor } from '../../src/plan/udp-health-checks.js';
import { createBridge, createHost, deleteBridge, deleteHost, ensureNode, runCommand, uniqueRun, type Host, type TestRun } from './harness.js';

export class NftRig {
  readonly t: TestRun;
  bridge: string | undefined;
  lbHost!: Host;
  m1!: Host;
  m2!: Host;
  client!: Host;
  client2!: Host;

  constructor(plane: number) {
    this.t = uniqueRun(plane);
  }

  /** Every host made (call cleanup() in afterAll even if this throws). */
  async start(): Promise<void> {
    const { t } = this;
    await ensureNode();
    const bridge = await createBridge(t.name('br'));
    this.bridge = bridge;
    this.lbHost = await createHost({ name: t.name('lb'), bridge, address: t.cidr(10) });
    this.m1 = await createHost({ name: t.name('m1'), bridge, address: t.cidr(11) });
    this.m2 = await createHost({ name: t.name('m2'), bridge, address: t.cidr(12) });
    this.client = await createHost({ name: t.name('c1'), bridge, address: t.cidr(50) });
    this.client2 = await createHost({ name: t.name('c2'), bridge, address: t.cidr(51) });
    await ensureForwarding(run, this.lbHost.netns);
  }

  async cleanup(): Promise<void> {
    for (const h of [this.client2, this.client, this.m2, this.m1, this.lbHost]) if (h !== undefined) await deleteHost(h.name);
    if (this.bridge !== undefined) await deleteBridge(this.bridge);
  }

  /** What the agent does on a spec change: observe the table, plan, one transaction. Returns its lines. */
  async apply(lb: NftLoadBalancer): Promise<string[]> {
    const lines = planNftTransaction(await observeNftTable(run, this.lbHost.netns), renderNftState(lb));
    await applyNftTransaction(run, this.lbHost.netns, lines);
    return lines;
  }
}

/** A member of the renderer's model, enabled, weight 1, unchecked. */
export function nftMember(name: string, host: Host, port: number, over: Partial<NftMember> = {}): NftMember {
  return { name, address: host.address, port, weight: 1, backup: false, adminStateUp: true, health: 'NO_CHECK', ...over };
}

/** A monitor of the given type that decides within two seconds (1 s delay and timeout, 2 retries each way). */
export function quickMonitor(type: UdpHealthMonitor['type']): UdpHealthMonitor {
  return { type, delay: 1, timeout: 1, maxRetries: 2, maxRetriesDown: 2, httpMethod: 'GET', urlPath: '/', expectedCodes: '200', adminStateUp: true };
}

export interface CheckHaproxy {
  /** Its runtime socket (admin level). */
  socket: string;
  stop(): Promise<void>;
}

/** A HAProxy in `netns` running nothing but the check-only backend of `pool` (its files in a directory of its own). */
export async function startCheckHaproxy(netns: string, pool: CheckedPool, commands: CheckCommands): Promise<CheckHaproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'nslb-check-'));
  const socket = join(dir, 'haproxy.sock');
  const pidFile = join(dir, 'haproxy.pid');
  const config = [
    'global',
    `    stats socket ${socket} mode 600 level admin`,
    '    external-check',
    '    insecure-fork-wanted',
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 50s',
    '    timeout server 50s',
    ...renderCheckBackend(pool, commands),
    '',
  ].join('\n');
  await writeFile(join(dir, 'haproxy.cfg'), config, { mode: 0o600 });
  try {
    await runCommand(['ip', 'netns', 'exec', netns, 'haproxy', '-D', '-p', pidFile, '-f', join(dir, 'haproxy.cfg')]);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  return {
    socket,
    stop: async () => {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Gone already.
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
