// The naive baseline: what the neutron-lbaas haproxy namespace driver did for each load balancer, one after
// the other, each step its own process: ip netns add, ovs-vsctl add-port (internal), ip link/addr, write a
// config, haproxy -f … -D. No batching, no observation, no checks. Generous to it in one respect: `ip -n`
// instead of `ip netns exec … ip` (one process fewer per step).
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../test/e2e/harness.js';
import { baselineHaproxyConfig } from './manifests.js';
import { baselineMember, log, PREFIX, vipOf } from './node-env.js';

export interface BaselineLb {
  index: number;
  netns: string;
  port: string;
  vip: string;
  dir: string;
}

export function baselineLb(root: string, index: number): BaselineLb {
  const id = String(index).padStart(4, '0');
  return { index, netns: `nslbbench-b${id}`, port: `nbb${id}`, vip: vipOf(231, 10, index), dir: join(root, `b${id}`) };
}

function mac(index: number): string {
  return `02:31:00:00:${((index >> 8) & 0xff).toString(16).padStart(2, '0')}:${(index & 0xff).toString(16).padStart(2, '0')}`;
}

/** Creates one baseline load balancer, serially, step by step. */
export async function createBaselineLb(bridge: string, lb: BaselineLb): Promise<void> {
  await runCommand(['ip', 'netns', 'add', lb.netns]);
  await runCommand([
    'ovs-vsctl',
    '--timeout=30',
    '--',
    '--may-exist',
    'add-port',
    bridge,
    lb.port,
    '--',
    'set',
    'Interface',
    lb.port,
    'type=internal',
    `external_ids:nslb-bench-baseline=${lb.netns}`,
  ]);
  await runCommand(['ip', 'link', 'set', 'dev', lb.port, 'address', mac(lb.index)]);
  await runCommand(['ip', 'link', 'set', 'dev', lb.port, 'netns', lb.netns]);
  await runCommand(['ip', '-n', lb.netns, 'link', 'set', 'dev', 'lo', 'up']);
  await runCommand(['ip', '-n', lb.netns, 'addr', 'add', `${lb.vip}/${PREFIX}`, 'dev', lb.port]);
  await runCommand(['ip', '-n', lb.netns, 'link', 'set', 'dev', lb.port, 'up']);
  await mkdir(lb.dir, { recursive: true, mode: 0o700 });
  const config = join(lb.dir, 'haproxy.cfg');
  await writeFile(config, baselineHaproxyConfig({ vip: lb.vip, members: [baselineMember('m1'), baselineMember('m2')], socket: join(lb.dir, 'haproxy.sock') }), {
    mode: 0o600,
  });
  await runCommand(['ip', 'netns', 'exec', lb.netns, 'haproxy', '-f', config, '-p', join(lb.dir, 'haproxy.pid'), '-D']);
}

/**
 * Kills every HAProxy whose config is one of these baseline configs. Found in /proc rather than by pidfile,
 * so that one whose directory is already gone (a run interrupted mid-step) is found too.
 */
export async function killBaselineHaproxies(configs: ReadonlySet<string>): Promise<void> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!argv.some((a) => a.endsWith('haproxy'))) continue;
    const config = argv[argv.indexOf('-f') + 1];
    if (config === undefined || !configs.has(config)) continue;
    try {
      process.kill(Number(entry), 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

/** Removes baseline load balancers: their HAProxy, port and netns. Quiet about what is gone. */
export async function deleteBaselineLbs(bridge: string, lbs: readonly BaselineLb[]): Promise<void> {
  if (lbs.length === 0) return;
  await killBaselineHaproxies(new Set(lbs.map((lb) => join(lb.dir, 'haproxy.cfg'))));
  // One ovs-vsctl and one ip -batch for all: tearing down is not what is measured.
  for (let i = 0; i < lbs.length; i += 200) {
    const chunk = lbs.slice(i, i + 200);
    await runCommand(['ovs-vsctl', '--timeout=60', ...chunk.flatMap((lb) => ['--', '--if-exists', 'del-port', bridge, lb.port])], {
      timeoutMs: 90_000,
    });
  }
  const batch = lbs.map((lb) => `netns delete ${lb.netns}`).join('\n');
  await runWithInput(['ip', '-force', '-batch', '-'], `${batch}\n`);
  for (const lb of lbs) await rm(lb.dir, { recursive: true, force: true });
  log(`baseline: removed ${lbs.length} load balancers`);
}

/** Runs argv with `input` on stdin; its exit status does not matter (netns already gone are fine). */
async function runWithInput(argv: string[], input: string): Promise<void> {
  await new Promise<void>((resolve) => {
    const [file, ...args] = argv;
    const child = spawn(file!, args, { stdio: ['pipe', 'ignore', 'ignore'] });
    child.on('exit', () => resolve());
    child.on('error', () => resolve());
    child.stdin.end(input);
  });
}
