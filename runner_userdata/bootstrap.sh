#!/usr/bin/env bash
# Brings this host up as a GitLab runner: machine identity, Docker and a verified gitlab-runner at
# pinned versions, config.toml with the runner token from SSM, a verified registration, and then the
# launching lifecycle hook: CONTINUE when all of it worked, ABANDON on any failure (R8), so the
# Auto Scaling group replaces a broken host instead of keeping it in service.
# A fleet manager (EXECUTOR=docker-autoscaler in runner.env, R15) also installs the fleeting plugin
# its config.toml names, and runs no job itself.
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

# One file of the release, or its signing key, into $work; one that is missing (a 404: a name the
# release does not have) fails naming itself (R17).
fetch() {
  local name="$1" url="$2" status=0
  mkdir -p "$(dirname "$work/$name")"
  curl -sSfL --proto =https --proto-redir =https --retry 3 -o "$work/$name" "$url" || status=$?
  if [ "$status" -ne 0 ]; then
    log "$name: cannot download $url (curl exit $status)"
    return 1
  fi
}

# R17: release.sha256 carries GitLab's signature. The key is fetched from GitLab (a fresh copy
# carries GitLab's extensions of its expiry) and used only if its fingerprint is the pinned one; gpg
# reads it as a keyring file, so nothing is imported and no gpg-agent starts.
verify_signature() {
  local key="$1" gnupg="$work/gnupg" primaries status
  mkdir -m 700 "$gnupg"
  primaries=$(gpg --homedir "$gnupg" --batch --with-colons --show-keys "$work/$key" 2>/dev/null |
    awk -F: '$1 == "pub" { primary = 1; next } primary && $1 == "fpr" { print $10; primary = 0 }') || true
  if ! grep -qxF "$GITLAB_RUNNER_SIGNING_FINGERPRINT" <<<"$primaries"; then
    log "$key: fingerprint ${primaries:-none} is not the pinned $GITLAB_RUNNER_SIGNING_FINGERPRINT"
    return 1
  fi
  if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$work/$key"; then
    gpg --homedir "$gnupg" --batch --dearmor <"$work/$key" >"$gnupg/signing-key.gpg"
  else
    cp "$work/$key" "$gnupg/signing-key.gpg"
  fi
  status=$(gpg --homedir "$gnupg" --batch --no-default-keyring --keyring "$gnupg/signing-key.gpg" --status-fd 1 \
    --verify "$work/$GITLAB_RUNNER_SIGNATURE" "$work/$GITLAB_RUNNER_CHECKSUMS" 2>/dev/null) || true
  case "$status" in
    *"[GNUPG:] GOODSIG "*) ;;
    *"[GNUPG:] EXPKEYSIG "*) log "$GITLAB_RUNNER_SIGNATURE: signed by an expired key; refresh it from GitLab"; return 1 ;;
    *) log "$GITLAB_RUNNER_SIGNATURE: bad signature"; return 1 ;;
  esac
  # VALIDSIG's last field is the primary key of the signer: the pinned key, not another one in the file.
  if ! awk -v key="$GITLAB_RUNNER_SIGNING_FINGERPRINT" '$2 == "VALIDSIG" && $NF == key { ok = 1 } END { exit !ok }' <<<"$status"; then
    log "$GITLAB_RUNNER_SIGNATURE: not signed by $GITLAB_RUNNER_SIGNING_FINGERPRINT"
    return 1
  fi
}

# Only the lines of the files installed: release.sha256 lists every file of the release.
verify_checksums() {
  local file line
  for file in "$@"; do
    line=$(awk -v file="$file" '$2 == file { print $1 "  " $2; exit }' "$work/$GITLAB_RUNNER_CHECKSUMS")
    if [ -z "$line" ]; then
      log "$file: not listed in $GITLAB_RUNNER_CHECKSUMS"
      return 1
    fi
    if ! (cd "$work" && sha256sum --check --strict --status <<<"$line"); then
      log "$file: checksum mismatch"
      return 1
    fi
  done
}

