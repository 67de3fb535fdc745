// Octavia listeners → Listener: protocol and port, limits and timeouts, inserted headers, allowed CIDRs, and the TLS
// of a TERMINATED_HTTPS listener, whose Barbican secrets become files next to the YAML.
import { INSERT_HEADERS, LISTENER_PROTOCOLS } from '../api/v1alpha1/types.js';
import { isObj, idList, type Rec } from './octavia-read.js';
import { set, type ImportContext } from './octavia-context.js';

function truthy(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  return undefined;
}

/** insert_headers as the API gives it (an object of "true" strings) or as the CLI prints it ("K=V, K=V"). */
function headerMap(v: unknown): Record<string, unknown> {
  if (isObj(v)) return v;
  if (typeof v !== 'string') return {};
  return Object.fromEntries(
    v
      .split(/[,\n]/)
      .map((p) => p.trim())
      .filter((p) => p.includes('='))
      .map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()]),
  );
}

export function importListener(cx: ImportContext, r: Rec): void {
  if (cx.partial(r)) return;
  const used = new Set([
    'protocol',
    'protocol_port',
    'default_pool_id',
    'connection_limit',
    'timeout_client_data',
    'timeout_member_connect',
    'timeout_member_data',
    'timeout_tcp_inspect',
    'insert_headers',
    'allowed_cidrs',
    'default_tls_container_ref',
    'sni_container_refs',
    'client_authentication',
    'client_ca_tls_container_ref',
    'client_crl_container_ref',
    'tls_versions',
    'tls_ciphers',
    'alpn_protocols',
    'hsts_max_age',
    'hsts_include_subdomains',
    'hsts_preload',
  ]);
  const lb = cx.emittedParent(r, 'loadbalancer', cx.parent(r, 'loadbalancer', ['loadbalancers', 'loadbalancer_id'], 'listeners'), 'loadbalancers');
  if (lb === undefined) return;
  const protocol = cx.string(r, 'protocol');
  if (protocol === undefined || !(LISTENER_PROTOCOLS as readonly string[]).includes(protocol)) {
    return void cx.skip(r, `protocol ${JSON.stringify(protocol ?? null)} is not supported (nslb listeners: ${LISTENER_PROTOCOLS.join(', ')})`);
  }
  const port = cx.number(r, 'protocol_port');
  if (port === undefined) return void cx.skip(r, 'no protocol_port');
  const spec: Record<string, unknown> = { loadBalancer: lb, protocol, port };
  const poolId = cx.string(r, 'default_pool_id') ?? (isObj(r.raw['default_pool']) ? (r.raw['default_pool']['id'] as string | undefined) : undefined);
  if (poolId !== undefined && protocol === 'PROMETHEUS') {
    cx.warn(r, 'default_pool_id', "a PROMETHEUS listener answers with the load balancer's own metrics; dropped");
  } else if (poolId !== undefined) {
    const pool = cx.emitted.get(`pool:${poolId}`);
    if (pool !== undefined) spec['defaultPool'] = pool;
    else cx.warn(r, 'default_pool_id', `pool ${poolId} was not imported: no defaultPool (requests get 503)`);
  }
  const limit = cx.number(r, 'connection_limit');
  const kernel = protocol === 'UDP' || protocol === 'SCTP';
  if (limit !== undefined && limit !== -1) {
    if (kernel) cx.warn(r, 'connection_limit', `${limit}: the kernel forwards ${protocol} flow by flow, with no limit; dropped`);
    else spec['connectionLimit'] = limit;
  }
  const timeouts: Record<string, number> = {};
  for (const [field, key, dflt] of [
    ['timeout_client_data', 'clientData', 50000],
    ['timeout_member_connect', 'memberConnect', 5000],
    ['timeout_member_data', 'memberData', 50000],
    ['timeout_tcp_inspect', 'tcpInspect', 0],
  ] as const) {
    const v = cx.number(r, field);
    if (v !== undefined && v !== dflt) timeouts[key] = v;
  }
  if (Object.keys(timeouts).length > 0) spec['timeouts'] = timeouts;
  const headers: Record<string, boolean> = {};
  for (const [h, v] of Object.entries(headerMap(r.raw['insert_headers']))) {
    if (!(INSERT_HEADERS as readonly string[]).includes(h)) {
      cx.warn(r, `insert_headers.${h}`, `not a header nslb inserts (${INSERT_HEADERS.join(', ')}); dropped`);
      continue;
    }
    const b = truthy(v);
    if (b === undefined) cx.warn(r, `insert_headers.${h}`, `${JSON.stringify(v)} is not true or false; dropped`);
    else if (b) headers[h] = true;
  }
  if (Object.keys(headers).length > 0) spec['insertHeaders'] = headers;
  const cidrs = r.raw['allowed_cidrs'];
  if (Array.isArray(cidrs) && cidrs.length > 0) spec['allowedCidrs'] = cidrs;
  if (protocol === 'TERMINATED_HTTPS') spec['tls'] = listenerTls(cx, r);
  else {
    for (const f of ['default_tls_container_ref', 'sni_container_refs', 'client_ca_tls_container_ref', 'client_crl_container_ref']) {
      if (set(r.raw[f])) cx.warn(r, f, `only TERMINATED_HTTPS listeners use it; dropped for ${protocol}`);
    }
  }
  cx.common(r, spec, used);
  cx.leftovers(r, used);
  cx.emit(r, { kind: 'Listener', metadata: cx.meta(r), spec });
}

