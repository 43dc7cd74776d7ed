"""Facts about the outside systems shipyard relies on (release files, properties that force a
replacement, signing keys, prices), kept as data with their sources in this folder.

The program, the diff and the tests' stubs all read these files, so a stub can only serve what a
fact says exists. Each file names where its facts come from (`repo@tag:path` or a documentation
URL) and the date they were read; refresh a file by reading that source again (README, "Facts").
"""

from __future__ import annotations

import datetime
import functools
import re
from pathlib import Path
from typing import Any

import yaml

FACTS_DIR = Path(__file__).resolve().parent


class FactError(LookupError):
    """A fact file that is missing or has no source; the message names the file."""


def path_of(name: str) -> Path:
    """The file of a fact set, e.g. `gitlab-runner/19.1.1` → infra/facts/gitlab-runner/19.1.1.yaml."""
    return FACTS_DIR / f"{name}.yaml"


def shown(name: str) -> str:
    """The file of a fact set as a user finds it in the repository: infra/facts/NAME.yaml."""
    return str(path_of(name).relative_to(FACTS_DIR.parent.parent))


@functools.cache
def load(name: str) -> dict[str, Any]:
    """One fact set. Every file carries `sources:`, a list of {ref or url, retrieved: date}."""
    path = path_of(name)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise FactError(f"no fact file {shown(name)}") from None
    sources = doc.get("sources") if isinstance(doc, dict) else None
    if not sources or not all(
        isinstance(s, dict) and (s.get("ref") or s.get("url")) and isinstance(s.get("retrieved"), datetime.date)
        for s in sources
    ):
        raise FactError(f"{path.name}: every fact file needs `sources:` with a ref or url and a retrieved date")
    return doc


def exists(name: str) -> bool:
    return path_of(name).is_file()


def aws_partition(region: str) -> tuple[str, str]:
    """(partition, DNS suffix) of an AWS region, e.g. ("aws-cn", "amazonaws.com.cn") for cn-north-1."""
    for partition in load("aws-partitions")["partitions"]:
        if re.match(partition["regionRegex"], region):
            return partition["id"], partition["dnsSuffix"]
    return "aws", "amazonaws.com"
