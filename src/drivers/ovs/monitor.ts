// Event-driven observation of Open vSwitch. The agent keeps one OVSDB `monitor` session open on the
// database socket (JSON-RPC, RFC 7047; no process) for the Bridge, Port and Interface columns the observer
// reads, and keeps those tables as OVSDB reports them: an observation asks no process. After a change of our
// own, a read first waits for an echo on that session (OVSDB answers it after the updates of everything
// committed before), so it never misses what we just did. When the session is down, ovs-vsctl is asked.
import { createConnection, type Socket } from 'node:net';
import { observedFromRows, type ObservedOvs, type OvsRow } from './ovs.js';

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
  Interface: { columns: ['name', 'external_ids', 'error', 'ofport'] },
};

type RowUpdate = { old?: Record<string, unknown>; new?: Record<string, unknown> };
type TableUpdates = Record<string, Record<string, RowUpdate>>;

/** One per node driver (drivers/node-driver.ts): the agent's starts it; one-shot commands always ask ovs-vsctl. */
export class OvsMonitor {
  #socket: Socket | undefined;
  /** The monitor's initial reply has arrived and the session is open. */
  #live = false;
  #stopped = true;
  /** The monitored tables as OVSDB last told us: table → uuid → row (with `_uuid`). */
  #tables = new Map<string, Map<string, OvsRow>>();
  /**
   * Set after we changed OVS ourselves: the next read first waits for an echo round trip on the monitor
   * session, which OVSDB answers only after the updates of every transaction committed before it.
   */
  #needBarrier = false;
  #barrier: Promise<boolean> | undefined;
  /** Our requests on the session (echoes, transactions) by id: their reply, or undefined when the session is lost. */
  readonly #pending = new Map<string, (reply: Message | undefined) => void>();
  /** waitForOfport callers by interface name, woken by the updates of that interface's row. */
  readonly #ofportWaiters = new Map<string, Set<() => void>>();
  #requestId = 0;
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
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.destroy();
    this.#failPending();
  }

  #failPending(): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const resolve of pending) resolve(undefined);
    this.#wakeOfportWaiters();
  }

  #wakeOfportWaiters(names?: Iterable<string>): void {
    const sets = names === undefined ? [...this.#ofportWaiters.values()] : [...names].map((n) => this.#ofportWaiters.get(n));
    for (const set of sets) for (const wake of [...(set ?? [])]) wake();
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
      for (const m of messages) this.#message(socket, m as Message);
    });
    const lost = (): void => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      if (this.#live || !this.#warned) {
        this.#log?.warn({ socket: path }, 'OVSDB monitor not connected; Open vSwitch is read with ovs-vsctl until it is');
        this.#warned = true;
      }
      this.#live = false;
      this.#failPending();
      if (!this.#stopped) {
        clearTimeout(this.#retry);
        this.#retry = setTimeout(() => this.#connect(path), 1_000);
        this.#retry.unref();
      }
    };
    socket.on('error', lost);
    socket.on('close', lost);
  }

  #message(socket: Socket, m: Message): void {
    if (m.method === 'echo') {
      socket.write(JSON.stringify({ id: m.id, result: m.params ?? [], error: null }));
    } else if (m.method === 'update') {
      const params = m.params as unknown[] | undefined;
      this.#apply(params?.[1] as TableUpdates | undefined);
    } else if (m.id === 'nslb-monitor') {
      if ((m.error === null || m.error === undefined) && typeof m.result === 'object' && m.result !== null) {
        this.#tables = new Map();
        this.#apply(m.result as TableUpdates);
        this.#live = true;
        this.#warned = false;
      } else {
        socket.destroy();
      }
    } else if (typeof m.id === 'string' && this.#pending.has(m.id)) {
      const resolve = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      resolve?.(m);
    }
  }

  #apply(updates: TableUpdates | undefined): void {
    if (updates === undefined || updates === null || typeof updates !== 'object') return;
    const interfaces = new Set<string>();
    for (const [table, rows] of Object.entries(updates)) {
      let t = this.#tables.get(table);
      if (t === undefined) {
        t = new Map();
        this.#tables.set(table, t);
      }
      for (const [uuid, row] of Object.entries(rows ?? {})) {
        // Insert and modify carry every monitored column in `new`; a delete has none.
        if (row.new === undefined) t.delete(uuid);
        else t.set(uuid, { ...row.new, _uuid: ['uuid', uuid] });
        if (table === 'Interface' && typeof row.new?.name === 'string') interfaces.add(row.new.name);
      }
    }
    if (interfaces.size > 0 && this.#ofportWaiters.size > 0) this.#wakeOfportWaiters(interfaces);
  }

  /** We changed OVS ourselves: the next read waits until the monitor has seen it. */
  invalidate(): void {
    this.#needBarrier = true;
  }

  #sync(): Promise<boolean> {
    if (!this.#needBarrier) return Promise.resolve(true);
    if (this.#barrier !== undefined) return this.#barrier;
    this.#needBarrier = false;
    const barrier = this.#request('echo', [], 2_000).then((reply) => reply !== undefined && (reply.error === null || reply.error === undefined));
    this.#barrier = barrier;
    const clear = (): void => {
      if (this.#barrier === barrier) this.#barrier = undefined;
    };
    void barrier.then(clear, clear);
    return barrier;
  }

  /** Sends a request on the session: its reply, or undefined when the session is down, is lost or the time is up. */
  #request(method: string, params: unknown[], timeoutMs: number): Promise<Message | undefined> {
    const socket = this.#socket;
    if (socket === undefined) return Promise.resolve(undefined);
    const id = `nslb-${method}-${++this.#requestId}`;
    return new Promise<Message | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.#pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      socket.write(JSON.stringify({ id, method, params }));
    });
  }

  /**
   * One OVSDB transaction on the session (RFC 7047 `transact`, database Open_vSwitch): the result of each
   * operation, or undefined when the monitor is not live or no answer came (the transaction may or may not have
   * been committed: the caller falls back to something idempotent).
   */
  async transact(operations: readonly object[], timeoutMs = 10_000): Promise<unknown[] | undefined> {
    if (!this.#live) return undefined;
    const reply = await this.#request('transact', ['Open_vSwitch', ...operations], timeoutMs);
    if (reply === undefined || (reply.error !== null && reply.error !== undefined) || !Array.isArray(reply.result)) return undefined;
    return reply.result as unknown[];
  }

  /** Whether the monitor knows a Port or an Interface of that name (false when it is not live). */
  hasPortNamed(name: string): boolean {
    if (!this.#live) return false;
    for (const table of ['Port', 'Interface']) {
      for (const row of this.#tables.get(table)?.values() ?? []) if (row.name === name) return true;
    }
    return false;
  }

  /**
   * Waits until ovs-vswitchd has taken the interface into its datapath (it has an OpenFlow port number, or an
   * error): a port added with --no-wait must not be moved away while ovs-vswitchd still sets it up. False
   * when the monitor is not live (the caller waits its own way) or the time is up.
   */
  async waitForOfport(iface: string, timeoutMs: number): Promise<boolean> {
    // Woken by the monitor's update rather than polled: a new load balancer's every step waits on this one.
    return new Promise<boolean>((resolve) => {
      const check = (): void => {
        if (!this.#live) finish(false);
        else if (this.#hasOfport(iface)) finish(true);
      };
      const finish = (ready: boolean): void => {
        clearTimeout(timer);
        const set = this.#ofportWaiters.get(iface);
        set?.delete(check);
        if (set?.size === 0) this.#ofportWaiters.delete(iface);
        resolve(ready);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      let set = this.#ofportWaiters.get(iface);
      if (set === undefined) {
        set = new Set();
        this.#ofportWaiters.set(iface, set);
      }
      set.add(check);
      check();
    });
  }

  #hasOfport(iface: string): boolean {
    for (const row of this.#tables.get('Interface')?.values() ?? []) {
      if (row.name !== iface) continue;
      if ((typeof row.ofport === 'number' && row.ofport > 0) || typeof row.error === 'string') return true;
    }
    return false;
  }

  /** What OVS holds now, from the monitor (no process); `fetch()` (ovs-vsctl) when the monitor is not live. */
  async read(fetch: () => Promise<ObservedOvs>): Promise<ObservedOvs> {
    if (this.#live && (await this.#sync()) && this.#live) {
      const rows = (table: string): OvsRow[] => [...(this.#tables.get(table)?.values() ?? [])];
      return observedFromRows(rows('Bridge'), rows('Port'), rows('Interface'));
    }
    return fetch();
  }
}

interface Message {
  id?: unknown;
  method?: string;
  error?: unknown;
  params?: unknown;
  result?: unknown;
}
