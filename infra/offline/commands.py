"""The offline room's commands: `shipyard plan` (the program on the mock engine) and `shipyard plan
diff` (two plan documents compared). Each imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.offline.engine import Project


def project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise FileNotFoundError("no Pulumi.yaml here or in any parent folder")


def _did_you_mean(wanted: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(wanted, names, n=3)
    if not close:
        return ""
    choices = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f"; did you mean {choices}?"


def _missing_stack_file(project: Project, stack: str, config_file: str | None) -> str:
    """Why the stack's settings cannot be read, or "" when its file is there."""
    if config_file:
        # Anything that exists is read by the engine, which says what is wrong with it (a directory, unreadable).
        return "" if Path(config_file).exists() else f"--config-file {config_file}: no such file"
    if project.stack_file(stack).is_file():
        return ""
    stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project.root.glob("Pulumi.*.yaml"))
    return f"no stack file Pulumi.{stack}.yaml (stacks here: {', '.join(stacks)}){_did_you_mean(stack, stacks)}"


def shipyard_command(cwd: Path, root: Path) -> str:
    """How the user runs this shipyard from cwd: `shipyard` where PATH finds this one (an activated
    .venv), else the path of the environment's script (`.venv/bin/shipyard`), which `make setup`
    does not put on PATH."""
    script = Path(sys.executable).parent / "shipyard"
    on_path = shutil.which("shipyard")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "shipyard"
    return os.path.relpath(script, cwd) if script.is_relative_to(root) else str(script)


def next_steps(stack: str, config_file: str | None, root: Path, cwd: Path, violations: int, width: int) -> list[str]:
    """The last lines of a plan: what to run next, as the user can paste it where they are."""
    given = f" --config-file {config_file}" if config_file else ""
    replan = f"{shipyard_command(cwd, root)} plan -s {stack}{given}"
    if violations:
        what = "the policy violation" if violations == 1 else f"the {violations} policy violations"
        return [f"next: fix {what}, then: {replan}"]
    # `pulumi -C` runs from the project, so paths in the command are relative to it.
    into = "" if cwd == root else f" -C {os.path.relpath(root, cwd)}"
    if config_file:
        path = (cwd / config_file).resolve()
        given = f" --config-file {path.relative_to(root) if path.is_relative_to(root) else path}"
    up = f"next: pulumi up{into} -s {stack}{given} --policy-pack policy"
    as_json = f"the same plan as JSON: {replan} --json"
    one_line = f"{up}   ({as_json})"
    return [one_line] if len(one_line) <= width else [as_json, up]


def plan(args: argparse.Namespace) -> int:
    from rich.console import Console

    from infra.offline.engine import Project, run_program
    from infra.offline.plan import (
        matching,
        render_diagnostics,
        render_plan,
        render_resources,
        resource_name,
        to_preview_json,
        wrap,
    )
    from infra.review.policy_check import verdict
    from infra.review.redaction import redact_credentials
    from infra.settings import SettingsError

    if args.full and args.json:
        print("shipyard plan: --full does not go with --json: the document holds every input whole", file=sys.stderr)
        return 2
    if args.full and args.cost:
        print("shipyard plan: --full does not go with --cost: the cost table has no inputs to shorten", file=sys.stderr)
        return 2
    try:
        project = Project.load(project_root(Path.cwd()))
    except FileNotFoundError as exc:
        print(f"shipyard plan: {exc}; run it inside the shipyard repository", file=sys.stderr)
        return 2
    # Named in messages exactly as the user gave it, or as the stack's file in the project.
    shown_source = args.config_file or f"Pulumi.{args.stack}.yaml"
    config_file = Path(args.config_file).resolve() if args.config_file else None
    missing = _missing_stack_file(project, args.stack, args.config_file)
    if missing:
        print(f"shipyard plan: {missing}", file=sys.stderr)
        return 2
    try:
        run = run_program(project, args.stack, config_file=config_file, shown_as=args.config_file)
    except SettingsError as exc:
        print(f"shipyard plan: stack {args.stack} ({shown_source}): {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"shipyard plan: cannot read {shown_source}: {exc.strerror}", file=sys.stderr)
        return 2
    document = to_preview_json(run)
    # What people read has credential-looking values redacted; the policies judge the real plan.
    shown = redact_credentials(document)
    violations, report = verdict(document)
    # The terminal's width, or COLUMNS; piped, 100 columns of plain text without colours.
    width = shutil.get_terminal_size((100, 24)).columns
    console = Console(
        width=width, color_system="auto" if sys.stdout.isatty() else None, markup=False, emoji=False, highlight=False
    )
    errors = Console(stderr=True, width=width, color_system=None, markup=False, emoji=False, highlight=False)
    if args.base:
        # Against a previous plan document: what would change, replacements first (P11).
        from infra.offline.diff import PlanError, diff_plans, load_plan, render_text

        try:
            base = load_plan(args.base)
        except PlanError as exc:
            print(f"shipyard plan: --base {exc}", file=sys.stderr)
            return 2
        # The diff finds changes in the documents as they are and shows them redacted.
        sys.stdout.write(render_text(diff_plans(base, document), full=args.full))
        render_diagnostics(run, errors)
    elif args.json:
        json.dump(shown, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        render_diagnostics(run, errors)
    elif args.cost:
        from infra.review.cost import cost_of_plan, render_cost

        # The region is the plan's own: its ARNs carry the stack's aws:region.
        console.print(
            "\n".join(wrap("\n".join(render_cost(cost_of_plan(document), args.stack)), width)), soft_wrap=True
        )
        render_diagnostics(run, errors)
    elif args.show:
        found = matching(shown, args.show)
        if not found:
            names = sorted({resource_name(step["urn"]) for step in shown["steps"]})
            message = f"no resource {args.show} in stack {args.stack}{_did_you_mean(args.show, names)}"
            errors.print("\n".join(wrap(f"shipyard plan: {message}\nresources: {', '.join(names)}", width)))
            return 2
        render_resources(found, console)
    else:
        cut = render_plan(shown, console, full=args.full)
        if cut:
            console.print("shortened values end in ...: --show NAME or --full prints them whole", soft_wrap=True)
    # The policy pack's validators judge every plan, as they judge every real preview.
    quiet = args.json or args.base or args.show
    (errors if quiet or violations else console).print("\n".join(wrap(report, width)), soft_wrap=True)
    if not quiet:
        steps = next_steps(args.stack, args.config_file, project.root, Path.cwd(), len(violations), width)
        console.print("\n".join(steps), soft_wrap=True)
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
