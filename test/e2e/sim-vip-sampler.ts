// Samples which simulated nodes hold which addresses in their load balancers' namespaces, for the
// ACTIVE_STANDBY tests: one shell loop per node, inside the node (its network and mount namespaces), printing
// `MS NETNS ADDR…` lines every interval. A node that is killed stops being sampled (its loop dies with its
// PID namespace); start() again once it is back. No test cases here.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { SIM } from './sim-rig.js';

export interface Sample {
  at: number;
  node: string;
  netns: string;
  addresses: string[];
}

// Every nslb netns of the node: one `ip` per netns and interval (`ip -all netns exec` forks per netns itself).
const LOOP = String.raw`
while :; do
  t=$(date +%s%3N)
  for ns in $(ip netns list | awk '/^nslb-/ {print $1}'); do
    printf '%s %s %s\n' "$t" "$ns" "$(ip -n "$ns" -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | tr '\n' ' ')"
  done
  sleep "$1"
done`;

export class VipSampler {
  readonly samples: Sample[] = [];
  readonly #loops = new Map<string, ChildProcess>();
  /** [from, to] windows (ms) in which two holders are allowed (a partition). */
  readonly #exempt: [number, number][] = [];

  constructor(readonly intervalMs = 100) {}

  start(node: string): void {
    this.stop(node);
    const child = spawn(SIM, ['exec', node, '--', 'sh', '-c', LOOP, 'sampler', String(this.intervalMs / 1000)], { stdio: ['ignore', 'pipe', 'ignore'] });
    if (child.stdout === null) throw new Error('sampler: no stdout');
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [at, netns, ...addresses] = line.trim().split(/\s+/);
      if (at === undefined || netns === undefined) return;
      this.samples.push({ at: Number(at), node, netns, addresses: addresses.filter(Boolean) });
    });
    this.#loops.set(node, child);
  }

  stop(node: string): void {
    this.#loops.get(node)?.kill('SIGKILL');
    this.#loops.delete(node);
  }

  stopAll(): void {
    for (const node of [...this.#loops.keys()]) this.stop(node);
  }

  exempt(from: number, to: number): void {
    this.#exempt.push([from, to]);
  }

  /**
   * The nodes whose latest sample (at most 2 intervals old) shows `address` in `netns`; not a node no longer sampled
   * (killed: its last sample, taken while it held the VIP, would stand for it for two more intervals).
   */
  holders(netns: string, address: string, now = Date.now()): string[] {
    const latest = new Map<string, Sample>();
    for (const s of this.samples) if (s.netns === netns && s.at <= now && this.#loops.has(s.node)) latest.set(s.node, s);
    return [...latest.values()].filter((s) => now - s.at <= 2 * this.intervalMs + 200 && s.addresses.includes(address)).map((s) => s.node);
  }

  /**
   * Who holds `address` in `netns` as sampled after this call, by every node in `nodes` (each one's first sample
   * taken after now): unlike holders(), a sampler that lags under load gives a late answer, not an empty one.
   */
  async holdersNow(netns: string, address: string, nodes: readonly string[], timeoutMs = 10_000): Promise<string[]> {
    const since = Date.now();
    for (const until = since + timeoutMs; Date.now() < until; await new Promise((r) => setTimeout(r, this.intervalMs))) {
      const first = new Map<string, Sample>();
      for (const s of this.samples) if (s.netns === netns && s.at >= since && nodes.includes(s.node) && !first.has(s.node)) first.set(s.node, s);
      if (first.size === nodes.length)
        return [...first.values()]
          .filter((s) => s.addresses.includes(address))
          .map((s) => s.node)
          .sort();
    }
    throw new Error(`sampler: no sample of ${netns} from ${nodes.join(', ')} within ${timeoutMs} ms`);
  }

  /**
   * Moments when two nodes held `address` in `netns` at once: a sample of node B that holds it, taken between
   * two consecutive samples of node A that both hold it (so A held it throughout), outside exempt windows.
   */
  dualHolders(netns: string, address: string): string[] {
    const byNode = new Map<string, Sample[]>();
    for (const s of this.samples) if (s.netns === netns) byNode.set(s.node, [...(byNode.get(s.node) ?? []), s]);
    const found: string[] = [];
    for (const [b, bs] of byNode) {
      for (const sb of bs) {
        if (!sb.addresses.includes(address) || this.#exempt.some(([f, t]) => sb.at >= f && sb.at <= t)) continue;
        for (const [a, as] of byNode) {
          if (a === b) continue;
          const i = as.findIndex((s) => s.at > sb.at);
          const before = i > 0 ? as[i - 1] : undefined;
          const after = i >= 0 ? as[i] : undefined;
          if (before === undefined || after === undefined || after.at - before.at > 3 * this.intervalMs + 500) continue;
          if (before.addresses.includes(address) && after.addresses.includes(address)) found.push(`${new Date(sb.at).toISOString()} ${a} and ${b}`);
        }
      }
    }
    return found;
  }
}
