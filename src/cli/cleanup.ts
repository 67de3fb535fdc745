// `nslb cleanup`: remove every load balancer nslb created on this node, found by its markers only.
//
// Each load balancer's steps run in the order the planner gives (HAProxy stopped, netns deleted, port deleted,
// state dir deleted: the same as a deletion by the agent, so a crash anywhere leaves what the next run finds
// by its markers), and many load balancers at once, so that the node driver merges their steps: the port
// deletions into one OVS transaction, the netns deletions into one `ip -batch`. One process per object cost
// about a minute for 500 load balancers.
import { crashPoint } from '../controller/crash-points.js';
import { ifaceOfNetns } from '../desired/names.js';
import { LinuxNodeDriver } from '../drivers/node-driver.js';
import { checkDaemonCgroup } from '../exec/daemon-cgroup.js';
import { runCommand } from '../exec/run.js';
import { formatAction } from '../plan/actions.js';
import { planLoadBalancer } from '../plan/plan.js';

/** Load balancers removed at once (as the agent's default --concurrency). */
const AT_ONCE = 128;

export async function cleanup(flags: { stateDir: string; dryRun: boolean; scope: 'node' | 'state-dir'; daemonCgroup?: string }): Promise<number> {
  const node = new LinuxNodeDriver({
    run: runCommand,
    stateDir: flags.stateDir,
    ...(flags.daemonCgroup === undefined ? {} : { daemonCgroup: checkDaemonCgroup(flags.daemonCgroup) }),
  });
  const first = await node.observe([], { scope: flags.scope === 'node' ? 'node' : 'mine' });
  let failures = 0;
  const plans = [...first.lbs].map(([netns, observed]) => planLoadBalancer({ netns, iface: ifaceOfNetns(netns), observed }));
  if (flags.dryRun) {
    for (const a of plans.flat()) process.stdout.write(`would ${formatAction(a)}\n`);
  } else {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < plans.length) {
        const actions = plans[next++]!;
        for (const a of actions) {
          crashPoint();
          process.stdout.write(`${formatAction(a)}\n`);
          try {
            await node.apply(a);
          } catch (err) {
            failures++;
            process.stderr.write(`failed: ${(err as Error).message}\n`);
          }
          crashPoint();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(AT_ONCE, plans.length) }, worker));
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
