// Kubernetes mode's status sink (DESIGN §7): every object's status goes to its status subresource as a merge
// patch, written in parallel under the client-side rate limit, newest first-come: a status waiting to be
// written is replaced by a newer one for the same object (one write, of the newest), and nothing is written
// when the API server already holds it. Writing never blocks the engine: write() queues and returns.
//
// Failures: a 409 is retried for that object alone, after a short backoff; 429, 5xx and an unreachable
// server pause every write with one shared backoff (Retry-After honoured), logged once when it starts and once
// when it ends, and whatever waits meanwhile is kept: the newest status of each object is written when the
// server answers again. A status the server refuses (422) waits until the status changes.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION, pluralOf } from '../api/v1alpha1/crds.js';
import { describeApiError, statusCode } from '../kube/errors.js';
import { canonicalJson } from '../kube/json.js';
import type { Condition, Kind, ObjectStatus } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import type { RequestLimiter } from './api-rate-limit.js';
import type { StatusFile } from './status-file.js';

/** The informers' view of an object: what the API server held when it last told us. */
export interface CachedObject {
  metadata?: { resourceVersion?: string; uid?: string };
  status?: unknown;
}

export interface ServerView {
  cached(kind: Kind, namespace: string, name: string): CachedObject | undefined;
}

/** An object the API server holds that the schema refuses: its status says why. */
export interface InvalidObjectStatus {
  kind: Kind;
  namespace: string;
  name: string;
  message: string;
}

export type StatusWriteResult = 'ok' | 'conflict' | 'throttled' | 'unavailable' | 'not_found' | 'invalid' | 'error';

/**
 * The status to write, with each condition's lastTransitionTime taken from the server's copy when the condition
 * has not flipped: an agent that restarts (and so has no memory of when a condition last flipped) must not
 * rewrite every object just to move a timestamp.
 */
export function keepTransitionTimes(status: ObjectStatus, server: unknown): ObjectStatus {
  const held = (server as { conditions?: unknown } | undefined)?.conditions;
  if (!Array.isArray(held)) return status;
  let changed = false;
  const conditions = status.conditions.map((c): Condition => {
    const before = held.find((h: Partial<Condition> | null) => h?.type === c.type) as Partial<Condition> | undefined;
    if (before?.status !== c.status || typeof before.lastTransitionTime !== 'string' || before.lastTransitionTime === c.lastTransitionTime) return c;
    changed = true;
    return { ...c, lastTransitionTime: before.lastTransitionTime };
  });
  return changed ? { ...status, conditions } : status;
}

/**
 * What the scheduler writes in a LoadBalancer's status (status.placement, DESIGN §6) is not the agent's: its
 * writes neither compare nor null it, so that the two never undo each other.
 */
export function withoutScheduled(status: object): Record<string, unknown> {
  if (!('placement' in status)) return status as Record<string, unknown>;
  const { placement: _, ...rest } = status as Record<string, unknown>;
  return rest;
}

/**
 * The RFC 7386 merge patch that turns `from` into `to`: `to` itself, plus null for every key `from` has and
 * `to` has not (arrays are replaced whole, as merge patches do).
 */
export function mergePatch(from: unknown, to: Record<string, unknown>): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...to };
  if (from !== null && typeof from === 'object' && !Array.isArray(from)) {
    for (const [k, v] of Object.entries(from)) {
      if (!(k in to) || to[k] === undefined) patch[k] = null;
      else if (v !== null && typeof v === 'object' && !Array.isArray(v) && to[k] !== null && typeof to[k] === 'object' && !Array.isArray(to[k])) {
        patch[k] = mergePatch(v, to[k] as Record<string, unknown>);
      }
    }
  }
  return patch;
}

export function invalidObjectStatus(o: InvalidObjectStatus, previous: unknown, now: string): ObjectStatus {
  const status: ObjectStatus = {
    provisioningStatus: 'ERROR',
    operatingStatus: 'ERROR',
    conditions: [{ type: 'Ready', status: 'False', reason: 'InvalidSpec', message: o.message, lastTransitionTime: now }],
  };
  return keepTransitionTimes(status, previous);
}

interface Pending {
  kind: Kind;
  namespace: string;
  name: string;
  status: ObjectStatus;
  canonical: string;
  /** When the server last stopped holding this object's newest status (for the age metric). */
  since: number;
  attempts: number;
  notBefore: number;
}

function isPending(p: Pending): boolean {
  return p.status.provisioningStatus.startsWith('PENDING_');
}

