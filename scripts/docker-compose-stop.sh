#!/usr/bin/env bash
# Stop and remove the containers of scripts/docker-compose-start.sh.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [-h]

Stops and removes the Redis and Kafka containers started by
scripts/docker-compose-start.sh, their network and their volumes (their
data goes with them).
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
  echo "$(basename "$0"): Docker Compose not found; nothing to stop" >&2
  exit 1
fi

"${compose[@]}" -p kar -f "$here/docker-compose.yaml" down --volumes --remove-orphans
