#!/usr/bin/env bash
# kind-start.sh: a kind cluster wired to the local registry (localhost:5000).
set -euo pipefail
me=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)
cluster=${KAR_CLUSTER_NAME:-kar}

case "${1:-}" in
  -h|-help|--help)
    cat <<USAGE
Usage: $me

Starts the local registry (start-local-registry.sh) and a kind cluster named
$cluster (scripts/kind-config.yaml) that pulls localhost:5000/... images from
it and maps NodePorts 31379/31093 to the host. Then: make docker;
scripts/kar-k8s-deploy.sh [-node-ports].
Environment: KAR_CLUSTER_NAME (default kar).
USAGE
    exit 0 ;;
  "") ;;
  *) echo "$me: unexpected argument $1 (see $me -h)" >&2; exit 2 ;;
esac

command -v kind >/dev/null 2>&1 || { echo "$me: kind not found: install it from https://kind.sigs.k8s.io" >&2; exit 1; }
"$here/start-local-registry.sh"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "$me: kind cluster $cluster already exists"
else
  kind create cluster --name "$cluster" --config "$here/kind-config.yaml"
fi
# The node reaches the registry by its container name on the kind network.
docker network connect kind "${KAR_REGISTRY_NAME:-kind-registry}" 2>/dev/null || true
# Documented by kind: tell tools where the local registry is.
kubectl apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${KAR_REGISTRY_PORT:-5000}"
YAML
echo "$me: kind cluster $cluster ready (kubectl context kind-$cluster)"
