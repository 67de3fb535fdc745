// Development tool (not a figure of the table): what the agent's HAProxy health monitor
// (src/drivers/keepalived/haproxy-health.ts) costs per pass, with no data plane: N load-balancer directories whose
// pidfile names this process and whose runtime socket is one Unix socket of this process answering `show info`.
// Prints CPU-ms of one PID pass over all N (what the monitor does every second, with the health file's stat), of
// one API check, and of one scan of the state dir (every 5 s). Needs no lock:
//   npx tsx bench/dev-health-monitor.ts [--n 100]
import { mkdirSync, writeFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { HaproxyHealthMonitor } from '../src/drivers/keepalived/haproxy-health.js';
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const N = Number(arg('--n', '100'));
const dir = mkdtempSync(join(tmpdir(), 'h34micro-'));
const sock = join(dir, 'real.sock');
const server = createServer((c) => c.once('data', () => c.end('Name: HAProxy\nPid: 1\n')));
await new Promise<void>((r) => server.listen(sock, r));
for (let i = 0; i < N; i++) {
  const d = join(dir, 'lb', `nslb-${String(i).padStart(12, '0')}`);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'keepalived.conf'), '#\n');
  writeFileSync(join(d, 'haproxy.pid'), `${process.pid}\n`);
  symlinkSync(sock, join(d, 'haproxy.sock'));
}
const m = new HaproxyHealthMonitor({ stateDir: dir });
m.scan();
m.checkPids();
for (const n of m.watched()) await m.checkApi(n);
for (let k = 0; k < 50; k++) m.checkPids();
if (m.watched().some((n) => m.verdict(n) !== '0')) throw new Error('not every load balancer judged serving');
const runs = 1000;
const c0 = process.cpuUsage();
const t0 = performance.now();
for (let k = 0; k < runs; k++) m.checkPids();
const c1 = process.cpuUsage(c0);
const t1 = performance.now();
console.log(
  `${N} load balancers: PID pass + health file stat ${((c1.user + c1.system) / 1000 / runs).toFixed(3)} ms CPU, ${((t1 - t0) / runs).toFixed(3)} ms wall; writes ${m.counters.writes}`,
);
const a0 = process.cpuUsage();
for (let k = 0; k < 10; k++) for (const n of m.watched()) await m.checkApi(n);
const a1 = process.cpuUsage(a0);
console.log(`API check: ${((a1.user + a1.system) / 1000 / (10 * N)).toFixed(3)} ms CPU each`);
const s0 = process.cpuUsage();
for (let k = 0; k < 200; k++) m.scan();
const s1 = process.cpuUsage(s0);
console.log(`scan of ${N}: ${((s1.user + s1.system) / 1000 / 200).toFixed(3)} ms CPU`);
m.stop();
server.close();
rmSync(dir, { recursive: true });
