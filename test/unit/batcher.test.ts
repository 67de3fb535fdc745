// Batching of node work: one process for what arrives together, errors on the item they belong to.
import { describe, expect, it } from 'vitest';
import { Batcher, PartialBatchError } from '../../src/exec/batcher.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AddressInUseError,
  configureLink,
  execInNetnsBatch,
  renderLinkBatch,
  observeNetnsMany,
  parseObserveNetns,
  renderNetnsExecBatch,
} from '../../src/drivers/netns/netns.js';
import { CommandError } from '../../src/exec/errors.js';
import type { Runner } from '../../src/exec/run.js';
import { OvsDriver } from '../../src/drivers/ovs/driver.js';
import { argvDeletePort } from '../../src/drivers/ovs/ovs.js';
import { NetnsDriver } from '../../src/drivers/netns/driver.js';

describe('Batcher', () => {
  it('runs items submitted together as one batch', async () => {
    const batches: number[][] = [];
    const b = new Batcher<number>(
      async (items) => void batches.push(items),
      async (i) => void batches.push([i]),
    );
    await Promise.all([1, 2, 3].map((i) => b.submit(i)));
    expect(batches).toEqual([[1, 2, 3]]);
  });

  it('after a partial batch, resolves the items that went through and runs the rest one by one', async () => {
    const alone: number[] = [];
    const b = new Batcher<number>(
      async () => {
        throw new PartialBatchError(2, 'stopped at the third');
      },
      async (i) => {
        alone.push(i);
        if (i === 3) throw new Error('three failed');
      },
    );
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => b.submit(i)));
    expect(alone).toEqual([3, 4]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason.message).toBe('three failed');
  });
});

describe('netns exec batches', () => {
  it('renders one netns exec line per command', () => {
    expect(
      renderNetnsExecBatch([
        { netns: 'nslb-a', argv: ['ip', '-batch', '/var/lib/nslb/lb/nslb-a/link.batch'] },
        { netns: 'nslb-b', argv: ['haproxy', '-W', '-D', '-f', '/s/haproxy.cfg'] },
      ]),
    ).toBe('netns exec nslb-a ip -batch /var/lib/nslb/lb/nslb-a/link.batch\nnetns exec nslb-b haproxy -W -D -f /s/haproxy.cfg\n');
  });

  it('refuses a word ip -batch would split or unquote', () => {
    for (const word of ['/state dir/x', 'a"b', "a'b", 'a\nnetns delete x', 'a\\b', '']) {
      expect(() => renderNetnsExecBatch([{ netns: 'nslb-a', argv: ['ip', word] }])).toThrow(/cannot pass/);
    }
  });

  it('never uses -force, and reports how many commands went through from "Command failed -:N"', async () => {
    const seen: (readonly string[])[] = [];
    const run: Runner = async (argv) => {
      seen.push(argv);
      throw new CommandError(argv, 1, 'Cannot open network namespace "nslb-c": No such file or directory\nCommand failed -:3');
    };
    const err = await execInNetnsBatch(
      run,
      ['a', 'b', 'c', 'd'].map((n) => ({ netns: `nslb-${n}`, argv: ['true'] })),
    ).catch((e: unknown) => e);
    expect(seen[0]).toEqual(['ip', '-batch', '-']);
    expect(err).toBeInstanceOf(PartialBatchError);
    expect((err as PartialBatchError).done).toBe(2);
  });
});

