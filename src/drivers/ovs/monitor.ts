// Event-driven observation of Open vSwitch. The agent keeps one OVSDB `monitor` session open on the
// database socket (JSON-RPC, RFC 7047; no process) for the Bridge, Port and Interface columns the observer
// reads. An `ovs-vsctl` read that no update has followed since stays valid: a member change or a quiet resync
// asks OVS nothing. Any update, a lost connection or a read that an update overtook makes the next read fetch.
import { createConnection, type Socket } from 'node:net';
import type { ObservedOvs } from './ovs.js';

export const OVSDB_SOCKET = process.env.NSLB_OVSDB_SOCKET ?? '/var/run/openvswitch/db.sock';

export interface OvsMonitorLogger {
  warn(obj: object, msg: string): void;
}

/** Splits a stream of concatenated JSON texts (OVSDB sends no delimiter) into whole values. */
export class JsonStream {
  #buffer = '';
  #depth = 0;
  #inString = false;
  #escaped = false;
  #scanned = 0;

  push(chunk: string): unknown[] {
    this.#buffer += chunk;
    const out: unknown[] = [];
    let start = 0;
    for (let i = this.#scanned; i < this.#buffer.length; i++) {
      const c = this.#buffer[i];
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (c === '\\') this.#escaped = true;
        else if (c === '"') this.#inString = false;
        continue;
      }
      if (c === '"') this.#inString = true;
      else if (c === '{' || c === '[') this.#depth++;
      else if (c === '}' || c === ']') {
        this.#depth--;
        if (this.#depth === 0) {
          out.push(JSON.parse(this.#buffer.slice(start, i + 1)));
          start = i + 1;
        }
      } else if (this.#depth === 0 && /\s/.test(c ?? '')) {
        start = i + 1;
      }
    }
    this.#buffer = this.#buffer.slice(start);
    this.#scanned = this.#buffer.length;
    return out;
  }
}

const MONITORED = {
  Bridge: { columns: ['name', 'ports'] },
  Port: { columns: ['name', 'tag', 'interfaces'] },
  Interface: { columns: ['name', 'external_ids', 'error'] },
};

/**
 * Whether an update can change what the observer reports: a bridge made, removed or renamed, and ports and interfaces named
 * like ours (`nslb…`; look-alikes included, so the observer sees them too). Other sessions' ports on the node
 * come and go without making every read fetch again.
 */
export function concernsUs(params: unknown): boolean {
  const updates = Array.isArray(params) ? (params[1] as Record<string, Record<string, { old?: { name?: unknown }; new?: { name?: unknown } }>> | undefined) : undefined;
  if (updates === undefined || typeof updates !== 'object' || updates === null) return true;
  for (const [table, rows] of Object.entries(updates)) {
    if (table === 'Bridge') {
      // A bridge made, removed or renamed; not one whose port list changed (our ports show up themselves).
      for (const row of Object.values(rows ?? {})) {
        if (row.old === undefined || row.new === undefined || 'name' in row.old) return true;
      }
      continue;
    }
    if (table !== 'Port' && table !== 'Interface') return true;
    for (const row of Object.values(rows ?? {})) {
      const names = [row.old?.name, row.new?.name].filter((n) => n !== undefined);
      if (names.length === 0 || names.some((n) => typeof n !== 'string' || n.startsWith('nslb'))) return true;
    }
  }
  return false;
}

class OvsMonitor {
  #socket: Socket | undefined;
  /** The monitor's initial reply has arrived and the session is open. */
  #live = false;
  #stopped = true;
  /** Bumped on every update, connect and disconnect: a read is valid only for the generation it began in. */
  #generation = 0;
  #cache: { generation: number; value: ObservedOvs } | undefined;
  #log: OvsMonitorLogger | undefined;
  #retry: NodeJS.Timeout | undefined;
  #warned = false;

  get active(): boolean {
    return this.#live;
  }

  start(log: OvsMonitorLogger, path = OVSDB_SOCKET): void {
    this.#log = log;
    this.#stopped = false;
    this.#connect(path);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#live = false;
    this.#cache = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.destroy();
  }

  #connect(path: string): void {
    const socket = createConnection({ path });
    this.#socket = socket;
    const stream = new JsonStream();
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(JSON.stringify({ id: 'nslb-monitor', method: 'monitor', params: ['Open_vSwitch', null, MONITORED] }));
    });
    socket.on('data', (chunk: string) => {
      let messages: unknown[];
      try {
        messages = stream.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const m of messages) this.#message(socket, m as { id?: unknown; method?: string; error?: unknown });
    });
    const lost = (): void => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#invalidate();
      if (this.#live || !this.#warned) {
        this.#log?.warn({ socket: path }, 'OVSDB monitor not connected; Open vSwitch is read on every observation until it is');
        this.#warned = true;
      }
      this.#live = false;
      if (!this.#stopped) {
        clearTimeout(this.#retry);
        this.#retry = setTimeout(() => this.#connect(path), 1_000);
        this.#retry.unref();
      }
    };
    socket.on('error', lost);
    socket.on('close', lost);
  }

  #message(socket: Socket, m: { id?: unknown; method?: string; error?: unknown; params?: unknown }): void {
    if (m.method === 'echo') {
      socket.write(JSON.stringify({ id: m.id, result: m.params ?? [], error: null }));
    } else if (m.method === 'update') {
      if (concernsUs(m.params)) this.#invalidate();
    } else if (m.id === 'nslb-monitor') {
      this.#invalidate();
      if (m.error === null || m.error === undefined) {
        this.#live = true;
        this.#warned = false;
      } else {
        socket.destroy();
      }
    }
  }

  #invalidate(): void {
    this.#generation++;
    this.#cache = undefined;
  }

  /** We changed OVS ourselves: the next read fetches, whenever the monitor's update arrives. */
  invalidate(): void {
    this.#invalidate();
  }

  /** The last read if OVS has not changed since; otherwise `fetch()`'s, kept if nothing changed meanwhile. */
  async read(fetch: () => Promise<ObservedOvs>): Promise<ObservedOvs> {
    if (this.#live && this.#cache !== undefined && this.#cache.generation === this.#generation) {
      return structuredClone(this.#cache.value);
    }
    const generation = this.#generation;
    const live = this.#live;
    const value = await fetch();
    if (live && this.#live && generation === this.#generation) this.#cache = { generation, value: structuredClone(value) };
    return value;
  }
}

/** One per process: the agent starts it; one-shot commands always ask `ovs-vsctl`. */
export const ovsMonitor = new OvsMonitor();
