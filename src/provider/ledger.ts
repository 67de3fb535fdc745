// The record of which address each Service holds: the `status.allocations` of each AddressPool, written with
// the API server's optimistic concurrency. Every change is a read-modify-write guarded by resourceVersion: a
// 409 Conflict means someone (another provider during a leader handover, a user) wrote the pool since we
// read it, so we read it again and decide again. That, and one writer per pool in this process, is why an
// address is never given twice, also across restarts: nothing is decided from memory.
//
// Changes to one pool that arrive while a write is in flight are merged into the next write, so 200 Services
// created at once cost a handful of writes, not 200.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { AddressPoolStatus, PoolAllocation } from '../api/v1alpha1/addresspool.js';
import { ADDRESS_POOL_PLURAL } from '../api/v1alpha1/addresspool.js';
import { GROUP, VERSION } from '../api/v1alpha1/crds.js';
import { statusCode } from '../kube/errors.js';
import { allocateInPool, releaseInPool, type AllocationRequest, type AllocationResult, type ParsedPool } from './ipam.js';

export interface RawPool {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; resourceVersion?: string; generation?: number; uid?: string };
  spec?: unknown;
  status?: AddressPoolStatus;
}

export interface LedgerOptions {
  kubeConfig: KubeConfig;
  /** The pool as the informer has it (may lag behind our own writes). */
  cached: (name: string) => RawPool | undefined;
  /** Addresses taken outside `pool` (other pools' records, VIPs of LoadBalancers not of this Service). */
  takenElsewhere: (pool: string, serviceUid: string) => ReadonlyMap<string, string>;
  /** Called between the decision and the write: a crash point (NSLB_CRASH_AT) in tests. */
  beforeWrite?: () => void;
  now?: () => string;
}

type Op =
  | { kind: 'allocate'; req: AllocationRequest; pool: ParsedPool; resolve: (r: AllocationResult) => void; reject: (e: unknown) => void }
  | { kind: 'release'; serviceUid: string; keep: string[]; resolve: (r: undefined) => void; reject: (e: unknown) => void };

const MAX_ATTEMPTS = 8;

export class AddressLedger {
  readonly #opts: LedgerOptions;
  readonly #api: CustomObjectsApi;
  /** The pool as our last write returned it, until the informer shows that version (or a later one). */
  readonly #written = new Map<string, { pool: RawPool; at: number }>();
  readonly #pending = new Map<string, Op[]>();
  readonly #flushing = new Set<string>();
  /** Writes made and 409s met, for tests and logs. */
  readonly counts = { writes: 0, conflicts: 0 };

  constructor(opts: LedgerOptions) {
    this.#opts = opts;
    this.#api = opts.kubeConfig.makeApiClient(CustomObjectsApi);
  }

  /** The newest copy we know of: our own last write until the informer has caught up with it. */
  view(name: string): RawPool | undefined {
    const cached = this.#opts.cached(name);
    const mine = this.#written.get(name);
    if (mine === undefined) return cached;
    const caughtUp = cached?.metadata?.resourceVersion === mine.pool.metadata?.resourceVersion;
    if (caughtUp || Date.now() - mine.at > 10_000) {
      this.#written.delete(name);
      return cached;
    }
    return mine.pool;
  }

  allocations(name: string): PoolAllocation[] {
    return this.view(name)?.status?.allocations ?? [];
  }

  allocate(pool: ParsedPool, req: AllocationRequest): Promise<AllocationResult> {
    return new Promise((resolve, reject) => this.#enqueue(pool.name, { kind: 'allocate', req, pool, resolve, reject }));
  }

  /** Give back every address the Service holds in the pool, except `keep`. */
  release(pool: string, serviceUid: string, keep: string[] = []): Promise<void> {
    return new Promise((resolve, reject) => this.#enqueue(pool, { kind: 'release', serviceUid, keep, resolve: () => resolve(), reject }));
  }

  #enqueue(pool: string, op: Op): void {
    const ops = this.#pending.get(pool) ?? [];
    ops.push(op);
    this.#pending.set(pool, ops);
    if (!this.#flushing.has(pool)) void this.#flush(pool);
  }

  async #flush(name: string): Promise<void> {
    this.#flushing.add(name);
    try {
      for (;;) {
        const ops = this.#pending.get(name) ?? [];
        this.#pending.delete(name);
        if (ops.length === 0) return;
        try {
          const results = await this.#write(name, ops);
          for (const [i, op] of ops.entries()) {
            if (op.kind === 'allocate') op.resolve(results[i] as AllocationResult);
            else op.resolve(undefined);
          }
        } catch (err) {
          for (const op of ops) op.reject(err);
        }
      }
    } finally {
      this.#flushing.delete(name);
    }
  }

  /** Decide every op against the pool's latest record and write the result; on 409 read again and redo. */
  async #write(name: string, ops: Op[]): Promise<(AllocationResult | undefined)[]> {
    let base = this.view(name);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (base === undefined) throw new Error(`AddressPool ${name} does not exist`);
      const now = this.#opts.now?.() ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      let allocations = base.status?.allocations ?? [];
      const results: (AllocationResult | undefined)[] = [];
      for (const op of ops) {
        if (op.kind === 'allocate') {
          const r = allocateInPool(op.pool, allocations, this.#opts.takenElsewhere(name, op.req.serviceUid), op.req, now);
          allocations = r.allocations;
          results.push(r.result);
        } else {
          allocations = releaseInPool(allocations, op.serviceUid, op.keep);
          results.push(undefined);
        }
      }
      const before = base.status?.allocations ?? [];
      if (sameAllocations(before, allocations)) return results;
      this.#opts.beforeWrite?.();
      const body: RawPool = { ...base, status: { ...base.status, allocations, assigned: allocations.length } };
      try {
        const written = (await this.#api.replaceClusterCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          plural: ADDRESS_POOL_PLURAL,
          name,
          body,
        })) as RawPool;
        this.counts.writes++;
        this.#written.set(name, { pool: written, at: Date.now() });
        return results;
      } catch (err) {
        if (statusCode(err) !== 409) throw err;
        this.counts.conflicts++;
        base = (await this.#api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: ADDRESS_POOL_PLURAL, name })) as RawPool;
        this.#written.set(name, { pool: base, at: Date.now() });
      }
    }
    throw new Error(`AddressPool ${name}: conflicts kept happening (${MAX_ATTEMPTS} attempts); will retry`);
  }
}

function sameAllocations(a: readonly PoolAllocation[], b: readonly PoolAllocation[]): boolean {
  return a.length === b.length && a.every((x, i) => x.address === b[i]?.address && x.serviceUid === b[i]?.serviceUid);
}

export function isNotFound(err: unknown): boolean {
  return statusCode(err) === 404;
}
