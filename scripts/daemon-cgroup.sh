#!/bin/sh
# Runs a daemon's start command (`ip netns exec … haproxy -D …`, `ip -batch`) from a cgroup of the host's
# own, so that the daemon outlives the agent's container: a container runtime kills every process left in a
# container's cgroup when it removes the container, whatever PID namespace they are in.
#
#   daemon-cgroup.sh CGROUP COMMAND [ARG…]
#   daemon-cgroup.sh --move CGROUP PID…     the agent's drift repair: daemons moved out by hand go back
#   daemon-cgroup.sh --remove CGROUP        `nslb cleanup --daemon-cgroup`: the directories, once empty
#
# CGROUP is a path in the host's cgroup tree (`/nslb`), which must be mounted at /sys/fs/cgroup (the chart
# and scripts/run-image.sh mount the host's there). On cgroup v1 the process moves in every hierarchy (a
# runtime or the kubelet may look for leftovers in any of them). A container in a cgroup namespace of its own
# (cgroup v2's default) cannot move a process outside it, so the script first joins PID 1's (hostPID).
# Run by the agent with an argv, never through a shell string; POSIX sh, like scripts/ping-check.sh.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

usage() {
  echo "usage: $0 CGROUP COMMAND [ARG...]    start COMMAND in CGROUP" >&2
  echo "       $0 --move CGROUP PID...       put running processes back into CGROUP (drift repair)" >&2
  echo "       $0 --remove CGROUP            remove CGROUP's directories once empty (cleanup)" >&2
  exit 2
}
mode=start
case ${1:-} in
  --move) mode=move; shift; [ $# -ge 2 ] || usage ;;
  --remove) mode=remove; shift; [ $# -eq 1 ] || usage ;;
  *) [ $# -ge 2 ] || usage ;;
esac
cgroup=$1
case $cgroup in
  /*) ;;
  *) echo "$0: CGROUP must be an absolute path in the cgroup tree (got \"$cgroup\")" >&2; exit 2 ;;
esac
case $cgroup in
  */../*|*/..|*//*) echo "$0: CGROUP must not hold .. or // (got \"$cgroup\")" >&2; exit 2 ;;
esac

# Unreadable (a host that hides its PID 1): then ours is the one to use.
host_ns=$(readlink /proc/1/ns/cgroup 2>/dev/null || true)
if [ "${NSLB_DAEMON_CGROUP_NS:-}" != joined ] && [ -n "$host_ns" ] && [ "$host_ns" != "$(readlink /proc/self/ns/cgroup)" ]; then
  case $mode in
    start) NSLB_DAEMON_CGROUP_NS=joined exec nsenter --cgroup=/proc/1/ns/cgroup -- "$0" "$@" ;;
    *) NSLB_DAEMON_CGROUP_NS=joined exec nsenter --cgroup=/proc/1/ns/cgroup -- "$0" "--$mode" "$@" ;;
  esac
fi
shift

root=/sys/fs/cgroup
join() { # $1: a hierarchy's root directory; the rest: the PIDs (move) or the command (start)
  dir=$1$cgroup
  shift
  if [ "$mode" = remove ]; then
    # Children first; a directory that still holds a process (or a child) stays, and says nothing.
    [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
    return 0
  fi
  if [ "$mode" = move ]; then
    # Only where the daemons were started: a hierarchy without the directory was skipped then, too.
    [ -d "$dir" ] || return 0
    for pid in "$@"; do
      case $pid in *[!0-9]*|'') echo "$0: not a PID: \"$pid\"" >&2; exit 2 ;; esac
      # A process that exited meanwhile is not an error.
      echo "$pid" > "$dir/cgroup.procs" 2>/dev/null || [ ! -d "/proc/$pid" ] || { echo "$0: cannot move $pid into $dir" >&2; exit 1; }
    done
    return 0
  fi
  mkdir -p "$dir"
  # A new cpuset cgroup has no CPUs or memory nodes, and takes no process until it has: give it its parent's.
  if [ -f "$dir/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus")" ]; then
    cat "${dir%/*}/cpuset.cpus" > "$dir/cpuset.cpus"
    cat "${dir%/*}/cpuset.mems" > "$dir/cpuset.mems"
  fi
  echo $$ > "$dir/cgroup.procs"
}
if [ -f "$root/cgroup.controllers" ]; then
  join "$root" "$@" # cgroup v2
else
  for h in "$root"/*; do
    # v1 hierarchies (cpu,cpuacct is often one hierarchy under two names: once is enough), and the v2 one of
    # a hybrid host. Read-only or foreign mounts are skipped.
    [ -d "$h" ] && [ ! -L "$h" ] && [ -f "$h/cgroup.procs" ] && [ -w "$h/cgroup.procs" ] || continue
    join "$h" "$@"
  done
fi
[ "$mode" = start ] || exit 0
exec "$@"
