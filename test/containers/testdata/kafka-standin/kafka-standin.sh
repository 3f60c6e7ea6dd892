#!/bin/sh
# Serves the HOST listener of $KAFKA_LISTENERS (HOST://:PORT), advertised
# as localhost:PORT as scripts/docker-compose.yaml advertises it: kar dev
# listens on the container's loopback, socat forwards the container's
# address (where the published port arrives) to it. The INTERNAL and
# CONTROLLER listeners of a real Kafka are not served.
set -eu
port=${KAFKA_LISTENERS##*HOST://:}
port=${port%%,*}
kar dev -kafka_port "$port" -redis embedded -redis_port 6390 &
dev=$!
socat "TCP-LISTEN:$port,bind=$(hostname -i | cut -d' ' -f1),fork,reuseaddr" "TCP:127.0.0.1:$port" &
fwd=$!
trap 'kill -TERM $dev $fwd 2>/dev/null' TERM INT
wait $dev || true
kill -TERM $fwd 2>/dev/null || true
