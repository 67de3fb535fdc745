// The agent's commands started from a worker thread: same argv, output, stdin, errors and timeouts as on the main
// thread, and a dead worker does not lose later commands.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../src/exec/errors.js';
import { runCommand, useSpawnWorker } from '../../src/exec/run.js';

// The worker runs spawn.ts as the build leaves it (it imports nothing but node: modules).
const compiled = join(mkdtempSync(join(tmpdir(), 'nslb-spawn-')), 'spawn.mjs');
const source = readFileSync(new URL('../../src/exec/spawn.ts', import.meta.url), 'utf8');
writeFileSync(compiled, ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
const thread = useSpawnWorker({ script: pathToFileURL(compiled) });

describe('commands on the spawn worker', () => {
  afterAll(async () => {
    await thread?.terminate();
  });

  it('runs on the worker (the worker is there)', async () => {
    expect(thread).toBeDefined();
    expect(thread?.threadId).toBeGreaterThan(0);
    // A command's parent is the agent's process whichever thread started it: ask for our own pid.
    const { stdout } = await runCommand(['sh', '-c', 'echo $PPID']);
    expect(Number(stdout.trim())).toBe(process.pid);
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

  it('a worker that dies fails the command in flight, and later commands run on this thread', async () => {
    const inFlight = runCommand(['sleep', '5']).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    await thread?.terminate();
    const err = await inFlight;
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toMatch(/spawn worker exited/);
    expect((await runCommand(['sh', '-c', 'echo $PPID'])).stdout.trim()).toBe(String(process.pid));
    expect((await runCommand(['cat'], { input: 'after\n' })).stdout).toBe('after\n');
  });
});
