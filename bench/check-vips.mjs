#!/usr/bin/env node
// Runs inside the benchmark's client netns: one HTTP GET to each VIP (port 80, path /), a few at a time,
// with a few attempts each (the first packet to a VIP waits for ARP). Prints one JSON object:
//   {"ok": VIPs that answered 200, "http": VIPs that answered any HTTP status (HAProxy is serving; a 503
//    means its members are marked down), "failed": [{"ip", "error"}…] for those without a 200, "ms"}
//
//   ip netns exec CLIENT node bench/check-vips.mjs --attempts 3 --concurrency 8 < ips.txt (one per line)
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    attempts: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '8' },
    timeout: { type: 'string', default: '2000' },
  },
  strict: true,
});
const attempts = Number(values.attempts);
const concurrency = Number(values.concurrency);
const timeoutMs = Number(values.timeout);

let input = '';
for await (const chunk of process.stdin) input += chunk;
const ips = input
  .split('\n')
  .map((l) => l.trim())
  .filter(Boolean);

function get(ip) {
  return new Promise((resolve) => {
    const req = http.get(`http://${ip}/`, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? null : `HTTP ${res.statusCode}`));
      res.on('error', (err) => resolve(err.code ?? err.message));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => resolve(err.code ?? err.message));
  });
}

const started = Date.now();
const failed = [];
let ok = 0;
let answeredHttp = 0;
let next = 0;
async function worker() {
  while (next < ips.length) {
    const ip = ips[next++];
    let error = 'not tried';
    for (let i = 0; i < attempts; i++) {
      error = await get(ip);
      if (error === null) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (error === null) ok++;
    else failed.push({ ip, error });
    if (error === null || error.startsWith('HTTP ')) answeredHttp++;
  }
}
await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
process.stdout.write(`${JSON.stringify({ ok, http: answeredHttp, failed, ms: Date.now() - started })}\n`);
