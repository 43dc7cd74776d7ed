"""`make docs`: embed ci/heroku_release.py and ci/review_apps.py into the delivery template.

An `include:`d template brings only YAML into the application project, never the files beside it,
so the deploy and review jobs write their scripts out of the template itself. The scripts stay real,
tested files; this keeps the copies in the template identical to them.
"""

import re
from pathlib import Path

CI = Path(__file__).resolve().parent.parent / "ci"
# marker in the template → the script embedded there, and its heredoc terminator
SCRIPTS = {
    "release-script": ("heroku_release.py", "SHIPYARD_RELEASE_PY"),
    "review-script": ("review_apps.py", "SHIPYARD_REVIEW_PY"),
}


def embedded(script: str, name: str, terminator: str) -> str:
    body = "".join(f"        {line}".rstrip() + "\n" for line in script.splitlines())
    return f"    - |\n        cat > /tmp/{name} <<'{terminator}'\n{body}        {terminator}\n"


def update(template: str, script: str, marker: str) -> str:
    name, terminator = SCRIPTS[marker]
    begin, end = f"    # {marker}:begin", f"    # {marker}:end"
    pattern = re.compile(rf"({re.escape(begin)}[^\n]*\n).*?(?={re.escape(end)})", re.S)
    return pattern.sub(lambda m: m.group(1) + embedded(script, name, terminator), template, count=1)


if __name__ == "__main__":
    path = CI / "delivery.gitlab-ci.yml"
    template = path.read_text()
    for marker, (name, _) in SCRIPTS.items():
        template = update(template, (CI / name).read_text(), marker)
    path.write_text(template)
