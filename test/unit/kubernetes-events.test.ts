// Events on the object they are about, against the in-test API server: a dangling pool is a Warning on the
// Member naming spec.pool (as `kubectl describe` shows it), health flaps become a series with a bounded
// number of writes, core/v1 when the server has no events.k8s.io, and no key material in a note.
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Kind, ObjectStatus } from '../../src/api/v1alpha1/types.js';
import { createLogger, type Logger } from '../../src/log/logger.js';
import type { Action } from '../../src/plan/actions.js';
import { fieldOf, invalidObjectEvent, problemEvent, reconcileEvents, transitionEvents, type StatusMemory } from '../../src/status/agent-events.js';
import { ApiRateLimiter } from '../../src/status/api-rate-limit.js';
import { EventCorrelator, type AgentEvent } from '../../src/status/event-correlator.js';
import { KubernetesEventRecorder, microTime, sanitizeNote, type EventRecorderOptions } from '../../src/status/kubernetes-events.js';
import type { ServerView } from '../../src/status/kubernetes-writer.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { NSLB_API_VERSION, type FakeApiServer, type FakeApiServerOptions, type JsonObject, type RequestLogEntry } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const NS = 'team-a';
const PLURAL: Record<string, string> = { Member: 'members', Pool: 'pools', LoadBalancer: 'loadbalancers' };
/** kubectl comes with the machine image (not with Debian 12's packages): the describe check runs where it is. */
const KUBECTL = (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, 'kubectl')));
const isEventWrite = (e: RequestLogEntry): boolean =>
  e.path.endsWith('/events') ? e.method === 'POST' : /\/events\/[^/]+$/.test(e.path) && e.method === 'PATCH';

function memberStatus(operating: ObjectStatus['operatingStatus']): ObjectStatus {
  return {
    provisioningStatus: 'ACTIVE',
    operatingStatus: operating,
    observedGeneration: 1,
    conditions: [{ type: 'Ready', status: 'True', reason: 'Provisioned', message: 'applied to the node', lastTransitionTime: '2026-01-01T00:00:00Z' }],
  };
}

function memberFile(operating: ObjectStatus['operatingStatus'], check = 'L4CON'): StatusFile {
  return {
    objects: [
      {
        apiVersion: NSLB_API_VERSION,
        kind: 'Member',
        namespace: NS,
        name: 'web-m1',
        spec: {},
        status: memberStatus(operating),
        stats: { currentSessions: 0, totalSessions: 0, bytesIn: 0, bytesOut: 0, checkStatus: check, state: operating === 'ERROR' ? 'DOWN' : 'UP' },
      },
    ],
    errors: [],
  };
}

