# shellcheck shell=bash
# shellcheck disable=SC2034  # the paths are for the scripts that source this file
# Shared by the runner host's scripts: paths, IMDSv2, Auto Scaling lifecycle hooks and the runner token.
# Every path is under SHIPYARD_ROOT (empty on the host) so the tests can run the scripts for real.

SHIPYARD_ROOT="${SHIPYARD_ROOT:-}"
ENV_FILE="$SHIPYARD_ROOT/etc/shipyard/runner.env"
STATE_DIR="$SHIPYARD_ROOT/var/lib/shipyard"
RUNNER_DIR="$SHIPYARD_ROOT/etc/gitlab-runner"
CONFIG="$RUNNER_DIR/config.toml"
LIB_DIR="${BASH_SOURCE[0]%/*}" # this file's folder, which also holds verify-answer.py
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

# The runner token and its parameter's version, decrypted in memory (R1): "TOKEN<tab>VERSION".
parameter_read() {
  aws ssm get-parameter --name "$TOKEN_PARAMETER" --with-decryption \
    --query '[Parameter.Value,Parameter.Version]' --output text
}

# The token in config.toml, which is gitlab-runner's own once it has rotated it (R16).
config_token() {
  if [ -f "$CONFIG" ]; then
    sed -n 's/^ *token = "\(glrt-[^"]*\)"$/\1/p' "$CONFIG"
  fi
}

# R18: gitlab-runner writes a token it rotated only to config.toml; a replacement host would read the
# old one from the parameter and fail `verify` forever. So put it in the parameter, but only while
# the parameter still holds the version this host last read or wrote (token-version): a newer one is
# a new runner from `pulumi up`, and that one wins. The value reaches the AWS CLI in a 0600 file,
# never as an argument (any user can read a process's arguments). One writer at a time (the lock),
# so two writers cannot leave token-version behind the parameter.
write_back_rotated_token() {
  mkdir -p "$STATE_DIR"
  (
    flock -w 120 9 || { log "token write-back: $STATE_DIR/token.lock stays locked"; exit 1; }
    current=$(config_token)
    [ -n "$current" ] || exit 0
    read -r stored version < <(parameter_read) || exit 1
    [ "$current" != "$stored" ] || exit 0
    unset stored
    if [ "$version" != "$(cat "$STATE_DIR/token-version" 2>/dev/null || true)" ]; then
      log "config.toml's token is not in $TOKEN_PARAMETER, which changed since this host read it (now version $version): leaving the parameter as it is"
      exit 0
    fi
    if [[ ! "$current" =~ ^glrt-[A-Za-z0-9._~+/=-]+$ ]]; then
      log "config.toml's token does not look like a runner authentication token: not writing it to $TOKEN_PARAMETER"
      exit 1
    fi
    request=$(mktemp "$STATE_DIR/put-parameter.XXXXXX") || exit 1
    trap 'rm -f "$request"' EXIT
    printf '{"Name": "%s", "Type": "SecureString", "Overwrite": true, "Value": "%s"}\n' \
      "$TOKEN_PARAMETER" "$current" >"$request" || exit 1
    unset current
    version=$(aws ssm put-parameter --cli-input-json "file://$request" --query Version --output text) || exit 1
    echo "$version" >"$STATE_DIR/token-version" || exit 1
    log "the token gitlab-runner rotated is now $TOKEN_PARAMETER version $version"
  ) 9>>"$STATE_DIR/token.lock"
}
