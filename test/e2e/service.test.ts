// The agent as a service (issue 8, item 2), on the real node: `nslb run --config FILE` with the flags in a file
// like deploy/nslb.env; SIGHUP (systemctl reload) applies a changed file live and refuses a broken one, keeping
// the flags in force; SIGTERM (systemctl stop, KillMode=process) leaves HAProxy serving, and a restarted agent
// adopts it without a single action. One story, in order.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeNames } from '../../src/desired/names.js';
import { httpGet, MemberHosts, runNslb, spawnNslb, uniqueRun, waitFor, type Host, type NslbProcess } from './harness.js';
import { killHaproxiesUnder } from './node-inventory.js';

const run = uniqueRun(15);
const BRIDGE = `br-${run.prefix}`;
const VIP = run.ip(10);
const NS = run.prefix;
const { netns: NETNS } = nodeNames(NS, 'web');

const root = join(tmpdir(), `nslb-e2e-${run.prefix}`);
const stateDir = join(root, 'state');
const watch = join(root, 'watch');
const configFile = join(root, 'nslb.env');
const lbDir = join(stateDir, 'lb', NETNS);

function manifest(weight: number): string {
  return `apiVersion: nslb.dev/v1alpha1
kind: LoadBalancer
metadata: { name: web, namespace: ${NS} }
spec: { vip: { address: ${VIP}, prefixLength: 24 } }
---
apiVersion: nslb.dev/v1alpha1
kind: Listener
metadata: { name: web-http, namespace: ${NS} }
spec: { loadBalancer: web, protocol: HTTP, port: 80, defaultPool: web-pool }
---
apiVersion: nslb.dev/v1alpha1
kind: Pool
metadata: { name: web-pool, namespace: ${NS} }
spec: { loadBalancer: web, protocol: HTTP, lbAlgorithm: ROUND_ROBIN }
---
apiVersion: nslb.dev/v1alpha1
kind: Member
metadata: { name: web-m1, namespace: ${NS} }
spec: { pool: web-pool, address: ${run.ip(11)}, port: 8080, weight: ${weight} }
`;
}

async function writeAtomically(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

/** The flags file, as deploy/nslb.env spells it; `extra` lines go last. */
async function writeConfig(values: Record<string, string>, extra: string[] = []): Promise<void> {
  const lines = [
    '# e2e flags file',
    `NSLB_WATCH=${watch}`,
    `NSLB_STATE_DIR="${stateDir}"`,
    `NSLB_BRIDGE=${BRIDGE}`,
    'NSLB_LISTEN=127.0.0.1:0',
    'NSLB_STATUS_INTERVAL=300',
    ...Object.entries(values).map(([k, v]) => `${k}=${v}`),
    ...extra,
  ];
  await writeAtomically(configFile, `${lines.join('\n')}\n`);
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** The agent's JSON log lines, from `from` on (an index into the lines). */
function logLines(agent: NslbProcess, from = 0): LogLine[] {
  const lines: LogLine[] = [];
  for (const l of agent.output().split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(l) as LogLine);
    } catch {
      // A line still being written.
    }
  }
  return lines.slice(from);
}

async function haproxyPid(): Promise<number> {
  return Number((await readFile(join(lbDir, 'haproxy.pid'), 'utf8')).trim());
}