describe('Events through the API server', () => {
  let fake: FakeApiServer;
  let kc: KubeConfig;
  const view: ServerView = { cached: (kind, namespace, name) => fake.get(NSLB_API_VERSION, PLURAL[kind] ?? `${kind.toLowerCase()}s`, namespace, name) };
  const recorder = (extra: Partial<EventRecorderOptions> = {}): KubernetesEventRecorder =>
    new KubernetesEventRecorder(kc, view, {
      limiter: new ApiRateLimiter({ qps: 50, burst: 100 }),
      logger: createLogger('silent', false),
      node: 'node-1',
      ...extra,
    });

  async function serve(options: FakeApiServerOptions = {}): Promise<void> {
    ({ server: fake, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo', requestDelayMs: 5, ...options }));
    fake.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'Member',
      metadata: { namespace: NS, name: 'bad' },
      spec: { pool: 'nope', address: '10.0.0.9', port: 80 },
    });
    fake.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'Member',
      metadata: { namespace: NS, name: 'web-m1' },
      spec: { pool: 'web-pool', address: '10.0.0.1', port: 80 },
    });
  }

  afterEach(async () => {
    await fake.stop();
  });

  describe('events.k8s.io/v1', () => {
    beforeEach(() => serve());

    it('a Member with a dangling pool gets a Warning naming spec.pool, on the Member, with its uid', async () => {
      const r = recorder();
      r.emit(
        problemEvent({
          kind: 'Member',
          namespace: NS,
          name: 'bad',
          reason: 'InvalidReference',
          message: `pool "nope" does not exist in namespace "${NS}"`,
          path: '/spec/pool',
        }),
      );
      await r.idle();
      expect(r.api).toBe('events.k8s.io/v1');
      const uid = (fake.get(NSLB_API_VERSION, 'members', NS, 'bad')!.metadata as JsonObject).uid as string;
      const events = fake.list('events.k8s.io/v1', 'events', NS, `regarding.uid=${uid}`);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        type: 'Warning',
        reason: 'InvalidReference',
        action: 'Validate',
        note: `spec.pool: pool "nope" does not exist in namespace "${NS}"`,
        reportingController: 'nslb.dev/agent',
        reportingInstance: 'nslb.dev/agent-node-1',
        regarding: { apiVersion: NSLB_API_VERSION, kind: 'Member', name: 'bad', namespace: NS, uid },
      });
    });

    it('a create answered AlreadyExists (its first answer lost) with nothing new: no update that counts 1', async () => {
      const r = recorder();
      fake.failNext({ method: 'POST', plural: 'events', code: 409, reason: 'AlreadyExists' });
      r.emit(
        problemEvent({ kind: 'Member', namespace: NS, name: 'bad', reason: 'InvalidReference', message: 'pool "nope" does not exist', path: '/spec/pool' }),
      );
      await r.idle();
      const writes = fake.requestLog().filter(isEventWrite);
      expect(writes.map((w) => [w.method, w.status])).toEqual([['POST', 409]]);
    });

    it.skipIf(!KUBECTL)('kubectl describe lbm bad shows the Warning naming spec.pool', async () => {
      const r = recorder();
      r.emit(
        problemEvent({ kind: 'Member', namespace: NS, name: 'bad', reason: 'InvalidReference', message: 'pool "nope" does not exist', path: '/spec/pool' }),
      );
      await r.idle();
      const { stdout } = await promisify(execFile)('kubectl', ['--kubeconfig', fake.writeKubeconfig(), 'describe', 'lbm', 'bad', '-n', NS]);
      expect(stdout).toMatch(/Events:\s+Type\s+Reason\s+Age\s+From\s+Message/);
      expect(stdout).toMatch(/Warning\s+InvalidReference\s+\S+\s+nslb\.dev\/agent\s+spec\.pool: pool "nope" does not exist/);
    });

    it('1,000 health flaps of one member: two series (down, up), a bounded number of writes', async () => {
      const r = recorder();
      const memory: StatusMemory = new Map();
      transitionEvents(memory, memberFile('ONLINE'));
      for (let i = 0; i < 1000; i++) {
        for (const e of transitionEvents(memory, memberFile('ERROR'))) r.emit(e);
        for (const e of transitionEvents(memory, memberFile('ONLINE'))) r.emit(e);
        // Spread over time, so that writes go out between flaps (and the spam filter is what bounds them).
        if (i % 10 === 0) await new Promise((res) => setTimeout(res, 2));
      }
      await r.idle();
      const writes = fake.countRequests(isEventWrite);
      // client-go's spam filter: 25 writes per object at once, then one per 5 minutes.
      expect(writes).toBeGreaterThan(2);
      expect(writes).toBeLessThanOrEqual(25);
      const events = fake.events(NS, 'involvedObject.name=web-m1');
      expect(events.map((e) => e.reason).sort()).toEqual(['MemberDown', 'MemberUp']);
      const down = fake.list('events.k8s.io/v1', 'events', NS, 'regarding.name=web-m1,reason=MemberDown')[0]!;
      expect(down).toMatchObject({ type: 'Warning', note: 'health check failing (L4CON): no traffic is sent to it', series: { count: expect.any(Number) } });
      expect(r.stats()).toMatchObject({ occurrences: 2000 });
    });

    it('a series held back by the spam filter is written later with its full count: nothing is lost', async () => {
      const r = recorder({ correlator: { spamBurst: 2, spamQps: 20 } });
      const flap: AgentEvent = {
        regarding: { kind: 'Member', namespace: NS, name: 'web-m1' },
        type: 'Warning',
        reason: 'MemberDown',
        action: 'HealthCheck',
        note: 'health check failing',
      };
      for (let i = 0; i < 500; i++) r.emit(flap);
      await vi.waitFor(() => expect(r.stats().waiting).toBe(0), { timeout: 5_000 });
      const [event] = fake.list('events.k8s.io/v1', 'events', NS, 'regarding.name=web-m1');
      expect(event).toMatchObject({ series: { count: 500 } });
      expect(fake.countRequests(isEventWrite)).toBeLessThan(50);
    });

    it('ten different notes of one kind of event are combined into one Event, as client-go aggregates them', async () => {
      const r = recorder();
      for (let i = 0; i < 30; i++) {
        r.emit({
          regarding: { kind: 'Member', namespace: NS, name: 'web-m1' },
          type: 'Warning',
          reason: 'MemberDown',
          action: 'HealthCheck',
          note: `health check failing (attempt ${i})`,
        });
      }
      await r.idle();
      const events = fake.list('events.k8s.io/v1', 'events', NS, 'regarding.name=web-m1');
      expect(events).toHaveLength(10);
      expect(events.find((e) => String(e.note).startsWith('(combined from similar events): '))).toMatchObject({ series: { count: 21 } });
    });

    it('API server down: Events wait and are written when it answers (created once, counts kept); one warning', async () => {
      const lines: { level: number; msg: string }[] = [];
      const logger = pino(
        { level: 'debug' },
        new Writable({
          write(chunk: Buffer, _enc, done) {
            lines.push(JSON.parse(chunk.toString('utf8')) as { level: number; msg: string });
            done();
          },
        }),
      ) as unknown as Logger;
      const r = recorder({ logger });
      const up: AgentEvent = {
        regarding: { kind: 'Member', namespace: NS, name: 'web-m1' },
        type: 'Normal',
        reason: 'MemberUp',
        action: 'HealthCheck',
        note: 'up',
      };
      r.emit(up); // the Events API is known before the server goes
      await r.idle();
      await fake.stop();
      r.emit(
        problemEvent({ kind: 'Member', namespace: NS, name: 'bad', reason: 'InvalidReference', message: 'pool "nope" does not exist', path: '/spec/pool' }),
      );
      r.emit(up);
      await new Promise((res) => setTimeout(res, 1_000));
      await fake.start();
      await vi.waitFor(() => expect(r.stats().waiting).toBe(0), { timeout: 5_000 });
      expect(fake.events(NS, 'involvedObject.name=bad')).toHaveLength(1);
      expect(fake.list('events.k8s.io/v1', 'events', NS, 'regarding.name=web-m1')).toMatchObject([{ series: { count: 2 } }]);
      expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([
        'cannot write Events to the API server; retrying with backoff (Events older than 10 minutes are dropped)',
      ]);
    });
  });

  describe('core/v1 only', () => {
    beforeEach(() => serve({ eventsV1: false }));

    it('falls back to core/v1 Events, series as count and lastTimestamp', async () => {
      const r = recorder();
      const e: AgentEvent = {
        regarding: { kind: 'Member', namespace: NS, name: 'bad' },
        type: 'Warning',
        reason: 'InvalidReference',
        action: 'Validate',
        note: 'spec.pool: pool "nope" does not exist',
      };
      r.emit(e);
      await r.idle();
      r.emit(e);
      r.emit(e);
      await r.idle();
      expect(r.api).toBe('v1');
      const [event] = fake.events(NS, 'involvedObject.name=bad,involvedObject.kind=Member');
      expect(event).toMatchObject({ count: 3, source: { component: 'nslb.dev/agent', host: 'node-1' }, message: e.note, reportingComponent: 'nslb.dev/agent' });
      expect(fake.countRequests((x) => x.path.startsWith('/apis/events.k8s.io'))).toBe(0);
    });
  });
});

