// Phase (g): the floor a shell gets to. A bare serial loop in one bash script, per load balancer: `ip netns add`,
// `ovs-vsctl add-port` (internal), `ip link set … netns`, `ip -n … addr add`, `ip -n … link set up`, `ip netns
// exec … haproxy -D`: nothing else (no validation, no status, no MAC, no loopback, no check of any kind). Its
// HAProxy configs are written before the clock starts, so the loop does only what the node needs. The clock
// starts when bash is spawned and stops when it exits (the last `haproxy -D` has bound its VIP by then).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../test/e2e/harness.js';
import type { BaselineLb } from './baseline.js';
import { baselineHaproxyConfig } from './manifests.js';
import { baselineMember, log, now, PREFIX, vipOf } from './node-env.js';

export function bareLb(root: string, index: number): BaselineLb {
  const id = String(index).padStart(4, '0');
  return { index, netns: `nslbbench-s${id}`, port: `nbs${id}`, vip: vipOf(231, 100, index), dir: join(root, `s${id}`) };
}

/** The script: one line per command, every name and path made here (no input from outside). */
export function bareLoopScript(bridge: string, lbs: readonly BaselineLb[]): string {
  const lines = ['#!/bin/bash', 'set -e'];
  for (const lb of lbs) {
    lines.push(
      `ip netns add ${lb.netns}`,
      `ovs-vsctl -- add-port ${bridge} ${lb.port} -- set Interface ${lb.port} type=internal external_ids:nslb-bench-baseline=${lb.netns}`,
      `ip link set dev ${lb.port} netns ${lb.netns}`,
      `ip -n ${lb.netns} addr add ${lb.vip}/${PREFIX} dev ${lb.port}`,
      `ip -n ${lb.netns} link set dev ${lb.port} up`,
      `ip netns exec ${lb.netns} haproxy -D -f ${join(lb.dir, 'haproxy.cfg')} -p ${join(lb.dir, 'haproxy.pid')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Phase (a)'s floor: the same steps for one load balancer (`nslbbench-a…`, VIPs from 10.231.240.1), as one bash
 * script. Its config and script are written before the clock starts; the caller starts the clock and spawns
 * `bash SCRIPT`. `plumb` and `rest` are the same script cut after the link move: what an Octavia-style warm pool
 * of netns and ports would do ahead of time, and what would be left for a new load balancer.
 */
export async function prepareBareOne(root: string, index: number, bridge: string): Promise<{ lb: BaselineLb; script: string; plumb: string; rest: string }> {
  const id = String(index).padStart(4, '0');
  const lb: BaselineLb = { index, netns: `nslbbench-a${id}`, port: `nba${id}`, vip: vipOf(231, 240, index), dir: join(root, `a${id}`) };
  await mkdir(lb.dir, { recursive: true, mode: 0o700 });
  const config = baselineHaproxyConfig({ vip: lb.vip, members: [baselineMember('m1'), baselineMember('m2')], socket: join(lb.dir, 'haproxy.sock') });
  await writeFile(join(lb.dir, 'haproxy.cfg'), config, { mode: 0o600 });
  const script = join(lb.dir, 'one.sh');
  const lines = bareLoopScript(bridge, [lb]).trimEnd().split('\n');
  await writeFile(script, `${lines.join('\n')}\n`, { mode: 0o700 });
  // The same split in two: what a warm pool would have done beforehand (netns, port, link move), and the rest.
  const plumb = join(lb.dir, 'plumb.sh');
  const rest = join(lb.dir, 'rest.sh');
  await writeFile(plumb, `${[...lines.slice(0, 2), ...lines.slice(2, 5)].join('\n')}\n`, { mode: 0o700 });
  await writeFile(rest, `${[...lines.slice(0, 2), ...lines.slice(5)].join('\n')}\n`, { mode: 0o700 });
  return { lb, script, plumb, rest };
}

/** Writes the configs and the script (not timed), then runs the script (timed). `lbs` is filled before it runs. */
export async function runBareLoop(root: string, bridge: string, n: number, lbs: BaselineLb[]): Promise<{ ms: number; exitCode: number; stderr: string }> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  for (let i = 0; i < n; i++) {
    const lb = bareLb(root, i);
    await mkdir(lb.dir, { recursive: true, mode: 0o700 });
    const config = baselineHaproxyConfig({ vip: lb.vip, members: [baselineMember('m1'), baselineMember('m2')], socket: join(lb.dir, 'haproxy.sock') });
    await writeFile(join(lb.dir, 'haproxy.cfg'), config, { mode: 0o600 });
    lbs.push(lb);
  }
  const script = join(root, 'loop.sh');
  await writeFile(script, bareLoopScript(bridge, lbs), { mode: 0o700 });
  log(`(g) bare loop N=${n}: bash ${script}`);
  const t0 = now();
  const r = await runCommand(['bash', script], { allowFailure: true, timeoutMs: 30 * 60_000 });
  return { ms: now() - t0, exitCode: r.exitCode ?? -1, stderr: r.stderr };
}
