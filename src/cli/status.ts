// `nslb status`: the status tree of every load balancer (or of the ones named), as `openstack loadbalancer
// status show` prints it, with each member's traffic from the agent's last `show stat`. Colour only on a
// terminal, and never with NO_COLOR or -o json/yaml. `--wait` blocks until everything shown is ACTIVE.
import yaml from 'js-yaml';
import { waitUntil } from '../loop/wait.js';
import { readStatusFile, type StatusFile, type StatusFileObject } from '../status/status-file.js';
import type { MemberStats } from '../status/status-file.js';
import type { NodeStatus } from '../api/v1alpha1/types.js';

export interface StatusFlags {
  stateDir: string;
  output: 'table' | 'json' | 'yaml';
  wait: boolean;
  timeout: number;
  /** Load balancers to show, as `namespace/name` or `name` (in any namespace); none: all of them. */
  lbs?: string[];
}

/** Where `nslb status` writes, and the environment it reads NO_COLOR from; tests pass their own. */
export interface StatusIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
  env: Record<string, string | undefined>;
}

const processIo = (): StatusIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

// ---- which load balancer an object belongs to -------------------------------------------------------

function spec(o: StatusFileObject): Record<string, unknown> {
  return (o.spec ?? {}) as Record<string, unknown>;
}

function ref(o: StatusFileObject | undefined, field: string): string | undefined {
  const v = o === undefined ? undefined : spec(o)[field];
  return typeof v === 'string' ? v : undefined;
}

/** `namespace/name` of the LoadBalancer each object hangs from (by its references); absent if dangling. */
function owners(file: StatusFile): Map<StatusFileObject, string> {
  const find = (kind: string, ns: string, name: string | undefined): StatusFileObject | undefined =>
    name === undefined ? undefined : file.objects.find((o) => o.kind === kind && o.namespace === ns && o.name === name);
  const lbName = (o: StatusFileObject | undefined): string | undefined => {
    switch (o?.kind) {
      case 'LoadBalancer':
        return o.name;
      case 'Listener':
      case 'Pool':
        return ref(o, 'loadBalancer');
      case 'Member':
      case 'HealthMonitor':
        return lbName(find('Pool', o.namespace, ref(o, 'pool')));
      case 'L7Policy':
        return lbName(find('Listener', o.namespace, ref(o, 'listener')));
      case 'L7Rule':
        return lbName(find('L7Policy', o.namespace, ref(o, 'l7Policy')));
      default:
        return undefined;
    }
  };
  const result = new Map<StatusFileObject, string>();
  for (const o of file.objects) {
    const name = lbName(o);
    if (name !== undefined) result.set(o, `${o.namespace}/${name}`);
  }
  return result;
}

/**
 * The status file cut down to the named load balancers and everything under them. A selector is
 * `namespace/name`, or a bare `name` that matches in every namespace. File errors are kept: a broken file
 * may hold the objects asked about.
 */
export function selectLoadBalancers(file: StatusFile, selectors: readonly string[]): { file: StatusFile; unmatched: string[] } {
  if (selectors.length === 0) return { file, unmatched: [] };
  const lbs = file.objects.filter((o) => o.kind === 'LoadBalancer').map((o) => `${o.namespace}/${o.name}`);
  const matches = (selector: string, key: string): boolean => (selector.includes('/') ? key === selector : key.endsWith(`/${selector}`));
  const wanted = new Set(lbs.filter((key) => selectors.some((s) => matches(s, key))));
  const unmatched = selectors.filter((s) => !lbs.some((key) => matches(s, key)));
  const owner = owners(file);
  return {
    file: { ...file, objects: file.objects.filter((o) => wanted.has(owner.get(o) ?? '')) },
    unmatched,
  };
}

// ---- the table -------------------------------------------------------------------------------------

interface Row {
  depth: number;
  label: string;
  o: StatusFileObject;
  detail: string;
}

