#!/usr/bin/env bash
# The hello world mesh in one command, on the embedded backend: builds kar,
# starts `kar dev`, runs the greeter service and its client as the
# deployment guide does, calls the greeter with `kar rest`, then stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ]; then
  echo "usage: scripts/hello.sh   (needs go, node and npm)"; exit 0
fi
for tool in go node npm; do
  command -v "$tool" >/dev/null || { echo "hello.sh: $tool is not installed" >&2; exit 1; }
done
scripts/build.sh
export PATH="$PWD/bin:$PATH"
(cd examples/service-hello-js && npm install --prod --no-audit --no-fund --loglevel=error >/dev/null)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

kar dev > /tmp/kar-dev.$$.log 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q "export" /tmp/kar-dev.$$.log && break; sleep 0.1; done
grep -q "export" /tmp/kar-dev.$$.log || { cat /tmp/kar-dev.$$.log; exit 1; }
# shellcheck source=kar-env-local.sh
source scripts/kar-env-local.sh

cd examples/service-hello-js
kar run -app hello-js -service greeter node server.js & pids+=($!)
kar run -app hello-js node client.js
kar rest -app hello-js post greeter helloJson '{"name": "Alan Turing"}'
rm -f /tmp/kar-dev.$$.log
