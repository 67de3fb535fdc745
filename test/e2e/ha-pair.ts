// An ACTIVE_STANDBY pair built straight from the drivers (no agent): two "node" namespaces on one OVS bridge,
// each running HAProxy and keepalived the way the agent will (src/drivers/haproxy, src/drivers/keepalived,
// src/plan/keepalived-config.ts, src/plan/haproxy-peers.ts), plus members and a client. No test cases here.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { keepalivedFiles, lbPaths, type KeepalivedFiles, type LbPaths } from '../../src/desired/state-dir.js';
import { HaproxyDriver } from '../../src/drivers/haproxy/driver.js';
import { HaproxyHealthMonitor } from '../../src/drivers/keepalived/haproxy-health.js';
import {
  keepalivedConfigPaths,
  keepalivedPid,
  markKeepalivedConfigLoaded,
  parseVrrpState,
  startKeepalived,
  writeCheckedKeepalivedConfig,
  type ObservedVrrpState,
} from '../../src/drivers/keepalived/keepalived.js';
import { runCommand as run } from '../../src/exec/run.js';
import { BIND_NONLOCAL, renderHaproxyPeers, renderLocalPeer, stickTablePeers } from '../../src/plan/haproxy-peers.js';
import { defaultVirtualRouterId, renderKeepalivedConfig, vrrpPriority } from '../../src/plan/keepalived-config.js';
import {
  createBridge,
  createHost,
  deleteBridge,
  deleteHost,
  ensureNode,
  runCommand,
  startHttpServer,
  uniqueRun,
  type Host,
  type HttpServerHandle,
  type TestRun,
} from './harness.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface PairNode {
  /** Also the HAProxy peer name and the node name keepalived's instance would carry. */
  name: string;
  slot: 0 | 1;
  host: Host;
  stateDir: string;
  haproxy: LbPaths;
  keepalived: KeepalivedFiles;
  /** What the node's agent does for keepalived: HAProxy's health, judged and written into the health file. */
  health: HaproxyHealthMonitor;
}

export interface PairOptions {
  plane: number;
  advertIntervalMs: number;
  /** An additional IPv6 VIP (in keepalived's virtual_ipaddress_excluded), reachable from the client. */
  ipv6?: boolean;
}

const MEMBER_PORT = 8080;

export class HaPair {
  readonly run: TestRun;
  readonly nodes: PairNode[] = [];
  members: Host[] = [];
  client!: Host;
  private servers: HttpServerHandle[] = [];
  /** Killed nodes: what is left in their netns (a VIP keepalived had no time to remove) is not there for anyone. */
  private readonly dead = new Set<PairNode>();
  private bridge = '';
  private base = '';

  private constructor(readonly options: PairOptions) {
    this.run = uniqueRun(options.plane);
  }

  static async create(options: PairOptions): Promise<HaPair> {
    const pair = new HaPair(options);
    await pair.build();
    return pair;
  }

  get vip(): string {
    return this.run.ip(10);
  }

  get vip6(): string {
    return `fd21:${this.run.subnet.split('.')[2] ?? '0'}::10`;
  }

  private async build(): Promise<void> {
    await ensureNode();
    this.base = await mkdtemp(join(tmpdir(), 'nslb-ha-'));
    this.bridge = await createBridge(this.run.name('br'));
    for (const [i, octet] of [
      [0, 2],
      [1, 3],
    ] as const) {
      const host = await createHost({ name: this.run.name(`n${i + 1}`), bridge: this.bridge, address: this.run.cidr(octet) });
      const stateDir = join(this.base, host.name);
      this.nodes.push({
        name: host.name,
        slot: i,
        host,
        stateDir,
        haproxy: lbPaths(stateDir, host.netns),
        keepalived: keepalivedFiles(stateDir, host.netns),
        health: new HaproxyHealthMonitor({ stateDir }),
      });
    }
    this.members = [
      await createHost({ name: this.run.name('m1'), bridge: this.bridge, address: this.run.cidr(21) }),
      await createHost({ name: this.run.name('m2'), bridge: this.bridge, address: this.run.cidr(22) }),
    ];
    this.client = await createHost({ name: this.run.name('c'), bridge: this.bridge, address: this.run.cidr(100) });
    if (this.options.ipv6 === true) {
      await runCommand(['ip', '-n', this.client.netns, 'addr', 'add', `${this.vip6.replace(/::10$/, '::100')}/64`, 'dev', 'eth0', 'nodad']);
    }
    for (const [i, m] of this.members.entries()) {
      this.servers.push(await startHttpServer(m, { port: MEMBER_PORT, name: `member-${i + 1}`, bindAddress: '0.0.0.0' }));
    }
  }

