#!/usr/bin/env bash
# Make this machine a node nslb can run and be tested on: packages, Node, Open vSwitch running, the default
# bridge, and a built checkout. Safe to run any number of times; silent when there is nothing to do.
#
#   sudo scripts/setup-node.sh            # NSLB_BRIDGE=br-foo to create another default bridge
#
# Written for Debian 12 without systemd (containers, CI): services are started with ovs-ctl directly.
set -euo pipefail
# After a pipe, `grep … >/dev/null` rather than `grep -q`: grep -q exits at the first match, the writer may
# die of SIGPIPE, and pipefail then turns a match into a failure (seen with `ip netns list`).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BRIDGE="${NSLB_BRIDGE:-br-int}"
OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
# iputils-ping: the PING health monitor's external check; iputils-arping: the ARP probe before an ACTIVE_STANDBY
# node adds its VRRP address (the node that had its slot may still hold it); openssl: TLS test material; wrk: the load that
# `npm run bench` sends through a VIP while members and listeners change; nftables: the NodePort redirect of
# the simulated Kubernetes nodes in the Service provider's tests and bench (test/e2e/k8s-nodes.ts), and the
# kernel forwarding of UDP/SCTP listeners; keepalived: VRRP of ACTIVE_STANDBY load balancers, one per load balancer
# in its netns (Debian's service does not start: it has no /etc/keepalived/keepalived.conf); socat: the UDP-CONNECT
# health monitor's probe (scripts/udp-check.sh); conntrack: moving the flows of a UDP member that went down; nmap: the SCTP
# monitor's INIT scan (scripts/sctp-check.sh); python3: the raw-socket SCTP endpoints of test/e2e/sctp-nft.test.ts.
PACKAGES=(openvswitch-switch haproxy keepalived socat iproute2 ethtool curl procps psmisc iputils-ping iputils-arping openssl wrk nftables conntrack nmap python3)
# vitest 4 and package.json's engines need 20.19 on the 20 line.
NODE_MIN_MAJOR=20
NODE_MIN_MINOR=19

say() { printf 'setup-node: %s\n' "$*"; }
die() { printf 'setup-node: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[[ $EUID -eq 0 ]] || die "must run as root: it installs packages, starts Open vSwitch and creates bridges (try: sudo $0)"

ensure_node() {
  command -v node >/dev/null ||
    die "Node.js >= ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR} is required and 'node' is not on PATH (Debian 12's nodejs is 18, too old: install Node 20 or 22 from nodejs.org or NodeSource)"
  local version major minor
  version="$(node -p 'process.versions.node')"
  IFS=. read -r major minor _ <<<"$version"
  if ((major < NODE_MIN_MAJOR || (major == NODE_MIN_MAJOR && minor < NODE_MIN_MINOR))); then
    die "Node.js >= ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR} is required, found $version at $(command -v node)"
  fi
  command -v npm >/dev/null || die "npm is missing (it ships with Node.js; reinstall Node)"
}

# Debian's package starts its own haproxy from /etc/haproxy/haproxy.cfg on install. nslb runs one haproxy per
# load balancer and must not share the machine with a stray one, but other haproxy processes (nslb's own,
# or someone else's) are none of our business: only the Debian service, identified by its pid file, is stopped.
stop_debian_haproxy() {
  local pidfile=/var/run/haproxy.pid
  [[ -e $pidfile ]] || return 0
  say "stopping Debian's haproxy service (nslb runs its own haproxy per load balancer)"
  if command -v service >/dev/null; then
    service haproxy stop >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/haproxy ]]; then
    /etc/init.d/haproxy stop >/dev/null 2>&1 || true
  fi
  # A stale pid file after a crash would make every run announce a stop it cannot do.
  if [[ -e $pidfile ]]; then
    local pid
    pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
    else
      die "Debian's haproxy service (pid $pid from $pidfile) would not stop"
    fi
  fi
}

ovsdb_running() { ovs-vsctl --timeout=3 show >/dev/null 2>&1; }
# `ovs-vsctl show` only talks to ovsdb-server; a database without a switch accepts bridges that never appear.
vswitchd_running() { ovs-appctl --timeout=3 -t ovs-vswitchd version >/dev/null 2>&1; }

ensure_ovs() {
  [[ -x $OVS_CTL ]] || die "$OVS_CTL not found (is openvswitch-switch installed?)"
  if ! ovsdb_running; then
    say "starting ovsdb-server"
    quietly "$OVS_CTL" --no-ovs-vswitchd start
  fi
  if ! vswitchd_running; then
    say "starting ovs-vswitchd"
    quietly "$OVS_CTL" --no-ovsdb-server --no-monitor start
  fi
  ovsdb_running || die "ovsdb-server is not answering after start (see /var/log/openvswitch/ovsdb-server.log)"
  vswitchd_running || die "ovs-vswitchd is not answering after start (see /var/log/openvswitch/ovs-vswitchd.log)"
}

# This kernel (and most CI kernels) has no openvswitch module: only the userspace datapath works.
ensure_bridge() {
  if ! ovs-vsctl --timeout=5 br-exists "$BRIDGE"; then
    say "creating bridge $BRIDGE (datapath_type=netdev)"
    quietly ovs-vsctl --timeout=10 --may-exist add-br "$BRIDGE" -- set bridge "$BRIDGE" datapath_type=netdev
  elif [[ "$(ovs-vsctl --timeout=5 get bridge "$BRIDGE" datapath_type | tr -d '"')" != netdev ]]; then
    say "switching bridge $BRIDGE to datapath_type=netdev"
    quietly ovs-vsctl --timeout=10 set bridge "$BRIDGE" datapath_type=netdev
  fi
  # ovsdb accepts the bridge even when vswitchd cannot create its device (e.g. another vswitchd already owns
  # the userspace datapath's ovs-netdev tap), so check for the device rather than trusting add-br.
  local tries=0
  until ip link show dev "$BRIDGE" >/dev/null 2>&1; do
    ((++tries <= 50)) || die "bridge $BRIDGE is in the OVS database but has no device: see the last errors in ${OVS_LOGDIR:-/var/log/openvswitch}/ovs-vswitchd.log"
    sleep 0.1
  done
  if ! ip -o link show dev "$BRIDGE" | grep -E '<([^>]*,)?UP[,>]' >/dev/null; then
    say "bringing $BRIDGE up"
    ip link set dev "$BRIDGE" up
  fi
}

install_dependencies() {
  local log
  log="$(mktemp)"
  say "npm ci"
  if ! npm ci --no-audit --no-fund >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "npm ci failed (a lock file out of sync with package.json? run npm install and commit the lock)"
  fi
  rm -f "$log"
  # npm may rewrite package-lock.json in the same instant; the freshness check above must not see it as newer.
  touch node_modules/.package-lock.json
}

ensure_checkout_built() {
  cd "$REPO"
  if [[ ! -d node_modules || ! -e node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    install_dependencies
  fi
  # Always rebuild: tsc is quick and a stale dist/ would make the demo and e2e tests run old code.
  if ! npm run --silent build; then
    die "npm run build failed"
  fi
}

ensure_packages
ensure_node
stop_debian_haproxy
ensure_ovs
ensure_bridge
ensure_checkout_built
