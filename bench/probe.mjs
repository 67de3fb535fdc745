#!/usr/bin/env node
// Runs inside the benchmark's client netns: GETs one URL over and over, each request on a new connection
// (so the load balancer picks a member for each), and prints one JSON line per request:
//   {"t0": start, "t": end, "s": status (0 = socket error), "b": body trimmed, or the error code}
// Times are epoch milliseconds with a fractional part (performance.timeOrigin + performance.now()), so the
// parent process on the same machine can compare them with the moment it wrote a file.
//
//   ip netns exec CLIENT node bench/probe.mjs --url http://10.230.2.10/ [--interval 5] [--timeout 500]
//
// It stops when its stdin closes (the parent went away) or on SIGTERM.
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    interval: { type: 'string', default: '5' },
    timeout: { type: 'string', default: '500' },
  },
  strict: true,
});
if (values.url === undefined) {
  process.stderr.write('usage: probe.mjs --url URL [--interval MS] [--timeout MS]\n');
  process.exit(2);
}
const url = values.url;
const intervalMs = Number(values.interval);
const timeoutMs = Number(values.timeout);
const now = () => performance.timeOrigin + performance.now();

let stopping = false;
process.stdin.resume();
process.stdin.on('close', () => {
  stopping = true;
});
process.on('SIGTERM', () => {
  stopping = true;
});

function once() {
  return new Promise((resolve) => {
    const t0 = now();
    let done = false;
    const finish = (s, b) => {
      if (done) return;
      done = true;
      process.stdout.write(`${JSON.stringify({ t0, t: now(), s, b })}\n`);
      resolve();
    };
    const req = http.get(url, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        if (body.length < 200) body += chunk;
      });
      res.on('end', () => finish(res.statusCode ?? 0, body.trim()));
      res.on('error', (err) => finish(0, err.code ?? err.message));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => finish(0, err.code ?? err.message));
  });
}

while (!stopping) {
  await once();
  await new Promise((resolve) => setTimeout(resolve, intervalMs));
}
process.exit(0);
