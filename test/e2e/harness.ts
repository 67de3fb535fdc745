// Building blocks for e2e tests on a real node (DESIGN §5): OVS bridges, "hosts" (a netns plugged into a
// bridge by a veth pair), member HTTP servers inside them, and clients that send traffic from another netns.
// Nothing here has test cases; the e2e test files compose these.
//
// Every command is an argv array run without a shell. This module deliberately does not use src/exec: the
// harness must keep working while the code under test is broken.
//
// Addresses: tests use 10.201.0.0/16 … 10.209.0.0/16, only inside namespaces they create (the demo owns
// 10.200.0.0/24). uniqueRun() hands out names and a /24 so that two runs sharing a bridge do not collide.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { readSmall } from '../../src/drivers/proc.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MEMBER_SERVER = join(REPO_ROOT, 'scripts', 'member-server.mjs');
export const NSLB_CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js');
const LONG_CONNECTION = join(REPO_ROOT, 'test', 'e2e', 'long-connection.mjs');
const OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl';

// ---------------------------------------------------------------------------------------------------------
// Commands

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface CommandOptions {
  timeoutMs?: number;
  /** Resolve with the exit code instead of throwing when the command fails. */
  allowFailure?: boolean;
}

export class HarnessCommandError extends Error {
  override name = 'HarnessCommandError';
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | string | null,
    readonly stderr: string,
    options?: ErrorOptions,
  ) {
    super(`${argv.join(' ')} failed (${exitCode ?? 'killed'}): ${stderr.trim().slice(-800) || 'no stderr'}`, options);
  }
}

export function runCommand(argv: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runCommand: empty argv');
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr, exitCode: 0 });
      // A missing binary or a timeout is never "a failure the caller expected".
      const exitCode = error.code;
      if (options.allowFailure && typeof exitCode === 'number') return resolve({ stdout, stderr, exitCode });
      const reason = error.killed ? `timed out after ${options.timeoutMs ?? 30_000} ms` : (exitCode ?? null);
      reject(new HarnessCommandError(argv, reason, stderr || error.message, { cause: error }));
    });
  });
}

