// Issue 6, acceptance item 7: randomly generated VALID object sets (test/unit/fixtures/random-objects.ts)
//   (a) validate and build without a single problem;
//   (b) render, for every load balancer, a config that the real `haproxy -c` accepts;
//   (c) converge on a fake node in one round, plan → apply → plan is empty: from an empty node, from random
//       drift (HAProxy killed, netns deleted, port deleted, link down, config edited, certificate deleted, …),
//       and from the previous set's load balancers (changes and deletions).
// The seed is random and printed; NSLB_PROPERTY_SEED=<seed> reproduces a run (NSLB_PROPERTY_SETS=<n> sizes it).
import { execFile, execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateObject, formatIssue } from '../../src/api/v1alpha1/validate.js';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { buildDesired } from '../../src/desired/build.js';
import type { DesiredState } from '../../src/desired/model.js';
import type { DesiredLoadBalancer } from '../../src/desired/model.js';
import { regexProblem } from '../../src/desired/regex.js';
import { lbPaths } from '../../src/desired/state-dir.js';
import { formatAction, type Action } from '../../src/plan/actions.js';
import { renderHaproxyConfig } from '../../src/plan/haproxy-config.js';
import type { HaproxyPaths } from '../../src/plan/haproxy-words.js';
import { desiredCertificates, planLoadBalancer } from '../../src/plan/plan.js';
import { FakeNode } from '../support/fake-node.js';
import { L7_VALUE_CHARS, Random, TLS_FILES, generateObjects, regex } from './fixtures/random-objects.js';

const SEED = process.env['NSLB_PROPERTY_SEED'] === undefined ? randomInt(2 ** 31) : Number(process.env['NSLB_PROPERTY_SEED']);
const SETS = Number(process.env['NSLB_PROPERTY_SETS'] ?? 200);
const HAPROXY = '/usr/sbin/haproxy';
const PING_CHECK = fileURLToPath(new URL('../../scripts/ping-check.sh', import.meta.url));
/** What planKey renders with (src/controller/reconciler.ts): the agent's state dir layout. */
const STATE_DIR = '/var/lib/nslb';

/** Set i's own seed: a failure names it, and NSLB_PROPERTY_SEED with set index 0 is not needed to replay it. */
const seedOf = (i: number): number => (SEED + Math.imul(i, 0x9e3779b1)) >>> 0;

interface GeneratedSet {
  index: number;
  seed: number;
  docs: unknown[];
  objects: AnyObject[];
  invalid: string[];
  desired: DesiredState;
}

let dir: string;
let materials: Map<string, string>;
let sets: GeneratedSet[];

beforeAll(async () => {
  // Printed first, so that a failing run can be replayed whatever fails.
  console.log(`property test: seed ${SEED}, ${SETS} sets (NSLB_PROPERTY_SEED=${SEED} reproduces this run)`);
  dir = await mkdtemp(join(tmpdir(), 'nslb-property-'));
  // One real self-signed certificate and key, reused by every TERMINATED_HTTPS listener.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=property.test',
      '-days',
      '2',
      '-keyout',
      join(dir, 'site.key'),
      '-out',
      join(dir, 'site.crt'),
    ],
    { stdio: 'ignore', timeout: 30_000 },
  );
  const certificate = await readFile(join(dir, 'site.crt'), 'utf8');
  const key = await readFile(join(dir, 'site.key'), 'utf8');
  materials = new Map([
    [TLS_FILES.certificate, certificate],
    [TLS_FILES.key, key],
    [TLS_FILES.bundle, certificate + key],
  ]);

  sets = Array.from({ length: SETS }, (_, index) => {
    const seed = seedOf(index);
    const docs = generateObjects(new Random(seed));
    const objects: AnyObject[] = [];
    const invalid: string[] = [];
    for (const doc of docs) {
      const result = validateObject(doc);
      if (result.ok) objects.push(result.object);
      else invalid.push(`${JSON.stringify(doc)}\n  ${result.issues.map(formatIssue).join('\n  ')}`);
    }
    return { index, seed, docs, objects, invalid, desired: buildDesired(objects, { defaultBridge: 'br-int', materials }) };
  });
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const where = (s: GeneratedSet): string => `set ${s.index} (seed ${s.seed}; NSLB_PROPERTY_SEED=${SEED})`;

