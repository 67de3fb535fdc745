// `--metrics-listen HOST:PORT` (Kubernetes mode): /metrics over HTTPS for callers the API server vouches
// for, as kube-rbac-proxy does. A request needs `Authorization: Bearer <token>`; the token is checked with a
// TokenReview (who is this?) and the identity with a SubjectAccessReview (may it GET the non-resource URL
// /metrics?). No token or an unknown one: 401; a known identity without the permission: 403; any other path:
// 404 after the same checks, so an unauthenticated caller learns nothing about what is served.
//
// The agent's own unauthenticated endpoints (--listen: /healthz, /readyz, /status, /metrics) belong on
// loopback; this is the one to expose to Prometheus on the node's internal address.
//
// TLS: a self-signed certificate made at start with openssl (the image ships it), key 0600 in the state dir:
// it keeps the bearer token off the wire in clear; scrapers skip verification (insecure_skip_verify), as
// they do for kube-rbac-proxy's and the kubelet's self-signed certificates. Tokens are never logged.
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { metricsTlsDir } from '../desired/state-dir.js';
import type { Runner } from '../exec/run.js';
import type { Logger } from '../log/logger.js';
import { listeningAt, parseListen } from './options.js';

/** Answers are cached this long (kube-rbac-proxy: 2 min): a scrape every 15 s costs the API server little. */
const CACHE_MS = 60_000;
const CACHE_MAX = 1_000;

export interface MetricsServerOptions {
  listen: string;
  kubeConfig: KubeConfig;
  stateDir: string;
  run: Runner;
  logger: Logger;
  render: () => Promise<{ contentType: string; body: string }>;
}

type Verdict = { code: 200 } | { code: 401 | 403 | 503; why: string };

/** Makes (once per start) the self-signed certificate the metrics endpoint serves. */
async function selfSignedCertificate(run: Runner, stateDir: string): Promise<{ key: Buffer; cert: Buffer }> {
  const dir = metricsTlsDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const key = join(dir, 'tls.key');
  const cert = join(dir, 'tls.crt');
  // biome-ignore format: openssl's options in pairs
  await run([
    'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
    '-subj', '/CN=nslb-agent-metrics', '-keyout', key, '-out', cert,
  ], { timeoutMs: 30_000 });
  return { key: await readFile(key), cert: await readFile(cert) };
}

export class TokenAuthorizer {
  readonly #authn: AuthenticationV1Api;
  readonly #authz: AuthorizationV1Api;
  readonly #cache = new Map<string, { verdict: Verdict; until: number }>();

  constructor(kubeConfig: KubeConfig) {
    this.#authn = kubeConfig.makeApiClient(AuthenticationV1Api);
    this.#authz = kubeConfig.makeApiClient(AuthorizationV1Api);
  }

  /** Whether the bearer token of this Authorization header may GET `path`. */
  async check(authorization: string | undefined, path: string): Promise<Verdict> {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (token === undefined) return { code: 401, why: 'no bearer token' };
    // Keyed by a hash: the cache holds no token.
    const id = createHash('sha256').update(token).update('\0').update(path).digest('hex');
    const hit = this.#cache.get(id);
    if (hit !== undefined && hit.until > Date.now()) return hit.verdict;
    const verdict = await this.#review(token, path);
    if (verdict.code !== 503) {
      if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
      this.#cache.set(id, { verdict, until: Date.now() + CACHE_MS });
    }
    return verdict;
  }

  async #review(token: string, path: string): Promise<Verdict> {
    try {
      const review = await this.#authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
      const user = review.status?.user;
      if (review.status?.authenticated !== true || user?.username === undefined) return { code: 401, why: 'token not authenticated' };
      const access = await this.#authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            ...(user.uid === undefined ? {} : { uid: user.uid }),
            ...(user.groups === undefined ? {} : { groups: user.groups }),
            ...(user.extra === undefined ? {} : { extra: user.extra }),
            nonResourceAttributes: { path, verb: 'get' },
          },
        },
      });
      return access.status?.allowed === true ? { code: 200 } : { code: 403, why: `${user.username} may not get ${path}` };
    } catch {
      // The API server could not be asked: refuse, and do not remember the refusal.
      return { code: 503, why: 'cannot reach the API server to check the token' };
    }
  }
}

export async function serveSecureMetrics(opts: MetricsServerOptions): Promise<Server> {
  const { host, port } = parseListen(opts.listen);
  const tls = await selfSignedCertificate(opts.run, opts.stateDir);
  const authorizer = new TokenAuthorizer(opts.kubeConfig);
  const server = createServer({ ...tls, minVersion: 'TLSv1.2' }, (req, res) => {
    const path = req.url?.split('?')[0] ?? '/';
    const send = (code: number, body: string, headers: Record<string, string> = {}): void => {
      res.writeHead(code, { 'content-type': 'text/plain', ...headers });
      res.end(body);
    };
    void (async () => {
      const verdict = await authorizer.check(req.headers.authorization, path);
      if (verdict.code === 401) return send(401, 'Unauthorized\n', { 'www-authenticate': 'Bearer realm="nslb"' });
      if (verdict.code !== 200) return send(verdict.code, verdict.code === 403 ? 'Forbidden\n' : 'Service Unavailable\n');
      if (path !== '/metrics' || req.method !== 'GET') return send(404, 'not found\n');
      const m = await opts.render();
      send(200, m.body, { 'content-type': m.contentType });
    })().catch(() => send(500, 'cannot render metrics\n'));
  });
  server.on('error', (err) => opts.logger.error({ err, listen: opts.listen }, 'cannot serve --metrics-listen'));
  server.on('listening', () => {
    opts.logger.info({ listen: listeningAt(server, opts.listen) }, 'serving /metrics over HTTPS to callers the API server authorizes (GET /metrics)');
  });
  server.listen(port, host);
  return server;
}
