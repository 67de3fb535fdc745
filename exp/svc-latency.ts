// Ad-hoc: where the time from Service apply to ingress goes (not part of the test suite).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FakeApiServer, loadCrdFiles } from '../test/support/fake-apiserver.js';
import { addressPool, service } from '../test/support/k8s-objects.js';
import { Agent, cli } from '../test/e2e/agent.js';
import { REPO_ROOT, createBridge, createHost, deleteBridge, deleteHost, httpGet, uniqueRun } from '../test/e2e/harness.js';
import { createSimNode, deleteSimNode, nodeObject } from '../test/e2e/k8s-nodes.js';

const run = uniqueRun(19);
const BRIDGE = `br-${run.prefix}`;
const NS = run.prefix;
const stateDir = `/tmp/nslb-exp-${run.prefix}`;
const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
await createBridge(BRIDGE);
const n1 = await createSimNode(run, 'n1', 21, BRIDGE);
const client = await createHost({ name: run.name('c'), bridge: BRIDGE, address: run.cidr(100) });
await api.start();
api.create(addressPool('p', { addresses: [`${run.subnet}.200-${run.subnet}.219`], prefixLength: 24, bridge: BRIDGE }));
api.create(nodeObject(n1));
const agent = new Agent({ kubeconfig: api.writeKubeconfig(), namespace: NS, stateDir, bridge: BRIDGE, resync: 30, args: ['--service-provider', '--provider-lease', '3'] });
while (!agent.logs.some((l) => l.includes('provider: started'))) await new Promise((r) => setTimeout(r, 50));
const N = Number(process.argv[2] ?? 3);
for (let i = 0; i < N; i++) {
  api.clearRequestLog();
  const t0 = Date.now();
  const mark = agent.logs.length;
  api.create(service(`s${i}`, { namespace: NS, ports: [{ port: 80, targetPort: 8080 }] }));
  let ip: string | undefined;
  while ((ip = (api.get('v1', 'services', NS, `s${i}`) as any)?.status?.loadBalancer?.ingress?.[0]?.ip) === undefined) await new Promise((r) => setTimeout(r, 5));
  const tI = Date.now() - t0;
  while ((await httpGet(client, `http://${ip}/`, { timeoutMs: 500 })).status !== 200);
  console.log(`s${i}: ingress ${tI} ms, 200 at ${Date.now() - t0} ms`);
  for (const l of agent.logs.slice(mark)) {
    try { const j = JSON.parse(l); console.log(`  +${j.time - t0} ${j.msg} ${j.lb ?? j.service ?? ''} ${j.ms ?? ''}`); } catch {}
  }
  for (const e of api.requestLog()) if (!e.watch) console.log(`  req ${e.method} ${e.path} ${e.status}`);
}
await agent.stop();
await cli(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]);
await api.stop();
await deleteSimNode(n1);
await deleteHost(client.name);
await deleteBridge(BRIDGE);
await rm(stateDir, { recursive: true, force: true });
