"""Reads GitLab's answer to POST /api/v4/runners/verify on stdin and prints the [[runners]] lines of
config.toml that `gitlab-runner register` writes from it (R18): `id`, and `token_obtained_at` (now)
with `token_expires_at` when the token expires; no dates when it does not (a JSON null, no key, or
Go's zero time), so gitlab-runner has nothing to rotate. Nothing else of the answer (it repeats the
token) is ever printed. An answer it cannot read: a message on stderr, exit 1.
Runs on the host's python3, 3.9 on Amazon Linux 2023: no newer syntax or library."""

from __future__ import annotations

import datetime
import json
import re
import sys

UTC = datetime.timezone.utc  # noqa: UP017 (datetime.UTC is 3.11+)
# Go's zero time.Time, what gitlab-runner decodes "no expiry" to (time.Time.IsZero).
ZERO = datetime.datetime(1, 1, 1, tzinfo=UTC)
RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)")


def toml_time(at: datetime.datetime) -> str:
    """UTC, to the second, as gitlab-runner writes its dates (strftime's %Y is not zero-padded everywhere)."""
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"


def expiry(value: object) -> datetime.datetime | None:
    """token_expires_at in UTC, None for no expiry. The fraction of a second is dropped: the token
    is then thought to expire up to a second early, never late."""
    if value is None:
        return None
    match = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("token_expires_at is not an RFC 3339 time")
    try:
        at = datetime.datetime.strptime(match[1] + match[2].replace("Z", "+00:00"), "%Y-%m-%dT%H:%M:%S%z")
        at = at.astimezone(UTC)
    except OverflowError:
        raise ValueError("token_expires_at is out of range") from None
    return None if at == ZERO else at


def runner_lines(answer: object, now: datetime.datetime) -> list[str]:
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    lines = []
    runner_id = answer.get("id")
    if isinstance(runner_id, int) and not isinstance(runner_id, bool) and runner_id > 0:
        lines.append(f"  id = {runner_id}")
    expires = expiry(answer.get("token_expires_at"))
    if expires is not None:
        lines.append("  token_obtained_at = " + toml_time(now))
        lines.append("  token_expires_at = " + toml_time(expires))
    return lines


def main() -> int:
    try:
        lines = runner_lines(json.load(sys.stdin), datetime.datetime.now(UTC))
    except ValueError as error:  # json.JSONDecodeError included; its message quotes no content
        print(f"GitLab's answer to runners/verify: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
