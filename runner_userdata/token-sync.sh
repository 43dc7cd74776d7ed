#!/usr/bin/env bash
# Run by shipyard-token-sync.timer (R16, R18): gitlab-runner writes a token it rotated only to
# config.toml; this puts it in the SSM parameter too, so that a replacement host reads a token that
# GitLab still accepts. Boot and stop do the same; this covers a host that dies without a stop.
# Never add tracing (set -x) here: the runner token passes through this script (R1).
set -Euo pipefail
umask 077

# shellcheck source=lib.sh
. "${SHIPYARD_LIB:-/usr/local/lib/shipyard/lib.sh}"
load_env
write_back_rotated_token
