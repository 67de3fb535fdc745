// The PROMETHEUS listener (Octavia 2023.1, DESIGN §8): HAProxy's own exporter, served on the VIP. Each load
// balancer has a HAProxy of its own, so what the exporter reports is this load balancer's frontends, backends
// and servers and nothing of any other.
import type { DesiredListener, DesiredLoadBalancer } from '../desired/model.js';
import { assertSafeToken, CIDR, frontendName, int, matching } from './haproxy-words.js';

/** Where the exporter answers (Prometheus' default path); every other path is 404. */
export const METRICS_PATH = '/metrics';

export function renderPrometheusFrontend(lb: DesiredLoadBalancer, l: DesiredListener, vipHosts: readonly string[]): string[] {
  const lines = [`frontend ${frontendName(assertSafeToken(l.name))}`];
  if (!l.adminStateUp || !lb.adminStateUp) lines.push('    disabled');
  for (const host of vipHosts) lines.push(`    bind ${host}:${int(l.port, 'port')}`);
  lines.push('    mode http', '    option idle-close-on-response');
  lines.push(`    timeout client ${int(l.timeouts.clientData, 'timeouts.clientData')}`);
  if (l.allowedCidrs.length > 0) {
    // At accept time: a scraper outside allowedCidrs never gets an HTTP answer at all.
    lines.push(`    tcp-request connection reject unless { src ${l.allowedCidrs.map((c) => matching(c, CIDR, 'CIDR')).join(' ')} }`);
  }
  lines.push(`    http-request deny deny_status 404 unless { path ${METRICS_PATH} }`);
  lines.push('    http-request use-service prometheus-exporter');
  return lines;
}
