"""The state that the tests' skopeo, cosign and aws stubs share: one registry kept as files in
$STUB_REGISTRY (`/` written as `%`, the skopeo stub's layout), and one call log, $STUB_LOG.

    <repository>@sha256:<hex>        a manifest, byte for byte as the registry stores it
    <repository>:<tag>               the digest the tag points at
    <repository>/blobs@sha256:<hex>  a blob (the payload of a cosign signature)
    <repository>/scans@sha256:<hex>  ECR's answers about that image's scan: a JSON list, served one
                                     per call, the last one kept

Every call is appended to $STUB_LOG as one JSON line: {"tool": …, "args": […], …}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from infra import facts

__all__ = ["facts", "folder", "log", "path_of", "repository_exists"]


def folder() -> Path:
    return Path(os.environ["STUB_REGISTRY"])


def path_of(ref: str) -> Path:
    return folder() / ref.replace("/", "%")


def repository_exists(repository: str) -> bool:
    """A repository exists when it holds a manifest or a tag."""
    prefix = repository.replace("/", "%")
    return any(p.name.startswith((f"{prefix}@", f"{prefix}:")) for p in folder().iterdir())


def log(tool: str, args: list[str], **extra: Any) -> None:
    with open(os.environ["STUB_LOG"], "a") as handle:
        handle.write(json.dumps({"tool": tool, "args": args, **extra}) + "\n")
