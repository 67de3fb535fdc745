// The node Lease's thread (node-lease-thread.ts): renews the Lease while the agent's main thread sends its heartbeat.
import { parentPort, workerData } from 'node:worker_threads';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../log/logger.js';
import { NodeLease } from './node-lease.js';
import type { FromNodeLeaseWorker, NodeLeaseWorkerInit, ToNodeLeaseWorker } from './node-lease-thread.js';

const port = parentPort;
if (port === null) throw new Error('node-lease-worker.js runs as a worker thread of the agent');
const init = workerData as NodeLeaseWorkerInit;
const post = (m: FromNodeLeaseWorker): void => port.postMessage(m);

const kubeConfig = new KubeConfig();
kubeConfig.loadFromString(init.kubeConfig);
// JSON lines on stderr, written from this thread, as the agent's (pretty only on a terminal, which a worker's
// stderr is not: the agent's lines are JSON then too when it runs as a service).
const logger = createLogger(init.level, false).child(init.bindings);

let aliveAt = Date.now();
let stalled = false;
const lease = new NodeLease({
  kubeConfig,
  namespace: init.namespace,
  node: init.node,
  leaseSeconds: init.leaseSeconds,
  ...(init.renewSeconds === undefined ? {} : { renewSeconds: init.renewSeconds }),
  restartGraceSeconds: init.restartGraceSeconds,
  logger,
  mayRenew: () => {
    const silentMs = Date.now() - aliveAt;
    if (silentMs <= init.stallMs) return true;
    // Said once per stall: the node goes dead to the scheduler after one Lease duration from here.
    if (!stalled) logger.error({ silentMs }, "the agent's main thread does not answer: the node Lease is no longer renewed");
    stalled = true;
    return false;
  },
  onRenewed: () => post({ type: 'renewed' }),
});

port.on('message', (m: ToNodeLeaseWorker) => {
  if (m.type === 'alive') {
    if (stalled) logger.warn("the agent's main thread answers again: the node Lease is renewed again");
    stalled = false;
    aliveAt = Date.now();
    return;
  }
  void lease.stop().finally(() => post({ type: 'stopped' }));
});

lease.start().then(
  () => post({ type: 'started' }),
  (err: unknown) => post({ type: 'started', error: err instanceof Error ? err.message : String(err) }),
);
