#!/usr/bin/env bash
# The whole test suite on a real node: unit, golden and e2e (which need root, OVS and HAProxy).
#
#   sudo scripts/test.sh                        # everything
#   sudo scripts/test.sh test/e2e -t failover   # extra arguments go to vitest
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup-node.sh
# Format, lint (biome.json) and the import rules between src/ folders (.dependency-cruiser.cjs), before the tests.
npm run --silent lint
npm run --silent typecheck
exec npx vitest run "$@"
