// The state-dir lock (src/controller/lock.ts): a stale lock whose PID now names a thread of the new agent is
// taken over. Seen when a node boots again (a simulated node's fresh PID namespace, a real reboot): the old
// agent's PID came back as a thread of the new one, and /proc/TID answers with the agent's command line.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const AGENT_LIKE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'lock-agent', 'main.js');

describe('lockStateDir', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('takes over a lock naming a thread of the agent itself', async () => {
    dir = await mkdtemp(join(tmpdir(), 'nslb-lock-'));
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', AGENT_LIKE, 'run', dir]);
    expect(stdout).toMatch(/^taken over from thread \d+/);
  });
});
