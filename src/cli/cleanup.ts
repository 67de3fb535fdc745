// `nslb cleanup`: remove every load balancer nslb created on this node, found by its markers only.
import { netnsOfKey } from '../controller/manager.js';
import { applyAction, ifaceForNetns, observeNode } from '../drivers/node.js';
import { runCommand } from '../exec/run.js';
import { formatAction } from '../plan/actions.js';
import { planLoadBalancer } from '../plan/plan.js';

export async function cleanup(flags: { stateDir: string; dryRun: boolean; scope: 'node' | 'state-dir' }): Promise<number> {
  const ctx = { run: runCommand, stateDir: flags.stateDir };
  const first = await observeNode(ctx, [], netnsOfKey, flags.scope === 'node' ? 'node' : 'mine');
  let failures = 0;
  for (const [netns, observed] of first.lbs) {
    const actions = planLoadBalancer({ netns, iface: ifaceForNetns(netns), observed });
    for (const a of actions) {
      process.stdout.write(`${flags.dryRun ? 'would ' : ''}${formatAction(a)}\n`);
      if (flags.dryRun) continue;
      try {
        await applyAction(ctx, a);
      } catch (err) {
        failures++;
        process.stderr.write(`failed: ${(err as Error).message}\n`);
      }
    }
  }
  if (first.lbs.size === 0) process.stdout.write('nothing of nslb found on this node\n');
  return failures === 0 ? 0 : 1;
}
