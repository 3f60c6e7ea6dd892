#!/usr/bin/env bash
# The test command of README.md: builds kar, installs the examples' npm
# packages, and runs every Go test (unit and integration: real redis-server,
# the Kafka-protocol broker, real kar processes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Built as the images build kar: the tests run what ships.
scripts/build.sh
for d in examples/*/; do
  if [ -f "$d/package.json" ]; then
    (cd "$d" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
# The Kubernetes tests run a real kube-apiserver built from the module proxy
# (cached; ~7 minutes cold on 2 cores): build it first, so that the build
# does not share the CPU with timing-sensitive tests.
apiserver="${XDG_CACHE_HOME:-$HOME/.cache}/kar/kube-apiserver-$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' test/kube/go.mod)"
if [ -z "${KAR_KUBE_APISERVER:-}" ] && [ ! -x "$apiserver" ]; then
  echo "building kube-apiserver for the Kubernetes tests (once, cached in $apiserver)..."
  test/kube/build.sh >/dev/null
fi
export KAR_BIN="$PWD/bin/kar"
go vet ./...
go test -count=1 -timeout 60m "$@" ./...
