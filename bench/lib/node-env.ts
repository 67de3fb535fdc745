// The benchmark's own piece of the node: an OVS bridge, three member hosts running scripts/member-server.mjs,
// a client host, and the processes that send traffic from the client (probe, VIP check, wrk). Everything
// made here is registered with a Cleanup, which undoes it in reverse order on success, failure or Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createBridge, createHost, deleteBridge, deleteHost, runCommand, startHttpServer, type Host, type HttpServerHandle } from '../../test/e2e/harness.js';
import { MEMBER_PORT } from './manifests.js';
import { parseWrk, type ProbeResponse, type WrkSummary } from './report.js';

const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const PROBE = join(BENCH_DIR, 'probe.mjs');
const CHECK_VIPS = join(BENCH_DIR, 'check-vips.mjs');

export function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

export const now = () => performance.timeOrigin + performance.now();

/** Aborted on Ctrl-C (SIGINT) or SIGTERM: the run stops at its next wait and cleans up. */
export const interruption = new AbortController();

export function checkInterrupted(): void {
  if (interruption.signal.aborted) throw new Error(`interrupted (${String(interruption.signal.reason)})`);
}

/** A pause that ends the run, by throwing, once it is interrupted. Every waiting loop goes through it. */
export async function sleep(ms: number): Promise<void> {
  checkInterrupted();
  await new Promise<void>((resolve) => setTimeout(resolve, ms));
  checkInterrupted();
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup

export class Cleanup {
  readonly #steps: { what: string; fn: () => Promise<void> }[] = [];
  #running: Promise<void> | undefined;

  add(what: string, fn: () => Promise<void>): void {
    this.#steps.push({ what, fn });
  }

  /** How many steps there are now: what runSince undoes back to. */
  mark(): number {
    return this.#steps.length;
  }

  /** Runs the steps added since `mark`, newest first (what one phase set up, when it failed), as run() does. */
  async runSince(mark: number): Promise<void> {
    while (this.#steps.length > mark) {
      const step = this.#steps.pop()!;
      try {
        await step.fn();
      } catch (err) {
        log(`cleanup: ${step.what} failed: ${(err as Error).message}`);
      }
    }
  }

  /** Runs every step, newest first, each at most once; a failing step is reported and the rest still run. */
  run(): Promise<void> {
    this.#running ??= this.runSince(0);
    return this.#running;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Addresses: nslb's VIPs in 10.230.0.0/16, the baseline's in 10.231.0.0/16, member and client hosts at
// 10.23x.255.0/24 in both, so that one flat L2 bridge serves both without a router.

export const PREFIX = 16;
export const MEMBERS = { m1: 11, m2: 12, m3: 13 } as const;
export type MemberName = keyof typeof MEMBERS;
export const nslbMember = (m: MemberName) => `10.230.255.${MEMBERS[m]}`;
export const baselineMember = (m: MemberName) => `10.231.255.${MEMBERS[m]}`;
const CLIENT_OCTET = 2;

/** The i-th (0-based) address of a block of 250 per /24, starting at 10.<second>.<thirdStart>.1. */
export function vipOf(second: 230 | 231, thirdStart: number, i: number): string {
  return `10.${second}.${thirdStart + Math.floor(i / 250)}.${(i % 250) + 1}`;
}

export interface BenchNode {
  bridge: string;
  client: Host;
  members: Record<MemberName, HttpServerHandle>;
}

// The node is used as nslb leaves it: no sysctl is tuned here (the agent raises the kernel limits its load
// needs, issue 13), so the figures include what an operator's node would do.
export async function createBenchNode(bridge: string, cleanup: Cleanup): Promise<BenchNode> {
  cleanup.add(`bridge ${bridge}`, () => deleteBridge(bridge));
  await createBridge(bridge);
  const host = async (name: string, octet: number): Promise<Host> => {
    cleanup.add(`host ${name}`, () => deleteHost(name));
    const h = await createHost({ name, bridge, address: `10.230.255.${octet}/${PREFIX}` });
    await runCommand(['ip', '-n', name, 'addr', 'add', `10.231.255.${octet}/${PREFIX}`, 'dev', 'eth0']);
    return h;
  };
  const client = await host('bnch-cli', CLIENT_OCTET);
  // Resolve a VIP that just appeared within ~10 ms instead of the default 1 s between ARP tries: the
  // figure (a) is about the load balancer, not about the client's ARP timers.
  await runCommand([
    'ip',
    'netns',
    'exec',
    client.netns,
    'sysctl',
    '-q',
    '-w',
    'net.ipv4.neigh.eth0.retrans_time_ms=10',
    'net.ipv4.neigh.eth0.mcast_solicit=3',
    'net.ipv4.neigh.eth0.unres_qlen=101',
    // wrk's 8 connections reconnect for a long time; leave ports for them.
    'net.ipv4.ip_local_port_range=10000 65000',
    'net.ipv4.tcp_tw_reuse=1',
  ]);
  const members = {} as Record<MemberName, HttpServerHandle>;
  for (const m of Object.keys(MEMBERS) as MemberName[]) {
    const h = await host(`bnch-${m}`, MEMBERS[m]);
    const server = await startHttpServer(h, { port: MEMBER_PORT, name: m, bindAddress: '0.0.0.0' });
    cleanup.add(`member server ${m}`, () => server.stop());
    members[m] = server;
  }
  return { bridge, client, members };
}

// ---------------------------------------------------------------------------------------------------------
// Traffic from the client

/** A running bench/probe.mjs: every response it reported so far, and a way to wait for a condition. */
export class Probe {
  readonly responses: ProbeResponse[] = [];
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #stderr = '';

  constructor(client: Host, url: string, intervalMs = 5) {
    this.#child = spawn('ip', ['netns', 'exec', client.netns, process.execPath, PROBE, '--url', url, '--interval', String(intervalMs), '--timeout', '500'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#exited = new Promise((resolve) => {
      this.#child.once('exit', () => resolve());
      this.#child.once('error', () => resolve());
    });
    this.#child.stderr?.on('data', (c: Buffer) => {
      this.#stderr = (this.#stderr + c.toString()).slice(-2000);
    });
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      try {
        this.responses.push(JSON.parse(line) as ProbeResponse);
      } catch {
        // Not ours.
      }
    });
  }

  /** Keeps memory bounded between measurements: drops responses older than `before`. */
  forget(before: number): void {
    const keep = this.responses.filter((r) => r.t >= before);
    this.responses.length = 0;
    this.responses.push(...keep);
  }

  /** Polls fn over the responses until it returns a number (ms) or timeoutMs passes (Infinity). */
  async until(fn: (responses: readonly ProbeResponse[]) => number | undefined, timeoutMs: number): Promise<number> {
    const deadline = now() + timeoutMs;
    for (;;) {
      const value = fn(this.responses);
      if (value !== undefined) return value;
      if (this.#child.exitCode !== null) throw new Error(`probe exited: ${this.#stderr.trim()}`);
      if (now() > deadline) return Infinity;
      await sleep(5);
    }
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 3_000);
    await this.#exited;
    clearTimeout(timer);
  }
}