async function succeeds(argv: readonly string[], timeoutMs = 10_000): Promise<boolean> {
  try {
    return (await runCommand(argv, { allowFailure: true, timeoutMs })).exitCode === 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Polling

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What was being waited for, for the timeout error. */
  message?: string;
  /** Stops waiting early (the rejection carries the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Calls fn until it returns a truthy value and resolves with that value. A throw counts as "not yet"; the
 * last error or value is quoted in the timeout error, which is usually the clue to what went wrong.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, options: WaitForOptions = {}): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const { timeoutMs = 10_000, intervalMs = 200, message = 'condition', signal } = options;
  const deadline = Date.now() + timeoutMs;
  let last: string = 'never evaluated';
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await fn();
      if (value) return value as Exclude<T, false | null | undefined | 0 | ''>;
      last = `last value: ${describe(value)}`;
    } catch (error) {
      last = `last error: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${message} (${last})`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
}

function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

// ---------------------------------------------------------------------------------------------------------
// Unique names and addresses

export interface TestRun {
  /** 5 characters: 't' + 4 random base36 digits. */
  prefix: string;
  /** prefix + suffix; suffix ≤ 5 characters so the name stays ≤ 10 (veth `<name>-h` ≤ 15). */
  name(suffix: string): string;
  /** First three octets of this run's /24, e.g. '10.203.57'. */
  subnet: string;
  /** An address in this run's /24, e.g. ip(11) → '10.203.57.11'. */
  ip(hostOctet: number): string;
  /** ip(hostOctet) + '/24', the form createHost takes. */
  cidr(hostOctet: number): string;
}

/**
 * Names and a /24 for one test file. plane (1–29) picks 10.(200+plane).0.0/16 so test files can stay apart
 * from each other by convention; the third octet is random so parallel runs on a shared bridge rarely meet.
 */
export function uniqueRun(plane = 1): TestRun {
  if (!Number.isInteger(plane) || plane < 1 || plane > 29) throw new Error(`uniqueRun: plane must be 1–29, got ${plane}`);
  const prefix = `t${randomBytes(4).readUInt32BE(0).toString(36).padStart(4, '0').slice(-4)}`;
  const subnet = `10.${200 + plane}.${randomBytes(1).readUInt8(0)}`;
  const ip = (hostOctet: number) => {
    if (!Number.isInteger(hostOctet) || hostOctet < 1 || hostOctet > 254) throw new Error(`bad host octet ${hostOctet}`);
    return `${subnet}.${hostOctet}`;
  };
  return {
    prefix,
    subnet,
    name(suffix) {
      if (!/^[a-z0-9-]{1,5}$/.test(suffix)) throw new Error(`name suffix must be 1–5 of [a-z0-9-], got ${JSON.stringify(suffix)}`);
      return `${prefix}${suffix}`;
    },
    ip,
    cidr: (hostOctet) => `${ip(hostOctet)}/24`,
  };
}

/** host:port for URLs, bracketing IPv6. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

// ---------------------------------------------------------------------------------------------------------
// The node: root, tools, Open vSwitch

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

let nodeReady: Promise<void> | undefined;

/**
 * Fails fast with an actionable message unless this machine can run e2e tests, and starts Open vSwitch if it
 * is installed but not running (as scripts/setup-node.sh does; that script is not called because its npm ci
 * would pull node_modules out from under the running vitest). Also removes hosts and bridges left behind by
 * test processes that died. Cheap after the first call.
 */
export function ensureNode(): Promise<void> {
  nodeReady ??= prepareNode().catch((error: unknown) => {
    nodeReady = undefined;
    throw error;
  });
  return nodeReady;
}

async function prepareNode(): Promise<void> {
  if (!isRoot()) throw new Error('e2e tests need root (netns, OVS, HAProxy): run `sudo scripts/test.sh`');
  const tools: [string, string[]][] = [
    ['ip', ['-V']],
    ['ovs-vsctl', ['--version']],
    ['ethtool', ['--version']],
    ['curl', ['--version']],
    ['haproxy', ['-v']],
  ];
  for (const [tool, args] of tools) {
    if (!(await succeeds([tool, ...args]))) {
      throw new Error(`${tool} is not installed or not working: run \`sudo scripts/setup-node.sh\``);
    }
  }
  if (!(await ovsdbRunning())) await runCommand([OVS_CTL, '--no-ovs-vswitchd', 'start'], { timeoutMs: 60_000 });
  if (!(await vswitchdRunning())) {
    await runCommand([OVS_CTL, '--no-ovsdb-server', '--no-monitor', 'start'], { timeoutMs: 60_000 });
  }
  if (!(await ovsdbRunning()) || !(await vswitchdRunning())) {
    throw new Error('Open vSwitch did not start: see /var/log/openvswitch/*.log, or run `sudo scripts/setup-node.sh`');
  }
  await sweepStaleTestResources();
}

const ovsdbRunning = () => succeeds(['ovs-vsctl', '--timeout=3', 'show']);
// ovsdb-server alone accepts bridges that never get created, so the switch is checked separately.
const vswitchdRunning = () => succeeds(['ovs-appctl', '--timeout=3', '-t', 'ovs-vswitchd', 'version']);

// Bridges and host ports created here carry the creating process's pid, so a later run can tell leftovers of
// a crashed run (pid gone) from resources of a run still going.
const TEST_PID_KEY = 'nslb-test-pid';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function ovsRowsWithTestPid(table: 'Bridge' | 'Interface'): Promise<{ name: string; pid: number }[]> {
  const { stdout } = await runCommand(['ovs-vsctl', '--timeout=5', '--format=json', '--data=json', '--columns=name,external_ids', 'list', table]);
  const parsed = JSON.parse(stdout) as { data: [string, ['map', [string, string][]]][] };
  const rows: { name: string; pid: number }[] = [];
  for (const [name, [, pairs]] of parsed.data) {
    const pid = pairs.find(([key]) => key === TEST_PID_KEY)?.[1];
    if (pid !== undefined) rows.push({ name, pid: Number(pid) });
  }
  return rows;
}

/**
 * Gives the machine's ovs-vswitchd the priority Open vSwitch's own start script asks for (ovs-ctl: nice -10) in
 * its session's autogroup, where the kernel counts it: with autogroup on (Debian's default) a nice orders threads
 * only inside their session, and ovs-ctl's daemons are sessions of their own, so the -10 it set does nothing
 * against hundreds of HAProxies. The userspace switch stands for a kernel datapath, which forwards in softirq
 * whatever the load. Without it, 500 load balancers starting their health checks on two cores can starve the
 * switch into a flood-and-retry loop that lasts minutes (kernel-limits A in the landing CI of 2dbb7f4: poll
 * intervals of 13-22 s for two minutes, 1,298 involuntary context switches in one, 171 VIPs unreachable).
 * Returns what puts it back. A switch restarted meanwhile is a new session: nothing to put back there.
 */
export async function raiseSwitch(nice = -10): Promise<() => void> {
  const pid = Number((await readFile('/var/run/openvswitch/ovs-vswitchd.pid', 'utf8')).trim());
  return raiseAutogroup(pid, nice);
}

/**
 * Sets the nice of a process's session autogroup (`/proc/PID/autogroup`), where the kernel counts nice between
 * sessions; returns what puts the old value back. Does nothing (and puts nothing back) without autogroup.
 */
export function raiseAutogroup(pid: number | 'self', nice: number): () => void {
  const file = `/proc/${pid}/autogroup`;
  const before = / nice (-?\d+)/.exec(readSmall(file) ?? '')?.[1];
  if (before === undefined) return () => undefined;
  writeFileSync(file, `${nice}\n`);
  return () => {
    try {
      writeFileSync(file, `${before}\n`);
    } catch {
      // gone, or its session ended: nothing to put back
    }
  };
}

/** Deletes test hosts and bridges whose creating process is gone. */
export async function sweepStaleTestResources(): Promise<void> {
  for (const { name, pid } of await ovsRowsWithTestPid('Interface')) {
    if (!pidAlive(pid) && name.endsWith('-h')) await deleteHost(name.slice(0, -2));
  }
  for (const { name, pid } of await ovsRowsWithTestPid('Bridge')) {
    if (!pidAlive(pid)) await deleteBridge(name);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Bridges

/** An OVS bridge on the userspace datapath (this kernel has no OVS module), link up. Idempotent. */
export async function createBridge(name: string): Promise<string> {
  if (name.length > 15) throw new Error(`bridge name ${name} is longer than 15 characters`);
  await runCommand([
    'ovs-vsctl',
    '--timeout=10',
    '--may-exist',
    'add-br',
    name,
    '--',
    'set',
    'bridge',
    name,
    'datapath_type=netdev',
    `external_ids:${TEST_PID_KEY}=${process.pid}`,
  ]);
  // vswitchd creates the bridge's tap device as it applies the transaction; give it a moment on a busy node.
  await waitFor(() => succeeds(['ip', 'link', 'set', 'dev', name, 'up']), {
    timeoutMs: 10_000,
    message: `bridge ${name} link to come up`,
  });
  return name;
}

export async function deleteBridge(name: string): Promise<void> {
  await runCommand(['ovs-vsctl', '--timeout=10', '--if-exists', 'del-br', name]);
}

// ---------------------------------------------------------------------------------------------------------
// Hosts: a netns with eth0, whose peer `<name>-h` is a port on a bridge

export interface Host {
  name: string;
  netns: string;
  bridge: string;
  /** Without prefix length. */
  address: string;
  prefixLength: number;
  /** The veth end in the root namespace, plugged into the bridge. */
  vethHost: string;
  /** Of eth0; derived from the address (see hostMac). */
  mac: string;
}

export interface HostOptions {
  /** ≤ 10 characters, so the root-side veth `<name>-h` fits IFNAMSIZ. */
  name: string;
  bridge: string;
  /** 'A/24' (or an IPv6 'A/64'). */
  address: string;
  gateway?: string;
}

/** Creates a host from scratch (a leftover of the same name is deleted first). */
export async function createHost(options: HostOptions): Promise<Host> {
  const { name, bridge, address: cidr, gateway } = options;
  if (!/^[a-z0-9][a-z0-9-]{0,9}$/.test(name)) throw new Error(`host name must be ≤ 10 of [a-z0-9-], got ${name}`);
  const [address, prefix] = cidr.split('/');
  if (!address || !prefix) throw new Error(`host address must be ADDRESS/PREFIX, got ${cidr}`);
  const host: Host = {
    name,
    netns: name,
    bridge,
    address,
    prefixLength: Number(prefix),
    vethHost: `${name}-h`,
    mac: hostMac(address),
  };
  const inNs = (...argv: string[]) => runCommand(['ip', 'netns', 'exec', name, ...argv]);

  await deleteHost(name);
  try {
    await runCommand(['ip', 'netns', 'add', name]);
    await runCommand(['ip', 'link', 'add', host.vethHost, 'type', 'veth', 'peer', 'name', 'eth0', 'address', host.mac, 'netns', name]);
    await runCommand([
      'ovs-vsctl',
      '--timeout=10',
      '--may-exist',
      'add-port',
      bridge,
      host.vethHost,
      '--',
      'set',
      'interface',
      host.vethHost,
      `external_ids:${TEST_PID_KEY}=${process.pid}`,
    ]);
    await runCommand(['ip', 'link', 'set', 'dev', host.vethHost, 'up']);
    // The userspace datapath forwards veth frames without filling in offloaded checksums: with TX checksum
    // offload on, ARP works but every TCP segment is dropped by the receiver, silently.
    await runCommand(['ethtool', '-K', host.vethHost, 'tx', 'off']);
    await inNs('ethtool', '-K', 'eth0', 'tx', 'off');
    // DAD would leave an IPv6 address "tentative", unusable, for a second or two after this returns.
    await runCommand(['ip', '-n', name, 'addr', 'add', cidr, 'dev', 'eth0', ...(address.includes(':') ? ['nodad'] : [])]);
    await runCommand(['ip', '-n', name, 'link', 'set', 'dev', 'eth0', 'up']);
    await runCommand(['ip', '-n', name, 'link', 'set', 'dev', 'lo', 'up']);
    if (gateway) await runCommand(['ip', '-n', name, 'route', 'add', 'default', 'via', gateway]);
  } catch (error) {
    await deleteHost(name).catch(() => {});
    throw error;
  }
  return host;
}

/**
 * A locally administered MAC that follows from the address: a host deleted and recreated with the same address
 * (a member "rebooting") then matches what neighbour caches, HAProxy's netns included, already hold. A random
 * MAC leaves them sending to the old one until the entry goes stale, which looks like a load-balancer bug.
 */
export function hostMac(address: string): string {
  const v4 = address.split('.').map(Number);
  const bytes =
    v4.length === 4 && v4.every((octet) => Number.isInteger(octet) && octet >= 0 && octet <= 255)
      ? v4
      : [...createHash('sha256').update(address).digest().subarray(0, 4)];
  return ['02', '00', ...bytes.map((byte) => byte.toString(16).padStart(2, '0'))].join(':');
}

/** Kills everything running in the host's netns, unplugs and deletes it. Idempotent. */
export async function deleteHost(name: string): Promise<void> {
  if ((await listNetns()).includes(name)) {
    const { stdout } = await runCommand(['ip', 'netns', 'pids', name], { allowFailure: true });
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  // A switch that does not answer (ovs-vswitchd stalled, bench (i)) must not leave the netns behind: the link and
  // the netns go anyway, and the port's failure is reported after.
  let portFailed: unknown;
  try {
    await runCommand(['ovs-vsctl', '--timeout=10', '--if-exists', 'del-port', `${name}-h`]);
  } catch (err) {
    portFailed = err;
  }
  // A netns whose last process has not been reaped yet outlives `ip netns del` and keeps the veth pair, so
  // the pair is removed explicitly.
  await runCommand(['ip', 'link', 'del', 'dev', `${name}-h`], { allowFailure: true });
  await runCommand(['ip', 'netns', 'del', name], { allowFailure: true });
  if (portFailed !== undefined) throw portFailed;
}

// ---------------------------------------------------------------------------------------------------------
// Member servers

export interface HttpServerHandle {
  pid: number;
  host: Host;
  port: number;
  name: string;
  /** http://address:port */
  url: string;
  /** SIGTERM (SIGKILL after 3 s) and wait for the process to be gone. Idempotent. */
  stop(): Promise<void>;
  /** Makes the server's /healthz answer 200 (true) or 503 (false), so a monitor sees it go up or down. */
  setHealthy(healthy: boolean): Promise<void>;
  /** Makes the server's /healthz answer `code` (200–599) from now on. */
  setHealthStatus(code: number): Promise<void>;
  /** The last 100 /healthz requests the server saw (health checks), oldest first. */
  healthLog(): Promise<HealthCheckRecord[]>;
  /** Requests the server is processing right now (e.g. held by /__slow). */
  inflight(): Promise<number>;
  /** stdout and stderr so far (the server prints one line on start and nothing per request). */
  output(): string;
}

export interface HealthCheckRecord {
  method: string;
  /** Path and query, as requested. */
  url: string;
  httpVersion: string;
  host: string | null;
}

/** What scripts/member-server.mjs answers on /__echo. */
export interface EchoReply {
  name: string;
  method: string;
  url: string;
  httpVersion: string;
  /** The TCP peer: the load balancer's address when it proxies. */
  remoteAddress: string;
  remotePort: number;
  localPort: number;
  /** Whether the request came over TLS. */
  tls: boolean;
  servername: string | null;
  /** CN of the client certificate the load balancer presented (servers started with tls.clientCaFile). */
  clientCertificate?: string | null;
  /** The PROXY protocol header the connection started with (servers started with proxyProtocol). */
  proxy: ProxyHeader | null;
  /** Lower-cased names. */
  headers: Record<string, string | string[]>;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** v2 LOCAL: a connection of the proxy's own (a health check), no addresses. */
  command: 'PROXY' | 'LOCAL';
  protocol: string;
  sourceAddress: string | null;
  destinationAddress: string | null;
  sourcePort: number | null;
  destinationPort: number | null;
}

export interface HttpServerOptions {
  port: number;
  /** What the server answers every request with (plus a newline). */
  name: string;
  /** Defaults to the host's address. */
  bindAddress?: string;
  timeoutMs?: number;
  /** Serve HTTPS with this PEM certificate and key (e.g. from createTestPki) instead of HTTP. */
  tls?: { certFile: string; keyFile: string /** Demand a client certificate signed by this CA (PEM file). */; clientCaFile?: string };
  /** Parse a PROXY v1/v2 header at the start of each connection and report it in /__echo. */
  proxyProtocol?: boolean;
  /** 'NAME=VALUE': every response sets this cookie (an application session cookie). */
  setCookie?: string;
  /** The initial /healthz status code (default 200). */
  healthStatus?: number;
}

// Run inside a netns as `node -e PROBE host port`: exits 0 once a TCP connect succeeds.
const TCP_PROBE = `
const s = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.on('connect', () => process.exit(0));
s.on('error', () => process.exit(1));
setTimeout(() => process.exit(1), 1000);
`;

/** Whether a TCP connection from inside `host`'s netns to address:port succeeds. */
export function tcpConnects(from: Host, address: string, port: number): Promise<boolean> {
  return succeeds(['ip', 'netns', 'exec', from.netns, process.execPath, '-e', TCP_PROBE, address, String(port)]);
}

/** Starts scripts/member-server.mjs in the host's netns; resolves once its port accepts connections. */
export async function startHttpServer(host: Host, options: HttpServerOptions): Promise<HttpServerHandle> {
  const { port, name, bindAddress = host.address, timeoutMs = 15_000 } = options;
  const extra = [
    ...(options.tls ? ['--tls-cert', options.tls.certFile, '--tls-key', options.tls.keyFile] : []),
    ...(options.tls?.clientCaFile ? ['--tls-client-ca', options.tls.clientCaFile] : []),
    ...(options.proxyProtocol ? ['--proxy-protocol'] : []),
    ...(options.setCookie !== undefined ? ['--set-cookie', options.setCookie] : []),
    ...(options.healthStatus !== undefined ? ['--health-status', String(options.healthStatus)] : []),
  ];
  // `ip netns exec` execs the command, so the child's pid is the server's pid and signals reach it directly.
  const child = spawn(
    'ip',
    ['netns', 'exec', host.netns, process.execPath, MEMBER_SERVER, '--host', bindAddress, '--port', String(port), '--name', name, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output = captureOutput(child);
  const exited = exitPromise(child);
  const abort = new AbortController();
  void exited.then(() => abort.abort(new Error(`member server ${name} exited during start: ${output().trim()}`)));

  const probeAddress = bindAddress === '0.0.0.0' || bindAddress === '::' ? host.address : bindAddress;
  try {
    await waitFor(() => tcpConnects(host, probeAddress, port), {
      timeoutMs,
      intervalMs: 100,
      message: `member server ${name} on ${host.name} ${hostPort(probeAddress, port)} to accept connections`,
      signal: abort.signal,
    });
  } catch (error) {
    await stopChild(child, exited);
    throw error;
  }
  if (child.pid === undefined) throw new Error(`member server ${name} has no pid`);

  const url = `${options.tls ? 'https' : 'http'}://${hostPort(probeAddress, port)}`;
  // The server's own certificate is for names, not for its address: its control requests skip verification.
  const control = async (path: string, what: string): Promise<string> => {
    const response = await httpGet(host, `${url}${path}`, options.tls ? { curlArgs: ['-k'] } : {});
    if (response.status !== 200) throw new Error(`member server ${name}: ${what} got ${response.status} ${response.error ?? ''}`);
    return response.body;
  };
  return {
    pid: child.pid,
    host,
    port,
    name,
    url,
    output,
    stop: () => stopChild(child, exited),
    async setHealthy(healthy) {
      await control(`/__health/${healthy ? 'ok' : 'fail'}`, `setHealthy(${healthy})`);
    },
    async setHealthStatus(code) {
      await control(`/__health/status?code=${code}`, `setHealthStatus(${code})`);
    },
    async healthLog() {
      return JSON.parse(await control('/__health/log', 'healthLog()')) as HealthCheckRecord[];
    },
    async inflight() {
      return (JSON.parse(await control('/__inflight', 'inflight()')) as { inflight: number }).inflight;
    },
  };
}

function captureOutput(child: ChildProcess, limit = 64 * 1024): () => string {
  let text = '';
  const append = (chunk: Buffer) => {
    // Bounded: a misbehaving child must not grow the test process without limit.
    text = (text + chunk.toString('utf8')).slice(-limit);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return () => text;
}

function exitPromise(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    // spawn failures (ENOENT) emit 'error' and may never emit 'exit'.
    child.once('error', () => resolve());
  });
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timedOut = await Promise.race([exited.then(() => false), sleep(3_000).then(() => true)]);
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------
// The usual set-up: members and a client on a bridge of the test's own

/**
 * What most e2e files start from, on a bridge of their own (`br-<prefix>`): member hosts m1…mN at .11, .12, …,
 * each serving HTTP on port 8080 and answering "member mK", and a client host at .100. Made in beforeAll with
 * `create()`, removed in afterAll with `remove()`, which finds everything by name: it cleans up after a create
 * that failed halfway too, each step on its own so that one failure does not leave the rest behind.
 */
export class MemberHosts {
  readonly bridge: string;
  readonly members: Host[] = [];
  /** Each member's server by its answer ("member m1"): a test may stop one and start it again. */
  readonly servers = new Map<string, HttpServerHandle>();
  #client: Host | undefined;

  constructor(
    readonly run: TestRun,
    readonly count: number,
  ) {
    this.bridge = `br-${run.prefix}`;
  }

  get client(): Host {
    if (this.#client === undefined) throw new Error('MemberHosts: create() first');
    return this.#client;
  }

  /** Member `i` (1-based), as m1, m2, … */
  member(i: number): Host {
    const h = this.members[i - 1];
    if (h === undefined) throw new Error(`MemberHosts: no member m${i}`);
    return h;
  }

  async create(): Promise<this> {
    await ensureNode();
    await createBridge(this.bridge);
    for (let i = 1; i <= this.count; i++) {
      this.members.push(await createHost({ name: this.run.name(`m${i}`), bridge: this.bridge, address: this.run.cidr(10 + i) }));
    }
    this.#client = await createHost({ name: this.run.name('c'), bridge: this.bridge, address: this.run.cidr(100) });
    for (const [i, h] of this.members.entries()) {
      const name = `member m${i + 1}`;
      this.servers.set(name, await startHttpServer(h, { port: 8080, name }));
    }
    return this;
  }

  async remove(): Promise<void> {
    for (const s of this.servers.values()) await s.stop().catch(() => {});
    for (let i = 1; i <= this.count; i++) await deleteHost(this.run.name(`m${i}`)).catch(() => {});
    await deleteHost(this.run.name('c')).catch(() => {});
    await deleteBridge(this.bridge).catch(() => {});
  }
}

/** examples/http-lb.yaml's objects, on this run's /24 and in `namespace`, as an API client would send them. */
export async function exampleObjects(run: TestRun, namespace: string): Promise<Record<string, unknown>[]> {
  const text = (await readFile(join(REPO_ROOT, 'examples', 'http-lb.yaml'), 'utf8')).replaceAll('10.200.0.', `${run.subnet}.`);
  return (yaml.loadAll(text) as (Record<string, unknown> | null)[])
    .filter((d): d is Record<string, unknown> => d !== null)
    .map((d) => ({ ...d, metadata: { ...(d.metadata as object), namespace } }));
}

// ---------------------------------------------------------------------------------------------------------
// Clients: curl inside the client's netns

export interface HttpResponse {
  /** 0 when no HTTP response arrived (refused, reset, timeout); `error` then says why. */
  status: number;
  /** Exactly as received. */
  body: string;
  /** Lower-cased names, as curl's %{header_json} gives them. */
  headers: Record<string, string[]>;
  error: string | null;
}

export interface HttpGetOptions {
  /** Per request (curl -m). Default 5000. */
  timeoutMs?: number;
  headers?: Record<string, string>;
  /** More curl arguments, e.g. ['-k'], ['--resolve', 'h:443:10.201.0.10'], ['-X', 'POST'], ['--http1.0']. */
  curlArgs?: readonly string[];
}

// curl's --write-out appends this after each transfer's body; bodies are split on it. (It must not start
// with '@': curl would read the format from a file of that name and print nothing.)
const MARK = '<<nslb-e2e:';
const MARK_END = '>>';
const WRITE_OUT = `${MARK}%{http_code}:%{num_connects}${MARK_END}`;
const TRANSFER = new RegExp(`${MARK}(\\d{3}):(\\d+)${MARK_END}`, 'g');

function curlArgv(client: Host, options: HttpGetOptions, writeOut: string, urls: readonly string[]): string[] {
  const seconds = ((options.timeoutMs ?? 5_000) / 1000).toString();
  const headerArgs = Object.entries(options.headers ?? {}).flatMap(([key, value]) => ['-H', `${key}: ${value}`]);
  return ['ip', 'netns', 'exec', client.netns, 'curl', '-s', '-S', '-m', seconds, ...headerArgs, ...(options.curlArgs ?? []), '-w', writeOut, ...urls];
}

/** One request on a fresh connection. Never throws for network failures: they come back as status 0. */
export async function httpGet(client: Host, url: string, options: HttpGetOptions = {}): Promise<HttpResponse> {
  const argv = curlArgv(client, options, `${WRITE_OUT}%{header_json}`, [url]);
  const { stdout, stderr, exitCode } = await runCommand(argv, {
    allowFailure: true,
    timeoutMs: (options.timeoutMs ?? 5_000) + 10_000,
  });
  const at = stdout.lastIndexOf(MARK);
  // No mark means curl never ran (netns gone, curl missing): a harness failure, not a network result.
  if (at < 0) throw new HarnessCommandError(argv, exitCode, stderr);
  const match = new RegExp(`^${MARK}(\\d{3}):(\\d+)${MARK_END}`).exec(stdout.slice(at));
  const status = Number(match?.[1] ?? 0);
  let headers: Record<string, string[]> = {};
  try {
    headers = JSON.parse(stdout.slice(at + (match?.[0].length ?? 0))) as Record<string, string[]>;
  } catch {
    // Failed transfers print no usable header JSON.
  }
  return {
    status,
    body: stdout.slice(0, at),
    headers,
    error: status === 0 ? stderr.trim() || `curl exited ${exitCode}` : null,
  };
}

/** n requests, each on its own connection; the bodies, trimmed. Throws if any request got no response. */
export async function httpGetMany(client: Host, url: string, n: number, options: HttpGetOptions = {}): Promise<string[]> {
  const bodies: string[] = [];
  for (let i = 0; i < n; i++) {
    const response = await httpGet(client, url, options);
    if (response.status === 0) throw new Error(`request ${i + 1}/${n} to ${url} from ${client.name} failed: ${response.error}`);
    bodies.push(response.body.trim());
  }
  return bodies;
}

/**
 * n requests over ONE TCP connection (curl reuses its connection for a repeated URL); the bodies, trimmed.
 * Throws if curl had to open more than one connection: the server closed it, which is what callers test for.
 */
export async function keepAliveRequests(client: Host, url: string, n: number, options: HttpGetOptions = {}): Promise<string[]> {
  const argv = curlArgv(
    client,
    options,
    WRITE_OUT,
    Array.from({ length: n }, () => url),
  );
  const { stdout, stderr } = await runCommand(argv, {
    allowFailure: true,
    timeoutMs: (options.timeoutMs ?? 5_000) * n + 10_000,
  });
  const bodies: string[] = [];
  let connects = 0;
  let start = 0;
  for (const match of stdout.matchAll(TRANSFER)) {
    if (match[1] === '000') {
      throw new Error(`keep-alive request ${bodies.length + 1}/${n} to ${url} failed: ${stderr.trim()}`);
    }
    bodies.push(stdout.slice(start, match.index).trim());
    connects += Number(match[2]);
    start = match.index + match[0].length;
  }
  if (bodies.length !== n) throw new Error(`keep-alive: ${bodies.length}/${n} responses from ${url}: ${stderr.trim()}`);
  if (connects !== 1) throw new Error(`keep-alive: curl opened ${connects} connections for ${n} requests to ${url}, expected 1`);
  return bodies;
}

export interface LongConnection {
  /** The client's source port, to find the connection in HAProxy's `show sess`. */
  localPort: number;
  /** True once the connection closed (by either side) or the client process died. */
  closed(): boolean;
  /** Response bodies so far, trimmed, in order. */
  responses(): string[];
  statuses(): number[];
  errors(): string[];
  /** Closes the connection and waits for the client process to exit. */
  close(): Promise<void>;
}

export interface LongConnectionOptions {
  path?: string;
  intervalMs?: number;
  /** For the connect and the first response. Default 10000. */
  timeoutMs?: number;
}

/**
 * One long-lived keep-alive HTTP connection from the client's netns to address:port (a VIP or a member),
 * sending a request every intervalMs. Resolves after the first response. It never reconnects, so closed()
 * turning true means the connection did not survive.
 */
export async function openLongConnection(client: Host, address: string, port: number, options: LongConnectionOptions = {}): Promise<LongConnection> {
  const { path = '/', intervalMs = 200, timeoutMs = 10_000 } = options;
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      client.netns,
      process.execPath,
      LONG_CONNECTION,
      '--host',
      address,
      '--port',
      String(port),
      '--path',
      path,
      '--interval',
      String(intervalMs),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = exitPromise(child);
  const bodies: string[] = [];
  const statuses: number[] = [];
  const errors: string[] = [];
  let localPort = 0;
  let isClosed = false;
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-8 * 1024);
  });
  void exited.then(() => {
    isClosed = true;
  });

  type Event =
    | { event: 'connected'; localPort: number }
    | { event: 'response'; status: number; body: string }
    | { event: 'error'; message: string }
    | { event: 'closed'; hadError: boolean };
  if (!child.stdout) throw new Error('openLongConnection: no stdout pipe');
  createInterface({ input: child.stdout }).on('line', (line) => {
    let parsed: Event;
    try {
      parsed = JSON.parse(line) as Event;
    } catch {
      errors.push(`unparsable output: ${line}`);
      return;
    }
    switch (parsed.event) {
      case 'connected':
        localPort = parsed.localPort;
        break;
      case 'response':
        statuses.push(parsed.status);
        bodies.push(parsed.body.trim());
        break;
      case 'error':
        errors.push(parsed.message);
        break;
      case 'closed':
        isClosed = true;
        break;
    }
  });

  const connection: LongConnection = {
    get localPort() {
      return localPort;
    },
    closed: () => isClosed,
    responses: () => [...bodies],
    statuses: () => [...statuses],
    errors: () => [...errors],
    close: () => stopChild(child, exited),
  };

  try {
    await waitFor(
      () => {
        if (bodies.length > 0) return true;
        if (isClosed) throw new Error('closed before the first response');
        return false;
      },
      {
        timeoutMs,
        intervalMs: 50,
        message: `first response on a long connection from ${client.name} to ${hostPort(address, port)}`,
      },
    );
  } catch (error) {
    await stopChild(child, exited);
    const detail = [...errors, stderr.trim()].filter(Boolean).join('; ');
    throw new Error(`${(error as Error).message}${detail ? `: ${detail}` : ''}`, { cause: error });
  }
  return connection;
}

// ---------------------------------------------------------------------------------------------------------
// Raw connections and TLS, from inside a netns

// Run inside a netns as `node -e RAW host port base64-payload wait-ms`: connects, sends the payload, and
// prints one JSON line when the connection closes or wait-ms passes, whichever is first.
const RAW_EXCHANGE = `
const [host, port, payload, waitMs] = process.argv.slice(1);
const start = Date.now();
let connectedAt = null, error = null, received = Buffer.alloc(0), done = false;
const finish = (closed) => {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify({
    connected: connectedAt !== null,
    closed,
    closedAfterMs: closed ? Date.now() - (connectedAt ?? start) : null,
    received: received.toString('latin1'),
    error,
  }));
  process.exit(0);
};
const s = require('node:net').connect({ host, port: Number(port) });
s.on('connect', () => { connectedAt = Date.now(); if (payload) s.write(Buffer.from(payload, 'base64')); });
s.on('data', (c) => { received = Buffer.concat([received, c]); });
s.on('error', (e) => { error = e.message; });
s.on('close', () => finish(true));
setTimeout(() => finish(false), Number(waitMs));
`;

export interface RawExchange {
  connected: boolean;
  /** Whether the connection was closed (by either side, or failed) within the wait. */
  closed: boolean;
  /** From connect (or from the attempt, if it never connected) to close. */
  closedAfterMs: number | null;
  /** Everything received, latin1. */
  received: string;
  error: string | null;
}

/**
 * One TCP connection from inside `from`'s netns: sends `send` (if any), then waits up to waitMs for the peer
 * to close. What a PROXY header or an idle client needs, which curl cannot do.
 */
export async function rawExchange(from: Host, address: string, port: number, options: { send?: string | Buffer; waitMs?: number } = {}): Promise<RawExchange> {
  const waitMs = options.waitMs ?? 3_000;
  const payload = options.send === undefined ? '' : Buffer.from(options.send).toString('base64');
  const argv = ['ip', 'netns', 'exec', from.netns, process.execPath, '-e', RAW_EXCHANGE, address, String(port), payload, String(waitMs)];
  const { stdout } = await runCommand(argv, { timeoutMs: waitMs + 10_000 });
  return JSON.parse(stdout) as RawExchange;
}

// Run inside a netns as `node -e PEER host port [servername]`: prints the certificate the server presents.
const TLS_PEER = `
const [host, port, servername] = process.argv.slice(1);
const s = require('node:tls').connect(
  { host, port: Number(port), rejectUnauthorized: false, ...(servername ? { servername } : {}) },
  () => {
    const c = s.getPeerCertificate();
    process.stdout.write(JSON.stringify({
      subject: (c.subject && c.subject.CN) || null,
      issuer: (c.issuer && c.issuer.CN) || null,
      subjectAltName: c.subjectaltname || null,
      protocol: s.getProtocol(),
    }));
    s.destroy();
    process.exit(0);
  },
);
s.on('error', (e) => { process.stderr.write(e.message); process.exit(1); });
setTimeout(() => { process.stderr.write('TLS handshake timed out'); process.exit(1); }, 5000);
`;

export interface PeerCertificate {
  /** Subject CN. */
  subject: string | null;
  issuer: string | null;
  /** As Node prints it, e.g. 'DNS:www.example.test'. */
  subjectAltName: string | null;
  /** Negotiated TLS version, e.g. 'TLSv1.3'. */
  protocol: string | null;
}

/** The certificate address:port presents to a client in `from`'s netns that sends `servername` as SNI (or none). */
export async function tlsPeerCertificate(from: Host, address: string, port: number, servername?: string): Promise<PeerCertificate> {
  const argv = ['ip', 'netns', 'exec', from.netns, process.execPath, '-e', TLS_PEER, address, String(port), ...(servername ? [servername] : [])];
  const { stdout } = await runCommand(argv, { timeoutMs: 15_000 });
  return JSON.parse(stdout) as PeerCertificate;
}

export interface TestPki {
  dir: string;
  /** The CA certificate (PEM), for curl --cacert. */
  caCert: string;
  /** Certificate and key files (PEM) of each leaf, by its name. */
  leaves: Map<string, { certFile: string; keyFile: string }>;
}

/**
 * A throw-away CA and server certificates signed by it, made with the openssl CLI in `dir`: each leaf has
 * CN = its name and the given DNS names as subjectAltName. EC P-256 keys: quick to make, and every TLS stack
 * in the tests (HAProxy, Node, curl) takes them.
 */
export async function createTestPki(dir: string, leaves: { name: string; dnsNames: string[] }[]): Promise<TestPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  await runCommand([
    'openssl',
    'req',
    '-x509',
    ...ecKey,
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-days',
    '2',
    '-subj',
    '/CN=nslb e2e CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const result: TestPki = { dir, caCert, leaves: new Map() };
  for (const leaf of leaves) {
    if (!/^[a-z0-9.-]+$/.test(leaf.name)) throw new Error(`createTestPki: bad leaf name ${leaf.name}`);
    const base = join(dir, leaf.name);
    await runCommand(['openssl', 'req', '-new', ...ecKey, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${leaf.name}`]);
    await writeFile(
      `${base}.ext`,
      [
        `subjectAltName=${leaf.dnsNames.map((n) => `DNS:${n}`).join(',')}`,
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth',
        '',
      ].join('\n'),
    );
    await runCommand([
      'openssl',
      'x509',
      '-req',
      '-in',
      `${base}.csr`,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      '2',
      '-extfile',
      `${base}.ext`,
      '-out',
      `${base}.pem`,
    ]);
    result.leaves.set(leaf.name, { certFile: `${base}.pem`, keyFile: `${base}.key` });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Readers

export async function listNetns(): Promise<string[]> {
  const { stdout } = await runCommand(['ip', '-json', 'netns', 'list']);
  // iproute2 prints nothing at all, not [], when there are no namespaces.
  if (!stdout.trim()) return [];
  return (JSON.parse(stdout) as { name: string }[]).map((ns) => ns.name);
}

export async function ovsPorts(bridge: string): Promise<string[]> {
  const { stdout } = await runCommand(['ovs-vsctl', '--timeout=5', 'list-ports', bridge]);
  return stdout.split('\n').filter(Boolean);
}

// ---------------------------------------------------------------------------------------------------------
// The CLI under test (built into dist/ by scripts/setup-node.sh)

/** Runs `nslb ARGS…` to completion. Never throws for a non-zero exit: tests assert on exitCode. */
export function runNslb(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<CommandResult> {
  if (!existsSync(NSLB_CLI)) throw new Error(`${NSLB_CLI} is missing: run \`npm run build\``);
  return runCommand([process.execPath, NSLB_CLI, ...args], { allowFailure: true, timeoutMs: options.timeoutMs ?? 60_000 });
}

export interface NslbProcess {
  pid: number;
  /** stdout and stderr so far (last 256 KiB). */
  output(): string;
  exited(): boolean;
  /** SIGTERM (SIGKILL after 3 s) and wait. */
  stop(): Promise<void>;
  /** SIGKILL without waiting for a graceful stop: what a crash looks like. */
  kill(): Promise<void>;
}

/** Starts a long-running `nslb ARGS…` (e.g. `run --watch DIR …`) in the background. */
export function spawnNslb(args: readonly string[]): NslbProcess {
  if (!existsSync(NSLB_CLI)) throw new Error(`${NSLB_CLI} is missing: run \`npm run build\``);
  const child = spawn(process.execPath, [NSLB_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error('nslb did not start');
  const output = captureOutput(child, 256 * 1024);
  const exited = exitPromise(child);
  return {
    pid: child.pid,
    output,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    stop: () => stopChild(child, exited),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
