// Issue 6 item 2, drift: each of these, done by hand while the agent runs, is repaired within one resync and
// reported (the agent logs the repair as an "applying" line naming the actions): HAProxy killed, its config
// edited, the netns deleted, the VIP address removed, the link set down, the OVS port deleted, the port moved
// out of the netns, ovs-vswitchd restarted, the load balancer's state dir deleted. After each, the VIP
// answers again, status is ACTIVE, and the node holds exactly one of everything (no orphan, no duplicate).
import { execFile } from 'node:child_process';
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { httpGet, runCommand, waitFor, type Host } from './harness.js';
import { inventoryProblems, killHaproxiesUnder } from './node-inventory.js';
import { listener, loadBalancer, member, ParityEnv, pool, sleep } from './parity-env.js';

const exec = promisify(execFile);
const env = ParityEnv.create(5);
const RESYNC_S = 2;
/**
 * How long a repair may take to complete before the test gives up: generous, because on a loaded machine one
 * `ovs-vsctl` can take seconds. "Within one resync" is checked on the agent's log instead (see faultIsRepaired).
 */
const REPAIR_MS = 30_000;
const OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl';

/**
 * Stops ovs-vswitchd and starts it again, as an upgrade or a crash-and-restart would. `ovs-appctl exit`
 * returns before the process is gone, and `ovs-ctl start` does nothing while it is still there: wait between.
 */
async function restartVswitchd(): Promise<void> {
  const pid = Number((await readFile('/var/run/openvswitch/ovs-vswitchd.pid', 'utf8')).trim());
  await runCommand(['ovs-appctl', '-t', 'ovs-vswitchd', 'exit'], { timeoutMs: 30_000 });
  await waitFor(
    async () =>
      !(await readFile(`/proc/${pid}/stat`, 'utf8').then(
        (st) => !/^\S+ \(.*\) Z/.test(st),
        () => false,
      )),
    {
      timeoutMs: 20_000,
      intervalMs: 50,
      message: `ovs-vswitchd (pid ${pid}) to exit`,
    },
  );
  await runCommand([OVS_CTL, '--no-ovsdb-server', '--no-monitor', 'start'], { timeoutMs: 60_000 });
  await waitFor(() => runCommand(['ovs-appctl', '--timeout=3', '-t', 'ovs-vswitchd', 'version'], { allowFailure: true }).then((r) => r.exitCode === 0), {
    timeoutMs: 20_000,
    message: 'ovs-vswitchd to answer again',
  });
}

