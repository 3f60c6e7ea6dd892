#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes, the version pinned in go.mod here)
# from the Go module proxy into $1 (default: $HOME/.cache/kar/kube-apiserver-VERSION).
# A separate module, so Kubernetes' many dependencies stay out of kar's go.mod.
# Cold: ~7 minutes on 2 cores; the result is cached by the tests (k8s/kubetest).
set -euo pipefail
cd "$(dirname "$0")"
version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' go.mod)
out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/kar/kube-apiserver-$version}
minor=$(echo "$version" | cut -d. -f2)
mkdir -p "$(dirname "$out")"
# providerless: no in-tree cloud providers (k8s.io/legacy-cloud-providers
# v0.29.6 is not on the module proxy, and tests need none).
GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" go build -tags providerless \
  -ldflags "-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
  -o "$out.tmp.$$" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp.$$" "$out"
echo "$out"
