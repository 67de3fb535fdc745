// Phase (s): a Service of type LoadBalancer applied → its ingress IP in status, and traffic through it. The
// agent runs in Kubernetes mode with --service-provider against the in-test API server (the benchmark has no
// cluster); the bench's member hosts are the "nodes": every NodePort on them reaches their member server,
// as kube-proxy would send it to a pod (an nft redirect in each, removed afterwards).
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FakeApiServer, loadCrdFiles } from '../../test/support/fake-apiserver.js';
import { addressPool, node as k8sNode, service } from '../../test/support/k8s-objects.js';
import { REPO_ROOT, runCommand } from '../../test/e2e/harness.js';
import { BenchAgent } from './agent.js';
import { log, MEMBERS, nslbMember, now, PREFIX, Probe, sleep, vipOf, type BenchNode, type Cleanup, type MemberName } from './node-env.js';
import { firstSeen } from './report.js';

export interface ServicesResult {
  /** Service created → status.loadBalancer.ingress set, ms. */
  ingress: number[];
  /** Service created → first HTTP 200 through the ingress IP, ms. */
  traffic: number[];
  /** Runs whose ingress IP was not the one the pool was expected to give (the probe then watched the wrong one). */
  unexpected: number;
}

const NAMESPACE = 'bench-svc';
const NODES: MemberName[] = ['m1', 'm2'];
/** The pool: 10.230.4.1–250, never used by the other phases. */
const POOL_FIRST = 4;

async function nodePortRedirect(netns: string, on: boolean): Promise<void> {
  const nft = (...args: string[]) => runCommand(['ip', 'netns', 'exec', netns, 'nft', ...args], { allowFailure: !on });
  if (!on) {
    await nft('delete', 'table', 'ip', 'nslb-bench-nodeport');
    return;
  }
  await nft('add', 'table', 'ip', 'nslb-bench-nodeport');
  await nft('add', 'chain', 'ip', 'nslb-bench-nodeport', 'pre', '{ type nat hook prerouting priority -100 ; }');
  await nft('add', 'rule', 'ip', 'nslb-bench-nodeport', 'pre', 'tcp', 'dport', '30000-32767', 'redirect', 'to', ':8080');
}

export async function phaseServices(runs: number, node: BenchNode, root: string, cleanup: Cleanup): Promise<ServicesResult> {
  const stateDir = join(root, 'state-services');
  await mkdir(stateDir, { recursive: true });
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  await api.start();
  cleanup.add('in-test API server', () => api.stop());
  for (const m of NODES) {
    cleanup.add(`NodePort redirect in bnch-${m}`, () => nodePortRedirect(`bnch-${m}`, false));
    await nodePortRedirect(`bnch-${m}`, true);
    api.create(k8sNode(`bnch-${m}`, nslbMember(m)));
  }
  api.create(addressPool('bench', { addresses: [`${vipOf(230, POOL_FIRST, 0)}-${vipOf(230, POOL_FIRST, 249)}`], prefixLength: PREFIX, bridge: node.bridge }));
  const agent = new BenchAgent({
    kubeconfig: api.writeKubeconfig(root),
    stateDir,
    bridge: node.bridge,
    resyncS: 30,
    args: ['--service-provider', '--node-name', 'bench'],
  });
  cleanup.add('agent (services)', () => agent.stop());
  for (let waited = 0; !agent.messages.has('provider: started'); waited += 100) {
    if (agent.exited() || waited > 60_000) throw new Error(`the provider did not start:\n${agent.tail.join('\n')}`);
    await sleep(100);
  }
  log(`agent (services) started, pid ${agent.pid}; ${runs} Services`);
  const result: ServicesResult = { ingress: [], traffic: [], unexpected: 0 };
  for (let i = 0; i < runs; i++) {
    // Services stay until the end, so the pool's lowest free address is the i-th: a VIP no ARP cache knows.
    const expected = vipOf(230, POOL_FIRST, i);
    const probe = new Probe(node.client, `http://${expected}/`);
    await sleep(100);
    const name = `s-${String(i).padStart(3, '0')}`;
    const t0 = now();
    api.create(service(name, { namespace: NAMESPACE, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    let ip: string | undefined;
    let tIngress = Infinity;
    while (now() - t0 < 30_000) {
      ip = (api.get('v1', 'services', NAMESPACE, name) as { status?: { loadBalancer?: { ingress?: { ip?: string }[] } } } | undefined)?.status?.loadBalancer
        ?.ingress?.[0]?.ip;
      if (ip !== undefined) {
        tIngress = now() - t0;
        break;
      }
      await sleep(2);
    }
    if (ip !== expected) result.unexpected++;
    const tTraffic = await probe.until((r) => firstSeen(r, t0, (x) => x.s === 200), 30_000);
    await probe.stop();
    result.ingress.push(tIngress);
    result.traffic.push(tTraffic);
    log(`(s) ${i + 1}/${runs}: ingress ${Math.round(tIngress)} ms (${ip ?? 'none'}), first 200 ${Math.round(tTraffic)} ms`);
    if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
    await sleep(300);
  }
  // Deleting them all goes through the provider's cleanup (finalizers); then the agent stops.
  for (let i = 0; i < runs; i++) api.delete('v1', 'services', NAMESPACE, `s-${String(i).padStart(3, '0')}`);
  const t = now();
  while (api.list('v1', 'services', NAMESPACE).length > 0 && now() - t < 60_000) await sleep(100);
  await agent.stop();
  for (const m of Object.keys(MEMBERS) as MemberName[]) if (NODES.includes(m)) await nodePortRedirect(`bnch-${m}`, false);
  await api.stop();
  await rm(join(root, 'kubeconfig'), { force: true });
  return result;
}
