// A client that keeps asking one URL from inside a client netns, every intervalMs, each request on a fresh
// connection, and counts what failed: the proof that a load balancer nobody touched served throughout.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Host } from './harness.js';

// Run inside the netns as `node -e LOOP url intervalMs timeoutMs`: one JSON line per request.
const LOOP = `
const [url, interval, timeout, servername] = process.argv.slice(1);
// https: the certificate is not verified (the tests look at which one is served, not whether they trust it).
const http = require(url.startsWith('https:') ? 'node:https' : 'node:http');
const tls = url.startsWith('https:') ? { rejectUnauthorized: false, ...(servername ? { servername } : {}) } : {};
let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
const once = () => {
  if (stopping) return process.exit(0);
  const started = Date.now();
  let done = false;
  const report = (ok, detail) => {
    if (done) return;
    done = true;
    process.stdout.write(JSON.stringify({ ok, detail, at: started, ms: Date.now() - started }) + '\\n');
    setTimeout(once, Number(interval));
  };
  const req = http.get(url, { agent: false, timeout: Number(timeout), ...tls }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { body += c; });
    res.on('end', () => report(res.statusCode === 200, res.statusCode + ' ' + body.trim().slice(0, 80)));
    res.on('error', (e) => report(false, 'response: ' + e.message));
  });
  req.on('timeout', () => { req.destroy(new Error('timed out after ' + timeout + ' ms')); });
  req.on('error', (e) => report(false, e.message));
};
once();
`;

export interface ClientLoop {
  /** Requests answered 200. */
  ok(): number;
  /** Failed requests: when (ms since epoch) and why. */
  failures(): { at: number; detail: string }[];
  /** Resolves once n more requests succeeded (proof the loop is running). */
  waitForSuccesses(n: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function startClientLoop(
  client: Host,
  url: string,
  options: { intervalMs?: number; timeoutMs?: number /** https: the SNI name sent. */; servername?: string } = {},
): ClientLoop {
  const { intervalMs = 100, timeoutMs = 2_000 } = options;
  const args = [LOOP, url, String(intervalMs), String(timeoutMs), ...(options.servername === undefined ? [] : [options.servername])];
  const child = spawn('ip', ['netns', 'exec', client.netns, process.execPath, '-e', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let ok = 0;
  const failures: { at: number; detail: string }[] = [];
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  let stopped = false;
  void exited.then(() => {
    if (!stopped) failures.push({ at: Date.now(), detail: 'the client loop process exited' });
  });
  if (child.stdout === null) throw new Error('startClientLoop: no stdout pipe');
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const r = JSON.parse(line) as { ok: boolean; detail: string; at: number };
      if (r.ok) ok++;
      else failures.push({ at: r.at, detail: r.detail });
    } catch {
      failures.push({ at: Date.now(), detail: `unparsable: ${line}` });
    }
  });
  return {
    ok: () => ok,
    failures: () => [...failures],
    async waitForSuccesses(n, waitMs = 10_000) {
      const target = ok + n;
      const deadline = Date.now() + waitMs;
      while (ok < target) {
        if (Date.now() > deadline)
          throw new Error(`client loop to ${url}: ${ok}/${target} successes after ${waitMs} ms; failures: ${JSON.stringify(failures.slice(-3))}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      stopped = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
