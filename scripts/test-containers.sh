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

# What the tests use, as Debian packages: the CNI plugins and iptables give
# Compose's bridge network and its published ports, catatonit podman kube
# play's pause image.
pkgs=(podman runc catatonit mmdebstrap docker-compose containernetworking-plugins
      golang-github-containernetworking-plugin-dnsname iptables redis-server)
if command -v dpkg >/dev/null; then
  need=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
for tool in podman runc catatonit mmdebstrap docker-compose redis-server; do
  command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool is not installed" >&2; exit 1; }
done

scripts/build.sh
# The compose test runs the hello world's Node.js processes on the host.
(cd examples/service-hello-js && npm install --no-audit --no-fund --loglevel=error >/dev/null)
export KAR_BIN="$PWD/bin/kar" KAR_CONTAINERS=1
# The podman settings (runc, no default ulimits) come from
# test/containers/containers.conf through CONTAINERS_CONF, set by the tests.
exec go test -count=1 -v -timeout 40m "$@" ./test/containers/
