// The Kubernetes side of scripts/sim-cluster.sh (not an interface of its own: the rig runs it).
//
//   addresses KUBECONFIG                      the API server's addresses and port: "ADDRESS PORT" lines
//   relay SOCKET ADDRESS PORT READY           in the machine's namespace: SOCKET (Unix) → ADDRESS:PORT
//   node SOCKET KUBECONFIG NODE READY         in a node: listen at the API server's address and port, forward to
//                                             SOCKET; then act as the node's kubelet: a Ready Node (where the
//                                             API server serves Nodes) and the Lease kube-node-lease/NODE
//
// A Unix socket crosses network namespaces (it is a file), so the API server may listen on the machine's
// loopback only and still be reached from every node at the URL its kubeconfig names.
import { lookup } from 'node:dns/promises';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { isIP, connect, createServer } from 'node:net';
import { getPriority } from 'node:os';

// @kubernetes/client-node costs about 50 MiB of memory once loaded: the relay, which only moves bytes, never
// loads it.
const k8s = () => import('@kubernetes/client-node');

// What a kubelet does by default (nodeLeaseDurationSeconds; it renews at a quarter of the duration).
const LEASE_DURATION_S = 40;
const RENEW_MS = 10_000;
const LEASE_NAMESPACE = 'kube-node-lease';
const NODE_STATUS_MS = 60_000;

