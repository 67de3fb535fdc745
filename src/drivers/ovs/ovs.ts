// Open vSwitch: one `ovs-vsctl --format=json` call observes every bridge, port and interface; writes are
// single transactions with --may-exist / --if-exists so that replays are harmless.
import type { Runner } from '../../exec/run.js';
import type { ObservedOvsPort } from '../../plan/observed.js';

export const LB_MARKER = 'nslb-lb';
/** Which agent (by its state dir) made the port: its garbage collection touches only its own. */
export const STATE_DIR_MARKER = 'nslb-state-dir';
const TIMEOUT = ['--timeout=10'];

export function argvObserveOvs(): string[] {
  // biome-ignore format: one ovs-vsctl command per line
  return [
    'ovs-vsctl', ...TIMEOUT, '--format=json', '--data=json',
    '--', '--columns=name,ports', 'list', 'Bridge',
    '--', '--columns=_uuid,name,tag,interfaces', 'list', 'Port',
    '--', '--columns=_uuid,name,external_ids,error', 'list', 'Interface',
  ];
}

type OvsAtom = unknown;
interface OvsTable {
  headings: string[];
  data: OvsAtom[][];
}

function rows(table: OvsTable): Record<string, OvsAtom>[] {
  return table.data.map((row) => Object.fromEntries(table.headings.map((h, i) => [h, row[i]])));
}
function uuid(atom: OvsAtom): string {
  return Array.isArray(atom) && atom[0] === 'uuid' ? String(atom[1]) : '';
}
function uuidSet(atom: OvsAtom): string[] {
  if (Array.isArray(atom) && atom[0] === 'set') return (atom[1] as OvsAtom[]).map(uuid);
  return [uuid(atom)].filter((u) => u !== '');
}
function map(atom: OvsAtom): Map<string, string> {
  if (Array.isArray(atom) && atom[0] === 'map') return new Map(atom[1] as [string, string][]);
  return new Map();
}
function optional<T>(atom: OvsAtom): T | undefined {
  if (Array.isArray(atom) && atom[0] === 'set') return undefined; // empty optional column
  return atom as T;
}

export interface ObservedOvs {
  bridges: Set<string>;
  /** Only interfaces that carry nslb's marker. */
  ports: ObservedOvsPort[];
}

export function parseObserveOvs(stdout: string): ObservedOvs {
  const [bridgesT, portsT, ifacesT] = stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as OvsTable);
  if (bridgesT === undefined || portsT === undefined || ifacesT === undefined) {
    throw new Error('unexpected ovs-vsctl output: expected three tables');
  }
  return observedFromRows(rows(bridgesT), rows(portsT), rows(ifacesT));
}

export type OvsRow = Record<string, OvsAtom>;

/** Rows of Bridge, Port and Interface (each with `_uuid`), as ovs-vsctl or an OVSDB monitor gives them. */
export function observedFromRows(bridgeRows: readonly OvsRow[], portRows: readonly OvsRow[], ifaceRows: readonly OvsRow[]): ObservedOvs {
  const bridgeOfPort = new Map<string, string>();
  const bridges = new Set<string>();
  for (const b of bridgeRows) {
    bridges.add(String(b.name));
    for (const p of uuidSet(b.ports)) bridgeOfPort.set(p, String(b.name));
  }
  const portOfIface = new Map<string, { bridge: string; tag?: number }>();
  for (const p of portRows) {
    const tag = optional<number>(p.tag);
    const bridge = bridgeOfPort.get(uuid(p._uuid)) ?? '';
    for (const i of uuidSet(p.interfaces)) portOfIface.set(i, tag === undefined ? { bridge } : { bridge, tag });
  }
  const ports: ObservedOvsPort[] = [];
  for (const i of ifaceRows) {
    const ids = map(i.external_ids);
    const lb = ids.get(LB_MARKER);
    if (lb === undefined) continue;
    const where = portOfIface.get(uuid(i._uuid)) ?? { bridge: '' };
    const port: ObservedOvsPort = { iface: String(i.name), bridge: where.bridge, lb };
    if (where.tag !== undefined) port.tag = where.tag;
    const mac = ids.get('attached-mac');
    if (mac !== undefined) port.mac = mac;
    const stateDir = ids.get(STATE_DIR_MARKER);
    if (stateDir !== undefined) port.stateDir = stateDir;
    const error = optional<string>(i.error);
    if (error !== undefined) port.error = error;
    ports.push(port);
  }
  return { bridges, ports };
}

export async function observeOvs(run: Runner): Promise<ObservedOvs> {
  const { stdout } = await run(argvObserveOvs());
  return parseObserveOvs(stdout);
}

export interface AddPort {
  stateDir: string;
  bridge: string;
  iface: string;
  lb: string;
  mac: string;
  vlan?: number;
  ifaceId: string;
}

