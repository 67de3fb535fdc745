// The node as the reconciler sees it: batched observation of every marked thing, and the one place that maps
// an Action onto a driver call. Nothing here decides anything; plan/ does.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Runner } from '../exec/run.js';
import type { Action } from '../plan/actions.js';
import { isNslbNetnsName, nodeNames, parseLbKey } from '../desired/names.js';
import { engineCounters } from '../metrics/counters.js';
import {
  applyRuntimeCommands,
  deleteStateDir,
  ensureStateDir,
  findHaproxyByConfig,
  lbPaths,
  markConfigLoaded,
  observeCertFiles,
  observeHaproxyPid,
  observeHaproxy,
  observeReloadPending,
  readConfig,
  reloadHaproxy,
  haproxyStartCommand,
  launchHaproxy,
  startHaproxy,
  stopHaproxy,
  type LbPaths,
  writeCheckedConfig,
} from './haproxy/haproxy.js';
import {
  assignNetnsIds,
  configureLink,
  deleteNetns,
  ensureNetns,
  ensureNetnsMany,
  execInNetnsBatch,
  hostHasLink,
  moveLinkToNetns,
  moveLinksToNetns,
  observeNetnsIds,
  observeNetnsMany,
  observeNetnsNames,
  renderLinkBatch,
  type LinkConfig,
} from './netns/netns.js';
import { netnsWatch } from './netns/watch.js';
import { ovsMonitor } from './ovs/monitor.js';
import { argvAddPorts, deletePort, ensurePort, observeOvs, type AddPort, type ObservedOvs } from './ovs/ovs.js';
import { Batcher, Coalescer } from '../exec/batcher.js';
import type { ObservedLoadBalancer, ObservedNode } from './observed.js';

export interface NodeContext {
  run: Runner;
  stateDir: string;
}

/** What the observer needs to know about a load balancer it is asked to look at closely. */
export interface ObserveTarget {
  netns: string;
  iface: string;
}

const OWNER_FILE = 'owner';
const DEVICE_WAIT_MS = 15_000;
const NETNS_READS_AT_ONCE = 8;
const NETNS_READS_PER_BATCH = 64;
/** The read script of observeNetnsMany, in the state dir. */
const OBSERVE_SCRIPT = 'observe.batch';

/** Until the device is in the host namespace (or the time is up: the move then says what is wrong). */
async function waitForHostLink(iface: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await hostHasLink(iface)) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
}

/** Work of load balancers reconciled at once, merged per runner (see exec/batcher.ts). */
interface Batchers {
  observeOvs: Coalescer<ObservedOvs>;
  addPort: Batcher<AddPort>;
  addNetns: Batcher<string>;
  moveLink: Batcher<{ iface: string; netns: string }>;
  configureLink: Batcher<{ config: LinkConfig; dir: string }>;
  startHaproxy: Batcher<{ netns: string; paths: LbPaths }>;
}

/**
 * Items per `ip -batch` of `netns exec` lines. ip runs them one after the other: batches of a few keep the
 * agent from forking once per load balancer, and several batches at once keep every core busy.
 */
const NETNS_BATCH_SIZE = 8;

/** Where the agent leaves a load balancer's link script for `ip -batch` (in its state dir). */
const LINK_SCRIPT = 'link.batch';

const batchersByRunner = new WeakMap<Runner, Batchers>();

function batchers(run: Runner): Batchers {
  let b = batchersByRunner.get(run);
  if (b === undefined) {
    b = {
      observeOvs: new Coalescer(() => ovsMonitor.read(() => observeOvs(run))),
      addPort: new Batcher(
        async (ports) => void (await run(argvAddPorts(ports))),
        (p) => ensurePort(run, p),
      ),
      addNetns: new Batcher(
        (names) => ensureNetnsMany(run, names),
        (n) => ensureNetns(run, n),
      ),
      moveLink: new Batcher(
        (moves) => moveLinksToNetns(run, moves),
        async (m) => {
          // After a failed batch, the moves that went through have no device in the host any more.
          if (!(await hostHasLink(m.iface))) return;
          await moveLinkToNetns(run, m.iface, m.netns);
        },
      ),
      // Configuring links and starting HAProxy happen inside each netns: one `ip -batch` of `netns exec`
      // lines for the load balancers that get there together, instead of one process from the agent each.
      configureLink: new Batcher(
        async (items) => {
          for (const { config, dir } of items) {
            mkdirSync(dir, { recursive: true, mode: 0o700 });
            writeFileSync(join(dir, LINK_SCRIPT), renderLinkBatch(config), { mode: 0o600 });
          }
          await execInNetnsBatch(run, items.map(({ config, dir }) => ({ netns: config.netns, argv: ['ip', '-batch', join(dir, LINK_SCRIPT)] })));
        },
        ({ config }) => configureLink(run, config),
        { maxBatch: NETNS_BATCH_SIZE },
      ),
      startHaproxy: new Batcher(
        async (items) =>
          void (await execInNetnsBatch(run, items.map(({ netns, paths }) => ({ netns, argv: haproxyStartCommand(paths) })), { detached: true })),
        ({ netns, paths }) => launchHaproxy(run, netns, paths),
        { maxBatch: NETNS_BATCH_SIZE },
      ),
    };
    batchersByRunner.set(run, b);
  }
  return b;
}

