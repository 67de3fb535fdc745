// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection package does it: one holder
// at a time; the holder renews every retry period and gives up leading when it could not renew for the
// renew deadline; a candidate takes the Lease once it has seen the same record for a whole lease duration
// (time measured on its own clock, never compared with the holder's). Every write is guarded by the Lease's
// resourceVersion, so two candidates cannot both win. The identity is the node name: an agent restarted on
// its node takes its own Lease back at once instead of waiting for it to expire; on a clean stop the Lease
// is released so that another agent takes over without waiting either.
//
// Fencing: a leader stops leading (its onStoppedLeading runs) once the renew deadline has passed since its last
// successful renewal, on a timer of its own, even while a request to the API server hangs. The deadline is
// shorter than the lease duration, and a candidate waits a whole lease duration from when it first saw that
// renewal, so the old leader has stopped before anyone else can start.
//
// Renewal fast path (client-go's since 1.27): while leading, a renewal is one conditional replace of the Lease as
// this elector last wrote it (its resourceVersion), with no read first; the API server refuses it (409) if anyone
// wrote the Lease since, and then (or on any other doubt: no answer, an error) the next try reads it first as a
// candidate does. One round trip instead of two: under a loaded API server the read and the write each had to
// be answered within half the renew deadline, and the leader was fenced again and again while nobody else wanted
// the Lease (bench (w), issue-17-h). The guard is the same resourceVersion check as the slow path's write, so
// two candidates still cannot both win, and the fence and the candidates' full lease duration are unchanged.
//
// Renewals from a thread (leader-thread.ts, where the agent is built): once leading, the elector hands the Lease it
// last wrote to a worker thread, which goes on with the same conditional replaces while the main thread is busy, and
// the fence reads the thread's last renewal from shared memory. A renewal the thread cannot make hands back to the
// elector (the next try reads the Lease as a candidate does); the fence and the candidates' wait are unchanged.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { statusCode } from '../kube/errors.js';
import { makeApiClientWithTimeout } from './http.js';
import { type LeaderLease, LeaderThread } from './leader-thread.js';

export interface LeaderOptions extends LeaderLease {
  onStartedLeading: () => Promise<void>;
  onStoppedLeading: () => Promise<void>;
  /**
   * The renewal thread's script (leader-worker.js): by default the one built beside this module, and none where it
   * is not there (the sources run by vitest or tsx); false: renew on the main thread.
   */
  threadScript?: URL | false;
  /** Tests: the thread's stall limit (STALL_MS). */
  threadStallMs?: number;
}

export class LeaderElector {
  readonly #opts: LeaderOptions;
  readonly #api: CoordinationV1Api;
  /** The fast path's client: one request, so it may take the whole renew deadline (a renewal is judged by it). */
  readonly #fastApi: CoordinationV1Api;
  readonly #retryMs: number;
  readonly #renewDeadlineMs: number;
  #leading = false;
  /** A start of leading is queued (behind a stop still running): one is enough. */
  #starting = false;
  #stopped = false;
  /** Until then (our clock) this candidate stands aside: no campaign, no leading (stepDown). */
  #asideUntil = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastRenew = 0;
  /** The record last seen, and when (our clock) it was first seen: expiry is judged from that. */
  #observed: { record: string; at: number } | undefined;
  /** The Lease as this elector's last successful write left it (holder: this identity): the fast path's base. */
  #written: V1Lease | undefined;
  #loop: Promise<void> = Promise.resolve();
  #fence: NodeJS.Timeout | undefined;
  /** Leading transitions, one after the other (the fence may fire while a tick starts or stops leading). */
  #transitions: Promise<void> = Promise.resolve();
  /** The renewal thread, made at the first leadership (undefined: the main thread renews); its start, once. */
  #thread: LeaderThread | undefined;
  #threadStart: Promise<LeaderThread | undefined> | undefined;

