# The nodes of scripts/sim-cluster.sh: their kernel state (namespaces kept by bind mounts), their processes
# (one PID namespace per boot), Open vSwitch, the agent, and the Kubernetes relay. Sourced by that script
# only, after its constants and its say/die/quietly helpers; not an interface of its own.

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
    # slave: what the machine unmounts later (where its mounts are shared, as under systemd) goes from the
    # node's copy too, while nothing the node mounts reaches the machine.
    unshare --net="$(ns_file "$node" net)" --mount="$(ns_file "$node" mnt)" --uts="$(ns_file "$node" uts)" \
      --propagation slave -- "$SELF" __kernel "$node" "$dir"
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
      # A killed init not yet reaped is no init: the node is down (`start` boots a new one).
      [[ $line =~ ^State:[[:space:]]*[ZX] ]] && break
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

# Whether the process (a PID as the caller's /proc sees it) runs the nslb agent, by its command line.
is_agent_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -- "$AGENT_MAIN run" >/dev/null; }

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
        if [[ $line =~ [[:space:]]${nspid}$ ]] && is_agent_cmdline "$p"; then
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

# in_node for a question: the command's output goes, but a node that is not running is still said (a caller's
# `2>/dev/null` on in_node would swallow that and exit 1 without a word).
in_node_quiet() {
  local node="$1" init
  shift
  init="$(init_pid "$node")"
  [[ -n $init ]] || die "$node is not running"
  nsenter --target "$init" --net --mount --uts --pid --wdns=/ -- "$@" >/dev/null 2>&1
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
  until in_node_quiet "$node" test /proc/1/ns/pid -ef /proc/self/ns/pid; do
    ((++tries <= 100)) || die "$node: its /proc was not mounted (see $dir/init.log)"
    sleep 0.05
  done
}

ovs_running() {
  in_node_quiet "$1" ovs-appctl --timeout=2 -t ovsdb-server version &&
    in_node_quiet "$1" ovs-appctl --timeout=2 -t ovs-vswitchd version
}

# ovsdb-server and ovs-vswitchd of the node, as ovs-ctl would start them, minus what costs a shared machine:
# no --mlockall (it would pin the userspace datapath's buffers), no syslog, one handler and one revalidator
# thread, and statistics read every 30 s instead of 5.
boot_ovs() {
  local node="$1" tries=0
  if ! in_node "$node" test -e /etc/openvswitch/conf.db; then
    in_node "$node" ovsdb-tool create /etc/openvswitch/conf.db "$OVS_SCHEMA"
  fi
  if ! in_node_quiet "$node" ovs-appctl --timeout=2 -t ovsdb-server version; then
    quietly in_node "$node" ovsdb-server /etc/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
      --pidfile=/run/openvswitch/ovsdb-server.pid --detach --no-chdir \
      --log-file=/var/log/openvswitch/ovsdb-server.log -vconsole:off -vsyslog:off -vfile:info
  fi
  in_node "$node" ovs-vsctl --timeout=10 --no-wait -- init \
    -- set Open_vSwitch . "external_ids:system-id=$node" "external_ids:hostname=$node" \
    other_config:n-handler-threads=1 other_config:n-revalidator-threads=1 other_config:stats-update-interval=30000
  if ! in_node_quiet "$node" ovs-appctl --timeout=2 -t ovs-vswitchd version; then
    quietly in_node "$node" ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid \
      --detach --no-chdir --log-file=/var/log/openvswitch/ovs-vswitchd.log -vconsole:off -vsyslog:off -vfile:info
  fi
  in_node "$node" ovs-vsctl --timeout=10 --may-exist add-br "$NODE_BRIDGE" \
    -- set bridge "$NODE_BRIDGE" datapath_type=netdev -- --may-exist add-port "$NODE_BRIDGE" provider
  until in_node_quiet "$node" ip link show dev "$NODE_BRIDGE"; do
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
  if [[ -f $dir/kubelet.pid ]] && in_node_quiet "$node" kill -0 "$(<"$dir/kubelet.pid")" &&
    [[ -e $dir/kubelet.ready ]]; then
    return 0
  fi
  rm -f "$dir/kubelet.ready"
  printf '%s\0' nice -n -10 node "$KUBE_HELPER" node "$SIM_DIR/api.sock" "$(config_target)" "$node" "$dir/kubelet.ready" >"$dir/kubelet.argv"
  in_node "$node" "$SELF" __spawn "$dir/kubelet.log" "$dir/kubelet.pid" / "$dir/kubelet.argv"
  until [[ -e $dir/kubelet.ready ]]; do
    ((++tries <= 200)) || { tail -n 20 "$dir/kubelet.log" >&2 || true; die "$node: the API relay did not start (see $dir/kubelet.log)"; }
    sleep 0.05
  done
}

agent_argv() {
  local node="$1" dir
  dir="$(node_dir "$node")"
  # NSLB_SIM_NODE_FLAGS: flags for node itself (development: `--cpu-prof --cpu-prof-dir=DIR`, which Node 20
  # refuses in NODE_OPTIONS), split on spaces.
  local -a node_flags=()
  read -r -a node_flags <<<"${NSLB_SIM_NODE_FLAGS:-}"
  AGENT_ARGV=(node "${node_flags[@]}" "$AGENT_MAIN" run)
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
    # Asked again before the verdict: a live agent has been found dead once in a while under CI load (its PID and
    # command line right in the ps listing that followed), never twice in a row.
    if ! agent_alive "$node" && ! { sleep 0.2 && agent_alive "$node"; } && ! { sleep 0.5 && agent_alive "$node"; }; then
      tail -n 20 "$dir/agent.log" >&2 || true
      say "$node: agent.pid says '$(cat "$dir/agent.pid" 2>/dev/null)' (PID inside the node); no live '$AGENT_MAIN run' has it"
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
  setsid nice -n -10 node "$KUBE_HELPER" relay "$SIM_DIR/api.sock" "$address" "$port" "$SIM_DIR/relay.ready" \
    </dev/null >>"$SIM_DIR/relay.log" 2>&1 &
  printf '%s\n' "$!" >"$SIM_DIR/relay.pid"
  until [[ -e $SIM_DIR/relay.ready ]]; do
    ((++tries <= 200)) || { tail -n 20 "$SIM_DIR/relay.log" >&2 || true; die "the API relay did not start (see $SIM_DIR/relay.log)"; }
    sleep 0.05
  done
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
  local pid tries=0 cmdline=()
  setsid "${argv[@]}" </dev/null >>"$log" 2>&1 &
  pid=$!
  # Until the forked child has exec'd, its cmdline is this script's, and agent_alive (which checks the cmdline)
  # would take it for a dead agent: on a loaded machine (CI) that window was long enough for `start` to report
  # "the agent exited" for an agent that was starting. Return once the exec is done, whatever the daemon (the
  # agent or the kubelet helper), or the child is gone (a zombie's cmdline is empty). Builtins only but the
  # sleep: each try used to start three processes, and waiting for an agent's command line in the kubelet
  # helper's spawn ran all 1,000 tries every time (10 s on a quiet machine, 40 s and more under load, and
  # thousands of PIDs in the node).
  while [[ -e /proc/$pid ]]; do
    cmdline=()
    mapfile -d '' -t cmdline <"/proc/$pid/cmdline" 2>/dev/null || break
    ((${#cmdline[@]} > 0)) || break
    [[ " ${cmdline[*]} " == *" __spawn "* ]] || break
    ((++tries <= 1000)) || break
    sleep 0.01
  done
  printf '%s\n' "$pid" >"$pidfile"
}
