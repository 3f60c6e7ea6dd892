#!/usr/bin/env bash
# Disable kar in a Code Engine project: delete its secret
# kar.ibm.com.runtime-config.
#
#   kar-ce-project-disable.sh [<project>]
#
# Without an argument the project comes from KAR_CE_PROJECT.
# All the logic is `kar ce project disable`; this keeps the script name.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kar="${KAR_BIN:-}"
if [ -z "$kar" ]; then
  if [ -x "$here/../bin/kar" ]; then kar="$here/../bin/kar"; else kar="kar"; fi
fi
if [ $# -gt 1 ]; then
  echo "usage: $(basename "$0") [<project>]" >&2
  exit 2
fi
if [ $# -eq 1 ]; then
  exec "$kar" ce project disable -project "$1"
fi
exec "$kar" ce project disable
