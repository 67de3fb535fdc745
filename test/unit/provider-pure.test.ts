// The provider's pure pieces: annotations read into settings, the write plan, and the Service status.
import { describe, expect, it } from 'vitest';
import { parseServiceSettings } from '../../src/provider/annotations.js';
import { isOurs } from '../../src/provider/controller.js';
import { fitName, memberName } from '../../src/provider/names.js';
import { serving, statusUpToDate, wantedServiceStatus, type StatusInput } from '../../src/provider/service-status.js';
import type { DesiredObject } from '../../src/provider/translate.js';
import { planWrites, type ExistingObject } from '../../src/provider/writer.js';

describe('parseServiceSettings', () => {
  it('defaults, as cloud-provider-openstack has them', () => {
    const { settings, problems, unknown } = parseServiceSettings({});
    expect(problems).toEqual([]);
    expect(unknown).toEqual([]);
    expect(settings).toEqual({
      xForwardedFor: false,
      tlsPorts: [443],
      lbMethod: 'ROUND_ROBIN',
      healthMonitor: true,
      monitor: { delay: 5, timeout: 3, maxRetries: 1, maxRetriesDown: 3 },
      timeouts: {},
    });
  });

  it('every annotation, read', () => {
    const { settings, problems } = parseServiceSettings({
      'nslb.dev/address-pool': 'v4-pool,v6-pool',
      'nslb.dev/loadBalancerIPs': '10.0.0.5, 2001:DB8::5',
      'nslb.dev/members': 'endpoints',
      'nslb.dev/x-forwarded-for': 'true',
      'nslb.dev/tls-secret': 'web-tls',
      'nslb.dev/tls-ports': '443,8443',
      'nslb.dev/proxy-protocol': 'v2',
      'nslb.dev/topology': 'active_standby',
      'nslb.dev/lb-method': 'SOURCE_IP',
      'nslb.dev/health-monitor': 'false',
      'nslb.dev/health-monitor-delay': '10',
      'nslb.dev/health-monitor-timeout': '4',
      'nslb.dev/health-monitor-max-retries': '2',
      'nslb.dev/health-monitor-max-retries-down': '5',
      'nslb.dev/timeout-client-data': '60000',
      'nslb.dev/timeout-member-connect': '3000',
      'nslb.dev/timeout-member-data': '60000',
      'nslb.dev/timeout-tcp-inspect': '0',
      'nslb.dev/connection-limit': '-1',
      'service.beta.kubernetes.io/load-balancer-source-ranges': '10.0.0.0/8,fd00::/8',
    });
    expect(problems).toEqual([]);
    expect(settings).toMatchObject({
      addressPools: ['v4-pool', 'v6-pool'],
      requestedAddresses: ['10.0.0.5', '2001:db8::5'],
      members: 'Endpoints',
      tlsSecret: 'web-tls',
      tlsPorts: [443, 8443],
      proxyProtocol: 'v2',
      topology: 'ACTIVE_STANDBY',
      lbMethod: 'SOURCE_IP',
      healthMonitor: false,
      monitor: { delay: 10, timeout: 4, maxRetries: 2, maxRetriesDown: 5 },
      timeouts: { clientData: 60000, memberConnect: 3000, memberData: 60000, tcpInspect: 0 },
      connectionLimit: -1,
      sourceRanges: ['10.0.0.0/8', 'fd00::/8'],
    });
  });

  it('spec.loadBalancerIP when the annotation is absent; the annotation wins', () => {
    expect(parseServiceSettings({}, '10.1.1.1').settings.requestedAddresses).toEqual(['10.1.1.1']);
    expect(parseServiceSettings({ 'nslb.dev/loadBalancerIPs': '10.2.2.2' }, '10.1.1.1').settings.requestedAddresses).toEqual(['10.2.2.2']);
  });

  it('each wrong annotation is named with what it must be; unknown nslb.dev/ ones are reported', () => {
    const { problems, unknown } = parseServiceSettings({
      'nslb.dev/loadBalancerIPs': '10.0.0.1,10.0.0.2',
      'nslb.dev/proxy-protocol': 'maybe',
      'nslb.dev/health-monitor-delay': '2',
      'nslb.dev/health-monitor-timeout': '3',
      'nslb.dev/lb-method': 'RANDOM',
      'nslb.dev/tls-ports': '443',
      'nslb.dev/connection-limit': 'lots',
      'service.beta.kubernetes.io/load-balancer-source-ranges': '10.0.0.0/33',
      'nslb.dev/proxy-protocl': 'v2',
      'example.com/other': 'x',
    });
    expect(problems).toEqual([
      'annotation nslb.dev/lb-method: must be one of ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP (got "RANDOM")',
      'nslb.dev/loadBalancerIPs: must be one address, or two of different families separated by a comma (got "10.0.0.1,10.0.0.2")',
      'annotation nslb.dev/tls-ports: needs nslb.dev/tls-secret',
      'annotation nslb.dev/proxy-protocol: must be "true", "v1", "v2" or "false" (got "maybe")',
      'annotation nslb.dev/health-monitor-timeout: must be at most the delay (2 s; got 3)',
      'annotation nslb.dev/connection-limit: must be an integer from -1 to 1000000 (got "lots")',
      'annotation service.beta.kubernetes.io/load-balancer-source-ranges: must be CIDRs separated by commas (got "10.0.0.0/33")',
    ]);
    expect(unknown).toEqual(['nslb.dev/proxy-protocl']);
  });
});

