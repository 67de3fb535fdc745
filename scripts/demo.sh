#!/usr/bin/env bash
# The demo: two member hosts and a client host (network namespaces on the OVS bridge), then the nslb agent in
# the foreground reconciling examples/. The load balancer `web` puts its VIP 10.200.0.10 on the same bridge.
#
#   sudo scripts/demo.sh          set up (idempotent: reuses hosts, restarts dead member servers), run the agent
#   sudo scripts/demo.sh --down   remove the demo's load balancers (nslb cleanup) and its hosts
#
# Addresses are 10.200.0.0/24, private and only inside namespaces this script creates.
set -euo pipefail
# After a pipe, `grep … >/dev/null` rather than `grep -q`: grep -q exits at the first match, the writer may
# die of SIGPIPE, and pipefail then turns a match into a failure (seen with `ip netns list`).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BRIDGE="${NSLB_BRIDGE:-br-int}"
STATE_DIR=/var/lib/nslb-demo
HOSTS_DIR="$STATE_DIR/hosts"
CLI="$REPO/dist/cli/main.js"
VIP=10.200.0.10
MEMBER_PORT=8080
# netns  address  answer. Not nslb-…: names of that shape belong to nslb's own load balancers.
MEMBERS=(
  "demo-m1 10.200.0.11 member m1"
  "demo-m2 10.200.0.12 member m2"
)
CLIENT_NS=demo-client
CLIENT_ADDR=10.200.0.100

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

netns_exists() { ip netns list | grep -E "^$1( |$)" >/dev/null; }

# A host is reusable only if every piece is still there; anything half-made (a crash, a hand-deleted veth)
# is rebuilt from scratch rather than patched.
host_intact() {
  local ns=$1 addr=$2
  netns_exists "$ns" &&
    [[ "$(ovs-vsctl --timeout=5 port-to-br "$ns-h" 2>/dev/null)" == "$BRIDGE" ]] &&
    ip -n "$ns" -o addr show dev eth0 2>/dev/null | grep " $addr/24 " >/dev/null &&
    ip -n "$ns" -o link show dev eth0 | grep -E '<([^>]*,)?UP[,>]' >/dev/null
}

remove_host() {
  local ns=$1 pid
  if netns_exists "$ns"; then
    for pid in $(ip netns pids "$ns"); do kill "$pid" 2>/dev/null || true; done
  fi
  ovs-vsctl --timeout=5 --if-exists del-port "$ns-h" 2>/dev/null || true
  ip link del dev "$ns-h" 2>/dev/null || true
  if netns_exists "$ns"; then ip netns del "$ns"; fi
  rm -f "$HOSTS_DIR/$ns.pid"
}

ensure_host() {
  local ns=$1 addr=$2
  host_intact "$ns" "$addr" && return 0
  say "creating host $ns ($addr/24 on $BRIDGE)"
  remove_host "$ns"
  ip netns add "$ns"
  # The MAC follows from the address, so a rebuilt host answers to what the other hosts' (and the load
  # balancer's) neighbour caches already hold; a fresh random MAC leaves them talking to a ghost for seconds.
  local mac
  mac="$(printf '02:00:%02x:%02x:%02x:%02x' ${addr//./ })"
  ip link add "$ns-h" type veth peer name eth0 address "$mac" netns "$ns"
  ovs-vsctl --timeout=10 --may-exist add-port "$BRIDGE" "$ns-h"
  ip link set dev "$ns-h" up
  # The userspace datapath does not complete offloaded checksums: with TX checksum offload left on,
  # ARP works but every TCP segment is silently dropped.
  ethtool -K "$ns-h" tx off >/dev/null
  ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set dev eth0 up
  ip -n "$ns" link set dev lo up
}

