#!/bin/sh
# keepalived's track scripts for ACTIVE_STANDBY load balancers: exit 0 while this node's HAProxy serves, so that
# a MASTER whose HAProxy died or hangs goes to FAULT and its peer takes the VIP (Octavia's haproxy-vrrp-check).
# keepalived runs it as root with an argv (no shell) rendered by src/plan/keepalived-config.ts, as two scripts:
#
#   haproxy-vrrp-check.sh PIDFILE          every second: HAProxy's master is alive (shell builtins only)
#   haproxy-vrrp-check.sh PIDFILE SOCKET   every few seconds: that, and its runtime API answers
#
# PIDFILE is HAProxy's (the master's PID), SOCKET its runtime API. The one-argument form starts no process but
# the shell keepalived execs: it runs every second in every load balancer, where a `socat` would cost several
# times the rest. POSIX sh, like scripts/ping-check.sh.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

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
[ $# -eq 1 ] && exit 0
sock=$2

# A live master whose worker does not answer its runtime API does not serve either (hung, or wait mode after a
# reload that failed). Asked up to 5 times over about 1.5 s: during a reload (a config change, or the peer
# node replaced in the placement) the socket passes to the new worker, which on a busy node takes a while, and a
# failure here moves the VIP.
query() {
  socat -T 1 - "UNIX-CONNECT:$sock" 2>/dev/null <<'END'
show info
END
}
for attempt in 1 2 3 4 5; do
  case $(query) in
    *'Pid: '*) exit 0 ;;
  esac
  [ "$attempt" -eq 5 ] || sleep 0.3
done
exit 1
