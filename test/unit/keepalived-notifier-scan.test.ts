// The keepalived driver's search for notify scripts left by a keepalived killed outright (NotifierScan): one
// /proc scan serves the load balancers stopped together, each pid found is checked again (it may have ended, its
// pid been reused), and a scan older than NOTIFIER_SCAN_FRESH_MS or made before a keepalived start is not used.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NOTIFIER_SCAN_FRESH_MS, NotifierScan } from '../../src/drivers/keepalived/driver.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function fakeProc(): { dir: string; proc(pid: number, argv: string[]): void; gone(pid: number): void } {
  const dir = mkdtempSync(join(tmpdir(), 'nslb-proc-'));
  dirs.push(dir);
  return {
    dir,
    proc(pid, argv) {
      mkdirSync(join(dir, String(pid)), { recursive: true });
      writeFileSync(join(dir, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
    },
    gone(pid) {
      rmSync(join(dir, String(pid)), { recursive: true, force: true });
    },
  };
}

const notifier = (lb: string) => ['/bin/sh', '/usr/lib/nslb/scripts/keepalived-notify.sh', `/var/lib/nslb/${lb}/vrrp.state`, `/var/lib/nslb/${lb}/vrrp.fifo`];
const state = (lb: string) => `/var/lib/nslb/${lb}/vrrp.state`;

describe('NotifierScan', () => {
  it('one scan serves every load balancer stopped within its freshness; each pid is checked again', async () => {
    const p = fakeProc();
    p.proc(10, notifier('a'));
    p.proc(11, notifier('b'));
    p.proc(12, ['/usr/sbin/haproxy', '-f', '/x.cfg']);
    let now = 1_000;
    const scan = new NotifierScan({ procDir: p.dir, now: () => now });
    expect(await scan.find(state('a'))).toEqual([10]);
    // Started after the scan, by something other than this driver: not seen until the scan is stale.
    p.proc(13, notifier('c'));
    expect(await scan.find(state('c'))).toEqual([]);
    // b's notifier ended and its pid went to another process: not returned (it would be SIGTERMed).
    p.gone(11);
    p.proc(11, ['/usr/bin/sleep', '100']);
    expect(await scan.find(state('b'))).toEqual([]);
    now += NOTIFIER_SCAN_FRESH_MS + 1;
    expect(await scan.find(state('c'))).toEqual([13]);
  });

  it('forget(): the next search scans again (a keepalived was started, its notify script is new)', async () => {
    const p = fakeProc();
    const scan = new NotifierScan({ procDir: p.dir, now: () => 0 });
    expect(await scan.find(state('a'))).toEqual([]);
    p.proc(20, notifier('a'));
    expect(await scan.find(state('a'))).toEqual([]);
    scan.forget();
    expect(await scan.find(state('a'))).toEqual([20]);
  });
});
