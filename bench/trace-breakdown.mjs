#!/usr/bin/env node
// Where a new load balancer's milliseconds go in phase (a): reads a trace written with NSLB_TRACE_ACTIONS=FILE
// (src/log/trace.ts; set it for `npm run bench -- --phases a`, which passes it to the agent) and prints, for
// each step, the median of its start and end in milliseconds after the file was written, over the runs.
//
//   node bench/trace-breakdown.mjs FILE
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: trace-breakdown.mjs FILE\n');
  process.exit(2);
}
const lines = readFileSync(file, 'utf8')
  .split('\n')
  .filter((l) => l !== '')
  .map((l) => l.split(' '));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const steps = new Map();
const add = (key, v) => steps.set(key, [...(steps.get(key) ?? []), v]);
for (const b of lines.filter((l) => l[0] === 'bench')) {
  const t0 = Number(b[3]);
  const took = Number(b[5]);
  const seen = new Set();
  const events = [];
  for (const l of lines) {
    if (l[0] === 'rec' && Number(l[3]) >= t0 && Number(l[3]) <= t0 + took) events.push([`reconcile ${l[1]}`, Number(l[3]), Number(l[3])]);
    if (l[0] === 'act' && Number(l[3]) >= t0 && Number(l[3]) <= t0 + took) events.push([l[1], Number(l[3]), Number(l[4])]);
  }
  for (const [what, start, end] of events.sort((x, y) => x[1] - y[1])) {
    if (seen.has(what)) continue;
    seen.add(what);
    add(what, [start - t0, end - t0]);
  }
  add('first 200 through the VIP', [took, took]);
}
const rows = [...steps].map(([what, v]) => [what, median(v.map((x) => x[0])), median(v.map((x) => x[1])), v.length]);
for (const [what, start, end, n] of rows.sort((x, y) => x[1] - y[1])) {
  process.stdout.write(`${what.padEnd(28)} ${start.toFixed(1).padStart(7)} → ${end.toFixed(1).padStart(7)} ms  (n=${n})\n`);
}
