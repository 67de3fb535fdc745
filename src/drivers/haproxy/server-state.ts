// Health carried across a reload, as Octavia does it: the running servers' state (`show servers state`) is saved
// into the file HAProxy loads at start (`server-state-file`), keeping only servers whose `server` line does not
// change, so members stay UP across the reload instead of starting over, and a changed member takes its new config.
import { rm } from 'node:fs/promises';
import type { LbPaths } from '../../desired/state-dir.js';
import { backendServers } from '../../plan/runtime-diff.js';
import { readConfig, writePrivateFile } from './files.js';
import { queryRuntime } from './runtime-api.js';

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The lines of a `show servers state` dump worth carrying into a reload: servers whose `server` line is the
 * same in both configs (their health and state are still true). Servers that changed start afresh, so a
 * saved address, port or weight can never override the new config.
 */
export function carriedServerState(dump: string, before: string, after: string): string {
  const keep = new Set<string>();
  const old = backendServers(before);
  for (const [header, servers] of backendServers(after)) {
    const prev = old.get(header);
    if (prev === undefined) continue;
    const backend = header.slice('backend '.length).trim();
    for (const [name, args] of servers) {
      const was = prev.get(name);
      if (was !== undefined && same(was, args)) keep.add(`${backend}/${name}`);
    }
  }
  const lines = dump.split('\n');
  const out: string[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    if (/^\d+$/.test(line.trim()) || line.startsWith('#')) {
      out.push(line);
      continue;
    }
    // be_id be_name srv_id srv_name …
    const f = line.split(' ');
    if (keep.has(`${f[1]}/${f[3]}`)) out.push(line);
  }
  return `${out.join('\n')}\n`;
}

/**
 * Before a reload: dump the running servers' state (health, maintenance, weight) into the file HAProxy loads at
 * start, keeping what carriedServerState keeps. Without a HAProxy to ask, or if it does not answer, no state is
 * carried (never a stale one).
 */
export async function saveServerState(paths: LbPaths, nextConfig: string): Promise<void> {
  const current = readConfig(paths);
  let dump: string | undefined;
  if (current !== undefined) {
    try {
      dump = await queryRuntime(paths.socket, 'show servers state', 2_000);
    } catch {
      dump = undefined;
    }
  }
  if (current === undefined || dump === undefined || !/^\d+\n/.test(dump)) {
    await rm(paths.stateFile, { force: true });
    return;
  }
  await writePrivateFile(paths.stateFile, carriedServerState(dump, current, nextConfig), 0o600);
}