  constructor(opts: LeaderOptions) {
    this.#opts = opts;
    this.#retryMs = Math.max(200, (opts.leaseSeconds * 1000) / 7.5);
    this.#renewDeadlineMs = (opts.leaseSeconds * 1000 * 2) / 3;
    // The slow path is a read and a write: each gets half the renew deadline; the fast path's one write, all of it.
    this.#api = makeApiClientWithTimeout(opts.kubeConfig, CoordinationV1Api, this.#renewDeadlineMs / 2);
    this.#fastApi = makeApiClientWithTimeout(opts.kubeConfig, CoordinationV1Api, this.#renewDeadlineMs);
    if (opts.leaseSeconds <= 0) throw new RangeError('leaseSeconds must be positive');
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** The renew deadline in milliseconds: how long a leader goes on without a successful renewal. */
  get renewDeadlineMs(): number {
    return this.#renewDeadlineMs;
  }

  start(): void {
    this.#schedule(0);
  }

  /** Stop leading (the callback runs first) and release the Lease. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#loop;
    await this.#transitions;
    const thread = await this.#threadStart;
    const leading = this.#leading;
    if (leading) await this.#stopLeading();
    // No renewal from the thread once the Lease is released.
    await thread?.stop();
    if (!leading) return;
    await this.#release().catch((err: unknown) => this.#opts.logger.warn({ err: String(err), role: this.#opts.role }, 'cannot release the Lease'));
  }

  /**
   * Stop leading, release the Lease and stand aside for `pauseMs` (a lease duration by default): another candidate
   * takes over at its next try instead of a whole lease duration later. For a leader whose node is being drained:
   * the work that leaves the node would starve the leader (renewals late, fenced, started again). After the pause
   * it is a candidate as before (and leads again if nobody else took the Lease).
   */
  async stepDown(pauseMs = this.#opts.leaseSeconds * 1000): Promise<void> {
    this.#asideUntil = Date.now() + pauseMs;
    if (!this.#leading) return;
    this.#opts.logger.info({ lease: `${this.#opts.namespace}/${this.#opts.name}`, pauseMs }, `${this.#opts.role}: stepping down`);
    await this.#stopLeading();
    await this.#thread?.halt();
    // Only once stopped (its writes ended), so that whoever takes the Lease never overlaps with it.
    await this.#release().catch((err: unknown) => this.#opts.logger.warn({ err: String(err), role: this.#opts.role }, 'cannot release the Lease'));
  }

  #aside(): boolean {
    return Date.now() < this.#asideUntil;
  }

  #startLeading(): Promise<void> {
    this.#transitions = this.#transitions.then(async () => {
      if (this.#leading || this.#stopped || this.#aside()) return;
      // Queued behind a slow stop, the renewal that won may be past its deadline by now: the next one leads.
      if (this.#latestRenewal() + this.#renewDeadlineMs <= Date.now()) return;
      this.#leading = true;
      this.#armFence();
      this.#opts.logger.info({ lease: `${this.#opts.namespace}/${this.#opts.name}`, identity: this.#opts.identity }, `${this.#opts.role}: leading`);
      await this.#opts.onStartedLeading();
    });
    return this.#transitions;
  }

