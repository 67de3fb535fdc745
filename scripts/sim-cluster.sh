#!/usr/bin/env bash
# A simulated cluster of network nodes on one machine, for tests, benchmarks and demos of more than one node.
# Run `scripts/sim-cluster.sh --help` for the interface; docs/sim-cluster.md says how it is built and why.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/sim-cluster.sh COMMAND [ARGS]   (as root; run data-plane work under the machine's lock:
                                               flock /tmp/nslb-dataplane.lock scripts/sim-cluster.sh …)

Simulated network nodes node1…nodeN on this machine. Each node is as separate as a real one: its own network
namespace with its own ovsdb-server and ovs-vswitchd (userspace datapath) and OVS bridge br-int, its own mount
namespace (private /run, so its own /run/netns and /run/openvswitch; its own OVS database and logs), its own
PID namespace and hostname, its own state dir, and its own agent: the normal binary with normal flags
(node dist/cli/main.js run … --node-name nodeK --bridge br-int --state-dir DIR --listen ADDR). Every node's
br-int is wired (a veth, port "provider" on br-int) to one shared provider segment: the Linux bridge
sim-provider in this machine's network namespace. Plug member and client namespaces into sim-provider
with a veth to reach the load balancers' VIPs.

Commands:
  up N (--watch DIR | --kubeconfig FILE) [-- AGENT-FLAGS…]
        Start node1…nodeN and wait until every agent answers /healthz. With --watch, every agent watches DIR
        (one checkout for all). With --kubeconfig, every agent runs in Kubernetes mode
        (run --kubernetes --kubeconfig FILE, env NODE_NAME and POD_NAMESPACE as the DaemonSet sets them), the
        API server named in FILE is reachable from inside every node at the same URL (a relay over a Unix
        socket; it may listen on this machine's loopback only), and each node holds a kubelet-like Lease
        kube-node-lease/nodeK (renewed every 10 s) and, where the API server serves Nodes, a Ready Node.
        AGENT-FLAGS go to every agent (e.g. -- --resync 2 --log-level debug); the rig sets --node-name,
        --bridge, --state-dir, --listen, --watch, --kubernetes and --kubeconfig itself. Agents inherit the
        environment of `up`/`start` (e.g. NSLB_CRASH_AT). Running `up` again with the same arguments starts
        whatever is not running; with other arguments it refuses (run `down` first). A test that sets
        NSLB_SIM_OWNER_PID has it recorded (config/owner-pid), so that a later run may remove a rig whose
        owner died.
  down  Remove everything the rig made: every node's processes, namespaces, mounts, wires, sim-provider,
        the API relay and the rig's directory (state dirs included).
  exec NODE -- CMD…
        Run CMD inside NODE (its network, mount, UTS and PID namespaces; the same working directory unless it
        is under /run). On a killed node (no processes, namespaces kept) CMD runs in the node's network and
        mount namespaces with a /proc of its own. Exit status is CMD's.
  kill NODE [--power]
        SIGKILL every process of NODE at once (agent, HAProxy, keepalived, OVS, its API forwarder and Lease
        holder, whatever `exec` started there and left running): the node's
        PID namespace ends, so nothing of it survives and nothing else is touched. The node's kernel state
        (its network and mount namespaces, with the load balancers' namespaces, addresses and devices in
        them) stays, as on a machine whose processes all died. --power also drops that, as pulling the plug
        does: only its disk (state dir, OVS database) is left.
  start NODE
        Boot NODE again (its kernel state if it was powered off, OVS, the agent), keeping its state dir and
        OVS database; starts only what is not running (so it also restarts an agent that died).
  cut NODE / heal NODE
        Take NODE's wire to sim-provider down / up again (the node, its agent and its management link keep
        running). A cut survives kill and start until heal.
  status [-o table|json]
        Each node: state (running, agent-down, killed, off), agent (up, starting, down), wire (up, cut),
        agent listen address, state dir, number of processes and their resident memory (MiB).
  pids NODE
        Host PIDs of every process of NODE, one per line.

N is at most 32. The rig serializes its own changing commands (a lock on ${NSLB_SIM_DIR}.lock) but never
takes the data-plane lock itself, so a test holding that lock can drive it. More: docs/sim-cluster.md.

