# Shared by setup-node.sh and build-image.sh (sourced, not run). The caller defines say() and die() with its
# own prefix, and PACKAGES, before calling ensure_packages.

# Runs a noisy command, showing its output only if it fails: ovs-ctl and apt chatter (ulimit and system-id
# warnings) would otherwise bury the one line that matters.
quietly() {
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "failed: $*"
  fi
  rm -f "$log"
}

# Installs whichever of PACKAGES is missing; nothing (not even apt-get update) when all are there.
ensure_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep 'install ok installed' >/dev/null; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]}"
  quietly env DEBIAN_FRONTEND=noninteractive apt-get update -q
  quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
