"""The state that the tests' skopeo, cosign and aws stubs share: one registry kept as files in
$STUB_REGISTRY (`/` written as `%`, the skopeo stub's layout), one call log, $STUB_LOG, and the
facts they answer from, $STUB_FACTS.

    <repository>@sha256:<hex>        a manifest, byte for byte as the registry stores it
    <repository>:<tag>               the digest the tag points at
    <repository>/blobs@sha256:<hex>  a blob (the payload of a cosign signature)
    <repository>/scans@sha256:<hex>  ECR's answers about that image's scan: a JSON list, served one
                                     per call, the last one kept

Every call is appended to $STUB_LOG as one JSON line: {"tool": …, "args": […], …}.

Each call of a stub is a new process, so the cosign and aws stubs run on the standard library only
(`python -S`: no site-packages, no YAML) and import little (no pathlib, no typing at run time). The
facts they answer from are infra/facts/*.yaml as the tests read them: `from_facts()`, written as
JSON once per test session (`write_facts`) to the file $STUB_FACTS names.
"""

from __future__ import annotations

import json
import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = [
    "aws_partition",
    "facts",
    "folder",
    "from_facts",
    "is_file",
    "log",
    "path_of",
    "read",
    "repository_exists",
    "write",
    "write_facts",
]

# The fact sets the stubs answer from (their `sources:` left out).
FACT_SETS = ("cosign", "ecr-scan-findings", "aws-partitions")


def from_facts() -> dict[str, Any]:
    """What the stubs answer from, read from infra/facts (in the tests' process, which has YAML)."""
    from infra import facts as infra_facts

    return {name: {k: v for k, v in infra_facts.load(name).items() if k != "sources"} for name in FACT_SETS}


def write_facts(path: Path) -> Path:
    path.write_text(json.dumps(from_facts()))
    return path


def _load() -> dict[str, Any]:
    stored = os.environ.get("STUB_FACTS")
    if not stored:  # imported by the tests themselves, not run as a stub
        return from_facts()
    with open(stored) as handle:
        return json.load(handle)


FACTS = _load()


def facts(name: str) -> dict[str, Any]:
    """One fact set, infra/facts/NAME.yaml."""
    return FACTS[name]


def aws_partition(region: str) -> tuple[str, str]:
    """(partition, DNS suffix) of an AWS region, as infra.facts.aws_partition finds it."""
    for partition in facts("aws-partitions")["partitions"]:
        if re.match(partition["regionRegex"], region):
            return partition["id"], partition["dnsSuffix"]
    return "aws", "amazonaws.com"


def folder() -> str:
    return os.environ["STUB_REGISTRY"]


def path_of(ref: str) -> str:
    return os.path.join(folder(), ref.replace("/", "%"))


def is_file(ref: str) -> bool:
    return os.path.isfile(path_of(ref))


def read(ref: str) -> bytes:
    with open(path_of(ref), "rb") as handle:
        return handle.read()


def write(ref: str, data: bytes | str) -> None:
    with open(path_of(ref), "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def repository_exists(repository: str) -> bool:
    """A repository exists when it holds a manifest or a tag."""
    prefix = repository.replace("/", "%")
    return any(name.startswith((f"{prefix}@", f"{prefix}:")) for name in os.listdir(folder()))


def log(tool: str, args: list[str], **extra: Any) -> None:
    with open(os.environ["STUB_LOG"], "a") as handle:
        handle.write(json.dumps({"tool": tool, "args": args, **extra}) + "\n")
