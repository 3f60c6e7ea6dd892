#!/usr/bin/env bash
# Source this file to join the mesh of the IBM Cloud managed services from
# this shell (hybrid cloud: laptop + Code Engine + clusters in one mesh):
#
#   source scripts/kar-env-ibmcloud.sh <service-credential>
#
# It exports REDIS_* and KAFKA_* for the Databases for Redis and Event
# Streams instances holding a service credential of that name. Needs
# IBMCLOUD_API_KEY. All the logic is `kar env ibmcloud`.
# (Written for bash and zsh; it must not exit the sourcing shell.)
if [ -n "${BASH_SOURCE:-}" ] && [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "kar-env-ibmcloud.sh must be sourced: source $0 <service-credential>" >&2
  exit 2
fi
# Where this file is: BASH_SOURCE in bash; $0 of a sourced file in zsh.
if [ -n "${BASH_SOURCE:-}" ]; then _kar_env_here="$(dirname "${BASH_SOURCE[0]}")"; else _kar_env_here="$(dirname "$0")"; fi
_kar_env_ibmcloud() {
  local here="$1" kar out
  shift
  kar="${KAR_BIN:-}"
  if [ -z "$kar" ]; then
    if [ -x "$here/../bin/kar" ]; then kar="$here/../bin/kar"; else kar="kar"; fi
  fi
  if [ $# -ne 1 ]; then
    echo "usage: source kar-env-ibmcloud.sh <service-credential>" >&2
    return 2
  fi
  # Capture first, so a failure exports nothing.
  out="$("$kar" env ibmcloud "$1")" || return $?
  eval "$out"
}
_kar_env_ibmcloud "$_kar_env_here" "$@"
_kar_env_status=$?
unset -f _kar_env_ibmcloud
unset _kar_env_here
eval "unset _kar_env_status; return $_kar_env_status"