describe('what becomes an Event (pure)', () => {
  it('names fields as kubectl does', () => {
    expect(fieldOf('/spec/pool')).toBe('spec.pool');
    expect(fieldOf('/spec/allowedCidrs/2')).toBe('spec.allowedCidrs[2]');
    expect(fieldOf('/spec/insertHeaders/X-Forwarded-For')).toBe('spec.insertHeaders.X-Forwarded-For');
  });

  it('an object the schema refuses: every path named', () => {
    const e = invalidObjectEvent({
      kind: 'Listener' as Kind,
      namespace: NS,
      name: 'l',
      message: '/spec/port: must be <= 65535 (got 70000); /spec/protocol: must be one of TCP, HTTP',
    });
    expect(e.note).toBe('spec.port: must be <= 65535 (got 70000); spec.protocol: must be one of TCP, HTTP');
    expect(e).toMatchObject({ type: 'Warning', reason: 'InvalidSpec', regarding: { kind: 'Listener', name: 'l' } });
  });

  it('a reconcile: reload on the load balancer, runtime-API changes on each member, failures with their hint', () => {
    const actions: Action[] = [
      {
        kind: 'haproxy.runtime',
        netns: 'n',
        config: '',
        certificates: [],
        commands: [
          { command: 'set server pool.web-pool/web-m2 weight 0' },
          { command: 'add server pool.web-pool/web-m3 10.0.0.3:80 check' },
          { command: 'enable health pool.web-pool/web-m3' },
          { command: 'set server pool.web-pool/web-m3 state ready' },
          { command: 'set server pool.web-pool/web-m4 state maint' },
          { command: 'del server pool.web-pool/web-m4', mayBeRefused: true },
        ],
      },
    ];
    const events = reconcileEvents(
      { key: `${NS}/web`, type: 'Normal', reason: 'Updated', message: 'updated on node-1 in 12 ms: 1 actions', actions },
      'node-1',
    );
    expect(events.map((e) => [e.regarding.kind, e.regarding.name, e.reason, e.note])).toEqual([
      ['Member', 'web-m2', 'RuntimeUpdated', "weight set to 0 through HAProxy's runtime API on node-1, without a reload"],
      ['Member', 'web-m3', 'RuntimeUpdated', "added to pool web-pool, enabled through HAProxy's runtime API on node-1, without a reload"],
    ]);
    const reload = reconcileEvents(
      {
        key: `${NS}/web`,
        type: 'Normal',
        reason: 'Updated',
        message: 'm',
        actions: [
          { kind: 'haproxy.writeConfig', netns: 'n', config: '', certificates: [], reason: 'changed' },
          { kind: 'haproxy.reload', netns: 'n' },
        ],
      },
      'node-1',
    );
    expect(reload).toEqual([
      {
        regarding: { kind: 'LoadBalancer', namespace: NS, name: 'web' },
        type: 'Normal',
        reason: 'Reloaded',
        action: 'Reload',
        note: 'HAProxy reloaded on node-1 (configuration changed): m',
      },
    ]);
    // A drained node's switchover: one Event of its own, not "Updated".
    const switched = reconcileEvents(
      { key: `${NS}/web`, type: 'Normal', reason: 'Updated', message: 'm', actions: [{ kind: 'keepalived.switchOver', netns: 'n' }] },
      'node-1',
    );
    expect(switched.map((e) => [e.reason, e.action, e.note])).toEqual([
      [
        'SwitchedOver',
        'Drain',
        "node-1 is drained: it handed the MASTER role to the other node of the pair (keepalived stays up here, BACKUP, until the scheduler moves this node's slot)",
      ],
    ]);
    const failed = reconcileEvents(
      { key: `${NS}/web`, type: 'Warning', reason: 'ReconcileFailed', message: 'Open vSwitch is not running: start ovsdb-server (…)' },
      'node-1',
    );
    expect(failed[0]).toMatchObject({ type: 'Warning', reason: 'ReconcileFailed', regarding: { kind: 'LoadBalancer', name: 'web' } });
  });

  it('health transitions seen by this agent only: the first status of an object is remembered, not reported', () => {
    const memory: StatusMemory = new Map();
    expect(transitionEvents(memory, memberFile('ERROR'))).toEqual([]);
    expect(transitionEvents(memory, memberFile('ONLINE')).map((e) => e.reason)).toEqual(['MemberUp']);
    expect(transitionEvents(memory, memberFile('ONLINE'))).toEqual([]);
    expect(transitionEvents(memory, memberFile('ERROR', '* L7STS')).map((e) => e.note)).toEqual(['health check failing (L7STS): no traffic is sent to it']);
  });

  it('a note never carries key material, nor more than 1024 bytes', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----';
    expect(sanitizeNote(`haproxy -c failed: ${pem} at line 3`)).toBe('haproxy -c failed: [PEM data removed] at line 3');
    expect(sanitizeNote('unable to load ENCRYPTED-PRIVATE-KEY blob')).not.toMatch(/PRIVATE KEY/i);
    expect(Buffer.byteLength(sanitizeNote('é'.repeat(2000)))).toBeLessThanOrEqual(1024);
  });

  it('MicroTime has six fractional digits', () => {
    expect(microTime(Date.UTC(2026, 0, 2, 3, 4, 5, 123))).toBe('2026-01-02T03:04:05.123000Z');
  });

  it('the correlator: a series per repeated event, a spam filter per object', () => {
    const c = new EventCorrelator({ spamBurst: 3, spamQps: 0.001 });
    const e: AgentEvent = { regarding: { kind: 'Member', namespace: NS, name: 'm' }, type: 'Normal', reason: 'MemberUp', action: 'HealthCheck', note: 'up' };
    const a = c.observe(e, 0);
    const b = c.observe(e, 1000);
    expect(b).toBe(a);
    expect(b.count).toBe(2);
    // An hour of quiet closes the series.
    expect(c.observe(e, 3_600_000)).not.toBe(a);
    expect([1, 2, 3, 4].map(() => c.allowWrite(e.regarding))).toEqual([true, true, true, false]);
    expect(c.allowWrite({ ...e.regarding, name: 'other' })).toBe(true);
  });
});
