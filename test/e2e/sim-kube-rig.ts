// The simulated cluster in Kubernetes mode as the e2e tests of issue 17 set it up: the in-test API server with
// nslb's CRDs, `scripts/sim-cluster.sh up N --kubeconfig FILE -- FLAGS`, one member host answering "member m1"
// on port 8080 and one client host on sim-provider. No test cases here; tests using it run under the data-plane
// lock like every e2e test.
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FakeApiServer, loadCrdFiles, type Obj } from '../support/fake-apiserver.js';
import { ensureNode, REPO_ROOT, runCommand, startHttpServer, waitFor, type Host, type HttpServerHandle, type TestRun } from './harness.js';
import { assertNoRig, deleteProviderHost, providerHost, raiseControlPlane, sim, SIM_DIR } from './sim-rig.js';

export interface KubeSimRigOptions {
  nodes: number;
  /** The agents' flags (after `--`). */
  agentFlags: string[];
  /** Routes the member and the client add on their link (VIPs outside the run's /24). */
  routes?: string[];
  /** Before the tests: every agent's node Lease `nslb-node-<node>` in this namespace, and (`scheduler`) a leader. */
  waitFor?: { leasesIn: string; scheduler?: boolean };
}

export class KubeSimRig {
  readonly api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')) });
  kubeconfig = '';
  member!: Host;
  client!: Host;
  #server: HttpServerHandle | undefined;
  #weMadeTheRig = false;
  #restorePriority: (() => void) | undefined;

  constructor(
    private readonly run: TestRun,
    private readonly o: KubeSimRigOptions,
  ) {}

  get nodes(): string[] {
    return Array.from({ length: this.o.nodes }, (_, i) => `node${i + 1}`);
  }

  /** For beforeAll (allow it 240 s). */
  async start(): Promise<void> {
    await ensureNode();
    await assertNoRig();
    await this.api.start();
    // The in-test API server stands for a control plane with CPUs of its own (raiseControlPlane says why).
    try {
      this.#restorePriority = raiseControlPlane();
    } catch (err) {
      console.log(`cannot raise the in-test API server's priority (${String(err)}): testing without`);
    }
    this.kubeconfig = this.api.writeKubeconfig();
    this.#weMadeTheRig = true;
    await sim('up', String(this.o.nodes), '--kubeconfig', this.kubeconfig, '--', ...this.o.agentFlags);
    this.member = await providerHost(this.run, 'm1', 11);
    this.client = await providerHost(this.run, 'c', 100);
    for (const route of this.o.routes ?? []) {
      for (const h of [this.member, this.client]) await runCommand(['ip', '-n', h.netns, 'route', 'add', route, 'dev', 'eth0']);
    }
    this.#server = await startHttpServer(this.member, { port: 8080, name: 'member m1' });
    const wait = this.o.waitFor;
    if (wait === undefined) return;
    for (const node of this.nodes) {
      await waitFor(() => this.api.get('coordination.k8s.io/v1', 'leases', wait.leasesIn, `nslb-node-${node}`), {
        timeoutMs: 30_000,
        message: `${node}'s node Lease`,
      });
    }
    if (wait.scheduler === true) {
      const leader = () => (this.api.get('coordination.k8s.io/v1', 'leases', wait.leasesIn, 'nslb-scheduler') as Obj | undefined)?.spec?.holderIdentity;
      await waitFor(leader, { timeoutMs: 30_000, message: 'a scheduler' });
    }
  }

  /** For afterAll (allow it 300 s). `keep`: leave the nodes up for a person to look at (NSLB_SIM_KEEP_SECONDS first). */
  async stop({ keep = false }: { keep?: boolean } = {}): Promise<void> {
    await this.#server?.stop();
    if (this.member) await deleteProviderHost(this.member);
    if (this.client) await deleteProviderHost(this.client);
    if (keep) await new Promise((r) => setTimeout(r, Number(process.env.NSLB_SIM_KEEP_SECONDS ?? 0) * 1000));
    if (this.#weMadeTheRig && keep) console.log(`rig kept in ${SIM_DIR} (NSLB_SIM_KEEP=1): run scripts/sim-cluster.sh down`);
    else if (this.#weMadeTheRig) await sim('down');
    await this.api.stop().catch(() => {});
    this.#restorePriority?.();
    this.#restorePriority = undefined;
    if (this.kubeconfig) await rm(dirname(this.kubeconfig), { recursive: true, force: true });
  }
}
