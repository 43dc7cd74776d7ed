"""The `shipyard` command. Kept apart from the Pulumi program: it drives the program, never the
other way round."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.settings import SettingsError


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise FileNotFoundError("no Pulumi.yaml here or in any parent folder")


def plan(args: argparse.Namespace) -> int:
    from rich.console import Console

    from infra.cli.engine import Project, run_program
    from infra.cli.plan import render_diagnostics, render_table, to_preview_json

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
    if args.json:
        json.dump(to_preview_json(run), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        render_diagnostics(run, Console(stderr=True, width=200))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        render_table(run, console)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipyard", description="shipyard: GitLab → AWS runner → Heroku, on Pulumi.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="the offline plan of a stack: no credentials, no network, no Pulumi CLI")
    p.add_argument("--stack", "-s", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    p.add_argument("--config-file", help="use this stack settings file instead of Pulumi.<stack>.yaml")
    p.add_argument("--json", action="store_true", help="print a `pulumi preview --json` document")
    p.set_defaults(func=plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
