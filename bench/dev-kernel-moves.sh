#!/usr/bin/env bash
# Development tool (not a figure of the table): what the kernel charges for the steps of a new load balancer
# that are the kernel's, outside the agent, to compare kernel builds: `ip netns add` (+ `set auto`), `ovs-vsctl
# add-port … type=internal` on a bridge of its own (datapath_type=netdev, as nslb's nodes), `ip link set dev …
# netns …` of that port, and `ip netns del`. Prints each step's p50/p90/min/max in ms over N load balancers
# made one after the other. Run as root under the data-plane lock:
#   flock -o /tmp/nslb-dataplane.lock bench/dev-kernel-moves.sh [N]
set -euo pipefail
n="${1:-50}"
br=nslbkmv
ns_of() { printf 'nslbkmv-%s' "$1"; }
dev_of() { printf 'nslbkmv%s' "$1"; }

cleanup() {
  local i
  for ((i = 0; i < n; i++)); do ip netns del "$(ns_of "$i")" 2>/dev/null || true; done
  ovs-vsctl --if-exists del-br "$br"
}
trap cleanup EXIT
ovs-vsctl --may-exist add-br "$br" -- set bridge "$br" datapath_type=netdev

ms() { echo $(( ($(date +%s%N) - $1) / 1000 )); }
declare -a t_add t_port t_move t_del
for ((i = 0; i < n; i++)); do
  ns="$(ns_of "$i")" dev="$(dev_of "$i")"
  t=$(date +%s%N); ip netns add "$ns"; ip netns set "$ns" auto; t_add+=("$(ms "$t")")
  t=$(date +%s%N); ovs-vsctl add-port "$br" "$dev" -- set interface "$dev" type=internal; t_port+=("$(ms "$t")")
  t=$(date +%s%N); ip link set dev "$dev" netns "$ns"; t_move+=("$(ms "$t")")
done
for ((i = 0; i < n; i++)); do
  ovs-vsctl del-port "$br" "$(dev_of "$i")"
  t=$(date +%s%N); ip netns del "$(ns_of "$i")"; t_del+=("$(ms "$t")")
done

stats() {
  local name="$1"
  shift
  printf '%s\n' "$@" | sort -n | awk -v name="$name" '{ a[NR] = $1 } END {
    printf "%-28s n=%d p50 %.1f ms, p90 %.1f ms, min %.1f, max %.1f\n", name, NR, a[int((NR + 1) / 2)] / 1000,
      a[int(NR * 0.9 + 0.5)] / 1000, a[1] / 1000, a[NR] / 1000 }'
}
printf 'kernel %s, load average %s\n' "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
stats 'ip netns add + set auto' "${t_add[@]}"
stats 'ovs-vsctl add-port internal' "${t_port[@]}"
stats 'ip link set dev … netns' "${t_move[@]}"
stats 'ip netns del' "${t_del[@]}"