  other(node: PairNode): PairNode {
    const o = this.nodes.find((n) => n !== node);
    if (o === undefined) throw new Error('a pair has two nodes');
    return o;
  }

  haproxyConfig(node: PairNode): string {
    const peers = { local: node.name, peers: this.nodes.map((n) => ({ name: n.name, address: n.host.address })) };
    const binds = [this.vip, ...(this.options.ipv6 === true ? [`[${this.vip6}]`] : [])];
    return [
      'global',
      '    master-worker',
      `    stats socket ${node.haproxy.socket} mode 600 level admin expose-fd listeners`,
      renderLocalPeer(peers),
      '',
      ...renderHaproxyPeers(peers),
      '',
      'defaults',
      '    mode http',
      '    timeout connect 2s',
      '    timeout client 10s',
      '    timeout server 10s',
      '',
      'frontend listener.http',
      ...binds.map((b) => `    bind ${b}:80 ${BIND_NONLOCAL}`),
      `    http-response set-header X-Nslb-Node ${node.name}`,
      '    default_backend pool.web',
      '',
      'backend pool.web',
      '    balance roundrobin',
      `    stick-table type ${this.options.ipv6 === true ? 'ipv6' : 'ip'} size 10k ${stickTablePeers()}`,
      '    stick on src',
      ...this.members.map((m, i) => `    server member-${i + 1} ${m.address}:${MEMBER_PORT} check inter 1s`),
      '',
    ].join('\n');
  }

  keepalivedConfig(node: PairNode): string {
    return renderKeepalivedConfig(
      {
        lbKey: `default/${this.run.prefix}`,
        name: node.host.netns,
        interface: 'eth0',
        virtualRouterId: defaultVirtualRouterId(`default/${this.run.prefix}`),
        priority: vrrpPriority(node.slot),
        advertIntervalMs: this.options.advertIntervalMs,
        localAddress: node.host.address,
        peerAddress: this.other(node).host.address,
        vips: [{ address: this.vip, prefixLength: 24 }, ...(this.options.ipv6 === true ? [{ address: this.vip6, prefixLength: 64 }] : [])],
      },
      keepalivedConfigPaths(node.stateDir, node.host.netns),
    );
  }

  async startHaproxy(node: PairNode): Promise<void> {
    // The HAProxy driver's checked write and start, as the agent applies them (a config is new: no state carried).
    const haproxy = new HaproxyDriver(run, node.stateDir);
    await haproxy.apply({ kind: 'haproxy.writeConfig', netns: node.host.netns, config: this.haproxyConfig(node), certificates: [], reason: 'new' });
    await haproxy.apply({ kind: 'haproxy.start', netns: node.host.netns, reason: 'not running' });
  }

  /** HAProxy and keepalived, as the agent starts them on a node, and the agent's health monitor. */
  async startNode(node: PairNode): Promise<void> {
    await this.startHaproxy(node);
    this.startAgent(node);
    await writeCheckedKeepalivedConfig(run, node.host.netns, node.keepalived, this.keepalivedConfig(node));
    // As the keepalived driver: the health file says 1 (or the verdict) before keepalived starts.
    if (keepalivedPid(node.keepalived) === undefined) node.health.beforeStart(node.host.netns);
    await startKeepalived(run, node.host.netns, node.keepalived);
    await markKeepalivedConfigLoaded(node.keepalived);
  }

  /** The node's agent (its HAProxy health monitor, the part keepalived depends on) starts, idempotent. */
  startAgent(node: PairNode): void {
    node.health.start();
  }

  /** The node's agent is gone (SIGKILLed, upgraded): its monitor stops, the health file stays as it was. */
  stopAgent(node: PairNode): void {
    node.health.stop();
  }

  async vrrpState(node: PairNode): Promise<ObservedVrrpState | undefined> {
    return parseVrrpState(await readFile(node.keepalived.stateFile, 'utf8').catch(() => undefined));
  }

