// The leader Lease's thread (leader-thread.ts): while this agent leads, the renewals are conditional replaces of the
// Lease sent from here, one after the other, each from the Lease as the last one left it (its resourceVersion), as
// leader.ts's fast path does on the main thread. A renewal that lands within the renew deadline is written to the
// shared clock the main thread's fence reads. Anything else (a conflict: someone wrote the Lease; an error; no answer)
// ends the renewals here and goes back to the main thread, which reads the Lease as a candidate does. The renewals
// go on only while the main thread sends its heartbeat (a wedged agent lets the Lease run out, as a dead one does).
import { parentPort, workerData } from 'node:worker_threads';
import type { FromLeaderWorker, LeaderWorkerInit, ToLeaderWorker } from './leader-thread.js';
import { microTime, ThreadHttp, threadLog } from './thread-http.js';

const port = parentPort;
if (port === null) throw new Error('leader-worker.js runs as a worker thread of the agent');
const init = workerData as LeaderWorkerInit;
const post = (m: FromLeaderWorker): void => port.postMessage(m);
const log = threadLog(init.levelValue, { ...init.bindings, lease: init.name });
const http = new ThreadHttp(init.url, init.auth);
const renewedAt = new BigInt64Array(init.shared);

/** The Lease as this thread's last renewal left it (the API server's answer); undefined: not renewing. */
let base: Record<string, unknown> | undefined;
let timer: NodeJS.Timeout | undefined;
let inFlight: Promise<void> = Promise.resolve();
let aliveAt = Date.now();
let stalled = false;

function halt(reason: string | undefined): void {
  clearTimeout(timer);
  timer = undefined;
  if (base === undefined) return;
  base = undefined;
  if (reason !== undefined) post({ type: 'doubt', reason });
}

function schedule(at: number): void {
  clearTimeout(timer);
  timer = setTimeout(
    () => {
      inFlight = renew();
    },
    Math.max(0, at - Date.now()),
  );
}

async function renew(): Promise<void> {
  const from = base;
  if (from === undefined) return;
  if (Date.now() - aliveAt > init.stallMs) {
    if (!stalled) log('error', { silentMs: Date.now() - aliveAt }, `${init.role}: the agent's main thread does not answer: the Lease is no longer renewed`);
    stalled = true;
    halt("the agent's main thread does not answer");
    return;
  }
  const asked = Date.now();
  const spec = (from.spec ?? {}) as Record<string, unknown>;
  const body = JSON.stringify({
    ...from,
    spec: { ...spec, holderIdentity: init.identity, leaseDurationSeconds: init.leaseSeconds, renewTime: microTime(asked) },
  });
  let status: number;
  let answer: string;
  try {
    ({ status, body: answer } = await http.send('PUT', 'application/json', body, init.deadlineMs));
  } catch (err) {
    if (base === from) halt(err instanceof Error ? err.message : String(err));
    return;
  }
  // Halted (or handed a newer Lease) while this one was out: what it left is not this thread's to go on from.
  if (base !== from) return;
  if (status !== 200) {
    halt(status === 409 ? 'conflict: the Lease was written by someone else' : `HTTP ${status}`);
    return;
  }
  try {
    base = JSON.parse(answer) as Record<string, unknown>;
  } catch {
    halt('the answer is not JSON');
    return;
  }
  // A renewal that came back after its own deadline is no ground to lead on; the next one may be.
  if (Date.now() < asked + init.deadlineMs) Atomics.store(renewedAt, 0, BigInt(asked));
  schedule(asked + init.retryMs);
}

port.on('message', (m: ToLeaderWorker) => {
  if (m.type === 'alive') {
    if (stalled) log('warn', {}, `${init.role}: the agent's main thread answers again`);
    stalled = false;
    aliveAt = Date.now();
  } else if (m.type === 'auth') {
    http.setAuth(m.auth);
  } else if (m.type === 'renew') {
    base = JSON.parse(m.lease) as Record<string, unknown>;
    schedule(m.renewedAt + init.retryMs);
  } else {
    // halt or stop: no new renewal; answered once the one in flight (if any) has its answer.
    halt(undefined);
    void inFlight.finally(() => {
      if (m.type === 'halt') post({ type: 'halted', id: m.id });
      else {
        http.destroy();
        post({ type: 'stopped' });
      }
    });
  }
});