function log(message, extra = {}) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), msg: message, ...extra })}\n`);
}

async function apiServer(kubeconfig) {
  const { KubeConfig } = await k8s();
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error(`${kubeconfig}: its current context names no cluster server`);
  const url = new URL(cluster.server);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return { kc, host, port };
}

async function addresses(host) {
  if (isIP(host)) return [host];
  const found = await lookup(host, { all: true });
  if (found.length === 0) throw new Error(`${host} does not resolve`);
  return [...new Set(found.map((a) => a.address))];
}

// Each side's end reaches the other through pipe(), after every byte before it has been written; only an error
// cuts both at once. (Destroying the other side as soon as one closed dropped what was still buffered for it: an
// API server that answers and closes, as it does for a client that asked for Connection: close, had the tail of
// its larger responses cut, hundreds of kB into a list.)
function pipeBoth(a, b) {
  a.pipe(b);
  b.pipe(a);
  const cut = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', cut);
  b.on('error', cut);
}

function listen(server, options) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function relay(socket, address, port, ready) {
  rmSync(socket, { force: true });
  const server = createServer((client) => pipeBoth(client, connect({ host: address, port })));
  await listen(server, { path: socket });
  chmodSync(socket, 0o600);
  writeFileSync(ready, `${process.pid}\n`);
  log('relaying', { socket, to: `${address}:${port}` });
}

async function nodeSide(socket, kubeconfig, node, ready) {
  const { kc, host, port } = await apiServer(kubeconfig);
  for (const address of await addresses(host)) {
    const server = createServer((client) => pipeBoth(client, connect({ path: socket })));
    await listen(server, { host: address, port, exclusive: true });
    log('forwarding', { from: `${address}:${port}`, to: socket });
  }
  writeFileSync(ready, `${process.pid}\n`);
  await kubelet(kc, node);
}

function statusCode(err) {
  return err?.code ?? err?.statusCode ?? err?.response?.statusCode;
}

async function ensureNode(core, node) {
  try {
    await core.createNode({
      body: { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { 'kubernetes.io/hostname': node } } },
    });
    log('created the Node', { node });
  } catch (err) {
    const code = statusCode(err);
    if (code === 404) {
      log('the API server serves no Nodes: only the Lease is kept', { node });
      return false;
    }
    if (code !== 409) throw err;
  }
  const current = await core.readNode({ name: node });
  const now = new Date();
  const others = (current.status?.conditions ?? []).filter((c) => c.type !== 'Ready');
  const ready = (current.status?.conditions ?? []).find((c) => c.type === 'Ready');
  current.status = {
    ...current.status,
    conditions: [
      ...others,
      {
        type: 'Ready',
        status: 'True',
        reason: 'KubeletReady',
        message: 'kubelet is posting ready status (nslb simulated node)',
        lastHeartbeatTime: now,
        lastTransitionTime: ready?.status === 'True' ? ready.lastTransitionTime : now,
      },
    ],
  };
  await core.replaceNodeStatus({ name: node, body: current });
  return true;
}

async function renewLease(coord, node) {
  const { V1MicroTime } = await k8s();
  const spec = { holderIdentity: node, leaseDurationSeconds: LEASE_DURATION_S, renewTime: new V1MicroTime() };
  try {
    const lease = await coord.readNamespacedLease({ name: node, namespace: LEASE_NAMESPACE });
    lease.spec = { ...lease.spec, ...spec };
    await coord.replaceNamespacedLease({ name: node, namespace: LEASE_NAMESPACE, body: lease });
  } catch (err) {
    if (statusCode(err) !== 404) throw err;
    await coord.createNamespacedLease({
      namespace: LEASE_NAMESPACE,
      body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: node, namespace: LEASE_NAMESPACE }, spec },
    });
    log('created the Lease', { namespace: LEASE_NAMESPACE, name: node });
  }
}

async function kubelet(kc, node) {
  const { CoordinationV1Api, CoreV1Api } = await k8s();
  const core = kc.makeApiClient(CoreV1Api);
  const coord = kc.makeApiClient(CoordinationV1Api);
  // The Node's Ready condition is posted at start and then every minute (a kubelet with node Leases posts its
  // status when it changes, and at least every nodeStatusReportFrequency); an API server without Nodes is
  // asked once.
  let servesNodes = true;
  let nodeAt = 0;
  for (;;) {
    try {
      if (servesNodes && Date.now() - nodeAt >= NODE_STATUS_MS) {
        servesNodes = await ensureNode(core, node);
        nodeAt = Date.now();
      }
    } catch (err) {
      log('cannot make the Node Ready (retrying)', { error: String(err?.message ?? err).slice(0, 300) });
    }
    try {
      await renewLease(coord, node);
    } catch (err) {
      // A renewal that fails is what a partitioned kubelet sees: keep trying, as a kubelet does.
      log('cannot renew the Lease (retrying)', { error: String(err?.message ?? err).slice(0, 300) });
    }
    await new Promise((resolve) => setTimeout(resolve, RENEW_MS));
  }
}

/**
 * The relay and the node side are started under `nice -n -10` in a session of their own (setsid). With the kernel's
 * autogroup on (/proc/sys/kernel/sched_autogroup_enabled, the default of Debian's kernels), a thread's nice orders it
 * only against the threads of its own session: across sessions each runnable session gets an equal share, so
 * -10 alone gave these nothing against every node's HAProxies and keepalived (each a daemon in its own session).
 * The session's autogroup takes the same nice (a no-op when autogroup is off or the nice is 0).
 */
function carryNiceToAutogroup() {
  const nice = getPriority();
  if (nice >= 0) return;
  try {
    writeFileSync('/proc/self/autogroup', `${nice}\n`);
  } catch (err) {
    log("cannot set the session's autogroup nice", { nice, error: String(err?.message ?? err) });
  }
}

const [mode, ...args] = process.argv.slice(2);
try {
  if (mode === 'relay' || mode === 'node') carryNiceToAutogroup();
  if (mode === 'addresses' && args.length === 1) {
    const { host, port } = await apiServer(args[0]);
    process.stdout.write((await addresses(host)).map((a) => `${a} ${port}\n`).join(''));
  } else if (mode === 'relay' && args.length === 4) {
    await relay(args[0], args[1], Number(args[2]), args[3]);
  } else if (mode === 'node' && args.length === 4) {
    await nodeSide(args[0], args[1], args[2], args[3]);
  } else {
    throw new Error(`usage: addresses KUBECONFIG | relay SOCKET ADDRESS PORT READY | node SOCKET KUBECONFIG NODE READY (got ${mode ?? 'nothing'})`);
  }
} catch (err) {
  process.stderr.write(`sim-cluster-kube: ${err?.message ?? err}\n`);
  process.exit(1);
}
