// `nslb cleanup`: remove every load balancer nslb created on this node, found by its markers only.
import { ifaceOfNetns } from '../desired/names.js';
import { LinuxNodeDriver } from '../drivers/node-driver.js';
import { checkDaemonCgroup } from '../exec/daemon-cgroup.js';
import { runCommand } from '../exec/run.js';
import { formatAction } from '../plan/actions.js';
import { planLoadBalancer } from '../plan/plan.js';

export async function cleanup(flags: { stateDir: string; dryRun: boolean; scope: 'node' | 'state-dir'; daemonCgroup?: string }): Promise<number> {
  const node = new LinuxNodeDriver({
    run: runCommand,
    stateDir: flags.stateDir,
    ...(flags.daemonCgroup === undefined ? {} : { daemonCgroup: checkDaemonCgroup(flags.daemonCgroup) }),
  });
  const first = await node.observe([], { scope: flags.scope === 'node' ? 'node' : 'mine' });
  let failures = 0;
  for (const [netns, observed] of first.lbs) {
    const actions = planLoadBalancer({ netns, iface: ifaceOfNetns(netns), observed });
    for (const a of actions) {
      process.stdout.write(`${flags.dryRun ? 'would ' : ''}${formatAction(a)}\n`);
      if (flags.dryRun) continue;
      try {
        await node.apply(a);
      } catch (err) {
        failures++;
        process.stderr.write(`failed: ${(err as Error).message}\n`);
      }
    }
  }
  if (first.lbs.size === 0) process.stdout.write('nothing of nslb found on this node\n');
  if (flags.daemonCgroup !== undefined && !flags.dryRun) {
    // Last, once its daemons are gone: a directory still holding a process (another agent's) stays.
    try {
      await node.removeDaemonCgroup();
    } catch (err) {
      failures++;
      process.stderr.write(`failed: removing cgroup ${flags.daemonCgroup}: ${(err as Error).message}\n`);
    }
  }
  return failures === 0 ? 0 : 1;
}
