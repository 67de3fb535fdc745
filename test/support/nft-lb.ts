// Builders of NftLoadBalancer models for the nft renderer's tests: defaults that make a working UDP load
// balancer, overridden field by field.
import type { NftListener, NftLoadBalancer, NftMember, NftPool } from '../../src/plan/nft-ruleset.js';

export function nftMember(name: string, address: string, port: number, over: Partial<NftMember> = {}): NftMember {
  return { name, address, port, weight: 1, backup: false, adminStateUp: true, health: 'NO_CHECK', ...over };
}

export function nftPool(name: string, members: NftMember[], over: Partial<NftPool> = {}): NftPool {
  return { name, protocol: 'UDP', lbAlgorithm: 'ROUND_ROBIN', adminStateUp: true, members, ...over };
}

export function nftListener(name: string, port: number, defaultPool: string | undefined, over: Partial<NftListener> = {}): NftListener {
  return { name, protocol: 'UDP', port, allowedCidrs: [], idleTimeoutSeconds: 50, defaultPool, adminStateUp: true, ...over };
}

export function nftLb(over: Partial<NftLoadBalancer> = {}): NftLoadBalancer {
  return { namespace: 'default', name: 'dns', vips: ['10.210.0.10'], listeners: [], pools: [], ...over };
}
