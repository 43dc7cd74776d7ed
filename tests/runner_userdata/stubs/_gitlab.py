"""For the curl stub, GitLab's runner API as infra/facts/gitlab-api.yaml describes the call the host
makes (the fact's `verify`, given as JSON in $STUB_GITLAB_API): 200 and the fact's answer for a
token that the test's SSM parameters hold and GitLab has not rejected ($STUB_STATE/rejected-tokens),
403 for any other token, 404 for any other API path. The answer's id is $STUB_RUNNER_ID, its
token_expires_at the JSON value in $STUB_STATE/token-expires-at, or null (token expiry off) without
that file. $STUB_GITLAB_STATUS answers every call with that status instead. Each verify call
appends its body file's mode and the body's keys, never the token, to $STUB_STATE/verify-requests.

`_gitlab.py METHOD URL CONTENT_TYPE BODY_FILE OUT_FILE`: writes the answer's body to OUT_FILE and
prints its status.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit


def tokens_in_ssm() -> set[str]:
    return {p.read_text() for p in Path(os.environ["STUB_SSM"]).glob("*/value")}


def answer(method: str, url: str, content_type: str, body_file: str) -> tuple[int, object]:
    verify = json.loads(os.environ["STUB_GITLAB_API"])
    state = Path(os.environ["STUB_STATE"])
    if "STUB_GITLAB_STATUS" in os.environ:
        return int(os.environ["STUB_GITLAB_STATUS"]), {"message": "stubbed status"}
    if urlsplit(url).path != verify["path"]:
        return 404, {"message": "404 Not Found"}
    if method != verify["method"]:
        return 405, {"error": "405 Not Allowed"}
    # Grape reads a JSON body only as application/json; otherwise `token` is missing.
    request = json.loads(Path(body_file).read_text()) if body_file and content_type == verify["content_type"] else {}
    if not isinstance(request, dict) or "token" not in request:
        return 400, {"error": "token is missing"}
    mode = stat.S_IMODE(os.stat(body_file).st_mode)
    unknown = sorted(set(request) - set(verify["request"]))
    with (state / "verify-requests").open("a") as log:
        print(f"mode={mode:o} keys={','.join(sorted(request))} system_id={request.get('system_id', '-')}", file=log)
    if unknown:
        return 400, {"error": f"unknown keys {unknown}"}
    rejected = state / "rejected-tokens"
    gone = rejected.read_text().split() if rejected.exists() else []
    if request["token"] not in tokens_in_ssm() or request["token"] in gone:
        return verify["status"]["not_valid"], {"message": "403 Forbidden"}
    response = {"id": int(os.environ["STUB_RUNNER_ID"]), "token": request["token"], "token_expires_at": None}
    expires = state / "token-expires-at"
    if expires.exists():
        response["token_expires_at"] = json.loads(expires.read_text())
    assert set(response) <= set(verify["response"])
    return verify["status"]["valid"], response


def main(method: str, url: str, content_type: str, body_file: str, out_file: str) -> int:
    status, body = answer(method, url, content_type, body_file)
    Path(out_file).write_text(json.dumps(body))
    print(status)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
