// File-watch mode on the real node, end to end: YAML in a watched directory → netns + OVS port + HAProxy →
// traffic from a client namespace to member namespaces, and status.json. One story, in order: each step
// starts from the state the previous one left. Issue 2's acceptance items are named where they are proven.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { Agent, cli, readStatus, statusOf } from './agent.js';
import {
  REPO_ROOT,
  httpGet,
  httpGetMany,
  listNetns,
  MemberHosts,
  openLongConnection,
  startHttpServer,
  uniqueRun,
  waitFor,
  type Host,
  type LongConnection,
} from './harness.js';

const exec = promisify(execFile);
const run = uniqueRun(2);
const BRIDGE = `br-${run.prefix}`;
const VIP = run.ip(10);
const RESYNC_S = 3;
// Our own namespace, so that this run's load balancer never meets the demo's or another run's on the node.
const NS = run.prefix;
const { netns: NETNS, iface: IFACE } = nodeNames(NS, 'web');

const root = join(tmpdir(), `nslb-e2e-${run.prefix}`);
const stateDir = join(root, 'state');
const watch = join(root, 'watch'); // a symlink to a checkout, as git-sync keeps it
const lbDir = join(stateDir, 'lb', NETNS);

interface TcpMember {
  name: string;
  address: string;
  weight?: number;
}

/** The repository's example, moved onto this run's subnet, plus a TCP listener whose pool we change. */
async function manifest(opts: { tcpMembers: TcpMember[]; exampleEdit?: (s: string) => string }): Promise<string> {
  let example = (await readFile(join(REPO_ROOT, 'examples', 'http-lb.yaml'), 'utf8'))
    .replaceAll('10.200.0.', `${run.subnet}.`)
    .replaceAll('namespace: default', `namespace: ${NS}`);
  if (opts.exampleEdit !== undefined) example = opts.exampleEdit(example);
  const tcp = [
    `apiVersion: nslb.dev/v1alpha1
kind: Listener
metadata: { name: web-tcp, namespace: ${NS} }
spec: { loadBalancer: web, protocol: TCP, port: 9000, defaultPool: tcp-pool }`,
    `apiVersion: nslb.dev/v1alpha1
kind: Pool
metadata: { name: tcp-pool, namespace: ${NS} }
spec: { loadBalancer: web, protocol: TCP, lbAlgorithm: ROUND_ROBIN }`,
    ...opts.tcpMembers.map(
      (m) => `apiVersion: nslb.dev/v1alpha1
kind: Member
metadata: { name: ${m.name}, namespace: ${NS} }
spec: { pool: tcp-pool, address: ${m.address}, port: 8080${m.weight === undefined ? '' : `, weight: ${m.weight}`} }`,
    ),
  ];
  return `${example.trimEnd()}\n---\n${tcp.join('\n---\n')}\n`;
}

