# shellcheck shell=bash
# shellcheck disable=SC2034  # json_value and json_type are for the stubs that source this file
# Shared by the stubs that read a JSON request (the aws stub's --cli-input-json, the curl stub's
# GitLab body), in bash so that no call starts Python. `json_object FILE` reads a JSON object whose
# values are strings without escapes, numbers, true, false or null (all the host ever sends) into
# json_value[KEY] (a string's text, or the literal as written) and json_type[KEY] (string or
# literal); a later duplicate key wins, as in most parsers. Anything else returns 1: the stubs then
# refuse the call instead of guessing what a real parser would make of it.
declare -A json_value=() json_type=()
json_object() {
  local text rest ws='[[:space:]]*' string='"([^"\\[:cntrl:]]*)"'
  local literal='(true|false|null|-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][-+]?[0-9]+)?)'
  local open="^${ws}[{]${ws}(.*)$" empty="^[}]${ws}$"
  # Groups: 1 key, 2 value, 3 a string's text, 4 a literal, 5-7 its parts, 8 what follows, 9 the rest.
  local pair="^${string}${ws}:${ws}(${string}|${literal})${ws}([,}])${ws}(.*)$"
  json_value=() json_type=()
  IFS= read -r -d '' text <"$1" || [ -n "$text" ] || return 1
  [[ "$text" =~ $open ]] || return 1
  rest="${BASH_REMATCH[1]}"
  [[ "$rest" =~ $empty ]] && return 0
  while [[ "$rest" =~ $pair ]]; do
    if [[ "${BASH_REMATCH[2]}" == \"* ]]; then
      json_value[${BASH_REMATCH[1]}]="${BASH_REMATCH[3]}"
      json_type[${BASH_REMATCH[1]}]=string
    else
      json_value[${BASH_REMATCH[1]}]="${BASH_REMATCH[4]}"
      json_type[${BASH_REMATCH[1]}]=literal
    fi
    if [ "${BASH_REMATCH[8]}" = "}" ]; then
      [ -z "${BASH_REMATCH[9]}" ]
      return
    fi
    rest="${BASH_REMATCH[9]}"
  done
  return 1
}
