#!/usr/bin/env bash
# Watches the instance's Auto Scaling target state and starts the graceful stop once the group
# decides to terminate this host.
set -Euo pipefail

# shellcheck source=lib.sh
. "${SHIPYARD_LIB:-/usr/local/lib/shipyard/lib.sh}"
INTERVAL="${WATCH_INTERVAL:-5}"

while true; do
  # Once stopped, stay quiet while the group finishes the termination (this unit restarts).
  if [ ! -f "$STATE_DIR/stopped" ] &&
    [ "$(imds autoscaling/target-lifecycle-state 2>/dev/null || true)" = "Terminated" ]; then
    log "instance is terminating; stopping the runner gracefully"
    exec "${SHIPYARD_STOP:-/usr/local/sbin/shipyard-stop}"
  fi
  sleep "$INTERVAL"
done
