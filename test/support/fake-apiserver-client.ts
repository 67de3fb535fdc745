// Reaching the in-test API server from a test: started, with the KubeConfig the code under test reaches it
// through (one place for what every Kubernetes-mode unit test sets up, so that they all build the client the same
// way), and the Status of a call it refused.
import { KubeConfig } from '@kubernetes/client-node';
import { AgentKubeConfig } from '../../src/kube/http.js';
import { FakeApiServer, loadCrdFiles, type FakeApiServerOptions, type Obj } from './fake-apiserver.js';

const CRD_DIR = new URL('../../crds', import.meta.url).pathname;

export interface StartFakeApiServerOptions extends Omit<FakeApiServerOptions, 'crds'> {
  /** 'repo': the CRDs of crds/ (the schemas, defaults and validation a cluster has installed); unset: schemaless kinds. */
  crds?: FakeApiServerOptions['crds'] | 'repo';
  /**
   * Which client the KubeConfig makes: client-node's own (its HTTP library), or the agent's (kube/http.ts, which
   * rejects responses cut short). Default 'client-node'.
   */
  client?: 'client-node' | 'agent';
}

export interface StartedFakeApiServer<K extends KubeConfig = KubeConfig> {
  server: FakeApiServer;
  kubeConfig: K;
  url: string;
  /** Stops the server (its data stays; server.start() resumes on the same port). */
  close(): Promise<void>;
}

/** The agent's KubeConfig for a server at `server` (plain http, no auth), as `nslb run --kubernetes` builds one. */
export function agentKubeConfig(server: string, opts: { requestTimeoutMs?: number } = {}): AgentKubeConfig {
  const kc = new AgentKubeConfig(opts);
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

export async function startFakeApiServer(opts: StartFakeApiServerOptions & { client: 'agent' }): Promise<StartedFakeApiServer<AgentKubeConfig>>;
export async function startFakeApiServer(opts?: StartFakeApiServerOptions): Promise<StartedFakeApiServer>;
export async function startFakeApiServer(opts: StartFakeApiServerOptions = {}): Promise<StartedFakeApiServer> {
  const { crds, client, ...rest } = opts;
  const server = new FakeApiServer({ ...rest, ...(crds === undefined ? {} : { crds: crds === 'repo' ? loadCrdFiles(CRD_DIR) : crds }) });
  await server.start();
  let kubeConfig: KubeConfig;
  if (client === 'agent') kubeConfig = agentKubeConfig(server.url);
  else {
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(server.kubeconfig());
  }
  return { server, kubeConfig, url: server.url, close: () => server.stop() };
}

/** The HTTP code and the Status an ApiException carries (client-node 1.x keeps the raw body text for untyped answers). */
export async function failure(p: Promise<unknown>): Promise<{ code: number; status: Obj }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: number; body?: unknown };
    return { code: e.code ?? 0, status: (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as Obj };
  }
  throw new Error('expected the request to fail');
}