async function haproxyConfig(): Promise<string> {
  return readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the agent as a service: --config, SIGHUP, SIGTERM', () => {
  const hosts = new MemberHosts(run, 1);
  let client: Host;
  let agent: NslbProcess | undefined;

  const serving = async (): Promise<boolean> => (await httpGet(client, `http://${VIP}/`, { timeoutMs: 1000 })).status === 200;
  const hup = (): void => void process.kill(agent!.pid, 'SIGHUP');
  const start = async (): Promise<NslbProcess> => {
    const a = spawnNslb(['run', '--config', configFile]);
    await waitFor(async () => logLines(a).some((l) => l.msg === 'initial sync done'), { timeoutMs: 20_000, message: 'agent did not sync' });
    return a;
  };

  beforeAll(async () => {
    client = (await hosts.create()).client;
    await rm(root, { recursive: true, force: true });
    await mkdir(watch, { recursive: true });
    await writeAtomically(join(watch, 'lb.yaml'), manifest(1));
  });

  afterAll(async () => {
    await agent?.stop().catch(() => {});
    await runNslb(['cleanup', '--scope', 'state-dir', '--state-dir', stateDir, '--bridge', BRIDGE]).catch(() => {});
    await killHaproxiesUnder(stateDir).catch(() => {});
    await hosts.remove();
    await rm(root, { recursive: true, force: true });
  });

  it('starts from the flags file alone and serves', async () => {
    // No resync during the story until SIGHUP asks for one: drift repair then proves the new period applies.
    await writeConfig({ NSLB_LOG_LEVEL: 'info', NSLB_RESYNC: '3600' });
    agent = await start();
    await waitFor(serving, { timeoutMs: 15_000, message: 'the VIP never answered' });
    const starting = logLines(agent).find((l) => l.msg === 'nslb starting');
    expect(starting).toMatchObject({ watch, stateDir, bridge: BRIDGE });
    expect(logLines(agent).some((l) => l.msg === 'applying')).toBe(true);
  });

  it('SIGHUP applies a changed file live: log level, resync period, concurrency; a restart-only flag is warned about', async () => {
    const mark = logLines(agent!).length;
    await writeConfig({ NSLB_LOG_LEVEL: 'warn', NSLB_RESYNC: '1', NSLB_CONCURRENCY: '2', NSLB_NODE_NAME: 'elsewhere' });
    hup();
    await waitFor(async () => logLines(agent!, mark).some((l) => l.msg === 'SIGHUP: reloaded --config'), { timeoutMs: 10_000, message: 'no reload line' });
    const reloaded = logLines(agent!, mark).find((l) => l.msg === 'SIGHUP: reloaded --config');
    expect(reloaded).toMatchObject({ changed: { '--log-level': 'warn', '--resync': 1, '--concurrency': 2 }, needRestart: ['--node-name'] });
    const warning = logLines(agent!, mark).find((l) => l.flag === '--node-name');
    expect(warning?.level).toBe(40);
    expect(warning?.msg).toContain(`NSLB_NODE_NAME changed in ${configFile}: --node-name cannot change while the agent runs; restart it`);

    // Log level warn: a change is applied, and its info line "applying" is not written.
    const afterReload = logLines(agent!).length;
    const before = await haproxyConfig();
    await writeAtomically(join(watch, 'lb.yaml'), manifest(3));
    await waitFor(async () => /server web-m1 .*weight 3/.test(await haproxyConfig()), { timeoutMs: 10_000, message: 'weight 3 never applied' });
    expect(await haproxyConfig()).not.toBe(before);

    // Resync every second: HAProxy killed by hand comes back with no file change at all (only a resync
    // repairs drift, and the period was an hour before SIGHUP).
    const pid = await haproxyPid();
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => (await haproxyPid().catch(() => pid)) !== pid && (await serving()), {
      timeoutMs: 20_000,
      message: 'HAProxy was not restarted: the new --resync did not apply',
    });
    expect(logLines(agent!, afterReload).filter((l) => l.msg === 'applying')).toEqual([]);
  });

  it('SIGHUP with a broken file is refused: the error names the file and line, the flags in force stay', async () => {
    const mark = logLines(agent!).length;
    // Valid lines first: none of them may apply when one line is wrong.
    await writeConfig({ NSLB_LOG_LEVEL: 'debug', NSLB_RESYNC: '1' }, ['NSLB_CONCURRENCY=lots']);
    hup();
    await waitFor(async () => logLines(agent!, mark).some((l) => l.msg.includes('invalid')), { timeoutMs: 10_000, message: 'no refusal line' });
    const refusal = logLines(agent!, mark).find((l) => l.msg.includes('invalid'));
    expect(refusal?.level).toBe(50);
    expect(refusal?.msg).toBe('SIGHUP: the --config file is invalid; keeping the flags in force');
    // The broken line is the last of the file: a comment, 5 fixed lines, 2 values, then it.
    expect(refusal?.err).toBe(`${configFile}:9: NSLB_CONCURRENCY: --concurrency must be a positive integer (got "lots")`);

    // Still at warn, not debug: another change applies without an info or debug line about it.
    await writeAtomically(join(watch, 'lb.yaml'), manifest(4));
    await waitFor(async () => /server web-m1 .*weight 4/.test(await haproxyConfig()), { timeoutMs: 10_000, message: 'weight 4 never applied' });
    expect(logLines(agent!, mark).filter((l) => l.level < 40)).toEqual([]);
    expect(alive(agent!.pid)).toBe(true);
  });

  it('SIGHUP with the file fixed applies it: info lines are back', async () => {
    const mark = logLines(agent!).length;
    await writeConfig({ NSLB_LOG_LEVEL: 'info', NSLB_RESYNC: '3', NSLB_CONCURRENCY: '3' });
    hup();
    await waitFor(async () => logLines(agent!, mark).some((l) => l.msg === 'SIGHUP: reloaded --config'), { timeoutMs: 10_000, message: 'no reload line' });
    expect(logLines(agent!, mark).find((l) => l.msg === 'SIGHUP: reloaded --config')).toMatchObject({
      changed: { '--log-level': 'info', '--resync': 3, '--concurrency': 3 },
      needRestart: [],
    });
    await writeAtomically(join(watch, 'lb.yaml'), manifest(1));
    await waitFor(async () => logLines(agent!, mark).some((l) => l.msg === 'applying'), { timeoutMs: 10_000, message: 'no applying line at info' });
  });

  it('SIGTERM stops the agent and leaves HAProxy serving; a restarted agent adopts it with zero actions', async () => {
    await waitFor(serving, { timeoutMs: 10_000, message: 'not serving before stop' });
    const pid = await haproxyPid();
    await agent!.stop();
    expect(agent!.exited()).toBe(true);
    expect(logLines(agent!).some((l) => l.msg === 'stopping; load balancers keep serving')).toBe(true);
    agent = undefined;

    // The agent is gone: the same HAProxy answers.
    for (let i = 0; i < 5; i++) {
      const r = await httpGet(client, `http://${VIP}/`);
      expect(r.status).toBe(200);
      expect(r.body.trim()).toBe('member m1');
    }
    expect(alive(pid)).toBe(true);
    expect(await haproxyPid()).toBe(pid);

    agent = await start();
    expect(logLines(agent).filter((l) => l.msg === 'applying')).toEqual([]);
    expect(await haproxyPid()).toBe(pid);
    expect(await serving()).toBe(true);
  });

  it('SIGHUP to an agent without --config changes nothing and does not stop it', async () => {
    const other = join(root, 'other');
    await mkdir(join(other, 'watch'), { recursive: true });
    const a = spawnNslb(['run', '--watch', join(other, 'watch'), '--state-dir', join(other, 'state'), '--bridge', BRIDGE, '--listen', '127.0.0.1:0']);
    try {
      await waitFor(async () => logLines(a).some((l) => l.msg === 'initial sync done'), { timeoutMs: 20_000, message: 'agent did not sync' });
      process.kill(a.pid, 'SIGHUP');
      await waitFor(async () => logLines(a).some((l) => l.msg === 'SIGHUP: this agent has no --config file; flags unchanged'), {
        timeoutMs: 10_000,
        message: 'no SIGHUP line',
      });
      expect(a.exited()).toBe(false);
    } finally {
      await a.stop();
    }
  });
});