describe(`generated object sets (seed ${SEED})`, () => {
  it('(a) validate, and build with no problem', () => {
    for (const s of sets) {
      expect(s.invalid, where(s)).toEqual([]);
      expect(
        s.desired.problems.map((p) => `${p.kind} ${p.namespace}/${p.name} ${p.path ?? ''}: ${p.message}`),
        where(s),
      ).toEqual([]);
      const lbs = s.objects.filter((o) => o.kind === 'LoadBalancer').length;
      expect(s.desired.lbs.size, where(s)).toBe(lbs);
    }
    // The generator does reach every feature, not just the easy ones.
    const all = sets.flatMap((s) => [...s.desired.lbs.values()]);
    const listeners = all.flatMap((lb) => lb.listeners);
    const pools = all.flatMap((lb) => lb.pools);
    expect(new Set(listeners.map((l) => l.protocol)).size).toBe(4);
    expect(new Set(pools.map((p) => p.protocol)).size).toBe(5);
    expect(new Set(pools.flatMap((p) => (p.healthMonitor === undefined ? [] : [p.healthMonitor.type]))).size).toBe(5);
    expect(new Set(pools.flatMap((p) => (p.sessionPersistence === undefined ? [] : [p.sessionPersistence.type]))).size).toBe(3);
    expect(new Set(listeners.flatMap((l) => l.l7Policies.map((p) => p.action))).size).toBe(4);
    expect(new Set(listeners.flatMap((l) => l.l7Policies.flatMap((p) => p.rules.map((r) => `${r.type}/${r.compareType}`)))).size).toBeGreaterThanOrEqual(20);
    expect(all.some((lb) => lb.vip.family === 6) && all.some((lb) => lb.vip.family === 4)).toBe(true);
  });

  it('(b) render configs that the real haproxy -c accepts', async () => {
    const jobs = sets.flatMap((s) => [...s.desired.lbs.values()].map((lb) => ({ s, lb })));
    const results = await inPool(jobs, Math.max(2, availableParallelism()), async ({ s, lb }) => {
      const lbDir = join(dir, `set-${s.index}`, lb.names.netns);
      const paths: HaproxyPaths = {
        socket: join(lbDir, 'haproxy.sock'),
        stateFile: join(lbDir, 'server-state'),
        certsDir: join(lbDir, 'certs'),
        pingCheckCommand: PING_CHECK,
      };
      await mkdir(paths.certsDir, { recursive: true });
      for (const c of desiredCertificates(lb)) await writeFile(join(paths.certsDir, c.fileName), c.pem, { mode: 0o600 });
      const config = renderHaproxyConfig(lb, paths);
      await writeFile(join(lbDir, 'haproxy.cfg'), config);
      const { code, output } = await haproxyCheck(join(lbDir, 'haproxy.cfg'));
      return { s, lb, code, output, config };
    });
    const failed = results.filter((r) => r.code !== 0 || !r.output.includes('Configuration file is valid'));
    expect(
      failed.map((f) => `${where(f.s)} ${f.lb.key}:\n${f.output}\n--- haproxy.cfg ---\n${f.config}`),
      `${failed.length} of ${results.length} configs refused`,
    ).toEqual([]);

    // Warnings do not fail a check, but each kind is worth knowing about: report them.
    const warnings = new Map<string, number>();
    for (const r of results) {
      for (const w of warningsOf(r.output)) warnings.set(w, (warnings.get(w) ?? 0) + 1);
    }
    console.log(
      `haproxy -c: ${results.length} configs valid; warnings: ${warnings.size === 0 ? 'none' : [...warnings].map(([w, n]) => `\n  ${n}× ${w}`).join('')}`,
    );
    // Only the ones a valid spec may cause: a timeout of 0 (no timeout, as the schema allows).
    expect([...warnings.keys()].filter((w) => !/missing timeouts/.test(w))).toEqual([]);
  }, 180_000);

  it('(c) converge from an empty node: plan → apply → plan is empty', () => {
    for (const s of sets) {
      const node = new FakeNode();
      const first = converge(node, s.desired);
      expect(first.length, where(s)).toBeGreaterThan(0);
      expect(planAll(node, s.desired).map(formatAction), where(s)).toEqual([]);
      expectServing(node, s);
    }
  });

  it('(c) converge from random drift, in one round every time', () => {
    const seen = new Set<string>();
    for (const s of sets) {
      const r = new Random(s.seed ^ 0x5bd1e995);
      const node = new FakeNode();
      converge(node, s.desired);
      for (let round = 0; round < 5; round++) {
        const drifts: string[] = [];
        for (let n = r.int(1, 3); n > 0; n--) {
          const lb = r.pick([...s.desired.lbs.values()]);
          const [name, drift] = r.pick(Object.entries(DRIFTS));
          drift(node, lb);
          drifts.push(`${name} (${lb.key})`);
          seen.add(name);
        }
        const context = `${where(s)}, round ${round}, after ${drifts.join(', ')}`;
        expect(() => converge(node, s.desired), context).not.toThrow();
        expect(planAll(node, s.desired).map(formatAction), context).toEqual([]);
        expectServing(node, s);
      }
    }
    expect([...seen].sort()).toEqual(Object.keys(DRIFTS).sort());
  });

  it('(c) converge from the previous set: changed, added and deleted load balancers', () => {
    const node = new FakeNode();
    let previous: GeneratedSet | undefined;
    for (const s of sets) {
      // What the previous set had and this one does not is deleted (desired undefined), as the manager does.
      const gone = previous === undefined ? [] : [...previous.desired.lbs.values()].filter((lb) => !s.desired.lbs.has(lb.key));
      const context = `${where(s)} after set ${previous?.index ?? '-'}`;
      const actions = [...planAll(node, s.desired), ...gone.flatMap((lb) => planGone(node, lb))];
      expect(() => {
        for (const a of actions) node.apply(a);
      }, context).not.toThrow();
      expect([...planAll(node, s.desired), ...gone.flatMap((lb) => planGone(node, lb))].map(formatAction), context).toEqual([]);
      expectServing(node, s);
      for (const lb of gone) {
        if (s.desired.lbs.has(lb.key)) continue;
        const { netns, iface } = lb.names;
        expect([node.netns.has(netns), node.ports.has(iface), node.haproxy.has(netns), node.stateDirs.has(netns)], `${context}: ${lb.key} left behind`).toEqual(
          [false, false, false, false],
        );
      }
      previous = s;
    }
  });

  it('L7 REGEX values the build accepts are ones the real HAProxy compiles', async () => {
    const r = new Random(SEED ^ 0x27d4eb2d);
    const candidates = new Set<string>();
    // Mostly noise from the characters that mean something in a regex; some from the grammar users write.
    const noisy = `()[]{}*+?|^$.-:,=!<>aZ09_/${L7_VALUE_CHARS.slice(0, 10)}`;
    while (candidates.size < 3000) candidates.add(r.string(noisy, 1, 14));
    for (let i = 0; i < 500; i++) candidates.add(regex(r));
    const accepted = [...candidates].filter((v) => v.length <= 255 && regexProblem(v) === undefined);
    const refused = [...candidates].filter((v) => v.length <= 255 && regexProblem(v) !== undefined);

    const rejectedByHaproxy = await compileRegexes(accepted);
    expect(rejectedByHaproxy, 'accepted by the build, refused by HAProxy').toEqual([]);
    // The other way round is allowed (the check is conservative), but should stay rare: report it.
    const failing = new Set(await compileRegexes(refused));
    const wronglyRefused = refused.filter((v) => !failing.has(v));
    console.log(
      `regex check: ${accepted.length} accepted (all compile), ${refused.length} refused, of which ${wronglyRefused.length} HAProxy would have compiled` +
        wronglyRefused
          .slice(0, 5)
          .map((v) => `\n  ${JSON.stringify(v)}: ${regexProblem(v) ?? ''}`)
          .join(''),
    );
    expect(accepted.length).toBeGreaterThan(500);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------------------
// Convergence on the fake node, as planKey plans (config rendered with the agent's own paths).

function configOf(lb: DesiredLoadBalancer): string {
  return renderHaproxyConfig(lb, lbPaths(STATE_DIR, lb.names.netns));
}

function planAll(node: FakeNode, desired: DesiredState): Action[] {
  return [...desired.lbs.values()].flatMap((lb) =>
    planLoadBalancer({
      netns: lb.names.netns,
      iface: lb.names.iface,
      desired: lb,
      config: configOf(lb),
      observed: node.observe(lb.names.netns, lb.names.iface),
    }),
  );
}

function planGone(node: FakeNode, lb: DesiredLoadBalancer): Action[] {
  const { netns, iface } = lb.names;
  return planLoadBalancer({ netns, iface, observed: node.observe(netns, iface) });
}

/** One round: plan everything, apply it all. */
function converge(node: FakeNode, desired: DesiredState): Action[] {
  const actions = planAll(node, desired);
  for (const a of actions) node.apply(a);
  return actions;
}

function expectServing(node: FakeNode, s: GeneratedSet): void {
  for (const lb of s.desired.lbs.values()) {
    const { netns, iface } = lb.names;
    const link = node.links.get(iface);
    expect(node.haproxy.has(netns), `${where(s)}: ${lb.key} HAProxy`).toBe(true);
    expect(node.configs.get(netns), `${where(s)}: ${lb.key} config`).toBe(configOf(lb));
    expect(node.where.get(iface), `${where(s)}: ${lb.key} port`).toBe(netns);
    expect(link?.up && link.addresses.includes(`${lb.vip.address}/${lb.vip.prefixLength}`), `${where(s)}: ${lb.key} VIP`).toBe(true);
    expect(node.ports.get(iface)?.bridge, `${where(s)}: ${lb.key} bridge`).toBe(lb.bridge);
  }
}

/** What an operator, a crash or a bad script does to a load balancer behind the agent's back. */
const DRIFTS: Readonly<Record<string, (n: FakeNode, lb: DesiredLoadBalancer) => void>> = {
  'haproxy killed': (n, lb) => n.haproxy.delete(lb.names.netns),
  'netns deleted': (n, lb) => n.deleteNetnsByHand(lb.names.netns),
  'netns deleted and made again by hand': (n, lb) => {
    n.deleteNetnsByHand(lb.names.netns);
    n.apply({ kind: 'netns.add', netns: lb.names.netns });
  },
  'OVS port deleted': (n, lb) => n.apply({ kind: 'ovs.deletePort', iface: lb.names.iface }),
  // `ip -n NS link set X netns 1`: like every move between namespaces, it leaves the device down and
  // without addresses (the kernel flushes them).
  'port moved back to the host': (n, lb) => {
    const link = n.links.get(lb.names.iface);
    if (n.where.get(lb.names.iface) !== lb.names.netns || link === undefined) return;
    n.where.set(lb.names.iface, 'host');
    Object.assign(link, { up: false, addresses: [] });
  },
  'port moved to another bridge': (n, lb) => {
    const port = n.ports.get(lb.names.iface);
    if (port !== undefined) port.bridge = 'br-elsewhere';
  },
  'port marker and MAC rewritten': (n, lb) => {
    const port = n.ports.get(lb.names.iface);
    if (port !== undefined) Object.assign(port, { lb: 'default/someone-else', mac: '02:00:00:00:00:01' });
  },
  'VLAN tag changed': (n, lb) => {
    const port = n.ports.get(lb.names.iface);
    if (port !== undefined) port.tag = 4000;
  },
  'link down': (n, lb) => {
    const link = n.links.get(lb.names.iface);
    if (link !== undefined) link.up = false;
  },
  'VIP removed': (n, lb) => {
    const link = n.links.get(lb.names.iface);
    if (link !== undefined) link.addresses = [];
  },
  // In the netns only: FakeNode keeps a device's addresses when it moves between namespaces, where the
  // kernel flushes them, so an address added while the device sits in the host would be a fake problem.
  'extra address added': (n, lb) => {
    if (n.where.get(lb.names.iface) === lb.names.netns) n.links.get(lb.names.iface)?.addresses.push('198.18.0.1/15');
  },
  'MAC and MTU changed': (n, lb) => {
    const link = n.links.get(lb.names.iface);
    if (link !== undefined) Object.assign(link, { mac: '02:00:00:00:00:02', mtu: 1234 });
  },
  'default route changed': (n, lb) => n.gateways.set(lb.names.netns, lb.vip.family === 6 ? { 6: 'fe80::1' } : { 4: '10.9.9.9' }),
  'loopback down': (n, lb) => n.loUp.delete(lb.names.netns),
  'config edited': (n, lb) => n.configs.set(lb.names.netns, `${n.configs.get(lb.names.netns) ?? ''}    # edited by hand\n`),
  'certificate file deleted': (n, lb) => {
    const certs = n.certFiles.get(lb.names.netns);
    const first = certs === undefined ? undefined : [...certs][0];
    if (first !== undefined) certs?.delete(first);
  },
  'state dir deleted': (n, lb) => {
    n.stateDirs.delete(lb.names.netns);
    n.configs.delete(lb.names.netns);
    n.certFiles.delete(lb.names.netns);
  },
};

// ---------------------------------------------------------------------------------------------------------
// haproxy -c.

function haproxyCheck(file: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(HAPROXY, ['-c', '-f', file], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** `[WARNING]` lines, without the process id and the file position, so that equal warnings count as one. */
function warningsOf(output: string): string[] {
  return output
    .split('\n')
    .filter((l) => l.includes('[WARNING]') && !l.includes('server state file'))
    .map((l) =>
      l
        .replace(/^\[WARNING\]\s+\(\d+\)\s*:\s*/, '')
        .replace(/parsing \[[^\]]*\]/, 'parsing [...]')
        .replace(/'[^']*'/g, "'…'"),
    );
}

/** The patterns HAProxy refuses to compile, each tried in its own ACL, as renderAcl writes it. */
async function compileRegexes(patterns: readonly string[]): Promise<string[]> {
  // HAProxy stops at 50 errors in one file: a chunk must not be able to reach that.
  const chunks = Array.from({ length: Math.ceil(patterns.length / 40) }, (_, i) => patterns.slice(i * 40, i * 40 + 40));
  const refused = await inPool(chunks, Math.max(2, availableParallelism()), async (chunk) => {
    const header = [
      'defaults',
      '    mode http',
      '    timeout client 1s',
      '    timeout connect 1s',
      '    timeout server 1s',
      'frontend f',
      '    bind 127.0.0.1:8080',
    ];
    const lines = chunk.map((p, i) => `    acl a${i} path -m reg${p.startsWith('-') ? ' --' : ''} ${p}`);
    const file = join(dir, `regex-${randomInt(1e9)}.cfg`);
    await writeFile(file, `${[...header, ...lines].join('\n')}\n`);
    const { code, output } = await haproxyCheck(file);
    const bad = [...output.matchAll(/:(\d+)\] : error detected/g)].map((m) => chunk[Number(m[1]) - header.length - 1] ?? `line ${m[1]}`);
    // A failure that names no line would otherwise pass for success.
    if (code !== 0 && bad.length === 0) throw new Error(`haproxy -c failed without naming a line:\n${output}`);
    return bad;
  });
  return refused.flat();
}

async function inPool<T, R>(items: readonly T[], size: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: size }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i]!);
      }
    }),
  );
  return out;
}
