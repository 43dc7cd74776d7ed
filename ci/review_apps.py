"""The name of a merge request's review app on Heroku, one place for it: the review jobs embed this
module (standard library only, like ci/heroku_release.py), and the settings keep `shipyard:review.appPrefix`
short enough for it.

`<prefix>-mr-<iid>` is unique per project (a merge request's IID is) and a valid Heroku app name (H1).
"""

from __future__ import annotations

import re

# A prefix starts with a letter and does not end with a hyphen, so the name never holds `--`.
PREFIX = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$")
MAX_NAME = 30  # H1: `^[a-z][a-z0-9-]{1,28}[a-z0-9]$`, which a valid prefix and `-mr-<iid>` meet up to this length


def review_app_name(prefix: str, iid: int) -> str:
    """The Heroku app of merge request `iid`: `<prefix>-mr-<iid>`; ValueError if Heroku would refuse it."""
    if isinstance(iid, bool) or not isinstance(iid, int) or iid < 1:
        raise ValueError(f"a merge request IID is a whole number from 1, not {iid!r}")
    if not PREFIX.fullmatch(prefix):
        raise ValueError(
            f"review app prefix {prefix!r} must be lowercase letters, digits and hyphens, starting with a "
            "letter and not ending with a hyphen (Heroku app names, H1)"
        )
    name = f"{prefix}-mr-{iid}"
    if len(name) > MAX_NAME:
        room = MAX_NAME - len(f"-mr-{iid}")
        raise ValueError(
            f"review app name {name!r} is {len(name)} characters; Heroku allows {MAX_NAME} (H1): for merge "
            f"request {iid} the prefix may have at most {room} characters"
        )
    return name
