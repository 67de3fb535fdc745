// `--daemon-cgroup` kept like every other side effect (issue 18's leftover): a HAProxy moved out of the cgroup by
// hand (into the cgroup a container would have, here the root) is put back within one resync, master and
// workers, and `nslb cleanup --daemon-cgroup` removes the cgroup's directories once its daemons are gone. The
// agent runs on the host, as under systemd; tests/e2e/image.test.ts covers the same flag from a container.
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroupsOf, removeCgroup } from './image-harness.js';
import { runNslb, waitFor, type Host } from './harness.js';
import { listener, loadBalancer, member, ParityEnv, pool } from './parity-env.js';

const env = ParityEnv.create(27);
const CGROUP = `/nslb-e2e-${env.namespace}`;
const ROOT = '/sys/fs/cgroup';
const RESYNC_S = 2;

/** Every hierarchy's root directory that the start script joins (the same test as scripts/daemon-cgroup.sh). */
async function hierarchies(): Promise<string[]> {
  if (existsSync(join(ROOT, 'cgroup.controllers'))) return [ROOT];
  const out: string[] = [];
  for (const h of await readdir(ROOT)) {
    const dir = join(ROOT, h);
    if (existsSync(join(dir, CGROUP))) out.push(dir);
  }
  return out;
}

async function masterAndWorkers(pid: number): Promise<number[]> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).split(' ').filter((c) => c !== '');
  return [pid, ...children.map(Number)];
}

describe('--daemon-cgroup is kept and cleaned up', () => {
  let client: Host;
  let VIP: string;
  const haproxyPid = async (): Promise<number> => Number((await readFile(join(env.lbDir('web'), 'haproxy.pid'), 'utf8')).trim());

  beforeAll(async () => {
    await env.start({ resync: RESYNC_S, extraArgs: ['--daemon-cgroup', CGROUP] });
    VIP = env.vip(1);
    const { members, client: c } = await env.membersAndClient(1);
    client = c;
    await env.apply('lb.yaml', [
      loadBalancer('web', { vip: { address: VIP, prefixLength: 24 } }),
      listener('web-l', { loadBalancer: 'web', protocol: 'HTTP', port: 80, defaultPool: 'web-p' }),
      pool('web-p', { loadBalancer: 'web', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('web-m1', { pool: 'web-p', address: members[0]!.address, port: 8080 }),
    ]);
    await env.waitForResponse(client, `http://${VIP}/`, ['LoadBalancer/web']);
  });

  afterAll(async () => {
    await env.cleanup();
    await removeCgroup(CGROUP);
  });

  it('HAProxy starts in the cgroup, and is put back within a resync after being moved out by hand', async () => {
    const pid = await haproxyPid();
    const pids = await masterAndWorkers(pid);
    expect(pids.length).toBeGreaterThan(1);
    for (const p of pids) expect((await cgroupsOf(p)).filter((c) => c === CGROUP).length).toBeGreaterThan(0);
    const dirs = await hierarchies();
    expect(dirs.length).toBeGreaterThan(0);
    // Out, as a sweep into another cgroup would: every process, every hierarchy.
    for (const p of pids) for (const d of dirs) await writeFile(join(d, 'cgroup.procs'), `${p}\n`);
    for (const p of pids) expect(await cgroupsOf(p)).not.toContain(CGROUP);
    const from = env.agent!.logs.length;
    await waitFor(
      async () => {
        for (const p of pids) {
          const shown = await cgroupsOf(p);
          if (shown.filter((c) => c === CGROUP).length !== dirs.length) return false;
        }
        return true;
      },
      { timeoutMs: (RESYNC_S + 4) * 1000, intervalMs: 100, message: 'HAProxy back in its cgroup' },
    );
    expect(env.agent!.logs.slice(from).some((l) => l.includes('moved back'))).toBe(true);
    expect(await haproxyPid()).toBe(pid); // moved, not restarted
    expect((await env.status())?.objects.find((o) => o.kind === 'LoadBalancer')?.status.provisioningStatus).toBe('ACTIVE');
  });

  it('nslb cleanup --daemon-cgroup removes the cgroup once its daemons are gone', async () => {
    const dirs = await hierarchies();
    await env.agent!.stop();
    env.agent = undefined;
    const r = await runNslb(['cleanup', '--scope', 'state-dir', '--state-dir', env.stateDir, '--bridge', env.bridge, '--daemon-cgroup', CGROUP]);
    expect(r.exitCode, r.stderr).toBe(0);
    for (const d of dirs) expect(existsSync(join(d, CGROUP)), join(d, CGROUP)).toBe(false);
  });
});
