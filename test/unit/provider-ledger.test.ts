// The two things that keep several providers honest, against the in-test API server: the address ledger
// (AddressPool status written under optimistic concurrency: never one address twice, whoever writes) and the
// Lease that lets one provider at a time work.
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePool } from '../../src/provider/ipam.js';
import { LeaderElector } from '../../src/kube/leader.js';
import { AddressLedger, type RawPool } from '../../src/provider/ledger.js';
import type { FakeApiServer, Obj } from '../support/fake-apiserver.js';
import { addressPool } from '../support/k8s-objects.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const V = 'nslb.dev/v1alpha1';
let api: FakeApiServer;
let kc: KubeConfig;

beforeAll(async () => {
  ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo' }));
});

afterAll(async () => {
  await api.stop();
});

/** A ledger whose informer is stuck at `frozen`: every write it makes from that copy is a conflict to sort out. */
function ledger(frozen: () => RawPool | undefined): AddressLedger {
  return new AddressLedger({ kubeConfig: kc, cached: () => frozen(), takenElsewhere: () => new Map() });
}

describe('AddressLedger', () => {
  it('two providers allocating at once from one pool never give an address twice (409s re-read and redone)', async () => {
    api.create(addressPool('shared', { addresses: ['10.20.0.1-10.20.0.20'] }));
    const stale = api.get(V, 'addresspools', '', 'shared') as RawPool;
    const pool = parsePool('shared', stale.spec);
    const a = ledger(() => stale);
    const b = ledger(() => stale);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).allocate(pool, { service: `default/s${i}`, serviceUid: `u${i}`, family: 4 })),
    );
    const addresses = results.map((r) => (r.ok ? r.address : r.reason));
    expect(new Set(addresses).size).toBe(20);
    expect(addresses.every((x) => x.startsWith('10.20.0.'))).toBe(true);
    const record = (api.get(V, 'addresspools', '', 'shared') as Obj).status;
    expect(record.assigned).toBe(20);
    expect(new Set(record.allocations.map((x: Obj) => x.address)).size).toBe(20);
    expect(a.counts.conflicts + b.counts.conflicts).toBeGreaterThan(0);
    // Full: a 21st is refused, by either.
    expect(await b.allocate(pool, { service: 'default/late', serviceUid: 'late', family: 4 })).toMatchObject({ ok: false, reason: 'PoolExhausted' });
    // A second ask of one Service is its first answer (idempotent), with no write.
    const writes = a.counts.writes;
    const again = await a.allocate(pool, { service: 'default/s4', serviceUid: 'u4', family: 4 });
    expect(again).toEqual({ ok: true, address: addresses[4], existing: true });
    expect(a.counts.writes).toBe(writes);
  });

  it('merges what arrives during a write: 200 allocations cost a handful of writes, and a release frees exactly one Service', async () => {
    api.create(addressPool('big', { addresses: ['10.21.0.0/24'] }));
    let latest = api.get(V, 'addresspools', '', 'big') as RawPool;
    const l = new AddressLedger({ kubeConfig: kc, cached: () => latest, takenElsewhere: () => new Map([['10.21.0.7', 'LoadBalancer x/y']]) });
    const pool = parsePool('big', latest.spec);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => l.allocate(pool, { service: `default/s${i}`, serviceUid: `u${i}`, family: 4 })));
    const addresses = results.map((r) => (r.ok ? r.address : ''));
    expect(new Set(addresses).size).toBe(200);
    expect(addresses).not.toContain('10.21.0.7');
    expect(addresses).not.toContain('10.21.0.0');
    expect(l.counts.writes).toBeLessThan(20);
    latest = api.get(V, 'addresspools', '', 'big') as RawPool;
    await l.release('big', 'u3');
    const after = (api.get(V, 'addresspools', '', 'big') as Obj).status.allocations as Obj[];
    expect(after).toHaveLength(199);
    expect(after.some((x) => x.serviceUid === 'u3')).toBe(false);
  });

  it('a pool that is gone is an error for the caller, not a silent success', async () => {
    const l = ledger(() => undefined);
    await expect(l.allocate(parsePool('nope', { addresses: ['10.22.0.0/30'] }), { service: 'default/a', serviceUid: 'a', family: 4 })).rejects.toThrow(
      /AddressPool nope does not exist/,
    );
  });
});

describe('LeaderElector', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const elector = (identity: string, log: string[], leaseSeconds = 1) =>
    new LeaderElector({
      kubeConfig: kc,
      role: 'provider',
      namespace: 'nslb-system',
      name: 'nslb-provider',
      identity,
      leaseSeconds,
      logger: pino({ level: 'silent' }),
      onStartedLeading: async () => void log.push(`${identity} start`),
      onStoppedLeading: async () => void log.push(`${identity} stop`),
    });

  it('one leader at a time; a clean stop hands over at once', async () => {
    // A 10 s Lease: node-b leads within the wait below (8 s at most) only because node-a released the Lease on
    // its stop, not because the Lease expired (no clock is compared: the bound is the wait itself).
    const log: string[] = [];
    const a = elector('node-a', log, 10);
    a.start();
    for (let i = 0; i < 250 && !a.leading; i++) await sleep(20);
    const b = elector('node-b', log, 10);
    b.start();
    await sleep(1500);
    expect([a.leading, b.leading]).toEqual([true, false]);
    await a.stop();
    for (let i = 0; i < 400 && !b.leading; i++) await sleep(20);
    expect(b.leading).toBe(true);
    expect(log).toEqual(['node-a start', 'node-a stop', 'node-b start']);
    await b.stop();
  });

  it('a Lease held by an agent that stopped renewing is taken after a lease duration, not before', async () => {
    const lease = api.get('coordination.k8s.io/v1', 'leases', 'nslb-system', 'nslb-provider') as Obj;
    api.update({ ...lease, spec: { ...lease.spec, holderIdentity: 'ghost', leaseDurationSeconds: 1, renewTime: new Date().toISOString() } });
    const log: string[] = [];
    const c = elector('node-c', log);
    const t = Date.now();
    c.start();
    await sleep(500);
    expect(c.leading).toBe(false);
    for (let i = 0; i < 150 && !c.leading; i++) await sleep(20);
    expect(c.leading).toBe(true);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1000);
    const held = api.get('coordination.k8s.io/v1', 'leases', 'nslb-system', 'nslb-provider') as Obj;
    expect(held.spec.holderIdentity).toBe('node-c');
    expect(held.spec.leaseTransitions).toBeGreaterThanOrEqual(2);
    await c.stop();
  });

  it('a restarted agent takes its own Lease back at once', async () => {
    const lease = api.get('coordination.k8s.io/v1', 'leases', 'nslb-system', 'nslb-provider') as Obj;
    api.update({ ...lease, spec: { ...lease.spec, holderIdentity: 'node-d', leaseDurationSeconds: 15, renewTime: new Date().toISOString() } });
    const d = elector('node-d', []);
    d.start();
    for (let i = 0; i < 25 && !d.leading; i++) await sleep(20);
    expect(d.leading).toBe(true);
    await d.stop();
  });
});
