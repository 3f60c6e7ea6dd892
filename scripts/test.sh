#!/usr/bin/env bash
# The test command of README.md: builds kar, installs the examples' npm
# packages, and runs every Go test (unit and integration: real redis-server,
# the Kafka-protocol broker, real kar processes).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/ ./cmd/...
for d in examples/*/; do
  if [ -f "$d/package.json" ]; then
    (cd "$d" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
export KAR_BIN="$PWD/bin/kar"
go vet ./...
go test -count=1 -timeout 60m "$@" ./...