function treeRows(file: StatusFile): Row[] {
  const byKind = (kind: string, ns: string): StatusFileObject[] => file.objects.filter((o) => o.kind === kind && o.namespace === ns);
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
          rows.push({
            depth: 3,
            label: `l7rule ${r.name}`,
            o: r,
            detail: `${not}${String(spec(r).type)}${key} ${String(spec(r).compareType)} ${String(spec(r).value)}`,
          });
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

/** 1536 → "1.5 KiB": binary units, one decimal under 10. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 || v >= 10 ? String(Math.round(v)) : v.toFixed(1);
  return `${text} ${units[i]}`;
}

type Colour = 'green' | 'yellow' | 'red' | 'dim' | 'bold';
const SGR: Record<Colour, string> = { green: '32', yellow: '33', red: '31', dim: '2', bold: '1' };

function statusColour(word: string): Colour | undefined {
  if (word === 'ACTIVE' || word === 'ONLINE') return 'green';
  if (word === 'ERROR') return 'red';
  if (word.startsWith('PENDING_') || word === 'DEGRADED' || word === 'DRAINING') return 'yellow';
  if (word === 'OFFLINE') return 'dim';
  return undefined;
}

/** HAProxy's check codes: L4OK, L6OK, L7OK, L7OKC pass; "* " marks a check in progress. */
function checkColour(code: string): Colour {
  return /^(\* )?L\dOKC?$/.test(code) ? 'green' : 'red';
}

function checkText(s: MemberStats): string {
  if (s.checkStatus === undefined) return s.state === 'no check' ? 'no check' : '';
  const passed = checkColour(s.checkStatus) === 'green';
  return passed || s.lastCheck === undefined ? s.checkStatus : `${s.checkStatus} (${s.lastCheck})`;
}

/**
 * status.nodes in a few words, MASTER first: `node1 MASTER, node2 BACKUP`; a node that is not ready says so, and
 * a role the reporting agent cannot know is a `?`.
 */
export function formatNodes(nodes: readonly NodeStatus[]): string {
  return nodes.map((n) => `${n.name} ${n.role ?? '?'}${n.ready ? '' : ' (not ready)'}`).join(', ');
}

function nodesCell(o: StatusFileObject): Cell {
  const nodes = o.status.nodes;
  if (nodes === undefined) return { text: '' };
  return { text: formatNodes(nodes), colour: nodes.every((n) => n.ready) ? undefined : 'yellow' };
}

interface Cell {
  text: string;
  colour?: Colour | undefined;
}

export interface TableOptions {
  colour: boolean;
}

export function formatStatusTable(file: StatusFile, options: TableOptions = { colour: false }): string {
  const paint = (text: string, colour: Colour | undefined): string =>
    options.colour && colour !== undefined && text !== '' ? `\u001b[${SGR[colour]}m${text}\u001b[0m` : text;
  const rows = treeRows(file);
  const shown = new Set(rows.map((r) => r.o));
  const withTraffic = file.objects.some((o) => o.stats !== undefined);
  // Only once some load balancer is placed on nodes (DESIGN §6): the table of a one-node setup is unchanged.
  const withNodes = file.objects.some((o) => o.status.nodes !== undefined);
  const header = [
    'NAME',
    'PROVISIONING',
    'OPERATING',
    ...(withNodes ? ['NODES'] : []),
    'DETAIL',
    ...(withTraffic ? ['SESSIONS', 'TOTAL', 'BYTES IN', 'BYTES OUT', 'CHECK'] : []),
  ];
  const cells = (name: string, o: StatusFileObject, detail: string): Cell[] => {
    const traffic: Cell[] = [];
    if (withTraffic) {
      const s = o.stats;
      traffic.push(
        { text: s === undefined ? '' : String(s.currentSessions) },
        { text: s === undefined ? '' : String(s.totalSessions) },
        { text: s === undefined ? '' : formatBytes(s.bytesIn) },
        { text: s === undefined ? '' : formatBytes(s.bytesOut) },
        { text: s === undefined ? '' : checkText(s), colour: s?.checkStatus === undefined ? undefined : checkColour(s.checkStatus) },
      );
    }
    return [
      { text: name },
      { text: o.status.provisioningStatus, colour: statusColour(o.status.provisioningStatus) },
      { text: o.status.operatingStatus, colour: statusColour(o.status.operatingStatus) },
      ...(withNodes ? [nodesCell(o)] : []),
      { text: detail },
      ...traffic,
    ];
  };
  const table = rows.map((r) => cells(`${'  '.repeat(r.depth)}${r.label}`, r.o, r.detail));
  // Objects that hang from nothing (a dangling reference) still need to be seen.
  for (const o of file.objects.filter((x) => !shown.has(x))) {
    table.push(cells(`${o.kind.toLowerCase()} ${o.namespace}/${o.name}`, o, '(no load balancer)'));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => (r[i]?.text ?? '').length)));
  // Padded before painting: escape codes take no room on screen.
  const line = (row: Cell[]): string =>
    row
      .map((c, i) => paint(c.text, c.colour) + ' '.repeat(Math.max(0, (widths[i] ?? 0) - c.text.length)))
      .join('  ')
      .trimEnd();
  const out = [line(header.map((text) => ({ text, colour: 'bold' as const }))), ...table.map(line)];
  for (const o of file.objects) {
    const ready = o.status.conditions.find((c) => c.type === 'Ready');
    if (ready !== undefined && ready.status !== 'True' && o.status.provisioningStatus === 'ERROR') {
      out.push(paint(`! ${o.kind} ${o.namespace}/${o.name}: ${ready.message}`, 'red'));
    }
  }
  for (const e of file.errors) out.push(paint(`! ${e.file}: document ${e.document}: ${e.message}`, 'red'));
  // The node's own conditions (kernel limits too low for its load): quiet while they hold.
  for (const c of file.node?.conditions ?? []) {
    if (c.status !== 'True') out.push(paint(`! node ${file.node!.name}: ${c.type}=${c.status} (${c.reason}): ${c.message}`, 'red'));
  }
  return `${out.join('\n')}\n`;
}

