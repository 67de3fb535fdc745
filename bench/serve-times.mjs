#!/usr/bin/env node
// Runs inside the benchmark's client netns: watches VIPs that do not serve yet and notes when each first
// answers an HTTP 200 (a GET on a new connection every 50 ms per VIP, all VIPs at once). Prints one JSON object
// when every VIP has answered or the deadline passed:
//   {"first": {"<ip>": epoch ms of its first 200, …}, "missing": ["<ip>", …]}
//
//   ip netns exec CLIENT node bench/serve-times.mjs --deadline-ms 300000 < ips.txt (one per line)
// It starts polling at once; SIGTERM ends it early (printing what it has).
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { 'deadline-ms': { type: 'string', default: '300000' } }, strict: true });
const deadline = Date.now() + Number(values['deadline-ms']);

let input = '';
for await (const chunk of process.stdin) input += chunk;
const ips = input
  .split('\n')
  .map((l) => l.trim())
  .filter(Boolean);
const first = {};
let stopping = false;
process.on('SIGTERM', () => (stopping = true));

function ok(ip) {
  return new Promise((resolve) => {
    const req = http.get(`http://${ip}/`, { agent: false, headers: { connection: 'close' }, timeout: 500 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
  });
}

await Promise.all(
  ips.map(async (ip) => {
    while (!stopping && Date.now() < deadline) {
      if (await ok(ip)) {
        first[ip] = Date.now();
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }),
);
process.stdout.write(`${JSON.stringify({ first, missing: ips.filter((ip) => first[ip] === undefined) })}\n`);
