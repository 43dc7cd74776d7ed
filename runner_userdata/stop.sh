#!/usr/bin/env bash
# Takes this host out of service when the Auto Scaling group terminates it: gitlab-runner stops
# with SIGQUIT so running jobs finish (R7), heartbeats keep the terminating hook open meanwhile,
# a token gitlab-runner rotated goes to the parameter for the next host (R18), then only this host's
# runner manager is unregistered (R3), then the hook completes.
# Never add tracing (set -x) here: the runner token passes through this script (R1).
set -Euo pipefail
umask 077

# shellcheck source=lib.sh
. "${SHIPYARD_LIB:-/usr/local/lib/shipyard/lib.sh}"
load_env
HEARTBEAT_SECONDS="${HEARTBEAT_SECONDS:-300}"

instance_id=$(imds instance-id)
systemctl stop gitlab-runner &
stopping=$!
while kill -0 "$stopping" 2>/dev/null; do
  sleep "$HEARTBEAT_SECONDS" &
  wait $! || true
  if kill -0 "$stopping" 2>/dev/null; then
    aws autoscaling record-lifecycle-action-heartbeat --auto-scaling-group-name "$ASG_NAME" \
      --lifecycle-hook-name "$TERMINATE_HOOK" --instance-id "$instance_id" ||
      log "heartbeat failed; the hook's own timeout still applies"
  fi
done
wait "$stopping" || log "gitlab-runner did not stop cleanly"

write_back_rotated_token || log "token write-back failed: the next host reads $TOKEN_PARAMETER's older token"

# With a glrt- token this removes this host's runner manager only; the runner stays for the next host.
gitlab-runner unregister --all-runners || log "unregister failed; GitLab prunes stale managers after 7 days"
complete_hook "$TERMINATE_HOOK" CONTINUE
mkdir -p "$STATE_DIR"
touch "$STATE_DIR/stopped"
