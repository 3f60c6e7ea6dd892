#!/usr/bin/env bash
# Builds kar's images with podman and runs them for real (test/containers):
# installs podman, runc, catatonit, mmdebstrap and docker-compose when
# missing (Debian, as root), then runs the Go tests of test/containers with
# KAR_CONTAINERS=1. Base images are local stand-ins built once from Debian
# packages and reused; image layers are cached between runs.
#   scripts/test-containers.sh [go test flags, e.g. -run TestImages]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0
fi

need=()
for tool in podman:podman runc:runc catatonit:catatonit mmdebstrap:mmdebstrap \
            docker-compose:docker-compose redis-server:redis-server; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p bin
go build -o bin/ ./cmd/...
# The compose test runs the hello world's Node.js processes on the host.
(cd examples/service-hello-js && npm install --no-audit --no-fund --loglevel=error >/dev/null)
export KAR_BIN="$PWD/bin/kar" KAR_CONTAINERS=1
# The podman settings (runc, no default ulimits) come from
# test/containers/containers.conf through CONTAINERS_CONF, set by the tests.
exec go test -count=1 -v -timeout 40m "$@" ./test/containers/
