#!/usr/bin/env bash
# Builds kar's binaries as the images ship them. The Makefile, the Dockerfile
# and every script that builds kar call this one recipe:
# - static (CGO_ENABLED=0): a kar that maps no libc, 2 MiB less resident
#   per sidecar;
# - no symbol table (-s -w), and the version kar reports;
# - kar with the sidecar's GODEBUG setting linked in (internal/sysmon), so
#   that a sidecar starts once. The go command refuses that setting as a
#   //go:debug directive, and a plain `go build` gives a kar that runs
#   itself again to set it (25 ms of every `kar run` on a slow machine).
#
#   scripts/build.sh                       every command into bin/
#   scripts/build.sh OUT [PACKAGE...]      those packages into OUT
#   VERSION=v1.2.3 scripts/build.sh        the version (default: git describe)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bin}
pkgs=("${@:2}")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./cmd/...)
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
# internal/sysmon.LinkerFlags; its tests check that they agree.
sysmon="-X runtime.godebugDefault=schedtrace=2147483647 -X github.com/kar-runtime/kar/internal/sysmon.linked=schedtrace=2147483647"
mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/" "${pkgs[@]}"
for p in "${pkgs[@]}"; do
  if [ "$p" = ./cmd/... ] || [ "$p" = ./cmd/kar ]; then
    # kar again, linked with the setting (its packages are compiled already).
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version $sysmon" -o "$out/" ./cmd/kar
    break
  fi
done
