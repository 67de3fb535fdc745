// `show stat` parsing against output captured from HAProxy 2.6, the runtime socket client against a fake
// socket, and both together against a real HAProxy on host loopback running a config nslb rendered.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { queryRuntime, queryRuntimeAll, RuntimeApiError } from '../../src/drivers/haproxy/runtime-api.js';
import { parseShowPeers } from '../../src/plan/haproxy-peers.js';
import { parseShowStat, ShowStatError, type StatRow } from '../../src/plan/haproxy-stats.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import { operatingStatuses } from '../../src/status/aggregate.js';
import { listener, loadBalancer, member, monitor, pool } from '../support/desired-lb.js';

const captured = readFileSync(new URL('./fixtures/haproxy/show-stat-2.6.csv', import.meta.url), 'utf8');

function row(rows: StatRow[], pxname: string, svname: string): StatRow | undefined {
  return rows.find((r) => r.pxname === pxname && r.svname === svname);
}

describe('parseShowStat on captured HAProxy 2.6 output', () => {
  const rows = parseShowStat(captured);

  it('reads every proxy and server row and nothing else', () => {
    expect(rows).toHaveLength(16);
    expect(rows.filter((r) => r.type === 'frontend').map((r) => r.pxname)).toEqual(['listener.full', 'listener.web']);
    expect(rows.filter((r) => r.type === 'backend').map((r) => r.pxname)).toEqual(['pool.plain', 'pool.slow', 'pool.web']);
  });

  it.each<[string, string, Partial<StatRow>]>([
    ['listener.full', 'FRONTEND', { status: 'OPEN', type: 'frontend', sessions: 1, sessionLimit: 1 }],
    ['pool.plain', 'plain', { status: 'no check', weight: 1, type: 'server' }],
    ['pool.plain', 'BACKEND', { status: 'UP', weight: 1, type: 'backend' }],
    ['pool.slow', 'going-down', { status: 'DOWN', weight: 1, checkStatus: 'L4CON', type: 'server' }],
    ['pool.slow', 'going-up', { status: 'DOWN 1/3', checkStatus: 'L7OK' }],
    ['pool.slow', 'up', { status: 'UP 1/3', checkStatus: 'L4CON' }],
    ['pool.slow', 'up-drained', { status: 'DRAIN 1/3' }],
    ['pool.web', 'drain', { status: 'DOWN', weight: 0 }],
    ['pool.web', 'maint', { status: 'MAINT', weight: 1 }],
  ])('%s/%s', (px, sv, expected) => {
    expect(row(rows, px, sv)).toMatchObject(expected);
  });

  it('reads traffic counters and what the last check found', () => {
    expect(row(rows, 'listener.full', 'FRONTEND')).toMatchObject({ sessions: 1, totalSessions: 1, bytesIn: 0, bytesOut: 0 });
    expect(row(rows, 'pool.plain', 'plain')).toMatchObject({ sessions: 1, totalSessions: 1, bytesIn: 0, bytesOut: 0 });
    expect(row(rows, 'pool.slow', 'going-down')).toMatchObject({
      checkStatus: 'L4CON',
      checkDescription: 'Layer4 connection problem',
      lastCheck: 'Connection refused',
    });
    expect(row(rows, 'pool.slow', 'going-up')).toMatchObject({ checkStatus: 'L7OK', checkDescription: 'Layer7 check passed' });
    expect(row(rows, 'pool.slow', 'going-up')).not.toHaveProperty('lastCheck');
  });

  it('leaves checkStatus out where no check runs', () => {
    expect(row(rows, 'pool.web', 'maint')).not.toHaveProperty('checkStatus');
    expect(row(rows, 'pool.plain', 'plain')).not.toHaveProperty('checkStatus');
  });
});

