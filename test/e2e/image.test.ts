// The agent image, run with podman exactly as the chart's DaemonSet runs it (scripts/run-image.sh: host
// network and PID namespace, privileged, the node's OVS socket, state dir, /run/netns and cgroup tree),
// in Kubernetes mode against the in-test API server. Issue 18's acceptance 1 and 2.
// Cost: the first build on a machine makes the Debian layer (~1 min); after that ~15 s to repackage nslb,
// and ~40 s for the tests themselves.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { FakeApiServer, loadCrdFiles } from '../support/fake-apiserver.js';
import { cli } from './agent.js';
import { startClientLoop } from './client-loop.js';
import { REPO_ROOT, httpGetMany, MemberHosts, exampleObjects, runCommand, uniqueRun, waitFor, type Host } from './harness.js';
import { PODMAN, buildImage, cgroupsOf, containerLogs, removeCgroup, removeContainer, runImage } from './image-harness.js';
import type { Obj } from '../support/fake-apiserver.js';

const run = uniqueRun(18);
const BRIDGE = `br-${run.prefix}`;
const NS = run.prefix;
const VIP = run.ip(10);
const { netns: NETNS } = nodeNames(NS, 'web');
const stateDir = join(tmpdir(), `nslb-image-${run.prefix}`);
const CONTAINER = `nslb-e2e-${run.prefix}`;
const CGROUP = `/nslb-e2e-${run.prefix}`;

describe('the agent image under podman, as the DaemonSet runs it', () => {
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  const hosts = new MemberHosts(run, 2);
  let client: Host;
  let kubeconfig = '';
  let image = '';
  const agentArgs = [
    'run',
    '--kubernetes',
    '--node-name=e2e-node',
    `--state-dir=${stateDir}`,
    `--bridge=${BRIDGE}`,
    '--resync=2',
    '--status-interval=300',
    '--listen=127.0.0.1:0',
    `--daemon-cgroup=${CGROUP}`,
  ];
  const haproxyPid = async (): Promise<number> => Number((await readFile(join(stateDir, 'lb', NETNS, 'haproxy.pid'), 'utf8')).trim());
  const logsSay = async (text: string): Promise<boolean> => (await containerLogs(CONTAINER)).some((l) => l.includes(text));

  beforeAll(async () => {
    image = await buildImage();
    client = (await hosts.create()).client;
    await api.start();
    kubeconfig = api.writeKubeconfig();
  }, 16 * 60_000);

  afterAll(async () => {
    await removeContainer(CONTAINER, { force: true });
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await removeCgroup(CGROUP);
    await api.stop().catch(() => {});
    await hosts.remove();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('holds the HAProxy the tests use, Node >= 20.19 and the tools the agent runs', async () => {
    const inImage = async (...argv: string[]) =>
      (
        await runCommand([
          ...PODMAN,
          'run',
          '--rm',
          '--network',
          'none',
          '--ulimit',
          'nofile=4096:4096',
          '--ulimit',
          'nproc=4096:4096',
          '--entrypoint',
          argv[0]!,
          image,
          ...argv.slice(1),
        ])
      ).stdout;
    const hostHaproxy = (await runCommand(['haproxy', '-v'])).stdout.split('\n')[0];
    expect((await inImage('haproxy', '-v')).split('\n')[0]).toBe(hostHaproxy);
    const [major, minor] = (await inImage('node', '-p', 'process.versions.node')).trim().split('.').map(Number) as [number, number];
    expect(major > 20 || (major === 20 && minor >= 19)).toBe(true);
    for (const tool of ['ip', 'ovs-vsctl', 'keepalived', 'nft', 'ping', 'nsenter', 'nslb']) {
      expect((await inImage('sh', '-c', `command -v ${tool}`)).trim(), tool).not.toBe('');
    }
    // The same code as the npm package: the image's dist is this checkout's build.
    const ours = await readFile(join(REPO_ROOT, 'dist', 'cli', 'run.js'), 'utf8');
    expect(await inImage('cat', '/opt/nslb/lib/node_modules/nslb/dist/cli/run.js')).toBe(ours);
  });

  it('1. runs in Kubernetes mode and serves a load balancer applied through the API server', async () => {
    const id = await runImage(CONTAINER, { kubeconfig, args: agentArgs });
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    await waitFor(() => logsSay('initial sync done'), { timeoutMs: 60_000, message: 'the containerized agent never synced' });
    for (const o of await exampleObjects(run, NS)) api.create(o);
    await waitFor(async () => (await httpGetMany(client, `http://${VIP}/`, 2, { timeoutMs: 1000 }).catch(() => [] as string[])).includes('member m1'), {
      timeoutMs: 30_000,
      message: 'the VIP never served',
    });
    expect(new Set(await httpGetMany(client, `http://${VIP}/`, 6))).toEqual(new Set(['member m1', 'member m2']));
    await waitFor(async () => (api.get('nslb.dev/v1alpha1', 'loadbalancers', NS, 'web') as Obj | undefined)?.status?.provisioningStatus === 'ACTIVE', {
      timeoutMs: 15_000,
      message: 'status never written by the containerized agent',
    });
    // HAProxy runs in the host cgroup given, not in the container's.
    const cgroups = await cgroupsOf(await haproxyPid());
    expect(
      cgroups.every((c) => c === CGROUP),
      cgroups.join(' '),
    ).toBe(true);
  }, 180_000);

  it('2. replacing the agent container under continuous load drops nothing, keeps the HAProxy PIDs, plans nothing', async () => {
    const pidBefore = await haproxyPid();
    const loop = startClientLoop(client, `http://${VIP}/`, { intervalMs: 20, timeoutMs: 2_000 });
    try {
      await loop.waitForSuccesses(20);
      // As a DaemonSet rolling update does: the old pod goes (SIGTERM, then its cgroup is removed), then the
      // new one starts.
      await removeContainer(CONTAINER);
      expect((await runCommand([...PODMAN, 'container', 'exists', CONTAINER], { allowFailure: true })).exitCode).toBe(1);
      await loop.waitForSuccesses(30);
      await runImage(CONTAINER, { kubeconfig, args: agentArgs });
      await waitFor(() => logsSay('initial sync done'), { timeoutMs: 60_000, message: 'the new container never synced' });
      await loop.waitForSuccesses(30);
    } finally {
      await loop.stop();
    }
    expect(loop.failures()).toEqual([]);
    expect(loop.ok()).toBeGreaterThan(80);
    expect(await haproxyPid()).toBe(pidBefore);
    const logs = await containerLogs(CONTAINER);
    expect(logs.some((l) => l.includes('adopted the running HAProxy without a restart') && l.includes(String(pidBefore)))).toBe(true);
    expect(api.events(NS).some((e: Obj) => e.reason === 'Adopted' && e.involvedObject?.name === 'web')).toBe(true);

    // `nslb plan` on the desired objects (as the API server holds them) finds nothing to do.
    const dir = await mkdtemp(join(tmpdir(), 'nslb-image-plan-'));
    try {
      const objects = ((await exampleObjects(run, NS)) as Obj[]).map(({ apiVersion, kind, metadata, spec }) => ({
        apiVersion,
        kind,
        metadata: { name: metadata.name, namespace: metadata.namespace },
        spec,
      }));
      await writeFile(join(dir, 'lb.yaml'), objects.map((o) => yaml.dump(o)).join('---\n'));
      const plan = await cli(['plan', '--watch', dir, '--state-dir', stateDir, '--bridge', BRIDGE]);
      expect(plan.stdout).toContain('No changes.');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
