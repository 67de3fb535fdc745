#!/bin/sh
# The window of a planned handover (src/drivers/keepalived/handover.ts), in one short-lived process inside the
# load balancer's netns: new connections to the VIPs held off (the SYN drop read from stdin, given to nft),
# the connections still served waited for, then keepalived let go. A SYN dropped in this window is sent again
# by the client after 1 s, by then to the peer; so the window must stay short even when the agent, which would
# otherwise see each step end through its event loop, is starved of CPU on a busy node.
#
#   ip netns exec NETNS handover.sh NFT DRAIN_MS kill PID VIP_HEX...      SIGTERM to keepalived (it leaves)
#   ip netns exec NETNS handover.sh NFT DRAIN_MS release FILE VIP_HEX...  1 into its release file (FAULT)
#
# VIP_HEX: each VIP as /proc/net/tcp{,6} spells a local address (procNetAddress). Prints one line,
# `cut N waited MS`: connections still served when keepalived was let go, and how long the wait took. Exits
# non-zero (nothing let go) if nft refuses the drop. Counts as countServed does (handover.ts): rows of
# /proc/net/tcp{,6} whose local address is a VIP, whose local port some socket listens on, and whose state is
# still served (SYN_RECV, ESTABLISHED, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING); a closing one whose FIN is the
# only thing unacknowledged is done. Only builtins in the loop (a `sleep` between polls). Run by the agent with
# an argv, never through a shell string; POSIX sh, like scripts/ping-check.sh.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

usage() {
  echo "usage: $0 NFT DRAIN_MS kill PID VIP_HEX... | $0 NFT DRAIN_MS release FILE VIP_HEX..." >&2
  exit 2
}
[ $# -ge 5 ] || usage
nft=$1 drain_ms=$2 how=$3 target=$4
shift 4
case $drain_ms in '' | *[!0-9]*) usage ;; esac
case $how in
  kill) case $target in '' | *[!0-9]*) usage ;; esac ;;
  release) case $target in /*) ;; *) usage ;; esac ;;
  *) usage ;;
esac
vips=' '
for v in "$@"; do
  case $v in '' | *[!0-9A-F]*) usage ;; esac
  vips="$vips$v "
done
# NSLB_HANDOVER_PROC_NET: the tables' directory (tests); /proc/net is this netns's.
proc_net=${NSLB_HANDOVER_PROC_NET:-/proc/net}

# Centiseconds since boot, from /proc/uptime (no process).
now() {
  read -r up _ </proc/uptime
  fraction=${up#*.}
  cs=$((${up%.*} * 100 + ${fraction#0}))
}

served() {
  listen=' '
  for t in "$proc_net/tcp" "$proc_net/tcp6"; do
    [ -r "$t" ] || continue
    while read -r _ local _ st _; do
      if [ "$st" = 0A ]; then listen="$listen${local#*:} "; fi
    done <"$t"
  done
  n=0
  for t in "$proc_net/tcp" "$proc_net/tcp6"; do
    [ -r "$t" ] || continue
    while read -r _ local _ st queue _; do
      case $st in 01 | 03 | 04 | 08 | 09 | 0B) ;; *) continue ;; esac
      case $vips in *" ${local%:*} "*) ;; *) continue ;; esac
      case $listen in *" ${local#*:} "*) ;; *) continue ;; esac
      case $st in 04 | 09 | 0B) case ${queue%%:*} in 00000000 | 00000001) continue ;; esac ;; esac
      n=$((n + 1))
    done <"$t"
  done
}

"$nft" -f -
now
start=$cs
until=$((cs + (drain_ms + 9) / 10))
while served && [ "$n" -gt 0 ]; do
  now
  [ "$cs" -lt "$until" ] || break
  sleep 0.005
done
now
case $how in
  kill) kill -TERM "$target" 2>/dev/null || true ;;
  release) printf '1\n' >"$target" ;;
esac
echo "cut $n waited $(((cs - start) * 10))"