function listenerTls(cx: ImportContext, r: Rec): Record<string, unknown> {
  const name = cx.names.get(`listener:${r.id}`)!;
  const tls: Record<string, unknown> = { certificateFile: `certs/${name}.crt`, keyFile: `certs/${name}.key` };
  cx.warn(
    r,
    'default_tls_container_ref',
    `${set(r.raw['default_tls_container_ref']) ? `Barbican secret ${String(r.raw['default_tls_container_ref'])}` : 'no certificate given'}: put the certificate chain and key (PEM) in certs/${name}.crt and certs/${name}.key next to the YAML`,
  );
  const sni = idList(r.raw['sni_container_refs']);
  if (sni.length > 0) {
    tls['sniCertificates'] = sni.map((_, i) => ({ certificateFile: `certs/${name}-sni-${i + 1}.crt`, keyFile: `certs/${name}-sni-${i + 1}.key` }));
    for (const [i, ref] of sni.entries())
      cx.warn(r, `sni_container_refs[${i}]`, `Barbican secret ${ref}: put it (PEM) in certs/${name}-sni-${i + 1}.crt and .key`);
  }
  const auth = cx.string(r, 'client_authentication');
  if (auth !== undefined && auth !== 'NONE') tls['clientAuthentication'] = auth;
  if (set(r.raw['client_ca_tls_container_ref'])) {
    tls['clientCaFile'] = `certs/${name}-client-ca.pem`;
    cx.warn(
      r,
      'client_ca_tls_container_ref',
      `Barbican secret ${String(r.raw['client_ca_tls_container_ref'])}: put the client CA bundle (PEM) in certs/${name}-client-ca.pem`,
    );
  }
  if (set(r.raw['client_crl_container_ref'])) {
    tls['clientCrlFile'] = `certs/${name}-client-crl.pem`;
    cx.warn(r, 'client_crl_container_ref', `Barbican secret ${String(r.raw['client_crl_container_ref'])}: put the CRL (PEM) in certs/${name}-client-crl.pem`);
  }
  cx.tlsTuning(r, tls);
  const maxAge = cx.number(r, 'hsts_max_age');
  if (maxAge !== undefined) {
    tls['hsts'] = {
      maxAge,
      ...(r.raw['hsts_include_subdomains'] === true ? { includeSubdomains: true } : {}),
      ...(r.raw['hsts_preload'] === true ? { preload: true } : {}),
    };
  }
  return tls;
}
