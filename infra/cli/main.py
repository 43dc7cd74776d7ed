"""The `shipyard` command. Kept apart from the Pulumi program: it drives the program, never the
other way round. Each command imports what it needs when it runs: `plan diff` and `mr-note` run
in CI jobs that should not wait for the Pulumi SDK to load."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
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
    if args.base:
        # Against a previous plan document: what would change, replacements first (P11).
        from infra.cli.diff import PlanError, diff_plans, load_plan, render_text

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
    render = render_markdown if args.format == "markdown" else render_text
    sys.stdout.write(render(diff, full=args.full))
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
        full=args.full,
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


def _table(title: str, columns: tuple[str, ...], rows: Iterable[Any]) -> Any:
    """Print dataclass rows as a table on stdout; returns the console for what follows."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in dataclasses.astuple(row)))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table, markup=False)
    return console


def bootstrap(args: argparse.Namespace) -> int:
    import boto3

    from infra.ops.bootstrap import Bootstrap, BootstrapError, login_lines, problems

    found = problems(args.bucket, args.region, args.kms_alias)
    if found:
        print("\n".join(f"shipyard bootstrap: {p}" for p in found), file=sys.stderr)
        return 2
    bootstrap = Bootstrap(boto3.Session(), args.bucket, args.region, args.kms_alias, fix=args.fix)
    outcomes, code = _aws_operation("bootstrap", bootstrap.run, BootstrapError)
    if code is not None:
        return code
    console = _table(f"state backend s3://{args.bucket} ({args.region})", ("item", "state", "detail"), outcomes)
    states = [o.state for o in outcomes]
    if all(state == "ok" for state in states):
        console.print("nothing to change: the bucket and the key are as they should be", markup=False)
    else:
        counts = {s: states.count(s) for s in ("created", "configured", "fixed", "missing") if s in states}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items()), markup=False, highlight=False)
    if "missing" in states:
        console.print("settings are missing: run again with --fix to set them", markup=False)
        return 1
    console.print("next:", markup=False)
    for line in login_lines(args.bucket, args.region, args.kms_alias):
        console.print(f"  {line}", markup=False, highlight=False)
    return 0