describe('parseShowStat edge cases', () => {
  it('finds columns by name, unquotes fields and accepts CRLF', () => {
    const csv =
      '# type,status,svname,pxname,check_status,weight,check_desc,\r\n' +
      '2,UP,"a,b",pool.x,L7OK,3,"said ""hi"", twice",\r\n' +
      '0,OPEN,FRONTEND,listener.y,,,,\r\n';
    expect(parseShowStat(csv)).toEqual([
      { pxname: 'pool.x', svname: 'a,b', status: 'UP', weight: 3, checkStatus: 'L7OK', checkDescription: 'said "hi", twice', type: 'server' },
      { pxname: 'listener.y', svname: 'FRONTEND', status: 'OPEN', type: 'frontend' },
    ]);
  });

  it('reads listener rows and skips unknown types and blank lines', () => {
    const csv = '# pxname,svname,status,type,\n\nlistener.y,sock-1,OPEN,3,\nx,y,z,7,\n\n';
    expect(parseShowStat(csv)).toEqual([{ pxname: 'listener.y', svname: 'sock-1', status: 'OPEN', type: 'listener' }]);
  });

  it('a check running now ("* L7OK") reads as the last finished one (L7OK)', () => {
    const csv = '# pxname,svname,status,type,check_status,\nb,m1,UP,2,* L7OK,\nb,m2,DOWN,2,* L4CON,\n';
    expect(parseShowStat(csv).map((r) => r.checkStatus)).toEqual(['L7OK', 'L4CON']);
  });

  it('a line without quotes (read column by column) and the same line quoted (split whole) read the same', () => {
    // Every field of every captured data line quoted: the full split's path; as captured: the column picker's.
    const quoteAll = (line: string): string =>
      line === '' || line.startsWith('#')
        ? line
        : line
            .split(',')
            .map((f) => `"${f}"`)
            .join(',');
    const quoted = captured.split('\n').map(quoteAll).join('\n');
    expect(quoted).not.toEqual(captured);
    expect(parseShowStat(quoted)).toEqual(parseShowStat(captured));
    // A wanted column last on its line, without a trailing comma; a line shorter than the header.
    expect(parseShowStat('# pxname,svname,type,status\np,s,2,UP\nq,t,2\n')).toEqual([
      { pxname: 'p', svname: 's', status: 'UP', type: 'server' },
      { pxname: 'q', svname: 't', status: '', type: 'server' },
    ]);
  });

  it('returns no rows for a header alone', () => {
    expect(parseShowStat('# pxname,svname,status,type,\n')).toEqual([]);
  });

  it.each([
    ['an error message', 'Unknown command. Please enter one of the following commands only :\n'],
    ['nothing', ''],
    ['a header without the needed columns', '# pxname,svname,qcur,\n'],
  ])('throws on %s', (_what, csv) => {
    expect(() => parseShowStat(csv)).toThrow(ShowStatError);
  });
});