describe('isOurs', () => {
  const svc = (type: string, loadBalancerClass?: string) => ({ spec: { type, ...(loadBalancerClass === undefined ? {} : { loadBalancerClass }) } });
  it('type LoadBalancer of class nslb.dev/haproxy; without a class only when the flag says so; never another class or type', () => {
    expect(isOurs(svc('LoadBalancer', 'nslb.dev/haproxy'), false)).toBe(true);
    expect(isOurs(svc('LoadBalancer'), false)).toBe(false);
    expect(isOurs(svc('LoadBalancer'), true)).toBe(true);
    expect(isOurs(svc('LoadBalancer', 'metallb.io/metallb'), true)).toBe(false);
    expect(isOurs(svc('NodePort', 'nslb.dev/haproxy'), true)).toBe(false);
  });
});

describe('names', () => {
  it('stay DNS labels of at most 63 characters, unique by a hash when cut', () => {
    const long = 'x'.repeat(60);
    expect(fitName('web', 'tcp', '80')).toBe('web-tcp-80');
    expect(fitName(long, 'tcp', '80')).toHaveLength(63);
    expect(fitName(long, 'tcp', '80')).not.toBe(fitName(long, 'tcp', '81'));
    expect(memberName('web', 'TCP', 80, '10.0.0.1', 30080)).toMatch(/^web-tcp-80-[0-9a-f]{10}$/);
  });
});

const UID = 'u-1';
const owner = [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: UID, controller: true, blockOwnerDeletion: true }];
const desired = (kind: DesiredObject['kind'], name: string, spec: object): DesiredObject => ({
  apiVersion: 'nslb.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'default', labels: { 'nslb.dev/service': 'web' }, ownerReferences: owner },
  spec,
});
const existing = (d: DesiredObject, extra: Partial<NonNullable<ExistingObject['metadata']>> = {}, spec: object = d.spec): ExistingObject => ({
  metadata: { ...d.metadata, uid: `uid-${d.metadata.name}`, resourceVersion: '7', ...extra },
  spec,
});

describe('planWrites', () => {
  const lb = desired('LoadBalancer', 'web', { vip: { address: '10.0.0.1' } });
  const m1 = desired('Member', 'web-m1', { pool: 'p', address: '10.1.0.1', port: 30080 });
  const m2 = desired('Member', 'web-m2', { pool: 'p', address: '10.1.0.2', port: 30080 });

  it('creates what is missing (parents first), leaves what matches, updates what differs', () => {
    const plan = planWrites([m1, lb, m2], new Map([['Member', [existing(m1), existing(m2, {}, { pool: 'p', address: '10.1.0.2', port: 1 })]]]), 'web', UID);
    expect(plan.map((a) => `${a.op} ${a.op === 'delete' ? a.name : a.object.metadata.name}`)).toEqual(['create web', 'update web-m2']);
    expect(plan[1]).toMatchObject({ op: 'update', resourceVersion: '7' });
  });

  it('deletes objects no longer desired (children first) and those of an earlier Service of the same name', () => {
    const stale = existing(lb, { ownerReferences: [{ ...owner[0]!, uid: 'old' }] });
    const plan = planWrites(
      [lb],
      new Map([
        ['LoadBalancer', [stale]],
        ['Member', [existing(m1)]],
      ]),
      'web',
      UID,
    );
    expect(plan.map((a) => `${a.op} ${a.op === 'delete' ? `${a.kind}/${a.name} ${a.uid}` : a.object.metadata.name}`)).toEqual([
      'delete Member/web-m1 uid-web-m1',
      'delete LoadBalancer/web uid-web',
      'create web',
    ]);
  });

  it('a member change is a member-only plan', () => {
    const plan = planWrites(
      [lb, m1, m2],
      new Map([
        ['LoadBalancer', [existing(lb)]],
        ['Member', [existing(m1)]],
      ]),
      'web',
      UID,
    );
    expect(plan).toEqual([{ op: 'create', object: m2 }]);
  });
});

