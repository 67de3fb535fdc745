// Phase (k): Kubernetes mode, N load balancers applied at once to the in-test API server with a realistic
// latency on every request. Two clocks from the apply: until every VIP answers a 200 from the client, and
// until every object is Ready (Ready=True with observedGeneration = generation), as `kubectl wait` would see
// it; and what it cost in status writes per object, then what a quiet agent writes (nothing).
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { pluralOf } from '../../src/api/v1alpha1/crds.js';
import type { Kind } from '../../src/api/v1alpha1/types.js';
import { REPO_ROOT } from '../../test/e2e/harness.js';
import { FakeApiServer, loadCrdFiles, NSLB_API_VERSION, type JsonObject, type RequestLogEntry } from '../../test/support/fake-apiserver.js';
import { BenchAgent } from './agent.js';
import { lbYaml } from './manifests.js';
import { log, nslbMember, now, PREFIX, sleep, vipOf, type BenchNode, type Cleanup } from './node-env.js';
import { ms, verdict, type Row } from './report.js';

const SERVE_TIMES = join(dirname(fileURLToPath(import.meta.url)), '..', 'serve-times.mjs');
const NAMESPACE = 'bench-k';

export interface KubeResult {
  n: number;
  objects: number;
  delayMs: number;
  /** From the apply until the last VIP's first 200; undefined when some never answered. */
  vipMs?: number;
  vipMissing: number;
  /** From the apply until every object is Ready. */
  readyMs: number;
  writesAtReady: number;
  writesSettled: number;
  /** The agent's own count (/metrics nslb_kube_status_writes_total, every result). */
  writesMetrics?: number;
  peakInFlight: number;
  longestChain: number;
  /** Status writes while nothing changed, over `quietS` seconds (two resyncs). */
  quietWrites: number;
  quietS: number;
  eventWrites: number;
}

function serveTimes(
  client: BenchNode['client'],
  ips: readonly string[],
): { result: Promise<{ first: Record<string, number>; missing: string[] }>; stop: () => void } {
  const child = spawn('ip', ['netns', 'exec', client.netns, process.execPath, SERVE_TIMES, '--deadline-ms', '300000'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stdin.end(`${ips.join('\n')}\n`);
  const result = new Promise<{ first: Record<string, number>; missing: string[] }>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(stdout) as { first: Record<string, number>; missing: string[] });
      } catch {
        reject(new Error(`serve-times exited ${code}: ${stdout.trim()}`));
      }
    });
  });
  return { result, stop: () => child.kill('SIGTERM') };
}

function ready(o: JsonObject | undefined): boolean {
  const m = o?.metadata as { generation?: number } | undefined;
  const s = o?.status as { observedGeneration?: number; conditions?: { type: string; status: string }[] } | undefined;
  return s?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' && s.observedGeneration === m?.generation;
}

const statusWrite = (e: RequestLogEntry): boolean => (e.method === 'PATCH' || e.method === 'PUT') && e.path.endsWith('/status');