server_alive() {
  local pidfile="$HOSTS_DIR/$1.pid" pid
  [[ -r $pidfile ]] || return 1
  pid="$(<"$pidfile")"
  [[ -n $pid ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep 'member-server.mjs' >/dev/null
}

ensure_server() {
  local ns=$1 addr=$2 answer=$3 tries=0
  server_alive "$ns" && return 0
  say "starting member server on $ns ($addr:$MEMBER_PORT answers \"$answer\")"
  # setsid: the servers outlive this script and must not get the Ctrl-C meant for the agent. `ip netns exec`
  # and setsid both exec, so $! is the server's own pid.
  ip netns exec "$ns" setsid node "$REPO/scripts/member-server.mjs" \
    --host "$addr" --port "$MEMBER_PORT" --name "$answer" </dev/null >>"$HOSTS_DIR/$ns.log" 2>&1 &
  echo $! >"$HOSTS_DIR/$ns.pid"
  until ip netns exec "$ns" curl -s -o /dev/null -m 1 "http://$addr:$MEMBER_PORT/healthz"; do
    ((++tries <= 50)) || die "member server on $ns did not start; see $HOSTS_DIR/$ns.log"
    sleep 0.1
  done
}

up() {
  bash "$REPO/scripts/setup-node.sh"
  [[ -f $CLI ]] ||
    die "$CLI is missing after the build: the nslb CLI (src/cli/main.ts) is not there yet, so the agent cannot run"
  mkdir -p "$HOSTS_DIR"

  local entry ns addr answer
  for entry in "${MEMBERS[@]}"; do
    read -r ns addr answer <<<"$entry"
    ensure_host "$ns" "$addr"
    ensure_server "$ns" "$addr" "$answer"
  done
  ensure_host "$CLIENT_NS" "$CLIENT_ADDR"
  # examples/tls-lb.yaml names these files; they are made here so that no key is ever committed.
  bash "$REPO/scripts/make-demo-certs.sh" "$REPO/examples/certs"

  # Prove the plumbing before blaming the load balancer: each member must answer the client directly.
  for entry in "${MEMBERS[@]}"; do
    read -r ns addr answer <<<"$entry"
    ip netns exec "$CLIENT_NS" curl -s -o /dev/null -m 3 "http://$addr:$MEMBER_PORT/healthz" ||
      die "$CLIENT_NS cannot reach $ns at $addr:$MEMBER_PORT over $BRIDGE (check: ethtool -k $ns-h | grep tx-checksumming; ip -n $CLIENT_NS neigh)"
  done

  cat <<EOF

nslb demo: members demo-m1 (10.200.0.11) and demo-m2 (10.200.0.12) on $BRIDGE, client demo-client (10.200.0.100).
The agent now reconciles $REPO/examples; load balancer "web" gets VIP $VIP.

In another terminal:
  sudo ip netns exec $CLIENT_NS curl http://$VIP/          # "member m1" / "member m2", round robin
  sudo node $CLI status --state-dir $STATE_DIR

  # TLS termination with SNI (examples/tls-lb.yaml, VIP 10.200.0.20):
  sudo ip netns exec $CLIENT_NS curl --cacert $REPO/examples/certs/ca.crt \\
       --resolve www.example.test:443:10.200.0.20 https://www.example.test/
  # Layer-7 routing (examples/l7-lb.yaml, VIP 10.200.0.30):
  sudo ip netns exec $CLIENT_NS curl http://10.200.0.30/api/x                          # member m2
  sudo ip netns exec $CLIENT_NS curl -i -H 'Host: admin.example.test' http://10.200.0.30/   # 403

Edit $REPO/examples/http-lb.yaml (a member's weight, adminStateUp, a new member) and watch it converge.

Ctrl-C stops the agent; the load balancers keep serving. To remove them:
  sudo node $CLI cleanup --state-dir $STATE_DIR --bridge $BRIDGE
and to remove the demo hosts as well:
  sudo $REPO/scripts/demo.sh --down

EOF
  exec node "$CLI" run --watch "$REPO/examples" --state-dir "$STATE_DIR" --bridge "$BRIDGE"
}

down() {
  if [[ -f $CLI ]]; then
    say "removing load balancers (nslb cleanup)"
    node "$CLI" cleanup --state-dir "$STATE_DIR" --bridge "$BRIDGE" ||
      say "warning: nslb cleanup failed; load balancers may remain (nslb-* netns, haproxy)"
  else
    say "warning: $CLI is missing, so nslb cleanup cannot run; load balancers (if any) are left in place"
  fi
  local entry ns
  for entry in "${MEMBERS[@]}" "$CLIENT_NS"; do
    read -r ns _ <<<"$entry"
    if netns_exists "$ns" || ip link show dev "$ns-h" >/dev/null 2>&1 || [[ -e $HOSTS_DIR/$ns.pid ]]; then
      say "removing host $ns"
      remove_host "$ns"
    fi
  done
  if [[ -d $HOSTS_DIR ]]; then rm -rf "$HOSTS_DIR"; fi
  if [[ -d $STATE_DIR ]]; then rmdir --ignore-fail-on-non-empty "$STATE_DIR"; fi
}

case "${1:-}" in
  '') ;;
  --down) ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[[ $EUID -eq 0 ]] || die "must run as root: it creates network namespaces and OVS ports (try: sudo $0 ${1:-})"
if [[ ${1:-} == --down ]]; then down; else up; fi
