#!/usr/bin/env bash
# start-local-registry.sh: runs a Docker registry on localhost:5000, where
# `make docker` pushes kar's images and kind/k3d clusters pull them from.
set -euo pipefail
me=$(basename "$0")
name=${KAR_REGISTRY_NAME:-kind-registry}
port=${KAR_REGISTRY_PORT:-5000}

case "${1:-}" in
  -h|-help|--help)
    cat <<USAGE
Usage: $me

Starts (or keeps) the container $name: registry:2 on 127.0.0.1:$port.
Environment: KAR_REGISTRY_NAME (default kind-registry), KAR_REGISTRY_PORT (default 5000).
USAGE
    exit 0 ;;
  "") ;;
  *) echo "$me: unexpected argument $1 (see $me -h)" >&2; exit 2 ;;
esac

command -v docker >/dev/null 2>&1 || { echo "$me: docker not found: a local registry needs a Docker engine" >&2; exit 1; }
if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)" = "true" ]; then
  echo "$me: registry $name already running on localhost:$port"
  exit 0
fi
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --restart=always -p "127.0.0.1:$port:5000" --name "$name" registry:2 >/dev/null
echo "$me: registry $name running on localhost:$port"
