// A leader's renewals from a worker thread (src/kube/leader-thread.ts): a leader whose own thread is busy (here: blocked
// outright, longer than the renew deadline) goes on renewing and stays the leader, where renewing on that thread
// fences it; a thread that stops hearing from it (a wedged agent) lets the Lease run out, another candidate takes
// it, and the wedged leader's first act when it runs again is to stop leading. The elector runs in a worker of the
// test (test/support/leader-harness.mjs, the built dist/kube/leader.js and its dist/kube/leader-worker.js, made by
// `npm run build` as for the e2e tests), so that blocking it leaves the in-test API server here answering.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaderElector } from '../../src/kube/leader.js';
import type { FakeApiServer, Obj } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const HARNESS = new URL('../support/leader-harness.mjs', import.meta.url);
const WORKER = new URL('../../dist/kube/leader-worker.js', import.meta.url);
const NS = 'nslb-system';
let api: FakeApiServer;
let kc: KubeConfig;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(f: () => boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !f(); await sleep(20)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}
const leaseOf = (name: string) => api.get('coordination.k8s.io/v1', 'leases', NS, name) as Obj | undefined;

interface Harness {
  /** Every message from the elector's thread, in order: 'start', 'stop', 'unblocked', 'stopped'. */
  messages: string[];
  leading(): boolean;
  /** Blocks the elector's thread for `ms`; resolves when it runs again. */
  block(ms: number): Promise<void>;
  stop(): Promise<void>;
}

function harness(name: string, identity: string, opts: { thread: boolean; stallMs?: number }): Harness {
  const worker = new Worker(fileURLToPath(HARNESS), {
    workerData: { server: api.url, namespace: NS, name, identity, leaseSeconds: 2, thread: opts.thread, stallMs: opts.stallMs },
  });
  const messages: string[] = [];
  const waiters: Array<[string, () => void]> = [];
  worker.on('message', (m: { type: string }) => {
    messages.push(m.type);
    for (const [i, [type, resolve]] of [...waiters.entries()].reverse()) {
      if (type !== m.type) continue;
      waiters.splice(i, 1);
      resolve();
    }
  });
  const next = (type: string) => new Promise<void>((resolve) => waiters.push([type, resolve]));
  return {
    messages,
    leading: () => messages.filter((m) => m === 'start').length > messages.filter((m) => m === 'stop').length,
    block(ms) {
      const done = next('unblocked');
      worker.postMessage({ type: 'block', ms });
      return done;
    },
    async stop() {
      const done = next('stopped');
      worker.postMessage({ type: 'stop' });
      await done;
      await worker.terminate();
    },
  };
}

/** Successful writes of the Lease after request-log position `from`. */
function renewalsSince(name: string, from: number): number {
  const path = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${name}`;
  return api.requestLog().filter((r) => r.started > from && r.path === path && r.method === 'PUT' && r.status === 200).length;
}
const mark = () => Math.max(0, ...api.requestLog().map((r) => r.started));

beforeAll(async () => {
  if (!existsSync(fileURLToPath(WORKER))) throw new Error(`${fileURLToPath(WORKER)} is missing: run \`npm run build\``);
  ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo' }));
});

afterAll(async () => {
  await api.stop();
});

describe('LeaderElector renewals from a thread', () => {
  it('a leader whose thread is blocked for twice the renew deadline goes on renewing and stays the leader', async () => {
    const a = harness('busy-leader', 'a', { thread: true });
    await until(a.leading, 3_000, 'a leading');
    // The Lease goes to the renewal thread at the renewal after the first (the thread starts in between).
    await sleep(1_000);
    const since = mark();
    // The renew deadline is 1.33 s (a 2 s Lease): on its own thread, the elector would be fenced by this.
    await a.block(2_700);
    await sleep(300);
    expect(a.messages).toEqual(['start', 'unblocked']);
    // The thread's renewals landed while the elector's thread did nothing (one every 267 ms).
    expect(renewalsSince('busy-leader', since)).toBeGreaterThanOrEqual(4);
    expect(leaseOf('busy-leader')!.spec.holderIdentity).toBe('a');
    await a.stop();
    // Released on the clean stop, and no renewal from the thread after it.
    const released = mark();
    await sleep(600);
    expect(renewalsSince('busy-leader', released)).toBe(0);
    expect(leaseOf('busy-leader')!.spec.holderIdentity).toBe('');
  }, 20_000);

  it('the same block with the renewals on the elector’s own thread fences it (what the thread is for)', async () => {
    const a = harness('busy-leader-main', 'a', { thread: false });
    await until(a.leading, 3_000, 'a leading');
    await sleep(1_000);
    await a.block(2_700);
    await until(() => a.messages.includes('stop'), 2_000, 'a fenced');
    expect(a.messages.slice(0, 3)).toEqual(['start', 'unblocked', 'stop']);
    await a.stop();
  }, 20_000);

  it('a wedged leader: its thread stops renewing, another candidate takes the Lease, and the wedged one stops first thing', async () => {
    // The thread renews for 1 s after the last heartbeat (STALL_MS is 30 s in the agent).
    const a = harness('wedged-leader', 'a', { thread: true, stallMs: 1_000 });
    await until(a.leading, 3_000, 'a leading');
    await sleep(1_000);
    let bLeading = false;
    const b = new LeaderElector({
      kubeConfig: kc,
      role: 'scheduler',
      namespace: NS,
      name: 'wedged-leader',
      identity: 'b',
      leaseSeconds: 2,
      logger: pino({ level: 'silent' }),
      onStartedLeading: async () => {
        bLeading = true;
      },
      onStoppedLeading: async () => {
        bLeading = false;
      },
    });
    b.start();
    // Blocked for longer than the stall limit plus a Lease duration (and the candidate's wait for it).
    const blocked = a.block(6_000);
    await until(() => bLeading, 6_000, 'b leading while a is wedged');
    expect(leaseOf('wedged-leader')!.spec.holderIdentity).toBe('b');
    await blocked;
    await until(() => a.messages.includes('stop'), 2_000, 'a stopped');
    expect(a.messages).toEqual(['start', 'unblocked', 'stop']);
    // a does not take the Lease back while b renews it.
    await sleep(1_000);
    expect(a.leading()).toBe(false);
    expect(leaseOf('wedged-leader')!.spec.holderIdentity).toBe('b');
    await a.stop();
    await b.stop();
  }, 25_000);
});
