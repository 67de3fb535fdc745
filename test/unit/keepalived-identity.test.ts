// isOurKeepalived (src/drivers/keepalived/keepalived.ts): a PID is this load balancer's keepalived while it is alive,
// its argv is keepalived's with that `-f` config, and it is the same process (start time) that was checked before.
// A stand-in process: `tail -f FILE` run with argv[0] "keepalived" (`exec -a`), whose argv reads as keepalived's.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { isOurKeepalived } from '../../src/drivers/keepalived/keepalived.js';
import { waitUntil } from '../../src/loop/wait.js';
import { processAlive } from '../../src/drivers/proc.js';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function standIn(argv0: string, config: string): number {
  const child = spawn('bash', ['-c', `exec -a ${argv0} tail -f ${config}`], { stdio: 'ignore' });
  children.push(child);
  if (child.pid === undefined) throw new Error('no pid');
  return child.pid;
}

describe('isOurKeepalived', () => {
  it('a live keepalived of this config, asked again and again; not of another config; not once it exits', async () => {
    const pid = standIn('keepalived', '/dev/null');
    // Until bash has exec'd, the PID's argv is bash's: not a keepalived (and that answer is not kept).
    expect(await waitUntil(() => isOurKeepalived(pid, '/dev/null'), { intervalMs: 10, timeoutMs: 5_000 })).toBe(true);
    for (let i = 0; i < 3; i++) expect(isOurKeepalived(pid, '/dev/null')).toBe(true);
    expect(isOurKeepalived(pid, '/etc/keepalived/other.conf')).toBe(false);
    children[0]!.kill('SIGKILL');
    await waitUntil(() => !processAlive(pid), { intervalMs: 10, timeoutMs: 5_000 });
    expect(isOurKeepalived(pid, '/dev/null')).toBe(false);
  });

  it('a process that is not keepalived is never ours, whatever its -f', async () => {
    const pid = standIn('haproxy', '/dev/null');
    await waitUntil(() => processAlive(pid), { intervalMs: 10, timeoutMs: 5_000 });
    await new Promise((r) => setTimeout(r, 100));
    expect(isOurKeepalived(pid, '/dev/null')).toBe(false);
  });
});