export function ifaceForNetns(netns: string): string {
  return `nslb${netns.slice('nslb-'.length, 'nslb-'.length + 11)}`;
}

async function observeStateDirs(stateDir: string): Promise<string[]> {
  try {
    return (await readdir(join(stateDir, 'lb'))).filter(isNslbNetnsName);
  } catch {
    return [];
  }
}

async function readOwner(stateDir: string, netns: string): Promise<string | undefined> {
  try {
    return (await readFile(join(lbPaths(stateDir, netns).dir, OWNER_FILE), 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Observe nslb-marked netns, OVS ports and state dirs; look inside the netns of `targets` (links, addresses,
 * routes). Cost: one ovs-vsctl, plus one `ip -batch` per target whose netns exists.
 * Scope 'mine' (the agent's garbage collection) keeps only what this agent made: a state dir under its
 * --state-dir, or a port marked with it; so two agents on one node never collect each other's load balancers.
 * Scope 'node' (`nslb cleanup`) keeps everything that carries nslb's markers.
 */
export async function observeNode(
  ctx: NodeContext,
  targets: readonly ObserveTarget[],
  netnsOf: (lbKey: string) => string,
  scope: 'mine' | 'node' = 'mine',
  options: { nodeWide?: boolean } = {},
): Promise<ObservedNode> {
  // Node-wide (a resync) with the netns monitor running: `ip -j netns list` also names the netns ids the
  // monitor's events carry, and netns without one get one.
  const withIds = options.nodeWide === true && netnsWatch.active;
  const [ovs, netnsNames, stateDirs] = await Promise.all([
    batchers(ctx.run).observeOvs.run(),
    withIds
      ? observeNetnsIds(ctx.run).then(async (list) => {
          netnsWatch.setIds(list);
          await assignNetnsIds(ctx.run, list.filter((e) => e.id === undefined && isNslbNetnsName(e.name)).map((e) => e.name)).catch(() => undefined);
          return list.map((e) => e.name);
        })
      : observeNetnsNames(),
    observeStateDirs(ctx.stateDir),
  ]);
  const lbs = new Map<string, ObservedLoadBalancer>();
  const entry = (netns: string): ObservedLoadBalancer => {
    let e = lbs.get(netns);
    if (e === undefined) {
      e = { ifaceInHost: false, stateDir: false };
      lbs.set(netns, e);
    }
    return e;
  };
  // A reconcile of a few keys (not node-wide, not garbage collection) looks at those keys only: its cost must
  // not grow with the number of load balancers on the node.
  const only = targets.length > 0 && options.nodeWide !== true ? new Set(targets.map((t) => t.netns)) : undefined;
  const wantedHere = (netns: string): boolean => only === undefined || only.has(netns);
  for (const port of ovs.ports) {
    if (port.lb === undefined) continue;
    const netns = netnsOf(port.lb);
    if (!wantedHere(netns)) continue;
    const e = entry(netns);
    e.port = port;
    e.lbKey = port.lb;
  }
  const existingNetns = new Set(netnsNames.filter((n) => isNslbNetnsName(n) && wantedHere(n)));
  await Promise.all(
    stateDirs.filter(wantedHere).map(async (netns) => {
      const e = entry(netns);
      e.stateDir = true;
      const owner = e.lbKey ?? (await readOwner(ctx.stateDir, netns));
      if (owner !== undefined) e.lbKey = owner;
    }),
  );
  for (const netns of existingNetns) entry(netns).netns = { name: netns, loUp: false };
  for (const t of targets) entry(t.netns);
  if (scope === 'mine') {
    const wanted = new Set(targets.map((t) => t.netns));
    for (const [netns, e] of lbs) {
      const mine = e.stateDir || (e.port?.stateDir !== undefined && resolve(e.port.stateDir) === resolve(ctx.stateDir));
      if (!mine && !wanted.has(netns)) lbs.delete(netns);
    }
  }

  // Look closely (pidfile, /proc, config, certs) only at the targets; with none (garbage collection,
  // cleanup), at everything found, so that a single-key reconcile costs the same with 1 or 500 on the node.
  // A resync (node-wide) names every load balancer it wants looked at, so none may mean none.
  const close = targets.length === 0 && options.nodeWide !== true ? [...lbs.entries()] : targets.map((t) => [t.netns, entry(t.netns)] as const);
  await Promise.all(
    close.map(async ([netns, e]) => {
      const paths = lbPaths(ctx.stateDir, netns);
      const haproxy = await observeHaproxy(paths, netns);
      if (haproxy !== undefined) e.haproxy = haproxy;
      if (e.stateDir) {
        const [config, certFiles, reloadPending] = await Promise.all([
          readConfig(paths),
          observeCertFiles(paths),
          observeReloadPending(paths),
        ]);
        if (config !== undefined) e.config = config;
        if (certFiles.length > 0) e.certFiles = certFiles;
        if (reloadPending) e.reloadPending = true;
      }
      e.ifaceInHost = await hostHasLink(ifaceForNetns(netns));
    }),
  );
  // A load balancer that should have a HAProxy but whose pidfile says nothing: look for it by its config.
  const unknown = close.filter(([, e]) => e.haproxy === undefined && (e.netns !== undefined || e.stateDir));
  if (unknown.length > 0) {
    const byConfig = await findHaproxyByConfig(new Set(unknown.map(([netns]) => lbPaths(ctx.stateDir, netns).config)));
    await Promise.all(
      unknown.map(async ([netns, e]) => {
        const pid = byConfig.get(lbPaths(ctx.stateDir, netns).config);
        if (pid === undefined) return;
        const inNetns = (await observeHaproxyPid(pid, netns)) ?? false;
        e.haproxy = { pid, inNetns };
      }),
    );
  }
  // At most NETNS_READS_AT_ONCE `ip` processes at a time: after hundreds of load balancers were made, every
  // netns is to be read again once, and hundreds of processes at once only crowd each other (and memory).
  const reads = targets.filter((t) => existingNetns.has(t.netns));
  let pending = reads;
  if (options.nodeWide === true && reads.length > 1) {
    // A resync: the netns not known unchanged are read together, NETNS_READS_PER_BATCH per `ip -batch`
    // (after a bulk creation, every new netns is to be read once: a few processes, not hundreds).
    const looks = await Promise.all(reads.map(async (t) => ({ t, look: await netnsWatch.lookup(t.netns, t.iface) })));
    const misses = looks.filter(({ t, look }) => {
      if (look.hit === undefined) return true;
      entry(t.netns).netns = look.hit;
      return false;
    });
    pending = [];
    for (let i = 0; i < misses.length; i += NETNS_READS_PER_BATCH) {
      const chunk = misses.slice(i, i + NETNS_READS_PER_BATCH);
      try {
        const values = await observeNetnsMany(ctx.run, chunk.map(({ t }) => t), join(ctx.stateDir, OBSERVE_SCRIPT));
        chunk.forEach(({ t, look }, j) => {
          entry(t.netns).netns = values[j]!;
          netnsWatch.remember(look.ticket, values[j]!);
        });
      } catch {
        // A netns gone during the read, or an odd one: read this chunk one by one, each with its own error.
        pending.push(...chunk.map(({ t }) => t));
      }
    }
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(NETNS_READS_AT_ONCE, pending.length) }, async () => {
      while (next < pending.length) {
        const t = pending[next++]!;
        entry(t.netns).netns = await netnsWatch.observe(ctx.run, t.netns, t.iface);
      }
    }),
  );
  return { lbs, bridges: ovs.bridges };
}

/** Actions that change what a netns read sees (links, addresses, routes); HAProxy's own do not. */
const CHANGES_NETNS: ReadonlySet<Action['kind']> = new Set(['netns.add', 'netns.delete', 'link.moveToNetns', 'link.configure']);

export async function applyAction(ctx: NodeContext, a: Action): Promise<void> {
  // Whatever this changes inside a netns is read again next time, event or not. Not after a member change
  // through the runtime API or a reload: the next change to that load balancer would wait on an `ip` read.
  const dirties = 'netns' in a && CHANGES_NETNS.has(a.kind);
  if (dirties) netnsWatch.markDirty(a.netns);
  try {
    await applyOne(ctx, a);
  } finally {
    if (dirties) netnsWatch.markDirty(a.netns);
    if (a.kind.startsWith('ovs.') || a.kind === 'link.moveToNetns') ovsMonitor.invalidate();
  }
}

async function applyOne(ctx: NodeContext, a: Action): Promise<void> {
  const paths = 'netns' in a ? lbPaths(ctx.stateDir, a.netns) : undefined;
  switch (a.kind) {
    case 'netns.add':
      return batchers(ctx.run).addNetns.submit(a.netns);
    case 'netns.delete':
      return deleteNetns(ctx.run, a.netns);
    case 'ovs.addPort': {
      if (a.recreate) await deletePort(ctx.run, a.iface);
      const { namespace, name } = parseLbKey(a.lb);
      return batchers(ctx.run).addPort.submit({
        stateDir: resolve(ctx.stateDir),
        bridge: a.bridge,
        iface: a.iface,
        lb: a.lb,
        mac: a.mac,
        // No Neutron port here: the netns name is this port's stable, unique identity.
        ifaceId: nodeNames(namespace, name).netns,
        ...(a.vlan === undefined ? {} : { vlan: a.vlan }),
      });
    }
    case 'ovs.deletePort':
      return deletePort(ctx.run, a.iface);
    case 'link.moveToNetns':
      // The port was added with --no-wait: ovs-vswitchd makes its device when it gets to it, and it must be
      // done setting it up (an OpenFlow port number) before the device leaves the host.
      await ovsMonitor.waitForOfport(a.iface, DEVICE_WAIT_MS);
      await waitForHostLink(a.iface, DEVICE_WAIT_MS);
      if (a.replaceStale === true) return moveLinkToNetns(ctx.run, a.iface, a.netns, true);
      return batchers(ctx.run).moveLink.submit({ iface: a.iface, netns: a.netns });
    case 'link.configure':
      return batchers(ctx.run).configureLink.submit({ config: a, dir: paths!.dir });
    case 'haproxy.writeConfig':
      return writeCheckedConfig(ctx.run, paths!, a.config, a.certificates, a.unchecked === true ? { check: false } : {});
    case 'haproxy.runtime': {
      if (await applyRuntimeCommands(paths!, a.commands)) {
        // Live already; the file follows so that a restart or a later reload gives the same servers.
        await writeCheckedConfig(ctx.run, paths!, a.config, a.certificates, { reloadFollows: false });
        return markConfigLoaded(paths!);
      }
      engineCounters.runtimeFallbacks++;
      await writeCheckedConfig(ctx.run, paths!, a.config, a.certificates);
      return applyOne(ctx, { kind: 'haproxy.reload', netns: a.netns });
    }
    case 'haproxy.start':
      await startHaproxy(ctx.run, a.netns, paths!, () => batchers(ctx.run).startHaproxy.submit({ netns: a.netns, paths: paths! }));
      return markConfigLoaded(paths!);
    case 'haproxy.reload': {
      const pid = (await observeHaproxy(paths!, a.netns))?.pid ?? (await findHaproxyByConfig(new Set([paths!.config]))).get(paths!.config);
      if (pid === undefined) throw new Error(`haproxy in ${a.netns} is not running; cannot reload`);
      if (!(await reloadHaproxy(pid, paths!))) {
        // The reload failed and HAProxy no longer listens. A restart brings out HAProxy's own error (and its
        // hint) for the status, and the retries converge once the cause is gone.
        await stopHaproxy(pid, paths!.config);
        await startHaproxy(ctx.run, a.netns, paths!);
      }
      return markConfigLoaded(paths!);
    }
    case 'haproxy.stop':
      return stopHaproxy(a.pid, paths!.config);
    case 'stateDir.delete':
      return deleteStateDir(paths!);
  }
}

/** Records which load balancer owns a state dir, so that cleanup and GC can name it after a crash. */
function readFileIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export async function writeOwner(ctx: NodeContext, netns: string, lbKey: string): Promise<void> {
  const paths = lbPaths(ctx.stateDir, netns);
  const file = join(paths.dir, OWNER_FILE);
  // Every reconcile asks; only the first one (or one after a hand edit) writes.
  if (readFileIfPresent(file) === `${lbKey}\n`) return;
  await ensureStateDir(paths);
  await writeFile(file, `${lbKey}\n`, { mode: 0o600 });
}
