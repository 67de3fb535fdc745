// `nslb plan --watch DIR`: what a reconcile would do now. Reads the node, changes nothing.
import { placedElsewhere } from '../controller/placement.js';
import { planKey } from '../controller/reconciler.js';
import { buildDesired } from '../desired/build.js';
import { netnsOfKey, orphanKey } from '../desired/names.js';
import { LinuxNodeDriver } from '../drivers/node-driver.js';
import { runCommand } from '../exec/run.js';
import { formatAction } from '../plan/actions.js';
import { ManifestDirectory } from '../sources/file-source.js';
import { describeIssue } from '../sources/parse.js';

export async function printPlan(flags: { watch: string; stateDir: string; bridge: string; nodeName: string }): Promise<number> {
  const node = new LinuxNodeDriver({ run: runCommand, stateDir: flags.stateDir });
  const snapshot = await new ManifestDirectory(flags.watch).read();
  for (const issue of snapshot.issues) process.stderr.write(`invalid, ignored: ${describeIssue(issue)}\n`);
  const desired = buildDesired(snapshot.objects, { defaultBridge: flags.bridge, materials: snapshot.materials, nodeName: flags.nodeName });
  // As the agent of --node-name sees it: what is placed on other nodes only is not this node's.
  for (const key of placedElsewhere(snapshot.objects, flags.nodeName)) {
    desired.lbs.delete(key);
    desired.blocked.delete(key);
  }
  let changes = 0;
  const wanted = new Set<string>();
  const section = (title: string, lines: string[]): void => {
    if (lines.length === 0) return;
    changes += lines.length;
    process.stdout.write(`${title}\n${lines.map((l) => `  ${l}\n`).join('')}`);
  };
  for (const [key, lb] of desired.lbs) {
    wanted.add(lb.names.netns);
    section(`${key} (${lb.names.netns}):`, (await planKey(node, flags.stateDir, key, lb)).map(formatAction));
  }
  for (const [key, problems] of desired.blocked) {
    wanted.add(netnsOfKey(key));
    process.stdout.write(`${key}: not changed, invalid objects:\n${problems.map((p) => `  ${p.kind} ${p.name}: ${p.message}\n`).join('')}`);
  }
  const observed = await node.observe([]);
  for (const [netns, o] of observed.lbs) {
    if (wanted.has(netns)) continue;
    section(
      `${o.lbKey ?? '(unknown owner)'} (${netns}), no longer desired:`,
      (await planKey(node, flags.stateDir, orphanKey(netns), undefined)).map(formatAction),
    );
  }
  if (changes === 0) process.stdout.write('No changes. The node matches the desired state.\n');
  return 0;
}
