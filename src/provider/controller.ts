// The Service provider (DESIGN §7): a translator controller in the Kubernetes-mode agent. It watches Services,
// EndpointSlices, Nodes and AddressPools and writes, for every Service of type LoadBalancer of its class, the
// nslb objects that serve it (owned by the Service, labelled nslb.dev/service=<name>); the engine then serves
// them like any user-written objects. One key per Service in a work queue; each reconcile reads the caches,
// decides, and writes only the difference. Nothing it decides is kept only in memory: the addresses are in
// AddressPool status (ledger.ts), the objects and the Service's status in the API.
import type { KubeConfig } from '@kubernetes/client-node';
import type { PoolMembers } from '../api/v1alpha1/addresspool.js';
import type { Kind, ObjectStatus } from '../api/v1alpha1/types.js';
import { validateObject, formatIssue } from '../api/v1alpha1/validate.js';
import { providerCrashPoint } from './crash-points.js';
import { waitUntil } from '../loop/wait.js';
import { WorkQueue } from '../loop/work-queue.js';
import { canonicalIp } from '../desired/addresses.js';
import type { Logger } from '../log/logger.js';
import { parseServiceSettings } from './annotations.js';
import { cachesListed, makeCaches, MADE_KINDS, startCaches, stopCaches, type ProviderCaches, type ProviderEvent } from './informers.js';
import { parsePool, refuseOverlaps } from './ipam.js';
import { SERVICE_NAME_LABEL, EXCLUDE_FROM_LB_LABEL, type Node, type Service } from './kube.js';
import { ensureAddresses } from './addresses.js';
import { AddressLedger } from './ledger.js';
import { LOAD_BALANCER_CLASS, SERVICE_FINALIZER, SERVICE_LABEL, parseServiceKey, serviceKey } from './names.js';
import { ServiceApi } from './service-api.js';
import { hasProviderStatus, mergeConditions, statusUpToDate, wantedServiceStatus, type StatusInput } from './service-status.js';
import { capabilitiesOfSchema, translateService, type Capabilities } from './translate.js';
import { NameConflictError, ObjectWriter, madeFor, ownedBy, planWrites, describeAction, type ExistingObject } from './writer.js';

export interface ServiceRef {
  apiVersion: 'v1';
  kind: 'Service';
  namespace: string;
  name: string;
  uid?: string;
}

