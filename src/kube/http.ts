// How the agent's API clients talk HTTP. client-node 1.x sends every request of its generated clients with
// node-fetch 2, whose body never settles when the connection closes before a Content-Length response is complete
// (node-fetch only checks chunked responses): the request neither answers nor fails, and whatever awaits it waits
// for ever. A LoadBalancer list cut that way at start-up left an agent that never synced: it kept serving the
// load balancers that had moved away while it was down (their VIPs on two nodes). Watches are chunked, and are
// still node-fetch's (client-node's Watch).
//
// Here a response is read with Node's own HTTP client through the agent the kubeconfig builds (its TLS and
// proxy settings, its auth headers): one cut short is an error (code ECONNRESET, no HTTP status: "unreachable"
// to every caller), and one that does not end within REQUEST_TIMEOUT_MS is abandoned as an API server would
// abandon it. The callers already retry both.
//
// client-node gives every request an http(s).Agent of its own (KubeConfig.applySecurityAuthentication), so no
// connection is ever used twice: each request was a new TCP connection, and against a real API server a TLS
// handshake. The agent's kubeconfig keeps one keep-alive agent per set of connection options instead (a proxy's
// agent is left as it comes).
import { createHash } from 'node:crypto';
import {
  createConfiguration,
  KubeConfig,
  ResponseContext,
  ServerConfiguration,
  wrapHttpLibrary,
  type ApiConstructor,
  type ApiType,
  type PromiseHttpLibrary,
  type RequestContext,
} from '@kubernetes/client-node';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** An idle keep-alive connection is closed after this long (a free socket's timeout; one in use is not affected). */
const IDLE_SOCKET_MS = 4_000;

/** kube-apiserver's own bound for a request that is not a watch (--request-timeout, 1 minute). */
export const REQUEST_TIMEOUT_MS = 60_000;

export class ApiRequestError extends Error {
  override name = 'ApiRequestError';
  /** A system code (ECONNRESET, ETIMEDOUT, …): a string, so that statusCode() sees no HTTP answer. */
  readonly code: string;
  constructor(url: string, code: string, reason: string, options?: ErrorOptions) {
    super(`request to ${url} failed, reason: ${reason}`, options);
    this.code = code;
  }
}

/** client-node's PromiseHttpLibrary over node:http(s): a response counts only once its body is complete. */
export class CompleteResponseHttp implements PromiseHttpLibrary {
  readonly #timeoutMs: number;

  constructor(opts: { timeoutMs?: number } = {}) {
    this.#timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  send(ctx: RequestContext): Promise<ResponseContext> {
    const url = ctx.getUrl();
    const body = ctx.getBody();
    if (body !== undefined && typeof body !== 'string') {
      return Promise.reject(new ApiRequestError(url, 'EINVAL', 'only string request bodies are supported'));
    }
    const headers: Record<string, string> = { ...ctx.getHeaders() };
    if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
    const agent = ctx.getAgent();
    const send = new URL(url).protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (code: string, reason: string, cause?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(new ApiRequestError(url, code, reason, cause === undefined ? undefined : { cause }));
      };
      const timer = setTimeout(() => fail('ETIMEDOUT', `no complete answer within ${this.#timeoutMs} ms`), this.#timeoutMs);
      const req = send(url, { method: ctx.getHttpMethod(), headers, ...(agent === undefined ? {} : { agent }) }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail('ECONNRESET', err.message, err));
        // 'close' without 'end': the connection went before the body was complete (Content-Length or chunked).
        res.on('close', () => {
          if (!res.complete) fail('ECONNRESET', 'the connection closed before the response was complete');
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const data = Buffer.concat(chunks);
          const responseHeaders: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) responseHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
          resolve(
            new ResponseContext(res.statusCode ?? 0, responseHeaders, {
              text: async () => data.toString('utf8'),
              binary: async () => data,
            }),
          );
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'ECONNRESET', err.message, err));
      req.end(body);
    });
  }
}

/**
 * The agent's kubeconfig: the same as client-node's, but the API clients it makes read responses with
 * CompleteResponseHttp (watches and informers are unchanged).
 */
export class AgentKubeConfig extends KubeConfig {
  readonly #http: ReturnType<typeof wrapHttpLibrary>;

  constructor(opts: { requestTimeoutMs?: number } = {}) {
    super();
    this.#http = wrapHttpLibrary(new CompleteResponseHttp(opts.requestTimeoutMs === undefined ? {} : { timeoutMs: opts.requestTimeoutMs }));
  }

  /** The keep-alive agents, by the connection options of the agents client-node made. */
  readonly #agents = new Map<string, HttpAgent>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const made = context.getAgent();
    if (made !== undefined) context.setAgent(this.#pooled(made));
  }

  /** The one keep-alive agent for the options `made` was built with (a plain HTTP or HTTPS agent; others as they are). */
  #pooled(made: NonNullable<ReturnType<RequestContext['getAgent']>>): NonNullable<ReturnType<RequestContext['getAgent']>> {
    const https = made.constructor === HttpsAgent;
    if (!https && made.constructor !== HttpAgent) return made;
    const options = (made as HttpAgent & { options: Record<string, unknown> }).options;
    const hash = createHash('sha256');
    for (const k of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const) hash.update(`${k}\0${String(options[k] ?? '')}\0`);
    const key = `${https ? 'https' : 'http'}:${hash.digest('hex')}`;
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      // An idle connection is closed after 4 s, before a server that closes idle ones after 5 s (Node's default)
      // does, so that a request is not sent on a connection the server is closing.
      const pooled = { ...options, keepAlive: true, timeout: IDLE_SOCKET_MS };
      agent = https ? new HttpsAgent(pooled) : new HttpAgent(pooled);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  override makeApiClient<T extends ApiType>(apiClientType: ApiConstructor<T>): T {
    return this.#client(apiClientType, this.#http);
  }

  /** A client whose requests are abandoned after `timeoutMs` instead of REQUEST_TIMEOUT_MS. */
  makeApiClientWithTimeout<T extends ApiType>(apiClientType: ApiConstructor<T>, timeoutMs: number): T {
    return this.#client(apiClientType, wrapHttpLibrary(new CompleteResponseHttp({ timeoutMs })));
  }

  #client<T extends ApiType>(apiClientType: ApiConstructor<T>, httpApi: ReturnType<typeof wrapHttpLibrary>): T {
    const cluster = this.getCurrentCluster();
    if (!cluster) throw new Error('No active cluster!');
    return new apiClientType(createConfiguration({ baseServer: new ServerConfiguration(cluster.server, {}), authMethods: { default: this }, httpApi }));
  }
}

/**
 * An API client for Lease renewals: one request that hangs (an API server or a path to it that takes the request
 * and never answers) must not hold the renewal loop for a minute while the Lease runs out; client-go bounds each
 * renewal by the renew deadline the same way. Another KubeConfig (tests) makes its usual client.
 */
export function makeApiClientWithTimeout<T extends ApiType>(kubeConfig: KubeConfig, apiClientType: ApiConstructor<T>, timeoutMs: number): T {
  return kubeConfig instanceof AgentKubeConfig ? kubeConfig.makeApiClientWithTimeout(apiClientType, timeoutMs) : kubeConfig.makeApiClient(apiClientType);
}
