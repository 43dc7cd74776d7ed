"""`shipyard mr-note`: the summary of a plan (or of the diff of two plans) as one note per stack on
the current GitLab merge request, edited in place on every pipeline instead of piling up.

The note shows only what the plan documents show, redacted: secrets are "[secret]", any value
still carrying Pulumi's secret signature is shown as "[secret]" too, and a value the policy pack
flags as a credential in plain text is shown redacted (infra/review/redaction.py, applied by the
diff's own functions). The policy verdict above the details judges the documents as given, so a
credential in plain text is named as a violation without being repeated.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gitlab

from infra.offline.diff import (
    MARKDOWN_HEADER,
    Resource,
    code,
    diff_plans,
    markdown_rows,
    markdown_warnings,
    preview_replacements,
    replacement_lines,
    summary,
    warnings,
)
from infra.review.cost import cost_of_plan, diff_cost, money, render_markdown, render_markdown_plan, signed
from policy.policies import check, resources_of_plan

LIMIT = 60_000  # characters; GitLab refuses notes over 1,000,000, and a reviewer reads far fewer
STACK_NAME = re.compile(r"[A-Za-z0-9_.\-/]+")  # Pulumi stack names, optionally org/project/stack
# Rows of the folded table: what a reviewer must not miss first.
OP_ORDER = ("delete", "replace", "delete-replaced", "create-replacement", "update", "create", "import", "read")
STEP_HEADER = "| op | type | name |\n|---|---|---|\n"


def marker(stack: str) -> str:
    """The hidden line by which the note of a stack is found again."""
    return f"<!-- shipyard:plan-note stack={stack} -->"


def _op_rank(op: str) -> tuple[int, str]:
    return (OP_ORDER.index(op) if op in OP_ORDER else len(OP_ORDER)), op


def _counts(doc: Mapping[str, Any]) -> str:
    """Counts such as "2 to create, 1 to update, 20 unchanged", from changeSummary (else the steps)."""
    summary_ = doc.get("changeSummary")
    if isinstance(summary_, dict) and summary_:
        counts = {str(op): n for op, n in summary_.items() if isinstance(n, int) and n > 0}
    else:
        counts = dict(Counter(str(s.get("op")) for s in doc["steps"]))
    parts = [f"{counts[op]} to {op}" for op in sorted(counts, key=_op_rank) if op != "same"]
    if counts.get("same"):
        parts.append(f"{counts['same']} unchanged")
    return ", ".join(parts) or "no changes"


def _step_rows(doc: Mapping[str, Any]) -> list[str]:
    """One row per resource the plan touches: a replacement's several steps show as one, by its
    most telling op; unchanged resources are left out."""
    ops: dict[str, str] = {}
    for step in doc["steps"]:
        op = str(step.get("op"))
        if op != "same" and (step["urn"] not in ops or _op_rank(op) < _op_rank(ops[step["urn"]])):
            ops[step["urn"]] = op
    rows = sorted(ops.items(), key=lambda item: (_op_rank(item[1]), Resource(item[0]).type, item[0]))
    return [f"| {op} | {code(Resource(urn).type)} | {code(Resource(urn).name)} |" for urn, op in rows]


def _details(title: str, header: str, rows: list[str], noun: str, budget: int) -> str:
    """The folded table with as many rows as fit in `budget` characters, saying how many did not."""

    def render(kept: list[str], cut: int) -> str:
        table = header + "".join(f"{row}\n" for row in kept)
        tail = f"\n… {cut} more {noun} not shown; the full plan is in the job's artifacts.\n" if cut else ""
        return f"<details><summary>{title}</summary>\n\n{table}{tail}\n</details>\n"

    used = len(render([], len(rows)))  # the frame with the longest possible "… N more" line
    kept: list[str] = []
    for row in rows:
        used += len(row) + 1
        if used > budget:
            break
        kept.append(row)
    return render(kept, len(rows) - len(kept))


MAX_VIOLATIONS = 20
MAX_FIRST = 20  # replacement sentences shown unfolded


def _policy(doc: Mapping[str, Any]) -> str:
    """The policy pack's verdict on the plan, from the same validators: reviewers see it first."""
    violations, _ = check(resources_of_plan(doc))
    if not violations:
        return "Policy pack: no violations.\n\n"
    lines = [f"**Policy pack: {len(violations)} violations** (mandatory: this cannot be deployed)", ""]
    for v in violations[:MAX_VIOLATIONS]:
        where = f"{code(v.resource.type)} {code(v.resource.name)}"
        lines.append(f"- {code(v.policy.name)} on {where}: {v.message}. Fix: {v.policy.fix}.")
    if len(violations) > MAX_VIOLATIONS:
        lines.append(f"- … {len(violations) - MAX_VIOLATIONS} more; see the job log")
    return "\n".join(lines) + "\n\n"


