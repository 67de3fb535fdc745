// Flags shared by every command (DESIGN §3), with the same defaults everywhere.
import type { Server } from 'node:net';
import { hostname } from 'node:os';

export const DEFAULTS = {
  stateDir: '/var/lib/nslb',
  bridge: 'br-int',
  listen: '127.0.0.1:9910',
  resync: 30,
  // Reconciles mostly wait (on ip, Open vSwitch, HAProxy) and their node work is batched: many at once cost
  // little and keep the batches full (bench/'s bulk convergence is the measure).
  concurrency: 128,
  logLevel: 'info',
  nodeName: hostname(),
  kernelLimits: 'raise',
  // Kubernetes mode's client-side limit on status and Event writes (client-go's QPS and burst), as operators
  // that write status for many objects set it (cilium-operator's defaults): a bulk apply of 100 load balancers
  // (600 objects, about one write each) is Ready about as soon as the node serves them (bench (k)); an agent
  // with nothing changing writes nothing.
  kubeApiQps: 100,
  kubeApiBurst: 200,
  // A drain hands over at most this many load balancers at once (a pair's MASTER leaving the draining node, or a
  // SINGLE load balancer moving; schedule.ts, maxDrainMoves); a draining BACKUP's slot moves at once. All at once,
  // a drain of 100 pairs starved the node and every planned switchover outlasted the clients' SYN
  // retransmissions (bench (w)).
  drainConcurrency: 16,
} as const;

export function parsePositiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer (got ${JSON.stringify(value)})`);
    return n;
  };
}

export function parsePositiveNumber(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new Error(`${flag} must be a positive number (got ${JSON.stringify(value)})`);
    return n;
  };
}

/** A share: a number in (0, 1], `0.5` or `50%`. */
export function parseShare(flag: string) {
  return (value: string): number => {
    const percent = value.trim().endsWith('%');
    const n = Number(percent ? value.trim().slice(0, -1) : value) / (percent ? 100 : 1);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1)
      throw new Error(`${flag} must be a share in (0, 1], such as 0.5 or 50% (got ${JSON.stringify(value)})`);
    return n;
  };
}

export function parseListen(value: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(value);
  const port = Number(m?.[2]);
  if (m === null || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--listen must be HOST:PORT (got ${JSON.stringify(value)})`);
  }
  return { host: m[1] ?? '', port };
}

/** Where a listening server is reachable, as HOST:PORT (the port the kernel chose for `:0`); `fallback` before it listens. */
export function listeningAt(server: Server, fallback: string): string {
  const a = server.address();
  return a !== null && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : fallback;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
