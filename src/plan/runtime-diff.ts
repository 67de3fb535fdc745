// Which config changes HAProxy's runtime API can make without a reload (pure).
//
// Two rendered configs are compared line by line. If everything but `server` lines is identical, the change
// is members only, and each server that differs becomes runtime commands: weight, address/port and
// enable → disable are `set server`; a new member is `add server` (+ `enable health`, `set server … state
// ready`); a removed one is put in maintenance and deleted; disabled → enabled is delete + add, because a
// server that was loaded with `disabled` stays in config-maintenance whatever the runtime API says (HAProxy
// 2.6 clears only the forced-maintenance flag). Anything else (a new listener, a timeout, a check option, a
// cookie, which `add server` refuses) returns undefined: a reload.
//
// HAProxy 2.6 applies no `default-server` line to servers added at runtime, so an added server gets its
// backend's `default-server` arguments spelled out first.

export interface RuntimeCommand {
  /** The command sent to the runtime socket (one line, no `;`). */
  command: string;
  /**
   * A deletion HAProxy may refuse while the server still has connections: the member is then already in
   * maintenance (no new traffic), which is what was asked, so the refusal is not an error.
   */
  mayBeRefused?: true;
  /**
   * Sent after a `set server … state ready`: HAProxy 2.6 cannot lift the maintenance of a server that was
   * loaded with `disabled` (config maintenance) at runtime, so if the server is still in it, these commands
   * (delete, then add it again) replace it.
   */
  ifConfigMaintenance?: { backend: string; server: string; commands: RuntimeCommand[] };
}

interface Section {
  header: string;
  /** Lines other than `server` lines. */
  body: string[];
  servers: Map<string, string[]>;
}

function parseSections(config: string): Section[] {
  const sections: Section[] = [];
  let current: Section | undefined;
  for (const line of config.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (!/^\s/.test(line)) {
      current = { header: line, body: [], servers: new Map() };
      sections.push(current);
      continue;
    }
    if (current === undefined) return [];
    const words = line.trim().split(/\s+/);
    if (words[0] === 'server' && words[1] !== undefined && current.header.startsWith('backend ')) {
      current.servers.set(words[1], words.slice(2));
    } else {
      current.body.push(line);
    }
  }
  return sections;
}

interface ServerArgs {
  address: string;
  port: string;
  weight: string;
  disabled: boolean;
  /** Every other word, in order: a change here means delete + add. */
  rest: string[];
}

function parseServerArgs(args: readonly string[]): ServerArgs | undefined {
  const [target, ...words] = args;
  if (target === undefined) return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(target);
  if (m === null) return undefined;
  const out: ServerArgs = { address: m[1] ?? m[2] ?? '', port: m[3] ?? '', weight: '1', disabled: false, rest: [] };
  for (let i = 0; i < words.length; i++) {
    const w = words[i] ?? '';
    if (w === 'weight') {
      out.weight = words[++i] ?? '';
    } else if (w === 'disabled') {
      out.disabled = true;
    } else {
      out.rest.push(w);
    }
  }
  return out;
}

function defaultServerArgs(section: Section): string[] {
  const line = section.body.find((l) => l.trim().startsWith('default-server '));
  return line === undefined ? [] : line.trim().split(/\s+/).slice(1);
}

function addCommands(backend: string, name: string, args: readonly string[], defaults: readonly string[]): RuntimeCommand[] {
  const parsed = parseServerArgs(args);
  if (parsed === undefined) return [];
  const id = `${backend}/${name}`;
  // The address comes first; the server's own words after the defaults, so that they win.
  const [target, ...words] = args;
  const commands: RuntimeCommand[] = [{ command: `add server ${id} ${[target, ...defaults, ...words].join(' ')}` }];
  if (parsed.rest.includes('check')) commands.push({ command: `enable health ${id}` });
  // Servers added at runtime start in maintenance.
  if (!parsed.disabled) commands.push({ command: `set server ${id} state ready` });
  return commands;
}

