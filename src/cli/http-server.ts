// `--listen HOST:PORT`: the agent's unauthenticated endpoints, for the node itself (keep it on loopback):
// /healthz, /readyz (the initial sync is done), /status (status.json with the members' figures), /metrics.
import { createServer, type Server } from 'node:http';
import type { Logger } from '../log/logger.js';
import type { StatusFile } from '../status/status-file.js';
import { isLoopback, listeningAt, parseListen } from './options.js';

export interface AgentEndpoints {
  ready(): boolean;
  status(): StatusFile | undefined;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export function serveHttp(listen: string, endpoints: AgentEndpoints, logger: Logger): Server {
  const { host, port } = parseListen(listen);
  if (!isLoopback(host)) {
    logger.warn({ listen }, "--listen is not on loopback: /status (every load balancer's spec) and /metrics answer anyone who reaches it, unauthenticated");
  }
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    switch (req.url?.split('?')[0]) {
      case '/metrics':
        void endpoints.metrics().then(
          (m) => send(200, m.body, m.contentType),
          (err: unknown) => send(500, `cannot render metrics: ${String(err)}\n`),
        );
        return;
      case '/healthz':
        return send(200, 'ok\n');
      case '/readyz':
        return endpoints.ready() ? send(200, 'ok\n') : send(503, 'initial sync in progress\n');
      case '/status':
        return send(200, `${JSON.stringify(endpoints.status() ?? { objects: [], errors: [] }, null, 2)}\n`, 'application/json');
      default:
        return send(404, 'not found\n');
    }
  });
  server.listen(port, host);
  server.on('listening', () => logger.info({ listen: listeningAt(server, listen) }, 'serving /healthz, /readyz, /status, /metrics'));
  server.on('error', (err) => logger.error({ err, listen }, 'cannot serve health endpoints'));
  return server;
}
