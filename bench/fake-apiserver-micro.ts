// Micro benchmark of the in-test API server (test/support/fake-apiserver.ts), no data plane, no lock: what one
// watch event and one request cost its event loop. The server runs in this process, the clients in child
// processes (as the agents are other processes): each client watches LoadBalancers, Listeners, Pools, Members,
// Leases and Nodes; O load balancers with a listener, a pool and a member; then B bursts in which every one of
// those objects' status is merge-patched once (the agents' status writes during a drain), the clients sharing
// the writes.
//
//   npx tsx bench/fake-apiserver-micro.ts [--clients 3] [--objects 200] [--bursts 5]
//
// Prints the server process's CPU time per status write (each fans out to every watcher), its event loop's
// longest stall, and the time from a burst's start until every watcher saw every event of it.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as current from '../test/support/fake-apiserver.js';

// NSLB_MICRO_SERVER=path: another version of the server module (for before/after figures).
const { FakeApiServer, loadCrdFiles, NSLB_API_VERSION }: typeof current =
  process.env.NSLB_MICRO_SERVER === undefined ? current : await import(process.env.NSLB_MICRO_SERVER);

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const KINDS = ['loadbalancers', 'listeners', 'pools', 'members'] as const;
const KIND_OF: Record<string, string> = { loadbalancers: 'LoadBalancer', listeners: 'Listener', pools: 'Pool', members: 'Member' };

async function main(): Promise<void> {
  if (process.argv[2] === '--client') return client();
  const { values } = parseArgs({
    options: { clients: { type: 'string', default: '3' }, objects: { type: 'string', default: '200' }, bursts: { type: 'string', default: '5' } },
  });
  const clients = Number(values.clients);
  const objects = Number(values.objects);
  const bursts = Number(values.bursts);
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  await api.start();
  const ns = 'micro';
  for (let i = 0; i < objects; i++) {
    const name = `lb${i}`;
    const metadata = { name, namespace: ns, finalizers: ['nslb.dev/cleanup'], labels: { app: 'micro' } };
    api.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'LoadBalancer',
      metadata,
      spec: {
        vip: { address: `10.77.${i >> 8}.${i & 255}`, prefixLength: 16 },
        topology: 'ACTIVE_STANDBY',
        vrrp: { addresses: [`10.78.${i >> 8}.${i & 255}`, `10.79.${i >> 8}.${i & 255}`] },
      },
    });
    api.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'Listener',
      metadata: { ...metadata, name: `${name}-l` },
      spec: { loadBalancer: name, protocol: 'HTTP', port: 80, defaultPool: `${name}-p` },
    });
    api.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'Pool',
      metadata: { ...metadata, name: `${name}-p` },
      spec: { loadBalancer: name, protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' },
    });
    api.create({
      apiVersion: NSLB_API_VERSION,
      kind: 'Member',
      metadata: { ...metadata, name: `${name}-m` },
      spec: { pool: `${name}-p`, address: '10.76.0.1', port: 8080 },
    });
  }
  for (let c = 0; c < clients; c++) {
    api.create({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: `node${c}`, namespace: ns },
      spec: { holderIdentity: `node${c}`, leaseDurationSeconds: 6 },
    });
  }
  const children = Array.from({ length: clients }, (_, c) =>
    fork(new URL(import.meta.url).pathname, ['--client', api.url, ns, String(c), String(clients)], { execArgv: process.execArgv, stdio: 'inherit' }),
  );
  const waitAll = (type: string): Promise<unknown[]> =>
    Promise.all(
      children.map(
        (ch) =>
          new Promise((resolve) =>
            ch.on('message', function on(m: { type: string }) {
              if (m.type === type) {
                ch.off('message', on);
                resolve(m);
              }
            }),
          ),
      ),
    );
  await waitAll('ready');
  const lag = monitorEventLoopDelay({ resolution: 5 });
  let cpu = 0;
  let writes = 0;
  const seen: number[] = [];
  for (let b = 0; b < bursts; b++) {
    const started = Date.now();
    const cpu0 = process.cpuUsage();
    lag.enable();
    const burstSeen = waitAll('seen');
    for (const ch of children) ch.send({ type: 'burst', objects, expect: objects * KINDS.length });
    await burstSeen;
    seen.push(Date.now() - started);
    lag.disable();
    const d = process.cpuUsage(cpu0);
    cpu += (d.user + d.system) / 1000;
    writes += objects * KINDS.length;
  }
  for (const ch of children) ch.kill();
  await api.stop();
  seen.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      clients,
      objects,
      bursts,
      watchersPerKind: clients,
      statusWrites: writes,
      eventsSent: writes * clients,
      serverCpuMsPerWrite: +(cpu / writes).toFixed(3),
      serverCpuMsPerEvent: +(cpu / (writes * clients)).toFixed(3),
      burstAllSeenMsP50: seen[Math.floor(seen.length / 2)],
      burstAllSeenMsMax: seen.at(-1),
      eventLoopMaxStallMs: +(lag.max / 1e6).toFixed(1),
    }),
  );
}

