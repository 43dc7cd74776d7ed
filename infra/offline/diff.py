"""`shipyard plan diff`: what changed between two plan documents (offline plans or `pulumi preview
--json`), as plain text for job logs or as Markdown for merge-request notes.

A changed resource whose changed inputs force a replacement (the upstream providers' ForceNew, in
infra/facts/replace-on-change.yaml) is a `replace`, or a `delete-replace` when it is deleted before
its replacement exists; replacements that lose data or identity are listed first, in words (P11).
A real preview's own replace steps and `replaceReasons` count too.

Values come only from the documents, which already show every secret as "[secret]"; a value that
still carries Pulumi's secret signature is shown as "[secret]" too, never unwrapped, and a value
the policy pack flags as a credential stored in plain text is shown redacted
(infra/review/redaction.py): a diff says that it changed, never what it is. Long values are shown
around their first difference, so a change is never cut away.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.facts.replacements import TypeFacts, UnknownType, facts_of, identity_changes, replace_reasons
from infra.review.redaction import redact_credentials
from policy.policies import GONE_OPS

SECRET = "[secret]"
# Pulumi's wire signature of a secret value (sdk rpc._special_sig_key / _special_secret_sig).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
VALUE_WIDTH = 60
MARKDOWN_ROW_CHANGES = 20  # changed inputs listed in one Markdown row; the text output lists all
# Step ops of `pulumi preview --json` that mean the resource is torn down and built again.
REPLACE_OPS = frozenset(
    {"replace", "create-replacement", "delete-replaced", "read-replacement", "import-replacement", "discard-replaced"}
)


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
class Replacement:
    """A resource that `pulumi up` deletes and creates again, and what that costs."""

    resource: Resource
    reasons: tuple[str, ...]  # the changed inputs that force it
    delete_before_replace: bool  # deleted first: gone until the replacement is up
    protected: bool  # `pulumi up` refuses until the resource is unprotected
    noun: str  # "ECR repository"; the type token when the fact table does not know it
    label: str  # the name the outside world knows it by, else the resource name
    loses: str | None  # what is destroyed (data or identity), from the fact table

    @property
    def op(self) -> str:
        return "delete-replace" if self.delete_before_replace else "replace"


@dataclass(frozen=True)
class ChangedResource:
    resource: Resource
    inputs: list[Change]
    protect: tuple[bool, bool] | None = None  # (old, new) when the resource option changed
    replacement: Replacement | None = None
    renames: tuple[Change, ...] = ()  # names the outside world sees, changed in place
    unknown: str | None = None  # why replacements of this type cannot be told (not in the fact table)

    @property
    def op(self) -> str:
        return self.replacement.op if self.replacement else "changed"


@dataclass(frozen=True)
class PlanDiff:
    added: list[Resource] = field(default_factory=list)
    removed: list[Resource] = field(default_factory=list)
    changed: list[ChangedResource] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.outputs)

    @property
    def replacements(self) -> list[Replacement]:
        return [c.replacement for c in self.changed if c.replacement]


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


@dataclass(frozen=True)
class _Steps:
    """What a real preview says of one URN: its ops, why it is replaced, whether the old one goes first."""

    ops: tuple[str, ...] = ()
    replace_reasons: tuple[str, ...] = ()

    @property
    def replaced(self) -> bool:
        return bool(REPLACE_OPS & set(self.ops))

    @property
    def delete_first(self) -> bool:
        # Delete-before-replace shows the delete-replaced step before the create-replacement one.
        ops = list(self.ops)
        return (
            "delete-replaced" in ops
            and "create-replacement" in ops
            and (ops.index("delete-replaced") < ops.index("create-replacement"))
        )


def _steps_by_urn(doc: dict[str, Any]) -> dict[str, _Steps]:
    found: dict[str, tuple[list[str], list[str]]] = {}
    for step in doc["steps"]:
        ops, reasons = found.setdefault(step["urn"], ([], []))
        ops.append(str(step.get("op")))
        reasons += [str(r) for r in step.get("replaceReasons") or () if str(r) not in reasons]
    return {urn: _Steps(tuple(ops), tuple(reasons)) for urn, (ops, reasons) in found.items()}


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


def _at(value: Any, key: str | int) -> Any:
    if isinstance(value, dict):
        return value.get(key, ABSENT)
    return value[key] if isinstance(value, list) and isinstance(key, int) and key < len(value) else ABSENT


def value_changes(old: Any, new: Any, path: str = "", shown: tuple[Any, Any] | None = None) -> list[Change]:
    """Every leaf that differs, as dotted paths (`configVars.FOO`, `tags[1]`); a secret is a leaf.
    What differs is found between `old` and `new`; a change carries the values of `shown` instead
    when given: the same two values as people may see them (credentials redacted, same shape), so
    that a changed credential still shows as a change."""
    shown_old, shown_new = (old, new) if shown is None else shown
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            c
            for k in sorted(set(old) | set(new))
            for c in value_changes(
                old.get(k, ABSENT), new.get(k, ABSENT), _key_path(path, k), (_at(shown_old, k), _at(shown_new, k))
            )
        ]
    if isinstance(old, list) and isinstance(new, list):
        return [
            c
            for i in range(max(len(old), len(new)))
            for c in value_changes(_at(old, i), _at(new, i), f"{path}[{i}]", (_at(shown_old, i), _at(shown_new, i)))
        ]
    return [] if old == new else [Change(path, shown_old, shown_new)]


def _label(resource: Resource, identity: Iterable[str], *inputs: dict[str, Any]) -> str:
    """The name people know a resource by: its first identity input (the old one first)."""
    for key in identity:
        for values in inputs:
            value = values.get(key)
            if isinstance(value, str) and value and value != SECRET:
                return value
    return resource.name


def _examine(
    resource: Resource, old: dict[str, Any], new: dict[str, Any], inputs: list[Change], steps: _Steps
) -> tuple[Replacement | None, tuple[Change, ...], str | None]:
    """Whether the change replaces the resource (fact table and preview), which names change in
    place, and why replacements cannot be told when the fact table lacks the type."""
    if new.get("custom") is False:  # a component: nothing of its own to replace
        return None, (), None
    paths = [c.path for c in inputs]
    facts: TypeFacts | None = None
    unknown: str | None = None
    try:
        facts = facts_of(resource.type)
    except UnknownType as exc:
        unknown = str(exc)
    reasons = replace_reasons(resource.type, paths, {c.path: (c.old, c.new) for c in inputs}) if facts else []
    for key in steps.replace_reasons if steps.replaced else ():
        if not any(r == key or r.startswith((key + ".", key + "[")) for r in reasons):
            reasons.append(key)
    renames = (
        tuple(c for c in inputs if c.path in identity_changes(resource.type, paths) and c.path not in reasons)
        if facts
        else ()
    )
    if not (reasons or steps.replaced):
        return None, renames, unknown
    return _replacement(resource, reasons, old, new, steps), (), unknown


def _replacement(
    resource: Resource, reasons: Iterable[str], old: dict[str, Any], new: dict[str, Any], steps: _Steps
) -> Replacement:
    facts: TypeFacts | None = None
    with contextlib.suppress(UnknownType):
        facts = facts_of(resource.type)
    return Replacement(
        resource=resource,
        reasons=tuple(reasons),
        delete_before_replace=bool(new.get("deleteBeforeReplace")) or steps.delete_first,
        protected=bool(new.get("protect")),
        noun=facts.noun if facts else resource.type,
        label=_label(resource, facts.identity if facts else (), old.get("inputs") or {}, new.get("inputs") or {}),
        loses=facts.loses if facts else None,
    )


def _order(urn: str) -> tuple[str, str]:
    return Resource(urn).type, urn


def diff_plans(base: dict[str, Any], head: dict[str, Any]) -> PlanDiff:
    """What applying HEAD's plan instead of BASE's would change, matched by URN. Changes are found
    in the documents as given; the values the diff carries have their credentials redacted."""
    old, new = resource_states(base), resource_states(head)
    shown_base, shown_head = redact_credentials(base), redact_credentials(head)
    shown_old, shown_new = resource_states(shown_base), resource_states(shown_head)
    steps = _steps_by_urn(head)
    changed = []
    for urn in sorted(old.keys() & new.keys(), key=_order):
        resource = Resource(urn)
        inputs = value_changes(
            redact(old[urn].get("inputs") or {}),
            redact(new[urn].get("inputs") or {}),
            shown=(redact(shown_old[urn].get("inputs") or {}), redact(shown_new[urn].get("inputs") or {})),
        )
        protect = (bool(old[urn].get("protect")), bool(new[urn].get("protect")))
        replacement, renames, unknown = _examine(
            resource, shown_old[urn], shown_new[urn], inputs, steps.get(urn, _Steps())
        )
        if inputs or protect[0] != protect[1] or replacement:
            changed.append(
                ChangedResource(
                    resource,
                    inputs,
                    protect if protect[0] != protect[1] else None,
                    replacement,
                    renames,
                    unknown if inputs else None,
                )
            )
    old_out, new_out = stack_outputs(base), stack_outputs(head)
    shown_out = (stack_outputs(shown_base), stack_outputs(shown_head))
    outputs = [
        Change(k, shown_out[0].get(k, ABSENT), shown_out[1].get(k, ABSENT))
        for k in sorted(old_out.keys() | new_out.keys())
        if old_out.get(k, ABSENT) != new_out.get(k, ABSENT)
    ]
    return PlanDiff(
        added=[Resource(u) for u in sorted(new.keys() - old.keys(), key=_order)],
        removed=[Resource(u) for u in sorted(old.keys() - new.keys(), key=_order)],
        changed=changed,
        outputs=outputs,
    )


def preview_replacements(doc: dict[str, Any]) -> list[Replacement]:
    """The replacements a real `pulumi preview --json` announces by its own steps (a single plan
    document, no base to compare with): their replaceReasons, protection and delete order."""
    doc = redact_credentials(doc)  # the labels come from inputs
    found = []
    for urn, steps in sorted(_steps_by_urn(doc).items(), key=lambda item: _order(item[0])):
        resource = Resource(urn)
        if not steps.replaced or _ignored(resource):
            continue
        states = [s for s in doc["steps"] if s["urn"] == urn]
        new: dict[str, Any] = next((s["newState"] for s in states if isinstance(s.get("newState"), dict)), {})
        old: dict[str, Any] = next((s["oldState"] for s in states if isinstance(s.get("oldState"), dict)), {})
        found.append(_replacement(resource, steps.replace_reasons, old, new, steps))
    return found


# ---------------------------------------------------------------------------------------------
# Rendering


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def show(value: Any, width: int | None = VALUE_WIDTH) -> str:
    """A value as compact JSON, cut to `width` characters (whole when `width` is None)."""
    if value is ABSENT:
        return "(absent)"
    text = _json(value)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _window(text: str, start: int, width: int) -> str:
    end = start + width
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def show_change(old: Any, new: Any, width: int | None = VALUE_WIDTH) -> tuple[str, str]:
    """Old and new value, each cut to about `width` characters around their first difference, so
    that two long values that differ late never look the same; whole when `width` is None."""
    if width is None or old is ABSENT or new is ABSENT:
        return show(old, width), show(new, width)
    a, b = _json(old), _json(new)
    if len(a) <= width and len(b) <= width:
        return a, b
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, first - width // 4)
    return _window(a, start, width), _window(b, start, width)


def _kind(change: Change) -> str:
    return "added" if change.old is ABSENT else "removed" if change.new is ABSENT else "changed"


def summary(diff: PlanDiff) -> str:
    """One line of counts, e.g. "resources: 1 added, 0 removed, 2 changed, 1 replaced; outputs: 1 changed"."""
    if diff.empty:
        return "no changes: both plans have the same resources, inputs and outputs"
    replaced = len(diff.replacements)
    text = f"resources: {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed) - replaced} changed"
    text += f", {replaced} replaced" if replaced else ""
    kinds = [_kind(c) for c in diff.outputs]
    counts = [f"{kinds.count(k)} {k}" for k in ("added", "removed", "changed") if k in kinds]
    return text + (f"; outputs: {', '.join(counts)}" if counts else "")


def _quote(text: str, markdown: bool) -> str:
    return code(text) if markdown else text


def describe(r: Replacement, markdown: bool = False) -> str:
    """A replacement in words: what is replaced, what that destroys, why, and what stops it."""

    def q(text: str) -> str:
        return _quote(text, markdown)

    what = f"the {r.noun} {q(r.label)}" if r.noun != r.resource.type else f"{q(r.resource.type)} {q(r.label)}"
    text = f"replaces {what}" + (f": {r.loses}" if r.loses else "")
    text += f" (forced by {', '.join(q(p) for p in r.reasons)})." if r.reasons else " (the preview says so)."
    if r.delete_before_replace:
        text += " It is deleted before its replacement is created: it is gone until the new one is up."
    if r.protected:
        # The command as one code span in both outputs: the URN is quoted for a shell (it holds `$`).
        unprotect = f"pulumi state unprotect '{r.resource.urn}'"
        text += f" It is protected: `pulumi up` refuses to replace it until `{unprotect}`."
    return text


def warnings(diff: PlanDiff, markdown: bool = False) -> list[str]:
    """What a reviewer must not miss, first: replacements that lose data or identity, then the
    other replacements, names the outside world sees changing in place, types the facts lack."""
    ordered = sorted(diff.replacements, key=lambda r: r.loses is None)  # stable: type order within
    lines = [describe(r, markdown) for r in ordered]

    def q(text: str) -> str:
        return _quote(text, markdown)

    for c in diff.changed:
        try:
            noun = facts_of(c.resource.type).noun
        except UnknownType:
            noun = c.resource.type
        lines += [
            f"renames the {noun} {q(c.resource.name)}: {q(r.path)} {q(show(r.old))} → {q(show(r.new))}, "
            "a name the outside world sees."
            for r in c.renames
        ]
        if c.unknown:
            lines.append(f"cannot tell whether {q(c.resource.type)} {q(c.resource.name)} is replaced: {c.unknown}.")
    return lines


def replacement_lines(replacements: list[Replacement], markdown: bool = False) -> list[str]:
    """The sentences of replacements announced by a preview alone, data-losing ones first."""
    return [describe(r, markdown) for r in sorted(replacements, key=lambda r: r.loses is None)]


def _flags(c: ChangedResource) -> str:
    if not c.replacement:
        return ""
    return " [" + ", ".join([c.replacement.op] + (["protected"] if c.replacement.protected else [])) + "]"


def render_text(diff: PlanDiff, full: bool = False) -> str:
    """Plain lines for a job log: what to read first, then every changed input with its old and
    new value (around their first difference, or whole with `full`)."""
    width = None if full else VALUE_WIDTH
    lines = [summary(diff)]
    first = warnings(diff)
    if first:
        lines += ["", "read first:", *(f"  ! {w}" for w in first)]
    if diff.added:
        lines += ["", "added:", *(f"  + {r.type}  {r.name}" for r in diff.added)]
    if diff.removed:
        lines += ["", "removed:", *(f"  - {r.type}  {r.name}" for r in diff.removed)]
    if diff.changed:
        lines += ["", "changed:"]
        for c in diff.changed:
            mark = "+-" if c.replacement else "~"
            lines.append(f"  {mark} {c.resource.type}  {c.resource.name}{_flags(c)}")
            if c.protect:
                lines.append(f"      protect (resource option): {show(c.protect[0])} → {show(c.protect[1])}")
            reasons = set(c.replacement.reasons) if c.replacement else set()
            for i in c.inputs:
                old, new = show_change(i.old, i.new, width)
                lines.append(f"      {i.path}: {old} → {new}" + ("  (forces replacement)" if i.path in reasons else ""))
    if diff.outputs:
        sign = {"added": "+", "removed": "-", "changed": "~"}
        lines += ["", "outputs:"]
        for o in diff.outputs:
            old, new = show_change(o.old, o.new, width)
            lines.append(f"  {sign[_kind(o)]} {o.path}: {old} → {new}")
    return "\n".join(lines) + "\n"


def code(text: str) -> str:
    """Text as a Markdown code span that is safe inside a table cell."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _md_change(path: str, old: Any, new: Any, width: int | None, replaces: bool = False) -> str:
    shown = show_change(old, new, width)
    return f"{code(path)}: {code(shown[0])} → {code(shown[1])}" + (" **(replaces)**" if replaces else "")


