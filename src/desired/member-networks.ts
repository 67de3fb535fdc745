// Member networks (DESIGN §8, Octavia's member subnet_id): a load balancer's extra ports, one per segment its
// members live on. Checked here (every source alike) and assembled into the desired model; a member names its
// network, or is placed on the one whose prefix (or one of whose routes) holds its address.
import type { ApiObject, MemberNetwork } from '../api/v1alpha1/types.js';
import { bitsOf, canonicalCidr, canonicalIp, inPrefix, networkOf, parseIp } from './addresses.js';
import { SPEC_DEFAULTS } from './defaults.js';
import type { DesiredMemberNetwork } from './model.js';
import { memberNetworkIface, memberNetworkMac } from './names.js';
import { find, type Index, type Problems } from './object-index.js';

export function checkMemberNetworks(ix: Index, problems: Problems): void {
  for (const lb of ix.loadBalancers) {
    const nets = lb.spec.memberNetworks ?? [];
    const names = new Map<string, number>();
    const vips = new Set([lb.spec.vip.address, ...(lb.spec.additionalVips ?? []).map((a) => a.address)].map((a) => canonicalIp(a)));
    nets.forEach((n, i) => {
      const path = `/spec/memberNetworks/${i}`;
      const first = names.get(n.name);
      if (first !== undefined) problems.add(lb, 'InvalidSpec', `name "${n.name}" is already used by /spec/memberNetworks/${first}`, `${path}/name`);
      else names.set(n.name, i);
      const address = parseIp(n.address);
      if (address === undefined) {
        problems.add(lb, 'InvalidSpec', `must be an IPv4 or IPv6 address (got "${n.address}")`, `${path}/address`);
        return;
      }
      if (vips.has(canonicalIp(n.address)))
        problems.add(lb, 'InvalidSpec', `must differ from the VIP and the additional VIPs (got ${n.address})`, `${path}/address`);
      const prefixLength = n.prefixLength ?? SPEC_DEFAULTS.prefixLength[address.family];
      if (prefixLength > bitsOf(address.family)) {
        problems.add(
          lb,
          'InvalidSpec',
          `must be at most ${bitsOf(address.family)} for an IPv${address.family} address (got ${prefixLength})`,
          `${path}/prefixLength`,
        );
        return;
      }
      (n.routes ?? []).forEach((r, j) => {
        const dest = canonicalCidr(r.destination);
        const destFamily = dest === undefined ? undefined : parseIp(dest.slice(0, dest.indexOf('/')))?.family;
        if (destFamily !== address.family) {
          problems.add(
            lb,
            'InvalidSpec',
            `must be an IPv${address.family} CIDR like the network's address (got "${r.destination}")`,
            `${path}/routes/${j}/destination`,
          );
        }
        const gw = parseIp(r.gateway);
        if (gw === undefined || gw.family !== address.family || !inPrefix(gw, address, prefixLength)) {
          problems.add(lb, 'InvalidSpec', `must be inside the network ${networkOf(address, prefixLength)} (got "${r.gateway}")`, `${path}/routes/${j}/gateway`);
        }
      });
    });
  }
  for (const m of ix.members) {
    const pool = find(ix, 'Pool', m.metadata.namespace, m.spec.pool);
    const lb = pool === undefined ? undefined : find(ix, 'LoadBalancer', m.metadata.namespace, pool.spec.loadBalancer);
    if (lb === undefined || m.spec.network === undefined) continue;
    const net = (lb.spec.memberNetworks ?? []).find((n) => n.name === m.spec.network);
    if (net === undefined) {
      const known = (lb.spec.memberNetworks ?? []).map((n) => n.name);
      problems.add(
        m,
        'InvalidReference',
        `load balancer "${lb.metadata.name}" has no member network "${m.spec.network}" (${known.length === 0 ? 'it has none' : `it has ${known.join(', ')}`})`,
        '/spec/network',
      );
    } else if (!reaches(net, m.spec.address)) {
      problems.add(m, 'InvalidSpec', `${m.spec.address} is neither inside member network "${net.name}" nor behind one of its routes`, '/spec/address');
    }
  }
}

function prefixOf(n: MemberNetwork): { family: 4 | 6; prefixLength: number } | undefined {
  const a = parseIp(n.address);
  return a === undefined ? undefined : { family: a.family, prefixLength: n.prefixLength ?? SPEC_DEFAULTS.prefixLength[a.family] };
}

/** Whether the network holds the address itself (its prefix) or routes to it. */
function reaches(n: MemberNetwork, address: string): boolean {
  const a = parseIp(address);
  const own = parseIp(n.address);
  const p = prefixOf(n);
  if (a === undefined || own === undefined || p === undefined || a.family !== own.family) return false;
  if (inPrefix(a, own, p.prefixLength)) return true;
  return (n.routes ?? []).some((r) => {
    const [dest, bits] = r.destination.split('/');
    const d = dest === undefined ? undefined : parseIp(dest);
    return d !== undefined && d.family === a.family && inPrefix(a, d, Number(bits));
  });
}

/** The network a member is on: the one it names, else the first whose prefix holds it, else one that routes to it. */
export function memberNetworkOf(lb: ApiObject<'LoadBalancer'>, member: { address: string; network?: string }): string | undefined {
  const nets = lb.spec.memberNetworks ?? [];
  if (member.network !== undefined) return member.network;
  const a = parseIp(member.address);
  const direct = nets.find((n) => {
    const own = parseIp(n.address);
    const p = prefixOf(n);
    return a !== undefined && own !== undefined && p !== undefined && own.family === a.family && inPrefix(a, own, p.prefixLength);
  });
  return (direct ?? nets.find((n) => reaches(n, member.address)))?.name;
}

export function desiredMemberNetworks(lb: ApiObject<'LoadBalancer'>, defaultBridge: string): DesiredMemberNetwork[] | undefined {
  const nets = lb.spec.memberNetworks ?? [];
  if (nets.length === 0) return undefined;
  const { namespace, name } = lb.metadata;
  return nets.map((n, index) => {
    const family = parseIp(n.address)?.family ?? 4;
    return {
      name: n.name,
      index,
      iface: memberNetworkIface(namespace, name, index),
      bridge: n.bridge ?? lb.spec.vip.bridge ?? defaultBridge,
      ...(n.vlan === undefined ? {} : { vlan: n.vlan }),
      ...(n.mtu === undefined ? {} : { mtu: n.mtu }),
      mac: memberNetworkMac(namespace, name, index),
      address: canonicalIp(n.address),
      family,
      prefixLength: n.prefixLength ?? SPEC_DEFAULTS.prefixLength[family],
      routes: (n.routes ?? []).map((r) => ({ destination: canonicalCidr(r.destination) ?? r.destination, gateway: canonicalIp(r.gateway) })),
    };
  });
}