  #stopLeading(): Promise<void> {
    clearTimeout(this.#fence);
    // The thread renews no more (not waited for: a renewal still in flight lands or not, and either way the next
    // renewal is the elector's own, conditional on what it reads).
    void this.#thread?.halt();
    this.#transitions = this.#transitions.then(async () => {
      if (!this.#leading) return;
      this.#leading = false;
      await this.#opts.onStoppedLeading();
    });
    return this.#transitions;
  }

  /** When the last renewal that landed in time was asked for: the elector's own, or the thread's. */
  #latestRenewal(): number {
    return Math.max(this.#lastRenew, this.#thread?.renewedAt ?? 0);
  }

  /** Leading is safe until the renew deadline from the last renewal, and no longer. */
  #armFence(): void {
    clearTimeout(this.#fence);
    this.#fence = setTimeout(
      () => {
        if (!this.#leading) return;
        // Renewed since (the thread, whose renewals set no timer here): safe until the deadline from that one.
        if (this.#latestRenewal() + this.#renewDeadlineMs > Date.now()) {
          this.#armFence();
          return;
        }
        this.#opts.logger.warn(
          { lease: `${this.#opts.namespace}/${this.#opts.name}`, renewDeadlineMs: this.#renewDeadlineMs },
          `${this.#opts.role}: could not renew the Lease in time; stopped leading`,
        );
        void this.#stopLeading();
      },
      Math.max(0, this.#latestRenewal() + this.#renewDeadlineMs - Date.now()),
    );
    this.#fence.unref();
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#loop = this.#tick().finally(() => this.#schedule(this.#retryMs));
    }, ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (this.#aside()) return;
    // The thread renews: nothing to send from here (the fence reads its renewals).
    if (this.#thread?.renewing === true) {
      this.#lead();
      return;
    }
    // Taken before the request: the renewal is as old as the moment it was asked for, not when it came back.
    const asked = Date.now();
    let ok = false;
    try {
      ok = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#opts.logger.debug({ err: String(err), role: this.#opts.role }, 'Lease: cannot read or write it');
    }
    if (this.#stopped || this.#aside()) return;
    // A renewal that came back after its own deadline is no ground to lead on: the next tick renews again.
    if (!ok || asked + this.#renewDeadlineMs <= Date.now()) return;
    this.#lastRenew = asked;
    if (this.#leading) this.#armFence();
    this.#handToThread(asked);
    this.#lead();
  }

  /** Leads, unless it does or is about to (after a renewal that landed in time). */
  #lead(): void {
    if (this.#leading || this.#starting) return;
    // Not awaited: the callbacks (the scheduler starting, or a previous one stopping while its writes finish)
    // can take seconds on a loaded node, and the renewals must go on meanwhile, or the fence fires on a
    // leader that is only busy, and it stops and starts again and again.
    this.#starting = true;
    void this.#startLeading()
      .catch((err: unknown) => this.#opts.logger.error({ err: String(err), role: this.#opts.role }, 'cannot start leading'))
      .finally(() => {
        this.#starting = false;
      });
  }

  /**
   * The Lease this elector just wrote, renewed at `at`, goes to the thread, which renews it from now on (the thread is
   * started the first time; until it runs, the elector renews).
   */
  #handToThread(at: number): void {
    const written = this.#written;
    if (written === undefined || this.#opts.threadScript === false) return;
    if (this.#threadStart === undefined) {
      const { kubeConfig, role, namespace, name, identity, leaseSeconds, logger, threadScript, threadStallMs } = this.#opts;
      this.#threadStart = LeaderThread.start({
        kubeConfig,
        role,
        namespace,
        name,
        identity,
        leaseSeconds,
        retryMs: this.#retryMs,
        deadlineMs: this.#renewDeadlineMs,
        logger,
        ...(threadScript === undefined ? {} : { script: threadScript }),
        ...(threadStallMs === undefined ? {} : { stallMs: threadStallMs }),
      }).then((t) => {
        this.#thread = t;
        return t;
      });
      return;
    }
    const thread = this.#thread;
    if (thread?.running !== true || this.#stopped) return;
    // From here the elector's own base is stale: should the thread hand back, the next try reads the Lease.
    this.#written = undefined;
    thread.renewFrom(written, at);
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    if (this.#leading && this.#written !== undefined) {
      const renewed = await this.#renewFast(this.#written);
      if (renewed) return true;
    }
    return this.#tryAcquireOrRenewSlow();
  }

  /**
   * The fast path: the Lease as last written, renewed in one conditional replace. True when it landed; false on a
   * conflict (someone wrote the Lease since: the slow path decides, in the same try). Any other failure forgets
   * the base (the write may have landed unseen) and is thrown: the next try takes the slow path.
   */
  async #renewFast(base: V1Lease): Promise<boolean> {
    const { namespace, name, identity, leaseSeconds } = this.#opts;
    this.#written = undefined;
    try {
      const lease = await this.#fastApi.replaceNamespacedLease({
        name,
        namespace,
        body: { ...base, spec: { ...base.spec, holderIdentity: identity, leaseDurationSeconds: leaseSeconds, renewTime: new V1MicroTime(Date.now()) } },
      });
      this.#written = lease;
      return true;
    } catch (err) {
      if (statusCode(err) === 409) return false;
      throw err;
    }
  }

  async #tryAcquireOrRenewSlow(): Promise<boolean> {
    const { namespace, name, identity, leaseSeconds } = this.#opts;
    this.#written = undefined;
    const now = new V1MicroTime(Date.now());
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      try {
        this.#written = await this.#api.createNamespacedLease({
          namespace,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace },
            spec: { holderIdentity: identity, leaseDurationSeconds: leaseSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
          },
        });
        return true;
      } catch (e) {
        if (statusCode(e) === 409) return false;
        throw e;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    // To the microsecond: String() of a Date keeps whole seconds, and two renewals within one second would read as one
    // record, the later one's lease counted from the earlier (up to a second early; the fence's margin covers it).
    const renewed = spec.renewTime instanceof Date ? spec.renewTime.toISOString() : String(spec.renewTime);
    const record = `${holder}|${renewed}|${spec.leaseDurationSeconds ?? ''}`;
    if (this.#observed?.record !== record) this.#observed = { record, at: Date.now() };
    const duration = (spec.leaseDurationSeconds ?? leaseSeconds) * 1000;
    if (holder !== '' && holder !== identity && this.#observed.at + duration > Date.now()) return false;
    // Stepped down or stopped while the read was out: a write now would take back the Lease just released.
    if (this.#stopped || this.#aside()) return false;
    const taking = holder !== identity;
    try {
      this.#written = await this.#api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          ...lease,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: leaseSeconds,
            renewTime: now,
            ...(taking ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
          },
        },
      });
      return true;
    } catch (err) {
      if (statusCode(err) === 409) return false;
      throw err;
    }
  }

  async #release(): Promise<void> {
    const { namespace, name, identity } = this.#opts;
    this.#written = undefined;
    const lease = await this.#api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    await this.#api.replaceNamespacedLease({
      name,
      namespace,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new V1MicroTime(Date.now()) } },
    });
  }
}

/** The agent's own namespace: the pod's (POD_NAMESPACE, set by the chart), else the kubeconfig context's. */
export function agentNamespace(kc: KubeConfig): string {
  const fromPod = process.env.POD_NAMESPACE;
  if (fromPod !== undefined && fromPod !== '') return fromPod;
  return kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
}
