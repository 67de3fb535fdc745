#!/usr/bin/env node
// A load-balancer "member" for the demo and the e2e tests: answers every request with its name, so a
// client can tell which member served it.
//
//   node scripts/member-server.mjs --host 10.200.0.11 --port 8080 --name m1
//
//   any path          200 "<name>\n"
//   /healthz          200 "ok\n" (503 after /__health/fail, so tests can make a health monitor see a member
//                     go down without killing the process and the connections it holds)
//   /__health/fail    /healthz starts answering 503
//   /__health/ok      /healthz answers 200 again
//   /__echo           200 JSON {name, method, url, remoteAddress, remotePort, headers}: lets tests see what
//                     the load balancer forwarded (X-Forwarded-*, source address)
//
// It logs one line when listening and nothing per request: the demo leaves it running for hours, and tests
// push thousands of requests through it.
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '8080' },
    name: { type: 'string' },
  },
  strict: true,
});

const name = values.name;
const port = Number(values.port);
if (!name || !Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: member-server.mjs --name NAME [--host ADDR] [--port PORT]\n');
  process.exit(2);
}

let healthy = true;

function reply(res, status, body, type = 'text/plain; charset=utf-8') {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'X-Member': name,
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  // Drain any request body so keep-alive connections stay usable for the next request.
  req.resume();
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/healthz':
      return healthy ? reply(res, 200, 'ok\n') : reply(res, 503, 'unhealthy\n');
    case '/__health/fail':
      healthy = false;
      return reply(res, 200, 'healthz now 503\n');
    case '/__health/ok':
      healthy = true;
      return reply(res, 200, 'healthz now 200\n');
    case '/__echo':
      return reply(
        res,
        200,
        `${JSON.stringify({
          name,
          method: req.method,
          url: req.url,
          remoteAddress: req.socket.remoteAddress,
          remotePort: req.socket.remotePort,
          headers: req.headers,
        })}\n`,
        'application/json',
      );
    default:
      return reply(res, 200, `${name}\n`);
  }
});

// Long-lived test connections send a request every few hundred ms; Node's 5 s default would be fine, but
// a load balancer's idle connection to a member should be closed by the load balancer, not by us.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;

// A malformed request or a reset from a health check must never take the member down.
server.on('clientError', (_err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});

server.on('error', (err) => {
  process.stderr.write(`member-server ${name}: ${err.message}\n`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.closeAllConnections();
    process.exit(0);
  });
}

server.listen({ host: values.host, port }, () => {
  process.stdout.write(`member-server ${name} listening on ${values.host}:${port}\n`);
});
