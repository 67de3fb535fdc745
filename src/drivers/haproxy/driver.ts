// HAProxy in master-worker mode, one per load balancer, started inside its netns; its files live in the load
// balancer's directory of the state dir. A new config is checked with `haproxy -c` before an atomic rename, so a
// config that fails the check never replaces a good one; a reload (SIGUSR2 to the master) passes the listening
// sockets to the new worker (`expose-fd listeners`) and old workers finish their connections. Member changes go
// through the runtime API (runtime-api.ts) without a reload.
import { chmod, rename, rm, unlink } from 'node:fs/promises';
import { lbPaths, type LbPaths } from '../../desired/state-dir.js';
import { Batcher } from '../../exec/batcher.js';
import type { Runner } from '../../exec/run.js';
import { waitUntil } from '../../loop/wait.js';
import type { Action } from '../../plan/actions.js';
import type { DriverCounters } from '../../plan/node-driver.js';
import type { ObservedLoadBalancer } from '../../plan/observed.js';
import { execInNetnsBatch, NETNS_BATCH_SIZE } from '../netns/netns.js';
import {
  deleteStateDir,
  ensureStateDir,
  markConfigLoaded,
  observeCertFiles,
  observeReloadPending,
  readConfig,
  removeStaleCertificates,
  writeCertificates,
  writePrivateFile,
  type CertificateFile,
} from './files.js';
import { readPid } from '../proc.js';
import { findHaproxyByConfig, haproxyInNetns, isOurHaproxy, observeHaproxy, stopHaproxy } from './process.js';
import { applyRuntimeCommands, runtimeWorkerPid } from './runtime-api.js';
import { startingServerState } from '../../plan/runtime-diff.js';
import { saveServerState } from './server-state.js';

export const HAPROXY_BIN = process.env.NSLB_HAPROXY ?? 'haproxy';

export type HaproxyAction = Extract<Action, { kind: `haproxy.${string}` | 'stateDir.delete' }>;

/** HAProxy's command line (master-worker, daemon), to run inside the load balancer's netns. */
export function haproxyStartCommand(paths: LbPaths): string[] {
  return [HAPROXY_BIN, '-W', '-D', '-f', paths.config, '-p', paths.pidfile];
}

export function argvStart(netns: string, paths: LbPaths): string[] {
  return ['ip', 'netns', 'exec', netns, ...haproxyStartCommand(paths)];
}

export class HaproxyDriver {
  readonly counters: DriverCounters = { haproxyReloads: { ok: 0, failed: 0 }, haproxyStarts: 0, runtimeUpdates: 0, runtimeFallbacks: 0 };
  readonly #run: Runner;
  readonly #stateDir: string;
  /** Starts of load balancers reconciled at once: one `ip -batch` of `netns exec` lines (see exec/batcher.ts). */
  readonly #starts: Batcher<{ netns: string; paths: LbPaths }>;