export interface VipCheck {
  /** VIPs that answered 200. */
  ok: number;
  /** VIPs that answered any HTTP status: HAProxy serves there (a 503 says its members are marked down). */
  http: number;
  failed: { ip: string; error: string }[];
  ms: number;
}

/** One HTTP GET to each VIP from the client (3 attempts each, for ARP), after a clock has stopped. */
export async function checkVips(client: Host, ips: readonly string[]): Promise<VipCheck> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', client.netns, process.execPath, CHECK_VIPS, '--attempts', '3', '--concurrency', '8'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(stdout) as VipCheck);
      } catch {
        reject(new Error(`check-vips exited ${code}: ${stderr.trim() || stdout.trim()}`));
      }
    });
    child.stdin.end(`${ips.join('\n')}\n`);
  });
}

export interface VipsAnswering {
  /** VIPs that answered 200 at least once within the window. */
  ok: number;
  /** Those that never did, with their last error. */
  failed: { ip: string; error: string }[];
  /** When the last of them first answered 200, from the window's start (ms); undefined if some never did. */
  allByMs: number | undefined;
}

/**
 * Asks every VIP for a 200, then asks again those that failed, once a second, until `windowMs` after `since`
 * (the moment the tool said done). A VIP that answered 200 once counts as answering.
 */
export async function vipsAnsweringWithin(client: Host, ips: readonly string[], since: number, windowMs = 30_000): Promise<VipsAnswering> {
  let failed = (await checkVips(client, ips)).failed;
  while (failed.length > 0 && now() - since < windowMs) {
    await sleep(1_000);
    failed = (
      await checkVips(
        client,
        failed.map((f) => f.ip),
      )
    ).failed;
  }
  return { ok: ips.length - failed.length, failed, allByMs: failed.length === 0 ? now() - since : undefined };
}

/** A running wrk against one URL from the client; `result` settles when its duration is over. */
export function startWrk(
  client: Host,
  url: string,
  durationS: number,
  connections = 8,
  o: { timeoutS?: number; close?: boolean } = {},
): { result: Promise<WrkSummary>; stop: () => void; finish: () => Promise<WrkSummary> } {
  const argv = ['netns', 'exec', client.netns, 'wrk', '-t1', `-c${connections}`, `-d${durationS}s`, '--timeout', `${o.timeoutS ?? 5}s`, '--latency'];
  if (o.close === true) argv.push('-H', 'Connection: close');
  const child = spawn('ip', [...argv, url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const onInterrupt = () => child.kill('SIGKILL');
  interruption.signal.addEventListener('abort', onInterrupt, { once: true });
  const result = new Promise<WrkSummary>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      interruption.signal.removeEventListener('abort', onInterrupt);
      if (interruption.signal.aborted) return reject(new Error('interrupted'));
      try {
        resolve(parseWrk(stdout));
      } catch (err) {
        reject(new Error(`wrk exited ${code}: ${stderr.trim()} ${(err as Error).message}`));
      }
    });
  });
  // SIGINT: wrk stops early and still prints its summary (`ip netns exec` execs wrk, so the signal is wrk's).
  return {
    result,
    stop: () => child.kill('SIGKILL'),
    finish: () => {
      child.kill('SIGINT');
      return result;
    },
  };
}
