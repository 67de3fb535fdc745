#!/usr/bin/env python3
# SCTP endpoints for the e2e test of kernel-forwarded SCTP listeners on a kernel without SCTP sockets
# (CONFIG_IP_SCTP unset: socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails with EPROTONOSUPPORT), where
# conntrack and NAT still handle SCTP (nf_conntrack_proto_sctp is built in). Both ends speak the first two
# steps of the SCTP handshake over raw sockets, which needs no SCTP in the kernel:
#
#   serve --name N --port P     answers every INIT to port P with an INIT-ACK whose state cookie is "N <source>"
#   ask --to VIP --port P --sport S [--timeout MS]
#                               sends one INIT from port S, prints {"sport", "name", "seenFrom"} from the
#                               INIT-ACK (which must come from VIP:P with our tag), or {"sport", "error"}
#
# A packet is only as good as its CRC32c: conntrack drops an SCTP packet whose checksum is wrong.
import json
import os
import select
import socket
import struct
import sys
import time

IPPROTO_SCTP = 132
INIT, INIT_ACK = 1, 2


def _table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE = _table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def packet(sport, dport, vtag, chunk):
    header = struct.pack('!HHII', sport, dport, vtag, 0)
    body = header + chunk
    # RFC 9260 appendix A: the CRC goes out least significant byte first.
    return body[:8] + struct.pack('<I', crc32c(body)) + body[12:]


def chunk(kind, value):
    raw = struct.pack('!BBH', kind, 0, 4 + len(value)) + value
    return raw + b'\0' * (-len(raw) % 4)


def init_like(kind, tag, params=b''):
    return chunk(kind, struct.pack('!IIHHI', tag, 65536, 1, 1, 1) + params)


def parse(data):
    """(source address, sport, dport, vtag, chunk type, chunk value) of an IPv4 packet from a raw socket."""
    ihl = (data[0] & 0x0F) * 4
    src = socket.inet_ntoa(data[12:16])
    sctp = data[ihl:]
    if len(sctp) < 16:
        return None
    sport, dport, vtag = struct.unpack('!HHI', sctp[:8])
    kind, _, length = struct.unpack('!BBH', sctp[12:16])
    return src, sport, dport, vtag, kind, sctp[16:12 + length]


def serve(name, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
    print('listening', flush=True)
    while True:
        data = s.recv(65535)
        p = parse(data)
        if p is None:
            continue
        src, sport, dport, _, kind, value = p
        if kind != INIT or dport != port or len(value) < 4:
            continue
        their_tag = struct.unpack('!I', value[:4])[0]
        cookie = f'{name} {src}'.encode()
        param = struct.pack('!HH', 7, 4 + len(cookie)) + cookie
        param += b'\0' * (-len(param) % 4)
        reply = packet(dport, sport, their_tag, init_like(INIT_ACK, int.from_bytes(os.urandom(4), 'big') | 1, param))
        s.sendto(reply, (src, 0))


def ask(to, port, sport, timeout_ms):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
    tag = int.from_bytes(os.urandom(4), 'big') | 1
    s.sendto(packet(sport, port, 0, init_like(INIT, tag)), (to, 0))
    deadline = time.monotonic() + timeout_ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        p = parse(s.recv(65535))
        if p is None:
            continue
        src, psport, pdport, vtag, kind, value = p
        if kind != INIT_ACK or vtag != tag or pdport != sport:
            continue
        if src != to or psport != port:
            return {'sport': sport, 'error': f'INIT-ACK from {src}:{psport}'}
        # Fixed INIT-ACK fields (16 bytes), then the state cookie parameter.
        ptype, plen = struct.unpack('!HH', value[16:20])
        name, seen = value[20:16 + plen].decode().split(' ')
        return {'sport': sport, 'name': name, 'seenFrom': seen}
    return {'sport': sport, 'error': 'timeout'}


def main(argv):
    args = dict(zip(argv[1::2], argv[2::2]))
    if argv[:1] == ['serve']:
        serve(args['--name'], int(args['--port']))
    elif argv[:1] == ['ask']:
        print(json.dumps(ask(args['--to'], int(args['--port']), int(args['--sport']), int(args.get('--timeout', '1000')))), flush=True)
    else:
        sys.exit('usage: sctp-raw.py serve --name N --port P | ask --to VIP --port P --sport S [--timeout MS]')


if __name__ == '__main__':
    main(sys.argv[1:])
