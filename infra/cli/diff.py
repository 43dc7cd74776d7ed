"""`shipyard plan diff`: what changed between two plan documents (offline plans or `pulumi preview
--json`), as plain text for job logs or as Markdown for merge-request notes.

Values come only from the documents, which already show every secret as "[secret]"; a value that
still carries Pulumi's secret signature is shown as "[secret]" too, never unwrapped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.policies import GONE_OPS

SECRET = "[secret]"
# Pulumi's wire signature of a secret value (sdk rpc._special_sig_key / _special_secret_sig).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
VALUE_WIDTH = 60
MARKDOWN_ROW_CHANGES = 20  # changed inputs listed in one Markdown row; the text output lists all


class PlanError(ValueError):
    """A file that cannot be read as a plan document; the message names the file."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # a value missing on one side: an added or removed key or list item


@dataclass(frozen=True)
class Resource:
    urn: str

    @property
    def type(self) -> str:
        # urn:pulumi:<stack>::<project>::<parent types$>type::<name>
        return self.urn.split("::")[2].rsplit("$", 1)[-1]

    @property
    def name(self) -> str:
        return self.urn.split("::", 3)[3]


@dataclass(frozen=True)
class Change:
    """One changed value: an input at a dotted path, or a stack output."""

    path: str
    old: Any = ABSENT
    new: Any = ABSENT


@dataclass(frozen=True)
class ChangedResource:
    resource: Resource
    inputs: list[Change]
    protect: tuple[bool, bool] | None = None  # (old, new) when the resource option changed


@dataclass(frozen=True)
class PlanDiff:
    added: list[Resource] = field(default_factory=list)
    removed: list[Resource] = field(default_factory=list)
    changed: list[ChangedResource] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.outputs)


