// Pure: which nodes are alive, from their Leases (`nslb-node-<node>`, DESIGN §6), judged as client-go's leader
// election judges a Lease: on the observer's own clock, never by comparing the holder's renewTime with it (the
// two clocks need not agree). A Lease is alive while the same record (holder, renewTime, duration) has been seen
// for less than its duration; a renewal is a new record, and starts the count again. Whoever starts watching
// (a new leader) therefore waits one duration before it calls a silent node dead.
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

export class Membership {
  readonly #seen = new Map<string, { record: string; at: number }>();

  /** The members now; forgets Leases that are gone (a deleted Lease is a node removed from the cluster). */
  observe(leases: readonly LeaseView[], now: number): Member[] {
    const members: Member[] = [];
    const names = new Set<string>();
    for (const l of leases) {
      if (!l.name.startsWith(NODE_LEASE_PREFIX)) continue;
      const node = l.name.slice(NODE_LEASE_PREFIX.length);
      names.add(l.name);
      const record = `${l.holderIdentity ?? ''}|${l.renewTime ?? ''}|${l.leaseDurationSeconds ?? ''}`;
      let seen = this.#seen.get(l.name);
      if (seen?.record !== record) {
        seen = { record, at: now };
        this.#seen.set(l.name, seen);
      }
      // Released (no holder) or without a duration: not alive.
      const held = (l.holderIdentity ?? '') !== '' && (l.leaseDurationSeconds ?? 0) > 0;
      const expiresAt = held ? seen.at + (l.leaseDurationSeconds ?? 0) * 1000 : seen.at;
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