describe('drift is repaired within one resync (issue 6 item 2)', () => {
  let m1: Host, client: Host;
  let NETNS: string, IFACE: string, lbDir: string, VIP: string;
  let goodConfig: string;

  const serving = async (): Promise<boolean> => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1_000 })).status === 200;
  const haproxyPid = async (): Promise<number> => Number((await readFile(join(lbDir, 'haproxy.pid'), 'utf8')).trim());

  /**
   * Does `fault`, then waits until the agent has logged an "applying" line with an action matching each of
   * `repairs`, the VIP answers, the load balancer is ACTIVE and the node has exactly this one load balancer.
   * Within one resync: every repair action was applied before the agent's third resync summary after the fault
   * (the first may be of a resync that observed before the fault; the summary precedes the resync's applying).
   */
  async function faultIsRepaired(what: string, fault: () => Promise<void>, repairs: RegExp[]): Promise<void> {
    const agent = env.agent!;
    const from = agent.logs.length;
    await fault();
    const faulted = agent.logs.length;
    let last = '';
    try {
      await waitFor(
        async () => {
          const actions = agent.logs
            .slice(from)
            .filter((l) => l.includes('"applying"'))
            .flatMap((l) => (JSON.parse(l) as { actions: string[] }).actions);
          const missing = repairs.filter((r) => !actions.some((a) => r.test(a)));
          if (missing.length > 0) {
            last = `no action matching ${missing.join(', ')} yet; logged: ${JSON.stringify(actions)}`;
            return;
          }
          if (!(await serving())) {
            last = 'VIP does not answer';
            return;
          }
          const lb = (await env.status())?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === 'web');
          if (lb?.status.provisioningStatus !== 'ACTIVE') {
            last = `status ${lb?.status.provisioningStatus}`;
            return;
          }
          const problems = await inventoryProblems(env.stateDir, [NETNS], [{ netns: NETNS, iface: IFACE }]);
          if (problems.length > 0) {
            last = problems.join('; ');
            return;
          }
          return true;
        },
        { timeoutMs: REPAIR_MS, intervalMs: 100, message: `${what} to be repaired` },
      );
    } catch (error) {
      const tail = agent.logs.slice(Math.max(from, agent.logs.length - 6)).map((l) => l.slice(0, 300));
      throw new Error(`${(error as Error).message}: ${last}; nslb reports: ${await env.describe(['LoadBalancer/web'])}; agent log:\n${tail.join('\n')}`, {
        cause: error,
      });
    }
    const resyncs = agent.logs.map((l, i) => (i >= faulted && l.includes('"msg":"resync"') ? i : -1)).filter((i) => i >= 0);
    const third = resyncs[2];
    const withinOne = agent.logs
      .slice(from, third)
      .filter((l) => l.includes('"applying"'))
      .flatMap((l) => (JSON.parse(l) as { actions: string[] }).actions);
    expect(
      repairs.filter((r) => !withinOne.some((a) => r.test(a))),
      `${what}: repair actions not applied within one resync of the fault`,
    ).toEqual([]);
  }

  beforeAll(async () => {
    await env.start({ resync: RESYNC_S });
    ({ netns: NETNS, iface: IFACE } = nodeNames(env.namespace, 'web'));
    lbDir = env.lbDir('web');
    VIP = env.vip(1);
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'm1' });
    await env.apply('lb.yaml', [
      loadBalancer('web', { vip: { address: VIP, prefixLength: 24 } }),
      listener('web-l', { loadBalancer: 'web', protocol: 'HTTP', port: 80, defaultPool: 'web-p' }),
      pool('web-p', { loadBalancer: 'web', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
      member('web-m1', { pool: 'web-p', address: m1.address, port: 8080 }),
    ]);
    await env.waitForResponse(client, `http://${VIP}/`, ['LoadBalancer/web']);
    await env.waitForActive(['LoadBalancer/web', 'Member/web-m1']);
    goodConfig = await readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
  });

  afterAll(async () => {
    // If the vswitchd step failed half-way, leave the node's switch running for whoever comes next.
    await runCommand([OVS_CTL, '--no-ovsdb-server', '--no-monitor', 'start'], { timeoutMs: 60_000, allowFailure: true }).catch(() => {});
    await env.cleanup();
    await killHaproxiesUnder(env.stateDir).catch(() => {});
  });

  it('HAProxy killed (SIGKILL to the master): started again', async () => {
    const pid = await haproxyPid();
    await faultIsRepaired('HAProxy killed', async () => void process.kill(pid, 'SIGKILL'), [/haproxy start/]);
    expect(await haproxyPid()).not.toBe(pid);
  });

  it('HAProxy config edited by hand (a comment appended: rewritten; a timeout changed: rewritten and reloaded)', async () => {
    const pid = await haproxyPid();
    const config = join(lbDir, 'haproxy.cfg');
    // A comment changes nothing HAProxy runs: the file is put back, no reload.
    await faultIsRepaired('comment appended', () => appendFile(config, '# edited by hand\n'), [/haproxy runtime API .*config comments only \(no reload\)/]);
    expect(await readFile(config, 'utf8')).toBe(goodConfig);

    expect(goodConfig).toMatch(/timeout client 50000/);
    await faultIsRepaired('timeout changed', () => writeFile(config, goodConfig.replace('timeout client 50000', 'timeout client 1')), [
      /haproxy write .*changed/,
      /haproxy reload/,
    ]);
    expect(await readFile(config, 'utf8')).toBe(goodConfig);
    expect(await haproxyPid()).toBe(pid); // reloaded, never restarted
  });

  it('netns deleted: recreated, port re-added, HAProxy replaced', async () => {
    await faultIsRepaired('netns deleted', () => exec('ip', ['netns', 'delete', NETNS]).then(() => {}), [
      /netns add/,
      /ovs add-port/,
      /link configure/,
      /haproxy start/,
    ]);
  });

  it('VIP address removed: put back', async () => {
    await faultIsRepaired('VIP removed', () => exec('ip', ['-n', NETNS, 'addr', 'del', `${VIP}/24`, 'dev', IFACE]).then(() => {}), [
      new RegExp(`link configure .*addr ${VIP.replaceAll('.', '\\.')}/24`),
    ]);
  });

  it('link set down: set up again', async () => {
    await faultIsRepaired('link down', () => exec('ip', ['-n', NETNS, 'link', 'set', 'dev', IFACE, 'down']).then(() => {}), [/link configure .*up/]);
  });

  it('OVS port deleted: added again', async () => {
    await faultIsRepaired('port deleted', () => exec('ovs-vsctl', ['--timeout=5', 'del-port', IFACE]).then(() => {}), [
      /ovs add-port/,
      /link .* → netns/,
      /link configure/,
    ]);
  });

  it('OVS port moved out of the netns: moved back', async () => {
    await faultIsRepaired('port moved out', () => exec('ip', ['-n', NETNS, 'link', 'set', 'dev', IFACE, 'netns', '1']).then(() => {}), [
      /link .* → netns/,
      /link configure/,
    ]);
  });

  it('ovs-vswitchd restarted: the VIP port is moved back and traffic recovers', async () => {
    const pid = await haproxyPid();
    await faultIsRepaired('ovs-vswitchd restarted', restartVswitchd, [/link .* → netns/, /link configure/]);
    // Restarting the switch recreates internal ports in the host namespace; HAProxy's sockets (bound to the
    // VIP address) survive it, so the same process serves again.
    expect(await haproxyPid()).toBe(pid);
    // Members on the same bridge (veth ports) came back with the switch.
    expect(await serving()).toBe(true);
  });

  it("the load balancer's state dir deleted: HAProxy found by its config path and restarted, files rewritten", async () => {
    const pid = await haproxyPid();
    await faultIsRepaired('state dir deleted', () => rm(lbDir, { recursive: true, force: true }), [
      /haproxy write .*new/,
      new RegExp(`haproxy stop .*pid ${pid}`),
      /haproxy start .*state dir was deleted/,
    ]);
    expect(await haproxyPid()).not.toBe(pid);
    expect(await readFile(join(lbDir, 'haproxy.cfg'), 'utf8')).toBe(goodConfig);
    await sleep(RESYNC_S * 1000 + 500); // the next resync finds nothing more to do
    expect(await inventoryProblems(env.stateDir, [NETNS], [{ netns: NETNS, iface: IFACE }])).toEqual([]);
  });
});
