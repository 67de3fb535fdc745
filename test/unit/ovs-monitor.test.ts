// The OVSDB monitor session: its JSON framing, and against a fake database socket, a port's OpenFlow number
// awaited on the monitor's updates, and a session that goes away letting the waiters go.
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JsonStream, OvsMonitor } from '../../src/drivers/ovs/monitor.js';

describe('JsonStream (OVSDB sends JSON texts back to back)', () => {
  it('splits concatenated values, across chunks, with braces and quotes inside strings', () => {
    const s = new JsonStream();
    expect(s.push('{"id":1,"result":{"a":"}{\\"x"}}{"method":"upd')).toEqual([{ id: 1, result: { a: '}{"x' } }]);
    expect(s.push('ate","params":[null,{}]}  \n{"id":"echo"')).toEqual([{ method: 'update', params: [null, {}] }]);
    expect(s.push(',"method":"echo","params":[]}')).toEqual([{ id: 'echo', method: 'echo', params: [] }]);
  });
});

const quiet = { warn: () => undefined };

type Transact = (operations: unknown[]) => unknown[] | undefined;

/**
 * A database socket that answers the monitor request with `initial`, echoes, and transactions with what
 * `transact` returns (undefined: no answer), and hands out the connection.
 */
async function fakeOvsdb(initial: object, transact: Transact = () => undefined): Promise<{ path: string; server: Server; session: Promise<Socket> }> {
  const path = join(mkdtempSync(join(tmpdir(), 'nslb-ovsdb-')), 'db.sock');
  let connected: (s: Socket) => void = () => undefined;
  const session = new Promise<Socket>((resolve) => {
    connected = resolve;
  });
  const server = createServer((socket) => {
    const stream = new JsonStream();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      for (const m of stream.push(chunk) as { id: unknown; method: string; params: unknown }[]) {
        if (m.method === 'echo') socket.write(JSON.stringify({ id: m.id, result: m.params, error: null }));
        if (m.method === 'transact') {
          const result = transact((m.params as unknown[]).slice(1));
          if (result !== undefined) socket.write(JSON.stringify({ id: m.id, result, error: null }));
        }
        if (m.method !== 'monitor') continue;
        socket.write(JSON.stringify({ id: m.id, result: initial, error: null }));
        connected(socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, server, session };
}

const iface = (name: string, ofport: unknown) => ({ new: { name, external_ids: ['map', []], error: ['set', []], ofport } });

describe('OvsMonitor.waitForOfport', () => {
  const monitors: OvsMonitor[] = [];
  const servers: Server[] = [];
  afterEach(() => {
    for (const m of monitors.splice(0)) m.stop();
    for (const s of servers.splice(0)) s.close();
  });

  async function start(initial: object) {
    const db = await fakeOvsdb(initial);
    servers.push(db.server);
    const monitor = new OvsMonitor();
    monitors.push(monitor);
    monitor.start(quiet, db.path);
    const socket = await db.session;
    // The initial reply has been read once the monitor says it is live.
    while (!monitor.active) await new Promise((r) => setImmediate(r));
    return { monitor, socket };
  }

  it('resolves at once for an interface that has its OpenFlow port already', async () => {
    const { monitor } = await start({ Interface: { u1: iface('p1', 5) } });
    expect(await monitor.waitForOfport('p1', 60_000)).toBe(true);
  });

  it('resolves on the update that gives the interface its OpenFlow port, not before', async () => {
    const { monitor, socket } = await start({ Interface: { u1: iface('p1', ['set', []]) } });
    let settled: boolean | undefined;
    const waiting = monitor.waitForOfport('p1', 60_000).then((ready) => (settled = ready));
    // Another interface's update, and this one's without a port number yet, do not end the wait.
    socket.write(JSON.stringify({ id: null, method: 'update', params: [null, { Interface: { u2: iface('p2', 7) } }] }));
    socket.write(JSON.stringify({ id: null, method: 'update', params: [null, { Interface: { u1: iface('p1', ['set', []]) } }] }));
    // An echo is answered after every update sent before it: both have been read when it comes back.
    monitor.invalidate();
    await monitor.read(async () => ({ bridges: new Set(), ports: [] }));
    expect(settled).toBeUndefined();
    socket.write(JSON.stringify({ id: null, method: 'update', params: [null, { Interface: { u1: iface('p1', 9) } }] }));
    expect(await waiting).toBe(true);
  });

  it('lets the waiters go (false) when the session is lost, so that they wait their own way', async () => {
    const { monitor, socket } = await start({ Interface: {} });
    const waiting = monitor.waitForOfport('p1', 60_000);
    socket.destroy();
    expect(await waiting).toBe(false);
  });

  it('gives up after the timeout', async () => {
    const { monitor } = await start({ Interface: {} });
    expect(await monitor.waitForOfport('p1', 1)).toBe(false);
  });
});
