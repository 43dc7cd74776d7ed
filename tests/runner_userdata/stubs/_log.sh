# shellcheck shell=bash
# Shared by the stubs: record this call (program name and arguments) in $STUB_LOG.
{
  printf '%s' "${0##*/}"
  for arg in "$@"; do printf ' %s' "$arg"; done
  printf '\n'
} >>"$STUB_LOG"