# R12, R17: the pinned release, by the names its fact file gives (runner.env; GitLab names RPMs by
# RPM arch since 18.9.0), checked before dnf sees it. Why the downloads bucket and not GitLab's dnf
# repository (which lists Amazon Linux 2023): the repository's setup is a script run as root, its
# metadata is signed with a second key (all of packages.gitlab.com), and linux-repository.md says how
# to turn its package checks on rather than that they are on. The bucket's release.sha256 is signed
# with the runner's own key, the one the docs pin by fingerprint, and covers every file it installs.
install_gitlab_runner() {
  local arch rpm_of rpm key work
  arch=$(uname -m)
  rpm_of="GITLAB_RUNNER_RPM_${arch^^}"
  rpm="${!rpm_of:-}"
  if [ -z "$rpm" ]; then
    log "gitlab-runner $GITLAB_RUNNER_VERSION has no rpm for $arch in its release facts"
    return 1
  fi
  work=$(mktemp -d)
  key="${GITLAB_RUNNER_SIGNING_KEY_URL##*/}"
  fetch "$key" "$GITLAB_RUNNER_SIGNING_KEY_URL"
  fetch "$GITLAB_RUNNER_CHECKSUMS" "$GITLAB_RUNNER_DOWNLOADS/$GITLAB_RUNNER_CHECKSUMS"
  fetch "$GITLAB_RUNNER_SIGNATURE" "$GITLAB_RUNNER_DOWNLOADS/$GITLAB_RUNNER_SIGNATURE"
  verify_signature "$key"
  fetch "$GITLAB_RUNNER_HELPER_IMAGES_RPM" "$GITLAB_RUNNER_DOWNLOADS/$GITLAB_RUNNER_HELPER_IMAGES_RPM"
  fetch "$rpm" "$GITLAB_RUNNER_DOWNLOADS/$rpm"
  verify_checksums "$GITLAB_RUNNER_HELPER_IMAGES_RPM" "$rpm"
  dnf install -y -q "$work/$GITLAB_RUNNER_HELPER_IMAGES_RPM" "$work/$rpm"
  rm -rf "$work"
  log "gitlab-runner $GITLAB_RUNNER_VERSION installed from $rpm, signature and checksums verified"
}

# R15: the plugin [runners.autoscaler] names, at its pinned version, from its OCI registry; into a
# folder of its own that the service is told of too (FLEETING_PLUGIN_PATH, fleeting.md), so that the
# install and the runner agree whatever HOME each has. Already installed: nothing to do.
install_fleeting_plugin() {
  local status=0
  FLEETING_PLUGIN_PATH="$FLEETING_PLUGIN_PATH" gitlab-runner fleeting -c "$CONFIG" install || status=$?
  if [ "$status" -ne 0 ]; then
    log "fleeting plugin $FLEET_PLUGIN: gitlab-runner fleeting install failed (exit $status)"
    return 1
  fi
}

# R18: a token GitLab rejects does not heal on another host, since every host reads the same
# parameter: abandoning at once would only have the group churn through hosts. Say why and how to
# recover, then wait for a new token (the recovery writes one) before abandoning: one host per
# TOKEN_POLLS times TOKEN_POLL_SECONDS (7.5 minutes, inside the launch hook's 15) instead of one per boot.
token_rejected() {
  local version="$1" polls="${TOKEN_POLLS:-15}" now i
  log "GitLab rejects the runner token in $TOKEN_PARAMETER (version $version): revoked, expired, or its runner deleted; a new host reads the same token. To recover, replace the runner: pulumi up --replace <the stack's gitlab:index/userRunner:UserRunner URN> (pulumi stack --show-urns lists it)"
  for ((i = 0; i < polls; i++)); do
    sleep "${TOKEN_POLL_SECONDS:-30}"
    now=$(aws ssm get-parameter --name "$TOKEN_PARAMETER" --query Parameter.Version --output text) || continue
    if [ "$now" != "$version" ]; then
      log "$TOKEN_PARAMETER has a new token (version $now); bootstrapping again"
      trap - ERR
      exec bash "$0"
    fi
  done
  log "no new token in $TOKEN_PARAMETER after $polls checks"
  return 1
}

