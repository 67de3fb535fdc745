// The load balancers' network namespaces and the VIP link inside them, as one object of the node driver: it holds
// the `ip monitor` watch (watch.ts) and merges the work of load balancers reconciled at once into `ip -batch`
// processes (exec/batcher.ts). The argv builders and parsers are in netns.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { isNslbNetnsName } from '../../desired/names.js';
import { lbPaths, observeScriptPath } from '../../desired/state-dir.js';
import { Batcher, PartialBatchError } from '../../exec/batcher.js';
import { Coalescer } from '../../loop/coalescer.js';
import type { Runner, SpawnCounter } from '../../exec/run.js';
import { waitUntil } from '../../loop/wait.js';
import type { Action } from '../../plan/actions.js';
import type { ObserveTarget } from '../../plan/node-driver.js';
import type { ObservedNetns } from '../../plan/observed.js';
import {
  announceInNetns,
  assignNetnsIds,
  announceArgv,
  configureLink,
  deleteNetns,
  deleteNetnsMany,
  ensureNetns,
  ensureNetnsMany,
  execInNetnsBatch,
  hostHasLink,
  moveLinkToNetns,
  moveLinksToNetns,
  NETNS_BATCH_SIZE,
  observeNetnsIds,
  observeNetnsMany,
  observeNetnsNames,
  renderLinkBatch,
  type LinkConfig,
} from './netns.js';
import { NetnsWatch } from './watch.js';

export type NetnsAction = Extract<Action, { kind: `netns.${string}` | `link.${string}` }>;

/** How long a device added with --no-wait may take to appear in the host. */
export const DEVICE_WAIT_MS = 15_000;
/** At most this many `ip` reads at a time, after a batched read failed. */
const NETNS_READS_AT_ONCE = 8;
/** Netns read together by one `ip -batch` in a resync. */
const NETNS_READS_PER_BATCH = 64;

export class NetnsDriver {
  readonly watch: NetnsWatch;
  readonly #run: Runner;
  readonly #stateDir: string;
  readonly #add: Batcher<string>;
  readonly #announce: Batcher<string>;
  /** Netns added by this agent whose announcements are being switched on: whether that went through. */
  readonly #announcing = new Map<string, Promise<boolean>>();
  readonly #delete: Batcher<string>;
  readonly #move: Batcher<{ iface: string; netns: string }>;
  readonly #configure: Batcher<{ config: LinkConfig; dir: string; script: string }>;
  /** `ip -j netns list` for the watch, between node-wide observations (which read it anyway). */
  readonly #ids: Coalescer<void>;

