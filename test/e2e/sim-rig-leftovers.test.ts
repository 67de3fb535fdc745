// The rig's leftovers (test/e2e/sim-rig.ts assertNoRig): a rig whose test process died is taken down by the next
// run, and with it the member and client namespaces that process made on the provider segment (they are this
// machine's, not the rig's, and `sim-cluster.sh down` leaves them). A rig directory of its own (NSLB_SIM_DIR) with
// nothing but the dead owner's record and one namespace it made: no node is booted.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCommand } from './harness.js';

const dir = join(mkdtempSync(join(tmpdir(), 'nslb-sim-leftovers-')), 'sim');
process.env.NSLB_SIM_DIR = dir;
const { assertNoRig } = await import('./sim-rig.js');

const NAME = `nslbt${process.pid % 100_000}m1`;

afterAll(async () => {
  await runCommand(['ip', 'link', 'del', 'dev', `${NAME}-h`], { allowFailure: true });
  await runCommand(['ip', 'netns', 'del', NAME], { allowFailure: true });
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

async function deadPid(): Promise<number> {
  const r = await runCommand(['sh', '-c', 'echo $$']);
  return Number(r.stdout.trim());
}

describe('a rig left by a dead test process', () => {
  it('is taken down with the provider hosts that process made', async () => {
    await runCommand(['ip', 'netns', 'add', NAME]);
    await runCommand(['ip', 'link', 'add', `${NAME}-h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NAME]);
    mkdirSync(join(dir, 'config'), { recursive: true });
    writeFileSync(join(dir, 'config', 'owner-pid'), `${await deadPid()}\n`);
    writeFileSync(join(dir, 'config', 'provider-hosts'), `${NAME}\n`);

    await assertNoRig();

    expect(existsSync(`/run/netns/${NAME}`)).toBe(false);
    expect((await runCommand(['ip', 'link', 'show', 'dev', `${NAME}-h`], { allowFailure: true })).exitCode).not.toBe(0);
    expect(existsSync(join(dir, 'config'))).toBe(false);
  });
});
