// `nslb status`: the status tree of every load balancer, as `openstack loadbalancer status show` prints it.
import yaml from 'js-yaml';
import { readStatusFile, type StatusFile, type StatusFileObject } from '../status/status-file.js';

export interface StatusFlags {
  stateDir: string;
  output: 'table' | 'json' | 'yaml';
  wait: boolean;
  timeout: number;
}

interface Row {
  depth: number;
  label: string;
  o: StatusFileObject;
  detail: string;
}

function spec(o: StatusFileObject): Record<string, unknown> {
  return (o.spec ?? {}) as Record<string, unknown>;
}

function treeRows(file: StatusFile): Row[] {
  const byKind = (kind: string, ns: string): StatusFileObject[] =>
    file.objects.filter((o) => o.kind === kind && o.namespace === ns);
  const rows: Row[] = [];
  for (const lb of file.objects.filter((o) => o.kind === 'LoadBalancer')) {
    const ns = lb.namespace;
    rows.push({ depth: 0, label: `loadbalancer ${ns}/${lb.name}`, o: lb, detail: `vip ${lb.status.vip ?? ''} netns ${lb.status.netns ?? ''}` });
    const pools = byKind('Pool', ns).filter((p) => spec(p).loadBalancer === lb.name);
    const poolRows = (pool: StatusFileObject, depth: number): void => {
      rows.push({ depth, label: `pool ${pool.name}`, o: pool, detail: `${String(spec(pool).protocol)} ${String(spec(pool).lbAlgorithm)}` });
      for (const hm of byKind('HealthMonitor', ns).filter((h) => spec(h).pool === pool.name)) {
        rows.push({ depth: depth + 1, label: `healthmonitor ${hm.name}`, o: hm, detail: String(spec(hm).type) });
      }
      for (const m of byKind('Member', ns).filter((x) => spec(x).pool === pool.name)) {
        rows.push({ depth: depth + 1, label: `member ${m.name}`, o: m, detail: `${String(spec(m).address)}:${String(spec(m).port)}` });
      }
    };
    const shown = new Set<string>();
    for (const l of byKind('Listener', ns).filter((x) => spec(x).loadBalancer === lb.name)) {
      rows.push({ depth: 1, label: `listener ${l.name}`, o: l, detail: `${String(spec(l).protocol)}:${String(spec(l).port)}` });
      const policies = byKind('L7Policy', ns)
        .filter((p) => spec(p).listener === l.name)
        .sort((a, b) => Number(spec(a).position ?? Infinity) - Number(spec(b).position ?? Infinity) || a.name.localeCompare(b.name));
      for (const p of policies) {
        const target = spec(p).redirectPool ?? spec(p).redirectUrl ?? spec(p).redirectPrefix;
        rows.push({ depth: 2, label: `l7policy ${p.name}`, o: p, detail: `${String(spec(p).action)}${target === undefined ? '' : ` ${String(target)}`}` });
        for (const r of byKind('L7Rule', ns).filter((x) => spec(x).l7Policy === p.name)) {
          const key = spec(r).key === undefined ? '' : ` ${String(spec(r).key)}`;
          const not = spec(r).invert === true ? 'NOT ' : '';
          rows.push({ depth: 3, label: `l7rule ${r.name}`, o: r, detail: `${not}${String(spec(r).type)}${key} ${String(spec(r).compareType)} ${String(spec(r).value)}` });
        }
      }
      const pool = pools.find((p) => p.name === spec(l).defaultPool);
      if (pool !== undefined) {
        poolRows(pool, 2);
        shown.add(pool.name);
      }
    }
    for (const p of pools.filter((x) => !shown.has(x.name))) poolRows(p, 1);
  }
  return rows;
}

export function formatStatusTable(file: StatusFile): string {
  const rows = treeRows(file);
  const shown = new Set(rows.map((r) => r.o));
  const header = ['NAME', 'PROVISIONING', 'OPERATING', 'DETAIL'];
  const table = rows.map((r) => [`${'  '.repeat(r.depth)}${r.label}`, r.o.status.provisioningStatus, r.o.status.operatingStatus, r.detail]);
  // Objects that hang from nothing (a dangling reference) still need to be seen.
  for (const o of file.objects.filter((x) => !shown.has(x))) {
    table.push([`${o.kind.toLowerCase()} ${o.namespace}/${o.name}`, o.status.provisioningStatus, o.status.operatingStatus, '(no load balancer)']);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const out = [line(header), ...table.map(line)];
  for (const o of file.objects) {
    const ready = o.status.conditions.find((c) => c.type === 'Ready');
    if (ready !== undefined && ready.status !== 'True' && o.status.provisioningStatus === 'ERROR') {
      out.push(`! ${o.kind} ${o.namespace}/${o.name}: ${ready.message}`);
    }
  }
  for (const e of file.errors) out.push(`! ${e.file}: document ${e.document}: ${e.message}`);
  return `${out.join('\n')}\n`;
}

function formatStatus(file: StatusFile, output: StatusFlags['output']): string {
  if (output === 'json') return `${JSON.stringify(file, null, 2)}\n`;
  if (output === 'yaml') return yaml.dump(file, { noRefs: true, lineWidth: 120 });
  return formatStatusTable(file);
}

type Verdict = 'done' | 'failed' | 'waiting';

function verdict(file: StatusFile): Verdict {
  if (file.errors.length > 0) return 'failed';
  if (file.objects.some((o) => o.status.provisioningStatus === 'ERROR')) return 'failed';
  if (file.objects.length > 0 && file.objects.every((o) => o.status.provisioningStatus === 'ACTIVE')) return 'done';
  return 'waiting';
}

/** Returns the process exit code. */
export async function showStatus(flags: StatusFlags): Promise<number> {
  const read = async (): Promise<StatusFile | undefined> => {
    try {
      return await readStatusFile(flags.stateDir);
    } catch {
      return undefined;
    }
  };
  if (!flags.wait) {
    const file = await read();
    if (file === undefined) {
      process.stderr.write(`no status yet: ${flags.stateDir}/status.json does not exist (is \`nslb run\` running with this --state-dir?)\n`);
      return 1;
    }
    process.stdout.write(formatStatus(file, flags.output));
    return 0;
  }
  const until = Date.now() + flags.timeout * 1000;
  for (;;) {
    const file = await read();
    const v = file === undefined ? 'waiting' : verdict(file);
    if (v !== 'waiting' || Date.now() > until) {
      if (file !== undefined) process.stdout.write(formatStatus(file, flags.output));
      if (v === 'waiting') process.stderr.write(`timed out after ${flags.timeout}s waiting for every object to be ACTIVE\n`);
      return v === 'done' ? 0 : 1;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
