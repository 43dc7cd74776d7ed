# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # status and answer are for the curl stub; verify_* come from $STUB_FACTS
# For the curl stub, GitLab's runner API as infra/facts/gitlab-api.yaml describes the call the host
# makes (the fact's `verify`, as $STUB_FACTS/gitlab-api.sh gives it): 200 and the fact's answer for
# a token that the test's SSM parameters hold and GitLab has not rejected ($STUB_STATE/rejected-tokens),
# 403 for any other token, 404 for any other API path. The answer's id is $STUB_RUNNER_ID, its
# token_expires_at the JSON value in $STUB_STATE/token-expires-at, or null (token expiry off) without
# that file. $STUB_GITLAB_STATUS answers every call with that status instead. Each verify call
# appends its body file's mode and the body's keys, never the token, to $STUB_STATE/verify-requests.
#
# `gitlab_answer METHOD URL CONTENT_TYPE BODY_FILE` sets `status` and `answer` (the body GitLab
# sends); returns 1, saying why, for a body it cannot read or an answer the fact does not describe.
# shellcheck source=_json.sh
. "${BASH_SOURCE[0]%/*}/_json.sh"

gitlab_answer() {
  local method="$1" url="$2" content_type="$3" body_file="$4" path key known mode keys=() unknown=()
  local joined token file value gone=() expires=null i
  if [ -n "${STUB_GITLAB_STATUS:-}" ]; then
    status="$STUB_GITLAB_STATUS" answer='{"message": "stubbed status"}'
    return 0
  fi
  # shellcheck source=/dev/null
  . "$STUB_FACTS/gitlab-api.sh"
  path="/${url#https://*/}"
  path="${path%%[?#]*}"
  if [ "$path" != "$verify_path" ]; then
    status=404 answer='{"message": "404 Not Found"}'
    return 0
  fi
  if [ "$method" != "$verify_method" ]; then
    status=405 answer='{"error": "405 Not Allowed"}'
    return 0
  fi
  json_value=() json_type=()
  # Grape reads a JSON body only as application/json; otherwise `token` is missing.
  if [ -n "$body_file" ] && [ "$content_type" = "$verify_content_type" ] && ! json_object "$body_file"; then
    echo "curl stub: $body_file is not a JSON object of plain values, which is all the host sends" >&2
    return 1
  fi
  if [ -z "${json_type[token]:-}" ]; then
    status=400 answer='{"error": "token is missing"}'
    return 0
  fi
  mode=$(stat -c %a "$body_file")
  # The keys sorted (an insertion sort, in the C locale the stubs run in), and those the fact does not list.
  for key in "${!json_type[@]}"; do
    for ((i = ${#keys[@]}; i > 0; i--)); do
      [[ "${keys[i - 1]}" > "$key" ]] || break
      keys[i]="${keys[i - 1]}"
    done
    keys[i]="$key"
  done
  for key in "${keys[@]}"; do
    for known in "${verify_request[@]}"; do [ "$key" != "$known" ] || continue 2; done
    unknown+=("$key")
  done
  printf -v joined '%s,' "${keys[@]}"
  printf 'mode=%s keys=%s system_id=%s\n' "$mode" "${joined%,}" "${json_value[system_id]--}" >>"$STUB_STATE/verify-requests"
  if [ ${#unknown[@]} -gt 0 ]; then
    status=400 answer="{\"error\": \"unknown keys ${unknown[*]}\"}"
    return 0
  fi
  token="${json_value[token]}"
  status="$verify_not_valid" answer='{"message": "403 Forbidden"}'
  if [ "${json_type[token]}" = string ]; then # a token that the test's SSM parameters hold
    for file in "$STUB_SSM"/*/value; do
      [ -f "$file" ] || continue
      value=""
      IFS= read -r -d '' value <"$file" || true
      if [ "$value" = "$token" ]; then status="$verify_valid"; fi
    done
  fi
  if [ -f "$STUB_STATE/rejected-tokens" ]; then
    read -r -d '' -a gone <"$STUB_STATE/rejected-tokens" || true
    for value in "${gone[@]}"; do
      if [ "$value" = "$token" ]; then status="$verify_not_valid"; fi
    done
  fi
  [ "$status" = "$verify_valid" ] || return 0
  if [ -f "$STUB_STATE/token-expires-at" ]; then
    IFS= read -r -d '' expires <"$STUB_STATE/token-expires-at" || true
  fi
  for key in id token token_expires_at; do
    for known in "${verify_response[@]}"; do [ "$key" != "$known" ] || continue 2; done
    echo "curl stub: the answer's $key is not in the fact's response" >&2
    return 1
  done
  answer="{\"id\": $STUB_RUNNER_ID, \"token\": \"$token\", \"token_expires_at\": $expires}"
}
