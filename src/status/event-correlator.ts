// Which Kubernetes Events to write, as client-go's recorder decides it (tools/record's EventCorrelator):
// - aggregation: events that differ only in their note (same object, type, reason, action) are similar; from
//   the 10th distinct note within 10 minutes on, they become one "(combined from similar events): …" Event;
// - series: the same event again is not a new Event object but a count (series.count, or count in core/v1)
//   on the one already written;
// - spam filter: a token bucket per object (25 writes at once, then one per 5 minutes).
// Unlike client-go, an occurrence the spam filter holds back is not dropped: its series waits, and its count is
// written with the next write the filter allows. So a member flapping a thousand times costs a bounded number of
// writes and the count is still right.
import { TokenBucket } from 'limiter';
import type { Kind } from '../api/v1alpha1/types.js';

/**
 * The object an Event is about: one of nslb's kinds (apiVersion and uid are looked up), or any other object
 * (a Service the provider serves) with its own apiVersion and uid.
 */
export type ObjectRef =
  | { kind: Kind; namespace: string; name: string; apiVersion?: undefined }
  | { kind: string; namespace: string; name: string; apiVersion: string; uid?: string };

/** One thing that happened to one object, for an Event. */
export interface AgentEvent {
  regarding: ObjectRef;
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, why (e.g. InvalidReference, MemberDown). */
  reason: string;
  /** UpperCamelCase, what the agent did or was doing (e.g. Validate, HealthCheck, Reload). */
  action: string;
  note: string;
}

export interface EventSeries {
  /** Identifies the series: object, type, reason, action and (unless combined) note. */
  readonly key: string;
  readonly event: AgentEvent;
  /** Occurrences so far. */
  count: number;
  /** Epoch ms of the first and the last occurrence. */
  readonly first: number;
  last: number;
  /** The Event's name on the server, once created. */
  name?: string | undefined;
  /** The count the server holds (0: not written yet). */
  written: number;
}

export interface CorrelatorOptions {
  /** Similar events (distinct notes) within `aggregateWindowMs` before they are combined. Default 10. */
  maxSimilar?: number;
  aggregateWindowMs?: number;
  /** A series whose last occurrence is older than this is closed: the next occurrence makes a new Event. */
  seriesWindowMs?: number;
  /** Spam filter per object: writes at once, and writes per second after that. */
  spamBurst?: number;
  spamQps?: number;
  /** Keys remembered (least recently used forgotten). Default 4096. */
  cacheSize?: number;
}

export function objectKey(ref: ObjectRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

/** A Map used as an LRU cache: reading an entry makes it the newest; beyond `size` the oldest go. */
class Lru<V> {
  readonly #map = new Map<string, V>();
  constructor(readonly size: number) {}

  get(key: string): V | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }

  set(key: string, v: V): void {
    this.#map.delete(key);
    this.#map.set(key, v);
    while (this.#map.size > this.size) this.#map.delete(this.#map.keys().next().value!);
  }
}

export class EventCorrelator {
  readonly #maxSimilar: number;
  readonly #aggregateWindowMs: number;
  readonly #seriesWindowMs: number;
  readonly #spamBurst: number;
  readonly #spamQps: number;
  readonly #similar: Lru<{ notes: Set<string>; since: number }>;
  readonly #series: Lru<EventSeries>;
  readonly #spam: Lru<TokenBucket>;

  constructor(options: CorrelatorOptions = {}) {
    this.#maxSimilar = options.maxSimilar ?? 10;
    this.#aggregateWindowMs = options.aggregateWindowMs ?? 600_000;
    this.#seriesWindowMs = options.seriesWindowMs ?? 600_000;
    this.#spamBurst = options.spamBurst ?? 25;
    this.#spamQps = options.spamQps ?? 1 / 300;
    const size = options.cacheSize ?? 4096;
    this.#similar = new Lru(size);
    this.#series = new Lru(size);
    this.#spam = new Lru(size);
  }

  /** Records one occurrence: the series it belongs to, its count already raised. */
  observe(e: AgentEvent, now: number): EventSeries {
    const similarKey = [objectKey(e.regarding), e.type, e.reason, e.action].join('\0');
    let similar = this.#similar.get(similarKey);
    if (similar === undefined || now - similar.since > this.#aggregateWindowMs) {
      similar = { notes: new Set(), since: now };
      this.#similar.set(similarKey, similar);
    }
    similar.notes.add(e.note);
    const combined = similar.notes.size >= this.#maxSimilar;
    const event = combined ? { ...e, note: `(combined from similar events): ${e.note}` } : e;
    const key = combined ? `${similarKey}\0*` : `${similarKey}\0${e.note}`;
    const series = this.#series.get(key);
    if (series !== undefined && now - series.last <= this.#seriesWindowMs) {
      series.count++;
      series.last = now;
      return series;
    }
    const fresh: EventSeries = { key, event, count: 1, first: now, last: now, written: 0 };
    this.#series.set(key, fresh);
    return fresh;
  }

  /** Takes one write from the object's spam-filter bucket; false when it is empty. */
  allowWrite(ref: ObjectRef): boolean {
    return this.#bucket(ref).tryRemoveTokens(1);
  }

  /** Milliseconds until the object's spam filter allows a write. */
  waitForWrite(ref: ObjectRef): number {
    return this.#bucket(ref).getWaitTime(1);
  }

  #bucket(ref: ObjectRef): TokenBucket {
    const key = objectKey(ref);
    let b = this.#spam.get(key);
    if (b === undefined) {
      b = new TokenBucket({ bucketSize: this.#spamBurst, tokensPerInterval: this.#spamQps, interval: 'second' });
      b.content = this.#spamBurst;
      this.#spam.set(key, b);
    }
    return b;
  }
}
