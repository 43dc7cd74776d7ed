"""The `shipyard` command. Kept apart from the Pulumi program: it drives the program, never the
other way round. Each command imports what it needs when it runs: `plan diff` and `mr-note` run
in CI jobs that should not wait for the Pulumi SDK to load."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise FileNotFoundError("no Pulumi.yaml here or in any parent folder")


def plan(args: argparse.Namespace) -> int:
    from rich.console import Console

    from infra.cli.engine import Project, run_program
    from infra.cli.plan import render_diagnostics, render_table, to_preview_json
    from infra.cli.policy_check import verdict
    from infra.settings import SettingsError

    try:
        project = Project.load(_project_root(Path.cwd()))
    except FileNotFoundError as exc:
        print(f"shipyard plan: {exc}; run it inside the shipyard repository", file=sys.stderr)
        return 2
    config_file = Path(args.config_file).resolve() if args.config_file else None
    source = config_file or project.stack_file(args.stack)
    if not source.exists():
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project.root.glob("Pulumi.*.yaml"))
        print(f"shipyard plan: no stack file {source.name}; stacks here: {', '.join(stacks)}", file=sys.stderr)
        return 2
    try:
        run = run_program(project, args.stack, config_file=config_file)
    except SettingsError as exc:
        print(f"shipyard plan: stack {args.stack} ({source.name}): {exc}", file=sys.stderr)
        return 2
    document = to_preview_json(run)
    if args.json:
        json.dump(document, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        render_diagnostics(run, Console(stderr=True, width=200))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        render_table(run, console)
    # The policy pack's validators judge every plan, as they judge every real preview.
    violations, report = verdict(document)
    print(report, file=sys.stderr if args.json or violations else sys.stdout)
    return 1 if violations else 0


def policy_check(args: argparse.Namespace) -> int:
    from infra.cli.diff import PlanError, load_plan
    from infra.cli.policy_check import verdict

    try:
        document = load_plan(args.file)
    except PlanError as exc:
        print(f"shipyard policy check: {exc}", file=sys.stderr)
        return 2
    violations, report = verdict(document)
    print(report)
    return 1 if violations else 0


def plan_diff(args: argparse.Namespace) -> int:
    from infra.cli.diff import PlanError, diff_plans, load_plan, render_markdown, render_text

    try:
        base, head = load_plan(args.base), load_plan(args.head)
    except PlanError as exc:
        print(f"shipyard plan diff: {exc}", file=sys.stderr)
        return 2
    diff = diff_plans(base, head)
    sys.stdout.write(render_markdown(diff) if args.format == "markdown" else render_text(diff))
    return 0


def mr_note(args: argparse.Namespace) -> int:
    import gitlab

    from infra.cli.diff import PlanError, load_plan
    from infra.cli.mr_note import MissingVariables, Target, note_body, post_note

    problems: list[str] = []
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
    )
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


def _stack_name(value: str) -> str:
    from infra.cli.mr_note import STACK_NAME

    if not STACK_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a stack name (letters, digits, _ . - /)")
    return value


def build_diff_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipyard plan diff",
        description="What changed between two plan documents (`shipyard plan --json` or `pulumi preview --json`).",
    )
    parser.add_argument("base", metavar="BASE", help="the plan before, e.g. of the target branch")
    parser.add_argument("head", metavar="HEAD", help="the plan after, e.g. of the merge request")
    parser.add_argument("--format", choices=("text", "markdown"), default="text", help="plain lines or a table")
    parser.set_defaults(func=plan_diff)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipyard", description="shipyard: GitLab → AWS runner → Heroku, on Pulumi.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="the offline plan of a stack: no credentials, no network, no Pulumi CLI")
    p.add_argument("--stack", "-s", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    p.add_argument("--config-file", help="use this stack settings file instead of Pulumi.<stack>.yaml")
    p.add_argument("--json", action="store_true", help="print a `pulumi preview --json` document")
    p.epilog = "`shipyard plan diff BASE HEAD` compares two plan documents (see `shipyard plan diff --help`)."
    p.set_defaults(func=plan)
    n = sub.add_parser(
        "mr-note",
        help="post a plan (or a plan diff) as a note on the current GitLab merge request, "
        "editing the note posted before; GitLab and the token come from CI/CD variables",
    )
    n.add_argument("--stack", "-s", required=True, type=_stack_name, help="stack the plan is of; one note per stack")
    n.add_argument("--plan", required=True, help="plan document (`shipyard plan --json` or `pulumi preview --json`)")
    n.add_argument("--base", help="base plan document: the note shows the diff from it to --plan")
    n.set_defaults(func=mr_note)
    pol = sub.add_parser("policy", help="the policy pack's validators")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    c = pol_sub.add_parser(
        "check",
        help="check a plan document (`shipyard plan --json` or `pulumi preview --json`); exit 1 on any violation",
    )
    c.add_argument("file", metavar="FILE.json")
    c.set_defaults(func=policy_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `plan diff` compares two files and takes no stack: a parser of its own keeps `plan --stack` as it is.
    parser, rest = (build_diff_parser(), argv[2:]) if argv[:2] == ["plan", "diff"] else (build_parser(), argv)
    args = parser.parse_args(rest)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
