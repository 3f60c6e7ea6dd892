#!/usr/bin/env bash
# kar-k8s-undeploy.sh: a thin wrapper over `kar k8s undeploy` (the logic is Go, in k8s/install).
set -euo pipefail
me=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)

usage() {
  cat <<'USAGE'
Usage: kar-k8s-undeploy.sh [-kubeconfig F] [-context C]

Removes everything kar-k8s-deploy.sh and kar-k8s-namespace-enable.sh made
(the webhook, namespace kar-system with Redis, Kafka and their volumes, the
label and secrets of enabled namespaces) and nothing else.
USAGE
}

case "${1:-}" in -h|-help|--help) usage; exit 0 ;; esac

# kar: $KAR_BIN, else the one built next to the scripts (bin/), else PATH.
kar=${KAR_BIN:-}
if [ -z "$kar" ]; then
  if [ -x "$here/../bin/kar" ]; then
    kar="$here/../bin/kar"
  elif command -v kar >/dev/null 2>&1; then
    kar=$(command -v kar)
  else
    echo "$me: kar not found: build it with \`scripts/build.sh\` in the repository, or put kar on PATH" >&2
    exit 1
  fi
fi
exec "$kar" k8s undeploy "$@"
