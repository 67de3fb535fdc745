// UDP members and clients for the e2e tests of kernel-forwarded listeners: echo servers in member
// namespaces (scripts/udp-echo-server.mjs) and clients that ask through the VIP from a client namespace and
// report which member answered. Requests are bounded in count and time.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT, runCommand, type Host } from './harness.js';

const ECHO_SERVER = join(REPO_ROOT, 'scripts', 'udp-echo-server.mjs');

export interface UdpServer {
  stop(): Promise<void>;
}

export async function startUdpEcho(host: Host, port: number, name: string, address = host.address): Promise<UdpServer> {
  const child = spawn('ip', ['netns', 'exec', host.netns, process.execPath, ECHO_SERVER, '--host', address, '--port', String(port), '--name', name], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`udp echo ${name} did not start`)), 10_000);
    child.stdout.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`udp echo ${name} exited ${code}`)));
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

// Run inside the client netns: `node -e ASK address port count timeoutMs intervalMs sports`. One JSON line
// per request: {seq, name, seenFrom} or {seq, error}. Only an answer from the VIP and port asked counts, as
// for a real client's connected socket: a member answering the client directly is no answer. sports: "" = a new socket (new source port, new flow) per
// request; "P" = every request from one socket bound to port P (one flow); "P1,P2,…" = request i from Pi.
const ASK = `
const dgram = require('node:dgram');
const [address, port, count, timeout, interval, sports] = process.argv.slice(1);
const fixed = sports === '' ? [] : sports.split(',').map(Number);
const type = address.includes(':') ? 'udp6' : 'udp4';
let shared;
let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
const open = (sport) => new Promise((resolve) => { const s = dgram.createSocket({ type, reuseAddr: true }); s.on('error', () => {}); s.bind(sport ?? 0, () => resolve(s)); });
const ask = async (seq) => {
  let s;
  if (fixed.length === 1) s = shared ??= await open(fixed[0]);
  else s = await open(fixed[seq]);
  return new Promise((resolve) => {
    const done = (r) => { clearTimeout(timer); s.removeAllListeners('message'); if (s !== shared) s.close(); resolve(r); };
    const timer = setTimeout(() => done({ seq, error: 'timeout' }), Number(timeout));
    s.on('message', (m, rinfo) => {
      const [name, seenFrom, got] = m.toString().split(' ');
      if (got !== String(seq)) return;
      if (rinfo.address !== address || rinfo.port !== Number(port)) return done({ seq, error: 'answer from ' + rinfo.address + ':' + rinfo.port });
      done({ seq, name, seenFrom });
    });
    s.send(String(seq), Number(port), address);
  });
};
(async () => {
  for (let seq = 0; seq < Number(count) && !stopping; seq++) {
    process.stdout.write(JSON.stringify(await ask(seq)) + '\\n');
    if (Number(interval) > 0) await new Promise((r) => setTimeout(r, Number(interval)));
  }
  process.exit(0);
})();
`;

export interface UdpAnswer {
  seq: number;
  name?: string;
  /** The source address the member saw. */
  seenFrom?: string;
  error?: string;
}

export interface AskOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** One port: every request from it (one flow). Several: request i from port i. None: a new port each time. */
  sourcePorts?: number[];
}

function argv(client: Host, address: string, port: number, count: number, o: AskOptions): string[] {
  return [
    'ip',
    'netns',
    'exec',
    client.netns,
    process.execPath,
    '-e',
    ASK,
    address,
    String(port),
    String(count),
    String(o.timeoutMs ?? 1000),
    String(o.intervalMs ?? 0),
    (o.sourcePorts ?? []).join(','),
  ];
}

/** `count` requests, one after the other; resolves with every answer. */
export async function udpAsk(client: Host, address: string, port: number, count: number, o: AskOptions = {}): Promise<UdpAnswer[]> {
  const { stdout } = await runCommand(argv(client, address, port, count, o), { timeoutMs: 30_000 + count * ((o.timeoutMs ?? 1000) + (o.intervalMs ?? 0)) });
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as UdpAnswer);
}

/** Requests in the background until stopped (or `count` is reached): the traffic that must see no gap. */
export interface UdpLoop {
  answers: UdpAnswer[];
  stop(): Promise<UdpAnswer[]>;
}

export function startUdpLoop(client: Host, address: string, port: number, o: AskOptions & { count?: number } = {}): UdpLoop {
  const child: ChildProcess = spawn(
    argv(client, address, port, o.count ?? 100_000, o)[0] as string,
    argv(client, address, port, o.count ?? 100_000, o).slice(1),
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const answers: UdpAnswer[] = [];
  if (child.stdout !== null) createInterface({ input: child.stdout }).on('line', (l) => answers.push(JSON.parse(l) as UdpAnswer));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    answers,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      return answers;
    },
  };
}
