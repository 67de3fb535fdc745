// nftables as one object of the node driver (UDP and SCTP listeners, DESIGN §8): observes a load balancer's
// table and its members' health (HAProxy's check-only backends, over the runtime socket), and applies the one
// transaction plan/kernel-model.ts planned. A marker file in the load balancer's state dir says "a table may
// exist here": it is written before the first transaction and removed after the one that deletes the table, so
// that a load balancer whose last UDP listener went away is still looked at (and its table removed), even
// after a crash in between.
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { lbPaths } from '../../desired/state-dir.js';
import type { Runner } from '../../exec/run.js';
import type { Action } from '../../plan/actions.js';
import { parseShowStat } from '../../plan/haproxy-stats.js';
import type { MemberHealth } from '../../plan/nft-ruleset.js';
import type { ObservedNft } from '../../plan/observed.js';
import { memberHealthFromStats } from '../../plan/udp-health-checks.js';
import { queryRuntime } from '../haproxy/runtime-api.js';
import { applyNftTransaction, ensureForwarding, forgetFlows, observeNftTable } from './nft.js';

export type NftAction = Extract<Action, { kind: `nft.${string}` }>;

const BACKEND_PREFIX = 'pool.';

export class NftDriver {
  readonly #run: Runner;
  readonly #stateDir: string;

  constructor(run: Runner, stateDir: string) {
    this.#run = run;
    this.#stateDir = stateDir;
  }

  /** Whether the state dir says the netns may hold nslb's table (see the file comment). */
  mayHaveTable(netns: string): boolean {
    return existsSync(lbPaths(this.#stateDir, netns).nftMarker);
  }

  /** The table (one `nft -j list` in the netns) and the members' health (`show stat`, no process). */
  async observe(netns: string, netnsExists: boolean): Promise<ObservedNft> {
    if (!netnsExists) return {};
    const [table, health] = await Promise.all([observeNftTable(this.#run, netns), this.#health(netns)]);
    return { ...(table === undefined ? {} : { table }), ...(health === undefined ? {} : { health }) };
  }

  async #health(netns: string): Promise<Map<string, Map<string, MemberHealth>> | undefined> {
    let rows: ReturnType<typeof parseShowStat>;
    try {
      rows = parseShowStat(await queryRuntime(lbPaths(this.#stateDir, netns).socket, 'show stat'));
    } catch {
      // No HAProxy (yet): members count as UP until its checks say otherwise, as HAProxy starts them.
      return undefined;
    }
    const health = new Map<string, Map<string, MemberHealth>>();
    for (const row of rows) {
      if (row.type !== 'backend' || !row.pxname.startsWith(BACKEND_PREFIX)) continue;
      const pool = row.pxname.slice(BACKEND_PREFIX.length);
      health.set(pool, memberHealthFromStats(rows, pool));
    }
    return health;
  }

  async apply(a: NftAction): Promise<void> {
    const paths = lbPaths(this.#stateDir, a.netns);
    if (!a.deletesTable) {
      await mkdir(paths.dir, { recursive: true, mode: 0o700 });
      await writeFile(paths.nftMarker, 'inet nslb\n', { mode: 0o600 });
      // The namespace's own sysctls: DNATed flows are routed back out (the table's forward chain drops the rest).
      await ensureForwarding(this.#run, a.netns);
    }
    await applyNftTransaction(this.#run, a.netns, a.lines);
    await forgetFlows(this.#run, a.netns, a.forget);
    if (a.deletesTable) await rm(paths.nftMarker, { force: true });
  }
}