def _cost(doc: Mapping[str, Any], base: Mapping[str, Any] | None) -> tuple[str, str]:
    """What the plan costs a month (before → after, with a base) for the summary line, and the
    note's cost section; prices a fact file lacks are named there and counted here."""
    if base is None:
        cost = cost_of_plan(doc)
        figure, section, missing = money(cost.total), render_markdown_plan(cost), cost.missing
    else:
        change = diff_cost(base, doc)
        before, after = money(change.before.total), money(change.after.total)
        figure, section, missing = (
            f"{before} → {after} ({signed(change.delta)})",
            render_markdown(change),
            change.missing,
        )
    unpriced = f", {len(missing)} without a price" if missing else ""
    return f"monthly cost {figure}{unpriced}", f"**Monthly cost** (USD)\n\n{section}\n"


def note_body(
    stack: str,
    doc: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
    limit: int = LIMIT,
    pipeline_url: str | None = None,
    commit: str | None = None,
    full: bool = False,
) -> str:
    """The note for one stack: marker, heading, counts, where it comes from, the policy verdict,
    the replacements to read first (data-losing ones first, P11), the monthly cost (its total, or
    before → after and the change, on the summary line too), then the folded detail table cut
    to fit `limit` characters. With `base`, the diff from `base` to `doc` instead; with `full`,
    changed values are whole (the limit still applies and says how many rows it left out)."""
    if base is None:
        heading, counts = f"### Plan of stack {code(stack)}", _counts(doc)
        title, header, rows, noun = "Resources", STEP_HEADER, _step_rows(doc), "resources"
        first = replacement_lines(preview_replacements(dict(doc)), markdown=True)
    else:
        diff = diff_plans(dict(base), dict(doc))
        heading, counts = f"### Plan changes of stack {code(stack)} against the base plan", summary(diff)
        title, header, rows, noun = "Changes", MARKDOWN_HEADER, markdown_rows(diff, full), "changes"
        first = warnings(diff, markdown=True)
    monthly, cost_section = _cost(doc, base)
    origin = [f"[pipeline]({pipeline_url})"] if pipeline_url else []
    origin += [f"commit {code(commit)}"] if commit else []
    head = f"{marker(stack)}\n{heading}\n\n**{counts}** · {monthly}\n\n" + (
        " · ".join(origin) + "\n\n" if origin else ""
    )
    if len(first) > MAX_FIRST:  # the note's size cap applies to them too; the table has every row
        first = [*first[:MAX_FIRST], f"… {len(first) - MAX_FIRST} more; every one is in the table below"]
    head += _policy(doc) + markdown_warnings(first) + cost_section
    if not rows:
        return head
    return head + _details(f"{title} ({len(rows)})", header, rows, noun, limit - len(head))


# What mr-note needs → the CI/CD variables that may hold it; the first one set wins.
VARIABLES: dict[str, tuple[str, ...]] = {
    "server_url": ("CI_SERVER_URL",),
    "token": ("SHIPYARD_NOTE_TOKEN", "GITLAB_TOKEN"),
    "project_id": ("CI_MERGE_REQUEST_PROJECT_ID", "CI_PROJECT_ID"),
    "mr_iid": ("CI_MERGE_REQUEST_IID",),
}


class MissingVariables(ValueError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"missing CI/CD variables: {', '.join(names)}")


@dataclass(frozen=True)
class Target:
    """The merge request to comment on and the credentials to do it, from GitLab CI's variables."""

    server_url: str
    token: str
    token_variable: str  # its name, for messages; the token itself is never printed
    project_id: str
    mr_iid: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Target:
        """Raises MissingVariables naming every variable that is missing, at once."""
        found = {key: next((n for n in names if env.get(n)), "") for key, names in VARIABLES.items()}
        missing = [" or ".join(VARIABLES[key]) for key, name in found.items() if not name]
        if missing:
            raise MissingVariables(missing)
        return cls(token_variable=found["token"], **{key: env[name] for key, name in found.items()})


def post_note(target: Target, stack: str, body: str) -> tuple[str, int]:
    """Edit this stack's note by the token's user on the merge request, or create it:
    ("updated" | "created", note id). Raises gitlab.exceptions.GitlabError when GitLab refuses."""
    gl = gitlab.Gitlab(url=target.server_url, private_token=target.token, timeout=30)
    gl.auth()
    me = gl.user.id if gl.user is not None else None
    project = gl.projects.get(target.project_id, lazy=True)
    mr = project.mergerequests.get(target.mr_iid, lazy=True)
    # Only a note this user wrote for this stack: never someone else's, even if it quotes the marker.
    # The oldest one if there are several, so the note keeps its place in the discussion.
    ours = [
        note
        for note in mr.notes.list(iterator=True)
        if (note.author or {}).get("id") == me and marker(stack) in (note.body or "")
    ]
    if ours:
        note = min(ours, key=lambda n: int(n.id))
        note.body = body
        note.save()
        return "updated", int(note.id)
    created = mr.notes.create({"body": body})
    return "created", int(created.id)
