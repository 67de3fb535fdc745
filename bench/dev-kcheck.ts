// Development tool (not a figure of the table): what keepalived's HAProxy checks cost, per keepalived and second.
// Starts N single load-balancer stand-ins, each its own netns with a veth VIP interface, a HAProxy (master-worker,
// runtime socket, one listener) and a keepalived whose config is rendered by ROOT's src/plan/keepalived-config.ts
// with ROOT's scripts (ROOT defaults to this checkout; point it at an export of another commit to compare). When
// ROOT has the agent's HAProxy health monitor (src/drivers/keepalived/haproxy-health.ts), this process runs it
// over the stand-ins, as the agent would, and its CPU counts too (`agentMonitor`: this process's whole CPU time in
// the window, an upper bound). No peer answers, so every keepalived becomes MASTER and stays there while its
// checks pass. After a warm-up, reads /proc/<pid>/stat of keepalived's two processes (utime + stime, and cutime +
// cstime: the check scripts it reaped) and of HAProxy's (the runtime-socket answers) at the start and end of a
// window, and prints CPU-ms per second per keepalived, page faults per second, and the VRRP state changes seen in
// the window (a check that failed).
// Run under the data-plane lock:
//   flock -o /tmp/nslb-dataplane.lock npx tsx bench/dev-kcheck.ts [--n 20] [--seconds 60] [--root DIR]
// Another commit as ROOT, outside /tmp and writable by root only (keepalived's enable_script_security):
//   mkdir /root/old && git archive main src scripts | tar -x -C /root/old && chmod -R go-w /root/old &&
//   ln -s "$PWD/node_modules" /root/old/node_modules
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const N = Number(arg('--n', '20'));
const SECONDS = Number(arg('--seconds', '60'));
const WARMUP_S = Number(arg('--warmup', '10'));
const ROOT = resolve(arg('--root', join(import.meta.dirname, '..')));
const BASE = '/run/nslb-kcheck';
const HZ = 100; // USER_HZ: /proc/<pid>/stat's clock ticks

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

interface Stand {
  netns: string;
  dir: string;
}

// The agent's layout (<state-dir>/lb/<netns>/), so that the health monitor finds the stand-ins.
const stand = (i: number): Stand => ({ netns: `kcheck-${i}`, dir: join(BASE, 'lb', `kcheck-${i}`) });

