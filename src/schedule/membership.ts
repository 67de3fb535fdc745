// Pure: which nodes are alive, from their Leases (`nslb-node-<node>`, DESIGN §6), judged as client-go's leader
// election judges a Lease: on the observer's own clock, never by comparing the holder's renewTime with it (the
// two clocks need not agree). A Lease is alive while the same record (holder, renewTime, duration) has been seen
// for less than its duration; a renewal is a new record, and starts the count again. Whoever starts watching
// (a new leader) therefore waits one duration before it calls a silent node dead. After a fresh read of a Lease
// (the Scheduler confirms a death so), the cache lags behind it: what it shows until it catches up is not a renewal,
// and neither is a record seen before.
import { NODE_LEASE_PREFIX } from '../api/v1alpha1/crds.js';

export interface LeaseView {
  name: string;
  holderIdentity?: string;
  renewTime?: string;
  leaseDurationSeconds?: number;
}

export interface Member {
  node: string;
  alive: boolean;
  /** When (observer's clock, ms) it expires, or expired. */
  expiresAt: number;
}

interface Seen {
  /** The newest record seen, the Lease it came from, and when (observer's clock) it was first seen. */
  record: string;
  lease: LeaseView;
  at: number;
  /**
   * After a fresh read: the cache lags behind it until it shows the record read (or until one duration has passed,
   * in case it never does). Meanwhile what it shows is older, not a renewal.
   */
  catchUp?: { record: string; until: number };
  /** The records before it, newest first: seen again (a lagging cache), they are not renewals. */
  earlier: string[];
}

/** How many earlier records of a Lease are remembered. */
const HISTORY = 8;

const recordOf = (l: LeaseView): string => `${l.holderIdentity ?? ''}|${l.renewTime ?? ''}|${l.leaseDurationSeconds ?? ''}`;

export class Membership {
  readonly #seen = new Map<string, Seen>();

  /**
   * One Lease as read just now from the API server (not from the cache): a renewal the cache has not shown yet
   * counts from now, and what the cache shows until it has caught up does not count.
   */
  saw(lease: LeaseView, now: number): void {
    if (!lease.name.startsWith(NODE_LEASE_PREFIX)) return;
    const seen = this.#see(lease, now);
    seen.catchUp = { record: seen.record, until: now + (lease.leaseDurationSeconds ?? 0) * 1000 };
  }

  #see(l: LeaseView, now: number, fromCache = false): Seen {
    const record = recordOf(l);
    const seen = this.#seen.get(l.name);
    if (seen === undefined) {
      const fresh = { record, lease: l, at: now, earlier: [] };
      this.#seen.set(l.name, fresh);
      return fresh;
    }
    if (fromCache && seen.catchUp !== undefined) {
      if (record !== seen.catchUp.record && now < seen.catchUp.until) return seen;
      delete seen.catchUp;
    }
    if (seen.record !== record && !seen.earlier.includes(record)) {
      seen.earlier = [seen.record, ...seen.earlier].slice(0, HISTORY);
      seen.record = record;
      seen.lease = l;
      seen.at = now;
    }
    return seen;
  }

  /** The members now; forgets Leases that are gone (a deleted Lease is a node removed from the cluster). */
  observe(leases: readonly LeaseView[], now: number): Member[] {
    const members: Member[] = [];
    const names = new Set<string>();
    for (const l of leases) {
      if (!l.name.startsWith(NODE_LEASE_PREFIX)) continue;
      const node = l.name.slice(NODE_LEASE_PREFIX.length);
      names.add(l.name);
      // Judged by the newest record seen, which may be newer than the cache's.
      const { lease, at } = this.#see(l, now, true);
      // Released (no holder) or without a duration: not alive.
      const held = (lease.holderIdentity ?? '') !== '' && (lease.leaseDurationSeconds ?? 0) > 0;
      const expiresAt = held ? at + (lease.leaseDurationSeconds ?? 0) * 1000 : at;
      members.push({ node, alive: held && now < expiresAt, expiresAt });
    }
    for (const name of this.#seen.keys()) if (!names.has(name)) this.#seen.delete(name);
    return members.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  /** The next moment a member's liveness changes by time alone (a timer wakes the scheduler then). */
  static nextExpiry(members: readonly Member[], now: number): number | undefined {
    const next = members.filter((m) => m.alive && m.expiresAt > now).map((m) => m.expiresAt);
    return next.length === 0 ? undefined : Math.min(...next);
  }
}
