// Issue 6 items 6 and 8. Empty or vanished input is not a mass delete: when the watched directory disappears,
// is renamed away, turns into a file or a dangling symlink, or every manifest in it fails to parse at once,
// nothing is torn down (same HAProxy, same config, traffic flows, even across resyncs) and status.json says
// why; the condition clears when the input comes back. Really removing the files still deletes.
// Permissions: the state dir is 0700, configs, the runtime socket, keys and the lock 0600, and a TLS run's
// private key appears nowhere in the agent's log, status.json, `nslb plan` or `nslb status`.
import { chmod, mkdir, readdir, readFile, rename, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, cli } from './agent.js';
import { createTestPki, httpGet, listNetns, waitFor, type Host, type TestPki } from './harness.js';
import { killHaproxiesUnder } from './node-inventory.js';
import { listener, loadBalancer, member, ParityEnv, pool, sleep, type ApiDoc } from './parity-env.js';

const env = ParityEnv.create(5);
const RESYNC_S = 2;
const SOURCE_ERROR = /cannot read the watched directory .*nothing is torn down, the last valid snapshot stays in force/;

describe('input safety and permissions (issue 6 items 6 and 8)', () => {
  let m1: Host, client: Host;
  let pki: TestPki;
  let VIP = '';
  let lbDir = '';
  let pid = 0;
  let config = '';
  let keyPem = '';
  const files = new Map<string, string | Buffer>();
  /** Every agent this file ran, for the whole log. */
  const agents: Agent[] = [];

  const docsLb = (): ApiDoc[] => [
    loadBalancer('web', { vip: { address: VIP, prefixLength: 24 } }),
    listener('web-http', { loadBalancer: 'web', protocol: 'HTTP', port: 80, defaultPool: 'web-p' }),
    pool('web-p', { loadBalancer: 'web', protocol: 'HTTP', lbAlgorithm: 'ROUND_ROBIN' }),
    member('web-m1', { pool: 'web-p', address: m1.address, port: 8080 }),
  ];
  const docsTls = (): ApiDoc[] => [
    listener('web-tls', {
      loadBalancer: 'web',
      protocol: 'TERMINATED_HTTPS',
      port: 443,
      defaultPool: 'web-p',
      tls: { certificateFile: 'certs/www.pem', keyFile: 'certs/www.key' },
    }),
  ];

  /** Writes every file of the good checkout into the watched directory (which must exist). */
  async function restoreCheckout(): Promise<void> {
    await env.apply('lb.yaml', docsLb());
    await env.apply('tls.yaml', docsTls());
    for (const [path, content] of files) await env.writeWatched(path, content);
  }

  const haproxyPid = async (): Promise<number> => Number((await readFile(join(lbDir, 'haproxy.pid'), 'utf8')).trim());

  /** Both listeners answer, and the very same HAProxy runs the very same config. */
  async function untouched(what: string): Promise<void> {
    expect((await httpGet(client, `http://${VIP}/`, { timeoutMs: 2_000 })).status, `${what}: HTTP`).toBe(200);
    expect((await httpGet(client, `https://${VIP}/`, { timeoutMs: 2_000, curlArgs: ['-k'] })).status, `${what}: HTTPS`).toBe(200);
    expect(await haproxyPid(), `${what}: HAProxy pid`).toBe(pid);
    expect(await readFile(join(lbDir, 'haproxy.cfg'), 'utf8'), `${what}: config`).toBe(config);
    expect(await listNetns(), `${what}: netns`).toContain(env.netnsOf('web'));
    const lb = (await env.status())?.objects.find((o) => o.kind === 'LoadBalancer' && o.name === 'web');
    expect(lb?.status.provisioningStatus, `${what}: status`).toBe('ACTIVE');
  }

  const statusErrors = async () => (await env.status())?.errors ?? [];

  /** Does `fault`, waits for status.json to report `reported`, checks nothing moved across two resyncs. */
  async function nothingTornDown(what: string, fault: () => Promise<void>, reported: (errors: { file: string; message: string }[]) => boolean): Promise<void> {
    const applying = env.agent!.logs.filter((l) => l.includes('"applying"')).length;
    await fault();
    await waitFor(async () => reported(await statusErrors()), { timeoutMs: 10_000, message: `${what}: reported in status.json` }).catch(
      async (error: unknown) => {
        throw new Error(`${(error as Error).message}; errors: ${JSON.stringify(await statusErrors())}`, { cause: error });
      },
    );
    await untouched(what);
    await sleep(2 * RESYNC_S * 1000 + 500); // resyncs re-read the input: they must not act on it either
    await untouched(`${what}, after two resyncs`);
    expect(reported(await statusErrors()), `${what}: still reported`).toBe(true);
    expect(env.agent!.logs.filter((l) => l.includes('"applying"')).length, `${what}: the agent changed something`).toBe(applying);
  }

  async function clears(what: string, restore: () => Promise<void>): Promise<void> {
    await restore();
    await waitFor(async () => (await statusErrors()).length === 0, { timeoutMs: 10_000, message: `${what}: error cleared` }).catch(async (error: unknown) => {
      throw new Error(`${(error as Error).message}; errors: ${JSON.stringify(await statusErrors())}`, { cause: error });
    });
    await untouched(`${what}, restored`);
  }

  beforeAll(async () => {
    await env.start({ resync: RESYNC_S });
    agents.push(env.agent!);
    VIP = env.vip(1);
    lbDir = env.lbDir('web');
    m1 = await env.host('m1', 11);
    client = await env.host('c', 100);
    await env.server(m1, { port: 8080, name: 'm1' });
    pki = await createTestPki(join(env.root, 'pki'), [{ name: 'www.example.test', dnsNames: ['www.example.test'] }]);
    const leaf = pki.leaves.get('www.example.test')!;
    keyPem = await readFile(leaf.keyFile, 'utf8');
    files.set('certs/www.pem', await readFile(leaf.certFile));
    files.set('certs/www.key', keyPem);
    for (const [path, content] of files) await env.writeWatched(path, content);
    await env.apply('lb.yaml', docsLb());
    await env.apply('tls.yaml', docsTls());
    await env.waitForActive(['LoadBalancer/web', 'Listener/web-http', 'Listener/web-tls', 'Member/web-m1']);
    await env.waitForResponse(client, `https://${VIP}/`, ['LoadBalancer/web', 'Listener/web-tls'], { curlArgs: ['-k'], body: 'm1' });
    pid = await haproxyPid();
    config = await readFile(join(lbDir, 'haproxy.cfg'), 'utf8');
  });

  afterAll(async () => {
    await env.cleanup();
    await killHaproxiesUnder(env.stateDir).catch(() => {});
  });

  const sourceError = (errors: { file: string; message: string }[]) => errors.some((e) => e.file === '.' && SOURCE_ERROR.test(e.message));

  it('the watched directory deleted: nothing torn down, reported; it comes back: cleared', async () => {
    await nothingTornDown('directory deleted', () => rm(env.watchDir, { recursive: true, force: true }), sourceError);
    await clears('directory recreated', async () => {
      await mkdir(env.watchDir, { recursive: true });
      await restoreCheckout();
    });
  });

  it('a directory that comes back is watched again: an edit applies at once, not at the next resync', async () => {
    // An agent whose resync is a minute away: only the file watcher can apply the edit in time.
    expect(await env.agent!.stop()).toBe(0);
    const slow = new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: 60 });
    env.agent = slow;
    agents.push(slow);
    await waitFor(() => slow.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 10_000, message: 'agent restarted' });
    await rm(env.watchDir, { recursive: true, force: true });
    await waitFor(async () => sourceError(await statusErrors()), { timeoutMs: 10_000, message: 'deletion reported' });
    await clears('directory recreated', async () => {
      await mkdir(env.watchDir, { recursive: true });
      await restoreCheckout();
    });
    // Counted from here: restoring the checkout writes its files one by one, and on a loaded machine the
    // watcher may see (and apply) a state between two of them, as it would with a checkout that is not atomic.
    const from = slow.logs.length;
    await env.apply('lb.yaml', [...docsLb(), member('web-m2', { pool: 'web-p', address: env.run.ip(12), port: 8080 })]);
    await waitFor(async () => (await readFile(join(lbDir, 'haproxy.cfg'), 'utf8')).includes('web-m2'), {
      timeoutMs: 5_000,
      message: 'an edit after the directory came back to be applied (by the watcher: the resync is 60 s away)',
    });
    await env.apply('lb.yaml', docsLb());
    await waitFor(async () => (await readFile(join(lbDir, 'haproxy.cfg'), 'utf8')) === config, { timeoutMs: 5_000, message: 'edit reverted' });
    expect(slow.logs.slice(from).filter((l) => l.includes('"applying"'))).toHaveLength(2); // the edit and its revert, nothing else
    expect(await slow.stop()).toBe(0);
    env.agent = new Agent({ watch: env.watchDir, stateDir: env.stateDir, bridge: env.bridge, resync: RESYNC_S });
    agents.push(env.agent);
    await waitFor(() => env.agent!.logs.some((l) => l.includes('initial sync done')), { timeoutMs: 10_000, message: 'agent restarted' });
  });

  it('the watched directory renamed away: nothing torn down, reported; renamed back: cleared', async () => {
    const away = `${env.watchDir}.away`;
    await nothingTornDown('directory renamed away', () => rename(env.watchDir, away), sourceError);
    await clears('directory renamed back', () => rename(away, env.watchDir));
  });

  it('the watched path turned into a file, or into a dangling symlink: nothing torn down, reported; cleared when it is a directory again', async () => {
    const kept = `${env.watchDir}.kept`;
    await rename(env.watchDir, kept);
    await nothingTornDown('watched path is a file', () => writeFile(env.watchDir, 'not a directory\n'), sourceError);
    await rm(env.watchDir);
    await nothingTornDown('watched path is a dangling symlink', () => symlink(join(env.root, 'no-such-checkout'), env.watchDir), sourceError);
    await clears('a directory again', async () => {
      await rm(env.watchDir);
      await rename(kept, env.watchDir);
    });
  });

  it('every manifest fails to parse at once: nothing torn down, each file reported; fixing them clears it', async () => {
    await nothingTornDown(
      'every manifest garbage',
      async () => {
        await env.writeWatched('lb.yaml', 'kind: [this is not\n  : valid yaml\n');
        await env.writeWatched('tls.yaml', '\u0000\u0001 garbage {{{\n');
      },
      (errors) => ['lb.yaml', 'tls.yaml'].every((f) => errors.some((e) => e.file === f)),
    );
    await clears('manifests fixed', restoreCheckout);
  });

  it('a manifest rewritten in place, or re-created as git does, is not read as empty: nothing torn down', async () => {
    const agent = env.agent!;
    const from = agent.logs.length;
    const path = join(env.watchDir, 'lb.yaml');
    const text = await readFile(path);
    // `cat > lb.yaml` from a writer that stalls for 50 ms: the agent reads the file while it is empty.
    await truncate(path, 0);
    await sleep(50);
    await writeFile(path, text);
    // git checkout: unlinked, created empty (O_CREAT|O_EXCL), written.
    await sleep(100);
    await rm(path);
    await writeFile(path, '', { flag: 'wx' });
    await sleep(50);
    await writeFile(path, text);
    await sleep(1_000 + 2 * RESYNC_S * 1000 + 500); // past the second the file is held, and two resyncs
    await untouched('rewritten in place');
    const logs = agent.logs.slice(from);
    // The reads did land while the file was empty (or the test would prove nothing), and changed nothing.
    expect(logs.filter((l) => l.includes('would remove objects')).length, 'empty reads held').toBeGreaterThanOrEqual(1);
    expect(logs.filter((l) => l.includes('"applying"'))).toEqual([]);
  });

  it('permissions: state dir 0700; config, socket, certificates, owner and lock 0600', async () => {
    const mode = async (path: string) => (await stat(path)).mode & 0o777;
    expect(await mode(env.stateDir)).toBe(0o700);
    expect(await mode(join(env.stateDir, 'lb'))).toBe(0o700);
    expect(await mode(lbDir)).toBe(0o700);
    expect(await mode(join(lbDir, 'haproxy.cfg'))).toBe(0o600);
    expect(await mode(join(lbDir, 'haproxy.sock'))).toBe(0o600);
    expect(await mode(join(lbDir, 'owner'))).toBe(0o600);
    expect(await mode(join(env.stateDir, 'agent.lock'))).toBe(0o600);
    expect(await mode(join(lbDir, 'certs'))).toBe(0o700);
    const pems = (await readdir(join(lbDir, 'certs'))).filter((f) => f.endsWith('.pem'));
    expect(pems.length).toBeGreaterThan(0);
    for (const f of pems) expect(await mode(join(lbDir, 'certs', f)), f).toBe(0o600);
    // The key really is in there (so the check above is about the right file).
    const bundles = await Promise.all(pems.map((f) => readFile(join(lbDir, 'certs', f), 'utf8')));
    expect(bundles.some((b) => b.includes(keyBody()[0]!))).toBe(true);

    // A config rewritten by a later change keeps 0600 even if someone loosened it by hand.
    await chmod(join(lbDir, 'haproxy.cfg'), 0o644);
    await env.apply('lb.yaml', [...docsLb(), member('web-m2', { pool: 'web-p', address: env.run.ip(12), port: 8080 })]);
    await waitFor(async () => (await readFile(join(lbDir, 'haproxy.cfg'), 'utf8')).includes('web-m2'), { timeoutMs: 10_000, message: 'member added' });
    expect(await mode(join(lbDir, 'haproxy.cfg'))).toBe(0o600);
  });

  /** The private key's base64 lines (64 characters each, the last maybe shorter). */
  function keyBody(): string[] {
    return keyPem
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('-----'));
  }

  it('no secret in the log (debug level), status.json, `nslb plan` or `nslb status`', async () => {
    const body = keyBody();
    expect(body.length).toBeGreaterThan(0);
    const joined = body.join('');
    const leaks = (text: string) => text.includes(joined) || body.some((line) => line.length >= 16 && text.includes(line));

    const log = agents.flatMap((a) => a.logs).join('\n');
    expect(log.length).toBeGreaterThan(1000);
    expect(log).toMatch(/haproxy write .*certificates/); // the log does talk about the certificate files
    expect(leaks(log), 'agent log').toBe(false);
    expect(leaks(await readFile(join(env.stateDir, 'status.json'), 'utf8')), 'status.json').toBe(false);
    const plan = await cli(['plan', '--watch', env.watchDir, '--state-dir', env.stateDir, '--bridge', env.bridge]);
    expect(leaks(plan.stdout + plan.stderr), 'nslb plan').toBe(false);
    for (const output of ['table', 'json', 'yaml']) {
      const status = await cli(['status', '-o', output, '--state-dir', env.stateDir]);
      expect(status.code).toBe(0);
      expect(leaks(status.stdout + status.stderr), `nslb status -o ${output}`).toBe(false);
    }
    // A key change is applied (a new certificate file, named by its hash) and still never logged.
    const other = await createTestPki(join(env.root, 'pki2'), [{ name: 'www.example.test', dnsNames: ['www.example.test'] }]);
    const leaf = other.leaves.get('www.example.test')!;
    const newKey = await readFile(leaf.keyFile, 'utf8');
    await env.writeWatched('certs/www.pem', await readFile(leaf.certFile));
    await env.writeWatched('certs/www.key', newKey);
    const from = env.agent!.logs.length;
    await waitFor(() => env.agent!.logs.slice(from).some((l) => l.includes('"converged"')), { timeoutMs: 10_000, message: 'new key applied' });
    const newBody = newKey.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('-----'));
    const allLogs = agents.flatMap((a) => a.logs).join('\n');
    expect(newBody.some((l) => allLogs.includes(l.trim()))).toBe(false);
  });

  it('really removing the files still deletes the load balancer', async () => {
    await rm(join(env.watchDir, 'lb.yaml'));
    await rm(join(env.watchDir, 'tls.yaml'));
    await waitFor(
      async () =>
        !(await stat(lbDir).then(
          () => true,
          () => false,
        )),
      { timeoutMs: 10_000, message: 'state dir removed' },
    );
    expect(await listNetns()).not.toContain(env.netnsOf('web'));
    expect((await httpGet(client, `http://${VIP}/`, { timeoutMs: 1_000 })).status).toBe(0);
    expect(await statusErrors()).toEqual([]);
    expect((await env.status())?.objects.filter((o) => o.name.startsWith('web'))).toEqual([]);
  });
});
