// Both agents of an ACTIVE_STANDBY pair compute the status of its objects; in Kubernetes mode only the node that
// holds the VIP writes them (src/status/pair-reporter.ts). Against the in-test API server, two status writers,
// one per node, publishing their own views over and over: the server ends with the MASTER's view, nothing flaps,
// the BACKUP never writes while it talks to its MASTER, and the survivor of a failover takes over the writing.
import { Writable } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pluralOf } from '../../src/api/v1alpha1/crds.js';
import type { NodeStatus as PairNode, ObjectStatus } from '../../src/api/v1alpha1/types.js';
import type { Logger } from '../../src/log/logger.js';
import { ApiRateLimiter } from '../../src/status/api-rate-limit.js';
import { KubernetesStatusWriter, type ServerView } from '../../src/status/kubernetes-writer.js';
import { type StatusMemory, transitionEvents } from '../../src/status/agent-events.js';
import { ownersOf, reportedToApi, speaksFor } from '../../src/status/pair-reporter.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { NSLB_API_VERSION, type FakeApiServer } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const NS = 'pair';
const T0 = '2026-01-01T00:00:00Z';
const LB_SPEC = { vip: { address: '10.0.0.10' }, topology: 'ACTIVE_STANDBY', vrrp: { addresses: ['10.0.0.2', '10.0.0.3'] } };
const CHILDREN = [
  { kind: 'Listener', name: 'l', spec: { loadBalancer: 'web', protocol: 'HTTP', port: 80, defaultPool: 'p' } },
  { kind: 'Pool', name: 'p', spec: { loadBalancer: 'web', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' } },
  { kind: 'Member', name: 'm', spec: { pool: 'p', address: '10.0.0.50', port: 80 } },
] as const;

const silent = (): Logger => pino({ level: 'silent' }, new Writable({ write: (_c, _e, done) => done() })) as unknown as Logger;

function status(
  node: string,
  nodes: PairNode[],
  operating: ObjectStatus['operatingStatus'] = 'ONLINE',
  provisioning: ObjectStatus['provisioningStatus'] = 'ACTIVE',
): ObjectStatus {
  return {
    provisioningStatus: provisioning,
    operatingStatus: operating,
    observedGeneration: 1,
    conditions: [{ type: 'Ready', status: provisioning === 'ACTIVE' ? 'True' : 'False', reason: 'Provisioned', message: `on ${node}`, lastTransitionTime: T0 }],
    node,
    nodes,
  };
}

/** One node's status file: the load balancer as it sees the pair, and its children with this node's member view. */
function view(
  node: string,
  nodes: PairNode[],
  memberOperating: ObjectStatus['operatingStatus'] = 'ONLINE',
  provisioning: ObjectStatus['provisioningStatus'] = 'ACTIVE',
): StatusFile {
  const child = (operating: ObjectStatus['operatingStatus']): ObjectStatus => ({
    provisioningStatus: 'ACTIVE',
    operatingStatus: operating,
    conditions: [{ type: 'Ready', status: 'True', reason: 'Provisioned', message: `on ${node}`, lastTransitionTime: T0 }],
  });
  const degraded = nodes.some((n) => !n.ready) ? 'DEGRADED' : 'ONLINE';
  return {
    objects: [
      { apiVersion: NSLB_API_VERSION, kind: 'LoadBalancer', namespace: NS, name: 'web', spec: LB_SPEC, status: status(node, nodes, degraded, provisioning) },
      ...CHILDREN.map((c) => ({
        apiVersion: NSLB_API_VERSION,
        kind: c.kind,
        namespace: NS,
        name: c.name,
        spec: c.spec,
        status: child(c.kind === 'Member' ? memberOperating : 'ONLINE'),
      })),
    ],
    errors: [],
  };
}

const MASTER = (name: string, ready = true): PairNode => ({ name, role: 'MASTER', ready });
const BACKUP = (name: string, ready = true): PairNode => ({ name, role: 'BACKUP', ready });
const UNKNOWN = (name: string): PairNode => ({ name, ready: false });

describe('which node speaks for a pair', () => {
  it('the MASTER; a BACKUP does not, whether or not it sees its MASTER; with no MASTER known, a node that is not BACKUP and has converged does', () => {
    expect(speaksFor(status('n1', [MASTER('n1'), BACKUP('n2')]), LB_SPEC, 'n1')).toBe(true);
    expect(speaksFor(status('n2', [MASTER('n1'), BACKUP('n2')]), LB_SPEC, 'n2')).toBe(false);
    // A BACKUP whose peers session is not up yet sees no MASTER, but VRRP keeps it BACKUP only while it hears one:
    // its view (the peer not ready) would overwrite the MASTER's.
    expect(speaksFor(status('n2', [BACKUP('n2'), UNKNOWN('n1')]), LB_SPEC, 'n2')).toBe(false);
    // Neither MASTER nor BACKUP (FAULT: its HAProxy down, or keepalived not running) with no MASTER known: it says so.
    expect(speaksFor(status('n2', [UNKNOWN('n2'), UNKNOWN('n1')]), LB_SPEC, 'n2')).toBe(true);
    expect(speaksFor(status('n2', [UNKNOWN('n2'), UNKNOWN('n1')], 'OFFLINE', 'PENDING_CREATE'), LB_SPEC, 'n2')).toBe(false);
    // SINGLE, or a pair this node builds no side of (an invalid spec): every node says the same, all write.
    expect(speaksFor(status('n1', [{ name: 'n1', role: 'STANDALONE', ready: true }]), { vip: {} }, 'n2')).toBe(true);
    const { nodes: _, ...withoutNodes } = status('n1', []);
    expect(speaksFor(withoutNodes, LB_SPEC, 'n2')).toBe(true);
  });

  it('a pair is quiet as a whole: the load balancer and every object under it, other load balancers untouched', () => {
    const file = view('n2', [MASTER('n1'), BACKUP('n2')]);
    const other = {
      apiVersion: NSLB_API_VERSION,
      kind: 'LoadBalancer',
      namespace: NS,
      name: 'other',
      spec: { vip: { address: '10.0.0.11' } },
      status: status('n2', []),
    };
    const policy = {
      apiVersion: NSLB_API_VERSION,
      kind: 'L7Policy',
      namespace: NS,
      name: 'pol',
      spec: { listener: 'l', action: 'REJECT' },
      status: status('n2', []),
    };
    const rule = { apiVersion: NSLB_API_VERSION, kind: 'L7Rule', namespace: NS, name: 'r', spec: { l7Policy: 'pol' }, status: status('n2', []) };
    const all = { ...file, objects: [...file.objects, other, policy, rule] };
    expect([...ownersOf(all.objects).values()]).toEqual([...Array(4).fill(`${NS}/web`), `${NS}/other`, `${NS}/web`, `${NS}/web`]);
    expect(reportedToApi(all, 'n2').objects.map((o) => o.name)).toEqual(['other']);
    expect(reportedToApi(all, 'n1')).toBe(all);
  });
});

describe('health transition Events of a pair', () => {
  it('both nodes see the member go down and come back; only the node that speaks for the pair tells it', () => {
    const pair = [MASTER('n1'), BACKUP('n2')];
    const memory = { n1: new Map() as StatusMemory, n2: new Map() as StatusMemory };
    const told = (node: 'n1' | 'n2', operating: ObjectStatus['operatingStatus']) =>
      transitionEvents(memory[node], reportedToApi(view(node, pair, operating), node)).map((e) => `${node} ${e.reason} ${e.regarding.name}`);
    expect([...told('n1', 'ONLINE'), ...told('n2', 'ONLINE')]).toEqual([]);
    expect([...told('n1', 'ERROR'), ...told('n2', 'ERROR')]).toEqual(['n1 MemberDown m']);
    expect([...told('n1', 'ONLINE'), ...told('n2', 'ONLINE')]).toEqual(['n1 MemberUp m']);
  });
});

describe('two agents of a pair writing one status subresource', () => {
  let fake: FakeApiServer;
  let kc: KubeConfig;
  const viewOf: ServerView = { cached: (kind, namespace, name) => fake.get(NSLB_API_VERSION, pluralOf(kind), namespace, name) };
  const lbStatus = () => fake.get(NSLB_API_VERSION, 'loadbalancers', NS, 'web')?.status as ObjectStatus | undefined;
  const memberStatus = () => fake.get(NSLB_API_VERSION, 'members', NS, 'm')?.status as ObjectStatus | undefined;
  const writer = () => new KubernetesStatusWriter(kc, viewOf, { limiter: new ApiRateLimiter({ qps: 1000, burst: 100 }), logger: silent() });

  beforeEach(async () => {
    ({ server: fake, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo', requestDelayMs: 5 }));
    fake.create({ apiVersion: NSLB_API_VERSION, kind: 'LoadBalancer', metadata: { namespace: NS, name: 'web' }, spec: LB_SPEC });
    for (const c of CHILDREN) fake.create({ apiVersion: NSLB_API_VERSION, kind: c.kind, metadata: { namespace: NS, name: c.name }, spec: c.spec });
    fake.clearRequestLog();
  });

  afterEach(async () => {
    await fake.stop();
  });

  it('the server holds the MASTER view; publishing over and over writes nothing more; after a failover the survivor writes', async () => {
    const n1 = writer();
    const n2 = writer();
    // Steady pair: node1 MASTER. The two views differ (the BACKUP's HAProxy sees the member DOWN): without the rule,
    // each publish would overwrite the other's.
    const publish = async (a: StatusFile, b: StatusFile): Promise<void> => {
      n1.write(reportedToApi(a, 'n1'));
      n2.write(reportedToApi(b, 'n2'));
      await Promise.all([n1.idle(), n2.idle()]);
    };
    const steady1 = view('n1', [MASTER('n1'), BACKUP('n2')]);
    const steady2 = view('n2', [MASTER('n1'), BACKUP('n2')], 'ERROR');
    for (let i = 0; i < 5; i++) await publish(steady1, steady2);
    expect(lbStatus()?.node).toBe('n1');
    expect(lbStatus()?.nodes).toEqual([MASTER('n1'), BACKUP('n2')]);
    expect(memberStatus()?.operatingStatus).toBe('ONLINE');
    // One write per object, all by node1; five publishes of each view made no more.
    expect(fake.statusWrites()).toBe(4);
    expect(n2.writes()).toEqual([]);

    // node1 dies (its writer stops); node2's keepalived takes the VIP: node2 is MASTER, node1 not ready.
    const after = view('n2', [MASTER('n2'), UNKNOWN('n1')], 'ERROR');
    for (let i = 0; i < 3; i++) {
      n2.write(reportedToApi(after, 'n2'));
      await n2.idle();
    }
    expect(lbStatus()?.node).toBe('n2');
    expect(lbStatus()?.operatingStatus).toBe('DEGRADED');
    expect(lbStatus()?.nodes).toEqual([MASTER('n2'), UNKNOWN('n1')]);
    expect(memberStatus()?.operatingStatus).toBe('ERROR');

    // A new BACKUP (node3) joins: converging, it knows no MASTER and stays quiet; once it talks to its MASTER it
    // still does; node2's view now shows both ready.
    const n3 = writer();
    n3.write(reportedToApi(view('n3', [UNKNOWN('n3'), UNKNOWN('n2')], 'ONLINE', 'PENDING_CREATE'), 'n3'));
    n3.write(reportedToApi(view('n3', [MASTER('n2'), BACKUP('n3')]), 'n3'));
    n2.write(reportedToApi(view('n2', [MASTER('n2'), BACKUP('n3')], 'ERROR'), 'n2'));
    await Promise.all([n2.idle(), n3.idle()]);
    expect(n3.writes()).toEqual([]);
    expect(lbStatus()?.nodes).toEqual([MASTER('n2'), BACKUP('n3')]);
    expect(lbStatus()?.operatingStatus).toBe('ONLINE');
  });

  it('no MASTER anywhere (both FAULT): each converged node says so; the server holds a status that says the pair is down', async () => {
    const n1 = writer();
    const n2 = writer();
    n1.write(reportedToApi(view('n1', [MASTER('n1'), BACKUP('n2')]), 'n1'));
    await n1.idle();
    n1.write(reportedToApi(view('n1', [UNKNOWN('n1'), UNKNOWN('n2')]), 'n1'));
    n2.write(reportedToApi(view('n2', [UNKNOWN('n2'), UNKNOWN('n1')]), 'n2'));
    await Promise.all([n1.idle(), n2.idle()]);
    expect(lbStatus()?.operatingStatus).toBe('DEGRADED');
    expect(lbStatus()?.nodes?.some((n) => n.role === 'MASTER')).toBe(false);
  });
});
