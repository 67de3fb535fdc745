// Builders for DesiredLoadBalancer fixtures with every default filled in the way desired/build.ts fills
// them (DESIGN §1), so that a test states only what it is about.
import type {
  DesiredCertificate,
  DesiredHealthMonitor,
  DesiredL7Policy,
  DesiredL7Rule,
  DesiredListener,
  DesiredLoadBalancer,
  DesiredMember,
  DesiredPool,
} from '../../src/desired/model.js';

export function loadBalancer(overrides: Partial<DesiredLoadBalancer> = {}): DesiredLoadBalancer {
  return {
    key: 'default/web',
    namespace: 'default',
    name: 'web',
    names: { netns: 'nslb-0123456789ab', iface: 'nslb0123456789a' },
    bridge: 'br-int',
    vip: { address: '10.201.0.10', family: 4, prefixLength: 24, gateway: '10.201.0.1', mac: 'fa:16:3e:01:02:03' },
    adminStateUp: true,
    listeners: [],
    pools: [],
    ...overrides,
  };
}

export function listener(name: string, overrides: Partial<DesiredListener> = {}): DesiredListener {
  return {
    name,
    protocol: 'HTTP',
    port: 80,
    connectionLimit: -1,
    timeouts: { clientData: 50000, memberConnect: 5000, memberData: 50000, tcpInspect: 0 },
    adminStateUp: true,
    insertHeaders: { forwardedFor: false, forwardedPort: false, forwardedProto: false },
    allowedCidrs: [],
    l7Policies: [],
    ...overrides,
  };
}

export function pool(name: string, overrides: Partial<DesiredPool> = {}): DesiredPool {
  return {
    name,
    protocol: 'HTTP',
    lbAlgorithm: 'ROUND_ROBIN',
    adminStateUp: true,
    tlsToMembers: false,
    members: [],
    ...overrides,
  };
}

export function member(name: string, address: string, port: number, overrides: Partial<DesiredMember> = {}): DesiredMember {
  return { name, address, port, weight: 1, backup: false, adminStateUp: true, ...overrides };
}

export function monitor(overrides: Partial<DesiredHealthMonitor> = {}): DesiredHealthMonitor {
  return {
    name: 'hm',
    type: 'HTTP',
    delay: 5,
    timeout: 3,
    maxRetries: 2,
    maxRetriesDown: 3,
    httpMethod: 'GET',
    urlPath: '/',
    expectedCodes: '200',
    adminStateUp: true,
    ...overrides,
  };
}

/**
 * A certificate as the builder names it (`<16 hex digits>.pem`). The PEM is left empty: a test that
 * hands the config to HAProxy writes real material under that file name (see writeTestCertificates).
 */
export function certificate(fileName: string): DesiredCertificate {
  return { fileName, pem: '' };
}

export function l7Policy(name: string, overrides: Partial<DesiredL7Policy> = {}): DesiredL7Policy {
  return { name, action: 'REJECT', position: 1, redirectHttpCode: 302, rules: [], ...overrides };
}

export function l7Rule(name: string, overrides: Partial<DesiredL7Rule> = {}): DesiredL7Rule {
  return { name, type: 'PATH', compareType: 'STARTS_WITH', value: '/', invert: false, ...overrides };
}
