#!/usr/bin/env bash
# Renders the Grafana dashboard k8s/install/dashboards/kar.json from a real
# run, without Grafana: builds kar, starts `kar dev`, the greeter service, the
# dining philosophers and a caller sidecar, drives about a minute of mixed load
# (scripts/render_dashboard.py), has a Prometheus scrape every sidecar's
# -metrics_port every 2 s meanwhile, then evaluates each panel's PromQL through
# Prometheus' HTTP API and draws the panels with matplotlib into
# docs/observability-dashboard.png. Stops every process it started.
#
# Needs go, node, npm, prometheus and python3-matplotlib
# (Debian: apt-get install -y prometheus python3-matplotlib). Not part of CI.
# Usage: [KEEP_LOGS=1] scripts/render-dashboard.sh [seconds of load, default 60] [output png]
set -euo pipefail
cd "$(dirname "$0")/.."
usage="Usage: scripts/render-dashboard.sh [seconds of load, default 60] [output png, default docs/observability-dashboard.png]"
case "${1:-60}" in
  -h|--help) echo "$usage"; exit 0 ;;
  *[!0-9]*|0) echo "$usage" >&2; exit 2 ;;
esac
secs=${1:-60}
out=${2:-docs/observability-dashboard.png}
for tool in go node npm prometheus python3; do
  command -v "$tool" >/dev/null || { echo "render-dashboard.sh: $tool is not installed" >&2; exit 1; }
done
# Debian's python3-matplotlib is for /usr/bin/python3, which another python3
# (pyenv, a venv) may hide on PATH.
py=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import matplotlib' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "render-dashboard.sh: python3-matplotlib is not installed" >&2; exit 1; }

scripts/build.sh
for ex in service-hello-js actors-js; do
  [ -d "examples/$ex/node_modules" ] || (cd "examples/$ex" && npm install --prod --no-audit --no-fund --loglevel=error >/dev/null)
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then echo "render-dashboard.sh: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# free ports, all distinct: kafka redis, the greeter's app and metrics ports, the
# actors', the caller sidecar's runtime and metrics ports, prometheus
read -r kafka redis a_greeter m_greeter a_actors m_actors rt_caller m_caller prom < <("$py" - <<'PY'
import socket
socks = [socket.socket() for _ in range(9)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()
PY
)

bin/kar dev -kafka_port "$kafka" -redis_port "$redis" > "$tmp/dev.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q export "$tmp/dev.log" && break; sleep 0.1; done
grep -q export "$tmp/dev.log" || { cat "$tmp/dev.log" >&2; exit 1; }
export KAFKA_BROKERS=localhost:$kafka REDIS_HOST=localhost REDIS_PORT=$redis
# render_dashboard.py calls a service nobody provides: hold its calls 10 s, not 120.
export KAR_MISSING_COMPONENT_TIMEOUT=10s
kar=$PWD/bin/kar
app=hello-js

(cd examples/service-hello-js && exec "$kar" run -app "$app" -service greeter -app_port "$a_greeter" -metrics_port "$m_greeter" node server.js) > "$tmp/greeter.log" 2>&1 & pids+=($!)
(cd examples/actors-js && exec "$kar" run -app "$app" -actors Cafe,Table,Fork,Philosopher -app_port "$a_actors" -metrics_port "$m_actors" node server.js) > "$tmp/actors.log" 2>&1 & pids+=($!)
"$kar" run -app "$app" -runtime_port "$rt_caller" -metrics_port "$m_caller" > "$tmp/caller.log" 2>&1 & pids+=($!)

cat > "$tmp/prometheus.yml" <<YAML
global: {scrape_interval: 2s, scrape_timeout: 2s, evaluation_interval: 2s}
scrape_configs:
  - {job_name: kar-greeter, static_configs: [{targets: ['127.0.0.1:$m_greeter']}]}
  - {job_name: kar-actors, static_configs: [{targets: ['127.0.0.1:$m_actors']}]}
  - {job_name: kar-caller, static_configs: [{targets: ['127.0.0.1:$m_caller']}]}
YAML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom" > "$tmp/prometheus.log" 2>&1 & pids+=($!)

# The dining philosophers' tester: actor calls, tail calls and reminders
# (it exits when its philosophers have eaten; the load goes on without it).
(cd examples/actors-js && DP_SERVINGS=$((secs * 3)) DP_TIMEOUT=$((secs + 60)) exec "$kar" run -app "$app" node tester.js) > "$tmp/tester.log" 2>&1 & pids+=($!)

"$py" scripts/render_dashboard.py -app "$app" -caller "http://127.0.0.1:$rt_caller" \
  -prometheus "http://127.0.0.1:$prom" -seconds "$secs" -dashboard k8s/install/dashboards/kar.json \
  -out "$out" || { tail -n 20 "$tmp"/*.log >&2; exit 1; }
