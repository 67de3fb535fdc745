// The YAML the benchmark writes into the agent's watched directory: one file per load balancer, each the
// shape issue 5 names (a listener, a pool, its members and a health monitor), in the README's field names.

export const MEMBER_PORT = 8080;

export interface BenchMember {
  /** The member object's name suffix, also what the member server answers (m1, m2, m3). */
  name: string;
  address: string;
  weight?: number;
}

export interface BenchLb {
  namespace: string;
  name: string;
  vip: string;
  prefixLength: number;
  members: readonly BenchMember[];
  lbAlgorithm?: 'ROUND_ROBIN' | 'LEAST_CONNECTIONS' | 'SOURCE_IP';
  /** Listener timeouts.clientData (ms); left to the default when unset. */
  clientDataTimeoutMs?: number;
  /** Without a HealthMonitor (default: with one). */
  noMonitor?: boolean;
}

/**
 * The health monitor every benchmark load balancer has. A 5 s delay keeps 500 load balancers' checks (two
 * members each: 200 checks a second) from being a load of their own on a 2-core machine.
 */
export const MONITOR = { delay: 5, timeout: 2, maxRetries: 2, maxRetriesDown: 2, urlPath: '/healthz' } as const;

export function lbYaml(lb: BenchLb): string {
  const meta = (name: string) => `metadata: { name: ${name}, namespace: ${lb.namespace} }`;
  const pool = `${lb.name}-pool`;
  const docs = [
    `apiVersion: nslb.dev/v1alpha1
kind: LoadBalancer
${meta(lb.name)}
spec: { vip: { address: ${lb.vip}, prefixLength: ${lb.prefixLength} } }`,
    `apiVersion: nslb.dev/v1alpha1
kind: Listener
${meta(`${lb.name}-http`)}
spec:
  loadBalancer: ${lb.name}
  protocol: HTTP
  port: 80
  defaultPool: ${pool}${lb.clientDataTimeoutMs === undefined ? '' : `\n  timeouts: { clientData: ${lb.clientDataTimeoutMs} }`}`,
    `apiVersion: nslb.dev/v1alpha1
kind: Pool
${meta(pool)}
spec: { loadBalancer: ${lb.name}, protocol: HTTP, lbAlgorithm: ${lb.lbAlgorithm ?? 'ROUND_ROBIN'} }`,
    ...lb.members.map(
      (m) => `apiVersion: nslb.dev/v1alpha1
kind: Member
${meta(`${lb.name}-${m.name}`)}
spec: { pool: ${pool}, address: ${m.address}, port: ${MEMBER_PORT}${m.weight === undefined ? '' : `, weight: ${m.weight}`} }`,
    ),
    ...(lb.noMonitor === true
      ? []
      : [
          `apiVersion: nslb.dev/v1alpha1
kind: HealthMonitor
${meta(`${lb.name}-hm`)}
spec:
  pool: ${pool}
  type: HTTP
  delay: ${MONITOR.delay}
  timeout: ${MONITOR.timeout}
  maxRetries: ${MONITOR.maxRetries}
  maxRetriesDown: ${MONITOR.maxRetriesDown}
  urlPath: ${MONITOR.urlPath}
  expectedCodes: "200"`,
        ]),
  ];
  return `---\n${docs.join('\n---\n')}\n`;
}

/**
 * The naive baseline's HAProxy config for one load balancer: what the neutron-lbaas namespace driver
 * rendered (one frontend, one backend with an HTTP check), minus logging and stats.
 */
export function baselineHaproxyConfig(opts: { vip: string; members: readonly string[]; socket: string }): string {
  return [
    'global',
    '    daemon',
    '    maxconn 4096',
    `    stats socket ${opts.socket} mode 600 level admin`,
    'defaults',
    '    mode http',
    '    option redispatch',
    '    retries 3',
    '    timeout connect 5000ms',
    '    timeout client 50000ms',
    '    timeout server 50000ms',
    // As nslb renders the monitor's timeout (and Octavia did): without it a check may take up to `inter`.
    `    timeout check ${MONITOR.timeout}s`,
    'frontend fe',
    `    bind ${opts.vip}:80`,
    '    default_backend be',
    'backend be',
    '    balance roundrobin',
    `    option httpchk GET ${MONITOR.urlPath}`,
    '    http-check expect status 200',
    ...opts.members.map(
      (address, i) =>
        `    server m${i + 1} ${address}:${MEMBER_PORT} weight 1 check inter ${MONITOR.delay}s fall ${MONITOR.maxRetriesDown} rise ${MONITOR.maxRetries}`,
    ),
    '',
  ].join('\n');
}
