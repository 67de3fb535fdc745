// The simulated cluster (scripts/sim-cluster.sh, issue 16): two nodes watching one checkout are as separate as
// two machines (network, mount and PID namespaces, OVS, /run/netns, state dir), a load balancer served inside a
// node answers a client on the shared provider segment, `kill` ends every process of one node and nothing of
// the other, `start` boots it again and its agent adopts what the node kept, `cut`/`heal` move the traffic,
// and `down` leaves nothing behind. Every agent serves every load balancer today (no placement yet), so the
// traffic tests keep exactly one node's wire up at a time.
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { readStatus, statusOf } from './agent.js';
import { ensureNode, httpGet, runCommand, startHttpServer, uniqueRun, waitFor, type Host, type HttpServerHandle } from './harness.js';
import {
  alive,
  assertNoRig,
  cmdline,
  deleteProviderHost,
  inNode,
  lastingPids,
  nodePids,
  nodeStateDir as stateDir,
  providerHost,
  SIM,
  SIM_DIR,
  sim,
  simStatus,
} from './sim-rig.js';

const run = uniqueRun(17);
const VIP = run.ip(10);
const LB = 'simweb';
const LB6 = 'simweb6';
const V6 = (host: number) => `fd00:217:${run.subnet.split('.')[2]}::${host}`;
const CANARY = run.name('k');
const { netns: LB_NETNS } = nodeNames('default', LB);

async function lbActiveOn(node: string): Promise<boolean> {
  return statusOf(await readStatus(stateDir(node)), 'LoadBalancer', LB)?.provisioningStatus === 'ACTIVE';
}

const LB_YAML = `
apiVersion: nslb.dev/v1alpha1
kind: LoadBalancer
metadata: { name: ${LB} }
spec:
  vip: { address: ${VIP}, prefixLength: 24 }
---
apiVersion: nslb.dev/v1alpha1
kind: Listener
metadata: { name: ${LB}-http }
spec: { loadBalancer: ${LB}, protocol: HTTP, port: 80, defaultPool: ${LB}-pool }
---
apiVersion: nslb.dev/v1alpha1
kind: Pool
metadata: { name: ${LB}-pool }
spec: { loadBalancer: ${LB}, protocol: HTTP, lbAlgorithm: ROUND_ROBIN }
---
apiVersion: nslb.dev/v1alpha1
kind: Member
metadata: { name: ${LB}-m1 }
spec: { pool: ${LB}-pool, address: ${run.ip(11)}, port: 8080 }
`;