Addresses: agent K listens on 198.18.K.2:9910, reached from this machine over a management veth
(simm-nodeK, 198.18.K.1/24 here; "mgmt" in the node), which `cut` does not touch. Root-namespace devices the
rig makes: sim-provider, simp-nodeK (wire), simm-nodeK (management). Everything else lives in
${NSLB_SIM_DIR:-/var/lib/nslb-sim}: nodeK/state (the agent's --state-dir), nodeK/agent.log, nodeK/ovs/.
EOF
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$REPO/scripts/sim-cluster.sh"
KUBE_HELPER="$REPO/scripts/sim-cluster-kube.mjs"
AGENT_MAIN="$REPO/dist/cli/main.js"
SIM_DIR="${NSLB_SIM_DIR:-/var/lib/nslb-sim}"
LOCK_FILE="${SIM_DIR}.lock"
PROVIDER=sim-provider
NODE_BRIDGE=br-int
AGENT_PORT=9910
MAX_NODES=32
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
# Flags the rig owns: an agent with a second --listen or --state-dir would not be the node the rig describes.
RESERVED_FLAGS=(--node-name --bridge --state-dir --listen --watch --kubernetes --kubeconfig)

say() { printf 'sim-cluster: %s\n' "$*" >&2; }
die() { printf 'sim-cluster: error: %s\n' "$*" >&2; exit 1; }

# Runs a chatty command (OVS daemons announce their log files), showing its output only if it fails.
quietly() {
  local out
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "failed: $*"
  fi
}

# Whatever the caller had open stays out of every daemon started here: in particular the data-plane lock,
# which `flock /tmp/nslb-dataplane.lock …` hands to its command and a node's daemons would hold forever.
close_inherited_fds() {
  local fd
  for fd in /proc/self/fd/*; do
    fd="${fd##*/}"
    [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2 && fd != 255)) || continue
    exec {fd}>&-
  done
}

# ---------------------------------------------------------------------------------------------------------
# Names and paths

node_dir() { printf '%s/%s' "$SIM_DIR" "$1"; }
ns_file() { printf '%s/ns/%s.%s' "$SIM_DIR" "$1" "$2"; }
node_index() { printf '%s' "${1#node}"; }
mgmt_host_addr() { printf '198.18.%s.1' "$(node_index "$1")"; }
mgmt_node_addr() { printf '198.18.%s.2' "$(node_index "$1")"; }
listen_addr() { printf '%s:%s' "$(mgmt_node_addr "$1")" "$AGENT_PORT"; }

config_nodes() { cat "$SIM_DIR/config/nodes"; }
config_mode() { cat "$SIM_DIR/config/mode"; }
config_target() { cat "$SIM_DIR/config/target"; }

rig_is_up() { [[ -f $SIM_DIR/config/nodes ]]; }

# A node name of the rig that is up: node1…nodeN.
check_node() {
  rig_is_up || die "no simulated cluster is up (scripts/sim-cluster.sh up N --watch DIR)"
  [[ $1 =~ ^node([1-9][0-9]*)$ ]] || die "unknown node '$1': nodes are node1…node$(config_nodes)"
  ((BASH_REMATCH[1] <= $(config_nodes))) || die "unknown node '$1': nodes are node1…node$(config_nodes)"
}

all_nodes() {
  local n k
  n="$(config_nodes)"
  for ((k = 1; k <= n; k++)); do printf 'node%s\n' "$k"; done
}

# ---------------------------------------------------------------------------------------------------------
# A node's kernel state: network, mount and UTS namespaces kept alive by bind mounts of their nsfs files, so
# that they outlive the node's processes (`kill`) and go only with `kill --power` or `down`.

ensure_ns_dir() {
  mkdir -p "$SIM_DIR/ns"
  # A namespace file can only be bind-mounted onto a private mount (else it would propagate into itself).
  if ! mountpoint -q "$SIM_DIR/ns"; then
    mount --bind "$SIM_DIR/ns" "$SIM_DIR/ns"
    mount --make-private "$SIM_DIR/ns"
  fi
}

is_ns_mount() { [[ "$(findmnt -rn -o FSTYPE --mountpoint "$1" 2>/dev/null | tail -n1)" == nsfs ]]; }
kernel_up() { is_ns_mount "$(ns_file "$1" net)" && is_ns_mount "$(ns_file "$1" mnt)"; }

# Runs in the node's fresh network, mount and UTS namespaces, before any process of the node exists.
inside_kernel_setup() {
  local node="$1" dir="$2" d
  hostname "$node"
  # This mount namespace starts as a copy of the machine's, with its namespace files (other sessions' netns
  # under /run/netns, the other nodes' under the rig's ns/). The kernel drops a copy when its owner unlinks
  # the file (`ip netns del` does), but one unmounted and left in place, or an earlier node's, would stay
  # alive as long as this node: every such mount is dropped here (lazily: the copies are ours alone).
  local target
  while read -r target; do
    umount -l "$target" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | awk -v ns="$SIM_DIR/ns" '$0 ~ /^\/run(\/|$)/ || $0 == ns' | sort -r)
  while read -r target; do
    umount -l "$target" 2>/dev/null || true
  done < <(findmnt -rn -t nsfs -o TARGET)
  # A private /run: the node's own /run/netns (where its agent's `ip netns add` bind-mounts the load
  # balancers' namespaces), /run/openvswitch (its database socket and pid files) and keepalived's pid files.
  mount -t tmpfs -o mode=0755,size=64m "sim-run-$node" /run
  mkdir -p /run/netns /run/openvswitch /run/lock
  for d in etc lib log; do mkdir -p "$dir/ovs/$d"; done
  mount --bind "$dir/ovs/etc" /etc/openvswitch
  mount --bind "$dir/ovs/lib" /var/lib/openvswitch
  mount --bind "$dir/ovs/log" /var/log/openvswitch
  # /sys showing this network namespace's devices, as a node's own /sys would.
  mount -t sysfs "sim-sys-$node" /sys
  ip link set lo up
}

