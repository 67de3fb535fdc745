#!/bin/sh
# keepalived's backstop track script for ACTIVE_STANDBY load balancers: exit 0 while this node's HAProxy master
# lives, so that a MASTER whose HAProxy died goes to FAULT and its peer takes the VIP even while the agent is
# down (Octavia's haproxy-vrrp-check). While the agent runs, it judges HAProxy itself, in-process (its master
# every second, its runtime API every 5 s: src/drivers/keepalived/haproxy-health.ts), and keepalived follows the
# verdict through a track file. keepalived runs this as root, every 5 s, with an argv (no shell) rendered by
# src/plan/keepalived-config.ts:
#
#   haproxy-vrrp-check.sh PIDFILE [SOCKET]
#
# PIDFILE is HAProxy's (the master's PID). It starts no process but the shell keepalived execs: it runs in every
# load balancer. POSIX sh, like scripts/ping-check.sh.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# A second argument (the runtime socket) is accepted and not asked: keepalived processes that still run an older
# agent's config, which asked the socket from here every 5 s, keep passing on a live HAProxy until the new agent
# rewrites their config and reloads them, instead of failing every pair of the node during an upgrade.
[ $# -eq 1 ] || [ $# -eq 2 ] || exit 2

# A dead master is the common failure (a crash, a kill): answered without starting anything. Dead includes a
# zombie, which `kill -0` would call alive: a daemon's parent here may be slow to reap it, or never do it. The
# state is the field after the command name, which ends at the last ") " of /proc/PID/stat.
{ read -r pid <"$1"; } 2>/dev/null || exit 1
case $pid in
  '' | *[!0-9]*) exit 1 ;;
esac
{ read -r stat <"/proc/$pid/stat"; } 2>/dev/null || exit 1
case ${stat##*') '} in
  Z* | X* | '') exit 1 ;;
esac
exit 0