function deleteCommands(backend: string, name: string): RuntimeCommand[] {
  const id = `${backend}/${name}`;
  return [{ command: `set server ${id} state maint` }, { command: `del server ${id}`, mayBeRefused: true }];
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The runtime commands that turn a HAProxy running `before` into one running `after`, or undefined when
 * only a reload can. An empty list: nothing to do at runtime (the configs differ only in comments).
 */
export function runtimeCommands(before: string, after: string): RuntimeCommand[] | undefined {
  const old = parseSections(before);
  const next = parseSections(after);
  if (old.length === 0 || old.length !== next.length) return undefined;
  const commands: RuntimeCommand[] = [];
  for (let i = 0; i < old.length; i++) {
    const a = old[i]!;
    const b = next[i]!;
    if (a.header !== b.header || !same(a.body, b.body)) return undefined;
    if (!a.header.startsWith('backend ')) continue;
    const backend = a.header.slice('backend '.length).trim();
    const defaults = defaultServerArgs(b);
    // A server whose member moved from one name to another is a delete and an add: names are the identity.
    for (const [name, args] of a.servers) {
      if (!b.servers.has(name)) commands.push(...deleteCommands(backend, name));
      else {
        const change = changeCommands(backend, name, args, b.servers.get(name)!, defaults);
        if (change === undefined) return undefined;
        commands.push(...change);
      }
    }
    for (const [name, args] of b.servers) {
      if (!a.servers.has(name)) {
        const add = addCommands(backend, name, args, defaults);
        if (add.length === 0) return undefined;
        commands.push(...add);
      }
    }
  }
  return commands;
}

function changeCommands(
  backend: string,
  name: string,
  before: readonly string[],
  after: readonly string[],
  defaults: readonly string[],
): RuntimeCommand[] | undefined {
  if (same(before, after)) return [];
  const a = parseServerArgs(before);
  const b = parseServerArgs(after);
  if (a === undefined || b === undefined || !same(a.rest, b.rest)) return undefined;
  const id = `${backend}/${name}`;
  const commands: RuntimeCommand[] = [];
  if (a.address !== b.address || a.port !== b.port) {
    // Through maintenance: HAProxy 2.6 would otherwise keep reusing idle keep-alive connections to the old
    // address; entering maintenance closes them. Other members take the requests meanwhile.
    commands.push({ command: `set server ${id} state maint` }, { command: `set server ${id} addr ${b.address} port ${b.port}` });
    if (!b.disabled) commands.push({ command: `set server ${id} state ready` });
  }
  if (a.weight !== b.weight) commands.push({ command: `set server ${id} weight ${b.weight}` });
  if (!a.disabled && b.disabled) commands.push({ command: `set server ${id} state maint` });
  if (a.disabled && !b.disabled) {
    // Disabled at runtime (forced maintenance) comes back with `state ready`; loaded with `disabled` (config
    // maintenance), only a new server comes out of it: a server in maintenance has no connections to lose.
    commands.push({
      command: `set server ${id} state ready`,
      ifConfigMaintenance: {
        backend,
        server: name,
        // Deletion wants forced maintenance on top of the config one.
        commands: [{ command: `set server ${id} state maint` }, { command: `del server ${id}` }, ...addCommands(backend, name, after, defaults)],
      },
    });
  }
  return commands;
}

/**
 * The `server` lines of each backend section, keyed by the section's header line (`backend NAME`): what the
 * HAProxy driver compares to tell which servers keep their saved state across a reload.
 */
export function backendServers(config: string): Map<string, ReadonlyMap<string, readonly string[]>> {
  const result = new Map<string, ReadonlyMap<string, readonly string[]>>();
  for (const s of parseSections(config)) if (s.header.startsWith('backend ')) result.set(s.header, s.servers);
  return result;
}

/**
 * The server-state file a HAProxy loads when it starts afresh (not a reload): every health-checked server that
 * is not disabled, marked fully up. HAProxy otherwise starts a checked server "up, but down at the first failed
 * check", so one check lost while hundreds of load balancers start at once on a busy node (a neighbour not
 * resolved yet, a CPU that is not there) takes a healthy member out for `rise` intervals; fully up, it takes
 * `fall` failures in a row, as at any other time, and as a reload already carries a member seen up. Version 1
 * of the format (HAProxy's server_state.c), names only: the IDs are not compared for a global state file, the
 * address is left to the config ("-"), the port and weights are the config's so nothing is overridden.
 */
export function startingServerState(config: string): string {
  const lines = [
    '1',
    '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord',
  ];
  for (const s of parseSections(config)) {
    if (!s.header.startsWith('backend ')) continue;
    const backend = s.header.slice('backend '.length).trim();
    for (const [name, args] of s.servers) {
      const parsed = parseServerArgs(args);
      if (parsed === undefined || parsed.disabled || !args.includes('check')) continue;
      // op state 2 (running: health becomes rise + fall - 1), admin 0, check status 1 (initializing), result 0,
      // health 0 (recomputed for a running server), check state 6 (configured, enabled), agent 0, ids not forced.
      lines.push(`0 ${backend} 0 ${name} - 2 0 ${parsed.weight} ${parsed.weight} 0 1 0 0 6 0 0 0 - ${parsed.port} -`);
    }
  }
  return `${lines.join('\n')}\n`;
}