/** Whether resourceVersion `a` is later than `b`; both are etcd revisions in practice, opaque strings in theory. */
function later(a: string | undefined, b: string | undefined): boolean | undefined {
  if (a === undefined || b === undefined || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return undefined;
  return BigInt(a) > BigInt(b);
}

function retryAfterMs(err: unknown): number | undefined {
  const headers = (err as { headers?: Record<string, string> }).headers;
  const v = headers?.['retry-after'] ?? headers?.['Retry-After'];
  const s = v === undefined ? NaN : Number(v);
  return Number.isFinite(s) && s >= 0 ? s * 1000 : undefined;
}

/**
 * A PENDING_* status waits at least this long before it is written: most are replaced by ACTIVE (or ERROR)
 * sooner (a load balancer converges in well under a second), and then only that is written. One that lasts
 * longer is written: the user sees the work in progress. With many waiting, the wait is as long as writing
 * all their final statuses will take at the rate limit: progress reports must not delay readiness.
 */
export const PENDING_HOLD_MS = 1_000;
/** A PENDING status is written only while this share of the burst is spare. */
const SPARE_FOR_PENDING = 0.5;
const CAPACITY_RECHECK_MS = 200;
const PAUSE_MIN_MS = 200;
const PAUSE_MAX_MS = 10_000;
const CONFLICT_MAX_MS = 5_000;
const REFUSED_MAX_MS = 300_000;

export interface StatusWriterOptions {
  limiter: RequestLimiter;
  logger: Logger;
  /** At most this many writes in flight (default: the limiter's burst). */
  maxInFlight?: number;
}

export class KubernetesStatusWriter {
  readonly #api: CustomObjectsApi;
  readonly #view: ServerView;
  readonly #logger: Logger;
  readonly #limiter: RequestLimiter;
  readonly #fixedMaxInFlight: number | undefined;
  /** Objects whose newest status the server does not hold yet, oldest first. */
  readonly #pending = new Map<string, Pending>();
  /** Objects being written now, with the canonical status on its way. */
  readonly #inFlight = new Map<string, string>();
  /** What our last successful write of each object left on the server. */
  readonly #written = new Map<string, { status: ObjectStatus; canonical: string; resourceVersion: string | undefined }>();
  readonly #counts = new Map<string, number>();
  readonly #canonicalOfCached = new WeakMap<object, string>();
  readonly #refusedLogged = new Set<string>();
  #dispatching = false;
  #timer: NodeJS.Timeout | undefined;
  #heldForCapacity = false;
  #pausedUntil = 0;
  #pauseMs = 0;
  /** Moves with every backoff step: the failures of writes sent together count as one step, not one each. */
  #wave = 0;
  /** Set while the server fails: what it said first, to log once. */
  #outage: { since: number; failures: number } | undefined;
  #idleWaiters: (() => void)[] = [];
  #stopped = false;

  constructor(kubeConfig: KubeConfig, view: ServerView, options: StatusWriterOptions) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#view = view;
    this.#logger = options.logger;
    this.#limiter = options.limiter;
    this.#fixedMaxInFlight = options.maxInFlight;
  }

  /**
   * The newest status of every object (and of every object the schema refuses): queues those the server does
   * not hold, drops what waits for objects that are gone. Returns at once.
   */
  write(file: StatusFile, invalid: readonly InvalidObjectStatus[] = []): void {
    const now = Date.now();
    const seen = new Set<string>();
    const wanted: { kind: Kind; namespace: string; name: string; status: ObjectStatus | undefined; invalid?: InvalidObjectStatus }[] = [
      ...file.objects.map((o) => ({ kind: o.kind as Kind, namespace: o.namespace, name: o.name, status: o.status })),
      ...invalid.map((o) => ({ kind: o.kind, namespace: o.namespace, name: o.name, status: undefined, invalid: o })),
    ];
    for (const w of wanted) {
      const id = `${w.kind}/${w.namespace}/${w.name}`;
      seen.add(id);
      const cached = this.#view.cached(w.kind, w.namespace, w.name);
      if (cached === undefined) {
        // Gone, or not seen by the informer yet: the next publish after it is seen brings it.
        this.#pending.delete(id);
        continue;
      }
      const status =
        w.invalid === undefined ? keepTransitionTimes(w.status!, cached.status) : invalidObjectStatus(w.invalid, cached.status, new Date(now).toISOString());
      const canonical = canonicalJson(status);
      const queued = this.#pending.get(id);
      if (queued?.canonical === canonical) continue;
      if (this.#serverHolds(id, cached, canonical) || (this.#inFlight.get(id) === canonical && queued === undefined)) {
        this.#pending.delete(id);
        continue;
      }
      const since = queued?.since ?? now;
      if (queued !== undefined) {
        // Same place in the queue, newest status: an intermediate state nobody will see is never written.
        queued.status = status;
        queued.canonical = canonical;
        queued.attempts = 0;
        queued.notBefore = 0;
      } else {
        this.#pending.set(id, { kind: w.kind, namespace: w.namespace, name: w.name, status, canonical, since, attempts: 0, notBefore: 0 });
      }
    }
    for (const id of this.#pending.keys()) if (!seen.has(id)) this.#pending.delete(id);
    for (const id of this.#written.keys()) if (!seen.has(id)) this.#written.delete(id);
    this.#dispatch();
    this.#checkIdle();
  }

  /** Statuses waiting to be written (including those on their way), and how long the oldest has waited. */
  queue(now = Date.now()): { depth: number; oldestSeconds: number } {
    let oldest = now;
    for (const p of this.#pending.values()) oldest = Math.min(oldest, p.since);
    return { depth: this.#pending.size, oldestSeconds: (now - oldest) / 1000 };
  }

  /** Writes made so far, by kind and result. */
  writes(): [{ kind: string; result: StatusWriteResult }, number][] {
    return [...this.#counts].map(([k, n]) => {
      const [kind = '', result = 'ok'] = k.split('|');
      return [{ kind, result: result as StatusWriteResult }, n];
    });
  }

  /** Resolves when nothing waits and nothing is in flight (tests; the agent's stop). */
  async idle(): Promise<void> {
    if (this.#pending.size === 0 && this.#inFlight.size === 0) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Waits up to `timeoutMs` for what is queued to be written, then writes nothing more. */
  async stop(timeoutMs = 3_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#pending.size > 0)
      this.#logger.warn({ unwritten: this.#pending.size }, 'stopping with statuses not written to the API server; the next agent writes them');
  }

  #serverHolds(id: string, cached: CachedObject, canonical: string): boolean {
    if (this.#canonicalOf(cached) === canonical) return true;
    const w = this.#written.get(id);
    // The informer may not have seen our last write yet: trust the write unless the server's copy is newer.
    return w !== undefined && w.canonical === canonical && later(cached.metadata?.resourceVersion, w.resourceVersion) !== true;
  }

  #canonicalOf(cached: CachedObject): string {
    if (cached.status === undefined || cached.status === null || typeof cached.status !== 'object') return canonicalJson(cached.status ?? null);
    let c = this.#canonicalOfCached.get(cached.status);
    if (c === undefined) {
      c = canonicalJson(withoutScheduled(cached.status));
      this.#canonicalOfCached.set(cached.status, c);
    }
    return c;
  }

  /** How long a PENDING status waits (PENDING_HOLD_MS, or the time the waiting ones' final writes will take). */
  #pendingHold(): number {
    let n = 0;
    for (const p of this.#pending.values()) if (isPending(p)) n++;
    return Math.max(PENDING_HOLD_MS, (1000 * n) / this.#limiter.limit.qps);
  }

  get #maxInFlight(): number {
    return this.#fixedMaxInFlight ?? this.#limiter.limit.burst;
  }

  /**
   * The next write: the oldest status that ends a wait (ACTIVE, ERROR: what `kubectl wait` and GitOps tools
   * look for); a PENDING one only while at least half the burst is spare. During a bulk apply the rate limit
   * goes to Ready statuses, not to progress reports that the next second replaces.
   */
  #next(now: number): [string, Pending] | undefined {
    if (now < this.#pausedUntil) return undefined;
    let pending: [string, Pending] | undefined;
    const hold = this.#pendingHold();
    for (const entry of this.#pending) {
      if (this.#inFlight.has(entry[0]) || entry[1].notBefore > now) continue;
      if (!isPending(entry[1])) return entry;
      if (entry[1].since + hold <= now) pending ??= entry;
    }
    if (pending !== undefined && (this.#limiter.spare?.() ?? 1) < SPARE_FOR_PENDING) {
      this.#heldForCapacity = true;
      return undefined;
    }
    return pending;
  }

  #dispatch(): void {
    if (this.#dispatching || this.#stopped) return;
    this.#dispatching = true;
    void (async () => {
      try {
        while (!this.#stopped && this.#inFlight.size < this.#maxInFlight && this.#next(Date.now()) !== undefined) {
          await this.#limiter.take();
          // Chosen after the wait: what waits may have been written, replaced or dropped meanwhile.
          const next = this.#next(Date.now());
          if (next === undefined || this.#stopped) break;
          void this.#send(next[0], next[1]);
        }
      } finally {
        this.#dispatching = false;
        this.#wakeLater();
      }
    })();
  }

  /** A timer for the first write that waits on a backoff, when nothing else will start the dispatcher. */
  #wakeLater(): void {
    clearTimeout(this.#timer);
    if (this.#stopped || this.#pending.size === 0 || this.#inFlight.size >= this.#maxInFlight) return;
    const now = Date.now();
    // A PENDING status held back for capacity: look again once some has come back.
    let at = this.#heldForCapacity ? now + CAPACITY_RECHECK_MS : Infinity;
    this.#heldForCapacity = false;
    const hold = this.#pendingHold();
    for (const [id, p] of this.#pending) {
      if (!this.#inFlight.has(id)) at = Math.min(at, Math.max(p.notBefore, isPending(p) ? p.since + hold : 0, this.#pausedUntil));
    }
    if (at === Infinity) return;
    this.#timer = setTimeout(() => this.#dispatch(), Math.max(0, at - now));
    this.#timer.unref();
  }

  #count(kind: Kind, result: StatusWriteResult): void {
    const k = `${kind}|${result}`;
    this.#counts.set(k, (this.#counts.get(k) ?? 0) + 1);
  }

  async #send(id: string, item: Pending): Promise<void> {
    const { kind, namespace, name, status, canonical } = item;
    const wave = this.#wave;
    this.#inFlight.set(id, canonical);
    const plural = pluralOf(kind);
    // Null for whatever the server's copy (or our last write) has that this status has not.
    const base = withoutScheduled({
      ...(this.#view.cached(kind, namespace, name)?.status as Record<string, unknown> | undefined),
      ...this.#written.get(id)?.status,
    });
    const body = { status: mergePatch(base, status as unknown as Record<string, unknown>) };
    try {
      const result = (await this.#api.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace, plural, name, body },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )) as CachedObject;
      this.#count(kind, 'ok');
      this.#written.set(id, { status, canonical, resourceVersion: result?.metadata?.resourceVersion });
      if (this.#pending.get(id)?.canonical === canonical) this.#pending.delete(id);
      this.#serverAnswered();
    } catch (err) {
      this.#failed(id, item, err, wave);
    } finally {
      this.#inFlight.delete(id);
      this.#dispatch();
      this.#checkIdle();
    }
  }

  #failed(id: string, item: Pending, err: unknown, wave: number): void {
    const code = statusCode(err);
    const now = Date.now();
    // What failed may have been dropped from the queue meanwhile (the same status arrived again while it was in
    // flight): put it back unless something newer took its place.
    let queued = this.#pending.get(id);
    if (queued === undefined) {
      this.#pending.set(id, item);
      queued = item;
    }
    if (code === 404) {
      this.#count(item.kind, 'not_found');
      this.#serverAnswered();
      if (queued.canonical === item.canonical) this.#pending.delete(id);
      return;
    }
    if (code === 409) {
      this.#count(item.kind, 'conflict');
      this.#serverAnswered();
      queued.attempts++;
      queued.notBefore = now + Math.min(CONFLICT_MAX_MS, 50 * 2 ** queued.attempts);
      return;
    }
    if (code === undefined || code === 429 || code >= 500) {
      this.#count(item.kind, code === 429 ? 'throttled' : 'unavailable');
      if (wave === this.#wave) {
        this.#wave++;
        this.#pauseMs = Math.min(PAUSE_MAX_MS, Math.max(PAUSE_MIN_MS, this.#pauseMs * 2));
      }
      this.#pausedUntil = Math.max(this.#pausedUntil, now + Math.max(this.#pauseMs, retryAfterMs(err) ?? 0));
      if (this.#outage === undefined) {
        this.#outage = { since: now, failures: 0 };
        this.#logger.warn(
          { err: describeApiError(err), waiting: this.#pending.size },
          'cannot write status to the API server; keeping the newest status of each object and retrying with backoff',
        );
      }
      this.#outage.failures++;
      return;
    }
    // 422 (the CRD refuses our status: a version skew), 403 (RBAC), 400: the server answered; this status will
    // not go through as it is. Retried slowly, in case the cause is fixed; logged once per object and answer.
    this.#count(item.kind, code === 422 ? 'invalid' : 'error');
    this.#serverAnswered();
    queued.attempts++;
    queued.notBefore = now + Math.min(REFUSED_MAX_MS, 1_000 * 2 ** queued.attempts);
    const key = `${id}|${code}`;
    if (!this.#refusedLogged.has(key)) {
      this.#refusedLogged.add(key);
      this.#logger.warn({ object: id, err: describeApiError(err) }, 'the API server refused a status write; retrying slowly');
    }
  }

  #serverAnswered(): void {
    this.#pauseMs = 0;
    this.#pausedUntil = 0;
    if (this.#outage === undefined) return;
    this.#logger.info(
      { afterMs: Date.now() - this.#outage.since, failedWrites: this.#outage.failures, waiting: this.#pending.size },
      'the API server answers again; writing the newest status of each waiting object',
    );
    this.#outage = undefined;
  }

  #checkIdle(): void {
    if (this.#pending.size > 0 || this.#inFlight.size > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
