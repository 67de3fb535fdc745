// The agent image in tests: built once per run by scripts/build-image.sh (its Debian layer is cached across
// runs), run by scripts/run-image.sh exactly as the chart's DaemonSet runs it, removed with podman.
import { readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, runCommand } from './harness.js';

export const PODMAN = ['podman', '--runtime', 'runc', '--cgroup-manager', 'cgroupfs'];

let built: Promise<string> | undefined;

/** nslb:<version>, built from this checkout (once per test process). */
export function buildImage(): Promise<string> {
  built ??= runCommand(['bash', join(REPO_ROOT, 'scripts', 'build-image.sh')], { timeoutMs: 15 * 60_000 }).then((r) => r.stdout.trim());
  return built;
}

/** Starts the image detached, as the DaemonSet does; returns the container id. */
export async function runImage(name: string, options: { kubeconfig?: string; args: string[] }): Promise<string> {
  const argv = ['bash', join(REPO_ROOT, 'scripts', 'run-image.sh'), '--name', name];
  if (options.kubeconfig !== undefined) argv.push('--kubeconfig', options.kubeconfig);
  const { stdout } = await runCommand([...argv, '--', ...options.args], { timeoutMs: 60_000 });
  return stdout.trim();
}

export async function containerLogs(name: string): Promise<string[]> {
  const { stdout, stderr } = await runCommand([...PODMAN, 'logs', name], { timeoutMs: 30_000 }).catch(() => ({ stdout: '', stderr: '' }));
  return `${stdout}\n${stderr}`.split('\n').filter((l) => l !== '');
}

/** `podman stop` (SIGTERM, as the kubelet sends) then `podman rm`: the container and its cgroup are gone. */
export async function removeContainer(name: string, options: { force?: boolean } = {}): Promise<void> {
  if (options.force === true) {
    await runCommand([...PODMAN, 'rm', '--force', '--time', '2', name], { timeoutMs: 60_000 }).catch(() => undefined);
    return;
  }
  await runCommand([...PODMAN, 'stop', '--time', '10', name], { timeoutMs: 60_000 });
  await runCommand([...PODMAN, 'rm', name], { timeoutMs: 60_000 });
}

/** Removes the (empty) cgroup `path` from every hierarchy of this host's cgroup tree. */
export async function removeCgroup(path: string): Promise<void> {
  const root = '/sys/fs/cgroup';
  const hierarchies = await readdir(root).catch(() => [] as string[]);
  for (const dir of [root, ...hierarchies.map((h) => join(root, h))]) await rmdir(join(dir, path)).catch(() => undefined);
}

/** The cgroup paths a process is in (`/proc/PID/cgroup`), one per hierarchy. */
export async function cgroupsOf(pid: number): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  return (await readFile(`/proc/${pid}/cgroup`, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(':').slice(2).join(':'));
}
