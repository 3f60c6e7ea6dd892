#!/usr/bin/env bash
# k3d-start.sh: a k3d cluster wired to the local registry (localhost:5000).
set -euo pipefail
me=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)
cluster=${KAR_CLUSTER_NAME:-kar}

case "${1:-}" in
  -h|-help|--help)
    cat <<USAGE
Usage: $me

Starts the local registry (start-local-registry.sh) and a k3d cluster named
$cluster whose nodes pull localhost:5000/... images from it
(scripts/k3d-registries.yaml) and whose NodePorts 31379/31093 are mapped to
the host. Then: make docker; scripts/kar-k8s-deploy.sh [-node-ports].
Environment: KAR_CLUSTER_NAME (default kar).
USAGE
    exit 0 ;;
  "") ;;
  *) echo "$me: unexpected argument $1 (see $me -h)" >&2; exit 2 ;;
esac

command -v k3d >/dev/null 2>&1 || { echo "$me: k3d not found: install it from https://k3d.io" >&2; exit 1; }
"$here/start-local-registry.sh"
if k3d cluster list "$cluster" >/dev/null 2>&1; then
  echo "$me: k3d cluster $cluster already exists"
else
  k3d cluster create "$cluster" \
    --registry-config "$here/k3d-registries.yaml" \
    -p "127.0.0.1:31379:31379@server:0" -p "127.0.0.1:31093:31093@server:0"
fi
docker network connect "k3d-$cluster" "${KAR_REGISTRY_NAME:-kind-registry}" 2>/dev/null || true
echo "$me: k3d cluster $cluster ready (kubectl context k3d-$cluster)"