  /** The nodes whose VIP interface holds the (IPv4) VIP now. */
  async vipHolders(): Promise<PairNode[]> {
    const alive = this.nodes.filter((n) => !this.dead.has(n));
    const held = await Promise.all(
      alive.map(async (n) => {
        const { stdout } = await runCommand(['ip', '-n', n.host.netns, '-j', 'addr', 'show', 'dev', 'eth0']);
        const links = JSON.parse(stdout) as { addr_info?: { local: string }[] }[];
        return links.some((l) => (l.addr_info ?? []).some((a) => a.local === this.vip));
      }),
    );
    return alive.filter((_, i) => held[i] === true);
  }

  /** Waits until exactly one node (`want`, if given) holds the VIP and says MASTER; returns it. */
  async waitForMaster(timeoutMs = 15_000, want?: PairNode): Promise<PairNode> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const holders = await this.vipHolders();
      const first = holders[0];
      if (holders.length === 1 && first !== undefined && (want === undefined || first === want) && (await this.vrrpState(first))?.state === 'MASTER') {
        return first;
      }
      if (Date.now() > until) {
        const states = await Promise.all(this.nodes.map(async (n) => `${n.name}: ${(await this.vrrpState(n))?.state ?? 'none'}`));
        throw new Error(`no single MASTER after ${timeoutMs} ms: VIP on [${holders.map((h) => h.name).join(', ')}], ${states.join(', ')}`);
      }
      await sleep(50);
    }
  }

  /** Every process of the node's netns, SIGKILLed at once. */
  async killProcesses(node: PairNode): Promise<void> {
    const { stdout } = await runCommand(['ip', 'netns', 'pids', node.host.netns], { allowFailure: true });
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }

  /**
   * The node dies: its wire goes dead first (a dead node answers no ARP and says no goodbye: killed one by one,
   * keepalived's VRRP child would see its parent die and hand the VIP over cleanly), then its processes go.
   */
  async killNode(node: PairNode): Promise<void> {
    this.dead.add(node);
    this.stopAgent(node);
    await runCommand(['ip', 'link', 'set', 'dev', node.host.vethHost, 'down']);
    await this.killProcesses(node);
  }

  /**
   * A partition: the switch stops forwarding to and from the node's port, while the node's link stays up (a
   * link that goes down is a local fault keepalived sees, not a partition).
   */
  async cut(node: PairNode): Promise<void> {
    await runCommand(['ovs-ofctl', 'mod-port', this.bridge, node.host.vethHost, 'no-receive']);
    await runCommand(['ovs-ofctl', 'mod-port', this.bridge, node.host.vethHost, 'no-forward']);
  }

  async heal(node: PairNode): Promise<void> {
    await runCommand(['ovs-ofctl', 'mod-port', this.bridge, node.host.vethHost, 'receive']);
    await runCommand(['ovs-ofctl', 'mod-port', this.bridge, node.host.vethHost, 'forward']);
  }

  /** The node boots again: a fresh netns holds only its own VRRP address, then HAProxy and keepalived start. */
  async reviveNode(node: PairNode): Promise<void> {
    for (const a of [`${this.vip}/24`, ...(this.options.ipv6 === true ? [`${this.vip6}/64`] : [])]) {
      await runCommand(['ip', '-n', node.host.netns, 'addr', 'del', a, 'dev', 'eth0'], { allowFailure: true });
    }
    await runCommand(['ip', 'link', 'set', 'dev', node.host.vethHost, 'up']);
    this.dead.delete(node);
    await this.startNode(node);
  }

  /** keepalived's processes (parent, VRRP child, notify script), SIGKILLed at once; HAProxy keeps running. */
  async killKeepalived(node: PairNode): Promise<void> {
    const { stdout } = await runCommand(['ip', 'netns', 'pids', node.host.netns]);
    const pids: number[] = [];
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if ((cmd[0] ?? '').endsWith('keepalived') || cmd.some((a) => a.endsWith('keepalived-notify.sh'))) pids.push(pid);
    }
    // SIGSTOP first: killed one after the other, the VRRP child would see its parent die and clean up.
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    for (const pid of pids) process.kill(pid, 'SIGKILL');
  }

  /** The master HAProxy process and its workers, SIGKILLed; keepalived keeps running. */
  async killHaproxy(node: PairNode): Promise<void> {
    const master = Number((await readFile(node.haproxy.pidfile, 'utf8')).trim());
    const { stdout } = await runCommand(['ip', 'netns', 'pids', node.host.netns]);
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (pid === master || (cmd.startsWith('haproxy\0') && cmd.includes(node.haproxy.config))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
  }

  /** The PIDs of the node's HAProxy workers: the children of the master its pidfile names. */
  async haproxyWorkers(node: PairNode): Promise<number[]> {
    const master = (await readFile(node.haproxy.pidfile, 'utf8')).trim();
    const { stdout } = await runCommand(['ip', 'netns', 'pids', node.host.netns]);
    const workers: number[] = [];
    for (const pid of stdout.split(/\s+/).filter(Boolean)) {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      // The fields after the command name (which may hold spaces): state, then the parent's PID.
      if (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] === master) workers.push(Number(pid));
    }
    return workers;
  }

  /** RSS and Pss (KiB) of the node's keepalived processes and the notify script (from smaps_rollup). */
  async keepalivedMemory(node: PairNode): Promise<{ processes: number; rssKiB: number; pssKiB: number }> {
    const { stdout } = await runCommand(['ip', 'netns', 'pids', node.host.netns]);
    let processes = 0;
    let rssKiB = 0;
    let pssKiB = 0;
    for (const pid of stdout.split(/\s+/).filter(Boolean)) {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (!(cmd[0] ?? '').endsWith('keepalived') && !cmd.some((a) => a.endsWith('keepalived-notify.sh'))) continue;
      const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
      processes++;
      rssKiB += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      pssKiB += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    }
    return { processes, rssKiB, pssKiB };
  }

  async cleanup(): Promise<void> {
    for (const n of this.nodes) this.stopAgent(n);
    for (const s of this.servers) await s.stop().catch(() => undefined);
    for (const h of [...this.nodes.map((n) => n.host), ...this.members, ...(this.client === undefined ? [] : [this.client])]) {
      await deleteHost(h.name).catch(() => undefined);
    }
    if (this.bridge !== '') await deleteBridge(this.bridge).catch(() => undefined);
    if (this.base !== '') await rm(this.base, { recursive: true, force: true });
  }
}