# veth pairs between this namespace and the node: the wire to sim-provider and the management link.
make_wires() {
  local node="$1" net
  net="$(ns_file "$node" net)"
  if ! ip link show dev "simp-$node" >/dev/null 2>&1; then
    ip link add "simp-$node" type veth peer name "simq-$node"
    ip link set dev "simq-$node" netns "$net"
    nsenter --net="$net" ip link set dev "simq-$node" name provider
    sysctl -qw "net.ipv6.conf.simp-$node.disable_ipv6=1"
    ip link set dev "simp-$node" master "$PROVIDER"
  fi
  # OVS owns the node's end: no address, no IPv6 chatter from the node's own stack onto the segment.
  nsenter --net="$net" sysctl -qw net.ipv6.conf.provider.disable_ipv6=1
  # The userspace datapath passes frames on without completing offloaded checksums: frames must cross the
  # wire whole, whatever the hosts plugged into sim-provider do (with offload on, ARP works and TCP is dropped).
  quietly ethtool -K "simp-$node" tx off
  quietly nsenter --net="$net" ethtool -K provider tx off
  nsenter --net="$net" ip link set dev provider up
  if [[ -e $(node_dir "$node")/cut ]]; then ip link set dev "simp-$node" down; else ip link set dev "simp-$node" up; fi

  if ! ip link show dev "simm-$node" >/dev/null 2>&1; then
    ip link add "simm-$node" type veth peer name "simn-$node"
    ip link set dev "simn-$node" netns "$net"
    nsenter --net="$net" ip link set dev "simn-$node" name mgmt
    sysctl -qw "net.ipv6.conf.simm-$node.disable_ipv6=1"
    ip addr add "$(mgmt_host_addr "$node")/24" dev "simm-$node"
    nsenter --net="$net" sysctl -qw net.ipv6.conf.mgmt.disable_ipv6=1
    nsenter --net="$net" ip addr add "$(mgmt_node_addr "$node")/24" dev mgmt
  fi
  ip link set dev "simm-$node" up
  nsenter --net="$net" ip link set dev mgmt up
}

ensure_kernel() {
  local node="$1" dir f
  dir="$(node_dir "$node")"
  if ! kernel_up "$node"; then
    ip link del "simp-$node" 2>/dev/null || true
    ip link del "simm-$node" 2>/dev/null || true
    ensure_ns_dir
    mkdir -p "$dir/state"
    for f in net mnt uts; do
      umount "$(ns_file "$node" "$f")" 2>/dev/null || true
      : >"$(ns_file "$node" "$f")"
    done
    unshare --net="$(ns_file "$node" net)" --mount="$(ns_file "$node" mnt)" --uts="$(ns_file "$node" uts)" \
      --propagation private -- "$SELF" __kernel "$node" "$dir"
  fi
  make_wires "$node"
  local api_addr
  if [[ -f $SIM_DIR/config/api-addresses ]]; then
    # A non-loopback API address is given to the node's loopback so that the relay can listen on it there.
    while read -r api_addr _; do
      [[ $api_addr == 127.* || $api_addr == ::1 ]] && continue
      nsenter --net="$(ns_file "$node" net)" ip addr replace "$api_addr/$([[ $api_addr == *:* ]] && echo 128 || echo 32)" dev lo
    done <"$SIM_DIR/config/api-addresses"
  fi
}

