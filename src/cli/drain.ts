// `nslb drain NODE`: a planned switchover of every ACTIVE_STANDBY load balancer whose MASTER is this node, run
// on the node (file mode has no channel between nodes: the checkout is the only thing they share, and
// placement is the user's to change there). Each MASTER hands its VIP to its peer without losing a request
// (src/drivers/keepalived/handover.ts) and stays in the pair as BACKUP; SINGLE load balancers placed here have
// nowhere to go and keep serving, reported as such. It is one action, not a state: with `nopreempt` a node
// never takes a role back on its own, so nothing has to remember the drain (a node that reboots comes back
// BACKUP); only a failure of the peer moves the VIP back here.
import type { NodeStatus } from '../api/v1alpha1/types.js';
import { keepalivedFiles } from '../desired/state-dir.js';
import { switchOver, SWITCHOVERS_AT_ONCE } from '../drivers/keepalived/handover.js';
import { keepalivedPid, parseVrrpState } from '../drivers/keepalived/keepalived.js';
import { readSmall } from '../drivers/proc.js';
import { runCommand } from '../exec/run.js';
import { readStatusFile, type StatusFile } from '../status/status-file.js';

export interface DrainFlags {
  node: string;
  stateDir: string;
  dryRun: boolean;
  /** Hand over even when the peer is not ready in status (nobody may serve the VIP then). */
  force: boolean;
}

interface Row {
  lb: string;
  outcome: 'moved' | 'not MASTER' | 'refused' | 'failed' | 'stays' | 'would move';
  detail: string;
}

export async function drain(flags: DrainFlags): Promise<number> {
  let file: StatusFile;
  try {
    file = await readStatusFile(flags.stateDir);
  } catch (err) {
    process.stderr.write(
      `nslb drain: cannot read ${flags.stateDir}/status.json (${(err as Error).message}): is the agent running with --state-dir ${flags.stateDir}?\n`,
    );
    return 2;
  }
  const lbs = file.objects.filter((o) => o.kind === 'LoadBalancer' && o.status.netns !== undefined);
  const nodes = new Set(lbs.map((o) => o.status.node).filter((n) => n !== undefined));
  if (lbs.length > 0 && !nodes.has(flags.node)) {
    process.stderr.write(
      `nslb drain: the agent of ${flags.stateDir} is node ${[...nodes].join(', ')}, not ${flags.node}: run it on ${flags.node} (with its --state-dir)\n`,
    );
    return 2;
  }
  const rows: Row[] = [];
  const pairs: { lb: string; netns: string; peer: NodeStatus | undefined }[] = [];
  for (const o of lbs) {
    const lb = `${o.namespace}/${o.name}`;
    const placed = o.status.nodes ?? [];
    if (placed.length === 2) {
      pairs.push({ lb, netns: o.status.netns!, peer: placed.find((n) => n.name !== flags.node) });
    } else {
      rows.push({ lb, outcome: 'stays', detail: `SINGLE: no other node serves it; it keeps serving here (to move it, change spec.placement.nodes)` });
    }
  }

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pairs.length) {
      const p = pairs[next++]!;
      rows.push(await drainPair(p, flags));
    }
  };
  await Promise.all(Array.from({ length: Math.min(SWITCHOVERS_AT_ONCE, pairs.length) }, worker));

  rows.sort((a, b) => (a.lb < b.lb ? -1 : 1));
  const width = Math.max(12, ...rows.map((r) => r.lb.length));
  process.stdout.write(`${'LOADBALANCER'.padEnd(width)}  ${'RESULT'.padEnd(10)}  DETAIL\n`);
  for (const r of rows) process.stdout.write(`${r.lb.padEnd(width)}  ${r.outcome.padEnd(10)}  ${r.detail}\n`);
  if (lbs.length === 0) process.stdout.write(`no load balancer is served on ${flags.node}\n`);
  return rows.some((r) => r.outcome === 'refused' || r.outcome === 'failed') ? 1 : 0;
}

async function drainPair(p: { lb: string; netns: string; peer: NodeStatus | undefined }, flags: DrainFlags): Promise<Row> {
  const files = keepalivedFiles(flags.stateDir, p.netns);
  const state = keepalivedPid(files) === undefined ? undefined : parseVrrpState(readSmall(files.stateFile))?.state;
  if (state !== 'MASTER') return { lb: p.lb, outcome: 'not MASTER', detail: state === undefined ? 'keepalived is not running here' : `this node is ${state}` };
  const peer = p.peer?.name ?? '(unknown)';
  if (p.peer?.ready !== true && !flags.force) {
    return { lb: p.lb, outcome: 'refused', detail: `its peer ${peer} is not ready: nobody would serve the VIP (--force to hand over anyway)` };
  }
  if (flags.dryRun) return { lb: p.lb, outcome: 'would move', detail: `MASTER → ${peer}` };
  try {
    const r = await switchOver(runCommand, p.netns, files);
    if (!r.released) return { lb: p.lb, outcome: 'failed', detail: 'keepalived did not let go of the VIP within 5 s' };
    const cut = r.cut === 0 ? 'no connection cut' : `${r.cut} connection(s) still open after ${r.drainedMs} ms were cut`;
    if (r.after === 'MASTER') return { lb: p.lb, outcome: 'failed', detail: `${peer} did not take the VIP: this node is MASTER again` };
    return { lb: p.lb, outcome: 'moved', detail: `MASTER → ${peer}; this node ${r.after ?? 'has no VRRP state'}; ${cut}` };
  } catch (err) {
    return { lb: p.lb, outcome: 'failed', detail: (err as Error).message };
  }
}
