// Members' traffic figures live in status.json only: the Kubernetes status writer, handed the same status
// file, never sends them, and traffic that changes on every poll causes no status write.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStatus } from '../../src/api/v1alpha1/types.js';
import { createLogger } from '../../src/log/logger.js';
import type { ServerView } from '../../src/status/kubernetes-writer.js';
import { ApiRateLimiter } from '../../src/status/api-rate-limit.js';
import { KubernetesStatusWriter } from '../../src/status/kubernetes-writer.js';
import type { StatusFile } from '../../src/status/status-file.js';
import type { MemberStats } from '../../src/status/status-file.js';
import { NSLB_API_VERSION, type FakeApiServer } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const status: ObjectStatus = {
  provisioningStatus: 'ACTIVE',
  operatingStatus: 'ONLINE',
  observedGeneration: 1,
  conditions: [
    { type: 'Ready', status: 'True', reason: 'Provisioned', message: 'applied to the node', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 1 },
  ],
};

function file(stats: MemberStats): StatusFile {
  return {
    objects: [{ apiVersion: NSLB_API_VERSION, kind: 'Member', namespace: 'default', name: 'm1', spec: { pool: 'p' }, status, stats }],
    errors: [],
  };
}

const traffic = (totalSessions: number): MemberStats => ({
  currentSessions: 1,
  totalSessions,
  bytesIn: totalSessions * 100,
  bytesOut: totalSessions * 900,
  checkStatus: 'L7OK',
  state: 'UP',
});

describe('member traffic and the Kubernetes status subresource', () => {
  let fake: FakeApiServer;
  let writer: KubernetesStatusWriter;

  beforeAll(async () => {
    const { server, kubeConfig } = await startFakeApiServer();
    fake = server;
    fake.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'Member',
      metadata: { namespace: 'default', name: 'm1' },
      spec: { pool: 'p', address: '10.0.0.1', port: 80 },
    });
    // The writer reads the object it updates from the informer cache; here, straight from the server.
    const source: ServerView = { cached: () => fake.get(NSLB_API_VERSION, 'members', 'default', 'm1') };
    writer = new KubernetesStatusWriter(kubeConfig, source, { limiter: new ApiRateLimiter({ qps: 50, burst: 100 }), logger: createLogger('silent', false) });
  });

  afterAll(() => fake.stop());

  it('writes the status once, without the figures, and not again when only they change', async () => {
    writer.write(file(traffic(10)), []);
    await writer.idle();
    expect(fake.statusWrites('Member')).toBe(1);
    const stored = fake.get(NSLB_API_VERSION, 'members', 'default', 'm1') as { status?: Record<string, unknown>; stats?: unknown };
    expect(stored.status?.provisioningStatus).toBe('ACTIVE');
    expect(stored.status).not.toHaveProperty('stats');
    expect(stored).not.toHaveProperty('stats');

    for (const n of [11, 250, 9000]) {
      writer.write(file(traffic(n)), []);
      await writer.idle();
    }
    expect(fake.statusWrites('Member')).toBe(1);
  });
});