describe('configureLink', () => {
  const link = { netns: 'nslb-a', iface: 'nslb-v1', mac: '02:00:00:00:00:01', addresses: ['10.0.0.5/24'], removeAddresses: [], gateways: [] };

  it('without probes: the announce switches and the link script from one ip -batch, the script kept 0600', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'nslb-link-')), 'lb', 'link.batch');
    const seen: { argv: readonly string[]; input?: string }[] = [];
    const run: Runner = async (argv, options) => {
      seen.push({ argv, ...(options?.input !== undefined ? { input: options.input } : {}) });
      return { stdout: '', stderr: '' };
    };
    await configureLink(run, link, script);
    expect(seen.map((s) => s.argv)).toEqual([['ip', '-batch', '-']]);
    expect(seen[0]?.input).toBe(
      `netns exec nslb-a sysctl -q -w net.ipv4.conf.nslb-v1.arp_notify=1 net.ipv6.conf.nslb-v1.ndisc_notify=1\nnetns exec nslb-a ip -batch ${script}\n`,
    );
    expect(readFileSync(script, 'utf8')).toContain('address replace 10.0.0.5/24 dev nslb-v1');
  });

  it('in a netns that switched the announcements on when it was added: one ip -n process, no netns exec', async () => {
    const seen: { argv: readonly string[]; input?: string }[] = [];
    const run: Runner = async (argv, options) => {
      seen.push({ argv, ...(options?.input !== undefined ? { input: options.input } : {}) });
      return { stdout: '', stderr: '' };
    };
    await configureLink(run, { ...link, netnsAnnounces: true }, '/unused/link.batch');
    expect(seen).toEqual([{ argv: ['ip', '-n', 'nslb-a', '-batch', '-'], input: renderLinkBatch(link) }]);
  });

  it('with probes: link up, each RFC 5227 probe, the link script, a gratuitous ARP each, in order and apart', async () => {
    const seen: (readonly string[])[] = [];
    const run: Runner = async (argv) => {
      seen.push(argv);
      return { stdout: '', stderr: '' };
    };
    await configureLink(run, { ...link, probe: ['10.0.0.5'] }, '/unused/link.batch');
    expect(seen.map((a) => a.join(' '))).toEqual([
      'ip netns exec nslb-a sysctl -q -w net.ipv4.conf.nslb-v1.arp_notify=1 net.ipv6.conf.nslb-v1.ndisc_notify=1',
      'ip netns exec nslb-a ip link set dev nslb-v1 address 02:00:00:00:00:01 up',
      'ip netns exec nslb-a arping -D -q -c 2 -w 1 -I nslb-v1 10.0.0.5',
      'ip -n nslb-a -batch -',
      'ip netns exec nslb-a arping -U -q -c 1 -w 1 -I nslb-v1 10.0.0.5',
    ]);
  });

  it('with probes: an address someone answered for waits, and no address is added', async () => {
    const seen: (readonly string[])[] = [];
    const run: Runner = async (argv) => {
      seen.push(argv);
      if (argv.includes('-D')) throw new CommandError(argv, 1, '');
      return { stdout: '', stderr: '' };
    };
    await expect(configureLink(run, { ...link, probe: ['10.0.0.5'] }, '/unused/link.batch')).rejects.toBeInstanceOf(AddressInUseError);
    expect(seen.some((a) => a.includes('-batch'))).toBe(false);
  });
});

describe('netns add', () => {
  const configure = {
    kind: 'link.configure' as const,
    netns: 'nslb-test-absent-1',
    iface: 'nslb-v1',
    mac: '02:00:00:00:00:01',
    addresses: ['10.0.0.5/24'],
    removeAddresses: [],
    gateways: [],
    netnsAnnounces: true as const,
  };
  const announceLine = 'netns exec nslb-test-absent-1 sysctl -q -w net.ipv4.conf.all.arp_notify=1 net.ipv6.conf.all.ndisc_notify=1\n';

  it('switches the announcements on for all links of the netns beside what follows; its link configure is one ip -n', async () => {
    const seen: { argv: string; input?: string }[] = [];
    const run: Runner = async (argv, options) => {
      seen.push({ argv: argv.join(' '), ...(options?.input !== undefined ? { input: options.input } : {}) });
      return { stdout: '', stderr: '' };
    };
    const driver = new NetnsDriver(run, mkdtempSync(join(tmpdir(), 'nslb-state-')));
    await driver.apply({ kind: 'netns.add', netns: 'nslb-test-absent-1' });
    expect(seen).toEqual([{ argv: 'ip -batch -', input: 'netns add nslb-test-absent-1\nnetns set nslb-test-absent-1 auto\n' }]);
    await driver.apply(configure);
    expect(seen.slice(1)).toEqual([
      { argv: 'ip -batch -', input: announceLine },
      { argv: 'ip -n nslb-test-absent-1 -batch -', input: renderLinkBatch(configure) },
    ]);
  });

  it("a link configure whose netns could not switch them on sets the link's own", async () => {
    const seen: string[] = [];
    const run: Runner = async (argv, options) => {
      seen.push(`${argv.join(' ')}: ${options?.input ?? ''}`);
      if (options?.input === announceLine) throw new CommandError(argv, 1, 'sysctl: permission denied');
      return { stdout: '', stderr: '' };
    };
    const driver = new NetnsDriver(run, mkdtempSync(join(tmpdir(), 'nslb-state-')));
    await driver.apply({ kind: 'netns.add', netns: 'nslb-test-absent-1' });
    await driver.apply(configure);
    expect(seen.at(-1)).toMatch(
      /^ip -batch -: netns exec nslb-test-absent-1 sysctl -q -w net.ipv4.conf.nslb-v1.arp_notify=1 .*\nnetns exec nslb-test-absent-1 ip -batch \S+link.batch\n$/,
    );
  });
});

