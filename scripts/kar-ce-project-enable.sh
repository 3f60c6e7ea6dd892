#!/usr/bin/env bash
# Enable a Code Engine project for kar: store the Databases for Redis and
# Event Streams settings of a service credential in the project's secret
# kar.ibm.com.runtime-config (created, or replaced when it exists).
#
#   kar-ce-project-enable.sh [-project P] <service-credential>
#
# The project comes from -project or KAR_CE_PROJECT; the API key from
# IBMCLOUD_API_KEY, the region from IBMCLOUD_REGION (default us-south).
# All the logic is `kar ce project enable`; this keeps the script name.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kar="${KAR_BIN:-}"
if [ -z "$kar" ]; then
  if [ -x "$here/../bin/kar" ]; then kar="$here/../bin/kar"; else kar="kar"; fi
fi
if [ $# -lt 1 ]; then
  echo "usage: $(basename "$0") [-project P] <service-credential>" >&2
  exit 2
fi
exec "$kar" ce project enable "$@"
