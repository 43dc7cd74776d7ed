"""The offline room's commands: `shipyard plan` (the program on the mock engine) and `shipyard plan
diff` (two plan documents compared). Each imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise FileNotFoundError("no Pulumi.yaml here or in any parent folder")


def plan(args: argparse.Namespace) -> int:
    from rich.console import Console

    from infra.offline.engine import Project, run_program
    from infra.offline.plan import render_diagnostics, render_table, to_preview_json
    from infra.review.policy_check import verdict
    from infra.settings import SettingsError

    try:
        project = Project.load(project_root(Path.cwd()))
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
    if args.base:
        # Against a previous plan document: what would change, replacements first (P11).
        from infra.offline.diff import PlanError, diff_plans, load_plan, render_text

        try:
            base = load_plan(args.base)
        except PlanError as exc:
            print(f"shipyard plan: --base {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(render_text(diff_plans(base, document), full=args.full))
        render_diagnostics(run, Console(stderr=True, width=200))
    elif args.json:
        json.dump(document, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        render_diagnostics(run, Console(stderr=True, width=200))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        render_table(run, console)
    # The policy pack's validators judge every plan, as they judge every real preview.
    violations, report = verdict(document)
    print(report, file=sys.stderr if args.json or args.base or violations else sys.stdout)
    return 1 if violations else 0


def plan_diff(args: argparse.Namespace) -> int:
    from infra.offline.diff import PlanError, diff_plans, load_plan, render_markdown, render_text

    try:
        base, head = load_plan(args.base), load_plan(args.head)
    except PlanError as exc:
        print(f"shipyard plan diff: {exc}", file=sys.stderr)
        return 2
    diff = diff_plans(base, head)
    render = render_markdown if args.format == "markdown" else render_text
    sys.stdout.write(render(diff, full=args.full))
    return 0