describe('link configure batches', () => {
  it('leave out the announce switches of links whose netns has them, and count a partial batch in items', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nslb-state-'));
    const inputs: string[] = [];
    const run: Runner = async (argv, options) => {
      if (argv.join(' ') !== 'ip -batch -') throw new CommandError(argv, 1, 'one at a time');
      // nslb-a's netns, added (and its announcements switched on) by this driver.
      if (/^netns add|all\.arp_notify/.test(options?.input ?? '')) return { stdout: '', stderr: '' };
      inputs.push(options?.input ?? '');
      // Item b: 2 commands, item a: 1 (its netns announces); the 3rd command (a's ip -batch) fails.
      throw new CommandError(argv, 1, 'Command failed -:3');
    };
    const done: string[] = [];
    const failed: string[] = [];
    const driver = new NetnsDriver(run, dir);
    await driver.apply({ kind: 'netns.add', netns: 'nslb-test-absent-a' });
    const base = { kind: 'link.configure' as const, mac: '02:00:00:00:00:01', addresses: ['10.0.0.5/24'], removeAddresses: [], gateways: [] };
    await Promise.all(
      [
        { ...base, netns: 'nslb-test-absent-a', iface: 'nslb-va', netnsAnnounces: true as const },
        { ...base, netns: 'nslb-b', iface: 'nslb-vb' },
      ].map((a) =>
        driver.apply(a).then(
          () => done.push(a.netns),
          () => failed.push(a.netns),
        ),
      ),
    );
    // a waited for its netns's switches, so b came first: b's two commands went through, a's one failed.
    expect(inputs[0]).toBe(
      `netns exec nslb-b sysctl -q -w net.ipv4.conf.nslb-vb.arp_notify=1 net.ipv6.conf.nslb-vb.ndisc_notify=1\n` +
        `netns exec nslb-b ip -batch ${dir}/lb/nslb-b/link.batch\n` +
        `netns exec nslb-test-absent-a ip -batch ${dir}/lb/nslb-test-absent-a/link.batch\n`,
    );
    // b went through in the batch; a (where the batch stopped) was tried on its own (one ip -n), and failed there.
    expect(done).toEqual(['nslb-b']);
    expect(failed).toEqual(['nslb-test-absent-a']);
  });
});

describe('link configure batch stopped by ip', () => {
  it("counts the items whose every command went through, not ip's commands: the item it stopped in runs on its own", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nslb-state-'));
    const inputs: string[] = [];
    const run: Runner = async (argv, options) => {
      inputs.push(options?.input ?? '');
      // The batch: a's two commands, then b's; b's first (the 3rd) fails. On its own, b fails again.
      throw new CommandError(argv, 1, inputs.length === 1 ? 'Command failed -:3' : 'Command failed -:1');
    };
    const driver = new NetnsDriver(run, dir);
    const base = { kind: 'link.configure' as const, mac: '02:00:00:00:00:01', addresses: ['10.0.0.5/24'], removeAddresses: [], gateways: [] };
    const outcome = await Promise.allSettled([
      driver.apply({ ...base, netns: 'nslb-a', iface: 'nslb-va' }),
      driver.apply({ ...base, netns: 'nslb-b', iface: 'nslb-vb' }),
    ]);
    expect(outcome.map((o) => o.status)).toEqual(['fulfilled', 'rejected']);
    expect(inputs).toHaveLength(2);
    expect(inputs[1]).toBe(
      `netns exec nslb-b sysctl -q -w net.ipv4.conf.nslb-vb.arp_notify=1 net.ipv6.conf.nslb-vb.ndisc_notify=1\n` +
        `netns exec nslb-b ip -batch ${dir}/lb/nslb-b/link.batch\n`,
    );
  });
});

describe('Batcher maxBatch', () => {
  it('splits what arrives together into batches of at most maxBatch, all started at once', async () => {
    const batches: number[][] = [];
    let running = 0;
    let most = 0;
    const b = new Batcher<number>(
      async (items) => {
        batches.push(items);
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 10));
        running--;
      },
      async (i) => void batches.push([i]),
      { maxBatch: 3 },
    );
    await Promise.all([1, 2, 3, 4, 5, 6, 7].map((i) => b.submit(i)));
    expect(batches).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    expect(most).toBe(2);
  });
});

