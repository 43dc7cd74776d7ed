"""For the stubs, what the gitlab-runner fact files say exists, read as the program reads them.

`_facts.py urls`: every URL that some fact file lists, as a file of its release or as its signing
key, one a line; the curl stub serves those (when the test prepared them) and answers 404 for any
other, as GitLab's bucket does.
`_facts.py verify-rejected VERSION`: the messages of `gitlab-runner verify` for a rejected token.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from infra import facts


def published() -> list[str]:
    urls = []
    for path in sorted((facts.FACTS_DIR / "gitlab-runner").glob("*.yaml")):
        release = facts.load(f"gitlab-runner/{path.stem}")
        urls.append(release["signing_key"]["url"])
        urls += [f"{release['downloads'].rstrip('/')}/{file}" for file in release["files"]]
    return urls


def main(command: str, *args: str) -> int:
    if command == "urls":
        print("\n".join(published()))
        return 0
    if command == "verify-rejected":
        print("\n".join(facts.load(f"gitlab-runner/{args[0]}")["verify_rejected_output"]))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
