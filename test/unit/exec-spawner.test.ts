// The agent's commands started by its spawner process: same argv, output, stdin, errors and timeouts as started
// here, and a dead spawner does not lose later commands.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../src/exec/errors.js';
import { runCommand, useSpawner } from '../../src/exec/run.js';
import { startSpawner } from '../../src/exec/spawner.js';

// The spawner runs spawn.ts as the build leaves it (it imports nothing but node: modules).
const compiled = join(mkdtempSync(join(tmpdir(), 'nslb-spawn-')), 'spawn.mjs');
const source = readFileSync(new URL('../../src/exec/spawn.ts', import.meta.url), 'utf8');
writeFileSync(compiled, ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
const spawner = useSpawner({ script: pathToFileURL(compiled) });

describe('commands started by the spawner', () => {
  afterAll(() => {
    spawner?.kill('SIGKILL');
  });

  it('starts them in the spawner (their parent is the spawner)', async () => {
    expect(spawner?.pid).toBeGreaterThan(0);
    const { stdout } = await runCommand(['sh', '-c', 'echo $PPID']);
    expect(Number(stdout.trim())).toBe(spawner?.pid);
  });

  it('passes argv untouched (no shell) and returns stdout and stderr', async () => {
    expect((await runCommand(['printf', '%s|', 'a b', '$(id)', ';', '*'])).stdout).toBe('a b|$(id)|;|*|');
    expect((await runCommand(['sh', '-c', 'echo oops >&2'])).stderr).toBe('oops\n');
  });

  it('writes input to stdin', async () => {
    const input = `${'x'.repeat(200_000)}\nend\n`;
    expect((await runCommand(['cat'], { input })).stdout).toBe(input);
  });

  it('reports a non-zero exit with its code and stderr', async () => {
    const err = await runCommand(['ls', '/nonexistent-nslb-path']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).exitCode).toBe(2);
    expect((err as CommandError).message).toMatch(/exited 2: .*No such file/);
  });

  it('a process that fails to start: failed to run, with ENOENT kept on the cause', async () => {
    const err = await runCommand(['nslb-no-such-tool', 'x']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).exitCode).toBeUndefined();
    expect((err as CommandError).message).toMatch(/failed to run.*ENOENT/);
    expect(((err as CommandError).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('kills a command that outlives its timeout', async () => {
    const started = Date.now();
    const err = await runCommand(['sleep', '30'], { timeoutMs: 100 }).catch((e: unknown) => e);
    expect((err as CommandError).message).toMatch(/timed out after 100 ms/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('runs many at once', async () => {
    const outs = await Promise.all(Array.from({ length: 40 }, (_, i) => runCommand(['echo', String(i)])));
    expect(outs.map((o) => Number(o.stdout))).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it('a spawner that dies fails the command in flight, and later commands start here', async () => {
    const inFlight = runCommand(['sleep', '5']).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    spawner?.kill('SIGKILL');
    const err = await inFlight;
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toMatch(/spawner exited \(SIGKILL\) with the command in flight/);
    expect((await runCommand(['sh', '-c', 'echo $PPID'])).stdout.trim()).toBe(String(process.pid));
    expect((await runCommand(['cat'], { input: 'after\n' })).stdout).toBe('after\n');
  });

  it('a spawner that never comes up started nothing: its queued commands run here', async () => {
    const broken = join(mkdtempSync(join(tmpdir(), 'nslb-spawn-')), 'broken.mjs');
    writeFileSync(broken, 'process.exit(3);\n');
    let goneCalled = false;
    const s = startSpawner(() => {
      goneCalled = true;
    }, pathToFileURL(broken));
    const outcome = await s!.post({ file: 'sh', args: ['-c', 'echo $PPID'], options: {}, timeoutMs: 5_000 });
    expect(outcome.code).toBe(0);
    expect(outcome.stdout.trim()).toBe(String(process.pid));
    expect(goneCalled).toBe(true);
  });

  it('the spawner exits when the agent is gone (its IPC channel closed)', async () => {
    const s = startSpawner(() => undefined, pathToFileURL(compiled))!;
    await s.post({ file: 'true', args: [], options: {}, timeoutMs: 5_000 });
    const exited = new Promise<number | null>((r) => s.process.once('exit', (code) => r(code)));
    s.process.disconnect();
    expect(await exited).toBe(0);
  });
});
