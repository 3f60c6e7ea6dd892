#!/usr/bin/env bash
# Start kar's local backends in containers (scripts/docker-compose.yaml):
# Redis on localhost:31379 and Kafka on localhost:31093. Without Docker,
# `kar dev` serves the same endpoints.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [-h]

Starts Redis (localhost:31379) and a one-node Kafka (localhost:31093) with
Docker Compose and waits until both are healthy. Then:
  source scripts/kar-env-local.sh
Set KAR_REDIS_PASSWORD to choose the password of the Redis ACL user karmesh.
Stop with scripts/docker-compose-stop.sh.
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    *) echo "$(basename "$0"): unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "$0")" && pwd)"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "$(basename "$0"): Docker Compose not found; install Docker, or run \`kar dev\` instead (no Docker needed)" >&2
  exit 1
fi

"${compose[@]}" -f "$here/docker-compose.yaml" up -d --wait
echo "Kafka on localhost:31093 and Redis on localhost:31379 are up."
echo "Run: source $here/kar-env-local.sh"
