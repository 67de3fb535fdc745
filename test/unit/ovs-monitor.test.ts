// The OVSDB monitor session: its JSON framing, and against a fake database socket, a port's OpenFlow number
// awaited on the monitor's updates, a session that goes away letting the waiters go, and new ports added by a
// transaction on the session (ovs-vsctl only when that does not go through).
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OvsDriver } from '../../src/drivers/ovs/driver.js';
import { JsonStream, OvsMonitor } from '../../src/drivers/ovs/monitor.js';
import { addPortOperations, addPortsCommitted, argvAddPort, type AddPort } from '../../src/drivers/ovs/ovs.js';
import type { Runner } from '../../src/exec/run.js';

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

describe('OvsDriver: new ports on the OVSDB session', () => {
  const port = (iface: string, vlan?: number): AddPort => ({
    stateDir: '/var/lib/nslb',
    bridge: 'br-lb',
    iface,
    lb: `ns/${iface}`,
    mac: 'fa:16:3e:00:00:01',
    ifaceId: `nslb-${iface}`,
    ...(vlan === undefined ? {} : { vlan }),
  });
  const addPort = (iface: string) => ({ kind: 'ovs.addPort' as const, bridge: 'br-lb', iface, lb: `ns/${iface}`, mac: 'fa:16:3e:00:00:01', recreate: false });
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  async function driverOn(initial: object, transact: Transact) {
    const seen: string[][] = [];
    const run: Runner = async (argv) => {
      seen.push([...argv]);
      return { stdout: '', stderr: '', exitCode: 0 };
    };
    const db = await fakeOvsdb(initial, transact);
    const ovs = new OvsDriver(run, '/var/lib/nslb');
    ovs.monitor.start(quiet, db.path);
    closers.push(
      () => ovs.monitor.stop(),
      () => db.server.close(),
    );
    await db.session;
    while (!ovs.monitor.active) await new Promise((r) => setImmediate(r));
    return { ovs, seen };
  }

  it('sends the rows and markers of ovs-vsctl add-port in one transaction', () => {
    const ops = addPortOperations([port('nslba'), port('nslbb', 7)]);
    expect(ops).toHaveLength(7);
    expect(ops[1]).toEqual({
      op: 'insert',
      table: 'Interface',
      'uuid-name': 'iface0',
      row: {
        name: 'nslba',
        type: 'internal',
        external_ids: [
          'map',
          [
            ['nslb-lb', 'ns/nslba'],
            ['nslb-state-dir', '/var/lib/nslb'],
            ['iface-id', 'nslb-nslba'],
            ['attached-mac', 'fa:16:3e:00:00:01'],
            ['iface-status', 'active'],
          ],
        ],
      },
    });
    expect(ops[2]).toEqual({ op: 'insert', table: 'Port', 'uuid-name': 'port0', row: { name: 'nslba', interfaces: ['named-uuid', 'iface0'] } });
    expect(ops[5]).toMatchObject({ table: 'Port', row: { name: 'nslbb', tag: 7 } });
    expect(ops[6]).toEqual({
      op: 'mutate',
      table: 'Bridge',
      where: [['name', '==', 'br-lb']],
      mutations: [['ports', 'insert', ['set', [['named-uuid', 'port1']]]]],
    });
    // The same markers as ovs-vsctl's.
    for (const [k, v] of (ops[1] as { row: { external_ids: [string, [string, string][]] } }).row.external_ids[1]) {
      expect(argvAddPort(port('nslba'))).toContain(`external_ids:${k}=${v}`);
    }
  });

  it('reads the result: committed only when every operation succeeded and every bridge took its port', () => {
    const ports = [port('nslba')];
    expect(addPortsCommitted([{}, { uuid: ['uuid', 'a'] }, { uuid: ['uuid', 'b'] }, { count: 1 }], ports)).toBe(true);
    // No such bridge: the port is garbage-collected at commit.
    expect(addPortsCommitted([{}, { uuid: ['uuid', 'a'] }, { uuid: ['uuid', 'b'] }, { count: 0 }], ports)).toBe(false);
    // A port of that name exists: the unique index fails the commit (one more element than operations).
    expect(addPortsCommitted([{}, { uuid: ['uuid', 'a'] }, { uuid: ['uuid', 'b'] }, { count: 1 }, { error: 'constraint violation' }], ports)).toBe(false);
    expect(addPortsCommitted([{}, { error: 'referential integrity violation' }, null, null], ports)).toBe(false);
  });

  it('adds a new port without a process when the transaction goes through', async () => {
    const transactions: unknown[][] = [];
    const { ovs, seen } = await driverOn({ Interface: {} }, (ops) => {
      transactions.push(ops);
      return ops.map((o) => ((o as { op: string }).op === 'mutate' ? { count: 1 } : {}));
    });
    await ovs.apply(addPort('nslba'));
    expect(seen).toEqual([]);
    expect(transactions).toHaveLength(1);
  });

  it('runs ovs-vsctl when the transaction fails, or when the monitor knows a row of that name', async () => {
    const { ovs, seen } = await driverOn({ Interface: { u1: iface('nslbb', 3) } }, (ops) =>
      ops.map((o) => ((o as { op: string }).op === 'mutate' ? { count: 0 } : {})),
    );
    await ovs.apply(addPort('nslba'));
    await ovs.apply(addPort('nslbb'));
    expect(seen.map((argv) => argv.slice(0, 7))).toEqual([
      ['ovs-vsctl', '--timeout=10', '--no-wait', '--', '--may-exist', 'add-port', 'br-lb'],
      ['ovs-vsctl', '--timeout=10', '--no-wait', '--', '--may-exist', 'add-port', 'br-lb'],
    ]);
    expect(seen.map((argv) => argv[7])).toEqual(['nslba', 'nslbb']);
  });
});
