#!/usr/bin/env node
// A UDP "member" for the e2e tests and the demo: answers every datagram with its name, the source address it
// saw and what it got ("<name> <source> <payload>"), so a client can tell which member served it and from
// which address the member saw the request come.
//
//   node scripts/udp-echo-server.mjs --host 10.221.0.11 --port 5353 --name m1
//
// It logs one line when listening and nothing per datagram.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { host: { type: 'string', default: '0.0.0.0' }, port: { type: 'string', default: '5353' }, name: { type: 'string' } },
  strict: true,
});
const port = Number(values.port);
if (values.name === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: udp-echo-server.mjs --name NAME [--host ADDR] [--port PORT]\n');
  process.exit(2);
}
const socket = dgram.createSocket(isIPv6(values.host) ? 'udp6' : 'udp4');
socket.on('message', (msg, rinfo) => {
  socket.send(`${values.name} ${rinfo.address} ${msg.toString('utf8').slice(0, 200)}`, rinfo.port, rinfo.address);
});
socket.on('error', (error) => {
  process.stderr.write(`udp-echo-server: ${error.message}\n`);
  process.exit(1);
});
socket.bind(port, values.host, () => process.stdout.write(`listening on ${values.host}:${port} as ${values.name}\n`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => socket.close(() => process.exit(0)));
