"""Which input changes replace a resource instead of updating it, per resource type, from
infra/facts/replace-on-change.yaml (the upstream providers' ForceNew, with sources): the plan diff
and the MR note mark replacements with it before anyone merges (P11).

Paths are those `infra.offline.diff.value_changes` produces: dotted keys, `[i]` list indices and
`["odd key"]` keys, e.g. `initialLifecycleHooks[1].heartbeatTimeout`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.facts import FactError, load, shown

FACTS = "replace-on-change"
_INDEX = re.compile(r"\[\d+\]")


class UnknownType(FactError):
    """A resource type the fact table does not describe: it must be added, with its source."""


@dataclass(frozen=True)
class Conditional:
    """A path that forces a replacement only from one value to another (a CustomizeDiff ForceNew)."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class TypeFacts:
    type: str
    source: str
    noun: str
    replace_on_change: tuple[str, ...]
    conditional: tuple[Conditional, ...]
    identity: tuple[str, ...]
    loses: str | None
    read_only: bool  # read on every run (a stack reference): never replaced


def fact_file() -> str:
    """The fact file as a repository path, for messages."""
    return shown(FACTS)


@functools.cache
def _table() -> dict[str, TypeFacts]:
    doc = load(FACTS)
    table: dict[str, TypeFacts] = {}
    for token, entry in (doc.get("types") or {}).items():
        table[token] = TypeFacts(
            type=token,
            source=entry["source"],
            noun=entry["noun"],
            replace_on_change=tuple(entry.get("replaceOnChange") or ()),
            conditional=tuple(Conditional(c["path"], c["from"], c["to"]) for c in entry.get("conditional") or ()),
            identity=tuple(entry.get("identity") or ()),
            loses=entry.get("loses"),
            read_only=entry.get("kind") == "read",
        )
    return table


def known_types() -> frozenset[str]:
    return frozenset(_table())


def facts_of(type_token: str) -> TypeFacts:
    """The facts of one type; UnknownType names the fact file when the type is not in it."""
    try:
        return _table()[type_token]
    except KeyError:
        raise UnknownType(
            f"{type_token} is not in {fact_file()}: add which of its inputs force a replacement, "
            "read from the upstream provider at the version uv.lock bridges, with the source"
        ) from None


def normalize(path: str) -> str:
    """A changed path in the fact table's form: list indices become `[]`."""
    return _INDEX.sub("[]", path)


def _touches(changed: str, fact: str) -> bool:
    """True when a change at `changed` is at, inside or above the fact's path."""
    if changed == fact:
        return True
    inside = changed.startswith((fact + ".", fact + "["))
    above = fact.startswith((changed + ".", changed + "["))
    return inside or above


def replace_reasons(
    type_token: str,
    changed_paths: Iterable[str],
    values: Mapping[str, tuple[Any, Any]] | None = None,
) -> list[str]:
    """The changed paths that force a replacement of a resource of this type, in their order.

    A conditional fact (e.g. an SSM parameter's tier, only Advanced → Standard) counts when
    `values` (path → (old, new)) shows that very change; without `values` it counts whenever its
    path changes, since the change may be the replacing one. Raises UnknownType for a type the
    fact table lacks, so that a new resource type cannot slip past the check.
    """
    facts = facts_of(type_token)
    reasons = []
    for path in changed_paths:
        shape = normalize(path)
        if any(_touches(shape, fact) for fact in facts.replace_on_change):
            reasons.append(path)
            continue
        for cond in facts.conditional:
            if _touches(shape, cond.path) and (
                values is None or path not in values or tuple(values[path]) == (cond.old, cond.new)
            ):
                reasons.append(path)
                break
    return reasons


def identity_changes(type_token: str, changed_paths: Iterable[str]) -> list[str]:
    """The changed paths that hold a name the outside world sees (an ECR repository's name…)."""
    facts = facts_of(type_token)
    return [p for p in changed_paths if any(_touches(normalize(p), f) for f in facts.identity)]


def loses(type_token: str) -> str | None:
    """What replacing a resource of this type destroys (data or identity), or None."""
    return facts_of(type_token).loses


def noun(type_token: str) -> str:
    return facts_of(type_token).noun
