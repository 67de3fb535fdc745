#!/usr/bin/env node
// A load-balancer "member" for the demo and the e2e tests: answers every request with its name, so a
// client can tell which member served it.
//
//   node scripts/member-server.mjs --host 10.200.0.11 --port 8080 --name m1
//
//   any path          200 "<name>\n"
//   /healthz          200 "ok\n" (503 after /__health/fail, so tests can make a health monitor see a member
//                     go down without killing the process and the connections it holds; any code after
//                     /__health/status?code=NNN). Every /healthz request is recorded for /__health/log.
//   /__health/fail    /healthz starts answering 503
//   /__health/ok      /healthz answers 200 again
//   /__health/status?code=NNN   /healthz answers NNN (200–599) from now on
//   /__health/log     200 JSON [{method, url, httpVersion, host}, …]: the last 100 /healthz requests, oldest
//                     first, so a test can see which method, path, HTTP version and Host a health check used
//   /__echo           200 JSON {name, method, url, httpVersion, remoteAddress, remotePort, localPort, tls,
//                     servername, proxy, headers}: lets tests see what the load balancer forwarded
//                     (X-Forwarded-*, source address, TLS, PROXY protocol header)
//   /__slow?ms=N      200 "<name>\n" after N ms (at most 120000): holds a connection open on purpose
//   /__inflight       200 JSON {name, inflight}: requests in progress, not counting this one
//   /__status/NNN     answers NNN (200–599) with "<name>\n"
//   /__missing…       404 "not found\n": a path the member does not have
//
// Options:
//   --tls-cert FILE --tls-key FILE   serve HTTPS instead of HTTP (PEM files), same paths
//   --tls-client-ca FILE             (with --tls-cert) demand a client certificate signed by this CA; a client
//                                    without one is refused in the handshake. /__echo shows its CN.
//   --proxy-protocol                 a connection may start with a PROXY protocol v1 or v2 header (as HAProxy's
//                                    send-proxy / send-proxy-v2 write it); it is parsed and shown as `proxy` in
//                                    /__echo. A connection without one is served as is, with proxy null, so a
//                                    test sees "no header" as a wrong value rather than as a reset.
//   --set-cookie NAME=VALUE          every response carries Set-Cookie: NAME=VALUE; Path=/ (an application
//                                    session cookie, as APP_COOKIE persistence follows)
//   --health-status NNN              the initial /healthz code (default 200)
//
// It logs one line when listening and nothing per request: the demo leaves it running for hours, and tests
// push thousands of requests through it.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '8080' },
    name: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-client-ca': { type: 'string' },
    'proxy-protocol': { type: 'boolean', default: false },
    'set-cookie': { type: 'string' },
    'health-status': { type: 'string', default: '200' },
  },
  strict: true,
});

const USAGE =
  'usage: member-server.mjs --name NAME [--host ADDR] [--port PORT] [--tls-cert FILE --tls-key FILE]\n' +
  '                         [--proxy-protocol] [--set-cookie NAME=VALUE] [--health-status NNN]\n';
const usage = (why) => {
  process.stderr.write(`member-server: ${why}\n${USAGE}`);
  process.exit(2);
};

const name = values.name;
const port = Number(values.port);
if (!name || !Number.isInteger(port) || port < 1 || port > 65535) usage('--name and a valid --port are required');
if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) usage('--tls-cert and --tls-key go together');
const cookie = values['set-cookie'];
if (cookie !== undefined && !/^[A-Za-z0-9._-]+=[A-Za-z0-9._-]+$/.test(cookie)) usage('--set-cookie takes NAME=VALUE');

const statusCode = (text) => {
  const code = Number(text);
  return Number.isInteger(code) && code >= 200 && code <= 599 ? code : undefined;
};

let healthStatus = statusCode(values['health-status']) ?? usage('--health-status takes a code 200–599');
const healthLog = [];
let inflight = 0;
/** Raw socket → parsed PROXY header (or null), for /__echo. */
const proxyHeaders = new WeakMap();