function formatStatus(file: StatusFile, output: StatusFlags['output'], colour: boolean): string {
  if (output === 'json') return `${JSON.stringify(file, null, 2)}\n`;
  if (output === 'yaml') return yaml.dump(file, { noRefs: true, lineWidth: 120 });
  return formatStatusTable(file, { colour });
}

/** https://no-color.org: any non-empty NO_COLOR turns colour off. */
export function useColour(io: StatusIo, output: StatusFlags['output']): boolean {
  return output === 'table' && io.stdout.isTTY === true && (io.env.NO_COLOR ?? '') === '';
}

// ---- --wait -----------------------------------------------------------------------------------------

type Verdict = 'done' | 'failed' | 'waiting';

function verdict(file: StatusFile): Verdict {
  if (file.errors.length > 0) return 'failed';
  if (file.objects.some((o) => o.status.provisioningStatus === 'ERROR')) return 'failed';
  if (file.objects.length > 0 && file.objects.every((o) => o.status.provisioningStatus === 'ACTIVE')) return 'done';
  return 'waiting';
}

function listSome(items: string[], max = 10): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

/** Why a wait ended without success, for stderr. */
function explainEnd(file: StatusFile | undefined, v: Verdict, flags: StatusFlags, unmatched: string[]): string {
  if (v === 'failed' && file !== undefined) {
    const broken = file.objects
      .filter((o) => o.status.provisioningStatus === 'ERROR')
      .map((o) => `${o.kind} ${o.namespace}/${o.name}: ${o.status.conditions.find((c) => c.type === 'Ready')?.message ?? 'ERROR'}`);
    const files = file.errors.map((e) => `${e.file} document ${e.document}: ${e.message}`);
    return `failed: ${listSome([...broken, ...files], 5)}`;
  }
  const head = `timed out after ${flags.timeout}s waiting for every object to be ACTIVE`;
  if (file === undefined) return `${head}: ${flags.stateDir}/status.json does not exist (is \`nslb run\` running with this --state-dir?)`;
  if (unmatched.length > 0) return `${head}: no load balancer ${unmatched.join(', ')} in status.json`;
  if (file.objects.length === 0) return `${head}: status.json lists no objects yet`;
  const pending = file.objects
    .filter((o) => o.status.provisioningStatus !== 'ACTIVE')
    .map((o) => `${o.kind} ${o.namespace}/${o.name} (${o.status.provisioningStatus})`);
  return `${head}; still pending: ${listSome(pending)}`;
}

/** Returns the process exit code. */
export async function showStatus(flags: StatusFlags, io: StatusIo = processIo(), pollMs = 250): Promise<number> {
  const selectors = flags.lbs ?? [];
  const colour = useColour(io, flags.output);
  const read = async (): Promise<{ file: StatusFile; unmatched: string[] } | undefined> => {
    try {
      return selectLoadBalancers(await readStatusFile(flags.stateDir), selectors);
    } catch {
      return undefined;
    }
  };
  if (!flags.wait) {
    const got = await read();
    if (got === undefined) {
      io.stderr.write(`no status yet: ${flags.stateDir}/status.json does not exist (is \`nslb run\` running with this --state-dir?)\n`);
      return 1;
    }
    if (got.unmatched.length > 0) {
      const known = (await readStatusFile(flags.stateDir)).objects.filter((o) => o.kind === 'LoadBalancer').map((o) => `${o.namespace}/${o.name}`);
      io.stderr.write(`no load balancer ${got.unmatched.join(', ')} in status.json (known: ${known.length === 0 ? 'none' : listSome(known, 20)})\n`);
      return 1;
    }
    io.stdout.write(formatStatus(got.file, flags.output, colour));
    return 0;
  }
  let last: { got: Awaited<ReturnType<typeof read>>; v: Verdict } = { got: undefined, v: 'waiting' };
  await waitUntil(
    async () => {
      const got = await read();
      // A load balancer asked for by name that is not there yet is waited for (its file may just have been written).
      last = { got, v: got === undefined || got.unmatched.length > 0 ? 'waiting' : verdict(got.file) };
      return last.v !== 'waiting';
    },
    { intervalMs: pollMs, timeoutMs: flags.timeout * 1000 },
  );
  const { got, v } = last;
  if (got !== undefined) io.stdout.write(formatStatus(got.file, flags.output, colour));
  if (v !== 'done') io.stderr.write(`${explainEnd(got?.file, v, flags, got?.unmatched ?? [])}\n`);
  return v === 'done' ? 0 : 1;
}
