// The runtime API client's timeout under a blocked event loop: an answer that arrived while the loop was busy is
// read before the timeout is judged (src/drivers/haproxy/runtime-api.ts). A busy agent (a drain at load average
// 30) otherwise called HAProxies that answered in time silent, and keepalived went to FAULT on both nodes.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { queryRuntime } from '../../src/drivers/haproxy/runtime-api.js';

function block(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // Busy: the event loop cannot run.
  }
}

describe('queryRuntime when the event loop was blocked', () => {
  let dir: string;
  let server: Server | undefined;
  const open = new Set<Socket>();
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nslb-rtapi-'));
  });
  afterEach(async () => {
    for (const c of open) c.destroy();
    open.clear();
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('reads an answer that came while the loop was blocked past the timeout, instead of timing out', async () => {
    const path = join(dir, 'haproxy.sock');
    server = createServer((c) => {
      open.add(c);
      c.on('data', () => {
        c.end('Name: HAProxy\nPid: 77\n');
        // The answer is on its way; the loop is held past the client's timeout before it can read it.
        block(300);
      });
    });
    await new Promise<void>((r) => server!.listen(path, r));
    await expect(queryRuntime(path, 'show info', 100)).resolves.toContain('Pid: 77');
  });

  it('still times out when no answer comes', async () => {
    const path = join(dir, 'haproxy.sock');
    server = createServer((c) => {
      // Never answers.
      open.add(c);
    });
    await new Promise<void>((r) => server!.listen(path, r));
    await expect(queryRuntime(path, 'show info', 100)).rejects.toThrow(/no complete answer/);
  });
});