  constructor(run: Runner, stateDir: string) {
    this.#run = run;
    this.#stateDir = stateDir;
    this.#starts = new Batcher(
      async (items) =>
        void (await execInNetnsBatch(
          run,
          items.map(({ netns, paths }) => ({ netns, argv: haproxyStartCommand(paths) })),
          { detached: true },
        )),
      ({ netns, paths }) => this.#launch(netns, paths),
      { maxBatch: NETNS_BATCH_SIZE },
    );
  }

  paths(netns: string): LbPaths {
    return lbPaths(this.#stateDir, netns);
  }

  /** The pidfile's HAProxy, and (with a state dir) its config, certificates and whether a reload is owed. */
  observe(netns: string, e: ObservedLoadBalancer): void {
    const paths = this.paths(netns);
    const haproxy = observeHaproxy(paths, netns);
    if (haproxy !== undefined) e.haproxy = haproxy;
    if (!e.stateDir) return;
    const config = readConfig(paths);
    const certFiles = observeCertFiles(paths);
    if (config !== undefined) e.config = config;
    if (certFiles.length > 0) e.certFiles = certFiles;
    if (observeReloadPending(paths)) e.reloadPending = true;
  }

  /** Load balancers that should have a HAProxy but whose pidfile says nothing: looked for by their config in /proc. */
  async observeByConfig(lbs: readonly (readonly [string, ObservedLoadBalancer])[]): Promise<void> {
    if (lbs.length === 0) return;
    const byConfig = await findHaproxyByConfig(new Set(lbs.map(([netns]) => this.paths(netns).config)));
    for (const [netns, e] of lbs) {
      const pid = byConfig.get(this.paths(netns).config);
      if (pid !== undefined) e.haproxy = { pid, inNetns: haproxyInNetns(pid, netns) };
    }
  }

  async apply(a: HaproxyAction): Promise<void> {
    const paths = this.paths(a.netns);
    switch (a.kind) {
      case 'haproxy.writeConfig':
        return this.#writeCheckedConfig(paths, a.config, a.certificates, a.unchecked === true ? { check: false } : {});
      case 'haproxy.runtime': {
        if (await applyRuntimeCommands(paths, a.commands, this.counters)) {
          // Live already; the file follows so that a restart or a later reload gives the same servers.
          await this.#writeCheckedConfig(paths, a.config, a.certificates, { reloadFollows: false });
          return markConfigLoaded(paths);
        }
        this.counters.runtimeFallbacks++;
        await this.#writeCheckedConfig(paths, a.config, a.certificates);
        return this.apply({ kind: 'haproxy.reload', netns: a.netns });
      }
      case 'haproxy.start':
        await this.#start(a.netns, paths, () => this.#starts.submit({ netns: a.netns, paths }));
        return markConfigLoaded(paths);
      case 'haproxy.reload': {
        const pid = observeHaproxy(paths, a.netns)?.pid ?? (await findHaproxyByConfig(new Set([paths.config]))).get(paths.config);
        if (pid === undefined) throw new Error(`haproxy in ${a.netns} is not running; cannot reload`);
        if (!(await this.#reload(pid, paths))) {
          // The reload failed and HAProxy no longer listens. A restart brings out HAProxy's own error (and its
          // hint) for the status, and the retries converge once the cause is gone.
          await stopHaproxy(pid, paths.config);
          await this.#start(a.netns, paths);
        }
        return markConfigLoaded(paths);
      }
      case 'haproxy.stop':
        return stopHaproxy(a.pid, paths.config, a.graceMs);
      case 'stateDir.delete':
        return deleteStateDir(paths);
    }
  }

  /**
   * Write the config (and the certificate files it names) next to the live one, check it with the real parser,
   * then rename over the live one. A config that fails the check is removed and the error thrown: the running
   * HAProxy keeps the old one. Certificates the new config no longer names are removed after the rename
   * (running workers hold theirs in memory).
   */
  async #writeCheckedConfig(
    paths: LbPaths,
    config: string,
    certificates: readonly CertificateFile[],
    options: { reloadFollows?: boolean; check?: boolean } = {},
  ): Promise<void> {
    await ensureStateDir(paths);
    await writeCertificates(paths, certificates);
    const next = `${paths.config}.next`;
    await writePrivateFile(next, config, 0o600);
    if (options.check !== false) {
      try {
        await this.#run([HAPROXY_BIN, '-c', '-q', '-f', next]);
      } catch (err) {
        await rm(next, { force: true });
        throw err;
      }
    }
    if (options.reloadFollows !== false) await saveServerState(paths, config);
    // Before the rename: a crash right after it must not leave a config on disk that HAProxy never loaded
    // and that the next reconcile would find "already right".
    await writePrivateFile(paths.reloadPending, '', 0o600);
    await rename(next, paths.config);
    await removeStaleCertificates(paths, certificates);
  }

  /**
   * Starts HAProxy's daemon in the netns, on its own (one process). Not when the pidfile (removed before any
   * start) already names our HAProxy with this config: a batch that failed after this start went through.
   */
  async #launch(netns: string, paths: LbPaths): Promise<void> {
    const pid = readPid(paths.pidfile);
    if (pid !== undefined && isOurHaproxy(pid, paths.config)) return;
    await this.#run(argvStart(netns, paths), { detached: true, timeoutMs: 20_000 });
  }

  /**
   * Starts HAProxy for this load balancer and returns its master's PID. `launch` runs the command (the starts of
   * load balancers created together are merged into one `ip -batch`); by default, on its own.
   */
  async #start(netns: string, paths: LbPaths, launch: () => Promise<void> = () => this.#launch(netns, paths)): Promise<number> {
    await unlink(paths.pidfile).catch(() => undefined);
    // A fresh process starts with fresh health: a state file from an earlier process may name servers and
    // addresses this config no longer has. Its checked servers start fully up (see startingServerState).
    await writePrivateFile(paths.stateFile, startingServerState(readConfig(paths) ?? ''), 0o600);
    this.counters.haproxyStarts++;
    await launch();
    // The daemon writes the pidfile before it lets go of our stderr; a slow one gets a few seconds more.
    let pid: number | undefined;
    await waitUntil(
      () => {
        pid = readPid(paths.pidfile);
        return pid !== undefined;
      },
      { intervalMs: 20, timeoutMs: 5_000 },
    );
    if (pid === undefined) throw new Error(`haproxy in ${netns} started but wrote no pidfile ${paths.pidfile}`);
    await chmod(paths.socket, 0o600).catch(() => undefined);
    return pid;
  }

  /**
   * SIGUSR2 makes the master re-read the config and start a new worker with the inherited sockets. Resolves
   * true once a new worker answers the runtime socket; false when none does within timeoutMs: HAProxy could not
   * apply a config that `haproxy -c` accepted (a listener port it cannot bind), its master has fallen back to
   * wait mode and the old worker no longer listens. The signal alone would report success either way.
   */
  async #reload(pid: number, paths: LbPaths, timeoutMs = 5_000): Promise<boolean> {
    const before = await runtimeWorkerPid(paths);
    process.kill(pid, 'SIGUSR2');
    if (before === undefined) {
      this.counters.haproxyReloads.ok++;
      return true; // no worker to compare with: trust the signal, as before
    }
    const reloaded = await waitUntil(
      async () => {
        const now = await runtimeWorkerPid(paths);
        return now !== undefined && now !== before;
      },
      { intervalMs: 20, timeoutMs, askAtOnce: false },
    );
    if (reloaded) this.counters.haproxyReloads.ok++;
    else this.counters.haproxyReloads.failed++;
    return reloaded;
  }
}