/**
 * One transaction: the internal port, its VLAN tag and every marker of DESIGN §2. `--no-wait`: return once the
 * database has the port, not once ovs-vswitchd has reconfigured every bridge (seconds on a node with hundreds of
 * ports). Whoever needs the device waits for it to appear instead.
 */
export function argvAddPort(p: AddPort): string[] {
  // biome-ignore format: one ovs-vsctl command per line
  return [
    'ovs-vsctl', ...TIMEOUT, '--no-wait',
    '--', '--may-exist', 'add-port', p.bridge, p.iface,
    // --may-exist ignores column arguments on an existing port, so the tag is set (or cleared) explicitly.
    ...(p.vlan === undefined ? ['--', 'clear', 'Port', p.iface, 'tag'] : ['--', 'set', 'Port', p.iface, `tag=${p.vlan}`]),
    '--', 'set', 'Interface', p.iface, 'type=internal',
    `external_ids:${LB_MARKER}=${p.lb}`,
    `external_ids:${STATE_DIR_MARKER}=${p.stateDir}`,
    `external_ids:iface-id=${p.ifaceId}`,
    `external_ids:attached-mac=${p.mac}`,
    'external_ids:iface-status=active',
  ];
}

/** Several ports in one transaction (one process, one reconfiguration of ovs-vswitchd). */
export function argvAddPorts(ports: readonly AddPort[]): string[] {
  return ['ovs-vsctl', ...TIMEOUT, '--no-wait', ...ports.flatMap((p) => argvAddPort(p).slice(2 + TIMEOUT.length))];
}

/** The external_ids of a port: every marker of DESIGN §2, the same as argvAddPort sets. */
function externalIds(p: AddPort): [string, string][] {
  return [
    [LB_MARKER, p.lb],
    [STATE_DIR_MARKER, p.stateDir],
    ['iface-id', p.ifaceId],
    ['attached-mac', p.mac],
    ['iface-status', 'active'],
  ];
}

/**
 * The OVSDB operations (RFC 7047) of argvAddPorts for ports that do not exist yet: per port an Interface and a
 * Port row, and the Port inserted into its bridge's ports, in one transaction as ovs-vsctl would send it. Made
 * on the agent's OVSDB session, they cost no process: ovs-vsctl takes about 10 ms per call, on the path of
 * every new load balancer. Port and Interface names are unique indexes of the schema, so a port that exists
 * after all fails the whole transaction (the caller then runs ovs-vsctl with --may-exist).
 */
export function addPortOperations(ports: readonly AddPort[]): object[] {
  const ops: object[] = [{ op: 'comment', comment: `nslb: add-port ${ports.map((p) => p.iface).join(' ')}` }];
  ports.forEach((p, i) => {
    ops.push(
      { op: 'insert', table: 'Interface', 'uuid-name': `iface${i}`, row: { name: p.iface, type: 'internal', external_ids: ['map', externalIds(p)] } },
      {
        op: 'insert',
        table: 'Port',
        'uuid-name': `port${i}`,
        row: { name: p.iface, interfaces: ['named-uuid', `iface${i}`], ...(p.vlan === undefined ? {} : { tag: p.vlan }) },
      },
      { op: 'mutate', table: 'Bridge', where: [['name', '==', p.bridge]], mutations: [['ports', 'insert', ['set', [['named-uuid', `port${i}`]]]]] },
    );
  });
  return ops;
}

/**
 * Whether the transaction of addPortOperations added every port: no operation failed, and each port's bridge
 * was found (a Port that no bridge took in is dropped by OVSDB's garbage collection at commit: nothing stays).
 */
export function addPortsCommitted(results: readonly unknown[], ports: readonly AddPort[]): boolean {
  if (results.length < 1 + 3 * ports.length) return false;
  if (results.some((r) => typeof r === 'object' && r !== null && 'error' in r && (r as { error: unknown }).error !== null)) return false;
  return ports.every((_, i) => (results[3 + 3 * i] as { count?: unknown } | null)?.count === 1);
}

/**
 * `--no-wait`, as for additions: the port is gone from the database when this returns, which is what every
 * observation reads; ovs-vswitchd lets go of the device when it gets to it (a device whose netns was deleted
 * meanwhile is simply gone already). Waiting for it cost a bridge reconfiguration per deletion.
 */
export function argvDeletePort(iface: string): string[] {
  return ['ovs-vsctl', ...TIMEOUT, '--no-wait', '--', '--if-exists', 'del-port', iface];
}

/** Several ports removed in one transaction (one process, one reconfiguration of ovs-vswitchd). */
export function argvDeletePorts(ifaces: readonly string[]): string[] {
  return ['ovs-vsctl', ...TIMEOUT, '--no-wait', ...ifaces.flatMap((i) => ['--', '--if-exists', 'del-port', i])];
}

export async function ensurePort(run: Runner, p: AddPort): Promise<void> {
  await run(argvAddPort(p));
}

export async function deletePort(run: Runner, iface: string): Promise<void> {
  await run(argvDeletePort(iface));
}
