#!/bin/sh
# HAProxy external-check command for SCTP health monitors (Octavia's SCTP check: INIT, and an INIT-ACK back
# means up), with nmap's SCTP INIT scan. HAProxy runs it as: sctp-check.sh <proxy_addr> <proxy_port>
# <server_addr> <server_port>, with an empty environment apart from its HAPROXY_* variables, so PATH is set
# here. Exit status 0 = member up.
#
# nmap sends the INIT from a raw socket, so this works on a node whose kernel has no SCTP stack at all (only
# conntrack's SCTP tracker is needed, for forwarding). "open" is an INIT-ACK; "closed" (an ABORT) and
# "filtered" (no answer, or ICMP unreachable) are down. One try within a second, inside the shortest
# `timeout check` (1 s), after which HAProxy would kill the check and call it down anyway.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

addr=${3:-$HAPROXY_SERVER_ADDR}
port=${4:-$HAPROXY_SERVER_PORT}
[ -n "$addr" ] && [ -n "$port" ] || exit 2

case $addr in
  *:*) family=-6 ;;
  *) family=-4 ;;
esac
out=$(nmap "$family" -sY -Pn -n -p "$port" --max-retries 0 --max-rtt-timeout 800ms -oG - -- "$addr" 2>/dev/null) || exit 1
case $out in
  *"Ports: $port/open/sctp"*) exit 0 ;;
  *) exit 1 ;;
esac