describe('queryRuntime', () => {
  let dir: string;
  let server: Server | undefined;
  const held: Socket[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nslb-runtime-'));
  });
  afterEach(async () => {
    for (const s of held.splice(0)) s.destroy();
    const s = server;
    server = undefined;
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function fakeSocket(name: string, onLine: (line: string, socket: Socket) => void): Promise<string> {
    const path = join(dir, name);
    server = createServer((socket) => {
      held.push(socket);
      let buf = '';
      socket.on('data', (d: Buffer) => {
        buf += d.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0) onLine(buf.slice(0, nl), socket);
      });
    });
    const s = server;
    await new Promise<void>((resolve) => s.listen(path, resolve));
    return path;
  }

  it('sends one line and returns everything until the server closes', async () => {
    const path = await fakeSocket('ok.sock', (line, socket) => {
      socket.write(`you said: ${line}\n`);
      setTimeout(() => socket.end('second chunk\n\n'), 20);
    });
    await expect(queryRuntime(path, 'show stat')).resolves.toBe('you said: show stat\nsecond chunk\n\n');
  });

  it('rejects when the answer does not end in time', async () => {
    const path = await fakeSocket('slow.sock', (_line, socket) => socket.write('partial'));
    const err = await queryRuntime(path, 'show stat', 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeApiError);
    expect((err as RuntimeApiError).message).toMatch(/within 100 ms/);
    expect((err as RuntimeApiError).socketPath).toBe(path);
  });

  it('several commands go on one line, separated by ;, in one connection; a ; inside one is refused', async () => {
    const lines: string[] = [];
    const path = await fakeSocket('many.sock', (line, socket) => {
      lines.push(line);
      socket.end(`answers to ${line}\n`);
    });
    await expect(queryRuntimeAll(path, ['show stat', 'show peers'])).resolves.toBe('answers to show stat;show peers\n');
    expect(lines).toEqual(['show stat;show peers']);
    await expect(queryRuntimeAll(path, ['show stat', 'show peers;shutdown sessions'])).rejects.toBeInstanceOf(RuntimeApiError);
    expect(lines).toHaveLength(1);
  });

  it('the answers to `show stat;show peers` one after the other: each parser reads its own', () => {
    const peers = [
      '0x55d0c7a4f0a0: [04/Dec/2026:18:00:00] id=nslb disabled=0 flags=0x6213 resync_timeout=<PAST> task_calls=6',
      '  1 remote peers:',
      '    0x55d0c7a51c20: id=node2(remote,active) addr=192.0.2.3:1025 last_status=ESTA last_hdshk=2s',
      '        reconnect=3s heartbeat=2s confirm=0 tx_hbt=1 rx_hbt=1 no_hbt=0 new_conn=1 proto_err=0 coll=0',
      '    0x55d0c7a51f00: id=node1(local,inactive) addr=192.0.2.2:1025 last_status=NONE last_hdshk=<NEVER>',
      '',
    ].join('\n');
    const both = `${captured}\n${peers}\n`;
    expect(parseShowStat(both)).toEqual(parseShowStat(captured));
    expect(parseShowPeers(both)).toEqual([{ name: 'node2', established: true }]);
  });

  it('rejects when nothing listens', async () => {
    const err = await queryRuntime(join(dir, 'absent.sock'), 'show stat').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeApiError);
    expect((err as RuntimeApiError).cause).toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a command that would smuggle a second one', async () => {
    await expect(queryRuntime(join(dir, 'x.sock'), 'show stat\nshutdown frontend x')).rejects.toThrow(RuntimeApiError);
    await expect(queryRuntime(join(dir, 'x.sock'), 'show stat; shutdown frontend x')).rejects.toThrow(RuntimeApiError);
  });
});

