// Octavia load balancers → LoadBalancer: the VIP and the additional VIPs (their subnets are not known here).
import { MAX_ADDITIONAL_VIPS } from '../api/v1alpha1/schemas.js';
import { set, type ImportContext } from './octavia-context.js';
import type { Rec } from './octavia-read.js';

export function importLoadBalancer(cx: ImportContext, r: Rec): void {
  if (cx.partial(r)) return;
  const used = new Set(['vip_address']);
  const address = cx.string(r, 'vip_address');
  if (address === undefined) return void cx.skip(r, 'no vip_address');
  const spec: Record<string, unknown> = { vip: { address } };
  cx.common(r, spec, used);
  cx.warn(
    r,
    'vip_subnet_id',
    `the VIP's Neutron subnet${set(r.raw['vip_subnet_id']) ? ` ${String(r.raw['vip_subnet_id'])}` : ''} is not known here: vip.prefixLength defaults to ${address.includes(':') ? 64 : 24} and there is no vip.gateway; set both from \`openstack subnet show\`, and vip.bridge / vip.vlan for this node`,
  );
  used.add('vip_subnet_id');
  additionalVips(cx, r, spec, used);
  if (r.raw['provider'] !== undefined) used.add('provider');
  cx.leftovers(r, used, {
    vip_port_id: 'the Neutron port is not used: nslb plugs its own Open vSwitch port (vip.mac sets its MAC)',
    vip_network_id: 'Neutron networks are not used: the VIP port goes on vip.bridge (vip.vlan for a VLAN)',
    vip_qos_policy_id: 'QoS policies are not carried',
    flavor_id: 'flavors are not carried: every load balancer is one HAProxy in its own netns',
    availability_zone: 'availability zones are not carried: nslb serves a load balancer on the node whose agent reads it',
    vip_vnic_type: 'vNIC types are not carried',
    vip_sg_ids: 'security groups are not carried (Listener.allowedCidrs restricts sources)',
  });
  cx.emit(r, { kind: 'LoadBalancer', metadata: cx.meta(r), spec });
}

/** additional_vips [{subnet_id, ip_address}] → spec.additionalVips [{address}]; subnets are not known here. */
function additionalVips(cx: ImportContext, r: Rec, spec: Record<string, unknown>, used: Set<string>): void {
  const raw = r.raw['additional_vips'];
  if (!Array.isArray(raw) || raw.length === 0) return;
  used.add('additional_vips');
  const addresses = raw
    .map((v: unknown) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)['ip_address'] : undefined))
    .filter((a): a is string => typeof a === 'string' && a !== '');
  const kept = addresses.slice(0, MAX_ADDITIONAL_VIPS);
  if (kept.length > 0) spec['additionalVips'] = kept.map((address) => ({ address }));
  if (kept.length < raw.length) {
    cx.warn(r, 'additional_vips', `${raw.length - kept.length} without an ip_address or beyond nslb's ${MAX_ADDITIONAL_VIPS} dropped`);
  }
  if (kept.length > 0) {
    cx.warn(
      r,
      'additional_vips',
      'their Neutron subnets are not known here: each prefixLength defaults to 24 (IPv4) / 64 (IPv6) and there is no gateway; set them from `openstack subnet show`',
    );
  }
}
