// Turns health transitions of UDP and SCTP members into the kernel's slot maps: reads the load balancer's
// HAProxy (`show stat` of the check-only backends, see plan/udp-health-checks.ts), and when a member's health
// changes, applies the one nft transaction of element updates that follows, then forgets the flows of
// members that can no longer answer. Forwarding never waits for it: if it stops (the agent is stopped or
// upgraded), the kernel goes on with the members it last had; transitions are applied when it runs again.
import type { Runner } from '../../exec/run.js';
import { parseShowStat } from '../../plan/haproxy-stats.js';
import { queryRuntime } from '../haproxy/runtime-api.js';
import { flowsToForget, renderNftState, type MemberHealth, type NftLoadBalancer, type NftState } from '../../plan/nft-ruleset.js';
import { planNftTransaction } from '../../plan/nft-transaction.js';
import { memberHealthFromStats } from '../../plan/udp-health-checks.js';
import { applyNftTransaction, forgetFlows, observeNftTable } from './nft.js';

export interface HealthFollowerOptions {
  run: Runner;
  netns: string;
  /** The load balancer's HAProxy runtime socket. */
  socketPath: string;
  /** The spec; members' `health` in it is ignored (HAProxy's checks decide). */
  model: () => NftLoadBalancer;
  intervalMs: number;
  /** After each applied change: the transaction's lines and the members whose flows were forgotten. */
  onApplied?: (change: { lines: string[]; forgotten: number }) => void;
  onError?: (error: unknown) => void;
}

/** The model with each member's health as the checks see it; a member HAProxy does not know yet is UP. */
export function withHealth(lb: NftLoadBalancer, health: ReadonlyMap<string, ReadonlyMap<string, MemberHealth>>): NftLoadBalancer {
  return {
    ...lb,
    pools: lb.pools.map((p) => ({
      ...p,
      members: p.members.map((m) => ({ ...m, health: health.get(p.name)?.get(m.name) ?? 'UP' })),
    })),
  };
}

export class HealthFollower {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private applied: NftState | undefined;
  private known = false;
  private last: NftLoadBalancer | undefined;
  private health = new Map<string, Map<string, MemberHealth>>();

  constructor(private readonly o: HealthFollowerOptions) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      this.running ??= this.tick()
        .catch((error: unknown) => {
          // The next tick observes the table again rather than trusting what it thinks it applied.
          this.known = false;
          this.o.onError?.(error);
        })
        .finally(() => {
          this.running = undefined;
        });
    }, this.o.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One round: read the checks, apply what changed. Public so that a caller can drive it step by step. */
  async tick(): Promise<void> {
    const spec = this.o.model();
    const rows = parseShowStat(await queryRuntime(this.o.socketPath, 'show stat'));
    for (const p of spec.pools) this.health.set(p.name, memberHealthFromStats(rows, p.name, this.health.get(p.name)));
    const next = withHealth(spec, this.health);
    if (!this.known) {
      this.applied = await observeNftTable(this.o.run, this.o.netns);
      this.known = true;
    }
    const desired = renderNftState(next);
    const lines = planNftTransaction(this.applied, desired);
    await applyNftTransaction(this.o.run, this.o.netns, lines);
    this.applied = desired;
    const forgotten = this.last === undefined ? [] : flowsToForget(this.last, next);
    await forgetFlows(this.o.run, this.o.netns, forgotten);
    this.last = next;
    if (lines.length > 0 || forgotten.length > 0) this.o.onApplied?.({ lines, forgotten: forgotten.length });
  }
}
