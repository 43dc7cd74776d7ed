# shellcheck shell=bash
# timed LABEL COMMAND...: runs COMMAND, then prints "<TIMED_PREFIX>: LABEL: N.N s (exit S)" on
# stderr and returns COMMAND's status. Sourced by .ci/run and scripts/fresh_machine.sh.
timed() {
  local label=$1 started=$EPOCHREALTIME status=0
  shift
  "$@" || status=$?
  echo "${TIMED_PREFIX:-timed}: $label: $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s (exit $status)" >&2
  return "$status"
}
