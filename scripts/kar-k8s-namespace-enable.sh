#!/usr/bin/env bash
# kar-k8s-namespace-enable.sh: a thin wrapper over `kar k8s namespace enable` (the logic is Go, in k8s/install).
set -euo pipefail
me=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)

usage() {
  cat <<'USAGE'
Usage: kar-k8s-namespace-enable.sh NAMESPACE [-kubeconfig F] [-context C]

Creates NAMESPACE if needed, copies kar's runtime-config (and image-pull)
secret into it and labels it kar.ibm.com/enabled=true, so the kar-injector
injects kar into its annotated Pods.
USAGE
}

case "${1:-}" in
  -h|-help|--help) usage; exit 0 ;;
  "") echo "$me: missing argument: NAMESPACE" >&2; usage >&2; exit 2 ;;
  -*) echo "$me: missing argument: NAMESPACE must come first (got flag $1)" >&2; usage >&2; exit 2 ;;
esac

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
exec "$kar" k8s namespace enable "$@"