MARKDOWN_HEADER = "| change | type | name | what changed |\n|---|---|---|---|\n"


def markdown_rows(diff: PlanDiff, full: bool = False) -> list[str]:
    """One table row per added, removed, replaced or changed resource, then per changed stack output."""
    width = None if full else VALUE_WIDTH
    rows = [f"| added | {code(r.type)} | {code(r.name)} | |" for r in diff.added]
    rows += [f"| removed | {code(r.type)} | {code(r.name)} | |" for r in diff.removed]
    for c in diff.changed:
        reasons = set(c.replacement.reasons) if c.replacement else set()
        cells = [_md_change("protect", *c.protect, width) + " (resource option)"] if c.protect else []
        if c.replacement and c.replacement.protected:
            cells.append("protected: `pulumi up` refuses until `pulumi state unprotect`")
        cells += [_md_change(i.path, i.old, i.new, width, i.path in reasons) for i in c.inputs[:MARKDOWN_ROW_CHANGES]]
        if len(c.inputs) > MARKDOWN_ROW_CHANGES:
            cells.append(f"… {len(c.inputs) - MARKDOWN_ROW_CHANGES} more inputs")
        rows.append(f"| {c.op} | {code(c.resource.type)} | {code(c.resource.name)} | {'<br>'.join(cells)} |")
    for o in diff.outputs:
        old, new = show_change(o.old, o.new, width)
        rows.append(f"| {_kind(o)} | stack output | {code(o.path)} | {code(old)} → {code(new)} |")
    return rows


def markdown_warnings(lines: list[str]) -> str:
    """The sentences a reviewer must read first, as a Markdown list under a bold heading."""
    if not lines:
        return ""
    return "**Read first:**\n\n" + "".join(f"- {line}\n" for line in lines) + "\n"


def render_markdown(diff: PlanDiff, full: bool = False) -> str:
    """The summary line, what to read first, and one table, for a merge-request note or a job summary."""
    if diff.empty:
        return f"**{summary(diff)}**\n"
    return (
        f"**{summary(diff)}**\n\n"
        + markdown_warnings(warnings(diff, markdown=True))
        + MARKDOWN_HEADER
        + "".join(row + "\n" for row in markdown_rows(diff, full))
    )
