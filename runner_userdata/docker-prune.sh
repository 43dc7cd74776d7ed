#!/usr/bin/env bash
# R11: Docker data on a long-lived host grows without bound. Clear what no job used lately, and
# more when the disk is filling up anyway.
set -Euo pipefail

# shellcheck source=lib.sh
. "${SHIPYARD_LIB:-/usr/local/lib/shipyard/lib.sh}"
KEEP="${PRUNE_KEEP:-72h}"

used=$(df --output=pcent "$SHIPYARD_ROOT/var/lib/docker" 2>/dev/null | tail -n 1 | tr -dc '0-9')
if [ "${used:-0}" -ge "${PRUNE_URGENT_PERCENT:-80}" ]; then
  KEEP=1h
  log "disk ${used}% full: pruning everything unused for $KEEP"
fi
docker system prune --all --force --filter "until=$KEEP"
docker builder prune --force --filter "until=$KEEP"
docker volume prune --force