let checkout = 0;
/** Writes the manifest into the current checkout (in place, as an editor or `git pull` would). */
async function writeManifest(text: string, file = 'lb.yaml'): Promise<void> {
  const path = join(root, `checkout-${checkout}`, file);
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

async function haproxyPid(): Promise<number | undefined> {
  try {
    return Number((await readFile(join(lbDir, 'haproxy.pid'), 'utf8')).trim());
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** A live process (a zombie waiting for PID 1 to reap it is not). */
async function alive(pid: number): Promise<boolean> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return s !== '' && s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3) !== 'Z';
}

async function ovsHasPort(name: string): Promise<boolean> {
  const { stdout } = await exec('ovs-vsctl', ['--timeout=5', 'list-ports', BRIDGE]);
  return stdout.split('\n').includes(name);
}

describe('file-watch mode on a real node', () => {
  const hosts = new MemberHosts(run, 3);
  let m2: Host, client: Host;
  const servers = hosts.servers;
  let agent: Agent | undefined;
  let long: LongConnection | undefined;

  const vipBodies = (n: number, port = 80): Promise<string[]> => httpGetMany(client, `http://${VIP}:${port}/`, n);
  const serving = async (): Promise<boolean> => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1000 })).status === 200;

  beforeAll(async () => {
    await hosts.create();
    m2 = hosts.member(2);
    client = hosts.client;
    await rm(root, { recursive: true, force: true });
    await mkdir(join(root, 'checkout-0'), { recursive: true });
    await symlink(join(root, 'checkout-0'), watch);
    agent = new Agent({ watch, stateDir, bridge: BRIDGE, resync: RESYNC_S });
  });

  afterAll(async () => {
    await long?.close().catch(() => {});
    await agent?.stop().catch(() => {});
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await exec('ip', ['netns', 'delete', 'nslb-foreign']).catch(() => {});
    await hosts.remove();
    await rm(root, { recursive: true, force: true });
  });

  it('1. serves the example: requests alternate between the two members, status is ACTIVE and ONLINE', async () => {
    await writeManifest(
      await manifest({
        tcpMembers: [
          { name: 't-m1', address: run.ip(11) },
          { name: 't-m2', address: run.ip(12) },
        ],
      }),
    );
    await waitFor(serving, { timeoutMs: 15_000, message: 'the VIP never answered' });
    const bodies = await vipBodies(10);
    expect(new Set(bodies)).toEqual(new Set(['member m1', 'member m2']));
    for (let i = 1; i < bodies.length; i++) expect(bodies[i]).not.toBe(bodies[i - 1]);

    await waitFor(
      async () => {
        const s = await readStatus(stateDir);
        const names: [string, string][] = [
          ['LoadBalancer', 'web'],
          ['Listener', 'web-http'],
          ['Pool', 'web-pool'],
          ['Member', 'web-m1'],
          ['Member', 'web-m2'],
        ];
        return (
          s?.objects.every((o) => o.status.provisioningStatus === 'ACTIVE') === true &&
          names.every(([k, n]) => statusOf(s, k, n)?.operatingStatus === 'ONLINE') &&
          statusOf(s, 'HealthMonitor', 'web-hm')?.operatingStatus === 'ONLINE'
        );
      },
      { timeoutMs: 15_000, message: 'status never reached ACTIVE/ONLINE' },
    );
    const lb = statusOf(await readStatus(stateDir), 'LoadBalancer', 'web');
    expect(lb).toMatchObject({ vip: VIP, netns: NETNS, port: IFACE, observedGeneration: 1 });
    expect(lb?.conditions[0]).toMatchObject({ type: 'Ready', status: 'True' });
    const wait = await cli(['status', '--wait', '--timeout', '10', '--state-dir', stateDir]);
    expect(wait.code).toBe(0);
    expect(wait.stdout).toMatch(/loadbalancer \S+\/web\s+ACTIVE\s+ONLINE/);
    expect(wait.stdout).toMatch(/\n\s+member web-m1\s+ACTIVE\s+ONLINE\s+\S+:8080/);
    const json = JSON.parse((await cli(['status', '-o', 'json', '--state-dir', stateDir])).stdout) as { objects: unknown[] };
    expect(json.objects.length).toBeGreaterThanOrEqual(6);
    // Files with secrets are 0600.
    expect((await stat(join(lbDir, 'haproxy.cfg'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(lbDir, 'haproxy.sock'))).mode & 0o777).toBe(0o600);
  });

  it('2. removing, reweighting and adding a member change traffic; a connection to an untouched member stays', async () => {
    long = await openLongConnection(client, VIP, 9000);
    const kept = long.responses()[0]!; // "member m1" or "member m2": the member this connection is pinned to
    const keptIp = kept === 'member m1' ? run.ip(11) : run.ip(12);
    const pid = await haproxyPid();

    await writeManifest(await manifest({ tcpMembers: [{ name: 'tcp-kept', address: keptIp }] }));
    await waitFor(async () => (await vipBodies(4, 9000)).every((b) => b === kept), { timeoutMs: 10_000, message: 'removed member still served' });

    await writeManifest(
      await manifest({
        tcpMembers: [
          { name: 'tcp-kept', address: keptIp, weight: 3 },
          { name: 'tcp-m3', address: run.ip(13), weight: 1 },
        ],
      }),
    );
    await waitFor(async () => (await vipBodies(8, 9000)).includes('member m3'), { timeoutMs: 10_000, message: 'added member never served' });
    // Weights 3:1 over ten rounds. Members change through the runtime API (no reload), so the round robin
    // does not start afresh: the window may begin mid-round, one request either way.
    const bodies = await vipBodies(40, 9000);
    expect(bodies.filter((b) => b === kept).length).toBeGreaterThanOrEqual(29);
    expect(bodies.filter((b) => b === kept).length).toBeLessThanOrEqual(31);
    expect(bodies.filter((b) => b === kept || b === 'member m3').length).toBe(40);

    await writeManifest(
      await manifest({
        tcpMembers: [
          { name: 'tcp-kept', address: keptIp, weight: 1 },
          { name: 'tcp-m3', address: run.ip(13), weight: 1 },
        ],
      }),
    );
    await waitFor(
      async () => {
        const b = await vipBodies(4, 9000);
        return b.filter((x) => x === kept).length === 2;
      },
      { timeoutMs: 10_000, message: 'weight change never took effect' },
    );

    const before = long.responses().length;
    await new Promise((r) => setTimeout(r, 1000));
    expect(long.closed()).toBe(false);
    expect(long.responses().length).toBeGreaterThan(before);
    expect(long.responses().every((b) => b === kept)).toBe(true);
    expect(await haproxyPid()).toBe(pid); // runtime API or reloads, never restarts
    await long.close();
    long = undefined;
  });

  it('3. a member whose server stops goes ERROR, its pool and the load balancer DEGRADED; back to ONLINE when it returns', async () => {
    await servers.get('member m2')!.stop();
    await waitFor(
      async () => {
        const s = await readStatus(stateDir);
        return (
          statusOf(s, 'Member', 'web-m2')?.operatingStatus === 'ERROR' &&
          statusOf(s, 'Pool', 'web-pool')?.operatingStatus === 'DEGRADED' &&
          statusOf(s, 'LoadBalancer', 'web')?.operatingStatus === 'DEGRADED' &&
          statusOf(s, 'Member', 'web-m1')?.operatingStatus === 'ONLINE'
        );
      },
      { timeoutMs: 20_000, message: 'member never reported ERROR / pool DEGRADED' },
    );
    expect(new Set(await vipBodies(4))).toEqual(new Set(['member m1']));

    servers.set('member m2', await startHttpServer(m2, { port: 8080, name: 'member m2' }));
    await waitFor(
      async () => {
        const s = await readStatus(stateDir);
        return (
          ['web-m2'].every((n) => statusOf(s, 'Member', n)?.operatingStatus === 'ONLINE') &&
          statusOf(s, 'Pool', 'web-pool')?.operatingStatus === 'ONLINE' &&
          statusOf(s, 'LoadBalancer', 'web')?.operatingStatus === 'ONLINE'
        );
      },
      { timeoutMs: 20_000, message: 'member never came back ONLINE' },
    );
  });

  it('5. an invalid edit leaves the load balancer serving untouched, and names file, document and field', async () => {
    const good = await manifest({ tcpMembers: [{ name: 'tcp-m3', address: run.ip(13) }] });
    await writeManifest(good);
    await waitFor(async () => (await vipBodies(2, 9000)).every((b) => b === 'member m3'), { timeoutMs: 10_000, message: 'good manifest not applied' });
    // A member change is live through the runtime API before the file on disk follows it.
    await waitFor(
      async () => {
        const cfg = await readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
        return /server tcp-m3 /.test(cfg) && !/server (tcp-kept|t-m1|t-m2) /.test(cfg);
      },
      { timeoutMs: 10_000, message: 'config file never followed' },
    );
    const config = await readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
    const pid = await haproxyPid();

    const bad: [string, string, RegExp][] = [
      ['bad YAML', `${good}\n---\nkind: [unclosed\n`, /lb\.yaml.*document|lb\.yaml/],
      ['bad IP', good.replace(`address: ${run.ip(12)}`, 'address: 10.0.0.300'), /\/spec\/address/],
      ['unknown field', good.replace('lbAlgorithm: ROUND_ROBIN }', 'lbAlgorithm: ROUND_ROBIN, fooBar: 1 }'), /unknown field "fooBar"/],
    ];
    for (const [what, text, pattern] of bad) {
      await writeManifest(text);
      await waitFor(
        async () =>
          (await readStatus(stateDir))?.errors.some((e) => e.file === 'lb.yaml' && pattern.test(`${e.file} document ${e.document} ${e.message}`)) === true,
        { timeoutMs: 10_000, message: `${what}: status.json never reported it` },
      );
      const v = await cli(['validate', watch]);
      expect(v.code, what).toBe(1);
      expect(v.stdout, what).toMatch(/lb\.yaml: document \d+/);
      expect(await readFile(join(lbDir, 'haproxy.cfg'), 'utf8'), what).toBe(config);
      expect(await haproxyPid(), what).toBe(pid);
      expect(await serving(), what).toBe(true);
    }
    expect((await readStatus(stateDir))?.errors.find((e) => /10\.0\.0\.300/.test(e.message))).toBeUndefined();

    // A dangling reference: the file parses, the object is wrong. It goes ERROR; the rest keeps serving.
    await writeManifest(good.replace('defaultPool: tcp-pool', 'defaultPool: no-such-pool'));
    await waitFor(
      async () => {
        const s = statusOf(await readStatus(stateDir), 'Listener', 'web-tcp');
        return s?.provisioningStatus === 'ERROR' && /no-such-pool/.test(s.conditions[0]?.message ?? '');
      },
      { timeoutMs: 10_000, message: 'dangling reference never reported on the listener' },
    );
    const v = await cli(['validate', watch]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/lb\.yaml: document \d+: Listener [a-z0-9]+\/web-tcp.*no-such-pool/);
    await new Promise((r) => setTimeout(r, (RESYNC_S + 1) * 1000)); // a resync must not apply it either
    expect(await readFile(join(lbDir, 'haproxy.cfg'), 'utf8')).toBe(config);
    expect(await haproxyPid()).toBe(pid);
    expect((await vipBodies(2, 9000)).every((b) => b === 'member m3')).toBe(true);

    await writeManifest(good);
    await waitFor(async () => (await readStatus(stateDir))?.objects.every((o) => o.status.provisioningStatus === 'ACTIVE') === true, {
      timeoutMs: 10_000,
      message: 'never recovered after the fix',
    });
    expect((await readStatus(stateDir))?.errors).toEqual([]);
  });

  it('6. drift: HAProxy killed, netns deleted, OVS port deleted by hand are repaired within one resync', async () => {
    const repaired = async (what: string): Promise<void> => {
      await waitFor(serving, { timeoutMs: (RESYNC_S + 4) * 1000, message: `${what}: not repaired within a resync` });
    };
    process.kill((await haproxyPid())!, 'SIGKILL');
    await waitFor(async () => !(await serving()), { timeoutMs: 5_000, message: 'HAProxy did not die' });
    await repaired('HAProxy killed');

    await exec('ip', ['netns', 'delete', NETNS]);
    await repaired('netns deleted');

    await exec('ovs-vsctl', ['--timeout=5', 'del-port', IFACE]);
    await waitFor(async () => !(await serving()), { timeoutMs: 5_000, message: 'port deletion had no effect' });
    await repaired('OVS port deleted');
    expect(await ovsHasPort(IFACE)).toBe(true);
  });

  it('7. stopping the agent leaves traffic flowing; a restart adopts everything with no change', async () => {
    const pid = await haproxyPid();
    expect(await agent!.stop()).toBe(0);
    agent = undefined;
    expect(await serving()).toBe(true);
    const plan = await cli(['plan', '--watch', watch, '--state-dir', stateDir, '--bridge', BRIDGE]);
    expect(plan.stdout).toContain('No changes');

    agent = new Agent({ watch, stateDir, bridge: BRIDGE, resync: RESYNC_S });
    await waitFor(async () => agent!.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 10_000, message: 'agent did not sync' });
    expect(await haproxyPid()).toBe(pid);
    expect(agent.logs.filter((l) => l.includes('"applying"'))).toEqual([]);
    expect(await serving()).toBe(true);
  });

  it('one agent per state dir: a second refuses to start; a crashed one does not leave the lock stuck', async () => {
    const second = new Agent({ watch, stateDir, bridge: BRIDGE, resync: RESYNC_S });
    expect(await second.exited).toBe(1);
    expect(second.logs.join('\n')).toMatch(/another nslb agent \(pid \d+\) is running with --state-dir/);

    const pid = await haproxyPid();
    await agent!.kill(); // SIGKILL: the lock file stays behind
    agent = new Agent({ watch, stateDir, bridge: BRIDGE, resync: RESYNC_S });
    await waitFor(async () => agent!.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 10_000, message: 'agent did not start after a crash' });
    expect(await haproxyPid()).toBe(pid);
    expect(await serving()).toBe(true);
  });

  it("an agent with another state dir never collects this one's load balancers", async () => {
    const pid = await haproxyPid();
    await mkdir(join(root, 'empty'), { recursive: true });
    const other = new Agent({ watch: join(root, 'empty'), stateDir: join(root, 'other-state'), bridge: BRIDGE, resync: 1 });
    await waitFor(async () => other.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 10_000, message: 'other agent did not start' });
    await new Promise((r) => setTimeout(r, 3000)); // several of its resyncs
    expect(await other.stop()).toBe(0);
    expect(other.logs.filter((l) => l.includes('"applying"'))).toEqual([]);
    expect(await haproxyPid()).toBe(pid);
    expect(await serving()).toBe(true);
  });

  it('8. swapping the watched symlink to a checkout with one member changed changes only that member', async () => {
    const before = await readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
    const pid = await haproxyPid();
    const current = await readFile(join(root, `checkout-${checkout}`, 'lb.yaml'), 'utf8');
    const next = current.replace(`address: ${run.ip(12)}\n  port: 8080`, `address: ${run.ip(12)}\n  port: 8080\n  weight: 5`);
    expect(next).not.toBe(current);
    checkout++;
    await mkdir(join(root, `checkout-${checkout}`));
    await writeFile(join(root, `checkout-${checkout}`, 'lb.yaml'), next);
    await symlink(join(root, `checkout-${checkout}`), `${watch}.new`);
    await rename(`${watch}.new`, watch); // atomic, as git-sync swaps it

    await waitFor(async () => (await readFile(join(lbDir, 'haproxy.cfg'), 'utf8')) !== before, { timeoutMs: 10_000, message: 'swap never applied' });
    const after = await readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
    const removed = before.split('\n').filter((l) => !after.split('\n').includes(l));
    const added = after.split('\n').filter((l) => !before.split('\n').includes(l));
    expect(removed).toHaveLength(1);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/server web-m2 .* weight 5/);
    expect(await haproxyPid()).toBe(pid);
    expect(await serving()).toBe(true);
  });

  it('4. deleting the file removes the netns, the OVS port, HAProxy and the state dir', async () => {
    const pid = (await haproxyPid())!;
    await rm(join(root, `checkout-${checkout}`, 'lb.yaml'));
    await waitFor(async () => !(await exists(lbDir)), { timeoutMs: 10_000, message: 'state dir never removed' });
    expect(await listNetns()).not.toContain(NETNS);
    expect(await ovsHasPort(IFACE), 'OVS port').toBe(false);
    expect(await alive(pid), 'HAProxy process').toBe(false);
    expect(await serving(), 'VIP serving').toBe(false);
  });

  it('9. nslb cleanup removes exactly what carries the markers', async () => {
    await writeManifest(await manifest({ tcpMembers: [] }));
    await waitFor(serving, { timeoutMs: 15_000, message: 'not serving again' });
    await agent!.stop();
    agent = undefined;
    const pid = (await haproxyPid())!;
    // Look-alikes that nslb did not make: a netns with nslb's prefix and an unmarked internal port.
    await exec('ip', ['netns', 'add', 'nslb-foreign']);
    const foreignPort = `${run.prefix}fp`;
    await exec('ovs-vsctl', ['--timeout=5', 'add-port', BRIDGE, foreignPort, '--', 'set', 'Interface', foreignPort, 'type=internal']);
    // And a HAProxy started by hand, in that netns, with a pidfile of its own.
    const foreignCfg = join(root, 'foreign.cfg');
    await writeFile(
      foreignCfg,
      'global\n    master-worker\ndefaults\n    mode tcp\n    timeout client 1s\n    timeout server 1s\n    timeout connect 1s\nfrontend f\n    bind 127.0.0.1:18999\n',
    );
    await exec('ip', ['netns', 'exec', 'nslb-foreign', 'haproxy', '-W', '-D', '-f', foreignCfg, '-p', join(root, 'foreign.pid')]);
    const foreignPid = Number((await readFile(join(root, 'foreign.pid'), 'utf8')).trim());

    const out = await cli(['cleanup', '--state-dir', stateDir, '--bridge', BRIDGE]);
    expect(out.code).toBe(0);
    expect(await listNetns()).not.toContain(NETNS);
    expect(await ovsHasPort(IFACE), 'OVS port').toBe(false);
    expect(await alive(pid), 'HAProxy process').toBe(false);
    expect(await exists(lbDir), 'state dir').toBe(false);
    expect(await listNetns()).toContain('nslb-foreign');
    expect(await ovsHasPort(foreignPort)).toBe(true);
    expect(await alive(foreignPid), 'hand-started HAProxy').toBe(true);
    process.kill(foreignPid, 'SIGTERM');
    expect(await listNetns()).toEqual(expect.arrayContaining([...hosts.members.map((h) => h.netns), client.netns]));
    await exec('ovs-vsctl', ['--timeout=5', 'del-port', foreignPort]);
  });
});
