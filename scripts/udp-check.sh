#!/bin/sh
# HAProxy external-check command for UDP-CONNECT health monitors (Octavia's udp_check.sh, with socat).
# HAProxy runs it as: udp-check.sh <proxy_addr> <proxy_port> <server_addr> <server_port>, with an empty
# environment apart from its HAPROXY_* variables, so PATH is set here. Exit status 0 = member up.
#
# One datagram goes to the member's port on a connected socket. A closed port answers with ICMP port
# unreachable, which the next read reports as "Connection refused": down. An answer, or silence for half a
# second, is up: UDP cannot tell more without speaking the service's protocol (as with Octavia, a member
# whose host is gone entirely looks up; pair it with reachability if that matters). Half a second keeps the
# check well inside the shortest `timeout check` (1 s), after which HAProxy would kill it and call it down.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

addr=${3:-$HAPROXY_SERVER_ADDR}
port=${4:-$HAPROXY_SERVER_PORT}
[ -n "$addr" ] && [ -n "$port" ] || exit 2

case $addr in
  *:*) target="UDP6:[$addr]:$port" ;;
  *) target="UDP4:$addr:$port" ;;
esac
printf 'nslb health check\n' | socat -T 1 -t 0.5 - "$target" >/dev/null 2>&1
