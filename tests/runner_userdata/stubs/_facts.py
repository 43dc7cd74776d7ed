"""For the stubs, what the fact files say exists, read as the program reads them, written once per
test session into a folder the stubs read ($STUB_FACTS), so that no stub call starts Python:

- `published-urls`: every URL that some gitlab-runner fact file lists, as a file of its release or
  as its signing key, one a line; the curl stub serves those (when the test prepared them) and
  answers 404 for any other, as GitLab's bucket does.
- `gitlab-api.sh`: the runner API call of infra/facts/gitlab-api.yaml (`verify`) as bash variables,
  which the curl stub answers only as described there (_gitlab.sh).
- `verify-rejected/VERSION`: the messages of `gitlab-runner verify` for a rejected token, per release.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from infra import facts


def releases() -> dict[str, dict]:
    """Each gitlab-runner fact file by its version (the file's name)."""
    folder = facts.FACTS_DIR / "gitlab-runner"
    return {path.stem: facts.load(f"gitlab-runner/{path.stem}") for path in sorted(folder.glob("*.yaml"))}


def published() -> list[str]:
    urls = []
    for release in releases().values():
        urls.append(release["signing_key"]["url"])
        urls += [f"{release['downloads'].rstrip('/')}/{file}" for file in release["files"]]
    return urls


def gitlab_api() -> str:
    verify = facts.load("gitlab-api")["verify"]
    values = {
        "verify_method": shlex.quote(verify["method"]),
        "verify_path": shlex.quote(verify["path"]),
        "verify_content_type": shlex.quote(verify["content_type"]),
        "verify_request": f"({shlex.join(verify['request'])})",
        "verify_response": f"({shlex.join(verify['response'])})",
        "verify_valid": shlex.quote(str(verify["status"]["valid"])),
        "verify_not_valid": shlex.quote(str(verify["status"]["not_valid"])),
    }
    return "".join(f"{name}={value}\n" for name, value in values.items())


def write(folder: Path) -> Path:
    """The stubs' view of the facts, in `folder`; returns it."""
    (folder / "published-urls").write_text("".join(f"{url}\n" for url in published()))
    (folder / "gitlab-api.sh").write_text(gitlab_api())
    (folder / "verify-rejected").mkdir()
    for version, release in releases().items():
        lines = release["verify_rejected_output"]
        (folder / "verify-rejected" / version).write_text("".join(f"{line}\n" for line in lines))
    return folder


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
