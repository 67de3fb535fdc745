// Event-driven observation of what is inside the load balancers' netns. One long-lived `ip -o monitor all-nsid
// link address route netconf` reports every link, address, route and forwarding change in every netns that has a
// netns id here, tagged `[nsid N]`. A netns whose last `ip -batch` read has seen no event since is
// known without asking again: a resync of 500 unchanged load balancers spawns no `ip` per load balancer.
//
// Safe by construction: the cache is only trusted while the monitor runs; a netns is dirty from the moment an
// event names it (or an nsid we cannot name yet appears) until it is read again; a read clears the mark
// before it starts, so a change during the read marks it again; our own changes mark it too; a netns deleted
// and re-made by hand has another inode, which the cache entry would not match.
import type { Runner, SpawnCounter, Watcher } from '../../exec/run.js';
import { runWatcher } from '../../exec/run.js';
import type { ObservedNetns } from '../../plan/observed.js';
import { netnsInode, observeNetns } from './netns.js';

interface CacheEntry {
  inode: number;
  iface: string;
  generation: number;
  value: ObservedNetns;
}

export interface NetnsWatcherLogger {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** One per node driver (drivers/node-driver.ts): the agent's starts its monitor; one-shot commands' never do. */
export class NetnsWatch {
  readonly #run: Runner;
  readonly #spawns: SpawnCounter | undefined;
  #watcher: Watcher | undefined;
  #running = false;
  #stopped = true;
  /** Bumped on every (re)start: entries of an earlier monitor's lifetime are not trusted. */
  #generation = 0;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #dirty = new Set<string>();
  readonly #nameOfId = new Map<number, string>();
  readonly #named = new Set<string>();
  /** Events from nsids not named yet: their netns are dirty once we learn the name. */
  readonly #unknownIds = new Set<number>();
  #log: NetnsWatcherLogger | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #onChange: ((netns: string) => void) | undefined;
  readonly #learnIds: (() => void) | undefined;

  /**
   * `learnIds`: asks for `setIds` soon, off the caller's path. Called when a netns that reports events under an
   * nsid we cannot name yet (one made since the last node-wide observation) had to be read: until it is named,
   * its reads are never cached, and each member change of a load balancer made since the last resync would
   * wait for an `ip` read.
   */
  constructor(run: Runner, spawns?: SpawnCounter, learnIds?: () => void) {
    this.#run = run;
    this.#spawns = spawns;
    this.#learnIds = learnIds;
  }

  get active(): boolean {
    return this.#running;
  }

  /** Starts the monitor (the agent only; one-shot commands read the netns every time). */
  start(log: NetnsWatcherLogger, onChange?: (netns: string) => void): void {
    this.#log = log;
    this.#onChange = onChange;
    this.#stopped = false;
    this.#spawn();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    this.#running = false;
    this.#watcher?.stop();
    this.#cache.clear();
  }

  #spawn(): void {
    this.#generation++;
    this.#cache.clear();
    let watcher: Watcher;
    try {
      watcher = runWatcher(['ip', '-o', 'monitor', 'all-nsid', 'link', 'address', 'route', 'netconf'], (line) => this.#event(line), this.#spawns);
    } catch (err) {
      this.#log?.warn({ err }, 'cannot start ip monitor; netns are read on every resync');
      this.#scheduleRestart();
      return;
    }
    this.#watcher = watcher;
    this.#running = true;
    void watcher.exited.then((code) => {
      if (this.#watcher !== watcher) return;
      this.#running = false;
      this.#generation++;
      this.#cache.clear();
      if (!this.#stopped) {
        this.#log?.warn({ code }, 'ip monitor exited; netns are read on every resync until it is back');
        this.#scheduleRestart();
      }
    });
  }

  #scheduleRestart(): void {
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      if (!this.#stopped) this.#spawn();
    }, 1_000);
    this.#restartTimer.unref();
  }

  #event(line: string): void {
    const m = /^\[nsid (\d+)\]/.exec(line);
    if (m === null) return; // the host namespace
    const id = Number(m[1]);
    const name = this.#nameOfId.get(id);
    if (name === undefined) {
      this.#unknownIds.add(id);
      return;
    }
    this.markDirty(name);
    this.#onChange?.(name);
  }

  /** Something changed (or may have) inside the netns: read it again next time. */
  markDirty(netns: string): void {
    this.#dirty.add(netns);
    this.#cache.delete(netns);
  }

  /**
   * The nsids `ip -j netns list` reported (called by the observer once per node-wide observation). Netns
   * without one get none from us here; `ensureIds` gives them one.
   */
  setIds(list: readonly { name: string; id?: number }[]): void {
    this.#nameOfId.clear();
    this.#named.clear();
    for (const { name, id } of list) {
      if (id === undefined) continue;
      this.#nameOfId.set(id, name);
      this.#named.add(name);
      if (this.#unknownIds.delete(id)) this.markDirty(name);
    }
    // An nsid nobody has now belonged to a netns that is gone.
    this.#unknownIds.clear();
  }

  /** Reads the netns unless an unchanged read is cached. */
  async observe(netns: string, iface: string): Promise<ObservedNetns> {
    const look = this.lookup(netns, iface);
    if (look.hit !== undefined) return look.hit;
    const value = await observeNetns(this.#run, netns, iface);
    this.remember(look.ticket, value);
    if (this.#running && !this.#named.has(netns) && this.#unknownIds.size > 0) this.#learnIds?.();
    return value;
  }

  /**
   * The cached read of the netns, if it still stands; otherwise a ticket for `remember` once it has been
   * read (the netns is no longer marked dirty from here: a change during the read marks it again).
   */
  lookup(netns: string, iface: string): { hit?: ObservedNetns; ticket: ReadTicket } {
    const inode = netnsInode(netns);
    const hit = this.#cache.get(netns);
    const ticket: ReadTicket = { netns, iface, inode, generation: this.#generation };
    if (this.#running && hit !== undefined && hit.generation === this.#generation && hit.inode === inode && hit.iface === iface && !this.#dirty.has(netns)) {
      return { hit: structuredClone(hit.value), ticket };
    }
    this.#dirty.delete(netns);
    return { ticket };
  }

  /** Keeps a read made after `lookup`, unless the netns changed (or the monitor restarted) meanwhile. */
  remember(ticket: ReadTicket, value: ObservedNetns): void {
    const { netns, iface, inode, generation } = ticket;
    // Only a netns with an nsid reports its events; only then may the read stand in for later ones.
    const named = this.#named.has(netns);
    if (this.#running && named && inode !== undefined && generation === this.#generation && !this.#dirty.has(netns)) {
      this.#cache.set(netns, { inode, iface, generation, value: structuredClone(value) });
    }
  }
}

export interface ReadTicket {
  netns: string;
  iface: string;
  inode: number | undefined;
  generation: number;
}