function cleanup(): void {
  for (let i = 0; i < N; i++) {
    const s = stand(i);
    for (const f of ['keepalived.pid', 'haproxy.pid']) spawnSync('sh', ['-c', 'kill "$(cat "$1")" 2>/dev/null', 'sh', join(s.dir, f)]);
  }
  spawnSync('sleep', ['1']);
  for (let i = 0; i < N; i++) {
    const s = stand(i);
    // Anything left in the netns (a script keepalived was running, a worker) goes with it.
    const pids = spawnSync('ip', ['netns', 'pids', s.netns], { encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids.split(/\s+/).filter(Boolean)) spawnSync('kill', ['-9', pid]);
    spawnSync('ip', ['netns', 'del', s.netns]);
  }
}

/** utime+stime, cutime+cstime, minflt+cminflt of a process, in ticks and faults. */
async function stat(pid: number): Promise<{ self: number; children: number; faults: number }> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = text
    .slice(text.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // Fields from 3 (state) on: minflt 10, cminflt 11, utime 14, stime 15, cutime 16, cstime 17.
  const at = (n: number) => f[n - 3]!;
  return { self: at(14) + at(15), children: at(16) + at(17), faults: at(10) + at(11) };
}

const pidOf = async (file: string) => Number((await readFile(file, 'utf8')).trim());

/** The processes a stand's check costs land in: keepalived's parent and VRRP child, HAProxy's master and workers. */
async function pids(s: Stand): Promise<{ keepalived: number[]; haproxy: number[] }> {
  const haproxy = (await readFile(join(s.dir, 'haproxy.pid'), 'utf8').catch(() => '')).trim();
  const ns = spawnSync('ip', ['netns', 'pids', s.netns], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean).map(Number);
  const worker: number[] = [];
  for (const pid of ns) {
    const ppid = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ')[1];
    if (ppid === haproxy) worker.push(pid);
  }
  return {
    keepalived: [await pidOf(join(s.dir, 'keepalived.pid')), await pidOf(join(s.dir, 'keepalived-vrrp.pid'))],
    haproxy: [Number(haproxy), ...worker.filter((p) => !Number.isNaN(p))],
  };
}

async function total(list: number[]) {
  const sum = { self: 0, children: 0, faults: 0 };
  for (const pid of list) {
    const s = await stat(pid);
    sum.self += s.self;
    sum.children += s.children;
    sum.faults += s.faults;
  }
  return sum;
}

interface Monitor {
  start(): void;
  stop(): void;
  beforeStart(netns: string): void;
  checkPids(): void;
  counters: { writes: number; apiChecks: number; pidPasses: number };
}
let monitor: Monitor | undefined;

async function start(i: number, render: (vrrp: unknown, paths: unknown) => string): Promise<void> {
  const s = stand(i);
  await mkdir(s.dir, { recursive: true, mode: 0o700 });
  const local = `10.251.${i}.1`;
  run(['ip', 'netns', 'add', s.netns]);
  run(['ip', '-n', s.netns, 'link', 'set', 'lo', 'up']);
  // A veth pair inside the netns (this kernel has no dummy module): kc0 carries the VRRP address, kc1 its peer end.
  run(['ip', '-n', s.netns, 'link', 'add', 'kc0', 'type', 'veth', 'peer', 'name', 'kc1']);
  run(['ip', '-n', s.netns, 'link', 'set', 'kc1', 'up']);
  run(['ip', '-n', s.netns, 'addr', 'add', `${local}/24`, 'dev', 'kc0']);
  run(['ip', '-n', s.netns, 'link', 'set', 'kc0', 'up']);
  const cfg = join(s.dir, 'haproxy.cfg');
  await writeFile(
    cfg,
    [
      'global',
      `    stats socket ${join(s.dir, 'haproxy.sock')} mode 600 level admin`,
      'defaults',
      '    mode http',
      '    timeout connect 5s',
      '    timeout client 50s',
      '    timeout server 50s',
      'frontend f',
      '    bind 127.0.0.1:8080',
      '    http-request return status 200',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  run(['ip', 'netns', 'exec', s.netns, 'haproxy', '-W', '-D', '-f', cfg, '-p', join(s.dir, 'haproxy.pid')]);
  const config = render(
    {
      lbKey: `default/kcheck-${i}`,
      name: s.netns,
      interface: 'kc0',
      virtualRouterId: 1 + (i % 255),
      priority: 100,
      advertIntervalMs: 1000,
      localAddress: local,
      peerAddress: `10.251.${i}.2`,
      vips: [{ address: `10.251.${i}.10`, prefixLength: 24 }],
    },
    {
      checkScript: join(ROOT, 'scripts/haproxy-vrrp-check.sh'),
      notifyScript: join(ROOT, 'scripts/keepalived-notify.sh'),
      haproxyPidfile: join(s.dir, 'haproxy.pid'),
      haproxySocket: join(s.dir, 'haproxy.sock'),
      notifyFifo: join(s.dir, 'keepalived.fifo'),
      stateFile: join(s.dir, 'keepalived.state'),
      releaseFile: join(s.dir, 'keepalived.release'),
      healthFile: join(s.dir, 'keepalived.health'),
    },
  );
  // As the keepalived driver does before a start (no effect with a ROOT that has no health file).
  monitor?.beforeStart(s.netns);
  await writeFile(join(s.dir, 'keepalived.conf'), config, { mode: 0o600 });
  const kfiles = ['-f', join(s.dir, 'keepalived.conf'), '-p', join(s.dir, 'keepalived.pid'), '-r', join(s.dir, 'keepalived-vrrp.pid')];
  run(['ip', 'netns', 'exec', s.netns, 'keepalived', '-P', ...kfiles]);
}

const transitions = async (s: Stand) => {
  const text = await readFile(join(s.dir, 'keepalived.state'), 'utf8').catch(() => '');
  return { state: text.split(' ')[0] ?? '?', count: Number(text.trim().split(' ')[2] ?? Number.NaN) };
};

async function main(): Promise<void> {
  const mod = (await import(pathToFileURL(join(ROOT, 'src/plan/keepalived-config.ts')).href)) as {
    renderKeepalivedConfig: (vrrp: unknown, paths: unknown) => string;
  };
  const healthModule = join(ROOT, 'src/drivers/keepalived/haproxy-health.ts');
  if (existsSync(healthModule)) {
    const h = (await import(pathToFileURL(healthModule).href)) as { HaproxyHealthMonitor: new (o: { stateDir: string }) => Monitor };
    monitor = new h.HaproxyHealthMonitor({ stateDir: BASE });
  }
  cleanup();
  await rm(BASE, { recursive: true, force: true });
  await mkdir(join(BASE, 'lb'), { recursive: true, mode: 0o700 });
  try {
    monitor?.start();
    for (let i = 0; i < N; i++) await start(i, mod.renderKeepalivedConfig);
    await sleep(WARMUP_S * 1_000);
    const stands = Array.from({ length: N }, (_, i) => stand(i));
    const all = await Promise.all(stands.map(pids));
    const t0 = performance.now();
    const k0 = await total(all.flatMap((p) => p.keepalived));
    const h0 = await total(all.flatMap((p) => p.haproxy));
    const s0 = await Promise.all(stands.map(transitions));
    // One PID pass over every stand-in (what the monitor does every second), timed alone: CPU-ms per pass.
    let pidPassMs: number | null = null;
    if (monitor !== undefined) {
      const p0 = process.cpuUsage();
      for (let k = 0; k < 200; k++) monitor.checkPids();
      const p1 = process.cpuUsage(p0);
      pidPassMs = Number(((p1.user + p1.system) / 1_000 / 200).toFixed(3));
    }
    const load0 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
    const c0 = process.cpuUsage();
    const m0 = { ...(monitor?.counters ?? { writes: 0, apiChecks: 0, pidPasses: 0 }) };
    await sleep(SECONDS * 1_000);
    const c1 = process.cpuUsage(c0);
    const m1 = { ...(monitor?.counters ?? m0) };
    const k1 = await total(all.flatMap((p) => p.keepalived));
    const h1 = await total(all.flatMap((p) => p.haproxy));
    const s1 = await Promise.all(stands.map(transitions));
    const load1 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
    const secs = (performance.now() - t0) / 1_000;
    const per = (ticks: number) => ((ticks / HZ) * 1_000) / N / secs;
    const changed = s1.filter((s, i) => s.count !== s0[i]!.count).length;
    const states: Record<string, number> = {};
    for (const s of s1) states[s.state] = (states[s.state] ?? 0) + 1;
    console.log(
      JSON.stringify({
        root: ROOT,
        n: N,
        seconds: Number(secs.toFixed(1)),
        loadavg: [load0, load1],
        perKeepalivedCpuMsPerS: {
          keepalived: Number(per(k1.self - k0.self).toFixed(2)),
          scripts: Number(per(k1.children - k0.children).toFixed(2)),
          haproxy: Number(per(h1.self + h1.children - h0.self - h0.children).toFixed(2)),
          agentMonitor: monitor === undefined ? null : Number(((c1.user + c1.system) / 1_000 / N / secs).toFixed(3)),
        },
        pidPassMs,
        monitor:
          monitor === undefined ? null : { writes: m1.writes - m0.writes, apiChecks: m1.apiChecks - m0.apiChecks, pidPasses: m1.pidPasses - m0.pidPasses },
        perKeepalivedFaultsPerS: Number(((k1.faults - k0.faults) / N / secs).toFixed(0)),
        standsWithStateChanges: changed,
        states,
      }),
    );
  } finally {
    monitor?.stop();
    cleanup();
    await rm(BASE, { recursive: true, force: true });
  }
}

await main();