  constructor(run: Runner, stateDir: string, spawns?: SpawnCounter) {
    this.#run = run;
    this.#stateDir = stateDir;
    this.#ids = new Coalescer(async () => this.watch.setIds(await observeNetnsIds(run)));
    // Not awaited by anyone: a failed listing leaves the netns unnamed until the next resync names it.
    this.watch = new NetnsWatch(run, spawns, () => void this.#ids.run().catch(() => undefined));
    this.#add = new Batcher(
      (names) => ensureNetnsMany(run, names),
      (n) => ensureNetns(run, n),
    );
    this.#announce = new Batcher(
      (names) => announceInNetns(run, names),
      (n) => announceInNetns(run, [n]),
      { maxBatch: NETNS_BATCH_SIZE },
    );
    this.#delete = new Batcher(
      (names) => deleteNetnsMany(run, names),
      (n) => deleteNetns(run, n),
      { serial: true },
    );
    this.#move = new Batcher(
      (moves) => moveLinksToNetns(run, moves),
      async (m) => {
        // After a failed batch, the moves that went through have no device in the host any more.
        if (!hostHasLink(m.iface)) return;
        await moveLinkToNetns(run, m.iface, m.netns);
      },
    );
    // Configuring links happens inside each netns: one `ip -batch` of `netns exec` lines for the load balancers
    // that get there together, instead of one process from the agent each.
    this.#configure = new Batcher(
      async (items) => {
        for (const { config, dir, script } of items) {
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          writeFileSync(script, renderLinkBatch(config), { mode: 0o600 });
        }
        const perItem = items.map(({ config, script }) => [
          ...(config.netnsAnnounces === true ? [] : [{ netns: config.netns, argv: announceArgv(config.iface) }]),
          { netns: config.netns, argv: ['ip', '-batch', script] },
        ]);
        try {
          await execInNetnsBatch(run, perItem.flat());
        } catch (err) {
          // ip counts commands, the batcher items: an item is done once all of its commands are.
          if (!(err instanceof PartialBatchError)) throw err;
          let commands = err.done;
          let done = 0;
          while (done < perItem.length && commands >= perItem[done]!.length) commands -= perItem[done++]!.length;
          throw new PartialBatchError(done, err.message, { cause: err });
        }
      },
      ({ config, script }) => configureLink(run, config, script),
      { maxBatch: NETNS_BATCH_SIZE },
    );
  }

  /**
   * Every named netns on the node. Node-wide with the monitor running, `ip -j netns list` also names the netns
   * ids the monitor's events carry, and nslb's netns without one get one.
   */
  async names(nodeWide: boolean): Promise<string[]> {
    if (!nodeWide || !this.watch.active) return observeNetnsNames();
    const list = await observeNetnsIds(this.#run);
    this.watch.setIds(list);
    await assignNetnsIds(
      this.#run,
      list.filter((e) => e.id === undefined && isNslbNetnsName(e.name)).map((e) => e.name),
    ).catch(() => undefined);
    return list.map((e) => e.name);
  }

  /**
   * What is inside each target's netns (links, addresses, routes). A resync reads the netns not known unchanged
   * together, NETNS_READS_PER_BATCH per `ip -batch` (after a bulk creation, every new netns is to be read once: a
   * few processes, not hundreds); otherwise, or when such a batch fails, at most NETNS_READS_AT_ONCE `ip` at a
   * time: hundreds of processes at once only crowd each other (and memory).
   */
  async read(targets: readonly ObserveTarget[], nodeWide: boolean): Promise<Map<string, ObservedNetns>> {
    const found = new Map<string, ObservedNetns>();
    let pending: readonly ObserveTarget[] = targets;
    if (nodeWide && targets.length > 1) {
      const misses = targets
        .map((t) => ({ t, look: this.watch.lookup(t.netns, t.iface) }))
        .filter(({ t, look }) => {
          if (look.hit === undefined) return true;
          found.set(t.netns, look.hit);
          return false;
        });
      const retry: ObserveTarget[] = [];
      pending = retry;
      for (let i = 0; i < misses.length; i += NETNS_READS_PER_BATCH) {
        const chunk = misses.slice(i, i + NETNS_READS_PER_BATCH);
        try {
          const values = await observeNetnsMany(
            this.#run,
            chunk.map(({ t }) => t),
            observeScriptPath(this.#stateDir),
          );
          chunk.forEach(({ t, look }, j) => {
            found.set(t.netns, values[j]!);
            this.watch.remember(look.ticket, values[j]!);
          });
        } catch {
          // A netns gone during the read, or an odd one: read this chunk one by one, each with its own error.
          retry.push(...chunk.map(({ t }) => t));
        }
      }
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(NETNS_READS_AT_ONCE, pending.length) }, async () => {
        while (next < pending.length) {
          const t = pending[next++]!;
          found.set(t.netns, await this.watch.observe(t.netns, t.iface));
        }
      }),
    );
    return found;
  }

  async apply(a: NetnsAction): Promise<void> {
    switch (a.kind) {
      case 'netns.add':
        await this.#add.submit(a.netns);
        // Not awaited here: it runs beside the VIP port's move into the netns (tens of milliseconds in the
        // kernel), and the link's configure waits for it. Run even when the netns was there already.
        this.#announcing.set(
          a.netns,
          this.#announce.submit(a.netns).then(
            () => true,
            () => false,
          ),
        );
        return;
      case 'netns.delete':
        this.#announcing.delete(a.netns);
        return this.#delete.submit(a.netns);
      case 'link.moveToNetns':
        // Until the device is in the host namespace (or the time is up: the move then says what is wrong).
        await waitUntil(() => hostHasLink(a.iface), { intervalMs: 10, timeoutMs: DEVICE_WAIT_MS });
        if (a.replaceStale === true) return moveLinkToNetns(this.#run, a.iface, a.netns, true);
        return this.#move.submit({ iface: a.iface, netns: a.netns });
      case 'link.configure': {
        if (a.netnsAnnounces === true) {
          const announced = this.#announcing.get(a.netns);
          this.#announcing.delete(a.netns);
          // Not switched on (failed, or the netns was added by an agent that is gone): the link's own switches.
          if (announced === undefined || !(await announced)) {
            const { netnsAnnounces: _, ...own } = a;
            return this.apply(own);
          }
        }
        // A probe waits about a second for an answer (arping counts whole seconds): on its own, beside the
        // batches, so that the load balancers configured with it wait for nothing.
        if (a.probe !== undefined && a.probe.length > 0) return configureLink(this.#run, a);
        const paths = lbPaths(this.#stateDir, a.netns);
        return this.#configure.submit({ config: a, dir: paths.dir, script: paths.linkScript });
      }
    }
  }
}
