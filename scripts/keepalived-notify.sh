#!/bin/sh
# Reads keepalived's VRRP notify FIFO and keeps the instance's last state in a file the agent reads for
# LoadBalancer.status.nodes (MASTER, BACKUP, FAULT or STOP). A FIFO rather than a notify script per event:
# keepalived writes the events into it in order, while notify scripts run concurrently and may finish out of
# order. keepalived starts it (vrrp_notify_fifo_script, rendered by src/plan/keepalived-config.ts) as:
#
#   keepalived-notify.sh STATEFILE FIFO
#
# and each line it reads is `INSTANCE "NAME" STATE PRIORITY`. POSIX sh, like scripts/ping-check.sh.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

[ $# -eq 2 ] || exit 2
state_file=$1
fifo=$2

# Written under another name and renamed: the agent never reads half a line. The third field counts the
# changes of state since keepalived started this script (nslb_vrrp_transitions_total).
record() {
  printf '%s %s %s\n' "$1" "$2" "$3" >"$state_file.tmp" && mv -f "$state_file.tmp" "$state_file"
}
changes=0

# keepalived ends this script with SIGTERM when it stops. Opening the FIFO blocks until keepalived holds it
# open; should it ever close it, the next open waits for it again (and a FIFO removed ends the script).
while [ -p "$fifo" ]; do
  while read -r type _name state priority; do
    [ "$type" = INSTANCE ] || continue
    case $state in
      MASTER | BACKUP | FAULT | STOP)
        changes=$((changes + 1))
        record "$state" "$priority" "$changes"
        ;;
    esac
  done <"$fifo"
done
