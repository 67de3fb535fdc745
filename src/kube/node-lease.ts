// The agent's membership (DESIGN §6): it holds the Lease `nslb-node-<node>` in its own namespace and renews it,
// as a kubelet renews its node's Lease in kube-node-lease. A node whose Lease expired is dead to the scheduler.
//
// One request per renewal, and one that counts even when its answer is lost: a merge patch of the renewal's
// fields, without a resourceVersion. The Lease is this agent's alone (named after its node), so there is no
// concurrent writer to guard against, and a renewal must not depend on seeing the answer to the one before: on a
// loaded node the answers came after the client's timeout while the writes had landed, and a renewal that
// replaced the Lease with the resourceVersion it last saw got 409 after 409 (the resourceVersion was its own
// landed write's predecessor), the node looked dead to the scheduler while its agent was alive and writing
// (bench (w), issue-17-f). Taking the Lease from another holder (or creating it) is a read and a conditional
// write, as before: 409 or 404 reads it again. On a clean stop (an upgrade, a restart) the last
// renewal asks for `restartGraceSeconds` instead: the node is not dead while its agent is being replaced, and
// nothing moves; a crash or a killed node renews nothing, and its Lease expires after one duration.
import { CoordinationV1Api, PatchStrategy, setHeaderOptions, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { nodeLeaseName } from '../api/v1alpha1/crds.js';
import type { Logger } from '../log/logger.js';
import { describeApiError, statusCode } from './errors.js';
import { makeApiClientWithTimeout } from './http.js';
import { RenewalClock } from './renewal-clock.js';

export interface NodeLeaseOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  node: string;
  leaseSeconds: number;
  /** How often it is renewed; a quarter of the duration (a kubelet's proportion) when omitted. */
  renewSeconds?: number;
  /** The duration the last renewal asks for on a clean stop. */
  restartGraceSeconds: number;
  logger: Logger;
  /** false: start() renews once and no more (node-lease-thread.ts renews from a thread; this takes the Lease). */
  periodic?: boolean;
}

export class NodeLease {
  readonly #opts: NodeLeaseOptions;
  readonly #api: CoordinationV1Api;
  readonly #name: string;
  #lease: V1Lease | undefined;
  /** Renewals on the clock, and what they say in the log. */
  readonly #clock: RenewalClock;
  /** Renewals that worked (tests, /metrics). */
  renewals = 0;

  constructor(opts: NodeLeaseOptions) {
    this.#opts = opts;
    this.#name = nodeLeaseName(opts.node);
    // A renewal is waited for as long as it could still keep the node alive (one Lease duration): on a loaded node
    // the answers took 1-3 s at steady state and up to 10 s in a drain, and a renewal given up after two renewal
    // periods (3 s) failed while it landed, again and again (bench (w), 2026-12-06).
    this.#api = makeApiClientWithTimeout(opts.kubeConfig, CoordinationV1Api, opts.leaseSeconds * 1000);
    const lease = this.#name;
    this.#clock = new RenewalClock({
      renewMs: this.renewMs,
      leaseMs: opts.leaseSeconds * 1000,
      renew: () => this.#renew(opts.leaseSeconds).then(() => true),
      warn: (fields, msg) => opts.logger.warn({ ...fields, lease }, msg),
      info: (fields, msg) => opts.logger.info({ ...fields, lease }, msg),
      describe: describeApiError,
      unref: true,
    });
  }

  get renewMs(): number {
    return (this.#opts.renewSeconds ?? this.#opts.leaseSeconds / 4) * 1000;
  }

  /** Renews once now (the node is a member before the agent serves anything), then every renewal period. */
  async start(): Promise<void> {
    await this.#clock.once();
    if (this.#opts.periodic !== false) this.#clock.start();
  }

  /** One renewal now, taking (or making) the Lease again if it is gone or held by another. */
  renewOnce(): Promise<void> {
    return this.#clock.once();
  }

  /** The Lease's name (`nslb-node-<node>`). */
  get name(): string {
    return this.#name;
  }

  async stop(): Promise<void> {
    // The grace renewal goes last, so that no earlier one (asking for the short duration) lands after it.
    await this.#clock.stop();
    await this.#renew(this.#opts.restartGraceSeconds).catch((err: unknown) =>
      this.#opts.logger.warn({ err: describeApiError(err), lease: this.#name }, 'cannot extend the node Lease for the restart'),
    );
  }

  async #renew(seconds: number): Promise<void> {
    const { namespace, node } = this.#opts;
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = new V1MicroTime(Date.now());
      if (this.#lease === undefined) {
        try {
          this.#lease = await this.#api.readNamespacedLease({ name: this.#name, namespace });
        } catch (err) {
          if (statusCode(err) !== 404) throw err;
          try {
            this.#lease = await this.#api.createNamespacedLease({
              namespace,
              body: {
                apiVersion: 'coordination.k8s.io/v1',
                kind: 'Lease',
                metadata: { name: this.#name, namespace, labels: { 'nslb.dev/node': node } },
                spec: { holderIdentity: node, leaseDurationSeconds: seconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
              },
            });
            this.renewals++;
            return;
          } catch (e) {
            if (statusCode(e) !== 409) throw e;
            continue;
          }
        }
      }
      const spec = this.#lease.spec ?? {};
      const taking = spec.holderIdentity !== node;
      if (!taking) {
        try {
          this.#lease = await this.#api.patchNamespacedLease(
            {
              name: this.#name,
              namespace,
              body: { spec: { holderIdentity: node, leaseDurationSeconds: seconds, renewTime: now } },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
          this.renewals++;
          return;
        } catch (err) {
          // No answer: the patch may have landed or not; the next renewal patches again either way.
          if (statusCode(err) !== 404) throw err;
          this.#lease = undefined;
          continue;
        }
      }
      try {
        this.#lease = await this.#api.replaceNamespacedLease({
          name: this.#name,
          namespace,
          body: {
            ...this.#lease,
            spec: {
              ...spec,
              holderIdentity: node,
              leaseDurationSeconds: seconds,
              renewTime: now,
              ...(taking ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
            },
          },
        });
        this.renewals++;
        return;
      } catch (err) {
        const code = statusCode(err);
        if (code !== 409 && code !== 404) throw err;
        this.#lease = undefined;
      }
    }
    throw new Error(`node Lease ${namespace}/${this.#name}: conflicts kept happening`);
  }
}
