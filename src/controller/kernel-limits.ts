// The node's kernel limits, kept large enough for the load balancers this agent serves: checked at start-up, on
// every snapshot (before new load balancers are created) and every resync; neighbour-table overflows are looked
// for on every stats poll. With --kernel-limits raise (the default) a limit that is too low is raised (upward
// only, logged with old and new values); with --kernel-limits check nothing is written. A limit that stays too low
// is a node condition in status.json, a warning naming the sysctl and the value to set, and a metric; a
// neighbour table that refuses entries caps the operating status of the load balancers of that family.
import type { Condition } from '../api/v1alpha1/types.js';
import type { Logger } from '../log/logger.js';
import {
  planKernelLimits,
  verdictOf,
  type Family,
  type KernelAccess,
  type LimitCheck,
  type LimitName,
  type LimitVerdict,
  type NeighbourTableStats,
  type NodeLoad,
} from '../plan/kernel-limits.js';

export const KERNEL_LIMITS_MODES = ['raise', 'check'] as const;
export type KernelLimitsMode = (typeof KERNEL_LIMITS_MODES)[number];

/** The node condition's type in status.json (and on affected LoadBalancers). */
export const KERNEL_LIMITS_CONDITION = 'KernelLimitsSufficient';

/** A neighbour table that refused entries counts as refusing for this long after the last refusal seen. */
const OVERFLOW_HOLD_MS = 30_000;

export interface LimitRow {
  name: LimitName;
  current?: number;
  required: number;
  target: number;
  verdict: LimitVerdict;
  why: string;
  /** What the agent did about it in this run of the agent, if anything. */
  raisedFrom?: number;
  /** Why a raise failed. */
  failure?: string;
}

export interface KernelLimitsReport {
  mode: KernelLimitsMode;
  limits: LimitRow[];
  /** Families whose neighbour table refuses (or would refuse) new entries. */
  refusing: Family[];
  neighbours: Partial<Record<Family, NeighbourTableStats>>;
  /** Not yet in a Condition's final form: the status publisher stamps lastTransitionTime. */
  condition: Omit<Condition, 'lastTransitionTime'>;
}

/** How to set a limit the agent could not: the sysctl command, or the unit/pod setting for the cgroup. */
export function howToSet(name: LimitName, value: number): string {
  if (name === 'cgroup pids.max') {
    return `raise the pids limit of the agent's cgroup to ${value} or more (systemd: TasksMax=infinity in nslb.service; Kubernetes: the kubelet's podPidsLimit)`;
  }
  return `sysctl -w ${name}=${value} (and in /etc/sysctl.d/ to keep it across reboots)`;
}

export class KernelLimits {
  readonly #kernel: KernelAccess;
  readonly #logger: Logger;
  #mode: KernelLimitsMode;
  readonly #overflowSeen: Record<Family, number> = { ipv4: -Infinity, ipv6: -Infinity };
  #lastStats: Partial<Record<Family, NeighbourTableStats>> = {};
  #report: KernelLimitsReport | undefined;
  /** What was last logged per limit, so that a resync does not repeat the same warning. */
  readonly #logged = new Map<LimitName, string>();
  /** Raises done by this agent since it started (for /metrics), and the value each started from. */
  readonly raises = new Map<LimitName, number>();
  readonly #raisedFrom = new Map<LimitName, number>();
  #lastLoad: NodeLoad | undefined;

  constructor(opts: { kernel: KernelAccess; mode: KernelLimitsMode; logger: Logger }) {
    this.#kernel = opts.kernel;
    this.#mode = opts.mode;
    this.#logger = opts.logger;
    this.#lastStats = this.#kernel.pollNeighbours().stats;
  }

  get mode(): KernelLimitsMode {
    return this.#mode;
  }