export async function phaseK(opts: {
  n: number;
  node: BenchNode;
  bridge: string;
  root: string;
  resyncS: number;
  cleanup: Cleanup;
  nslbCleanup: (stateDir: string) => Promise<void>;
}): Promise<KubeResult> {
  const { n, node } = opts;
  const delayMs = 20;
  const api = new FakeApiServer({ crds: loadCrdFiles(join(REPO_ROOT, 'crds')), requestDelayMs: delayMs });
  await api.start();
  opts.cleanup.add('in-test API server', () => api.stop());
  const stateDir = join(opts.root, 'state-kube');
  opts.cleanup.add(`nslb cleanup ${stateDir}`, () => opts.nslbCleanup(stateDir));
  const kubeconfig = join(opts.root, 'kubeconfig');
  await writeFile(kubeconfig, api.kubeconfig(NAMESPACE), { mode: 0o600 });
  const agent = new BenchAgent({ kubeconfig, stateDir, bridge: opts.bridge, resyncS: opts.resyncS });
  opts.cleanup.add('agent (kubernetes)', () => agent.stop());
  for (const t0 = now(); !agent.synced; await sleep(100)) {
    if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
    if (now() - t0 > 60_000) throw new Error(`the agent did not sync in 60 s:\n${agent.tail.join('\n')}`);
  }

  const objects: JsonObject[] = [];
  const vips: string[] = [];
  for (let i = 0; i < n; i++) {
    const vip = vipOf(230, 20, i);
    vips.push(vip);
    // The issue's shape: a LoadBalancer, a Listener, a Pool and a Member each.
    const text = lbYaml({
      namespace: NAMESPACE,
      name: `k-${String(i).padStart(4, '0')}`,
      vip,
      prefixLength: PREFIX,
      members: [{ name: 'm1', address: nslbMember('m1') }],
      noMonitor: true,
    });
    objects.push(...(yaml.loadAll(text) as (JsonObject | null)[]).filter((d): d is JsonObject => d !== null));
  }
  const serving = serveTimes(node.client, vips);
  await sleep(500); // the poller is polling before the apply
  api.clearRequestLog();
  log(`(k) applying ${n} load balancers (${objects.length} objects) at once; API server answers every request after ${delayMs} ms`);
  const t0 = now();
  for (const o of objects) api.create(o);

  const ids = objects.map((o) => ({ kind: o.kind as Kind, name: (o.metadata as { name: string }).name }));
  let readyMs: number | undefined;
  let lastProgress = now();
  while (readyMs === undefined) {
    if (agent.exited()) throw new Error(`the agent exited:\n${agent.tail.join('\n')}`);
    const notReady = ids.filter((id) => !ready(api.get(NSLB_API_VERSION, pluralOf(id.kind), NAMESPACE, id.name))).length;
    if (notReady === 0) readyMs = now() - t0;
    else if (now() - t0 > 10 * 60_000) throw new Error(`${notReady} objects not Ready after 10 minutes`);
    if (now() - lastProgress > 5_000) {
      lastProgress = now();
      log(`(k) ${objects.length - notReady}/${objects.length} Ready (${ms(now() - t0)})`);
    }
    if (readyMs === undefined) await sleep(50);
  }
  const writesAtReady = api.statusWrites();
  log(`(k) every object Ready after ${ms(readyMs)} (${writesAtReady} status writes)`);
  const served = await Promise.race([serving.result, sleep(120_000).then(() => undefined)]);
  if (served === undefined) serving.stop();
  const firsts = served === undefined ? [] : Object.values(served.first);
  const vipMissing = served === undefined ? n : served.missing.length;
  const vipMs = vipMissing === 0 && firsts.length > 0 ? Math.max(...firsts) - t0 : undefined;
  log(`(k) every VIP served after ${ms(vipMs)}${vipMissing > 0 ? ` (${vipMissing} never answered 200)` : ''}`);

  // Later changes of a create (operating status once the health checks have run) count too; then silence.
  await sleep(10_000);
  const writesSettled = api.statusWrites();
  const metrics = await agent.metrics();
  const quietFrom = api.statusWrites();
  const quietS = 2 * opts.resyncS + 1;
  await sleep(quietS * 1000);
  const quietWrites = api.statusWrites() - quietFrom;
  const result: KubeResult = {
    n,
    objects: objects.length,
    delayMs,
    ...(vipMs === undefined ? {} : { vipMs }),
    vipMissing,
    readyMs,
    writesAtReady,
    writesSettled,
    ...(metrics === undefined ? {} : { writesMetrics: metrics.get('nslb_kube_status_writes_total') ?? 0 }),
    peakInFlight: api.peakConcurrency(statusWrite),
    longestChain: api.longestChain(statusWrite),
    quietWrites,
    quietS,
    eventWrites: api.countRequests((e) => e.path.includes('/events') && (e.method === 'POST' || e.method === 'PATCH')),
  };
  log(`(k) ${JSON.stringify(result)}`);
  // Status writes per second after the apply, for reading the run (not in the table).
  const perSecond: number[] = [];
  for (const e of api.requestLog()) if (statusWrite(e)) perSecond[Math.floor((e.at - t0) / 1000)] = (perSecond[Math.floor((e.at - t0) / 1000)] ?? 0) + 1;
  log(`(k) status writes per second after the apply: ${Array.from(perSecond, (x) => x ?? 0).join(' ')}`);
  await agent.stop();
  await opts.nslbCleanup(stateDir);
  await api.stop();
  return result;
}

/** The phase's rows in the one table. */
export function kubeRows(k: KubeResult): Row[] {
  const perObject = (w: number): string => (w / k.objects).toFixed(2);
  const bound = k.vipMs === undefined ? undefined : Math.max(2 * k.vipMs, 5_000);
  const where = `N=${k.n} (${k.objects} objects) applied at once, in-test API server answering after ${k.delayMs} ms`;
  return [
    {
      figure: `(k) ${where}: apply → every VIP answers 200`,
      value: k.vipMs === undefined ? `n/a (${k.vipMissing} VIPs never answered 200)` : ms(k.vipMs),
      target: '—',
      verdict: k.vipMs === undefined ? 'n/a' : 'info',
    },
    {
      figure: `(k) ${where}: apply → every object Ready (observedGeneration = generation)`,
      value: `${ms(k.readyMs)}${k.vipMs === undefined ? '' : ` (${(k.readyMs / k.vipMs).toFixed(2)}× the VIPs' time)`}`,
      target: "≤ 2× the VIPs' time, or 5 s",
      verdict: bound === undefined ? 'n/a' : verdict(k.readyMs <= bound),
    },
    {
      figure: `(k) status writes per object for the create`,
      value: `${perObject(k.writesAtReady)} when all were Ready, ${perObject(k.writesSettled)} 10 s later${k.writesMetrics === undefined ? '' : ` (/metrics: ${k.writesMetrics} writes)`}; up to ${k.peakInFlight} in flight at once, longest chain of one-after-another writes ${k.longestChain}; ${k.eventWrites} Event writes`,
      target: '≤ 3',
      verdict: verdict(k.writesSettled / k.objects <= 3),
    },
    {
      figure: `(k) status writes while nothing changes (${k.quietS} s, two resyncs)`,
      value: String(k.quietWrites),
      target: '0',
      verdict: verdict(k.quietWrites === 0),
    },
  ];
}