/** n processes spinning on the CPU (NSLB_HA_LOAD), to see the pair hold steady and fail over under load. */
export function startCpuLoad(n: number): () => void {
  const children = Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  return () => {
    for (const c of children) c.kill('SIGKILL');
  };
}

export interface ProbeResult {
  ok: boolean;
  /** The node whose HAProxy answered (X-Nslb-Node), for a 200. */
  node?: string;
  body?: string;
  /** When the request was sent and when it ended (ms since epoch). */
  at: number;
  done: number;
  detail?: string;
}

// Runs in the client's netns: one request every interval on a fresh connection, whether or not the last one
// has answered (a failover must not hide behind a request stuck on the old MAC), one JSON line per result.
const PROBE = `
const http = require('node:http');
const [url, interval, timeout] = process.argv.slice(1);
const out = (r) => process.stdout.write(JSON.stringify(r) + '\\n');
setInterval(() => {
  const at = Date.now();
  const req = http.get(url, { agent: false, timeout: Number(timeout) }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { body += c; });
    res.on('end', () => out({ ok: res.statusCode === 200, node: res.headers['x-nslb-node'], body: body.trim(), at, done: Date.now() }));
    res.on('error', (e) => out({ ok: false, at, done: Date.now(), detail: e.message }));
  });
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (e) => out({ ok: false, at, done: Date.now(), detail: e.message }));
}, Number(interval));
`;

export interface Probe {
  results(): ProbeResult[];
  stop(): Promise<void>;
}

export function startProbe(client: Host, url: string, intervalMs = 20, timeoutMs = 2_000): Probe {
  const child = spawn('ip', ['netns', 'exec', client.netns, process.execPath, '-e', PROBE, url, String(intervalMs), String(timeoutMs)], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const results: ProbeResult[] = [];
  if (child.stdout === null) throw new Error('probe: no stdout');
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      results.push(JSON.parse(line) as ProbeResult);
    } catch {
      // a partial line at exit
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    results: () => [...results],
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** ms from `since` to the end of the first 200 answered by `node`, or undefined if none came. */
export function recoveryMs(results: readonly ProbeResult[], since: number, node: string): number | undefined {
  const first = results.filter((r) => r.ok && r.node === node && r.done >= since).sort((a, b) => a.done - b.done)[0];
  return first === undefined ? undefined : first.done - since;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}