// A real HAProxy on 127.0.0.1, started from a config nslb renders, queried over its runtime socket.
const HAPROXY = '/usr/sbin/haproxy';
describe.skipIf(!existsSync(HAPROXY))('against a real HAProxy 2.6 on loopback', () => {
  const run = promisify(execFile);
  let dir: string;
  let pidFile: string;
  let socket: string;
  let http: HttpServer;
  let hold: Server;
  const clients: Socket[] = [];
  const held: Socket[] = [];

  async function freePort(): Promise<number> {
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const { port } = s.address() as AddressInfo;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return port;
  }

  async function listen(s: Server | HttpServer): Promise<number> {
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return (s.address() as AddressInfo).port;
  }

  let lb: ReturnType<typeof loadBalancer>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nslb-haproxy-'));
    pidFile = join(dir, 'haproxy.pid');
    socket = join(dir, 'haproxy.sock');
    const stateFile = join(dir, 'server-state');
    await writeFile(stateFile, '1\n');

    http = createHttpServer((_req, res) => res.end('ok'));
    const httpPort = await listen(http);
    // Accepts and holds connections, so that one client can keep a frontend at its maxconn.
    hold = createServer((s) => {
      held.push(s);
      s.on('error', () => {});
    });
    const holdPort = await listen(hold);
    const closedPort = await freePort();
    const [webPort, offPort, fullPort] = [await freePort(), await freePort(), await freePort()];

    lb = loadBalancer({
      vip: { address: '127.0.0.1', family: 4, prefixLength: 8, mac: 'fa:16:3e:00:00:01' },
      listeners: [
        listener('web', { port: webPort, defaultPool: 'web' }),
        listener('off', { protocol: 'TCP', port: offPort, defaultPool: 'web', adminStateUp: false }),
        listener('full', { protocol: 'TCP', port: fullPort, defaultPool: 'plain', connectionLimit: 1 }),
      ],
      pools: [
        pool('web', {
          members: [
            member('up', '127.0.0.1', httpPort),
            member('down', '127.0.0.1', closedPort),
            member('maint', '127.0.0.1', httpPort, { adminStateUp: false }),
            member('zero', '127.0.0.1', httpPort, { weight: 0 }),
            member('drained', '127.0.0.1', httpPort),
          ],
          healthMonitor: monitor({ delay: 1, timeout: 1, maxRetries: 1, maxRetriesDown: 1 }),
        }),
        pool('plain', { protocol: 'TCP', members: [member('plain', '127.0.0.1', holdPort)] }),
        pool('off', { protocol: 'TCP', adminStateUp: false, members: [member('x', '127.0.0.1', holdPort)] }),
      ],
    });
    const cfg = join(dir, 'haproxy.cfg');
    // No TLS listener and no PING monitor here, so neither path is read.
    const unused = { certsDir: join(dir, 'certs'), pingCheckCommand: '/bin/false' };
    await writeFile(cfg, renderHaproxyConfig(lb, { socket, stateFile, ...unused }));
    await run(HAPROXY, ['-f', cfg, '-W', '-D', '-p', pidFile], { timeout: 10_000 });
  });

  afterAll(async () => {
    for (const c of [...clients, ...held]) c.destroy();
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    // Only the master this test started, by its pid; it takes its worker down with it.
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGTERM');
    await new Promise<void>((resolve) => http.close(() => resolve()));
    await new Promise<void>((resolve) => hold.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  async function stats(): Promise<StatRow[]> {
    return parseShowStat(await queryRuntime(socket, 'show stat'));
  }

  async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe().catch(() => undefined);
      if (v !== undefined && ok(v)) return v;
      if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last: ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('reports what the aggregation needs, by the names the renderer gave', async () => {
    await until(
      () => queryRuntime(socket, 'show info'),
      (s) => s.includes('Name: HAProxy'),
    );
    expect(await queryRuntime(socket, 'set server pool.web/drained state drain')).toBe('\n');
    const full = lb.listeners.find((l) => l.name === 'full')!;
    const client = createConnection({ host: '127.0.0.1', port: full.port });
    client.on('error', () => {});
    clients.push(client);

    const rows = await until(
      stats,
      (r) => row(r, 'pool.web', 'up')?.status === 'UP' && row(r, 'pool.web', 'down')?.status === 'DOWN' && row(r, 'listener.full', 'FRONTEND')?.sessions === 1,
    );

    expect(row(rows, 'listener.web', 'FRONTEND')).toMatchObject({ status: 'OPEN', type: 'frontend' });
    // A disabled proxy is not in `show stat` at all.
    expect(row(rows, 'listener.off', 'FRONTEND')).toBeUndefined();
    expect(rows.some((r) => r.pxname === 'pool.off')).toBe(false);
    // HAProxy 2.6 says OPEN, not FULL, for a frontend at its maxconn.
    expect(row(rows, 'listener.full', 'FRONTEND')).toMatchObject({ status: 'OPEN', sessions: 1, sessionLimit: 1 });
    expect(row(rows, 'pool.web', 'maint')).toMatchObject({ status: 'MAINT', type: 'server' });
    expect(row(rows, 'pool.web', 'zero')).toMatchObject({ status: 'UP', weight: 0 });
    expect(row(rows, 'pool.web', 'drained')?.status).toMatch(/^DRAIN/);
    expect(row(rows, 'pool.web', 'down')).toMatchObject({ checkStatus: 'L4CON' });
    expect(row(rows, 'pool.plain', 'plain')).toMatchObject({ status: 'no check' });

    const tree = operatingStatuses(lb, rows);
    expect(Object.fromEntries(tree.listeners)).toEqual({ web: 'ONLINE', off: 'OFFLINE', full: 'DEGRADED' });
    expect(Object.fromEntries(tree.members)).toEqual({
      'web/up': 'ONLINE',
      'web/down': 'ERROR',
      'web/maint': 'OFFLINE',
      'web/zero': 'DRAINING',
      'web/drained': 'DRAINING',
      'plain/plain': 'NO_MONITOR',
      'off/x': 'OFFLINE',
    });
    expect(Object.fromEntries(tree.pools)).toEqual({ web: 'DEGRADED', plain: 'ONLINE', off: 'OFFLINE' });
    expect(Object.fromEntries(tree.healthMonitors)).toEqual({ web: 'ONLINE' });
    expect(tree.loadBalancer).toBe('DEGRADED');
  });
});
