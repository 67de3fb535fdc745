// Kubernetes mode's source gives the engine no snapshot before every kind has been listed once: a kind whose list
// failed (API server unreachable, a 500, a response cut short) is not a kind without objects. Before, start()
// resolved with the failed kind empty, and the engine's initial sync removed every load balancer from the node
// (or, with the LoadBalancer list late, reported every Listener as naming a load balancer that does not exist).
import { createServer, request, type Server } from 'node:http';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentKubeConfig } from '../../src/kube/http.js';
import { KubernetesSource, type KubernetesSnapshot } from '../../src/sources/kubernetes.js';
import { FakeApiServer, loadCrdFiles } from '../support/fake-apiserver.js';

const repo = new URL('../..', import.meta.url).pathname;
const V = 'nslb.dev/v1alpha1';
const NS = 'ns1';
const logger = pino({ level: process.env.DBG ? 'debug' : 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function kubeConfigFor(server: string): AgentKubeConfig {
  const kc = new AgentKubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

/** The kinds of a snapshot, and whether every Listener's load balancer is in it. */
function shape(s: KubernetesSnapshot): { kinds: string[]; orphanListeners: number } {
  const lbs = new Set(s.objects.filter((o) => o.kind === 'LoadBalancer').map((o) => o.metadata.name));
  const orphanListeners = s.objects.filter((o) => o.kind === 'Listener' && !lbs.has((o.spec as { loadBalancer: string }).loadBalancer)).length;
  return { kinds: [...new Set(s.objects.map((o) => o.kind))].sort(), orphanListeners };
}

describe('KubernetesSource waits for every kind to be listed', () => {
  let api: FakeApiServer;
  let source: KubernetesSource | undefined;
  let proxy: Server | undefined;

  beforeEach(async () => {
    api = new FakeApiServer({ crds: loadCrdFiles(`${repo}crds`) });
    await api.start();
    for (let i = 0; i < 50; i++) {
      api.create({ apiVersion: V, kind: 'LoadBalancer', metadata: { name: `lb${i}`, namespace: NS }, spec: { vip: { address: `10.0.1.${i + 1}` } } });
      api.create({
        apiVersion: V,
        kind: 'Listener',
        metadata: { name: `lb${i}-l`, namespace: NS },
        // Large enough that a response cut in the middle is cut inside an object.
        spec: { loadBalancer: `lb${i}`, protocol: 'HTTP', port: 80, description: 'x'.repeat(200) },
      });
    }
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
    proxy?.closeAllConnections();
    proxy?.close();
    proxy = undefined;
    await api.stop();
  });

  it('a LoadBalancer list that fails: no snapshot until it is listed, then one with everything', async () => {
    api.failNext({ method: 'GET', plural: 'loadbalancers', watch: false, code: 500 }, 2);
    const snapshots: KubernetesSnapshot[] = [];
    source = new KubernetesSource({ kubeConfig: kubeConfigFor(api.url), logger, onSnapshot: (s) => snapshots.push(s) });
    await source.start();
    expect(source.synced).toBe(true);
    expect(snapshots.length).toBeGreaterThan(0);
    for (const s of snapshots) expect(shape(s)).toEqual({ kinds: ['Listener', 'LoadBalancer'], orphanListeners: 0 });
    expect(snapshots[0]!.objects).toHaveLength(100);
  });

  it('the API server unreachable at start: start() waits, no snapshot, until it answers', async () => {
    const url = api.url;
    await api.stop();
    const snapshots: KubernetesSnapshot[] = [];
    source = new KubernetesSource({ kubeConfig: kubeConfigFor(url), logger, onSnapshot: (s) => snapshots.push(s) });
    let started = false;
    const starting = source.start().then(() => {
      started = true;
    });
    await sleep(1_500);
    expect(started).toBe(false);
    expect(snapshots).toEqual([]);
    source.refresh();
    expect(snapshots).toEqual([]);
    await api.start();
    await starting;
    expect(snapshots.length).toBeGreaterThan(0);
    for (const s of snapshots) expect(shape(s)).toEqual({ kinds: ['Listener', 'LoadBalancer'], orphanListeners: 0 });
  });

  it('a LoadBalancer list whose response is cut short: retried, start() completes (client-node alone waits for ever)', async () => {
    // A proxy that cuts the first LoadBalancer list in the middle of its body and passes everything else on.
    let cut = 0;
    proxy = createServer((req, res) => {
      const upstream = request(`${api.url}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
        const isList = req.method === 'GET' && /\/loadbalancers(\?|$)/.test(req.url ?? '') && !/[?&]watch=(true|1)/.test(req.url ?? '');
        if (isList && cut === 0) {
          cut++;
          const chunks: Buffer[] = [];
          up.on('data', (c: Buffer) => chunks.push(c));
          up.on('end', () => {
            const body = Buffer.concat(chunks);
            res.writeHead(up.statusCode ?? 200, { ...up.headers, 'content-length': String(body.length) });
            res.write(body.subarray(0, Math.floor(body.length / 2)));
            setTimeout(() => res.socket?.destroy(), 20);
          });
          return;
        }
        res.writeHead(up.statusCode ?? 200, up.headers);
        // A watch's headers now, as the API server sends them, not with its first event.
        res.flushHeaders();
        up.pipe(res);
      });
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy!.listen(0, '127.0.0.1', r));
    const { port } = proxy.address() as { port: number };
    const snapshots: KubernetesSnapshot[] = [];
    source = new KubernetesSource({ kubeConfig: kubeConfigFor(`http://127.0.0.1:${port}`), logger, onSnapshot: (s) => snapshots.push(s) });
    const outcome = await Promise.race([source.start().then(() => 'started'), sleep(10_000).then(() => 'still starting after 10 s')]);
    expect(outcome).toBe('started');
    expect(cut).toBe(1);
    for (const s of snapshots) expect(shape(s)).toEqual({ kinds: ['Listener', 'LoadBalancer'], orphanListeners: 0 });
    expect(snapshots[0]!.objects).toHaveLength(100);
  });
});
