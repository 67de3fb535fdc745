// The node Lease's thread (node-lease-thread.ts): a merge patch of the renewal every renewal period while the agent's
// main thread sends its heartbeat. Node's own HTTP client only: a thread that loads client-node costs 80 MiB (its
// generated API), this one about 9. The main thread took (or made) the Lease and hands over the URL and the
// credentials its kubeconfig gives (again every minute, for tokens that rotate); a Lease gone (404) goes back to it.
// Lines are written here, on stderr, as the agent's logger writes them: a stall must be said while the main thread
// is stalled.
import { writeSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { hostname } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { FromNodeLeaseWorker, NodeLeaseAuth, NodeLeaseWorkerInit, ToNodeLeaseWorker } from './node-lease-thread.js';
import { RenewalClock } from './renewal-clock.js';

const port = parentPort;
if (port === null) throw new Error('node-lease-worker.js runs as a worker thread of the agent');
const init = workerData as NodeLeaseWorkerInit;
const post = (m: FromNodeLeaseWorker): void => port.postMessage(m);

const LEVELS = { info: 30, warn: 40, error: 50 } as const;
const host = hostname();

function log(level: keyof typeof LEVELS, fields: Record<string, unknown>, msg: string): void {
  if (LEVELS[level] < init.levelValue) return;
  const line = { level: LEVELS[level], time: Date.now(), pid: process.pid, hostname: host, ...init.bindings, lease: init.name, ...fields, msg };
  try {
    writeSync(2, `${JSON.stringify(line)}\n`);
  } catch {
    // stderr gone: nothing to say it on
  }
}

const https = new URL(init.url).protocol === 'https:';
let auth: NodeLeaseAuth = init.auth;
let agent = makeAgent();
function makeAgent(): HttpAgent {
  // One connection kept alive, closed after 4 s idle (before a server closing idle ones after 5 s does).
  const tls = { ca: auth.ca, cert: auth.cert, key: auth.key, rejectUnauthorized: auth.rejectUnauthorized, servername: auth.servername };
  return https ? new HttpsAgent({ keepAlive: true, timeout: 4_000, ...tls }) : new HttpAgent({ keepAlive: true, timeout: 4_000 });
}

/** A merge patch of the renewal's fields: its HTTP status, or an error (no answer within one Lease). */
function patch(body: string): Promise<number> {
  const send = https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      init.url,
      {
        method: 'PATCH',
        agent,
        timeout: init.leaseSeconds * 1000,
        headers: {
          ...auth.headers,
          'Content-Type': 'application/merge-patch+json',
          Accept: 'application/json',
          'Content-Length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${init.leaseSeconds} s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** A Kubernetes MicroTime: RFC 3339 with microseconds. */
const microTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '000Z');

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
    auth = m.auth;
    agent.destroy();
    agent = makeAgent();
  } else {
    // Stop: no new renewal; the main thread's last one (the restart grace) goes after those in flight.
    void clock.stop().finally(() => {
      agent.destroy();
      post({ type: 'stopped' });
    });
  }
});

clock.start();