function reply(res, status, body, type = 'text/plain; charset=utf-8') {
  const headers = { 'X-Member': name };
  if (cookie !== undefined) headers['Set-Cookie'] = `${cookie}; Path=/`;
  // 204 and 304 carry no body; a Content-Length on them would be a lie the load balancer may trip over.
  if (status !== 204 && status !== 304) {
    headers['Content-Type'] = type;
    headers['Content-Length'] = Buffer.byteLength(body);
  }
  res.writeHead(status, headers);
  res.end(status === 204 || status === 304 ? undefined : body);
}

const json = (res, value) => reply(res, 200, `${JSON.stringify(value)}\n`, 'application/json');

function handle(req, res) {
  inflight++;
  res.once('close', () => inflight--);
  // Drain any request body so keep-alive connections stay usable for the next request.
  req.resume();
  const url = new URL(req.url ?? '/', 'http://member.invalid');
  const path = url.pathname;
  if (path.startsWith('/__status/')) {
    const code = statusCode(path.slice('/__status/'.length));
    return code === undefined ? reply(res, 400, 'bad status code\n') : reply(res, code, `${name}\n`);
  }
  if (path.startsWith('/__missing')) return reply(res, 404, 'not found\n');
  switch (path) {
    case '/healthz':
      healthLog.push({ method: req.method, url: req.url, httpVersion: req.httpVersion, host: req.headers.host ?? null });
      if (healthLog.length > 100) healthLog.shift();
      return reply(res, healthStatus, healthStatus < 300 ? 'ok\n' : 'unhealthy\n');
    case '/__health/fail':
      healthStatus = 503;
      return reply(res, 200, 'healthz now 503\n');
    case '/__health/ok':
      healthStatus = 200;
      return reply(res, 200, 'healthz now 200\n');
    case '/__health/status': {
      const code = statusCode(url.searchParams.get('code'));
      if (code === undefined) return reply(res, 400, 'code must be 200-599\n');
      healthStatus = code;
      return reply(res, 200, `healthz now ${code}\n`);
    }
    case '/__health/log':
      return json(res, healthLog);
    case '/__inflight':
      return json(res, { name, inflight: inflight - 1 });
    case '/__slow': {
      const ms = Math.min(Math.max(Number(url.searchParams.get('ms') ?? 1000) || 0, 0), 120_000);
      const timer = setTimeout(() => reply(res, 200, `${name}\n`), ms);
      res.once('close', () => clearTimeout(timer));
      return;
    }
    case '/__echo': {
      const raw = req.socket.encrypted ? (req.socket._parent ?? req.socket) : req.socket;
      return json(res, {
        name,
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        remoteAddress: req.socket.remoteAddress,
        remotePort: req.socket.remotePort,
        localPort: req.socket.localPort,
        tls: Boolean(req.socket.encrypted),
        servername: req.socket.servername || null,
        clientCertificate: req.socket.encrypted ? (req.socket.getPeerCertificate()?.subject?.CN ?? null) : null,
        proxy: proxyHeaders.get(raw) ?? proxyHeaders.get(req.socket) ?? null,
        headers: req.headers,
      });
    }
    default:
      return reply(res, 200, `${name}\n`);
  }
}

const server =
  values['tls-cert'] !== undefined
    ? https.createServer(
        {
          cert: readFileSync(values['tls-cert']),
          key: readFileSync(values['tls-key']),
          ...(values['tls-client-ca'] === undefined ? {} : { ca: readFileSync(values['tls-client-ca']), requestCert: true, rejectUnauthorized: true }),
        },
        handle,
      )
    : http.createServer(handle);

// Long-lived test connections send a request every few hundred ms; Node's 5 s default would be fine, but
// a load balancer's idle connection to a member should be closed by the load balancer, not by us.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;

// A malformed request or a reset from a health check must never take the member down.
server.on('clientError', (_err, socket) => {
  if (socket.writable && !socket.encrypted) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});
// A TLS-HELLO health check sends an SSLv3 hello and hangs up: a handshake error, not a reason to exit.
server.on('tlsClientError', (_err, socket) => socket.destroy());

