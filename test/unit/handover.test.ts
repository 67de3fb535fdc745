// The pieces of a lossless planned switchover (src/drivers/keepalived/handover.ts) that need no netns: how
// /proc/net/tcp spells an address, counting the connections still served, the SYN drop nft accepts, what the
// planner asks of a leaving MASTER, and the VIPs and advert interval read back from a rendered config.
import { createConnection, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectionsServed, countServed, handOverMarked, procNetAddress, renderSynDrop } from '../../src/drivers/keepalived/handover.js';
import { keepalivedFiles } from '../../src/desired/state-dir.js';
import type { Runner } from '../../src/exec/run.js';
import { configAdvertMs, configVips } from '../../src/drivers/keepalived/keepalived.js';
import { renderKeepalivedConfig } from '../../src/plan/keepalived-config.js';
import { planLoadBalancer } from '../../src/plan/plan.js';
import { runCommand } from '../../src/exec/run.js';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

describe('handover helpers', () => {
  it('spells addresses as /proc/net/tcp{,6} does', () => {
    expect(procNetAddress('10.0.0.1')).toBe('0100000A');
    expect(procNetAddress('127.0.0.1')).toBe('0100007F');
    expect(procNetAddress('::1')).toBe('00000000000000000000000001000000');
    expect(procNetAddress('2001:db8::10')).toBe('B80D0120000000000000000010000000');
  });

  it('counts the connections served on an address, not listeners, and none once they are closed', async () => {
    // A loopback address of its own: /proc/PID/net/tcp lists the whole netns, other tests included.
    const vip = '127.31.41.59';
    const accepted: Socket[] = [];
    const server = createServer((s) => accepted.push(s));
    await new Promise<void>((r) => server.listen(0, vip, r));
    closers.push(() => server.close());
    expect(connectionsServed(process.pid, [vip])).toBe(0);
    const port = (server.address() as { port: number }).port;
    const client = createConnection({ host: vip, port });
    await new Promise<void>((r) => client.on('connect', () => r()));
    await new Promise((r) => setTimeout(r, 50));
    // The server's end (the client's leaves from 127.0.0.1, the loopback's own address).
    expect(connectionsServed(process.pid, [vip])).toBe(1);
    expect(connectionsServed(process.pid, ['127.31.41.60'])).toBe(0);
    client.end();
    for (const s of accepted) s.end();
    await new Promise((r) => setTimeout(r, 100));
    expect(connectionsServed(process.pid, [vip])).toBe(0);
  });

  it('a closing connection whose answer the client has acknowledged (only our FIN outstanding) is not served any more', () => {
    const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
    // VIP 10.0.0.10 listening on :80 (0050); a client 10.0.0.2 (0200000A) on one connection in each state.
    const row = (st: string, tx: number) =>
      `   1: 0A00000A:0050 0200000A:C350 ${st} ${tx.toString(16).padStart(8, '0')}:00000000 00:00000000 00000000     0        0 1 1`;
    const table = (...rows: string[]) =>
      [header, '   0: 0A00000A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9 1', ...rows].join('\n');
    const vip = ['10.0.0.10'];
    // FIN_WAIT1 / LAST_ACK / CLOSING with nothing but the FIN unacknowledged: done.
    expect(countServed([table(row('04', 1), row('09', 1), row('0B', 0))], vip)).toBe(0);
    // The same with answer bytes still unacknowledged: served (cutting it would lose them).
    expect(countServed([table(row('04', 1200), row('09', 2), row('0B', 5))], vip)).toBe(3);
    // ESTABLISHED, SYN_RECV, CLOSE_WAIT: served whatever their queue.
    expect(countServed([table(row('01', 0), row('03', 0), row('08', 0))], vip)).toBe(3);
    // FIN_WAIT2, TIME_WAIT: done.
    expect(countServed([table(row('05', 0), row('06', 0))], vip)).toBe(0);
  });

  it('a connection opened from the address (a health check, the peers session) is not one it serves', async () => {
    const vip = '127.31.41.62';
    const vipServer = createServer(() => undefined);
    await new Promise<void>((r) => vipServer.listen(0, vip, r));
    const member = createServer(() => undefined);
    await new Promise<void>((r) => member.listen(0, '127.31.41.63', r));
    closers.push(
      () => vipServer.close(),
      () => member.close(),
    );
    const out = createConnection({ host: '127.31.41.63', port: (member.address() as { port: number }).port, localAddress: vip });
    await new Promise<void>((r) => out.on('connect', () => r()));
    await new Promise((r) => setTimeout(r, 50));
    // Before, its local address alone counted it: a handover waited for it and reported it cut.
    expect(connectionsServed(process.pid, [vip])).toBe(0);
    out.destroy();
  });

  it('renders a SYN drop that nft accepts, per family', async () => {
    const text = renderSynDrop(['10.0.0.10', '2001:db8::10', '10.0.0.11']);
    expect(text).toContain('ip daddr { 10.0.0.10, 10.0.0.11 } tcp flags & (syn | ack) == syn drop');
    expect(text).toContain('ip6 daddr { 2001:db8::10 } tcp flags & (syn | ack) == syn drop');
    // -c: parsed and checked by the kernel, nothing applied.
    await runCommand(['nft', '-c', '-f', '-'], { input: text });
  });

  it('reads the VIPs and advert interval back from a rendered config', () => {
    const config = renderKeepalivedConfig(
      {
        lbKey: 'default/web',
        name: 'nslb-0123456789ab',
        interface: 'nslb0123456789a',
        virtualRouterId: 51,
        priority: 100,
        advertIntervalMs: 250,
        localAddress: '10.0.0.2',
        peerAddress: '10.0.0.3',
        vips: [
          { address: '10.0.0.10', prefixLength: 24 },
          { address: '2001:db8::10', prefixLength: 64 },
        ],
      },
      {
        checkScript: '/s/check.sh',
        notifyScript: '/s/notify.sh',
        haproxyPidfile: '/s/haproxy.pid',
        notifyFifo: '/s/keepalived.fifo',
        stateFile: '/s/keepalived.state',
        releaseFile: '/s/keepalived.release',
        healthFile: '/s/keepalived.health',
      },
    );
    expect(configVips(config)).toEqual(['10.0.0.10', '2001:db8::10']);
    expect(configAdvertMs(config)).toBe(250);
    expect(config).toMatch(/track_file nslb_release \{\n {4}file "\/s\/keepalived.release"\n {4}weight 0\n {4}init_file 0 overwrite\n\}/);
  });

  it('a leaving MASTER hands over before keepalived stops; a BACKUP just stops', () => {
    const observed = (state: 'MASTER' | 'BACKUP') => ({
      ifaceInHost: false,
      stateDir: true,
      netns: { loUp: true },
      keepalived: { pid: 42, inNetns: true, vrrpAlive: true, vrrp: { state, priority: 100 } },
    });
    const stop = (state: 'MASTER' | 'BACKUP') =>
      planLoadBalancer({ netns: 'nslb-0123456789ab', iface: 'nslb0123456789a', observed: observed(state) as never }).find((a) => a.kind === 'keepalived.stop');
    expect(stop('MASTER')).toEqual({ kind: 'keepalived.stop', netns: 'nslb-0123456789ab', pid: 42, handOver: true });
    expect(stop('BACKUP')).toEqual({ kind: 'keepalived.stop', netns: 'nslb-0123456789ab', pid: 42 });
  });

  describe('the SYN drop of a load balancer that leaves the node', () => {
    // A runner that records what would run; this test process stands for HAProxy in the netns (no connection to
    // the VIP: nothing to wait for).
    const setup = async () => {
      const dir = await mkdtemp(join(tmpdir(), 'nslb-handover-'));
      closers.push(() => void rm(dir, { recursive: true, force: true }));
      const files = keepalivedFiles(dir, 'nslb-0123456789ab');
      await mkdir(files.dir, { recursive: true });
      // `ip netns exec NETNS` left out.
      const ran: string[] = [];
      const run: Runner = async (argv) => {
        ran.push(argv.slice(4).join(' '));
        return { stdout: '', stderr: '' };
      };
      return { files, ran, run };
    };
    const options = (fail = false) => ({
      netns: 'nslb-0123456789ab',
      vips: ['192.0.2.10'],
      pidInNetns: process.pid,
      release: async () => {
        if (fail) throw new Error('release failed');
      },
      released: () => true,
    });

    it('stays after a handover that let go, with its marker, when the netns is deleted next', async () => {
      const { files, ran, run } = await setup();
      await handOverMarked(run, files, { ...options(), keepDrop: true });
      expect(ran).toEqual(['nft -f -']);
      // The marker stays with the drop: should the netns outlive this (a crash, an undrain), the stale marker
      // has the drop removed (endHandover).
      expect(existsSync(files.handover)).toBe(true);
    });

    it('is removed otherwise, and whenever the handover fails', async () => {
      const { files, ran, run } = await setup();
      await handOverMarked(run, files, options());
      expect(ran).toEqual(['nft -f -', 'nft delete table inet nslb-handover']);
      expect(existsSync(files.handover)).toBe(false);
      ran.length = 0;
      await expect(handOverMarked(run, files, { ...options(true), keepDrop: true })).rejects.toThrow('release failed');
      expect(ran).toEqual(['nft -f -', 'nft delete table inet nslb-handover']);
    });
  });
});