/** One agent: watches, then on each burst patches its share of the statuses and reports when it saw all events. */
async function client(): Promise<void> {
  const [, , , url, ns, index, count] = process.argv as [string, string, string, string, string, string, string];
  const c = Number(index);
  const clients = Number(count);
  const http = await import('node:http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const base = `${url}/apis/${NSLB_API_VERSION}/namespaces/${ns}`;
  let events = 0;
  let want = Number.POSITIVE_INFINITY;
  const check = (): void => {
    if (events >= want) {
      want = Number.POSITIVE_INFINITY;
      process.send?.({ type: 'seen' });
    }
  };
  const watch = (path: string): Promise<void> =>
    new Promise((resolve) => {
      http.get(`${path}?watch=true&resourceVersion=${rv}`, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          let i = buf.indexOf('\n');
          while (i >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (JSON.parse(line).type === 'MODIFIED') events++;
            i = buf.indexOf('\n');
          }
          check();
        });
        resolve();
      });
    });
  const rv = await new Promise<string>((resolve) =>
    http.get(`${url}/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => resolve(JSON.parse(s).metadata.resourceVersion));
    }),
  );
  await Promise.all([
    ...KINDS.map((k) => watch(`${base}/${k}`)),
    watch(`${url}/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`),
    watch(`${url}/api/v1/nodes`),
  ]);
  const send = (method: string, path: string, body: unknown, type: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const text = JSON.stringify(body);
      const req = http.request(path, { method, agent, headers: { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode !== undefined && res.statusCode < 300 ? resolve() : reject(new Error(`${method} ${path}: ${res.statusCode}`))));
      });
      req.end(text);
    });
  let burst = 0;
  process.on('message', async (m: { type: string; objects: number; expect: number }) => {
    if (m.type !== 'burst') return;
    burst++;
    events = 0;
    want = m.expect;
    const jobs: Promise<void>[] = [];
    for (let i = c; i < m.objects; i += clients) {
      for (const k of KINDS) {
        const name = k === 'loadbalancers' ? `lb${i}` : `lb${i}-${k[0]}`;
        const status = {
          status: {
            operatingStatus: burst % 2 === 0 ? 'ONLINE' : 'DEGRADED',
            provisioningStatus: 'ACTIVE',
            observedGeneration: 1,
            servedBy: [`node${c}`],
            message: `burst ${burst} ${KIND_OF[k]}`,
          },
        };
        jobs.push(send('PATCH', `${base}/${k}/${name}/status`, status, 'application/merge-patch+json'));
      }
    }
    await Promise.all(jobs).catch((err: unknown) => console.error(String(err)));
    check();
    setTimeout(() => {
      if (want !== Number.POSITIVE_INFINITY) console.error(`client ${c}: ${events} of ${want} events`);
    }, 5000).unref();
  });
  process.send?.({ type: 'ready' });
}

await main();
