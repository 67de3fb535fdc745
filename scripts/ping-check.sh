#!/bin/sh
# HAProxy external-check command for PING health monitors (Octavia's ping-wrapper.sh, in POSIX sh).
# HAProxy runs it as: ping-check.sh <proxy_addr> <proxy_port> <server_addr> <server_port>, with an empty
# environment apart from its HAPROXY_* variables, so PATH is set here. Exit status 0 = member up.
# HAProxy passes the server's traffic address, never its check `addr`, so monitorAddress cannot apply;
# Octavia pings the member address too.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

addr=${3:-$HAPROXY_SERVER_ADDR}
[ -n "$addr" ] || exit 2

# One echo, a one-second wait: HAProxy kills the check after min(delay, memberConnect) anyway, and a
# member that takes longer than a second to answer one ping is not one to send traffic to.
case $addr in
  *:*) family=-6 ;;
  *) family=-4 ;;
esac
exec ping "$family" -n -q -c 1 -W 1 -- "$addr" >/dev/null 2>&1