describe('scripts/sim-cluster.sh: simulated nodes on one machine (issue 16)', () => {
  let watchDir: string;
  let member: Host;
  let client: Host;
  let server: HttpServerHandle | undefined;
  let rootNetnsBefore: string[];
  let weMadeTheRig = false;

  const answer = async () => {
    const response = await httpGet(client, `http://${VIP}/`, { timeoutMs: 1_500 });
    return response.status === 200 ? response.body.trim() : `no answer (${response.error ?? response.status})`;
  };

  beforeAll(async () => {
    await ensureNode();
    await assertNoRig();
    rootNetnsBefore = (await runCommand(['ip', 'netns', 'list'])).stdout
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean);
    watchDir = await mkdtemp(join(tmpdir(), 'nslb-sim-'));
    // Someone else's namespace, made before the nodes (whose mount namespaces start as copies of this one's).
    await runCommand(['ip', 'netns', 'add', CANARY]);
    await runCommand(['ip', 'link', 'add', `${CANARY}-h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CANARY]);
    weMadeTheRig = true;
    await sim('up', '2', '--watch', watchDir, '--', '--resync', '2');
    member = await providerHost(run, 'm1', 11);
    client = await providerHost(run, 'c', 100);
    for (const [host, octet] of [
      [member, 11],
      [client, 100],
    ] as const) {
      await runCommand(['ip', '-n', host.netns, 'addr', 'add', `${V6(octet)}/64`, 'dev', 'eth0', 'nodad']);
    }
    server = await startHttpServer(member, { port: 8080, name: 'm1', bindAddress: '::' });
  }, 180_000);

  afterAll(async () => {
    await runCommand(['ip', 'link', 'del', `${CANARY}-h`], { allowFailure: true });
    await runCommand(['ip', 'netns', 'del', CANARY], { allowFailure: true });
    await server?.stop();
    if (member) await deleteProviderHost(member);
    if (client) await deleteProviderHost(client);
    if (weMadeTheRig) await sim('down');
    if (watchDir) await rm(watchDir, { recursive: true, force: true });
  }, 120_000);

  it('up starts every node with its agent answering on its listen address', async () => {
    const status = await simStatus();
    expect(Object.keys(status)).toEqual(['node1', 'node2']);
    for (const node of ['node1', 'node2']) {
      expect(status[node]).toMatchObject({ state: 'running', agent: 'up', wire: 'up' });
      const health = await runCommand(['curl', '-fsS', '-m', '2', `http://${status[node]!.listen}/healthz`]);
      expect(health.exitCode).toBe(0);
    }
    // Idempotent: the same `up` again changes nothing (the commands a resync runs come and go meanwhile).
    const pids = await lastingPids('node1');
    await sim('up', '2', '--watch', watchDir, '--', '--resync', '2');
    expect(await lastingPids('node1')).toEqual(pids);
    // Other arguments are refused while it is up.
    const other = await runCommand([SIM, 'up', '3', '--watch', watchDir], { allowFailure: true });
    expect(other.exitCode).not.toBe(0);
    expect(other.stderr).toMatch(/already up with other arguments/);
  });

  it('the nodes keep no other namespace alive: one deleted by its owner while they run is gone', async () => {
    await runCommand(['ip', 'netns', 'del', CANARY]);
    // Its veth pair dies with it, unless a copy of its /run/netns mount in a node still holds it (the kernel
    // drops such copies on unlink, and the rig drops them when it makes a node).
    await waitFor(async () => (await runCommand(['ip', 'link', 'show', `${CANARY}-h`], { allowFailure: true })).exitCode !== 0, {
      timeoutMs: 5_000,
      message: `${CANARY}'s veth to go with its namespace`,
    });
  });

  it('exec passes the exit status of the command run in the node', async () => {
    expect((await runCommand([SIM, 'exec', 'node2', '--', 'sh', '-c', 'exit 7'], { allowFailure: true })).exitCode).toBe(7);
    expect((await runCommand([SIM, 'exec', 'node9', '--', 'true'], { allowFailure: true })).stderr).toMatch(/unknown node 'node9'/);
  });

  it("a command that finds the rig's lock taken says who holds it, and gives up after NSLB_SIM_LOCK_WAIT_S", async () => {
    const lock = `${SIM_DIR}.lock`;
    const holder = spawn('flock', [lock, 'sleep', '30'], { stdio: 'ignore' });
    try {
      await waitFor(async () => (await runCommand(['flock', '-n', lock, 'true'], { allowFailure: true })).exitCode !== 0, {
        timeoutMs: 5_000,
        message: 'the lock held',
      });
      const started = Date.now();
      const r = await runCommand(['env', 'NSLB_SIM_LOCK_WAIT_S=1', SIM, 'cut', 'node2'], { allowFailure: true, timeoutMs: 20_000 });
      expect(r.exitCode).toBe(1);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(r.stderr).toMatch(/waiting up to 1 s for .*nslb-sim\.lock/);
      expect(r.stderr).toMatch(new RegExp(`still held after 1 s by: +${holder.pid} .*flock .*sleep 30`));
      // Nothing was done: node2 is still on the segment.
      expect(existsSync(join(SIM_DIR, 'node2', 'cut'))).toBe(false);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('each node is separate: network, /run/netns, OVS, processes, hostname', async () => {
    const netInode = async (node?: string) =>
      node ? inNode(node, 'stat', '-L', '-c', '%i', '/proc/self/ns/net') : String((await stat('/proc/self/ns/net')).ino);
    const inodes = new Set([await netInode(), await netInode('node1'), await netInode('node2')]);
    expect(inodes.size).toBe(3);

    expect(await inNode('node1', 'hostname')).toBe('node1');
    expect(await inNode('node2', 'ovs-vsctl', 'get', 'Open_vSwitch', '.', 'external_ids:system-id')).toBe('node2');
    expect((await inNode('node1', 'ovs-vsctl', 'list-ports', 'br-int')).split('\n')).toEqual(['provider']);
    expect((await inNode('node1', 'ovs-vsctl', 'list-br')).split('\n')).toEqual(['br-int']);

    // A netns made in node1 (as its agent makes one per load balancer) is seen by node1 only.
    const probe = run.name('p');
    await inNode('node1', 'ip', 'netns', 'add', probe);
    try {
      expect(await inNode('node1', 'ip', 'netns', 'list')).toContain(probe);
      expect(await inNode('node2', 'ip', 'netns', 'list')).not.toContain(probe);
      expect((await runCommand(['ip', 'netns', 'list'])).stdout).not.toContain(probe);
      // `ip netns exec` works there (HAProxy is started that way, inside the node's mount namespace).
      expect(await inNode('node1', 'ip', 'netns', 'exec', probe, 'ip', '-br', 'link')).toMatch(/^lo/);
    } finally {
      await inNode('node1', 'ip', 'netns', 'del', probe);
    }

    // Processes: disjoint sets, each with its own OVS and agent, each seeing only its own in ps.
    const [p1, p2] = [await nodePids('node1'), await nodePids('node2')];
    expect(p1.filter((p) => p2.includes(p))).toEqual([]);
    for (const pids of [p1, p2]) {
      const commands = await Promise.all(pids.map(cmdline));
      expect(commands.some((c) => c.startsWith('ovsdb-server'))).toBe(true);
      expect(commands.some((c) => c.startsWith('ovs-vswitchd'))).toBe(true);
      expect(commands.some((c) => c.includes('dist/cli/main.js run'))).toBe(true);
    }
    const ps = await inNode('node1', 'ps', '-e', '-o', 'pid=');
    expect(ps.split('\n').filter(Boolean).length).toBeLessThan(p1.length + 3); // its own, plus ps itself
  });

  it('a load balancer from the watched directory serves a client on sim-provider from inside a node', async () => {
    await sim('cut', 'node2');
    await writeFile(join(watchDir, 'lb.yaml'), LB_YAML);
    await waitFor(async () => (await lbActiveOn('node1')) && (await lbActiveOn('node2')), {
      timeoutMs: 30_000,
      message: 'the load balancer ACTIVE on both agents',
    });
    // Its namespace lives in the nodes, not in this machine's /run/netns.
    expect(await inNode('node1', 'ip', 'netns', 'list')).toContain(LB_NETNS);
    expect((await runCommand(['ip', 'netns', 'list'])).stdout).not.toContain(LB_NETNS);
    expect(await waitFor(async () => (await answer()) === 'm1' && 'm1', { timeoutMs: 10_000, message: 'm1 through the VIP' })).toBe('m1');
  });

  it('an IPv6 VIP serves the same way', async () => {
    const yaml6 = LB_YAML.replaceAll(LB, LB6)
      .replace(`address: ${VIP}, prefixLength: 24`, `address: ${V6(10)}, prefixLength: 64`)
      .replace(`address: ${run.ip(11)}`, `address: ${V6(11)}`);
    await writeFile(join(watchDir, 'lb6.yaml'), yaml6);
    await waitFor(async () => (await httpGet(client, `http://[${V6(10)}]/`, { timeoutMs: 1_500 })).body.trim() === 'm1', {
      timeoutMs: 30_000,
      message: 'm1 through the IPv6 VIP',
    });
    await rm(join(watchDir, 'lb6.yaml'));
  });

  it('cut and heal take a node off the segment and back', async () => {
    await sim('cut', 'node1');
    expect((await simStatus()).node1!.wire).toBe('cut');
    expect(await answer()).toMatch(/^no answer/);
    await sim('heal', 'node2');
    await waitFor(async () => (await answer()) === 'm1', { timeoutMs: 10_000, message: 'm1 through node2' });
    await sim('cut', 'node2');
    await sim('heal', 'node1');
    await waitFor(async () => (await answer()) === 'm1', { timeoutMs: 10_000, message: 'm1 through node1 again' });
    expect((await simStatus()).node1!.wire).toBe('up');
  });

  it('kill ends every process of node1 and nothing of node2; start boots it and its agent adopts', async () => {
    const nsInode = () => inNode('node1', 'stat', '-L', '-c', '%i', `/run/netns/${LB_NETNS}`);
    const netnsBefore = await nsInode();
    // node2's processes that last: a command its agent's resync runs may end meanwhile.
    const [p1, p2] = [await nodePids('node1'), await lastingPids('node2')];
    const commands1 = await Promise.all(p1.map(cmdline));
    expect(commands1.some((c) => c.startsWith('haproxy'))).toBe(true);

    await sim('kill', 'node1');
    expect(p1.filter(alive)).toEqual([]);
    expect(p2.filter(alive)).toEqual(p2);
    expect((await simStatus()).node1).toMatchObject({ state: 'killed', agent: 'down', processes: 0 });
    expect(await answer()).toMatch(/^no answer/);
    // The node's kernel state outlives its processes: the load balancer's namespace is still there.
    expect(await inNode('node1', 'ip', 'netns', 'list')).toContain(LB_NETNS);
    expect(existsSync(join(stateDir('node1'), 'status.json'))).toBe(true);

    await sim('start', 'node1');
    expect((await simStatus()).node1).toMatchObject({ state: 'running', agent: 'up' });
    await waitFor(async () => (await answer()) === 'm1', { timeoutMs: 20_000, message: 'm1 through the restarted node1' });
    expect(await nsInode()).toBe(netnsBefore); // adopted, not made again
    expect(p2.filter(alive)).toEqual(p2);
  }, 90_000);

  it("kill --power drops the node's kernel state; start rebuilds it from the state dir", async () => {
    await sim('kill', 'node1', '--power');
    expect((await simStatus()).node1!.state).toBe('off');
    const onOff = await runCommand([SIM, 'exec', 'node1', '--', 'true'], { allowFailure: true });
    expect(onOff.stderr).toMatch(/powered off/);
    await sim('start', 'node1');
    await waitFor(async () => (await answer()) === 'm1', { timeoutMs: 30_000, message: 'm1 after a power cycle' });
    expect(await inNode('node1', 'ip', 'netns', 'list')).toContain(LB_NETNS);
  }, 90_000);

  it('down leaves nothing behind: processes, namespaces, mounts, devices, files', async () => {
    const pids = [...(await nodePids('node1')), ...(await nodePids('node2'))];
    const nodeNet = await inNode('node1', 'stat', '-L', '-c', '%i', '/proc/self/ns/net');
    await sim('down');
    weMadeTheRig = false;
    expect(pids.filter(alive)).toEqual([]);
    // Nor any helper in this namespace (the unshare that forked each node's init, a relay).
    const leftovers: string[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      const argv = await cmdline(Number(entry));
      if (argv.includes(SIM) || argv.includes('sim-cluster-kube.mjs') || argv.includes(SIM_DIR)) leftovers.push(`${entry}: ${argv}`);
    }
    expect(leftovers).toEqual([]);
    const links = (await runCommand(['ip', '-o', 'link', 'show'])).stdout;
    expect(links).not.toMatch(/\bsim-provider\b|\bsim[pm]-node\d/);
    expect(links).not.toMatch(/\bnslb[0-9a-f]{11}\b/); // no VIP device fell back into this namespace
    expect((await runCommand(['findmnt', '-rn', '-o', 'TARGET'])).stdout).not.toContain(SIM_DIR);
    expect(existsSync(SIM_DIR)).toBe(false);
    const netns = (await runCommand(['lsns', '-t', 'net', '-n', '-o', 'NS'])).stdout.split('\n').map((s) => s.trim());
    expect(netns).not.toContain(nodeNet);
    const rootNetns = (await runCommand(['ip', 'netns', 'list'])).stdout
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean);
    expect(rootNetns.filter((n) => !rootNetnsBefore.includes(n) && n !== member.netns && n !== client.netns)).toEqual([]);
    // Idempotent.
    await sim('down');
  }, 60_000);
});
