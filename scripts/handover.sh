#!/bin/bash
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
# only thing unacknowledged is done. Only builtins in the loop: bash, for its clock ($EPOCHREALTIME) and a
# timed `read` to wait between polls without a process (a `sleep` per poll, 200 a second in each of a node's
# concurrent handovers, took the CPU the handovers were waiting for). Run by the agent with an argv, never
# through a shell string.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL

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

# Microseconds (bash's clock, no process).
now() {
  us=${EPOCHREALTIME/./}
}
# Waits 5 ms: a timed read on a pipe this shell holds both ends of (one process, once, for the pipe).
exec 3<> <(:)
pause() {
  read -r -t 0.005 -u 3 _ || true
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
start=$us
until=$((us + drain_ms * 1000))
while served && [ "$n" -gt 0 ]; do
  now
  [ "$us" -lt "$until" ] || break
  pause
done
now
case $how in
  kill) kill -TERM "$target" 2>/dev/null || true ;;
  release) printf '1\n' >"$target" ;;
esac
echo "cut $n waited $(((us - start) / 1000))"