server.on('error', (err) => {
  process.stderr.write(`member-server ${name}: ${err.message}\n`);
  process.exit(1);
});

// ---------------------------------------------------------------------------------------------------------
// PROXY protocol (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt)

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

/**
 * Parses a PROXY header at the start of `buf`. Returns { header, rest } once decided (header null when the
 * connection does not start with one), or undefined while more bytes are needed.
 */
function parseProxyHeader(buf) {
  const startsLike = (sig) => buf.subarray(0, Math.min(buf.length, sig.length)).equals(sig.subarray(0, Math.min(buf.length, sig.length)));
  if (startsLike(V2_SIGNATURE)) {
    if (buf.length < 16) return undefined;
    const length = buf.readUInt16BE(14);
    if (buf.length < 16 + length) return undefined;
    const versionCommand = buf[12];
    const family = buf[13];
    const body = buf.subarray(16, 16 + length);
    const header = {
      version: versionCommand >> 4,
      command: (versionCommand & 0x0f) === 1 ? 'PROXY' : 'LOCAL',
      protocol: family === 0x11 ? 'TCP4' : family === 0x21 ? 'TCP6' : `family 0x${family.toString(16)}`,
      sourceAddress: null,
      destinationAddress: null,
      sourcePort: null,
      destinationPort: null,
    };
    if (header.command === 'PROXY' && family === 0x11 && body.length >= 12) {
      header.sourceAddress = [...body.subarray(0, 4)].join('.');
      header.destinationAddress = [...body.subarray(4, 8)].join('.');
      header.sourcePort = body.readUInt16BE(8);
      header.destinationPort = body.readUInt16BE(10);
    } else if (header.command === 'PROXY' && family === 0x21 && body.length >= 36) {
      header.sourceAddress = ipv6(body.subarray(0, 16));
      header.destinationAddress = ipv6(body.subarray(16, 32));
      header.sourcePort = body.readUInt16BE(32);
      header.destinationPort = body.readUInt16BE(34);
    }
    return { header, rest: buf.subarray(16 + length) };
  }
  if (startsLike(V1_PREFIX)) {
    const end = buf.indexOf('\r\n');
    if (end < 0) return buf.length > 107 ? { header: { version: 1, error: 'no CRLF within 107 bytes' }, rest: buf } : undefined;
    const [, protocol, src, dst, sport, dport] = buf.subarray(0, end).toString('latin1').split(' ');
    const header =
      protocol === 'UNKNOWN'
        ? { version: 1, command: 'PROXY', protocol, sourceAddress: null, destinationAddress: null, sourcePort: null, destinationPort: null }
        : {
            version: 1,
            command: 'PROXY',
            protocol,
            sourceAddress: src ?? null,
            destinationAddress: dst ?? null,
            sourcePort: Number(sport),
            destinationPort: Number(dport),
          };
    return { header, rest: buf.subarray(end + 2) };
  }
  return { header: null, rest: buf };
}

/** 16 bytes → the canonical (compressed) text form, as Node prints a peer's address. */
function ipv6(b) {
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Accepts raw connections, strips and records a PROXY header, then hands the socket to the HTTP(S) server. */
function proxyProtocolFront() {
  return net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseProxyHeader(buf);
      if (parsed === undefined) return;
      socket.off('data', onData);
      socket.pause();
      proxyHeaders.set(socket, parsed.header);
      if (parsed.rest.length > 0) socket.unshift(parsed.rest);
      server.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
  });
}

const front = values['proxy-protocol'] ? proxyProtocolFront() : server;
if (front !== server) {
  front.on('error', (err) => {
    process.stderr.write(`member-server ${name}: ${err.message}\n`);
    process.exit(1);
  });
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.closeAllConnections();
    process.exit(0);
  });
}

front.listen({ host: values.host, port }, () => {
  const how = [values['tls-cert'] ? 'https' : 'http', values['proxy-protocol'] ? 'proxy-protocol' : ''].filter(Boolean).join('+');
  process.stdout.write(`member-server ${name} listening on ${values.host}:${port} (${how})\n`);
});
