#!/usr/bin/env bash
# Runs the agent image on this node as the Helm chart's DaemonSet runs it (charts/nslb/templates/daemonset.yaml;
# test/unit/run-image.test.ts keeps the two the same): host network and PID namespace, privileged, and the
# same host directories at the same places. Detached; prints the container id. `podman rm -f NAME` stops it
# (HAProxy keeps serving: see --daemon-cgroup in the chart's README).
#
#   scripts/run-image.sh [--name NAME] [--kubeconfig FILE] [--image IMAGE] [--dry-run] -- NSLB-ARGS…
#   scripts/run-image.sh --kubeconfig ~/.kube/config -- run --kubernetes --node-name "$(hostname)" --daemon-cgroup=/nslb
#
# --kubeconfig FILE is mounted read-only at /etc/nslb/kubeconfig and handed to the agent (--kubeconfig), where
# a pod uses its in-cluster configuration. The state dir mounted is the one NSLB-ARGS name (--state-dir, else
# /var/lib/nslb), at the same path, as the chart does with its stateDir value. --dry-run prints podman's
# argv, one per line, and runs nothing.
set -euo pipefail

NAME=nslb-agent
KUBECONFIG_FILE=
IMAGE="${NSLB_IMAGE:-nslb:latest}"
DRY_RUN=0
read -r -a PODMAN <<<"${NSLB_PODMAN:-podman --runtime runc --cgroup-manager cgroupfs}"

die() { printf 'run-image: error: %s\n' "$*" >&2; exit 2; }
while (($# > 0)); do
  case $1 in
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --name=*) NAME=${1#--name=}; shift ;;
    --kubeconfig) KUBECONFIG_FILE=${2:?--kubeconfig needs a file}; shift 2 ;;
    --kubeconfig=*) KUBECONFIG_FILE=${1#--kubeconfig=}; shift ;;
    --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    *) die "unknown option $1 (usage: $0 [--name NAME] [--kubeconfig FILE] [--image IMAGE] [--dry-run] -- NSLB-ARGS...)" ;;
  esac
done
(($# > 0)) || die "no nslb arguments after -- (e.g. -- run --kubernetes --node-name \"\$(hostname)\")"
ARGS=("$@")

STATE_DIR=/var/lib/nslb
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case ${ARGS[i]} in
    --state-dir=*) STATE_DIR=${ARGS[i]#--state-dir=} ;;
    --state-dir) STATE_DIR=${ARGS[i + 1]:-$STATE_DIR} ;;
  esac
done
[[ $STATE_DIR == /* ]] || die "--state-dir must be an absolute path: it is mounted from the host at the same path"

argv=("${PODMAN[@]}" run --detach --name "$NAME"
  # hostNetwork: true, hostPID: true, securityContext.privileged: true
  --network host --pid host --privileged
  # The caller's open-files limit, which HAProxy's maxconn needs: podman's own default (1048576) is
  # refused on hosts whose hard limit is lower. Kubernetes' runtimes give their own, usually 1048576.
  --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768
  # volumeMounts, in the chart's order
  --volume /run/netns:/run/netns:rshared
  --volume /var/run/openvswitch:/var/run/openvswitch
  --volume "$STATE_DIR:$STATE_DIR"
  --volume /sys/fs/cgroup:/sys/fs/cgroup
)
if [[ -n $KUBECONFIG_FILE ]]; then
  [[ -r $KUBECONFIG_FILE ]] || die "cannot read $KUBECONFIG_FILE"
  argv+=(--volume "$(realpath "$KUBECONFIG_FILE"):/etc/nslb/kubeconfig:ro")
  ARGS+=(--kubeconfig=/etc/nslb/kubeconfig)
fi
argv+=("$IMAGE" "${ARGS[@]}")

if ((DRY_RUN)); then
  printf '%s\n' "${argv[@]}"
  exit 0
fi
mkdir -p /run/netns "$STATE_DIR"
# /run/netns must be a shared mount for the namespaces the agent makes to show on the host (as
# mountPropagation: Bidirectional needs); `ip netns add` makes it one, this does it before any exists.
if ! findmnt -n -o PROPAGATION /run/netns 2>/dev/null | grep shared >/dev/null; then
  mountpoint -q /run/netns || mount --bind /run/netns /run/netns
  mount --make-shared /run/netns
fi
exec "${argv[@]}"
