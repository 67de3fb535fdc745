// The sizing arithmetic of src/plan/kernel-limits.ts, the /proc readers of src/drivers/kernel/limits.ts on a fake
// /proc tree, and the controller's raise / report / overflow behaviour (src/controller/kernel-limits.ts).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KernelLimits } from '../../src/controller/kernel-limits.js';
import { KernelDriver, parseLoadavgTasks, parseNeighbourStats, readCgroupPids, readKernel, type KernelPaths } from '../../src/drivers/kernel/limits.js';
import {
  CLIENT_NEIGHBOURS_PER_LB,
  FLOWS_PER_KERNEL_LB,
  NODE_NEIGHBOURS,
  neighboursOf,
  nodeLoadOf,
  planKernelLimits,
  TASKS_PER_LB,
  verdictOf,
  type KernelReadings,
  type LimitCheck,
} from '../../src/plan/kernel-limits.js';
import { listener, loadBalancer, member, pool } from '../support/desired-lb.js';

const none = { ipv4: false, ipv6: false };
const byName = (checks: LimitCheck[], name: string): LimitCheck => {
  const c = checks.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no check ${name}`);
  return c;
};

/** The load: an HTTP listener, a pool of two on-link members, a VIP with a gateway, per load balancer. */
function lbs(n: number, second = 230) {
  return Array.from({ length: n }, (_, i) =>
    loadBalancer({
      key: `default/lb${i}`,
      vip: {
        address: `10.${second}.${Math.floor(i / 250)}.${(i % 250) + 1}`,
        family: 4,
        prefixLength: 16,
        gateway: `10.${second}.255.1`,
        mac: 'fa:16:3e:00:00:01',
      },
      pools: [pool('p', { members: [member('m1', `10.${second}.255.11`, 8080), member('m2', `10.${second}.255.12`, 8080)] })],
    }),
  );
}

describe('sizing arithmetic (plan/kernel-limits.ts)', () => {
  it('counts on-link members once, off-link members as the gateway, plus clients, per family', () => {
    const lb = loadBalancer({
      vip: { address: '10.0.0.10', family: 4, prefixLength: 24, gateway: '10.0.0.1', mac: 'fa:16:3e:00:00:01' },
      pools: [
        pool('a', { members: [member('m1', '10.0.0.11', 80), member('m2', '10.0.0.12', 80, { monitorAddress: '10.0.0.13' }), member('far', '192.0.2.7', 80)] }),
        // The same address in another pool is one neighbour.
        pool('b', { members: [member('m1', '10.0.0.11', 81)] }),
      ],
    });
    // 10.0.0.11, .12, .13 on link; 192.0.2.7 through the gateway (1).
    expect(neighboursOf(lb)).toEqual({ ipv4: 3 + 1 + CLIENT_NEIGHBOURS_PER_LB, ipv6: 0 });
  });

  it('gives a family the load balancer has no address of nothing, and counts IPv6 through additional VIPs', () => {
    const lb = loadBalancer({
      vip: {
        address: 'fd00::10',
        family: 6,
        prefixLength: 64,
        mac: 'fa:16:3e:00:00:01',
        additional: [{ address: '10.0.0.10', family: 4, prefixLength: 24 }],
      },
      pools: [pool('a', { members: [member('v6', 'fd00::11', 80), member('v4', '10.0.0.11', 80)] })],
    });
    expect(neighboursOf(lb)).toEqual({ ipv4: 1 + CLIENT_NEIGHBOURS_PER_LB, ipv6: 1 + CLIENT_NEIGHBOURS_PER_LB });
    const v4only = loadBalancer({ pools: [pool('a', { members: [member('v6', 'fd00::11', 80)] })] });
    expect(neighboursOf(v4only).ipv6).toBe(0);
  });

  it("500 of the issue's load balancers do not fit the default gc_thresh3 of 1024; 40 do", () => {
    const readings: KernelReadings = {
      sysctls: { 'net.ipv4.neigh.default.gc_thresh3': 1024, 'net.ipv4.neigh.default.gc_thresh2': 512 },
      overflowed: none,
    };
    const big = planKernelLimits(nodeLoadOf(lbs(500), 0), readings);
    const thresh3 = byName(big, 'net.ipv4.neigh.default.gc_thresh3');
    const perLb = 2 + 1 + CLIENT_NEIGHBOURS_PER_LB;
    expect(thresh3.required).toBe(500 * perLb + NODE_NEIGHBOURS);
    expect(thresh3.target).toBe(Math.ceil((2 * thresh3.required) / 1024) * 1024);
    expect(verdictOf(thresh3, true)).toBe('raise');
    expect(verdictOf(thresh3, false)).toBe('insufficient');
    const thresh2 = byName(big, 'net.ipv4.neigh.default.gc_thresh2');
    expect(thresh2.required).toBe(Math.ceil(thresh3.required / 2));
    expect(thresh2.target).toBeLessThanOrEqual(thresh3.target);
    const small = planKernelLimits(nodeLoadOf(lbs(40), 0), readings);
    expect(verdictOf(byName(small, 'net.ipv4.neigh.default.gc_thresh3'), true)).toBe('ok');
    // No IPv6 address anywhere: no IPv6 check.
    expect(big.some((c) => c.name.startsWith('net.ipv6'))).toBe(false);
  });

  it('counts tasks already running once: what the node uses now, minus our running HAProxies, plus all of ours', () => {
    // The HAProxy master and one worker thread (nbthread 1), whatever the CPU count: not HAProxy's default of one per CPU.
    const perLb = TASKS_PER_LB;
    expect(perLb).toBe(2);
    const readings: KernelReadings = { sysctls: { 'kernel.pid_max': 32768 }, tasks: 300 + 100 * perLb, overflowed: none };
    const pid = byName(planKernelLimits(nodeLoadOf(lbs(150), 100), readings), 'kernel.pid_max');
    expect(pid.required).toBe(300 + 150 * perLb);
    // 20,000 load balancers outgrow the default pid_max of 32768.
    const wide = byName(planKernelLimits(nodeLoadOf(lbs(20_000), 0), { ...readings, tasks: 500 }), 'kernel.pid_max');
    expect(wide.required).toBe(500 + 20_000 * 2);
    expect(verdictOf(wide, true)).toBe('raise');
  });

  it("reports the agent's cgroup pids limit but never offers to write it", () => {
    const readings: KernelReadings = { sysctls: {}, cgroupPids: { current: 40, max: 4915 }, overflowed: none };
    const cg = byName(planKernelLimits(nodeLoadOf(lbs(3000), 0), readings), 'cgroup pids.max');
    expect(cg.required).toBe(40 + 3000 * 2);
    expect(cg.settable).toBe(false);
    expect(verdictOf(cg, true)).toBe('insufficient');
    // No limit on the cgroup: nothing to check.
    expect(
      planKernelLimits(nodeLoadOf(lbs(2000), 0), { ...readings, cgroupPids: { current: 40, max: undefined } }).some((c) => c.name === 'cgroup pids.max'),
    ).toBe(false);
  });

  it('checks inotify watches only when a directory is watched, and namespaces per load balancer', () => {
    const readings: KernelReadings = { sysctls: { 'fs.inotify.max_user_watches': 8192, 'user.max_net_namespaces': 3000 }, overflowed: none };
    expect(planKernelLimits(nodeLoadOf(lbs(1), 0), readings).some((c) => c.name === 'fs.inotify.max_user_watches')).toBe(false);
    const checks = planKernelLimits(nodeLoadOf(lbs(2500), 0, 2501), readings);
    expect(byName(checks, 'fs.inotify.max_user_watches').required).toBe(2501 + 8192);
    expect(verdictOf(byName(checks, 'user.max_net_namespaces'), true)).toBe('raise');
  });

  it('after the kernel refused neighbours, requires more than the table holds, but only up to a bounded multiple', () => {
    const load = nodeLoadOf(lbs(10), 0);
    const need = load.neighbours.ipv4 + NODE_NEIGHBOURS;
    const at = (current: number) =>
      byName(
        planKernelLimits(load, { sysctls: { 'net.ipv4.neigh.default.gc_thresh3': current }, overflowed: { ipv4: true, ipv6: false } }),
        'net.ipv4.neigh.default.gc_thresh3',
      );
    expect(need * 8).toBeGreaterThan(2048);
    expect(at(1024).required).toBe(1025);
    expect(at(1024).target).toBe(2048);
    // A flood cannot push it past 8 × the computed need.
    expect(verdictOf(at(need * 8), true)).toBe('ok');
    expect(at(need * 5).target).toBeLessThanOrEqual(Math.ceil((need * 8) / 1024) * 1024);
  });

  it("checks nf_conntrack_max only with UDP or SCTP listeners: one namespace's flows, however many there are", () => {
    const readings = (max?: number): KernelReadings => ({
      sysctls: max === undefined ? {} : { 'net.netfilter.nf_conntrack_max': max },
      overflowed: none,
    });
    const conntrack = (load: ReturnType<typeof nodeLoadOf>, max?: number) =>
      planKernelLimits(load, readings(max)).find((c) => c.name === 'net.netfilter.nf_conntrack_max');
    // HTTP only: the kernel forwards nothing, conntrack is none of nslb's business.
    expect(nodeLoadOf(lbs(3), 0).kernelForwarding).toBeUndefined();
    expect(conntrack(nodeLoadOf(lbs(3), 0), 1024)).toBeUndefined();
    const withUdp = (n: number) => lbs(n).map((lb, i) => (i % 2 === 0 ? { ...lb, listeners: [listener('dns', { protocol: 'UDP', port: 53 })] } : lb));
    const sctp = { ...lbs(1)[0]!, listeners: [listener('m3ua', { protocol: 'SCTP', port: 2905 })] };
    expect(nodeLoadOf([...withUdp(10), sctp], 0).kernelForwarding).toBe(6);
    const few = conntrack(nodeLoadOf(withUdp(2), 0), 32_768)!;
    const many = conntrack(nodeLoadOf(withUdp(2000), 0), 32_768)!;
    expect(few).toMatchObject({ required: FLOWS_PER_KERNEL_LB, target: 2 * FLOWS_PER_KERNEL_LB, impact: 'conntrack', settable: true, current: 32_768 });
    expect(many.required).toBe(few.required);
    expect(many.why).toMatch(/1000 load balancers with UDP or SCTP listeners/);
    // Raised when lower (never lowered: a larger default, 262144 on the development node, is ok); unreadable: unknown.
    expect(verdictOf(few, true)).toBe('raise');
    expect(verdictOf(few, false)).toBe('insufficient');
    expect(verdictOf(conntrack(nodeLoadOf(withUdp(2), 0), 262_144)!, true)).toBe('ok');
    expect(verdictOf(conntrack(nodeLoadOf(withUdp(2), 0))!, true)).toBe('unknown');
  });

  it('an unreadable limit is unknown, never raised', () => {
    const c = byName(planKernelLimits(nodeLoadOf(lbs(500), 0), { sysctls: {}, overflowed: none }), 'net.ipv4.neigh.default.gc_thresh3');
    expect(verdictOf(c, true)).toBe('unknown');
  });
});

describe('/proc readers (drivers/kernel/limits.ts)', () => {
  it('parses the neighbour table counters: entries are the table’s, table_fulls summed over CPUs', () => {
    const text = [
      'entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls',
      '00000400 00000001 00000000 00000000   00000004 00000000 00000000   00000000         00000000         00000017         00000000       00000000            0000000a',
      '00000400 00000001 00000000 00000000   00000002 00000002 00000000   00000000         00000000         00000000         00000000       00000000            00000005',
    ].join('\n');
    expect(parseNeighbourStats(text)).toEqual({ entries: 1024, tableFulls: 15 });
    expect(parseNeighbourStats('garbage')).toBeUndefined();
  });

  it('reads the task count from /proc/loadavg', () => {
    expect(parseLoadavgTasks('0.37 0.13 0.03 1/98 4998\n')).toBe(98);
    expect(parseLoadavgTasks('')).toBeUndefined();
  });

  describe('on a fake /proc and cgroup tree', () => {
    let root: string;
    let paths: KernelPaths;
    const put = (path: string, text: string): void => {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    };
    beforeEach(() => {
      root = mkdtempSync(join(tmpdir(), 'nslb-kernel-'));
      paths = { proc: join(root, 'proc'), cgroup: join(root, 'cgroup') };
      put('proc/sys/net/ipv4/neigh/default/gc_thresh3', '1024\n');
      put('proc/sys/net/ipv4/neigh/default/gc_thresh2', '512\n');
      put('proc/sys/kernel/pid_max', '32768\n');
      put('proc/sys/fs/file-nr', '519\t0\t2466093\n');
      put('proc/loadavg', '0.10 0.20 0.30 2/120 777\n');
      put('proc/net/stat/arp_cache', 'entries table_fulls\n00000010 00000000\n');
    });
    afterEach(() => rmSync(root, { recursive: true, force: true }));

    it('reads sysctls, tasks and files; a sysctl absent here is left out', () => {
      const r = readKernel(paths);
      expect(r.sysctls['net.ipv4.neigh.default.gc_thresh3']).toBe(1024);
      expect(r.sysctls['kernel.pid_max']).toBe(32768);
      expect(r.sysctls['net.ipv6.neigh.default.gc_thresh3']).toBeUndefined();
      expect(r.tasks).toBe(120);
      expect(r.files).toBe(519);
    });

    it('finds the tightest pids limit of the cgroup and its ancestors (v2 and v1)', () => {
      put('proc/self/cgroup', '0::/system.slice/nslb.service\n');
      put('cgroup/pids.current', '900');
      put('cgroup/pids.max', 'max');
      put('cgroup/system.slice/pids.current', '800');
      put('cgroup/system.slice/pids.max', '10000');
      put('cgroup/system.slice/nslb.service/pids.current', '700');
      put('cgroup/system.slice/nslb.service/pids.max', '4915');
      expect(readCgroupPids(paths)).toEqual({ current: 700, max: 4915 });
      put('proc/self/cgroup', '8:pids:/kubepods/pod1\n0::/\n');
      put('cgroup/pids/kubepods/pod1/pids.current', '12');
      put('cgroup/pids/kubepods/pod1/pids.max', 'max');
      expect(readCgroupPids(paths)).toEqual({ current: 12, max: undefined });
    });

    it('raises what is too low (upward only), leaves it in check mode, and reports both', () => {
      const logger = pino({ level: 'silent' });
      const read = (p: string) => Number(readFileSync(join(paths.proc, 'sys', p), 'utf8'));
      const check = new KernelLimits({ kernel: new KernelDriver(paths), mode: 'check', logger });
      check.check(nodeLoadOf(lbs(500), 0));
      expect(read('net/ipv4/neigh/default/gc_thresh3')).toBe(1024);
      expect(check.report?.condition).toMatchObject({ status: 'False', reason: 'NeighbourTableTooSmall' });
      expect(check.report?.condition.message).toContain('sysctl -w net.ipv4.neigh.default.gc_thresh3=');
      expect(check.report?.refusing).toEqual(['ipv4']);

      const raise = new KernelLimits({ kernel: new KernelDriver(paths), mode: 'raise', logger });
      raise.check(nodeLoadOf(lbs(500), 0));
      const thresh3 = read('net/ipv4/neigh/default/gc_thresh3');
      expect(thresh3).toBeGreaterThanOrEqual(500 * (3 + CLIENT_NEIGHBOURS_PER_LB) + NODE_NEIGHBOURS);
      expect(read('net/ipv4/neigh/default/gc_thresh2')).toBeGreaterThan(512);
      expect(raise.report?.condition).toMatchObject({ status: 'True', reason: 'Raised' });
      expect(raise.report?.refusing).toEqual([]);
      expect(raise.raises.get('net.ipv4.neigh.default.gc_thresh3')).toBe(1);

      // Fewer load balancers never lower anything.
      raise.check(nodeLoadOf(lbs(1), 0));
      expect(read('net/ipv4/neigh/default/gc_thresh3')).toBe(thresh3);
      // Lowered by hand: raised again at the next check (drift repair).
      put('proc/sys/net/ipv4/neigh/default/gc_thresh3', '1024\n');
      raise.check(nodeLoadOf(lbs(500), 0));
      expect(read('net/ipv4/neigh/default/gc_thresh3')).toBe(thresh3);
    });

    it('a write the kernel refuses is reported, with the reason and the command to run', () => {
      // A sysctl that reads as a number but refuses writes, even root's: the kernel's read-only ngroups_max.
      mkdirSync(join(paths.proc, 'sys/user'), { recursive: true });
      symlinkSync('/proc/sys/kernel/ngroups_max', join(paths.proc, 'sys/user/max_net_namespaces'));
      const current = Number(readFileSync('/proc/sys/kernel/ngroups_max', 'utf8'));
      const kl = new KernelLimits({ kernel: new KernelDriver(paths), mode: 'raise', logger: pino({ level: 'silent' }) });
      kl.check({ loadBalancers: current, running: 0, neighbours: { ipv4: 0, ipv6: 0 } });
      const row = kl.report?.limits.find((l) => l.name === 'user.max_net_namespaces');
      expect(row).toMatchObject({ verdict: 'insufficient', current });
      expect(row?.failure).toMatch(/permission denied|read-only|not permitted/);
      expect(kl.report?.condition).toMatchObject({ status: 'False', reason: 'KernelLimitTooLow' });
      expect(kl.report?.condition.message).toContain('sysctl -w user.max_net_namespaces=');
      // Not a neighbour limit: no load balancer is said to be unreachable.
      expect(kl.report?.refusing).toEqual([]);
    });

    it('a neighbour table that refused entries is reported refusing until the hold runs out, and raised', () => {
      const kl = new KernelLimits({ kernel: new KernelDriver(paths), mode: 'check', logger: pino({ level: 'silent' }) });
      const load = nodeLoadOf(lbs(10), 0);
      kl.check(load, 0);
      expect(kl.report?.refusing).toEqual([]);
      put('proc/net/stat/arp_cache', 'entries table_fulls\n00000400 00000003\n');
      expect(kl.pollNeighbours(1_000)).toBe(true);
      expect(kl.report?.refusing).toEqual(['ipv4']);
      expect(kl.report?.condition.message).toContain('table full at 1024 entries');
      expect(kl.pollNeighbours(2_000)).toBe(false);
      expect(kl.pollNeighbours(40_000)).toBe(true);
      expect(kl.report?.refusing).toEqual([]);

      const raise = new KernelLimits({ kernel: new KernelDriver(paths), mode: 'raise', logger: pino({ level: 'silent' }) });
      raise.check(load, 0);
      put('proc/net/stat/arp_cache', 'entries table_fulls\n00000400 00000009\n');
      raise.pollNeighbours(1_000);
      expect(Number(readFileSync(join(paths.proc, 'sys/net/ipv4/neigh/default/gc_thresh3'), 'utf8'))).toBe(2048);
      expect(raise.report?.refusing).toEqual([]);
    });
  });
});
