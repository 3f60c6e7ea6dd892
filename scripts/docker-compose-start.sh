#!/usr/bin/env bash
# Start kar's local backends in containers (scripts/docker-compose.yaml):
# Redis on localhost:31379 and Kafka on localhost:31093. Without a container
# engine, `kar dev` serves the same endpoints.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [-h]

Starts Redis (localhost:31379) and a one-node Kafka (localhost:31093) with
Docker Compose (Docker, or podman's Docker API: DOCKER_HOST=unix://...) and
waits until both answer. Then:
  source scripts/kar-env-local.sh
Environment:
  KAR_REDIS_PASSWORD   password of the Redis ACL user karmesh
  KAR_REDIS_PORT, KAR_KAFKA_PORT    other host ports (default 31379, 31093)
  KAR_REDIS_IMAGE, KAR_KAFKA_IMAGE  other images (default redis:7.2, apache/kafka:3.9.0)
  KAR_COMPOSE_WAIT     seconds to wait for both to answer (default 180)
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
  echo "$(basename "$0"): Docker Compose not found; install Docker (or podman and docker-compose), or run \`kar dev\` instead (no containers needed)" >&2
  exit 1
fi
compose+=(-p kar -f "$here/docker-compose.yaml")
redis_port="${KAR_REDIS_PORT:-31379}"
kafka_port="${KAR_KAFKA_PORT:-31093}"

# Redis answers PING; Kafka accepts connections on its host listener.
# (Polled from the host rather than `up --wait`: podman without systemd
# runs no healthchecks.)
redis_ready() {
  local line=""
  exec 3<>"/dev/tcp/127.0.0.1/$redis_port" || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 line <&3 || true
  exec 3<&- 3>&-
  [[ "$line" == "+PONG"* ]]
}
kafka_ready() {
  exec 3<>"/dev/tcp/127.0.0.1/$kafka_port" || return 1
  exec 3<&- 3>&-
}

"${compose[@]}" up -d
deadline=$((SECONDS + ${KAR_COMPOSE_WAIT:-180}))
until redis_ready 2>/dev/null && kafka_ready 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "$(basename "$0"): Redis (localhost:$redis_port) and Kafka (localhost:$kafka_port) did not both answer within ${KAR_COMPOSE_WAIT:-180}s; their logs:" >&2
    "${compose[@]}" logs --no-color --tail 30 >&2 || true
    exit 1
  fi
  sleep 1
done
echo "Kafka on localhost:$kafka_port and Redis on localhost:$redis_port are up."
if [ "$redis_port" = 31379 ] && [ "$kafka_port" = 31093 ]; then
  echo "Run: source $here/kar-env-local.sh"
else
  echo "Run: export KAFKA_BROKERS=localhost:$kafka_port REDIS_HOST=localhost REDIS_PORT=$redis_port"
fi
