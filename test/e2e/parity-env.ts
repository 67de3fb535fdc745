// The setting every parity-*.test.ts file (issue 3: Octavia parity, proven by traffic) shares: its own OVS
// bridge, run namespace and subnet (uniqueRun), member and client hosts, an agent in file-watch mode on its
// own watched directory and state dir, and objects written as YAML the way DESIGN §1 spells them.
//
// Each test gets its own LoadBalancer (its own VIP, netns and HAProxy): one object nslb cannot handle yet
// then blocks only that test's load balancer, never the next test's. Failures quote the status of the
// objects involved, so a red test says what nslb reported, not just "timed out".
import { readdir, readFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import yaml from 'js-yaml';
import { nodeNames } from '../../src/desired/names.js';
import type { StatusFile } from '../../src/status/status-file.js';
import { Agent, cli, readStatus } from './agent.js';
import {
  createBridge,
  createHost,
  deleteBridge,
  deleteHost,
  ensureNode,
  httpGet,
  listNetns,
  runCommand,
  startHttpServer,
  uniqueRun,
  waitFor,
  type Host,
  type HttpGetOptions,
  type HttpResponse,
  type HttpServerHandle,
  type HttpServerOptions,
  type TestRun,
} from './harness.js';

export type Kind = 'LoadBalancer' | 'Listener' | 'Pool' | 'Member' | 'HealthMonitor' | 'L7Policy' | 'L7Rule';
export type Spec = Record<string, unknown>;

export interface ApiDoc {
  kind: Kind;
  name: string;
  spec: Spec;
}

const doc =
  (kind: Kind) =>
  (name: string, spec: Spec): ApiDoc => ({ kind, name, spec });
export const loadBalancer = doc('LoadBalancer');
export const listener = doc('Listener');
export const pool = doc('Pool');
export const member = doc('Member');
export const healthMonitor = doc('HealthMonitor');
export const l7Policy = doc('L7Policy');
export const l7Rule = doc('L7Rule');

/** The quickest monitor settings nslb accepts: a broken member goes ERROR within about two seconds. */
export const FAST_MONITOR = { delay: 1, timeout: 1, maxRetries: 1, maxRetriesDown: 1 } as const;

/**
 * Long enough for a health check result to reach status.json: the agent reads HAProxy's stats every 300 ms
 * (--status-interval 300). Used where a status must be confirmed after an event the test saw happen.
 */
export const STATUS_SETTLE_MS = 1_000;

/** How many times each body occurs. */
export function tally(bodies: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const b of bodies) counts[b] = (counts[b] ?? 0) + 1;
  return counts;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class ParityEnv {
  readonly run: TestRun;
  readonly bridge: string;
  /** metadata.namespace of every object: this run's own, so nothing meets another run's objects. */
  readonly namespace: string;
  readonly root: string;
  readonly watchDir: string;
  readonly stateDir: string;
  agent: Agent | undefined;
  readonly #hosts: string[] = [];
  readonly #servers: HttpServerHandle[] = [];
  readonly #lbNames = new Set<string>();

  private constructor(plane: number) {
    this.run = uniqueRun(plane);
    this.bridge = `br-${this.run.prefix}`;
    this.namespace = this.run.prefix;
    this.root = join(tmpdir(), `nslb-parity-${this.run.prefix}`);
    this.watchDir = join(this.root, 'watch');
    this.stateDir = join(this.root, 'state');
  }

  /** Names only: nothing exists on the node until start(). */
  static create(plane: number): ParityEnv {
    return new ParityEnv(plane);
  }

  /** Bridge, directories and a running agent. Call cleanup() in afterAll even if this throws. */
  async start(options: { resync?: number; extraArgs?: string[] } = {}): Promise<void> {
    await ensureNode();
    const others = await otherAgents(undefined);
    if (others.length > 0) {
      console.warn(`nslb agents already run on this node (pids ${others.join(', ')}): they will remove this run's load balancers`);
    }
    await createBridge(this.bridge);
    await rm(this.root, { recursive: true, force: true });
    await mkdir(this.watchDir, { recursive: true });
    this.agent = new Agent({
      watch: this.watchDir,
      stateDir: this.stateDir,
      bridge: this.bridge,
      resync: options.resync ?? 3,
      ...(options.extraArgs === undefined ? {} : { extraArgs: options.extraArgs }),
    });
  }

  /** VIP number i (1–40) of this run: .201, .202, … (hosts use .11–.199). */
  vip(i: number): string {
    if (!Number.isInteger(i) || i < 1 || i > 40) throw new Error(`vip index must be 1–40, got ${i}`);
    return this.run.ip(200 + i);
  }

  async host(suffix: string, hostOctet: number): Promise<Host> {
    const name = this.run.name(suffix);
    this.#hosts.push(name);
    return createHost({ name, bridge: this.bridge, address: this.run.cidr(hostOctet) });
  }

  /**
   * The usual hosts (as harness.ts's MemberHosts): members m1…mN at .11, .12, … each serving HTTP on 8080 as
   * "member mK", and a client at .100.
   */
  async membersAndClient(count: number): Promise<{ members: Host[]; client: Host }> {
    const members: Host[] = [];
    for (let i = 1; i <= count; i++) members.push(await this.host(`m${i}`, 10 + i));
    const client = await this.host('c', 100);
    for (const [i, m] of members.entries()) await this.server(m, { port: 8080, name: `member m${i + 1}` });
    return { members, client };
  }

  async server(host: Host, options: HttpServerOptions): Promise<HttpServerHandle> {
    const server = await startHttpServer(host, options);
    this.#servers.push(server);
    return server;
  }

  /** Writes objects as one multi-document YAML file in the watched directory (atomically). */
  async apply(file: string, docs: readonly ApiDoc[]): Promise<void> {
    for (const d of docs) if (d.kind === 'LoadBalancer') this.#lbNames.add(d.name);
    const text = docs
      .map((d) =>
        yaml.dump(
          { apiVersion: 'nslb.dev/v1alpha1', kind: d.kind, metadata: { name: d.name, namespace: this.namespace }, spec: d.spec },
          { noRefs: true, lineWidth: -1 },
        ),
      )
      .join('---\n');
    await this.writeWatched(file, text);
  }

  /** Writes any file (a PEM, say) under the watched directory, atomically. */
  async writeWatched(relativePath: string, content: string | Buffer): Promise<void> {
    const path = join(this.watchDir, relativePath);
    await mkdir(dirname(path), { recursive: true });
    // Hidden while incomplete: the watcher skips dot files.
    const tmp = join(dirname(path), `.${Date.now()}.tmp`);
    await writeFile(tmp, content, { mode: 0o600 });
    await rename(tmp, path);
  }

  async removeWatched(relativePath: string): Promise<void> {
    await rm(join(this.watchDir, relativePath), { force: true });
  }

  async status(): Promise<StatusFile | undefined> {
    return readStatus(this.stateDir);
  }

  /** The netns nslb gives a load balancer of this run (DESIGN §2). */
  netnsOf(lbName: string): string {
    return nodeNames(this.namespace, lbName).netns;
  }

  /** Where nslb keeps a load balancer's files (haproxy.cfg, certs/). */
  lbDir(lbName: string): string {
    return join(this.stateDir, 'lb', this.netnsOf(lbName));
  }

  /**
   * What status.json says about the given objects ('Kind/name'): provisioning, operating and, unless ACTIVE,
   * the Ready message; plus any file errors. Quoted in every timeout below.
   */
  async describe(keys: readonly string[]): Promise<string> {
    const file = await this.status();
    if (file === undefined) return 'no status.json yet';
    const lines = keys.map((key) => {
      const [kind, name] = key.split('/');
      const o = file.objects.find((x) => x.kind === kind && x.name === name);
      if (o === undefined) return `${key}: not in status.json`;
      const ready = o.status.conditions.find((c) => c.type === 'Ready');
      const why = o.status.provisioningStatus === 'ACTIVE' ? '' : ` (${ready?.message ?? 'no Ready condition'})`;
      return `${key}: ${o.status.provisioningStatus}/${o.status.operatingStatus}${why}`;
    });
    for (const e of file.errors) lines.push(`file error ${e.file} document ${e.document}: ${e.message}`);
    const agentErrors = (this.agent?.logs ?? []).filter((l) => /"level":(50|60)/.test(l)).slice(-3);
    for (const l of agentErrors) lines.push(`agent: ${l.slice(0, 400)}`);
    const others = await otherAgents(this.agent?.child.pid);
    if (others.length > 0) {
      // Every agent garbage-collects the load balancers it does not own, so two agents on one node fight.
      lines.push(`WARNING: other nslb agents run on this node and remove this run's load balancers: pids ${others.join(', ')}`);
    }
    return lines.join('; ');
  }

  /** Waits until each 'Kind/name' has the given operating status (and is provisioned ACTIVE). */
  async waitForOperating(expected: Record<string, string>, timeoutMs = 20_000): Promise<void> {
    const keys = Object.keys(expected);
    try {
      await waitFor(
        async () => {
          const file = await this.status();
          return keys.every((key) => {
            const [kind, name] = key.split('/');
            const o = file?.objects.find((x) => x.kind === kind && x.name === name);
            return o?.status.provisioningStatus === 'ACTIVE' && o.status.operatingStatus === expected[key];
          });
        },
        { timeoutMs, intervalMs: 250, message: `operating status ${JSON.stringify(expected)}` },
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; nslb reports: ${await this.describe(keys)}`, { cause: error });
    }
  }

  /** Waits until every object of the given kinds/names is provisioned ACTIVE. */
  async waitForActive(keys: readonly string[], timeoutMs = 20_000): Promise<void> {
    try {
      await waitFor(
        async () => {
          const file = await this.status();
          return keys.every((key) => {
            const [kind, name] = key.split('/');
            return file?.objects.find((x) => x.kind === kind && x.name === name)?.status.provisioningStatus === 'ACTIVE';
          });
        },
        { timeoutMs, intervalMs: 250, message: `ACTIVE: ${keys.join(', ')}` },
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; nslb reports: ${await this.describe(keys)}`, { cause: error });
    }
  }

  /**
   * Waits until a request from `client` to `url` gets `status` (200 unless said), the sign that a load
   * balancer is configured and serving. On timeout, quotes the last response and nslb's view of `keys`.
   */
  async waitForResponse(
    client: Host,
    url: string,
    keys: readonly string[],
    options: HttpGetOptions & { status?: number; waitMs?: number; body?: string } = {},
  ): Promise<HttpResponse> {
    const { status = 200, waitMs = 20_000, body, ...get } = options;
    let last: HttpResponse | undefined;
    try {
      return await waitFor(
        async () => {
          last = await httpGet(client, url, { timeoutMs: 2_000, ...get });
          return last.status === status && (body === undefined || last.body.trim() === body) ? last : undefined;
        },
        { timeoutMs: waitMs, intervalMs: 250, message: `${url} to answer ${status}${body === undefined ? '' : ` ${body}`}` },
      );
    } catch (error) {
      const seen = last === undefined ? 'nothing' : `${last.status} ${JSON.stringify(last.body.slice(0, 200))} ${last.error ?? ''}`;
      throw new Error(`${(error as Error).message}; last response: ${seen}; nslb reports: ${await this.describe(keys)}`, {
        cause: error,
      });
    }
  }

  /** `nslb status` (table) for this run's state dir. */
  async statusTable(): Promise<{ code: number; stdout: string; stderr: string }> {
    return cli(['status', '--state-dir', this.stateDir]);
  }

  /**
   * Removes everything this file made, each step on its own so one failure does not leave the rest:
   * the agent, nslb's load balancers (`nslb cleanup`, then by hand whatever that left: HAProxy processes
   * started for this state dir, the netns of this run's load balancers), servers, hosts, bridge, files.
   */
  async cleanup(): Promise<void> {
    const agent = this.agent;
    this.agent = undefined;
    if (agent !== undefined) {
      const stopped = await Promise.race([agent.stop().then(() => true), sleep(5_000).then(() => false)]).catch(() => false);
      if (!stopped) await agent.kill().catch(() => {});
    }
    await cli(['cleanup', '--scope', 'state-dir', '--state-dir', this.stateDir, '--bridge', this.bridge]).catch(() => {});
    await this.#killLeftoverHaproxies().catch(() => {});
    const netns = await listNetns().catch(() => [] as string[]);
    for (const lb of this.#lbNames) {
      const ns = this.netnsOf(lb);
      if (netns.includes(ns)) await runCommand(['ip', 'netns', 'del', ns], { allowFailure: true }).catch(() => {});
    }
    for (const s of this.#servers) await s.stop().catch(() => {});
    for (const h of this.#hosts) await deleteHost(h).catch(() => {});
    await deleteBridge(this.bridge).catch(() => {});
    await rm(this.root, { recursive: true, force: true }).catch(() => {});
  }

  /** HAProxy masters whose command line names a config under this run's state dir (only ours). */
  async #killLeftoverHaproxies(): Promise<void> {
    const lbDir = join(this.stateDir, 'lb');
    const dirs = await readdir(lbDir).catch(() => [] as string[]);
    for (const d of dirs) {
      const pid = Number.parseInt((await readFile(join(lbDir, d, 'haproxy.pid'), 'utf8').catch(() => '')).trim(), 10);
      if (!Number.isInteger(pid) || pid <= 0) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (!cmdline.includes(join(lbDir, d))) continue;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Gone already.
      }
    }
  }
}

/**
 * PIDs of `nslb run` processes on this node other than `ours`. An agent's resync removes every marked load
 * balancer it does not own, and `nslb cleanup` removes all of them, so a second agent (another test run, the
 * demo) makes these tests fail for reasons that are not about the code under test.
 */
export async function otherAgents(ours: number | undefined): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === ours || pid === process.pid) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.some((a) => a.endsWith('cli/main.js')) && argv.includes('run')) pids.push(pid);
  }
  return pids;
}