def _aws_operation(command: str, run: Callable[[], Any], failure: type[Exception]) -> tuple[Any, int | None]:
    """Run an AWS operation: (its result, None), or (None, exit code) with the reason on stderr:
    2 without credentials, 1 for the operation's own failure or an AWS refusal."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        return run(), None
    except (NoCredentialsError, NoRegionError) as exc:
        print(
            f"shipyard {command}: no AWS credentials ({exc}); set AWS_PROFILE or the AWS_* variables", file=sys.stderr
        )
        return None, 2
    except failure as exc:
        print(f"shipyard {command}: {exc}", file=sys.stderr)
        return None, 1
    except (ClientError, BotoCoreError) as exc:
        print(f"shipyard {command}: AWS refused: {exc}", file=sys.stderr)
        return None, 1


def ci_access(args: argparse.Namespace) -> int:
    import boto3

    from infra.ops.ci_access import CiAccess, CiAccessError, Request, problems, summary, variables

    request = Request(
        project=args.project,
        gitlab_url=args.gitlab_url,
        audience=args.audience,
        default_branch=args.default_branch,
        region=args.region,
        state_bucket=args.state_bucket,
        staging_key=args.staging_kms_key,
        prod_key=args.prod_kms_key,
        role_prefix=args.role_prefix,
        pulumi_project=args.pulumi_project,
        staging_stack=args.staging_stack,
        prod_stack=args.prod_stack,
    )
    found = problems(request)
    if found:
        print("\n".join(f"shipyard ci-access: {p}" for p in found), file=sys.stderr)
        return 2
    token = os.environ.get("GITLAB_TOKEN")
    run = CiAccess(boto3.Session(), request, fix=args.fix, gitlab=(request.gitlab_url, token) if token else None)
    outcomes, code = _aws_operation("ci-access", run.run, CiAccessError)
    if code is not None:
        return code
    console = _table(f"CI access for {request.project} ({request.provider})", ("item", "state", "detail"), outcomes)
    lines, code = summary(outcomes, request)
    for line in lines:
        console.print(line, markup=False, highlight=False)
    if code:
        return code
    _table(
        f"CI/CD variables of {request.project} (Settings > CI/CD > Variables; none masked: an ARN is no secret)",
        ("variable", "value", "protected", "environment scope"),
        variables(run.role_arns),
    )
    console.print(
        f"the jobs ask for their token with `id_tokens: AWS_ID_TOKEN: aud: {request.audience}`",
        markup=False,
        highlight=False,
    )
    return 0


def verify(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    from infra.cli.engine import Project, read_stack_config
    from infra.ops.verify import FAIL, Verify, VerifyError, stack_outputs
    from infra.settings import Settings, SettingsError

    # The stack file as the program reads it (short keys in the project namespace, too).
    config: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError, SettingsError):  # the region may still come from --region
        config = read_stack_config(Project.load(_project_root(Path.cwd())), args.stack).values
    region = args.region or config.get("aws:region")
    if not region:
        print(f"shipyard verify: no region: Pulumi.{args.stack}.yaml has no aws:region; pass --region", file=sys.stderr)
        return 2
    try:
        outputs = stack_outputs(args.stack, args.outputs)
    except VerifyError as exc:
        print(f"shipyard verify: {exc}", file=sys.stderr)
        return 2
    token = os.environ.get("GITLAB_TOKEN")
    gitlab_url = config.get("shipyard:gitlabUrl") or str(Settings.model_fields["gitlab_url"].default)
    gitlab = (gitlab_url, token) if token else None
    try:
        # After `pulumi up` an instance refresh may still be replacing the host: check again until
        # every check passes or --wait seconds are up.
        deadline = time.monotonic() + args.wait
        verifier = Verify(boto3.Session(), str(region), outputs)
        checks = verifier.run(gitlab)
        while any(c.result == FAIL for c in checks) and time.monotonic() + args.interval <= deadline:
            failing = ", ".join(c.name for c in checks if c.result == FAIL)
            print(f"shipyard verify: not yet: {failing}; checking again in {args.interval:g} s", file=sys.stderr)
            time.sleep(args.interval)
            checks = verifier.run(gitlab)
    except NoCredentialsError as exc:
        print(f"shipyard verify: no AWS credentials ({exc}); set AWS_PROFILE or the AWS_* variables", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"shipyard verify: cannot reach AWS: {exc}", file=sys.stderr)
        return 1
    console = _table(f"stack {args.stack}: live resources", ("check", "result", "detail"), checks)
    failed = [c for c in checks if c.result == FAIL]
    console.print(f"{len(failed)} of {len(checks)} checks failed" if failed else "every check passed", markup=False)
    return 1 if failed else 0


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
    parser.add_argument(
        "--full", action="store_true", help="show changed values whole, not around their first difference"
    )
    parser.set_defaults(func=plan_diff)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipyard", description="shipyard: GitLab → AWS runner → Heroku, on Pulumi.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="the offline plan of a stack: no credentials, no network, no Pulumi CLI")
    p.add_argument("--stack", "-s", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    p.add_argument("--config-file", help="use this stack settings file instead of Pulumi.<stack>.yaml")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print a `pulumi preview --json` document")
    shape.add_argument(
        "--base",
        metavar="OLD.json",
        help="print what would change against this earlier plan document instead, replacements first",
    )
    p.add_argument("--full", action="store_true", help="with --base: show changed values whole")
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
    n.add_argument("--full", action="store_true", help="changed values whole (the note's size cap still applies)")
    n.set_defaults(func=mr_note)
    pol = sub.add_parser("policy", help="the policy pack's validators")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    c = pol_sub.add_parser(
        "check",
        help="check a plan document (`shipyard plan --json` or `pulumi preview --json`); exit 1 on any violation",
    )
    c.add_argument("file", metavar="FILE.json")
    c.set_defaults(func=policy_check)
    b = sub.add_parser("bootstrap", help="create or check the S3 bucket and KMS key of a self-managed state backend")
    b.add_argument("--bucket", required=True, help="S3 bucket for the Pulumi state")
    b.add_argument("--region", required=True, help="AWS region of the bucket and the key")
    b.add_argument("--kms-alias", default="alias/shipyard-pulumi", help="alias of the secrets-provider key")
    b.add_argument("--fix", action="store_true", help="set what an existing bucket or key lacks")
    b.set_defaults(func=bootstrap)
    a = sub.add_parser(
        "ci-access",
        help="create or check the IAM OIDC provider for GitLab and the roles this repository's pipeline assumes "
        "with its ID tokens; prints the CI/CD variables to set",
    )
    a.add_argument("--project", required=True, help="GitLab project whose pipelines may assume the roles (group/name)")
    a.add_argument("--gitlab-url", default="https://gitlab.com", help="the GitLab instance, issuer of the ID tokens")
    a.add_argument("--audience", default="sts.amazonaws.com", help="the `aud` the jobs ask for in `id_tokens`")
    a.add_argument("--default-branch", default="main", help="the protected branch that deploys (default main)")
    a.add_argument("--region", required=True, help="AWS region of the state bucket, the keys and the stacks")
    a.add_argument("--state-bucket", required=True, help="S3 bucket of the Pulumi state (`shipyard bootstrap`)")
    a.add_argument("--staging-kms-key", required=True, help="staging's secrets-provider key: alias/NAME or ARN")
    a.add_argument("--prod-kms-key", required=True, help="production's secrets-provider key: alias/NAME or ARN")
    a.add_argument("--role-prefix", default="shipyard-ci-", help="role names are PREFIX + preview, deploy-staging, …")
    a.add_argument("--pulumi-project", default="shipyard", help="the Pulumi project name (Pulumi.yaml)")
    a.add_argument("--staging-stack", default="staging", help="the build stack, which production reads")
    a.add_argument("--prod-stack", default="prod", help="the production stack")
    a.add_argument("--fix", action="store_true", help="set what existing roles or the provider lack or do differently")
    a.set_defaults(func=ci_access)
    v = sub.add_parser("verify", help="check the live resources of a deployed stack; exit 1 on any failure")
    v.add_argument("--stack", "-s", required=True, help="stack name (its outputs, and aws:region from its file)")
    v.add_argument("--outputs", help="`pulumi stack output --json` saved in a file, instead of asking the Pulumi CLI")
    v.add_argument("--region", help="AWS region, instead of the stack file's aws:region")
    v.add_argument("--wait", type=float, default=0, help="seconds to keep checking while checks fail (default 0)")
    v.add_argument("--interval", type=float, default=15, help="seconds between two rounds of checks")
    v.set_defaults(func=verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `plan diff` compares two files and takes no stack: a parser of its own keeps `plan --stack` as it is.
    parser, rest = (build_diff_parser(), argv[2:]) if argv[:2] == ["plan", "diff"] else (build_parser(), argv)
    args = parser.parse_args(rest)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
