"""`make docs`: embed ci/heroku_release.py into the delivery template.

An `include:`d template brings only YAML into the application project, never the files beside it,
so the deploy job writes the release script out of the template itself. The script stays a real,
tested file; this keeps the copy in the template identical to it.
"""

import re
from pathlib import Path

CI = Path(__file__).resolve().parent.parent / "ci"
BEGIN = "    # release-script:begin"
END = "    # release-script:end"
TERMINATOR = "SHIPYARD_RELEASE_PY"


def embedded(script: str) -> str:
    body = "".join(f"        {line}".rstrip() + "\n" for line in script.splitlines())
    return f"    - |\n        cat > /tmp/heroku_release.py <<'{TERMINATOR}'\n{body}        {TERMINATOR}\n"


def update(template: str, script: str) -> str:
    pattern = re.compile(rf"({re.escape(BEGIN)}[^\n]*\n).*?(?={re.escape(END)})", re.S)
    return pattern.sub(lambda m: m.group(1) + embedded(script), template, count=1)


if __name__ == "__main__":
    path = CI / "delivery.gitlab-ci.yml"
    path.write_text(update(path.read_text(), (CI / "heroku_release.py").read_text()))
