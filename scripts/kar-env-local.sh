# Source this file (`source scripts/kar-env-local.sh`) to point kar at the
# local backends: `kar dev` or scripts/docker-compose-start.sh serve them.
export KAFKA_BROKERS=localhost:31093
export REDIS_HOST=localhost
export REDIS_PORT=31379
