// A load balancer's files in its state dir (desired/state-dir.ts names them): 0600 files in a 0700 directory,
// TLS material named by its content hash and never read back. Reads are synchronous (see process.ts).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LbPaths } from '../../desired/state-dir.js';

export interface CertificateFile {
  fileName: string;
  pem: string;
}

export function readConfig(paths: LbPaths): string | undefined {
  try {
    return readFileSync(paths.config, 'utf8');
  } catch {
    return undefined;
  }
}

export async function ensureStateDir(paths: LbPaths): Promise<void> {
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  await chmod(paths.dir, 0o700);
}

/**
 * Writes a file only its owner may read. Not fsync'd: what these files guard against is the agent dying
 * between two steps, and the page cache outlives the agent; a node that loses power loses every netns and
 * HAProxy with it, and the agent builds them again from the desired state (an fsync costs milliseconds,
 * twice per config change).
 */
export async function writePrivateFile(path: string, content: string, mode: number): Promise<void> {
  const handle = await open(path, 'w', mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
}

/** Names of the certificate files present (contents are never read back: they are named by their hash). */
export function observeCertFiles(paths: LbPaths): string[] {
  try {
    return readdirSync(paths.certsDir)
      .filter((f) => f.endsWith('.pem'))
      .sort();
  } catch {
    return [];
  }
}

export async function writeCertificates(paths: LbPaths, certificates: readonly CertificateFile[]): Promise<void> {
  if (certificates.length === 0) return;
  await mkdir(paths.certsDir, { recursive: true, mode: 0o700 });
  await chmod(paths.certsDir, 0o700);
  const present = new Set(observeCertFiles(paths));
  for (const c of certificates) {
    if (present.has(c.fileName)) continue;
    // Written under a temporary name and renamed: HAProxy never reads half a key.
    const tmp = join(paths.certsDir, `.${c.fileName}.tmp`);
    await writePrivateFile(tmp, c.pem, 0o600);
    await rename(tmp, join(paths.certsDir, c.fileName));
  }
}

export async function removeStaleCertificates(paths: LbPaths, keep: readonly CertificateFile[]): Promise<void> {
  const wanted = new Set(keep.map((c) => c.fileName));
  for (const f of observeCertFiles(paths)) {
    if (!wanted.has(f)) await rm(join(paths.certsDir, f), { force: true });
  }
}

/** Whether a config was written that HAProxy has not been started with or told to reload since. */
export function observeReloadPending(paths: LbPaths): boolean {
  return existsSync(paths.reloadPending);
}

/** HAProxy was started with, or signalled to reload, the config on disk. */
export async function markConfigLoaded(paths: LbPaths): Promise<void> {
  await rm(paths.reloadPending, { force: true });
}

export function readOwner(paths: LbPaths): string | undefined {
  try {
    return readFileSync(paths.owner, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export async function deleteStateDir(paths: LbPaths): Promise<void> {
  await rm(paths.dir, { recursive: true, force: true });
}