drop_kernel() {
  local node="$1" f
  for f in net mnt uts; do
    if is_ns_mount "$(ns_file "$node" "$f")"; then umount "$(ns_file "$node" "$f")"; fi
    rm -f "$(ns_file "$node" "$f")"
  done
  # The veths die with the network namespace; these only if something kept that namespace alive.
  ip link del "simp-$node" 2>/dev/null || true
  ip link del "simm-$node" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------------
# A node's processes: one PID namespace per boot, whose init (PID 1) reaps orphans; SIGKILL to it ends every
# process of the node at once (the kernel kills the rest of the namespace), which is what `kill` does.

# The host PID of the node's init, or nothing: the process that is PID 1 in a namespace of its own and lives
# in the node's mount namespace. Found by /proc (no file to go stale across boots).
init_pid() {
  local mnt p line
  mnt="$(ns_file "$1" mnt)"
  is_ns_mount "$mnt" || return 0
  for p in /proc/[0-9]*; do
    [[ $p/ns/mnt -ef $mnt ]] || continue
    [[ $p/ns/pid -ef /proc/self/ns/pid ]] && continue
    while read -r line; do
      if [[ $line == NSpid:* ]]; then
        [[ $line =~ [[:space:]]1$ ]] && { printf '%s\n' "${p#/proc/}"; return 0; }
        break
      fi
    done <"$p/status" 2>/dev/null || true
  done
}

# Host PIDs of every process in the PID namespace of the node's init.
node_pids() {
  local init p
  init="$(init_pid "$1")"
  [[ -n $init ]] || return 0
  for p in /proc/[0-9]*; do
    [[ $p/ns/pid -ef /proc/$init/ns/pid ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

# PID inside the node of its agent (recorded by __spawn), verified to be an nslb agent still.
agent_alive() {
  local init pidfile nspid p line
  init="$(init_pid "$1")"
  pidfile="$(node_dir "$1")/agent.pid"
  [[ -n $init && -f $pidfile ]] || return 1
  nspid="$(<"$pidfile")"
  for p in $(node_pids "$1"); do
    while read -r line; do
      if [[ $line == NSpid:* ]]; then
        if [[ $line =~ [[:space:]]${nspid}$ ]] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -- "$AGENT_MAIN run" >/dev/null; then
          grep '^State:[[:space:]]*Z' "/proc/$p/status" >/dev/null 2>&1 && return 1
          return 0
        fi
        break
      fi
    done <"/proc/$p/status" 2>/dev/null || true
  done
  return 1
}

agent_healthy() { curl -fsS -m 1 -o /dev/null "http://$(listen_addr "$1")/healthz" 2>/dev/null; }

# Runs a command in the node (network, mount, UTS and PID namespaces) and waits for it.
in_node() {
  local node="$1" init
  shift
  init="$(init_pid "$node")"
  [[ -n $init ]] || die "$node is not running"
  nsenter --target "$init" --net --mount --uts --pid --wdns=/ -- "$@"
}

boot_init() {
  local node="$1" dir tries=0
  dir="$(node_dir "$node")"
  setsid nsenter --net="$(ns_file "$node" net)" --mount="$(ns_file "$node" mnt)" --uts="$(ns_file "$node" uts)" \
    -- unshare --pid --fork -- "$SELF" __init </dev/null >>"$dir/init.log" 2>&1 &
  until [[ -n "$(init_pid "$node")" ]]; do
    ((++tries <= 100)) || die "$node: its init did not start (see $dir/init.log)"
    sleep 0.05
  done
  # Its /proc must be its own before anything else runs in the node (pid files, `ip netns exec`): there, PID 1
  # is the init and shares the caller's PID namespace.
  tries=0
  until in_node "$node" test /proc/1/ns/pid -ef /proc/self/ns/pid 2>/dev/null; do
    ((++tries <= 100)) || die "$node: its /proc was not mounted (see $dir/init.log)"
    sleep 0.05
  done
}

ovs_running() {
  in_node "$1" ovs-appctl --timeout=2 -t ovsdb-server version >/dev/null 2>&1 &&
    in_node "$1" ovs-appctl --timeout=2 -t ovs-vswitchd version >/dev/null 2>&1
}

# ovsdb-server and ovs-vswitchd of the node, as ovs-ctl would start them, minus what costs a shared machine:
# no --mlockall (it would pin the userspace datapath's buffers), no syslog, one handler and one revalidator
# thread, and statistics read every 30 s instead of 5.
boot_ovs() {
  local node="$1" tries=0
  if ! in_node "$node" test -e /etc/openvswitch/conf.db; then
    in_node "$node" ovsdb-tool create /etc/openvswitch/conf.db "$OVS_SCHEMA"
  fi
  if ! in_node "$node" ovs-appctl --timeout=2 -t ovsdb-server version >/dev/null 2>&1; then
    quietly in_node "$node" ovsdb-server /etc/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
      --pidfile=/run/openvswitch/ovsdb-server.pid --detach --no-chdir \
      --log-file=/var/log/openvswitch/ovsdb-server.log -vconsole:off -vsyslog:off -vfile:info
  fi
  in_node "$node" ovs-vsctl --timeout=10 --no-wait -- init \
    -- set Open_vSwitch . "external_ids:system-id=$node" "external_ids:hostname=$node" \
    other_config:n-handler-threads=1 other_config:n-revalidator-threads=1 other_config:stats-update-interval=30000
  if ! in_node "$node" ovs-appctl --timeout=2 -t ovs-vswitchd version >/dev/null 2>&1; then
    quietly in_node "$node" ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid \
      --detach --no-chdir --log-file=/var/log/openvswitch/ovs-vswitchd.log -vconsole:off -vsyslog:off -vfile:info
  fi
  in_node "$node" ovs-vsctl --timeout=10 --may-exist add-br "$NODE_BRIDGE" \
    -- set bridge "$NODE_BRIDGE" datapath_type=netdev -- --may-exist add-port "$NODE_BRIDGE" provider
  until in_node "$node" ip link show dev "$NODE_BRIDGE" >/dev/null 2>&1; do
    ((++tries <= 100)) || die "$node: bridge $NODE_BRIDGE has no device (see $(node_dir "$node")/ovs/log/ovs-vswitchd.log)"
    sleep 0.05
  done
  in_node "$node" ip link set dev "$NODE_BRIDGE" up
}

# The API server's relay into the node, and the kubelet-like Lease (Kubernetes mode only).
boot_kube_helper() {
  local node="$1" dir tries=0
  dir="$(node_dir "$node")"
  [[ "$(config_mode)" == kubeconfig ]] || return 0
  if [[ -f $dir/kubelet.pid ]] && in_node "$node" kill -0 "$(<"$dir/kubelet.pid")" 2>/dev/null &&
    [[ -e $dir/kubelet.ready ]]; then
    return 0
  fi
  rm -f "$dir/kubelet.ready"
  printf '%s\0' node "$KUBE_HELPER" node "$SIM_DIR/api.sock" "$(config_target)" "$node" "$dir/kubelet.ready" >"$dir/kubelet.argv"
  in_node "$node" "$SELF" __spawn "$dir/kubelet.log" "$dir/kubelet.pid" / "$dir/kubelet.argv"
  until [[ -e $dir/kubelet.ready ]]; do
    ((++tries <= 200)) || { tail -n 20 "$dir/kubelet.log" >&2 || true; die "$node: the API relay did not start (see $dir/kubelet.log)"; }
    sleep 0.05
  done
}

agent_argv() {
  local node="$1" dir
  dir="$(node_dir "$node")"
  AGENT_ARGV=(node "$AGENT_MAIN" run)
  if [[ "$(config_mode)" == watch ]]; then
    AGENT_ARGV+=(--watch "$(config_target)")
  else
    AGENT_ARGV=(env "NODE_NAME=$node" "POD_NAMESPACE=${NSLB_SIM_POD_NAMESPACE:-nslb-system}" "${AGENT_ARGV[@]}"
      --kubernetes --kubeconfig "$(config_target)")
  fi
  AGENT_ARGV+=(--node-name "$node" --bridge "$NODE_BRIDGE" --state-dir "$dir/state" --listen "$(listen_addr "$node")")
  local extra=()
  mapfile -d '' extra <"$SIM_DIR/config/agent-flags"
  AGENT_ARGV+=("${extra[@]}")
}

spawn_agent() {
  local node="$1" dir cwd
  dir="$(node_dir "$node")"
  agent_alive "$node" && return 0
  cwd="$(<"$SIM_DIR/config/cwd")"
  agent_argv "$node"
  printf '%s sim-cluster: starting the agent: %s\n' "$(date -u +%FT%TZ)" "${AGENT_ARGV[*]}" >>"$dir/agent.log"
  printf '%s\0' "${AGENT_ARGV[@]}" >"$dir/agent.argv"
  in_node "$node" "$SELF" __spawn "$dir/agent.log" "$dir/agent.pid" "$cwd" "$dir/agent.argv"
}

wait_agent() {
  local node="$1" dir tries=0
  dir="$(node_dir "$node")"
  until agent_healthy "$node"; do
    if ! agent_alive "$node"; then
      tail -n 20 "$dir/agent.log" >&2 || true
      say "processes of $node:"
      in_node "$node" ps -eo pid,ppid,stat,args >&2 || true
      die "$node: the agent exited (log: $dir/agent.log)"
    fi
    ((++tries <= 600)) || die "$node: the agent does not answer http://$(listen_addr "$node")/healthz after 60 s (log: $dir/agent.log)"
    sleep 0.1
  done
}

start_node() {
  local node="$1"
  ensure_kernel "$node"
  [[ -n "$(init_pid "$node")" ]] || boot_init "$node"
  ovs_running "$node" || boot_ovs "$node"
  boot_kube_helper "$node"
  spawn_agent "$node"
}

kill_node() {
  local node="$1" init tries=0
  init="$(init_pid "$node")"
  if [[ -n $init ]]; then
    kill -KILL "$init"
    # The init is reaped only once every other process of its namespace is gone.
    while [[ -e /proc/$init ]] && ! grep '^State:[[:space:]]*Z' "/proc/$init/status" >/dev/null 2>&1; do
      ((++tries <= 200)) || die "$node: its processes did not die within 10 s"
      sleep 0.05
    done
  fi
  rm -f "$(node_dir "$node")/agent.pid" "$(node_dir "$node")/kubelet.pid" "$(node_dir "$node")/kubelet.ready"
}

# ---------------------------------------------------------------------------------------------------------
# The API server relay (Kubernetes mode): one process in this namespace from a Unix socket to the API
# server; in each node, the kube helper listens at the API server's own address and port and forwards there.

relay_pid() {
  local pid
  [[ -f $SIM_DIR/relay.pid ]] || return 0
  pid="$(<"$SIM_DIR/relay.pid")"
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -- "$KUBE_HELPER relay" >/dev/null; then printf '%s\n' "$pid"; fi
}

ensure_relay() {
  local tries=0
  [[ -n "$(relay_pid)" ]] && return 0
  rm -f "$SIM_DIR/api.sock" "$SIM_DIR/relay.ready"
  local address port
  read -r address port <"$SIM_DIR/config/api-addresses"
  setsid node "$KUBE_HELPER" relay "$SIM_DIR/api.sock" "$address" "$port" "$SIM_DIR/relay.ready" \
    </dev/null >>"$SIM_DIR/relay.log" 2>&1 &
  printf '%s\n' "$!" >"$SIM_DIR/relay.pid"
  until [[ -e $SIM_DIR/relay.ready ]]; do
    ((++tries <= 200)) || { tail -n 20 "$SIM_DIR/relay.log" >&2 || true; die "the API relay did not start (see $SIM_DIR/relay.log)"; }
    sleep 0.05
  done
}

# ---------------------------------------------------------------------------------------------------------
# Commands

require_tools() {
  local tool
  for tool in ip ethtool nsenter unshare findmnt mountpoint ovsdb-server ovs-vswitchd ovsdb-tool ovs-vsctl ovs-appctl curl node; do
    command -v "$tool" >/dev/null || die "$tool is not installed (run scripts/setup-node.sh)"
  done
  [[ -f $AGENT_MAIN ]] || die "$AGENT_MAIN is missing: build first (npm run build)"
}

# An absolute path that the nodes see too: they share this machine's files except /run.
node_visible_path() {
  local path
  path="$(realpath -e -- "$1")" || die "$2 '$1' does not exist"
  [[ $path != *$'\n'* ]] || die "$2 '$1': a path with a newline in it is not supported"
  [[ $path != /run && $path != /run/* ]] || die "$2 '$1' is under /run, which every node has its own of: put it elsewhere"
  printf '%s' "$path"
}

cmd_up() {
  local n="${1:-}" mode="" target="" flags=() f r
  [[ $n =~ ^[1-9][0-9]*$ ]] && ((n <= MAX_NODES)) || die "up: N must be a number of nodes from 1 to $MAX_NODES (got '${n}')"
  shift
  while (($#)); do
    case "$1" in
      --watch | --kubeconfig)
        [[ -z $mode ]] || die "up: give one of --watch DIR or --kubeconfig FILE"
        (($# >= 2)) || die "up: $1 needs an argument"
        mode="${1#--}"
        if [[ $mode == watch ]]; then
          [[ -d $2 ]] || die "up: --watch '$2' is not a directory"
          target="$(node_visible_path "$2" --watch)"
        else
          [[ -f $2 ]] || die "up: --kubeconfig '$2' is not a file"
          target="$(node_visible_path "$2" --kubeconfig)"
        fi
        shift 2 ;;
      --) shift; flags=("$@"); break ;;
      *) die "up: unexpected '$1' (usage: up N (--watch DIR | --kubeconfig FILE) [-- AGENT-FLAGS…])" ;;
    esac
  done
  [[ -n $mode ]] || die "up: give --watch DIR or --kubeconfig FILE"
  for f in "${flags[@]}"; do
    for r in "${RESERVED_FLAGS[@]}"; do
      [[ $f == "$r" || $f == "$r="* ]] && die "up: $r is set by the rig for each node; leave it out of AGENT-FLAGS"
    done
  done
  require_tools

  local want have recorded=()
  want="$n --$mode $(printf '%q' "$target") -- ${flags[*]@Q}"
  if rig_is_up; then
    mapfile -d '' recorded <"$SIM_DIR/config/agent-flags"
    have="$(config_nodes) --$(config_mode) $(printf '%q' "$(config_target)") -- ${recorded[*]@Q}"
    [[ $have == "$want" ]] || die "a simulated cluster is already up with other arguments ($(config_nodes) nodes, --$(config_mode) $(config_target)): run 'down' first"
  else
    if ip link show dev "$PROVIDER" >/dev/null 2>&1; then
      die "a device named $PROVIDER exists but this rig did not make it (no $SIM_DIR/config): remove it or set NSLB_SIM_DIR to the rig that did"
    fi
    # The record comes first, so that `down` can undo a start that failed halfway.
    mkdir -p "$SIM_DIR/config"
    chmod 0700 "$SIM_DIR"
    printf '%s\n' "$mode" >"$SIM_DIR/config/mode"
    printf '%s\n' "$target" >"$SIM_DIR/config/target"
    printf '%s\0' "${flags[@]}" >"$SIM_DIR/config/agent-flags"
    [[ ${#flags[@]} -gt 0 ]] || : >"$SIM_DIR/config/agent-flags"
    if [[ $PWD == /run || $PWD == /run/* ]]; then printf '/\n' >"$SIM_DIR/config/cwd"; else printf '%s\n' "$PWD" >"$SIM_DIR/config/cwd"; fi
    # A test run records itself, so that the next run can tell a rig left by a crashed run from one in use.
    [[ -z ${NSLB_SIM_OWNER_PID:-} ]] || printf '%s\n' "$NSLB_SIM_OWNER_PID" >"$SIM_DIR/config/owner-pid"
    printf '%s\n' "$n" >"$SIM_DIR/config/nodes"
  fi

  if ! ip link show dev "$PROVIDER" >/dev/null 2>&1; then
    ip link add "$PROVIDER" type bridge
    sysctl -qw "net.ipv6.conf.$PROVIDER.disable_ipv6=1"
  fi
  ip link set dev "$PROVIDER" up
  if [[ $mode == kubeconfig ]]; then
    node "$KUBE_HELPER" addresses "$target" >"$SIM_DIR/config/api-addresses"
    ensure_relay
  fi
  local node
  for node in $(all_nodes); do start_node "$node"; done
  for node in $(all_nodes); do wait_agent "$node"; done
  say "$n node(s) up: scripts/sim-cluster.sh status"
}

cmd_down() {
  local node dir pid
  if [[ -d $SIM_DIR ]]; then
    for dir in "$SIM_DIR"/node*; do
      [[ -d $dir ]] || continue
      node="${dir##*/}"
      kill_node "$node"
      drop_kernel "$node"
    done
    pid="$(relay_pid)"
    [[ -z $pid ]] || kill -KILL "$pid"
    if [[ -f $SIM_DIR/config/nodes ]] && ip link show dev "$PROVIDER" >/dev/null 2>&1; then
      ip link del "$PROVIDER"
    fi
    if mountpoint -q "$SIM_DIR/ns"; then umount "$SIM_DIR/ns"; fi
    rm -rf -- "$SIM_DIR"
  fi
  say "down"
}

cmd_exec() {
  local node="${1:-}" init
  check_node "$node"
  shift
  [[ ${1:-} == -- ]] || die "usage: exec NODE -- CMD…"
  shift
  (($#)) || die "usage: exec NODE -- CMD…"
  local wd="$PWD"
  [[ $wd != /run && $wd != /run/* ]] || wd=/
  init="$(init_pid "$node")"
  if [[ -n $init ]]; then
    exec nsenter --target "$init" --net --mount --uts --pid --wdns="$wd" -- "$@"
  fi
  kernel_up "$node" || die "$node is powered off (scripts/sim-cluster.sh start $node)"
  exec nsenter --net="$(ns_file "$node" net)" --mount="$(ns_file "$node" mnt)" --uts="$(ns_file "$node" uts)" --wdns="$wd" \
    -- unshare --pid --fork --mount-proc -- "$@"
}

cmd_kill() {
  local node="${1:-}" power=false
  check_node "$node"
  [[ ${2:-} == "" || ${2:-} == --power ]] || die "usage: kill NODE [--power]"
  [[ ${2:-} == --power ]] && power=true
  kill_node "$node"
  if $power; then drop_kernel "$node"; fi
}

cmd_start() {
  local node="${1:-}"
  check_node "$node"
  ip link show dev "$PROVIDER" >/dev/null 2>&1 || die "$PROVIDER is gone: run 'down' and 'up' again"
  [[ "$(config_mode)" != kubeconfig ]] || ensure_relay
  start_node "$node"
  wait_agent "$node"
}

cmd_cut() {
  local node="${1:-}"
  check_node "$node"
  : >"$(node_dir "$node")/cut"
  if ip link show dev "simp-$node" >/dev/null 2>&1; then ip link set dev "simp-$node" down; fi
}

cmd_heal() {
  local node="${1:-}"
  check_node "$node"
  rm -f "$(node_dir "$node")/cut"
  if ip link show dev "simp-$node" >/dev/null 2>&1; then ip link set dev "simp-$node" up; fi
}

node_rss_kib() {
  local p total=0 key value
  for p in "$@"; do
    while read -r key value _; do
      [[ $key == VmRSS: ]] && { total=$((total + value)); break; }
    done <"/proc/$p/status" 2>/dev/null || true
  done
  printf '%s' "$total"
}

cmd_status() {
  local output=table
  if (($#)); then
    [[ $1 == -o && ${2:-} =~ ^(table|json)$ ]] || die "usage: status [-o table|json]"
    output="$2"
  fi
  rig_is_up || { [[ $output == json ]] && printf '[]\n'; say "no simulated cluster is up"; return 0; }
  local node state agent wire pids rss first=true
  [[ $output == table ]] && printf '%-8s %-11s %-9s %-5s %-18s %-6s %-8s %s\n' NODE STATE AGENT WIRE LISTEN PROCS RSS-MIB STATE-DIR
  [[ $output == json ]] && printf '['
  for node in $(all_nodes); do
    mapfile -t pids < <(node_pids "$node")
    if ((${#pids[@]})); then
      if agent_alive "$node"; then state=running; else state=agent-down; fi
    elif kernel_up "$node"; then state=killed; else state=off; fi
    if agent_healthy "$node"; then agent=up; elif [[ $state == running ]]; then agent=starting; else agent=down; fi
    if [[ -e $(node_dir "$node")/cut ]]; then wire=cut; else wire=up; fi
    rss=$(($(node_rss_kib "${pids[@]}") / 1024))
    if [[ $output == table ]]; then
      printf '%-8s %-11s %-9s %-5s %-18s %-6s %-8s %s\n' "$node" "$state" "$agent" "$wire" "$(listen_addr "$node")" \
        "${#pids[@]}" "$rss" "$(node_dir "$node")/state"
    else
      $first || printf ','
      first=false
      printf '{"node":"%s","state":"%s","agent":"%s","wire":"%s","listen":"%s","processes":%s,"rssMiB":%s,"stateDir":"%s"}' \
        "$node" "$state" "$agent" "$wire" "$(listen_addr "$node")" "${#pids[@]}" "$rss" "$(node_dir "$node")/state"
    fi
  done
  [[ $output == json ]] && printf ']\n'
  return 0
}

# ---------------------------------------------------------------------------------------------------------
# Internal entry points (not an interface): run by the rig inside a node.

# PID 1 of a node: mount the node's own /proc, then reap orphans (daemons that detached) until killed.
internal_init() {
  umount -l /proc 2>/dev/null || true
  mount -t proc "sim-proc-$(hostname)" /proc
  trap '' HUP INT TERM
  while :; do
    sleep 86400 &
    wait "$!" || true
  done
}

# Starts a daemon in the background (a child of the node's init once this exits); records its PID. The argv
# comes in a file (NUL-separated), not on this command line: the agent's state-dir lock takes a live process
# whose command line reads like an agent's for a running agent, and this one lives alongside the agent for a
# moment.
internal_spawn() {
  local log="$1" pidfile="$2" cwd="$3" argvfile="$4" argv=()
  mapfile -d '' argv <"$argvfile"
  cd "$cwd" 2>/dev/null || cd /
  setsid "${argv[@]}" </dev/null >>"$log" 2>&1 &
  printf '%s\n' "$!" >"$pidfile"
}

main() {
  close_inherited_fds
  local cmd="${1:-}"
  case "$cmd" in
    -h | --help | help | "") usage; [[ -n $cmd ]] || exit 2; exit 0 ;;
    __kernel) shift; inside_kernel_setup "$@"; exit 0 ;;
    __init) internal_init ;;
    __spawn) shift; internal_spawn "$@"; exit 0 ;;
  esac
  [[ $EUID -eq 0 ]] || die "must run as root (network, mount and PID namespaces, Open vSwitch)"
  # Paths end up in mount tables, JSON and config files: keep NSLB_SIM_DIR plain.
  [[ $SIM_DIR =~ ^/[A-Za-z0-9._/-]+$ && $SIM_DIR != /run && $SIM_DIR != /run/* && $SIM_DIR != / ]] ||
    die "NSLB_SIM_DIR must be an absolute path of letters, digits, '.', '_', '-' and '/', outside /run (got '$SIM_DIR')"
  case "$cmd" in
    up | down | kill | start | cut | heal)
      # One mutating command at a time; flock -o keeps the lock out of the daemons it starts.
      if [[ -z ${NSLB_SIM_LOCKED:-} ]]; then
        mkdir -p "$(dirname "$LOCK_FILE")"
        NSLB_SIM_LOCKED=1 exec flock -o "$LOCK_FILE" "$SELF" "$@"
      fi ;;
  esac
  unset NSLB_SIM_LOCKED
  shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    exec) cmd_exec "$@" ;;
    kill) cmd_kill "$@" ;;
    start) cmd_start "$@" ;;
    cut) cmd_cut "$@" ;;
    heal) cmd_heal "$@" ;;
    status) cmd_status "$@" ;;
    pids) check_node "${1:-}"; node_pids "$1" ;;
    *) die "unknown command '$cmd' (see --help)" ;;
  esac
}

main "$@"
