#!/usr/bin/env bash
# kar-k8s-deploy.sh: a thin wrapper over `kar k8s deploy` (the logic is Go, in k8s/install).
set -euo pipefail
me=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)

usage() {
  cat <<'USAGE'
Usage: kar-k8s-deploy.sh [-os] [-m CREDENTIAL] [-r VERSION] [-registry HOST[/PATH]] [flags]

Installs kar into the cluster of the current kubeconfig context: namespace
kar-system, Redis and Kafka (or managed ones with -m), the runtime-config
secret, the kar-injector webhook; enables the default namespace.
Re-running it updates the install and rotates the injector certificate.

  -os                   OpenShift: no fixed UIDs (restricted SCC)
  -m CREDENTIAL         managed Redis + Kafka from IBM Cloud service keys: the
                        service credential name (needs IBMCLOUD_API_KEY) or a
                        file (ibmcloud resource service-key NAME --output json)
  -r VERSION            released images (quay.io/ibm/kar-sidecar:VERSION) instead of
                        locally built ones (localhost:5000/kar/...:latest)
  -registry HOST        registry of kar's images; with KAR_REGISTRY_PASSWORD
                        (and -registry-user) the image-pull secret is created
  -node-ports           expose Redis (31379) and Kafka (31093) for a laptop kar
  -kubeconfig F, -context C   which cluster

All flags: kar k8s deploy -h
USAGE
}

case "${1:-}" in -h|-help|--help) usage; exit 0 ;; esac
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -m|-r|-registry|-registry-user|-kubeconfig|-context|-image-pull-policy|-webhook-url|-storage-class)
      if [ $((i + 1)) -ge ${#args[@]} ] || [[ "${args[i + 1]}" == -* ]]; then
        echo "$me: missing argument: ${args[i]} needs a value" >&2
        usage >&2
        exit 2
      fi
      i=$((i + 1)) ;;
  esac
done

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
exec "$kar" k8s deploy "$@"