describe('observeNetnsMany', () => {
  const fixture = (name: string): string => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
  const targets = [
    { netns: 'nslb-82b3ade9d00c', iface: 'nslb82b3ade9d00' },
    { netns: 'nslb-82b3ade9d00d', iface: 'nslb82b3ade9d00' },
  ];

  it('reads every netns from one ip -batch and gives each its own three lines', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'nslb-observe-')), 'observe.batch');
    const calls: { argv: readonly string[]; input?: string }[] = [];
    const run: Runner = async (argv, options) => {
      calls.push({ argv, ...(options?.input === undefined ? {} : { input: options.input }) });
      return { stdout: fixture('ip/observe-v4.json') + fixture('ip/observe-dual.json'), stderr: '' };
    };
    const [first, second] = await observeNetnsMany(run, targets, script);
    expect(calls).toEqual([
      {
        argv: ['ip', '-batch', '-'],
        input: `netns exec nslb-82b3ade9d00c ip -j -batch ${script}\nnetns exec nslb-82b3ade9d00d ip -j -batch ${script}\n`,
      },
    ]);
    expect(readFileSync(script, 'utf8')).toBe('addr show\nroute show table all type unicast\nnetconf show\n');
    expect(first).toEqual(parseObserveNetns(targets[0]!.netns, targets[0]!.iface, fixture('ip/observe-v4.json')));
    expect(second).toEqual(parseObserveNetns(targets[1]!.netns, targets[1]!.iface, fixture('ip/observe-dual.json')));
  });

  it('refuses output that does not add up to three lines per netns (the caller reads them one by one)', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'nslb-observe-')), 'observe.batch');
    const run: Runner = async () => ({ stdout: fixture('ip/observe-v4.json'), stderr: '' });
    await expect(observeNetnsMany(run, targets, script)).rejects.toThrow(/printed 3 lines, not 6/);
  });
});

describe('deletions of load balancers removed together', () => {
  it('removes their OVS ports in one transaction, without waiting for ovs-vswitchd', async () => {
    const seen: string[][] = [];
    const run: Runner = async (argv) => {
      seen.push([...argv]);
      return { stdout: '', stderr: '', exitCode: 0 };
    };
    const ovs = new OvsDriver(run, '/var/lib/nslb');
    await Promise.all(['nslba', 'nslbb', 'nslbc'].map((iface) => ovs.apply({ kind: 'ovs.deletePort', iface })));
    expect(seen).toEqual([
      // biome-ignore format: one ovs-vsctl command per line
      [
        'ovs-vsctl', '--timeout=10', '--no-wait',
        '--', '--if-exists', 'del-port', 'nslba',
        '--', '--if-exists', 'del-port', 'nslbb',
        '--', '--if-exists', 'del-port', 'nslbc',
      ],
    ]);
  });

  it('after a failed transaction, removes each port on its own, so that the error lands on its load balancer', async () => {
    const seen: string[][] = [];
    const run: Runner = async (argv) => {
      seen.push([...argv]);
      if (argv.includes('nslbb')) throw new CommandError(argv, 1, 'ovs-vsctl: no bridge named nslbb');
      return { stdout: '', stderr: '', exitCode: 0 };
    };
    const ovs = new OvsDriver(run, '/var/lib/nslb');
    const results = await Promise.allSettled(['nslba', 'nslbb', 'nslbc'].map((iface) => ovs.apply({ kind: 'ovs.deletePort', iface })));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(seen.slice(1)).toEqual(['nslba', 'nslbb', 'nslbc'].map((i) => argvDeletePort(i)));
    expect(argvDeletePort('nslbx')).toEqual(['ovs-vsctl', '--timeout=10', '--no-wait', '--', '--if-exists', 'del-port', 'nslbx']);
  });
});

describe('Batcher serial', () => {
  it('sends the first item at once and merges what arrives while it runs into the next batch', async () => {
    const batches: number[][] = [];
    let release: () => void = () => undefined;
    const b = new Batcher<number>(
      async (items) => void batches.push(items),
      async (i) => {
        batches.push([i]);
        if (i === 1) await new Promise<void>((r) => (release = r));
      },
      { serial: true },
    );
    const first = b.submit(1);
    await new Promise((r) => setImmediate(r));
    const later = [2, 3, 4].map((i) => b.submit(i));
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1]]);
    release();
    await Promise.all([first, ...later]);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });
});
