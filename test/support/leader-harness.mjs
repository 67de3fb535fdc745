// A LeaderElector (the built one, dist/kube/leader.js) in a worker thread of the test, so that the test can block
// the elector's own thread (as a busy agent's main thread) while the in-test API server, on the test's main thread,
// goes on answering. workerData: { server, namespace, name, identity, leaseSeconds, thread, stallMs }; `thread`
// false renews on the elector's thread, as the sources do. Messages out: {type: 'start'|'stop', at}, {type:
// 'unblocked', at}, {type: 'stopped'}; in: {type: 'block', ms}, {type: 'stop'}.
import { parentPort, workerData } from 'node:worker_threads';
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { LeaderElector } from '../../dist/kube/leader.js';

const port = parentPort;
const w = workerData;
const kc = new KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: 'c', server: w.server, skipTLSVerify: true }],
  users: [{ name: 'u' }],
  contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
  currentContext: 'x',
});
const elector = new LeaderElector({
  kubeConfig: kc,
  role: 'scheduler',
  namespace: w.namespace,
  name: w.name,
  identity: w.identity,
  leaseSeconds: w.leaseSeconds,
  logger: pino({ level: 'silent' }),
  ...(w.thread ? {} : { threadScript: false }),
  ...(w.stallMs === undefined ? {} : { threadStallMs: w.stallMs }),
  onStartedLeading: async () => port.postMessage({ type: 'start', at: Date.now() }),
  onStoppedLeading: async () => port.postMessage({ type: 'stop', at: Date.now() }),
});
elector.start();
port.on('message', (m) => {
  if (m.type === 'block') {
    const end = Date.now() + m.ms;
    while (Date.now() < end) {
      // busy: no timer, no I/O on this thread
    }
    port.postMessage({ type: 'unblocked', at: Date.now() });
  } else if (m.type === 'stop') {
    void elector.stop().then(() => port.postMessage({ type: 'stopped' }));
  }
});
