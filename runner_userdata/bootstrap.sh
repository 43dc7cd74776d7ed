#!/usr/bin/env bash
# Brings this host up as a GitLab runner: machine identity, Docker and gitlab-runner at pinned
# versions, config.toml with the runner token from SSM, a verified registration, and then the
# launching lifecycle hook: CONTINUE when all of it worked, ABANDON on any failure (R8), so the
# Auto Scaling group replaces a broken host instead of keeping it in service.
# Safe to run again: what is already in place is left as it is.
# Never add tracing (set -x) here: the runner token passes through this script (R1).
set -Eeuo pipefail
umask 077

# shellcheck source=lib.sh
. "${SHIPYARD_LIB:-/usr/local/lib/shipyard/lib.sh}"

failed() {
  [ "$BASHPID" = "$$" ] || exit 1 # in a subshell: the main shell sees the failure and handles it
  trap - ERR
  log "bootstrap failed at line $1; abandoning this instance"
  complete_hook "$LAUNCH_HOOK" ABANDON || true
  exit 1
}
trap 'failed $LINENO' ERR

load_env
mkdir -p "$STATE_DIR" "$RUNNER_DIR"
instance_id=$(imds instance-id)

# R4: an AMI may carry a machine-id; gitlab-runner derives its system_id from it.
if [ "$(cat "$STATE_DIR/machine-id.instance" 2>/dev/null || true)" != "$instance_id" ]; then
  rm -f "$SHIPYARD_ROOT/etc/machine-id"
  systemd-machine-id-setup --root="${SHIPYARD_ROOT:-/}" >/dev/null
  echo "$instance_id" >"$STATE_DIR/machine-id.instance"
  log "machine-id regenerated for $instance_id"
fi

# R1: the token comes from the SecureString parameter, decrypted in memory, never printed.
read -r token token_version < <(aws ssm get-parameter --name "$TOKEN_PARAMETER" --with-decryption \
  --query '[Parameter.Value,Parameter.Version]' --output text)
if [[ "$token" != glrt-* ]]; then
  log "parameter $TOKEN_PARAMETER does not hold a runner authentication token"
  false
fi
# R16: gitlab-runner rotates its token into config.toml; keep that one unless the parameter has
# changed since config.toml was written (a new runner, created by pulumi up).
if [ -f "$CONFIG" ] && [ "$(cat "$STATE_DIR/token-version" 2>/dev/null || true)" = "$token_version" ]; then
  current=$(sed -n 's/^ *token = "\(glrt-[^"]*\)"$/\1/p' "$CONFIG")
  token="${current:-$token}"
fi

# R5: the complete config.toml exists before gitlab-runner starts for the first time.
# Substituted in this shell: the token is never a command's argument.
rendered=$(<"$SHIPYARD_ROOT/etc/shipyard/config.toml.tmpl")
rendered="${rendered//@CONCURRENT@/$CONCURRENT}"
rendered="${rendered//@RUNNER_NAME@/$RUNNER_NAME-$instance_id}"
rendered="${rendered//@GITLAB_URL@/$GITLAB_URL}"
rendered="${rendered//@PRIVILEGED@/$PRIVILEGED}"
rendered="${rendered//@TOKEN@/$token}"
unset token current
printf '%s\n' "$rendered" >"$CONFIG.new"
unset rendered
chmod 600 "$CONFIG.new"
if cmp -s "$CONFIG.new" "$CONFIG"; then
  rm -f "$CONFIG.new"
else
  mv -f "$CONFIG.new" "$CONFIG"
  log "config.toml written"
fi
if [ "$(cat "$STATE_DIR/token-version" 2>/dev/null || true)" != "$token_version" ]; then
  echo "$token_version" >"$STATE_DIR/token-version"
fi

# R12: pinned versions.
if ! rpm -q docker >/dev/null 2>&1; then
  dnf install -y -q "docker-$DOCKER_VERSION"
fi
systemctl enable --now docker

if [ "$(rpm -q --qf '%{VERSION}' gitlab-runner 2>/dev/null || true)" != "$GITLAB_RUNNER_VERSION" ]; then
  arch=$(uname -m)
  case "$arch" in x86_64) pkg_arch=amd64 ;; aarch64) pkg_arch=arm64 ;; *) pkg_arch="$arch" ;; esac
  downloads="https://s3.dualstack.us-east-1.amazonaws.com/gitlab-runner-downloads/v$GITLAB_RUNNER_VERSION/rpm"
  work=$(mktemp -d)
  curl -sSfL -o "$work/gitlab-runner-helper-images.rpm" "$downloads/gitlab-runner-helper-images.rpm"
  curl -sSfL -o "$work/gitlab-runner_$pkg_arch.rpm" "$downloads/gitlab-runner_$pkg_arch.rpm"
  dnf install -y -q "$work/gitlab-runner-helper-images.rpm" "$work/gitlab-runner_$pkg_arch.rpm"
  rm -rf "$work"
fi

# R7: jobs finish on stop (SIGQUIT), given as long as the longest job.
dropin="$SHIPYARD_ROOT/etc/systemd/system/gitlab-runner.service.d"
mkdir -p "$dropin"
printf '[Service]\nKillSignal=SIGQUIT\nTimeoutStopSec=%s\n' "$((MAXIMUM_TIMEOUT + 300))" >"$dropin/shipyard.conf.new"
if cmp -s "$dropin/shipyard.conf.new" "$dropin/shipyard.conf"; then
  rm -f "$dropin/shipyard.conf.new"
else
  mv -f "$dropin/shipyard.conf.new" "$dropin/shipyard.conf"
  systemctl daemon-reload
fi
systemctl enable --now gitlab-runner

gitlab-runner verify
complete_hook "$LAUNCH_HOOK" CONTINUE
trap - ERR
log "runner $RUNNER_NAME-$instance_id is up"
