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
