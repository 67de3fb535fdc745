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

N is at most 32. The rig serializes its own changing commands (a lock on ${NSLB_SIM_DIR}.lock, waited for at
most NSLB_SIM_LOCK_WAIT_S seconds, default 300, naming its holder) but never takes the data-plane lock itself,
so a test holding that lock can drive it. More: docs/sim-cluster.md.

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
# The nodes run at the default CPU priority whatever the caller's: a benchmark that hosts the API server may raise
# its own. The API relay and each node's forwarder run at nice -10 (below): they stand for a network and a
# control plane with CPUs of their own, which on one machine would otherwise wait behind every node's bulk work.
renice -n 0 -p $$ >/dev/null 2>&1 || true
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

# Kernel state, processes, OVS, agent and relay of the nodes.
# shellcheck source=lib/sim-node.sh
source "$REPO/scripts/lib/sim-node.sh"

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
  # Progress on stderr (a run that is stopped halfway shows how far it got).
  for node in $(all_nodes); do
    start_node "$node"
    say "$node: booted, its agent starting (${SECONDS} s)"
  done
  for node in $(all_nodes); do
    wait_agent "$node"
    say "$node: agent healthy (${SECONDS} s)"
  done
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

# The processes holding the rig's lock, from /proc/locks (flock(1) holds it for the command it runs).
lock_holders() {
  local inode id pid dev ino
  inode="$(stat -c %i "$LOCK_FILE" 2>/dev/null)" || return 0
  while read -r id _ _ _ pid dev _; do
    ino="${dev##*:}"
    [[ $ino == "$inode" && $pid =~ ^[0-9]+$ ]] || continue
    ps -o pid=,etime=,args= -p "$pid" 2>/dev/null || printf '%s (gone)\n' "$pid"
  done </proc/locks
}

# Runs this command again under the lock. Waiting is said at once, with who holds it, and bounded: a command that
# waits silently is what a test's timeout kills without a word.
take_lock() {
  local wait_s="${NSLB_SIM_LOCK_WAIT_S:-300}" rc=0
  [[ $wait_s =~ ^[0-9]+$ ]] || die "NSLB_SIM_LOCK_WAIT_S must be a number of seconds (got '$wait_s')"
  if ! flock -n "$LOCK_FILE" true; then
    say "waiting up to ${wait_s} s for $LOCK_FILE (another sim-cluster.sh command runs), held by:"
    lock_holders | sed 's/^/  /' >&2
  fi
  NSLB_SIM_LOCKED=1 flock -o -w "$wait_s" -E 75 "$LOCK_FILE" "$SELF" "$@" || rc=$?
  ((rc != 75)) || die "$LOCK_FILE still held after ${wait_s} s by: $(lock_holders | tr '\n' ';')"
  exit "$rc"
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
        take_lock "$@"
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
