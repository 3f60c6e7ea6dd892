#!/usr/bin/env bash
# Run (create or update) a kar component as a fixed-scale Code Engine app.
#
#   kar-ce-run.sh -app A -image I -name N [-service S] [-actors T1,T2] [-port P]
#                 [-scale N] [-env K=V]... [-externalize] [-registry-secret S]
#                 [-nowait] [-v LEVEL] [-project P]
#
# The project comes from -project or KAR_CE_PROJECT; the API key from
# IBMCLOUD_API_KEY, the region from IBMCLOUD_REGION (default us-south).
# All the logic is `kar ce app run`; this keeps the script name.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kar="${KAR_BIN:-}"
if [ -z "$kar" ]; then
  if [ -x "$here/../bin/kar" ]; then kar="$here/../bin/kar"; else kar="kar"; fi
fi
exec "$kar" ce app run "$@"