# R18: gitlab-runner rotates its token only if its [[runners]] entry has a token_expires_at
# (commands/multi.go nextRunnerToReset), which only `gitlab-runner register` writes (`verify` saves
# nothing). This host writes config.toml itself, so it asks GitLab as register does (the call of
# infra/facts/gitlab-api.yaml) and sets token_details to what register keeps: id, token_obtained_at,
# token_expires_at; no dates for a token that does not expire. The token reaches curl in a 0600 file,
# never as an argument (R1); the answer, which repeats it, reaches python3 on stdin.
# A 403 is a rejected token, as for `gitlab-runner verify`. Any other failure leaves token_details
# as it was and the boot goes on: the runner works, it only does not rotate until a boot gets an
# answer. Abandoning would have the group churn through hosts against the same GitLab outage, and
# `gitlab-runner verify` below still decides whether the host is fit (R8).
ask_token_expiry() {
  local url="${GITLAB_URL%/}/api/v4/runners/verify" system_id request response code status=0 answer=""
  if [[ ! "$token" =~ ^glrt-[A-Za-z0-9._~+/=-]+$ ]]; then
    log "POST $url not made: the runner token has characters that JSON would need escaped"
    return 0
  fi
  # gitlab-runner's own system_id once its first start has made one; none before, as the API allows.
  system_id=$(cat "$RUNNER_DIR/.runner_system_id" 2>/dev/null || true)
  request=$(mktemp)
  response=$(mktemp)
  {
    printf '{"token": "%s"' "$token"
    if [[ "$system_id" =~ ^[sr]_[0-9a-zA-Z]{12}$ ]]; then printf ', "system_id": "%s"' "$system_id"; fi
    printf '}\n'
  } >"$request"
  code=$(curl -sS --connect-timeout 10 --max-time 20 --retry 2 -H "Content-Type: application/json" \
    -H "Accept: application/json" --data "@$request" -o "$response" -w '%{http_code}' "$url") || status=$?
  rm -f "$request"
  if [ "$status $code" != "0 200" ] || ! answer=$(python3 "$LIB_DIR/verify-answer.py" <"$response"); then
    rm -f "$response"
    if [ "$status $code" = "0 403" ]; then
      log "POST $url: 403, GitLab does not accept the runner token"
      token_rejected "$token_version"
    fi
    log "POST $url: HTTP $code, curl exit $status; no token expiry in config.toml, no rotation until a boot gets one"
    return 0
  fi
  rm -f "$response"
  token_details="$answer"
  if [[ "$answer" == *token_expires_at* ]]; then
    log "the runner token expires at ${answer##*token_expires_at = }; gitlab-runner rotates it at 75% of its life"
  else
    log "GitLab sets no expiry on the runner token: nothing for gitlab-runner to rotate"
  fi
}

load_env
mkdir -p "$STATE_DIR" "$RUNNER_DIR"
fleet=0
if [ "${EXECUTOR:-docker}" = docker-autoscaler ]; then
  fleet=1
  FLEETING_PLUGIN_PATH="$STATE_DIR/fleeting-plugins"
fi
instance_id=$(imds instance-id)

# R4: an AMI may carry a machine-id; gitlab-runner derives its system_id from it.
if [ "$(cat "$STATE_DIR/machine-id.instance" 2>/dev/null || true)" != "$instance_id" ]; then
  rm -f "$SHIPYARD_ROOT/etc/machine-id"
  systemd-machine-id-setup --root="${SHIPYARD_ROOT:-/}" >/dev/null
  echo "$instance_id" >"$STATE_DIR/machine-id.instance"
  log "machine-id regenerated for $instance_id"
fi

# R16, R18: a token gitlab-runner rotated since the last boot goes to the parameter first.
write_back_rotated_token || log "the rotated token stays in config.toml only for now; shipyard-token-sync retries"

# R1: the token comes from the SecureString parameter, decrypted in memory, never printed.
read -r token token_version < <(parameter_read)
if [[ "$token" != glrt-* ]]; then
  log "parameter $TOKEN_PARAMETER does not hold a runner authentication token"
  false