def load_plan(path: str | Path) -> dict[str, Any]:
    """A plan document from a file; PlanError says in one sentence why a file is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, list) or not all(isinstance(s, dict) and _is_urn(s.get("urn")) for s in steps):
        raise PlanError(
            f"{path} is not a plan document: it needs a `steps` list of steps with a `urn`, as written by "
            "`shipyard plan --stack NAME --json` or `pulumi preview --json`"
        )
    return doc


def _is_urn(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("urn:pulumi:") and value.count("::") >= 3


def redact(value: Any) -> Any:
    """A document value with anything still carrying the secret signature shown as "[secret]"."""
    if isinstance(value, dict):
        return SECRET if SECRET_SIG_KEY in value else {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _ignored(resource: Resource) -> bool:
    # Providers and the stack itself change with every SDK or program edit and say nothing to a reviewer.
    return resource.type.startswith("pulumi:providers:") or resource.type == "pulumi:pulumi:Stack"


def resource_states(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """URN → the resource's state once the document's steps are done. A replacement is several
    steps for one URN; any step that leaves the resource in place wins over the deleting ones."""
    states: dict[str, dict[str, Any]] = {}
    for step in doc["steps"]:
        state = step.get("newState")
        if step.get("op") not in GONE_OPS and isinstance(state, dict):
            states.setdefault(step["urn"], state)
    return {urn: state for urn, state in states.items() if not _ignored(Resource(urn))}


def stack_outputs(doc: dict[str, Any]) -> dict[str, Any]:
    """The offline plan's `outputs`; in a preview, the outputs of the stack resource's new state."""
    if isinstance(doc.get("outputs"), dict):
        return dict(redact(doc["outputs"]))
    for step in doc["steps"]:
        state = step.get("newState")
        if Resource(step["urn"]).type == "pulumi:pulumi:Stack" and isinstance(state, dict):
            return dict(redact(state.get("outputs") or {}))
    return {}


def _key_path(prefix: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def value_changes(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every leaf that differs, as dotted paths (`configVars.FOO`, `tags[1]`); a secret is a leaf."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in value_changes(old.get(k, ABSENT), new.get(k, ABSENT), _key_path(path, k))]
    if isinstance(old, list) and isinstance(new, list):
        pairs = [
            (old[i] if i < len(old) else ABSENT, new[i] if i < len(new) else ABSENT)
            for i in range(max(len(old), len(new)))
        ]
        return [c for i, (o, n) in enumerate(pairs) for c in value_changes(o, n, f"{path}[{i}]")]
    return [] if old == new else [Change(path, old, new)]


def _order(urn: str) -> tuple[str, str]:
    return Resource(urn).type, urn


def diff_plans(base: dict[str, Any], head: dict[str, Any]) -> PlanDiff:
    """What applying HEAD's plan instead of BASE's would change, matched by URN."""
    old, new = resource_states(base), resource_states(head)
    changed = []
    for urn in sorted(old.keys() & new.keys(), key=_order):
        inputs = value_changes(redact(old[urn].get("inputs") or {}), redact(new[urn].get("inputs") or {}))
        protect = (bool(old[urn].get("protect")), bool(new[urn].get("protect")))
        if inputs or protect[0] != protect[1]:
            changed.append(ChangedResource(Resource(urn), inputs, protect if protect[0] != protect[1] else None))
    old_out, new_out = stack_outputs(base), stack_outputs(head)
    outputs = [
        Change(k, old_out.get(k, ABSENT), new_out.get(k, ABSENT))
        for k in sorted(old_out.keys() | new_out.keys())
        if old_out.get(k, ABSENT) != new_out.get(k, ABSENT)
    ]
    return PlanDiff(
        added=[Resource(u) for u in sorted(new.keys() - old.keys(), key=_order)],
        removed=[Resource(u) for u in sorted(old.keys() - new.keys(), key=_order)],
        changed=changed,
        outputs=outputs,
    )


def show(value: Any, width: int = VALUE_WIDTH) -> str:
    """A value as compact JSON, cut to `width` characters."""
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _kind(change: Change) -> str:
    return "added" if change.old is ABSENT else "removed" if change.new is ABSENT else "changed"


def summary(diff: PlanDiff) -> str:
    """One line of counts, e.g. "resources: 1 added, 0 removed, 2 changed; outputs: 1 changed"."""
    if diff.empty:
        return "no changes: both plans have the same resources, inputs and outputs"
    text = f"resources: {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed"
    kinds = [_kind(c) for c in diff.outputs]
    counts = [f"{kinds.count(k)} {k}" for k in ("added", "removed", "changed") if k in kinds]
    return text + (f"; outputs: {', '.join(counts)}" if counts else "")


def render_text(diff: PlanDiff) -> str:
    """Plain lines for a job log: every changed input with its old and new value."""
    lines = [summary(diff)]
    if diff.added:
        lines += ["", "added:", *(f"  + {r.type}  {r.name}" for r in diff.added)]
    if diff.removed:
        lines += ["", "removed:", *(f"  - {r.type}  {r.name}" for r in diff.removed)]
    if diff.changed:
        lines += ["", "changed:"]
        for c in diff.changed:
            lines.append(f"  ~ {c.resource.type}  {c.resource.name}")
            if c.protect:
                lines.append(f"      protect (resource option): {show(c.protect[0])} → {show(c.protect[1])}")
            lines += [f"      {i.path}: {show(i.old)} → {show(i.new)}" for i in c.inputs]
    if diff.outputs:
        sign = {"added": "+", "removed": "-", "changed": "~"}
        lines += [
            "",
            "outputs:",
            *(f"  {sign[_kind(o)]} {o.path}: {show(o.old)} → {show(o.new)}" for o in diff.outputs),
        ]
    return "\n".join(lines) + "\n"


def code(text: str) -> str:
    """Text as a Markdown code span that is safe inside a table cell."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _md_change(path: str, old: Any, new: Any) -> str:
    return f"{code(path)}: {code(show(old))} → {code(show(new))}"


MARKDOWN_HEADER = "| change | type | name | what changed |\n|---|---|---|---|\n"


def markdown_rows(diff: PlanDiff) -> list[str]:
    """One table row per added, removed or changed resource, then per changed stack output."""
    rows = [f"| added | {code(r.type)} | {code(r.name)} | |" for r in diff.added]
    rows += [f"| removed | {code(r.type)} | {code(r.name)} | |" for r in diff.removed]
    for c in diff.changed:
        cells = [_md_change("protect", *c.protect) + " (resource option)"] if c.protect else []
        cells += [_md_change(i.path, i.old, i.new) for i in c.inputs[:MARKDOWN_ROW_CHANGES]]
        if len(c.inputs) > MARKDOWN_ROW_CHANGES:
            cells.append(f"… {len(c.inputs) - MARKDOWN_ROW_CHANGES} more inputs")
        rows.append(f"| changed | {code(c.resource.type)} | {code(c.resource.name)} | {'<br>'.join(cells)} |")
    rows += [
        f"| {_kind(o)} | stack output | {code(o.path)} | {code(show(o.old))} → {code(show(o.new))} |"
        for o in diff.outputs
    ]
    return rows


def render_markdown(diff: PlanDiff) -> str:
    """The summary line and one table, for a merge-request note or a job summary."""
    if diff.empty:
        return f"**{summary(diff)}**\n"
    return f"**{summary(diff)}**\n\n" + MARKDOWN_HEADER + "".join(row + "\n" for row in markdown_rows(diff))
