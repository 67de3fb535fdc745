// The addresses of one Service: its families (one, or two for dual stack), and the allocation in the AddressPools
// open to it, preferring what it already holds or serves; what it held and no longer uses goes back.
import type { ServiceSettings } from './annotations.js';
import { parseIp } from '../desired/addresses.js';
import { poolAllows, poolContains, poolFamilies, vipSettings, type Family, type ParsedPool, type VipSettings } from './ipam.js';
import type { Service } from './kube.js';
import type { AddressLedger } from './ledger.js';
import { serviceKey } from './names.js';

export type AddressOutcome = { ok: true; vips: VipSettings[]; pools: string[] } | { ok: false; reason: string; message: string };

/** The Service's address families: one, or two for dual stack (the second optional with PreferDualStack). */
export function serviceFamilies(svc: Service, settings: ServiceSettings): { family: Family; required: boolean; requested?: string }[] {
  if (settings.requestedAddresses !== undefined) {
    return settings.requestedAddresses.map((a) => ({ family: parseIp(a)?.family ?? 4, required: true, requested: a }));
  }
  const fams = (svc.spec?.ipFamilies ?? ['IPv4']).map((f): Family => (f === 'IPv6' ? 6 : 4));
  const policy = svc.spec?.ipFamilyPolicy ?? 'SingleStack';
  const first = fams[0] ?? 4;
  if (policy === 'SingleStack' || fams.length < 2) return [{ family: first, required: true }];
  return [
    { family: first, required: true },
    { family: fams[1]!, required: policy === 'RequireDualStack' },
  ];
}

export async function ensureAddresses(
  ledger: AddressLedger,
  svc: Service,
  settings: ServiceSettings,
  pools: ParsedPool[],
  lbVips: string[],
): Promise<AddressOutcome> {
  const ns = svc.metadata?.namespace ?? 'default';
  const uid = svc.metadata?.uid ?? '';
  const key = serviceKey(ns, svc.metadata?.name ?? '');
  const labels = svc.metadata?.labels ?? {};
  const usable = pools.filter((p) => p.problems.length === 0);
  let open: ParsedPool[];
  if (settings.addressPools !== undefined) {
    open = [];
    for (const n of settings.addressPools) {
      const p = pools.find((x) => x.name === n);
      if (p === undefined) return { ok: false, reason: 'PoolNotFound', message: `AddressPool ${n} (annotation nslb.dev/address-pool) does not exist` };
      if (p.problems.length > 0) return { ok: false, reason: 'PoolInvalid', message: `AddressPool ${n} is not usable: ${p.problems.join('; ')}` };
      if (!poolAllows(p, ns, labels))
        return {
          ok: false,
          reason: 'PoolNotAllowed',
          message: `AddressPool ${n} does not serve Services in namespace ${ns} with these labels (spec.namespaces, spec.serviceSelector)`,
        };
      open.push(p);
    }
  } else open = usable.filter((p) => poolAllows(p, ns, labels));
  const auto = settings.addressPools !== undefined ? open : open.filter((p) => p.autoAssign);
  const held = (family: Family) =>
    usable.flatMap((p) =>
      ledger
        .allocations(p.name)
        .filter((a) => a.serviceUid === uid && parseIp(a.address)?.family === family)
        .map((a) => ({ pool: p, address: a.address })),
    );

  const vips: VipSettings[] = [];
  const used: string[] = [];
  for (const want of serviceFamilies(svc, settings)) {
    // Prefer what the Service already holds, then what its LoadBalancer already serves (a record lost with
    // a deleted pool is written again), then any free address.
    const mine = held(want.family).find((h) => open.includes(h.pool) && (want.requested === undefined || h.address === want.requested));
    const serving = lbVips.find((a) => parseIp(a)?.family === want.family);
    const requested = want.requested ?? mine?.address ?? (serving !== undefined && open.some((p) => poolContains(p, serving)) ? serving : undefined);
    let failure: { reason: string; message: string } | undefined;
    let got: { pool: ParsedPool; address: string } | undefined;
    if (requested !== undefined) {
      const pool = open.find((p) => poolContains(p, requested));
      if (pool === undefined) {
        failure = {
          reason: 'AddressNotInPool',
          message: `${requested} is in no AddressPool open to this Service${open.length === 0 ? ' (none is)' : ` (${open.map((p) => p.name).join(', ')})`}`,
        };
      } else {
        const r = await ledger.allocate(pool, { service: key, serviceUid: uid, family: want.family, requested });
        if (r.ok) got = { pool, address: r.address };
        else failure = { reason: r.reason, message: r.message };
      }
    } else {
      const candidates = auto.filter((p) => poolFamilies(p).includes(want.family));
      if (candidates.length === 0) {
        failure = {
          reason: 'NoAddressPool',
          message: `no AddressPool with IPv${want.family} addresses gives addresses to this Service automatically (namespace ${ns}; see spec.autoAssign, spec.namespaces, spec.serviceSelector)`,
        };
      }
      for (const pool of candidates) {
        const r = await ledger.allocate(pool, { service: key, serviceUid: uid, family: want.family });
        if (r.ok) {
          got = { pool, address: r.address };
          break;
        }
        failure = { reason: r.reason, message: r.message };
        if (r.reason !== 'PoolExhausted') break;
      }
      if (got === undefined && failure?.reason === 'PoolExhausted' && candidates.length > 1) {
        failure = {
          reason: 'PoolExhausted',
          message: `every AddressPool open to this Service is out of IPv${want.family} addresses (${candidates.map((p) => p.name).join(', ')})`,
        };
      }
    }
    if (got === undefined) {
      if (want.required) return { ok: false, reason: failure?.reason ?? 'NoAddress', message: failure?.message ?? 'no address' };
      continue;
    }
    vips.push(vipSettings(got.pool, got.address));
    used.push(got.pool.name);
  }
  // Addresses the Service held and no longer uses (it asked for others, or changed pools) go back.
  const keep = vips.map((v) => v.address);
  for (const p of usable) {
    if (ledger.allocations(p.name).some((a) => a.serviceUid === uid && !keep.includes(a.address))) await ledger.release(p.name, uid, keep);
  }
  return { ok: true, vips, pools: used };
}
