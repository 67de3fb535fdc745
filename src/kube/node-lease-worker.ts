// The node Lease's thread (node-lease-thread.ts): a merge patch of the renewal every renewal period while the agent's
// main thread sends its heartbeat (thread-http.ts: Node's own HTTP client, the kubeconfig's credentials, log lines as
// the agent's). The main thread took (or made) the Lease and hands over its URL; a Lease gone (404) goes back to it.
import { parentPort, workerData } from 'node:worker_threads';
import type { FromNodeLeaseWorker, NodeLeaseWorkerInit, ToNodeLeaseWorker } from './node-lease-thread.js';
import { RenewalClock } from './renewal-clock.js';
import { microTime, ThreadHttp, threadLog } from './thread-http.js';

const port = parentPort;
if (port === null) throw new Error('node-lease-worker.js runs as a worker thread of the agent');
const init = workerData as NodeLeaseWorkerInit;
const post = (m: FromNodeLeaseWorker): void => port.postMessage(m);
const log = threadLog(init.levelValue, { ...init.bindings, lease: init.name });
const http = new ThreadHttp(init.url, init.auth);

/** A merge patch of the renewal's fields: its HTTP status, or an error (no answer within one Lease). */
async function patch(body: string): Promise<number> {
  return (await http.send('PATCH', 'application/merge-patch+json', body, init.leaseSeconds * 1000)).status;
}

let aliveAt = Date.now();
let stalled = false;

function mayRenew(): boolean {
  const silentMs = Date.now() - aliveAt;
  if (silentMs <= init.stallMs) return true;
  // Said once per stall: the node goes dead to the scheduler one Lease after the last renewal.
  if (!stalled) log('error', { silentMs }, "the agent's main thread does not answer: the node Lease is no longer renewed");
  stalled = true;
  return false;
}

async function renew(): Promise<boolean> {
  const body = JSON.stringify({ spec: { holderIdentity: init.node, leaseDurationSeconds: init.leaseSeconds, renewTime: microTime(Date.now()) } });
  const status = await patch(body);
  if (status === 404) {
    // Deleted (or never there for this node): the main thread makes it again.
    post({ type: 'lost' });
    return false;
  }
  if (status < 200 || status > 299) throw new Error(`HTTP ${status}`);
  post({ type: 'renewed' });
  return true;
}

const clock = new RenewalClock({
  renewMs: init.renewMs,
  leaseMs: init.leaseSeconds * 1000,
  renew,
  mayRenew,
  warn: (fields, msg) => log('warn', fields, msg),
  info: (fields, msg) => log('info', fields, msg),
  describe: (err) => (err instanceof Error ? err.message : String(err)),
  // The main thread's renewal, just before this thread started.
  renewedAt: Date.now(),
});

port.on('message', (m: ToNodeLeaseWorker) => {
  if (m.type === 'alive') {
    if (stalled) log('warn', {}, "the agent's main thread answers again: the node Lease is renewed again");
    stalled = false;
    aliveAt = Date.now();
  } else if (m.type === 'auth') {
    http.setAuth(m.auth);
  } else {
    // Stop: no new renewal; the main thread's last one (the restart grace) goes after those in flight.
    void clock.stop().finally(() => {
      http.destroy();
      post({ type: 'stopped' });
    });
  }
});

clock.start();