fi
# R16: gitlab-runner rotates its token into config.toml; keep that one unless the parameter has
# changed since config.toml was written (a new runner, created by pulumi up).
# With it go its id and the dates gitlab-runner schedules its next rotation by (R18): those of its
# [[runners]] entry, which gitlab-runner wrote with the token it rotated. GitLab is asked only for a
# token whose dates are not known yet.
token_details=""
if [ -f "$CONFIG" ] && [ "$(cat "$STATE_DIR/token-version" 2>/dev/null || true)" = "$token_version" ]; then
  current=$(config_token)
  if [ -n "$current" ]; then
    token="$current"
    token_details=$(awk '/^[[:space:]]*\[/ { entry = /^[[:space:]]*\[\[runners\]\][[:space:]]*$/; next }
      entry && /^[[:space:]]*(id|token_obtained_at|token_expires_at) = / { print }' "$CONFIG")
  fi
fi
if [[ "$token_details" != *token_expires_at* ]]; then
  ask_token_expiry
fi

# R5: the complete config.toml exists before gitlab-runner starts for the first time.
# Substituted in this shell: the token is never a command's argument.
rendered=$(<"$SHIPYARD_ROOT/etc/shipyard/config.toml.tmpl")
rendered="${rendered//@CONCURRENT@/$CONCURRENT}"
rendered="${rendered//@RUNNER_NAME@/$RUNNER_NAME-$instance_id}"
rendered="${rendered//@GITLAB_URL@/$GITLAB_URL}"
rendered="${rendered//@PRIVILEGED@/$PRIVILEGED}"
if [ "$fleet" = 1 ]; then
  rendered="${rendered//@FLEET_PLUGIN@/$FLEET_PLUGIN}"
  rendered="${rendered//@FLEET_MAX_INSTANCES@/$FLEET_MAX_INSTANCES}"
  rendered="${rendered//@FLEET_ASG_NAME@/$FLEET_ASG_NAME}"
  rendered="${rendered//@FLEET_REGION@/$FLEET_REGION}"
  rendered="${rendered//@FLEET_CACHE_BUCKET@/$FLEET_CACHE_BUCKET}"
  rendered="${rendered//@FLEET_CACHE_SERVER@/$FLEET_CACHE_SERVER}"
  if [ -n "$FLEET_POLICIES" ]; then
    rendered="${rendered/@FLEET_POLICIES@/"$FLEET_POLICIES"}"
  else
    rendered="${rendered/$'\n'@FLEET_POLICIES@/}"
  fi
fi
# Quoted replacements: bash 5.2 (patsub_replacement) would put the matched text in place of a "&".
if [ -n "$token_details" ]; then
  rendered="${rendered/@TOKEN_DETAILS@/"$token_details"}"
else
  rendered="${rendered/@TOKEN_DETAILS@$'\n'/}"
fi
rendered="${rendered//@TOKEN@/"$token"}"
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
  install_gitlab_runner
fi
if [ "$fleet" = 1 ]; then
  install_fleeting_plugin
fi

# R7: jobs finish on stop (SIGQUIT), given as long as the longest job.
dropin="$SHIPYARD_ROOT/etc/systemd/system/gitlab-runner.service.d"
mkdir -p "$dropin"
{
  printf '[Service]\nKillSignal=SIGQUIT\nTimeoutStopSec=%s\n' "$((MAXIMUM_TIMEOUT + 300))"
  if [ "$fleet" = 1 ]; then
    # R15: the AWS plugin takes its region from the environment only (it has no region key).
    printf 'Environment=AWS_REGION=%s FLEETING_PLUGIN_PATH=%s\n' "$FLEET_REGION" "$FLEETING_PLUGIN_PATH"
  fi
} >"$dropin/shipyard.conf.new"
if cmp -s "$dropin/shipyard.conf.new" "$dropin/shipyard.conf"; then
  rm -f "$dropin/shipyard.conf.new"
else
  mv -f "$dropin/shipyard.conf.new" "$dropin/shipyard.conf"
  systemctl daemon-reload
  if [ "$fleet" = 1 ]; then
    # The RPM's post-install starts gitlab-runner (`gitlab-runner start`), before the plugin and
    # this environment were in place: a running service gets them on a restart only.
    systemctl restart gitlab-runner
  fi
fi
systemctl enable --now gitlab-runner

verified=0
verify_output=$(gitlab-runner verify 2>&1) || verified=$?
printf '%s\n' "$verify_output" >&2
if [ "$verified" -ne 0 ]; then
  # The 403 answer for a glrt- token ("is not valid", network/gitlab.go), and what others say for it.
  if grep -qiE 'is not valid|is removed|\b40[13]\b|invalid token|(404|runner|token).*not found' <<<"$verify_output"; then
    token_rejected "$token_version"
  fi
  log "gitlab-runner verify failed"
  false
fi
complete_hook "$LAUNCH_HOOK" CONTINUE
trap - ERR
log "runner $RUNNER_NAME-$instance_id is up"
