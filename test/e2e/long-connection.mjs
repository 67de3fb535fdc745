// Child process for harness.openLongConnection(): runs inside the client netns and holds ONE TCP connection,
// sending an HTTP/1.1 keep-alive request every --interval ms after the previous answer. It proves an existing
// connection survives a reconcile (reload, member change), which a fresh curl per request cannot show.
//
// Reports one JSON line per event on stdout: connected, response {status, body}, closed, error. It never
// reconnects: a new connection would hide exactly the failure the test is looking for.
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    path: { type: 'string', default: '/' },
    interval: { type: 'string', default: '200' },
  },
  strict: true,
});
const host = values.host;
const port = Number(values.port);
const intervalMs = Number(values.interval);

const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const request =
  `GET ${values.path} HTTP/1.1\r\n` +
  `Host: ${host.includes(':') ? `[${host}]` : host}:${port}\r\n` +
  'Connection: keep-alive\r\n' +
  'User-Agent: nslb-e2e-long-connection\r\n\r\n';

const socket = net.connect({ host, port });
socket.setNoDelay(true);
let buffer = Buffer.alloc(0);
let timer;

socket.on('connect', () => {
  report({ event: 'connected', localPort: socket.localPort });
  socket.write(request);
});

// Members and HAProxy both answer with Content-Length; chunked bodies are not needed here, and a response
// this parser cannot frame is reported as an error rather than silently mis-split.
socket.on('data', (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (;;) {
    const headerEnd = buffer.indexOf('\r\n\r\n');
    if (headerEnd < 0) return;
    const head = buffer.subarray(0, headerEnd).toString('latin1');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? NaN);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!Number.isInteger(status) || !length) {
      report({ event: 'error', message: `cannot frame response: ${JSON.stringify(head.slice(0, 200))}` });
      socket.destroy();
      return;
    }
    const total = headerEnd + 4 + Number(length[1]);
    if (buffer.length < total) return;
    const body = buffer.subarray(headerEnd + 4, total).toString('utf8');
    buffer = buffer.subarray(total);
    report({ event: 'response', status, body });
    timer = setTimeout(() => socket.write(request), intervalMs);
  }
});

socket.on('error', (err) => report({ event: 'error', message: err.message }));
socket.on('close', (hadError) => {
  clearTimeout(timer);
  report({ event: 'closed', hadError });
  process.exit(0);
});

process.on('SIGTERM', () => {
  clearTimeout(timer);
  socket.destroy();
  process.exit(0);
});
