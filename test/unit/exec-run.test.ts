// The one command runner: argv only, stdin input, captured output, exit status, timeout, missing tools.
import { describe, expect, it } from 'vitest';
import { runCommand } from '../../src/exec/run.js';
import { CommandError } from '../../src/exec/errors.js';

describe('runCommand', () => {
  it('passes argv untouched (no shell) and returns stdout', async () => {
    const { stdout } = await runCommand(['printf', '%s|', 'a b', '$(id)', ';', '*']);
    expect(stdout).toBe('a b|$(id)|;|*|');
  });

  it('writes input to stdin', async () => {
    expect((await runCommand(['cat'], { input: 'line 1\nline 2\n' })).stdout).toBe('line 1\nline 2\n');
  });

  it('runs commands in the C locale', async () => {
    expect((await runCommand(['printenv', 'LC_ALL'])).stdout).toBe('C\n');
  });

  it('reports a non-zero exit with its code and the tail of stderr', async () => {
    const err = await runCommand(['ls', '/nonexistent-nslb-path']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).exitCode).toBe(2);
    expect((err as CommandError).message).toMatch(/^ls \/nonexistent-nslb-path exited 2: .*No such file/);
  });

  it('reports a tool that is not installed as failed to run, with ENOENT', async () => {
    const err = await runCommand(['nslb-no-such-tool', 'x']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).exitCode).toBeUndefined();
    expect((err as CommandError).message).toMatch(/failed to run.*ENOENT/);
  });

  it('kills a command that outlives its timeout', async () => {
    const err = await runCommand(['sleep', '30'], { timeoutMs: 100 }).catch((e: unknown) => e);
    expect((err as CommandError).message).toMatch(/timed out after 100 ms/);
  });

  it('a command exiting early does not fail on its unread input (EPIPE) but on its exit status', async () => {
    const err = await runCommand(['false'], { input: 'x'.repeat(1 << 20) }).catch((e: unknown) => e);
    expect((err as CommandError).exitCode).toBe(1);
  });

  it('detached: a failed foreground process still reports its whole stderr', async () => {
    const err = await runCommand(['ls', '/nonexistent-nslb-path'], { detached: true }).catch((e: unknown) => e);
    expect((err as CommandError).message).toMatch(/exited 2: .*No such file/);
  });

  it('detached: returns after the foreground process exits even if its daemon keeps stderr open', async () => {
    // `setsid -f` forks (the daemon keeps our stderr pipe) and its foreground process exits at once.
    await runCommand(['setsid', '-f', 'sleep', '31.517'], { detached: true });
    const { stdout } = await runCommand(['pgrep', '-f', '^sleep 31.517$']);
    expect(stdout.trim()).toMatch(/^\d+$/);
    process.kill(Number(stdout.trim()), 'SIGKILL');
  });
});
