// Kubernetes Events on the object they are about (DESIGN §7): events.k8s.io/v1 where the server serves it,
// core/v1 otherwise; reporting controller `nslb.dev/agent`. What to write is the correlator's call (series,
// aggregation, spam filter); this writes it, under the same client-side rate limit as status, never blocking
// the engine. An Event that cannot be written after ten minutes of trying is dropped, as client-go's recorder
// drops it (Events are best effort); the failure is logged once per outage or refusal, not per Event.
import { ApisApi, CoreV1Api, EventsV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import type { RequestLimiter } from './api-rate-limit.js';
import { EventCorrelator, objectKey, type AgentEvent, type CorrelatorOptions, type EventSeries } from './event-correlator.js';
import { describeApiError, statusCode } from '../kube/errors.js';
import type { ServerView } from './kubernetes-writer.js';

export const REPORTING_CONTROLLER = 'nslb.dev/agent';
/** events.k8s.io/v1 limits the note to 1024 bytes. */
const NOTE_LIMIT = 1024;
const GIVE_UP_MS = 600_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 60_000;

export type EventApi = 'events.k8s.io/v1' | 'v1';
export type EventWriteResult = 'created' | 'updated' | 'failed';

/** MicroTime as the apiserver parses it (RFC 3339 with exactly six fractional digits). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/**
 * An Event's note: never key material (a PEM block or anything that names a private key is cut out), one line,
 * at most 1024 bytes.
 */
export function sanitizeNote(note: string): string {
  let s = note
    .replace(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g, '[PEM data removed]')
    .replace(/\s+/g, ' ')
    .trim();
  if (/PRIVATE KEY/i.test(s)) s = s.replace(/\S*PRIVATE KEY\S*/gi, '[removed]');
  if (Buffer.byteLength(s) <= NOTE_LIMIT) return s;
  let cut = s.slice(0, NOTE_LIMIT - 3);
  while (Buffer.byteLength(cut) > NOTE_LIMIT - 3) cut = cut.slice(0, -1);
  return `${cut}...`;
}

interface Waiting {
  series: EventSeries;
  /** When the series first waited for a write that failed, to give up after GIVE_UP_MS. */
  failingSince?: number | undefined;
  notBefore: number;
}

export interface EventRecorderOptions {
  limiter: RequestLimiter;
  logger: Logger;
  /** This node (reportingInstance, and source.host in core/v1). */
  node: string;
  correlator?: CorrelatorOptions;
  /** Skip discovery (tests). */
  api?: EventApi;
}

export class KubernetesEventRecorder {
  readonly #events: EventsV1Api;
  readonly #core: CoreV1Api;
  readonly #apis: ApisApi;
  readonly #view: ServerView;
  readonly #logger: Logger;
  readonly #limiter: RequestLimiter;
  readonly #node: string;
  readonly #instance: string;
  readonly #correlator: EventCorrelator;
  #api: EventApi | undefined;
  /** Series with occurrences the server does not have yet, in the order they first waited. */
  readonly #waiting = new Map<string, Waiting>();
  readonly #inFlight = new Set<string>();
  readonly #counts = new Map<EventWriteResult, number>();
  #occurrences = 0;
  #dispatching = false;
  #timer: NodeJS.Timeout | undefined;
  #outage = false;
  readonly #refusals = new Set<string>();
  #seq = 0;
  #stopped = false;
  #idleWaiters: (() => void)[] = [];

  constructor(kubeConfig: KubeConfig, view: ServerView, options: EventRecorderOptions) {
    this.#events = kubeConfig.makeApiClient(EventsV1Api);
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#apis = kubeConfig.makeApiClient(ApisApi);
    this.#view = view;
    this.#logger = options.logger;
    this.#limiter = options.limiter;
    this.#node = options.node;
    this.#instance = `${REPORTING_CONTROLLER}-${options.node}`.slice(0, 128);
    this.#correlator = new EventCorrelator(options.correlator);
    this.#api = options.api;
  }

  /** Which Events API is used (known after the first write). */
  get api(): EventApi | undefined {
    return this.#api;
  }

  /** Records one occurrence; the write happens in the background. */
  emit(e: AgentEvent): void {
    if (this.#stopped) return;
    this.#occurrences++;
    const series = this.#correlator.observe({ ...e, note: sanitizeNote(e.note) }, Date.now());
    if (!this.#waiting.has(series.key)) this.#waiting.set(series.key, { series, notBefore: 0 });
    this.#dispatch();
  }

  /** Event writes by result, and occurrences recorded (a series counts many in one write). */
  stats(): { writes: [EventWriteResult, number][]; occurrences: number; waiting: number } {
    return { writes: [...this.#counts], occurrences: this.#occurrences, waiting: this.#waiting.size };
  }

  /** Resolves when no write waits for anything but the spam filter or a backoff, and none is in flight. */
  async idle(): Promise<void> {
    if (this.#isIdle()) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  async stop(timeoutMs = 2_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #isIdle(): boolean {
    if (this.#inFlight.size > 0) return false;
    const now = Date.now();
    for (const w of this.#waiting.values()) if (w.notBefore <= now && this.#correlator.waitForWrite(w.series.event.regarding) === 0) return false;
    return true;
  }

  #checkIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /** The oldest series that may be written now; takes a spam-filter token for it. */
  #next(now: number): Waiting | undefined {
    for (const w of this.#waiting.values()) {
      if (this.#inFlight.has(w.series.key) || w.notBefore > now) continue;
      if (this.#correlator.allowWrite(w.series.event.regarding)) return w;
    }
    return undefined;
  }

  #dispatch(): void {
    if (this.#dispatching || this.#stopped) return;
    this.#dispatching = true;
    void (async () => {
      try {
        for (;;) {
          const w = this.#next(Date.now());
          if (w === undefined || this.#stopped) break;
          this.#inFlight.add(w.series.key);
          await this.#limiter.take();
          void this.#send(w);
        }
      } finally {
        this.#dispatching = false;
        this.#wakeLater();
        this.#checkIdle();
      }
    })();
  }

  #wakeLater(): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    const now = Date.now();
    let at = Infinity;
    for (const w of this.#waiting.values()) {
      if (this.#inFlight.has(w.series.key)) continue;
      at = Math.min(at, Math.max(w.notBefore, now + this.#correlator.waitForWrite(w.series.event.regarding)));
    }
    if (at === Infinity) return;
    this.#timer = setTimeout(() => this.#dispatch(), Math.max(1, at - now));
    this.#timer.unref();
  }

  async #discover(): Promise<EventApi> {
    if (this.#api !== undefined) return this.#api;
    const groups = await this.#apis.getAPIVersions();
    const events = groups.groups.find((g) => g.name === 'events.k8s.io');
    this.#api = events?.versions.some((v) => v.version === 'v1') === true ? 'events.k8s.io/v1' : 'v1';
    this.#logger.debug({ api: this.#api }, 'Kubernetes Events API');
    return this.#api;
  }

  async #send(w: Waiting): Promise<void> {
    const { series } = w;
    const count = series.count;
    const last = series.last;
    try {
      const api = await this.#discover();
      if (series.written > 0 && count <= series.written) {
        // Nothing new to say (a create whose answer was lost, then AlreadyExists): an update with series.count 1
        // is invalid on events.k8s.io (a series counts at least 2).
        if (series.count === count) this.#waiting.delete(series.key);
        return;
      }
      if (series.written === 0) {
        // Named once: a create retried after a lost answer must not make a second Event.
        series.name ??= `${series.event.regarding.name}.${(BigInt(series.first) * 1_000_000n + BigInt(this.#seq++ % 1_000_000)).toString(16)}`;
        await this.#create(api, series, count, last);
        this.#count('created');
      } else {
        await this.#patch(api, series, count, last);
        this.#count('updated');
      }
      series.written = count;
      if (series.count === count) this.#waiting.delete(series.key);
      w.failingSince = undefined;
      if (this.#outage) {
        this.#outage = false;
        this.#logger.info('Events are written again');
      }
    } catch (err) {
      this.#failed(w, err);
    } finally {
      this.#inFlight.delete(series.key);
      this.#dispatch();
      this.#checkIdle();
    }
  }

  #failed(w: Waiting, err: unknown): void {
    const { series } = w;
    const code = statusCode(err);
    const now = Date.now();
    if (code === 404 && series.written > 0) {
      // The Event expired (--event-ttl) or was deleted: the series goes on in a new one.
      series.name = undefined;
      series.written = 0;
      return;
    }
    if (code === 409 && series.written === 0) {
      // AlreadyExists: an earlier attempt was created after all (its answer was lost): update it from now on.
      series.written = 1;
      return;
    }
    if (code === undefined || code === 429 || code >= 500) {
      // A create is retried under the same name, so that one whose answer was lost is not made twice.
      w.failingSince ??= now;
      if (now - w.failingSince > GIVE_UP_MS) {
        this.#count('failed');
        this.#waiting.delete(series.key);
        return;
      }
      const tried = now - w.failingSince;
      w.notBefore = now + Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, tried));
      if (!this.#outage) {
        this.#outage = true;
        this.#logger.warn(
          { err: describeApiError(err) },
          'cannot write Events to the API server; retrying with backoff (Events older than 10 minutes are dropped)',
        );
      }
      return;
    }
    // Refused (403 RBAC, 422, a namespace that is gone): this Event will not go through.
    this.#count('failed');
    this.#waiting.delete(series.key);
    if (series.written === 0) series.name = undefined;
    const key = `${code}|${series.event.reason}`;
    if (!this.#refusals.has(key)) {
      this.#refusals.add(key);
      this.#logger.warn(
        { object: objectKey(series.event.regarding), reason: series.event.reason, err: describeApiError(err) },
        'the API server refused an Event',
      );
    }
  }

  #count(result: EventWriteResult): void {
    this.#counts.set(result, (this.#counts.get(result) ?? 0) + 1);
  }

  #reference(series: EventSeries): { apiVersion: string; kind: string; name: string; namespace: string; uid?: string } {
    const ref = series.event.regarding;
    if (ref.apiVersion !== undefined) {
      return { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name, namespace: ref.namespace, ...(ref.uid === undefined ? {} : { uid: ref.uid }) };
    }
    const { kind, namespace, name } = ref;
    // kubectl describe finds an object's Events by its uid too.
    const uid = this.#view.cached(kind, namespace, name)?.metadata?.uid;
    return { apiVersion: API_VERSION, kind, name, namespace, ...(uid === undefined ? {} : { uid }) };
  }

  async #create(api: EventApi, series: EventSeries, count: number, last: number): Promise<void> {
    const e = series.event;
    const metadata = { name: series.name!, namespace: e.regarding.namespace };
    if (api === 'events.k8s.io/v1') {
      // eventTime and lastObservedTime are MicroTime: strings with six fractional digits (a Date would be sent
      // with three, which the apiserver cannot parse).
      const body = {
        metadata,
        eventTime: microTime(series.first),
        ...(count > 1 ? { series: { count, lastObservedTime: microTime(last) } } : {}),
        reportingController: REPORTING_CONTROLLER,
        reportingInstance: this.#instance,
        action: e.action,
        reason: e.reason,
        regarding: this.#reference(series),
        note: e.note,
        type: e.type,
      };
      await this.#events.createNamespacedEvent({ namespace: e.regarding.namespace, body: body as never });
      return;
    }
    const body = {
      metadata,
      involvedObject: this.#reference(series),
      reason: e.reason,
      message: e.note,
      type: e.type,
      action: e.action,
      source: { component: REPORTING_CONTROLLER, host: this.#node },
      firstTimestamp: new Date(series.first),
      lastTimestamp: new Date(last),
      count,
      reportingComponent: REPORTING_CONTROLLER,
      reportingInstance: this.#instance,
    };
    await this.#core.createNamespacedEvent({ namespace: e.regarding.namespace, body });
  }

  async #patch(api: EventApi, series: EventSeries, count: number, last: number): Promise<void> {
    const name = series.name!;
    const namespace = series.event.regarding.namespace;
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    if (api === 'events.k8s.io/v1') {
      await this.#events.patchNamespacedEvent({ name, namespace, body: { series: { count, lastObservedTime: microTime(last) } } }, merge);
      return;
    }
    await this.#core.patchNamespacedEvent({ name, namespace, body: { count, lastTimestamp: new Date(last).toISOString() } }, merge);
  }
}
