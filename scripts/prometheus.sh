#!/usr/bin/env bash
# Runs Debian's Prometheus binary (for the test that scrapes the agent as the chart's docs say), fetched
# once from Debian's archive with `apt-get download` and unpacked into a cache: the package itself is not
# installed, so no service is started and nothing else on the machine changes. The download needs the
# machine's network: run it once where that is reachable (e.g. `scripts/prometheus.sh --version`) before
# running it in a netns of its own.
#
#   scripts/prometheus.sh --config.file=… --storage.tsdb.path=… --web.listen-address=127.0.0.1:9090
set -euo pipefail
if [[ $EUID -eq 0 ]]; then CACHE="${NSLB_IMAGE_CACHE:-/var/cache/nslb-image}"; else CACHE="${NSLB_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nslb-image}"; fi
BIN="$CACHE/prometheus/usr/bin/prometheus"
if [[ ! -x $BIN ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # A fresh machine may have no package lists yet.
  (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) ||
    { apt-get update -q >/dev/null && (cd "$tmp" && apt-get download -q prometheus >/dev/null); }
  mkdir -p "$CACHE/prometheus.tmp"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$CACHE/prometheus.tmp"
  rm -rf "$CACHE/prometheus"
  mv "$CACHE/prometheus.tmp" "$CACHE/prometheus"
fi
exec "$BIN" "$@"