  setMode(mode: KernelLimitsMode): void {
    this.#mode = mode;
    this.#logged.clear();
    if (this.#lastLoad !== undefined) this.check(this.#lastLoad);
  }

  get report(): KernelLimitsReport | undefined {
    return this.#report;
  }

  /**
   * Reads the limits, raises those too low (mode raise), logs what changed, and returns whether the report
   * changed in a way status shows.
   */
  check(load: NodeLoad, now = Date.now()): boolean {
    this.#lastLoad = load;
    const readings = this.#kernel.read();
    const overflowed: Record<Family, boolean> = {
      ipv4: now - this.#overflowSeen.ipv4 < OVERFLOW_HOLD_MS,
      ipv6: now - this.#overflowSeen.ipv6 < OVERFLOW_HOLD_MS,
    };
    const rows: LimitRow[] = [];
    for (const check of planKernelLimits(load, { ...readings, overflowed })) rows.push(this.#settle(check));
    const refusing = new Set<Family>();
    for (const row of rows) {
      if (row.verdict !== 'insufficient') continue;
      if (row.name === 'net.ipv4.neigh.default.gc_thresh3') refusing.add('ipv4');
      if (row.name === 'net.ipv6.neigh.default.gc_thresh3') refusing.add('ipv6');
    }
    // A table that refused entries and was not raised since (the mode forbids it, or the raise cap is reached).
    for (const family of ['ipv4', 'ipv6'] as const) {
      const raised = rows.some((r) => r.name === `net.${family}.neigh.default.gc_thresh3` && r.raisedFrom !== undefined && r.verdict === 'ok');
      if (overflowed[family] && !raised) refusing.add(family);
    }
    const before = JSON.stringify(this.#report === undefined ? undefined : { ...this.#report, neighbours: undefined });
    this.#report = {
      mode: this.#mode,
      limits: rows,
      refusing: [...refusing].sort(),
      neighbours: this.#lastStats,
      condition: conditionOf(rows, refusing, overflowed, this.#lastStats),
    };
    return JSON.stringify({ ...this.#report, neighbours: undefined }) !== before;
  }

  /**
   * Every stats poll: did a neighbour table refuse entries since the last poll? If so, check again at once (a
   * raise may follow) and return true. Reads two small /proc files.
   */
  pollNeighbours(now = Date.now()): boolean {
    const { overflowed, stats } = this.#kernel.pollNeighbours();
    this.#lastStats = stats;
    let changed = false;
    for (const family of ['ipv4', 'ipv6'] as const) {
      if (!overflowed[family]) continue;
      if (now - this.#overflowSeen[family] >= OVERFLOW_HOLD_MS) {
        const s = stats[family];
        this.#logger.warn(
          { family, entries: s?.entries, tableFulls: s?.tableFulls },
          `the kernel refused new ${family} neighbour entries (table full at ${s?.entries ?? '?'} entries): clients and members of this family may be unreachable`,
        );
      }
      this.#overflowSeen[family] = now;
      changed = true;
    }
    // The hold ran out: the table stopped refusing.
    for (const family of ['ipv4', 'ipv6'] as const) {
      if (this.#report?.refusing.includes(family) && now - this.#overflowSeen[family] >= OVERFLOW_HOLD_MS) changed = true;
    }
    if (changed && this.#lastLoad !== undefined) return this.check(this.#lastLoad, now) || changed;
    return changed;
  }

  #settle(check: LimitCheck): LimitRow {
    const verdict = verdictOf(check, this.#mode === 'raise');
    const row: LimitRow = { name: check.name, required: check.required, target: check.target, verdict, why: check.why };
    if (check.current !== undefined) row.current = check.current;
    const from = this.#raisedFrom.get(check.name);
    if (from !== undefined) row.raisedFrom = from;
    if (verdict === 'raise') {
      const result = this.#kernel.raise(check.name, check.target);
      if (result.ok) {
        this.#logger.info(
          { sysctl: check.name, from: check.current, to: check.target, required: check.required, why: check.why },
          `raised ${check.name} from ${check.current} to ${check.target}`,
        );
        this.raises.set(check.name, (this.raises.get(check.name) ?? 0) + 1);
        if (from === undefined) this.#raisedFrom.set(check.name, check.current!);
        row.raisedFrom = from ?? check.current!;
        row.current = check.target;
        row.verdict = 'ok';
        this.#logged.delete(check.name);
        return row;
      }
      row.verdict = 'insufficient';
      row.failure = result.reason;
    }
    if (row.verdict === 'insufficient') this.#warnOnce(row);
    else this.#logged.delete(check.name);
    return row;
  }

  #warnOnce(row: LimitRow): void {
    const key = `${row.target}:${row.failure ?? ''}`;
    if (this.#logged.get(row.name) === key) return;
    this.#logged.set(row.name, key);
    const what =
      row.failure !== undefined ? `cannot raise it: ${row.failure}` : this.#mode === 'check' ? 'not raised (--kernel-limits check)' : 'not settable by nslb';
    this.#logger.warn(
      { sysctl: row.name, current: row.current, required: row.required, set: row.target, why: row.why },
      `${row.name} is ${row.current}, the load balancers here need at least ${row.required} (${what}): ${howToSet(row.name, row.target)}`,
    );
  }
}

function conditionOf(
  rows: readonly LimitRow[],
  refusing: ReadonlySet<Family>,
  overflowed: Record<Family, boolean>,
  stats: Partial<Record<Family, NeighbourTableStats>>,
): Omit<Condition, 'lastTransitionTime'> {
  const low = rows.filter((r) => r.verdict === 'insufficient');
  if (low.length > 0 || refusing.size > 0) {
    const parts: string[] = [];
    for (const family of refusing) {
      if (overflowed[family]) parts.push(`the kernel refused new ${family} neighbours (table full at ${stats[family]?.entries ?? '?'} entries)`);
    }
    for (const r of low)
      parts.push(`${r.name} is ${r.current}, needs ${r.required}${r.failure === undefined ? '' : ` (${r.failure})`}: ${howToSet(r.name, r.target)}`);
    const reason = refusing.size > 0 ? 'NeighbourTableTooSmall' : 'KernelLimitTooLow';
    return { type: KERNEL_LIMITS_CONDITION, status: 'False', reason, message: parts.join('; ') };
  }
  if (rows.length > 0 && rows.every((r) => r.verdict === 'unknown')) {
    return {
      type: KERNEL_LIMITS_CONDITION,
      status: 'Unknown',
      reason: 'NotObservable',
      message: 'no kernel limit can be read here (not in the host network namespace?)',
    };
  }
  const raised = rows.filter((r) => r.raisedFrom !== undefined);
  const message =
    raised.length === 0
      ? `every kernel limit the load depends on is sufficient (${rows.filter((r) => r.verdict === 'ok').length} checked)`
      : `raised by nslb: ${raised.map((r) => `${r.name} ${r.raisedFrom} → ${r.current}`).join(', ')}`;
  return { type: KERNEL_LIMITS_CONDITION, status: 'True', reason: raised.length === 0 ? 'Sufficient' : 'Raised', message };
}
