# shellcheck shell=bash
# shellcheck disable=SC2034  # the paths are for the scripts that source this file
# Shared by the runner host's scripts: paths, IMDSv2 and Auto Scaling lifecycle hooks.
# Every path is under SHIPYARD_ROOT (empty on the host) so the tests can run the scripts for real.

SHIPYARD_ROOT="${SHIPYARD_ROOT:-}"
ENV_FILE="$SHIPYARD_ROOT/etc/shipyard/runner.env"
STATE_DIR="$SHIPYARD_ROOT/var/lib/shipyard"
RUNNER_DIR="$SHIPYARD_ROOT/etc/gitlab-runner"
CONFIG="$RUNNER_DIR/config.toml"
IMDS="${SHIPYARD_IMDS:-http://169.254.169.254}"

log() { echo "shipyard: $*" >&2; }

load_env() {
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"
}

# A fresh IMDSv2 session token for every call (R6): long scripts outlive short tokens.
imds() {
  local token
  token=$(curl -sSf -X PUT "$IMDS/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
  curl -sSf -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}

# Complete a lifecycle action; "no active action" (a reboot, a second run) is not an error.
complete_hook() {
  local hook="$1" result="$2" instance
  instance=$(imds instance-id) || { log "cannot read the instance id to complete $hook"; return 1; }
  if aws autoscaling complete-lifecycle-action --auto-scaling-group-name "$ASG_NAME" \
    --lifecycle-hook-name "$hook" --instance-id "$instance" --lifecycle-action-result "$result"; then
    log "lifecycle hook $hook completed with $result"
  else
    log "lifecycle hook $hook had no pending action for $instance"
  fi
}