describe('Service status', () => {
  const service = { metadata: { name: 'web', namespace: 'default', generation: 3 }, spec: {}, status: {} };
  const lbUp = { name: 'web', generation: 1, status: { provisioningStatus: 'ACTIVE' as const, observedGeneration: 1, vip: '10.0.0.1' } };
  const listenerUp = {
    name: 'web-tcp-80',
    generation: 2,
    status: { provisioningStatus: 'ACTIVE' as const, operatingStatus: 'ONLINE' as const, observedGeneration: 2 },
  };
  const base: StatusInput = {
    service,
    now: '2026-01-01T00:00:00Z',
    address: { ok: true, addresses: ['10.0.0.1'], pools: ['p'] },
    served: [{ port: 80, protocol: 'TCP' }],
    refused: [],
    ipMode: 'VIP',
    loadBalancer: lbUp,
    listeners: [listenerUp],
  };

  it('ingress only once the LoadBalancer is ACTIVE with the VIP and every Listener is ACTIVE and open', () => {
    expect(serving(lbUp, [listenerUp], 1, ['10.0.0.1'])).toBe(true);
    expect(serving({ ...lbUp, status: { ...lbUp.status, vip: '10.0.0.9' } }, [listenerUp], 1, ['10.0.0.1'])).toBe(false);
    expect(serving(lbUp, [], 1, ['10.0.0.1'])).toBe(false);
    expect(serving(lbUp, [{ ...listenerUp, status: { ...listenerUp.status, operatingStatus: 'ERROR' } }], 1, ['10.0.0.1'])).toBe(false);
    expect(serving(lbUp, [{ ...listenerUp, generation: 3 }], 1, ['10.0.0.1'])).toBe(false);
    const want = wantedServiceStatus(base);
    expect(want.ingress).toEqual([{ ip: '10.0.0.1', ipMode: 'VIP' }]);
    expect(want.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
      ['nslb.dev/AddressAssigned', 'True', 'Assigned', 3],
      ['nslb.dev/PortsServed', 'True', 'AllPortsServed', 3],
      ['nslb.dev/LoadBalancerReady', 'True', 'Serving', 3],
    ]);
    expect(wantedServiceStatus({ ...base, listeners: [] }).ingress).toEqual([]);
  });

  it('keeps the ingress while the same LoadBalancer serves the same VIP through a transient state; drops it when blocked', () => {
    const withIngress = { ...service, status: { loadBalancer: { ingress: [{ ip: '10.0.0.1' }] } } };
    const pending = { ...lbUp, status: { ...lbUp.status, provisioningStatus: 'PENDING_UPDATE' as const } };
    expect(wantedServiceStatus({ ...base, service: withIngress, loadBalancer: pending }).ingress).toEqual([{ ip: '10.0.0.1', ipMode: 'VIP' }]);
    expect(wantedServiceStatus({ ...base, service: withIngress, loadBalancer: undefined as never }).ingress).toEqual([]);
  });

  it('lastTransitionTime moves only when a condition flips; statusUpToDate ignores times', () => {
    const first = wantedServiceStatus(base);
    const svc2 = { ...service, status: { loadBalancer: { ingress: first.ingress }, conditions: first.conditions } };
    const again = wantedServiceStatus({ ...base, service: svc2, now: '2026-01-02T00:00:00Z' });
    expect(again.conditions.map((c) => c.lastTransitionTime)).toEqual(first.conditions.map(() => '2026-01-01T00:00:00Z'));
    expect(statusUpToDate(svc2, again)).toBe(true);
    const flipped = wantedServiceStatus({ ...base, service: svc2, now: '2026-01-02T00:00:00Z', listeners: [] });
    expect(flipped.conditions.find((c) => c.type === 'nslb.dev/LoadBalancerReady')?.lastTransitionTime).toBe('2026-01-02T00:00:00Z');
  });

  it('refused ports: a condition, and ports with an error in the ingress', () => {
    const want = wantedServiceStatus({
      ...base,
      refused: [{ port: 53, protocol: 'UDP', reason: 'UnsupportedProtocol', message: 'UDP port 53 is not served' }],
    });
    expect(want.ingress).toEqual([
      {
        ip: '10.0.0.1',
        ipMode: 'VIP',
        ports: [
          { port: 80, protocol: 'TCP' },
          { port: 53, protocol: 'UDP', error: 'nslb.dev/UnsupportedProtocol' },
        ],
      },
    ]);
    expect(want.conditions[1]).toMatchObject({ status: 'False', reason: 'UnsupportedProtocol', message: 'UDP port 53 is not served; served: TCP/80' });
  });
});
