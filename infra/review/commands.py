"""The review room's commands: `shipyard mr-note` (a plan or plan diff as a merge-request note, or
printed with `--dry-run`) and `shipyard policy check` (the policy pack's validators on any plan
document)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def policy_check(args: argparse.Namespace) -> int:
    from infra.offline.diff import PlanError, load_plan
    from infra.review.policy_check import verdict

    try:
        document = load_plan(args.file)
    except PlanError as exc:
        print(f"shipyard policy check: {exc}", file=sys.stderr)
        return 2
    violations, report = verdict(document)
    print(report)
    return 1 if violations else 0


def mr_note(args: argparse.Namespace) -> int:
    from infra.offline.diff import PlanError, load_plan
    from infra.review.mr_note import MissingVariables, Target, note_body

    problems: list[str] = []
    target: Target | None = None
    if not args.dry_run:  # a dry run only prints the note: no GitLab, no token
        try:
            target = Target.from_env(os.environ)
        except MissingVariables as exc:
            problems.append(f"{exc} (mr-note runs in a merge-request pipeline, with a token of api scope)")
    docs: dict[str, dict[str, Any]] = {}
    for path in filter(None, (args.plan, args.base)):
        try:
            docs[path] = load_plan(path)
        except PlanError as exc:
            problems.append(str(exc))
    if problems:
        print("\n".join(f"shipyard mr-note: {p}" for p in problems), file=sys.stderr)
        return 2
    body = note_body(
        args.stack,
        docs[args.plan],
        base=docs[args.base] if args.base else None,
        pipeline_url=os.environ.get("CI_PIPELINE_URL") or None,
        commit=os.environ.get("CI_COMMIT_SHORT_SHA") or None,
        full=args.full,
    )
    if target is None:  # --dry-run: the note exactly as it would be posted
        sys.stdout.write(body)
        return 0
    import gitlab

    from infra.review.mr_note import post_note

    try:
        action, note_id = post_note(target, args.stack, body)
    except gitlab.exceptions.GitlabError as exc:
        # One line, and never the token, whatever the server put in its answer.
        answer = " ".join(str(exc).split()).replace(target.token, "[masked]")[:300]
        print(
            f"shipyard mr-note: GitLab at {target.server_url} refused the request ({answer}); check that "
            f"{target.token_variable} may comment on merge request !{target.mr_iid} of project {target.project_id}",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:  # requests' connection errors and timeouts are OSErrors
        print(f"shipyard mr-note: cannot reach GitLab at {target.server_url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"{action} note {note_id}")
    return 0