/** Where the provider's Events go (the agent wires it to its Event recorder). */
export interface ProviderEvents {
  emit(ref: ServiceRef, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface ProviderOptions {
  kubeConfig: KubeConfig;
  /** Only Services in this namespace (all when undefined). */
  namespace?: string;
  /** Also serve Services of type LoadBalancer that name no class. */
  withoutClass: boolean;
  /** Members when neither the Service nor its pool says: the nodes on the NodePort, or the endpoints. */
  members: PoolMembers;
  logger: Logger;
  events: ProviderEvents;
  concurrency?: number;
  capabilities?: Capabilities;
}

const EVENT_REPEAT_MS = 10 * 60_000;
/** Allocations of a Service nobody knows are released after this long (a leader handover's in-flight ones). */
const ORPHAN_GRACE_MS = 60_000;

export function isOurs(svc: Service, withoutClass: boolean): boolean {
  const spec = svc.spec ?? {};
  if (spec.type !== 'LoadBalancer') return false;
  return spec.loadBalancerClass === LOAD_BALANCER_CLASS || (spec.loadBalancerClass === undefined && withoutClass);
}

export class ServiceProvider {
  readonly #opts: ProviderOptions;
  readonly #caps: Capabilities;
  readonly #services: ServiceApi;
  readonly #writer: ObjectWriter;
  readonly #queue: WorkQueue;
  #caches: ProviderCaches | undefined;
  #ledger: AddressLedger | undefined;
  #synced = false;
  readonly #nodeFingerprints = new Map<string, string>();
  readonly #lastEvents = new Map<string, { message: string; at: number }>();

  constructor(opts: ProviderOptions) {
    this.#opts = opts;
    this.#caps = opts.capabilities ?? capabilitiesOfSchema();
    this.#services = new ServiceApi(opts.kubeConfig);
    this.#writer = new ObjectWriter(opts.kubeConfig);
    this.#queue = new WorkQueue((key) => this.#reconcile(key), { concurrency: opts.concurrency ?? 16 });
  }

  /** API writes made (objects, addresses), for tests and the bench. */
  get counts(): { objects: ObjectWriter['counts']; addresses: AddressLedger['counts'] | undefined } {
    return { objects: this.#writer.counts, addresses: this.#ledger?.counts };
  }

  async start(): Promise<void> {
    const caches = makeCaches(this.#opts.kubeConfig, this.#opts.namespace, this.#opts.logger, (e) => this.#onChange(e));
    this.#caches = caches;
    this.#ledger = new AddressLedger({
      kubeConfig: this.#opts.kubeConfig,
      cached: (name) => caches.pools.get(name),
      takenElsewhere: (pool, uid) => this.#takenElsewhere(pool, uid),
      beforeWrite: providerCrashPoint,
    });
    await startCaches(caches);
    // A cache whose first list failed (the AddressPool CRD not installed, RBAC) is retried by its informer;
    // nothing is decided until every one has listed, or an empty cache would read as "nothing exists".
    let waited = 0;
    const listed = await waitUntil(
      () => {
        if (cachesListed(caches)) return true;
        if (waited > 0 && waited % 10_000 === 0) this.#opts.logger.warn({ waitedMs: waited }, 'provider: waiting for every informer to list once');
        waited += 100;
        return this.#caches !== caches;
      },
      { intervalMs: 100 },
    );
    if (!listed || this.#caches !== caches) return;
    this.#synced = true;
    this.resync();
    this.#opts.logger.info({ services: caches.services.list().length, namespace: this.#opts.namespace ?? 'all' }, 'provider: started');
  }

  async stop(): Promise<void> {
    this.#synced = false;
    const caches = this.#caches;
    this.#caches = undefined;
    await this.#queue.stop();
    if (caches !== undefined) await stopCaches(caches);
  }

  /** Every Service again (drift repair), and addresses whose Service is gone back to their pool. */
  resync(): void {
    if (!this.#synced || this.#caches === undefined) return;
    for (const s of this.#caches.services.list()) this.#queue.add(serviceKey(s.metadata?.namespace ?? 'default', s.metadata?.name ?? ''));
    void this.#releaseOrphans().catch((err: unknown) => this.#opts.logger.warn({ err: String(err) }, 'provider: cannot release orphaned addresses'));
  }

  async idle(): Promise<void> {
    await this.#queue.idle();
  }

  // ------------------------------------------------------------------------------------------- events in

  #onChange(e: ProviderEvent): void {
    if (!this.#synced || this.#caches === undefined) return;
    const ns = (e.object.metadata as { namespace?: string } | undefined)?.namespace ?? 'default';
    switch (e.kind) {
      case 'Service':
        this.#queue.add(serviceKey(ns, e.object.metadata?.name ?? ''));
        return;
      case 'EndpointSlice': {
        const svc = e.object.metadata?.labels?.[SERVICE_NAME_LABEL];
        if (svc !== undefined) this.#queue.add(serviceKey(ns, svc));
        return;
      }
      case 'Node': {
        // Nodes are updated often (heartbeats, images); only readiness, addresses and the exclusion label matter.
        const n = e.object as Node;
        const name = n.metadata?.name ?? '';
        const fp = JSON.stringify([
          (n.status?.conditions ?? []).find((c) => c.type === 'Ready')?.status,
          n.status?.addresses,
          n.metadata?.labels?.[EXCLUDE_FROM_LB_LABEL],
          n.metadata?.deletionTimestamp === undefined,
        ]);
        if (this.#nodeFingerprints.get(name) === fp) return;
        this.#nodeFingerprints.set(name, fp);
        this.#enqueueAll();
        return;
      }
      case 'AddressPool':
        this.#enqueueAll();
        return;
      default: {
        const svc = (e.object as ExistingObject).metadata?.labels?.[SERVICE_LABEL];
        if (svc !== undefined) this.#queue.add(serviceKey(ns, svc));
      }
    }
  }

  #enqueueAll(): void {
    for (const s of this.#caches?.services.list() ?? []) this.#queue.add(serviceKey(s.metadata?.namespace ?? 'default', s.metadata?.name ?? ''));
  }

  #event(svc: Service, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const ns = svc.metadata?.namespace ?? 'default';
    const name = svc.metadata?.name ?? '';
    const id = `${ns}/${name}/${reason}`;
    const last = this.#lastEvents.get(id);
    if (last !== undefined && last.message === message && Date.now() - last.at < EVENT_REPEAT_MS) return;
    this.#lastEvents.set(id, { message, at: Date.now() });
    this.#opts.logger.info({ service: `${ns}/${name}`, reason, type }, message);
    this.#opts.events.emit(
      { apiVersion: 'v1', kind: 'Service', namespace: ns, name, ...(svc.metadata?.uid === undefined ? {} : { uid: svc.metadata.uid }) },
      type,
      reason,
      message,
    );
  }

  // ------------------------------------------------------------------------------------------- reconcile

  #owned(namespace: string, name: string): Map<Kind, ExistingObject[]> {
    const out = new Map<Kind, ExistingObject[]>();
    for (const kind of MADE_KINDS) {
      const list = (this.#caches?.made.get(kind)?.list(namespace) ?? []).filter((o) => madeFor(o, name));
      if (list.length > 0) out.set(kind, list);
    }
    return out;
  }

  async #reconcile(key: string): Promise<void> {
    const caches = this.#caches;
    if (caches === undefined || !this.#synced) return;
    const { namespace, name } = parseServiceKey(key);
    let svc = caches.services.get(name, namespace);
    const owned = this.#owned(namespace, name);
    if (svc === undefined) {
      // Gone without our cleanup (finalizer removed by hand): the objects go (the garbage collector would
      // too), the addresses return to their pools.
      await this.#writer.apply(planWrites([], owned, name, ''), name, '');
      for (const k of [...this.#lastEvents.keys()]) if (k.startsWith(`${key}/`)) this.#lastEvents.delete(k);
      return;
    }
    const uid = svc.metadata?.uid ?? '';
    const finalizers = svc.metadata?.finalizers ?? [];
    const ours = isOurs(svc, this.#opts.withoutClass);
    if (svc.metadata?.deletionTimestamp !== undefined || !ours) {
      // Never ours, never touched: not even a status write.
      if (!finalizers.includes(SERVICE_FINALIZER) && owned.size === 0) return;
      await this.#cleanup(key, svc, owned);
      return;
    }
    if (!finalizers.includes(SERVICE_FINALIZER)) {
      // Before anything is made for it: from here on the Service cannot go without our cleanup.
      const updated = await this.#services.patch(svc, { metadata: { finalizers: [...finalizers, SERVICE_FINALIZER] } });
      if (updated === undefined) return; // changed meanwhile: its event brings it back
      svc = {
        ...svc,
        metadata: {
          ...svc.metadata,
          finalizers: [...finalizers, SERVICE_FINALIZER],
          ...(updated.resourceVersion === undefined ? {} : { resourceVersion: updated.resourceVersion }),
        },
      };
    }
    const { settings, problems, unknown } = parseServiceSettings(svc.metadata?.annotations ?? {}, svc.spec?.loadBalancerIP);
    if (unknown.length > 0) this.#event(svc, 'Warning', 'UnknownAnnotation', `annotations nslb does not read (a typo?): ${unknown.join(', ')}`);
    const base: Omit<StatusInput, 'now'> = { service: svc, served: [], refused: [], ipMode: 'VIP', listeners: [] };
    if (problems.length > 0) {
      // Nothing already serving is torn down for a bad annotation: the last good objects stay.
      const message = problems.join('; ');
      this.#event(svc, 'Warning', 'InvalidAnnotation', message);
      await this.#writeStatus(svc, { ...base, blocked: { reason: 'InvalidAnnotation', message } });
      return;
    }
    const pools = refuseOverlaps([...caches.pools.list()].map((p) => parsePool(p.metadata?.name ?? '', p.spec)));
    // A first translation tells which ports can be served before an address is spent on the Service.
    const dry = translateService({ service: svc, settings, vips: [], nodes: [], slices: [], members: this.#opts.members, capabilities: this.#caps });
    for (const r of dry.refused) this.#event(svc, 'Warning', 'PortNotServed', r.message);
    if (dry.served.length === 0) {
      await this.#release(svc, owned);
      await this.#writeStatus(svc, { ...base, refused: dry.refused });
      return;
    }
    const lbVips = this.#vipsOf(owned);
    const address = await ensureAddresses(this.#ledger!, svc, settings, pools, lbVips);
    if (!address.ok) {
      this.#event(svc, 'Warning', address.reason, address.message);
      await this.#writeStatus(svc, { ...base, served: dry.served, refused: dry.refused, address });
      return;
    }
    const slices = caches.slices.list(namespace).filter((s) => s.metadata?.labels?.[SERVICE_NAME_LABEL] === name);
    // The Service's annotation, else its pools' setting (when they agree), else the agent's flag.
    const policies = new Set(address.pools.map((n) => pools.find((p) => p.name === n)?.members));
    const fromPools = policies.size === 1 ? [...policies][0] : undefined;
    const members = settings.members ?? fromPools ?? this.#opts.members;
    const t = translateService({ service: svc, settings, vips: address.vips, nodes: caches.nodes.list(), slices, members, capabilities: this.#caps });
    for (const w of t.warnings) this.#event(svc, 'Warning', w.reason, w.message);
    for (const o of t.objects) {
      const v = validateObject(o);
      if (!v.ok) throw new Error(`provider made an invalid ${o.kind} ${o.metadata.name}: ${v.issues.map(formatIssue).join('; ')}`);
    }
    const actions = planWrites(t.objects, owned, name, uid);
    const addressState = { ok: true as const, addresses: address.vips.map((v) => v.address), pools: address.pools };
    if (actions.length > 0) {
      this.#opts.logger.debug({ service: key, actions: actions.map(describeAction) }, 'provider: writing');
      try {
        await this.#writer.apply(actions, name, uid);
      } catch (err) {
        if (!(err instanceof NameConflictError)) throw err;
        this.#event(svc, 'Warning', 'NameConflict', err.message);
        await this.#writeStatus(svc, {
          ...base,
          served: t.served,
          refused: t.refused,
          address: addressState,
          blocked: { reason: 'NameConflict', message: err.message },
        });
        return;
      }
      providerCrashPoint();
      if (owned.size === 0)
        this.#event(
          svc,
          'Normal',
          'EnsuringLoadBalancer',
          `LoadBalancer ${namespace}/${name} with VIP ${addressState.addresses.join(', ')} from ${address.pools.join(', ')}`,
        );
    }
    const observedLb = caches.made.get('LoadBalancer')?.get(name, namespace);
    const listenerNames = new Set(t.objects.filter((o) => o.kind === 'Listener').map((o) => o.metadata.name));
    const listeners = (caches.made.get('Listener')?.list(namespace) ?? []).filter((l) => listenerNames.has(l.metadata?.name ?? '') && ownedBy(l, name, uid));
    const observed = (o: ExistingObject) => ({
      name: o.metadata?.name ?? '',
      ...(o.metadata?.generation === undefined ? {} : { generation: o.metadata.generation }),
      status: (o.status ?? {}) as Partial<ObjectStatus>,
    });
    await this.#writeStatus(svc, {
      ...base,
      served: t.served,
      refused: t.refused,
      ipMode: t.ipMode,
      address: addressState,
      ...(observedLb === undefined || !ownedBy(observedLb, name, uid) ? {} : { loadBalancer: observed(observedLb) }),
      listeners: listeners.map(observed),
    });
  }

  #vipsOf(owned: Map<Kind, ExistingObject[]>): string[] {
    const lb = owned.get('LoadBalancer')?.[0]?.spec as { vip?: { address?: string }; additionalVips?: { address?: string }[] } | undefined;
    if (lb === undefined) return [];
    return [lb.vip?.address, ...(lb.additionalVips ?? []).map((a) => a.address)].flatMap((a) => (a === undefined ? [] : [canonicalIp(a)]));
  }

  /** Addresses outside `pool` that the Service must not get: other pools' records, other LoadBalancers' VIPs. */
  #takenElsewhere(pool: string, serviceUid: string): Map<string, string> {
    const taken = new Map<string, string>();
    for (const p of this.#caches?.pools.list() ?? []) {
      const name = p.metadata?.name ?? '';
      if (name === pool) continue;
      for (const a of this.#ledger?.allocations(name) ?? []) if (a.serviceUid !== serviceUid) taken.set(canonicalIp(a.address), `Service ${a.service}`);
    }
    for (const lb of this.#caches?.made.get('LoadBalancer')?.list() ?? []) {
      if ((lb.metadata?.ownerReferences ?? []).some((r) => r.uid === serviceUid)) continue;
      const spec = lb.spec as { vip?: { address?: string }; additionalVips?: { address?: string }[] } | undefined;
      for (const a of [spec?.vip?.address, ...(spec?.additionalVips ?? []).map((x) => x.address)]) {
        if (a !== undefined) taken.set(canonicalIp(a), `LoadBalancer ${lb.metadata?.namespace ?? 'default'}/${lb.metadata?.name ?? ''}`);
      }
    }
    return taken;
  }

  /** Everything made for the Service goes, then (once its LoadBalancer is gone) its addresses and finalizer. */
  async #cleanup(key: string, svc: Service, owned: Map<Kind, ExistingObject[]>): Promise<void> {
    const name = svc.metadata?.name ?? '';
    const gone = await this.#release(svc, owned);
    if (!gone) {
      // The engine removes the netns, port and HAProxy, then the LoadBalancer's own finalizer; its delete
      // event brings us back. The timer is for an event lost in a watch restart.
      this.#queue.addAfter(key, 2_000);
      return;
    }
    let current = svc;
    if (hasProviderStatus(svc) && (svc.metadata?.finalizers ?? []).includes(SERVICE_FINALIZER)) {
      const cleared = await this.#services.patchStatus(svc, { loadBalancer: { ingress: null }, conditions: mergeConditions(svc, []) });
      if (cleared === undefined) return;
      current = { ...svc, metadata: { ...svc.metadata, ...cleared } };
    }
    providerCrashPoint();
    const finalizers = current.metadata?.finalizers ?? [];
    if (finalizers.includes(SERVICE_FINALIZER)) {
      const done = await this.#services.patch(current, { metadata: { finalizers: finalizers.filter((f) => f !== SERVICE_FINALIZER) } });
      if (done !== undefined)
        this.#event(
          svc,
          'Normal',
          'DeletedLoadBalancer',
          `LoadBalancer ${svc.metadata?.namespace ?? 'default'}/${name} removed; its addresses are back in their pools`,
        );
    }
  }

  /** Deletes the Service's objects; once no LoadBalancer of it is left, releases its addresses. Whether it did. */
  async #release(svc: Service, owned: Map<Kind, ExistingObject[]>): Promise<boolean> {
    const name = svc.metadata?.name ?? '';
    const uid = svc.metadata?.uid ?? '';
    const actions = planWrites([], owned, name, uid);
    if (actions.length > 0) await this.#writer.apply(actions, name, uid);
    if ((owned.get('LoadBalancer') ?? []).length > 0) return false;
    providerCrashPoint();
    for (const p of this.#caches?.pools.list() ?? []) {
      const pool = p.metadata?.name ?? '';
      if ((this.#ledger?.allocations(pool) ?? []).some((a) => a.serviceUid === uid)) await this.#ledger?.release(pool, uid);
    }
    return true;
  }

  async #releaseOrphans(): Promise<void> {
    const caches = this.#caches;
    const ledger = this.#ledger;
    if (caches === undefined || ledger === undefined) return;
    const uids = new Set(caches.services.list().map((s) => s.metadata?.uid ?? ''));
    for (const p of caches.pools.list()) {
      const pool = p.metadata?.name ?? '';
      for (const a of ledger.allocations(pool)) {
        if (uids.has(a.serviceUid) || Date.now() - Date.parse(a.since) < ORPHAN_GRACE_MS) continue;
        this.#opts.logger.info({ pool, address: a.address, service: a.service }, 'provider: releasing an address whose Service is gone');
        await ledger.release(pool, a.serviceUid);
      }
    }
  }

  // ------------------------------------------------------------------------------------------- writes

  async #writeStatus(svc: Service, input: Omit<StatusInput, 'now'>): Promise<void> {
    const want = wantedServiceStatus({ ...input, now: new Date().toISOString().replace(/\.\d+Z$/, 'Z') });
    if (statusUpToDate(svc, want)) return;
    providerCrashPoint();
    await this.#services.patchStatus(svc, {
      loadBalancer: { ingress: want.ingress.length === 0 ? null : want.ingress },
      conditions: mergeConditions(svc, want.conditions),
    });
    if (want.ingress.length > 0 && (svc.status?.loadBalancer?.ingress ?? []).length === 0) {
      this.#event(svc, 'Normal', 'EnsuredLoadBalancer', `serving ${want.ingress.map((i) => i.ip).join(', ')}`);
    }
  }
}
