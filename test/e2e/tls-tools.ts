// TLS clients for the tls-*.test.ts files, each run inside a client netns: a handshake that reports what was
// negotiated (certificate, version, ALPN), openssl s_client for old protocol versions, and an HTTPS request
// loop that counts failures while a certificate is rotated.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { runCommand, type Host } from './harness.js';

// Run as `node -e HANDSHAKE JSON`: connects, prints what was negotiated, then sends one HTTP/1.1 request (when
// asked) so that a server that refuses a client certificate after the handshake (TLS 1.3) is seen refusing.
const HANDSHAKE = `
const o = JSON.parse(process.argv[1]);
const fs = require('node:fs');
const tls = require('node:tls');
const out = (r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); };
const s = tls.connect({
  host: o.host, port: o.port, rejectUnauthorized: false,
  ...(o.servername ? { servername: o.servername } : {}),
  ...(o.alpn ? { ALPNProtocols: o.alpn } : {}),
  ...(o.minVersion ? { minVersion: o.minVersion } : {}),
  ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
  ...(o.ciphers ? { ciphers: o.ciphers } : {}),
  ...(o.cert ? { cert: fs.readFileSync(o.cert), key: fs.readFileSync(o.key) } : {}),
}, () => {
  const c = s.getPeerCertificate();
  const r = { ok: true, subject: (c.subject && c.subject.CN) || null, protocol: s.getProtocol(), alpn: s.alpnProtocol || null, error: null };
  if (!o.request) { s.destroy(); return out(r); }
  let data = '';
  s.on('data', (d) => { data += d; });
  s.on('end', () => out({ ...r, response: data.split('\\r\\n')[0] || null }));
  s.on('error', (e) => out({ ...r, ok: false, error: e.message }));
  s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n');
});
s.on('error', (e) => out({ ok: false, subject: null, protocol: null, alpn: null, error: e.message }));
setTimeout(() => out({ ok: false, subject: null, protocol: null, alpn: null, error: 'timed out' }), 5000);
`;

export interface HandshakeOptions {
  servername?: string;
  alpn?: string[];
  minVersion?: string;
  maxVersion?: string;
  ciphers?: string;
  /** Client certificate and key (PEM files). */
  cert?: string;
  key?: string;
  /** Also send a GET and wait for the first response line. */
  request?: boolean;
}

export interface HandshakeResult {
  ok: boolean;
  subject: string | null;
  protocol: string | null;
  alpn: string | null;
  error: string | null;
  response?: string | null;
}

export async function tlsHandshake(from: Host, host: string, port: number, options: HandshakeOptions = {}): Promise<HandshakeResult> {
  const argv = ['ip', 'netns', 'exec', from.netns, process.execPath, '-e', HANDSHAKE, JSON.stringify({ host, port, ...options })];
  const { stdout } = await runCommand(argv, { timeoutMs: 15_000 });
  return JSON.parse(stdout) as HandshakeResult;
}

/** `openssl s_client` with extra arguments (e.g. -tls1_1): whether the handshake completed, and the version. */
export async function opensslConnect(
  from: Host,
  host: string,
  port: number,
  args: string[],
): Promise<{ ok: boolean; protocol: string | null; output: string }> {
  const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  // stdin is /dev/null: s_client handshakes, reads EOF and exits.
  const child = spawn('ip', ['netns', 'exec', from.netns, 'timeout', '10', 'openssl', 's_client', '-connect', target, '-brief', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const protocol = /Protocol version: (\S+)/.exec(output)?.[1] ?? null;
  return { ok: exitCode === 0 && protocol !== null, protocol, output };
}

// Run as `node -e LOOP JSON`: an HTTPS request on a fresh connection every intervalMs, verified against the
// CA; one JSON line per request with the certificate's serial number.
const LOOP = `
const o = JSON.parse(process.argv[1]);
const https = require('node:https');
const ca = require('node:fs').readFileSync(o.ca);
let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
const once = () => {
  if (stopping) return process.exit(0);
  let done = false;
  const report = (ok, detail, serial) => {
    if (done) return;
    done = true;
    process.stdout.write(JSON.stringify({ ok, detail, serial }) + '\\n');
    setTimeout(once, o.interval);
  };
  const req = https.get({ host: o.host, port: o.port, servername: o.servername, ca, agent: false, timeout: 2000, path: '/' }, (res) => {
    const serial = res.socket.getPeerCertificate().serialNumber;
    let body = '';
    res.on('data', (c) => { body += c; });
    res.on('end', () => report(res.statusCode === 200, res.statusCode + ' ' + body.trim(), serial));
    res.on('error', (e) => report(false, e.message, null));
  });
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (e) => report(false, e.message, null));
};
once();
`;

export interface HttpsLoop {
  /** Serial numbers of the certificates seen, in order of first sight. */
  serials(): string[];
  ok(): number;
  failures(): string[];
  waitForSerial(serial: string, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export function startHttpsLoop(client: Host, opts: { host: string; port: number; servername: string; ca: string; interval?: number }): HttpsLoop {
  const child = spawn('ip', ['netns', 'exec', client.netns, process.execPath, '-e', LOOP, JSON.stringify({ interval: 100, ...opts })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const serials: string[] = [];
  const failures: string[] = [];
  let ok = 0;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.stdout === null) throw new Error('no stdout');
  createInterface({ input: child.stdout }).on('line', (line) => {
    const r = JSON.parse(line) as { ok: boolean; detail: string; serial: string | null };
    if (r.ok) ok++;
    else failures.push(r.detail);
    if (r.serial !== null && !serials.includes(r.serial)) serials.push(r.serial);
  });
  return {
    serials: () => [...serials],
    ok: () => ok,
    failures: () => [...failures],
    async waitForSerial(serial, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!serials.includes(serial.toUpperCase())) {
        if (Date.now() > deadline)
          throw new Error(`certificate ${serial} not served within ${timeoutMs} ms; seen ${serials.join(', ')}; failures ${failures.slice(-3).join('; ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
