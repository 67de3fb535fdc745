// Simulated Kubernetes nodes for the Service provider's e2e tests: each is a host (a netns on the bridge)
// whose every NodePort (30000–32767) reaches its one member server, as kube-proxy would send it to a pod; the
// server's /healthz plays kube-proxy's healthCheckNodePort (200 when the node has a ready local endpoint,
// 503 when not). The matching Node object is written to the in-test API server.
import type { FakeApiServer, JsonObject } from '../support/fake-apiserver.js';
import { node } from '../support/k8s-objects.js';
import { createHost, deleteHost, runCommand, startHttpServer, type Host, type HttpServerHandle, type TestRun } from './harness.js';

export const NODE_SERVER_PORT = 8080;

export interface SimNode {
  name: string;
  host: Host;
  server: HttpServerHandle;
}

export async function createSimNode(run: TestRun, suffix: string, octet: number, bridge: string): Promise<SimNode> {
  const host = await createHost({ name: run.name(suffix), bridge, address: run.cidr(octet) });
  const nft = (...args: string[]) => runCommand(['ip', 'netns', 'exec', host.netns, 'nft', ...args]);
  await nft('add', 'table', 'ip', 'nodeport');
  await nft('add', 'chain', 'ip', 'nodeport', 'pre', '{ type nat hook prerouting priority -100 ; }');
  await nft('add', 'rule', 'ip', 'nodeport', 'pre', 'tcp', 'dport', '30000-32767', 'redirect', 'to', `:${NODE_SERVER_PORT}`);
  const server = await startHttpServer(host, { port: NODE_SERVER_PORT, name: `node ${suffix}` });
  return { name: suffix, host, server };
}

export async function deleteSimNode(n: SimNode): Promise<void> {
  await n.server.stop().catch(() => {});
  await deleteHost(n.host.name).catch(() => {});
}

/** The Node object of a simulated node, Ready or not. */
export function nodeObject(n: SimNode, ready = true): JsonObject {
  return node(n.name, n.host.address, ready);
}

export function setNodeReady(api: FakeApiServer, n: SimNode, ready: boolean): void {
  const current = api.get('v1', 'nodes', '', n.name) as JsonObject;
  api.updateStatus({ ...current, status: nodeObject(n, ready).status as JsonObject });
}
