// The node Lease renewed from a worker thread (src/kube/node-lease-thread.ts): renewals go on while the agent's main
// thread is busy (here: blocked outright), stop when it has been silent longer than the stall limit, resume when it
// answers, and the clean stop still asks for the restart grace. The thread runs the built worker
// (dist/kube/node-lease-worker.js, made by scripts/setup-node.sh as for the e2e tests); the API server is the
// in-test one, in this process: it reads the renewals sent during a block once the block ends, each with the
// renewTime the thread gave it when it sent it.
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeLease } from '../../src/kube/node-lease.js';
import { NodeLeaseThread, nodeLeaseRenewer, type NodeLeaseRenewer } from '../../src/kube/node-lease-thread.js';
import type { FakeApiServer, Obj } from '../support/fake-apiserver.js';
import { startFakeApiServer } from '../support/fake-apiserver-client.js';

const SCRIPT = new URL('../../dist/kube/node-lease-worker.js', import.meta.url);
const logger = pino({ level: 'silent' });
let api: FakeApiServer;
let kc: KubeConfig;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The main thread does nothing else for `ms`: no timer, no I/O (the API server in this process answers nothing). */
function block(ms: number): { from: number; to: number } {
  const from = Date.now();
  while (Date.now() - from < ms) {
    // busy
  }
  return { from, to: Date.now() };
}

/** Every renewTime the API server stores for the namespace's Leases, in the order it stored them. */
async function renewTimes(namespace: string): Promise<{ times: number[]; stop: () => void }> {
  const times: number[] = [];
  const req = await new Watch(kc).watch(
    `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
    {},
    (_type, obj: Obj) => {
      if (obj.spec?.renewTime !== undefined) times.push(Date.parse(obj.spec.renewTime));
    },
    () => undefined,
  );
  return { times, stop: () => req.abort() };
}

async function until(f: () => boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !f(); await sleep(20)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  if (!existsSync(fileURLToPath(SCRIPT))) throw new Error(`${fileURLToPath(SCRIPT)} is missing: run \`npm run build\``);
  ({ server: api, kubeConfig: kc } = await startFakeApiServer({ crds: 'repo' }));
});

afterAll(async () => {
  await api.stop();
});

const opts = (namespace: string, node: string) => ({ kubeConfig: kc, namespace, node, leaseSeconds: 2, restartGraceSeconds: 30, logger });

describe('the node Lease renewed from its own thread', () => {
  it('is a thread where the worker is built, and renews while the main thread is blocked (the main-thread renewer does not)', async () => {
    const threaded: NodeLeaseRenewer = nodeLeaseRenewer(opts('threaded', 'n1'), SCRIPT);
    expect(threaded).toBeInstanceOf(NodeLeaseThread);
    const inline = new NodeLease(opts('inline', 'n2'));
    await threaded.start();
    await inline.start();
    const [t, i] = [await renewTimes('threaded'), await renewTimes('inline')];
    await sleep(600);
    // A renewal every 500 ms (a quarter of 2 s); 3 s without a turn of the main thread's event loop.
    const { from, to } = block(3_000);
    await until(() => t.times.some((x) => x > to) && i.times.some((x) => x > to), 5_000, 'renewals after the block');
    const during = (times: number[]) => times.filter((x) => x > from + 200 && x < to - 200);
    expect(during(t.times).length).toBeGreaterThanOrEqual(2);
    expect(during(i.times)).toEqual([]);
    expect(threaded.renewals).toBeGreaterThanOrEqual(4);
    t.stop();
    i.stop();
    await threaded.stop();
    await inline.stop();
    // The clean stop's grace renewal, from the thread.
    expect((api.get('coordination.k8s.io/v1', 'leases', 'threaded', 'nslb-node-n1') as Obj).spec).toMatchObject({
      holderIdentity: 'n1',
      leaseDurationSeconds: 30,
    });
  }, 20_000);

  it('stops renewing when the main thread has been silent longer than the stall limit, and renews again once it answers', async () => {
    const l = new NodeLeaseThread(opts('stall', 'n3'), SCRIPT, 1_000);
    await l.start();
    const r = await renewTimes('stall');
    await sleep(600);
    // No heartbeat for 4 s (a wedged main thread; this one, and the API server in it, go on): the thread renews
    // for about the first second (the limit) and a renewal period, then not until the heartbeat is back.
    const from = Date.now();
    l.silenceHeartbeat(4_000);
    await sleep(4_000);
    const to = Date.now();
    await until(() => r.times.some((x) => x > to + 100), 5_000, 'a renewal after the silence');
    expect(r.times.filter((x) => x > from - 1_000 && x < from + 500).length).toBeGreaterThanOrEqual(1);
    expect(r.times.filter((x) => x > from + 2_500 && x < to)).toEqual([]);
    r.stop();
    await l.stop();
  }, 20_000);

  it('a Lease deleted meanwhile is made again (the thread hands it to the main thread, which takes Leases)', async () => {
    const l = new NodeLeaseThread(opts('deleted', 'n4'), SCRIPT);
    await l.start();
    const lease = () => api.get('coordination.k8s.io/v1', 'leases', 'deleted', 'nslb-node-n4') as Obj | undefined;
    expect(lease()?.spec.holderIdentity).toBe('n4');
    api.delete('coordination.k8s.io/v1', 'leases', 'deleted', 'nslb-node-n4');
    await until(() => lease() !== undefined, 5_000, 'the Lease made again');
    expect(lease()?.spec).toMatchObject({ holderIdentity: 'n4', leaseDurationSeconds: 2 });
    await l.stop();
    expect(lease()?.spec.leaseDurationSeconds).toBe(30);
  }, 20_000);

  it('with a proxy in the kubeconfig (proxy-url), renewals go through it from the main thread: the thread would go around it', async () => {
    // A proxy as client-node uses one (hpagent: a CONNECT tunnel, even to a plain-http server), which reads the
    // request lines going through it.
    const patches: string[] = [];
    const proxy = createServer();
    proxy.on('connect', (req, client: Socket, head: Buffer) => {
      const [host, p] = (req.url ?? '').split(':');
      const up = connect(Number(p), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        up.write(head);
        client.pipe(up).pipe(client);
      });
      client.on('data', (d: Buffer) => {
        for (const m of d.toString('latin1').matchAll(/^PATCH (\S+) HTTP/gm)) patches.push(m[1] ?? '');
      });
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxied = new KubeConfig();
    proxied.loadFromOptions({
      clusters: [{ name: 'c', server: api.url, skipTLSVerify: true, proxyUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const l = nodeLeaseRenewer({ ...opts('proxied', 'n5'), kubeConfig: proxied }, SCRIPT);
    await l.start();
    const r = await renewTimes('proxied');
    await until(() => r.times.length >= 4, 5_000, 'renewals');
    r.stop();
    await l.stop();
    proxy.closeAllConnections();
    proxy.close();
    // Every renewal was a PATCH through the proxy (the stop's grace renewal too).
    expect(patches.filter((p) => p.endsWith('/namespaces/proxied/leases/nslb-node-n5')).length).toBeGreaterThanOrEqual(4);
  }, 20_000);
});
