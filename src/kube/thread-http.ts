// What the agent's Lease threads (node-lease-worker.ts, leader-worker.ts) share: the kubeconfig's credentials as
// Node's own HTTP client takes them, one kept-alive connection to the API server, and log lines written as the
// agent's logger writes them. Node's HTTP client only, never client-node: a thread that loads client-node costs
// 80 MiB (its generated API), one of these about 9. The credentials are taken on the main thread (client-node
// resolves tokens, files and plugins) and handed over again every minute, for tokens that rotate.
import { writeSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';

/** What a thread sends with: the kubeconfig's headers (Authorization) and TLS settings. */
export interface ThreadAuth {
  headers: Record<string, string>;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

/** How often the kubeconfig's credentials are handed to a thread again (a token file that rotates). */
export const AUTH_REFRESH_MS = 60_000;

/** The kubeconfig's credentials as Node's HTTP client takes them (main thread). */
export async function threadAuth(kubeConfig: KubeConfig): Promise<ThreadAuth> {
  const o: RequestOptions = {};
  await kubeConfig.applyToHTTPSOptions(o);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(o.headers ?? {})) if (typeof v === 'string') headers[k] = v;
  const one = (v: unknown): string | Buffer | undefined => (typeof v === 'string' || Buffer.isBuffer(v) ? v : undefined);
  const auth: ThreadAuth = { headers };
  const [ca, cert, key] = [one(o.ca), one(o.cert), one(o.key)];
  if (ca !== undefined) auth.ca = ca;
  if (cert !== undefined) auth.cert = cert;
  if (key !== undefined) auth.key = key;
  if (o.rejectUnauthorized !== undefined) auth.rejectUnauthorized = o.rejectUnauthorized;
  if (typeof o.servername === 'string') auth.servername = o.servername;
  return auth;
}

/**
 * A kubeconfig that names a proxy (proxy-url): a thread speaks to the API server straight, while the main thread's
 * clients go through the proxy, so the renewals stay with them.
 */
export function namesProxy(kubeConfig: KubeConfig): boolean {
  return kubeConfig.getCurrentCluster()?.proxyUrl !== undefined;
}

/** The API server's URL of a namespaced Lease. */
export function leaseUrl(kubeConfig: KubeConfig, namespace: string, name: string): string {
  const server = kubeConfig.getCurrentCluster()?.server.replace(/\/+$/, '');
  if (server === undefined) throw new Error('the kubeconfig names no cluster');
  return `${server}/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases/${encodeURIComponent(name)}`;
}

/** A Kubernetes MicroTime: RFC 3339 with microseconds. */
export const microTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '000Z');

/** One URL on the API server, over one connection kept alive (worker side). */
export class ThreadHttp {
  readonly #url: string;
  readonly #https: boolean;
  #auth: ThreadAuth;
  #agent: HttpAgent;

  constructor(url: string, auth: ThreadAuth) {
    this.#url = url;
    this.#https = new URL(url).protocol === 'https:';
    this.#auth = auth;
    this.#agent = this.#makeAgent();
  }

  #makeAgent(): HttpAgent {
    // One connection kept alive, closed after 4 s idle (before a server closing idle ones after 5 s does).
    const a = this.#auth;
    const tls = { ca: a.ca, cert: a.cert, key: a.key, rejectUnauthorized: a.rejectUnauthorized, servername: a.servername };
    return this.#https ? new HttpsAgent({ keepAlive: true, timeout: 4_000, ...tls }) : new HttpAgent({ keepAlive: true, timeout: 4_000 });
  }

  /** New credentials: the next request uses them, on a new connection. */
  setAuth(auth: ThreadAuth): void {
    this.#auth = auth;
    this.#agent.destroy();
    this.#agent = this.#makeAgent();
  }

  /** A request with a JSON body: the answer's status and body, or an error (no answer within `timeoutMs`). */
  send(method: 'PATCH' | 'PUT', contentType: string, body: string, timeoutMs: number): Promise<{ status: number; body: string }> {
    const send = this.#https ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        this.#url,
        {
          method,
          agent: this.#agent,
          timeout: timeoutMs,
          headers: { ...this.#auth.headers, 'Content-Type': contentType, Accept: 'application/json', 'Content-Length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  destroy(): void {
    this.#agent.destroy();
  }
}

const LEVELS = { info: 30, warn: 40, error: 50 } as const;
export type ThreadLogLevel = keyof typeof LEVELS;

/**
 * Log lines written from a thread, on stderr, as the agent's logger writes them (a stall must be said while the main
 * thread is stalled). `levelValue` and `bindings` are the agent logger's (pino's level number, its child bindings).
 */
export function threadLog(
  levelValue: number,
  bindings: Record<string, unknown>,
): (level: ThreadLogLevel, fields: Record<string, unknown>, msg: string) => void {
  const host = hostname();
  return (level, fields, msg) => {
    if (LEVELS[level] < levelValue) return;
    const line = { level: LEVELS[level], time: Date.now(), pid: process.pid, hostname: host, ...bindings, ...fields, msg };
    try {
      writeSync(2, `${JSON.stringify(line)}\n`);
    } catch {
      // stderr gone: nothing to say it on
    }
  };
}

/** A logger's bindings for a thread: the thread's lines carry the process's pid and hostname itself. */
export function threadBindings(bindings: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(bindings).filter(([k]) => k !== 'pid' && k !== 'hostname'));
}

/** What the main thread sends a Lease thread on its own: its heartbeat and the credentials again. */
export type ThreadFeedMessage = { type: 'alive' } | { type: 'auth'; auth: ThreadAuth };

/**
 * The main thread's side of a Lease thread (main thread): a heartbeat every `heartbeatMs` (a thread renews only
 * while it comes, so a wedged main thread lets the Lease run out) and the kubeconfig's credentials every
 * AUTH_REFRESH_MS. Neither timer holds the process open.
 */
export class ThreadFeed {
  readonly #post: (m: ThreadFeedMessage) => void;
  readonly #heartbeatMs: number;
  #heartbeat: NodeJS.Timeout | undefined;
  readonly #authTimer: NodeJS.Timeout;
  #stopped = false;

  constructor(post: (m: ThreadFeedMessage) => void, kubeConfig: KubeConfig, heartbeatMs: number, onAuthError: (err: unknown) => void) {
    this.#post = post;
    this.#heartbeatMs = heartbeatMs;
    this.#beat();
    this.#authTimer = setInterval(() => {
      threadAuth(kubeConfig).then((auth) => {
        if (!this.#stopped) post({ type: 'auth', auth });
      }, onAuthError);
    }, AUTH_REFRESH_MS);
    this.#authTimer.unref();
  }

  #beat(): void {
    this.#heartbeat = setInterval(() => this.#post({ type: 'alive' }), this.#heartbeatMs);
    this.#heartbeat.unref();
  }

  /** Tests: no heartbeat for `ms`, as from a wedged main thread, while this thread's event loop goes on. */
  silence(ms: number): void {
    clearInterval(this.#heartbeat);
    setTimeout(() => {
      if (!this.#stopped) this.#beat();
    }, ms).unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#authTimer);
  }
}
