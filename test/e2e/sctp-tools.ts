// SCTP members and clients for the e2e tests of SCTP listeners. This kernel has no SCTP sockets, so both speak
// the first two steps of the handshake (INIT, INIT-ACK) over raw sockets (test/e2e/sctp-raw.py): enough to see
// which member answered, from where, and that the answer comes back from the VIP with the client's tag.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, runCommand, type Host } from './harness.js';

export const SCTP_RAW = join(REPO_ROOT, 'test', 'e2e', 'sctp-raw.py');

export interface SctpAnswer {
  sport: number;
  name?: string;
  seenFrom?: string;
  error?: string;
}

/** Raw-socket SCTP members answering INIT on one port, by name. */
export class SctpMembers {
  readonly #port: number;
  readonly #servers = new Map<string, ChildProcess>();

  constructor(port: number) {
    this.#port = port;
  }

  async start(name: string, host: Host): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', host.netns, 'python3', SCTP_RAW, 'serve', '--name', name, '--port', String(this.#port)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.#servers.set(name, child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`sctp member ${name} exited ${code}`)));
    });
  }

  async stop(name: string): Promise<void> {
    const child = this.#servers.get(name);
    this.#servers.delete(name);
    if (child === undefined || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }

  async stopAll(): Promise<void> {
    for (const name of [...this.#servers.keys()]) await this.stop(name).catch(() => undefined);
  }
}

/** One INIT per source port from `from` to address:port, one after the other; what answered each. */
export async function sctpAsk(from: Host, address: string, port: number, sports: readonly number[]): Promise<SctpAnswer[]> {
  const answers: SctpAnswer[] = [];
  for (const sport of sports) {
    const argv = ['ip', 'netns', 'exec', from.netns, 'python3', SCTP_RAW, 'ask', '--to', address, '--port', String(port), '--sport', String(sport)];
    answers.push(JSON.parse((await runCommand(argv)).stdout) as SctpAnswer);
  }
  return answers;
}
