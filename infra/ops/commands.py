"""The operations room's commands: `shipyard bootstrap`, `ci-access` and `verify`, each a table of
what it found or did, over boto3 (and python-gitlab where a token is set)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infra.offline.commands import project_root


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

    from infra.ops.bootstrap import DEFAULT_KMS_ALIASES, Bootstrap, BootstrapError, login_lines, problems

    aliases = args.kms_alias or list(DEFAULT_KMS_ALIASES)
    found = problems(args.bucket, args.region, aliases)
    if found:
        print("\n".join(f"shipyard bootstrap: {p}" for p in found), file=sys.stderr)
        return 2
    bootstrap = Bootstrap(boto3.Session(), args.bucket, args.region, aliases, fix=args.fix)
    outcomes, code = _aws_operation("bootstrap", bootstrap.run, BootstrapError)
    if code is not None:
        return code
    console = _table(f"state backend s3://{args.bucket} ({args.region})", ("item", "state", "detail"), outcomes)
    states = [o.state for o in outcomes]
    if all(state == "ok" for state in states):
        console.print("nothing to change: the bucket and the keys are as they should be", markup=False)
    else:
        counts = {s: states.count(s) for s in ("created", "configured", "fixed", "missing") if s in states}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items()), markup=False, highlight=False)
    if "missing" in states:
        console.print("settings are missing: run again with --fix to set them", markup=False)
        return 1
    console.print("next:", markup=False)
    for line in login_lines(args.bucket, args.region, aliases):
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

    from infra.offline.engine import Project, read_stack_config
    from infra.ops.verify import (
        FAIL,
        Verify,
        VerifyError,
        app_lock_checks,
        review_key_checks,
        stack_outputs,
    )
    from infra.settings import Settings, SettingsError

    # The stack file as the program reads it (short keys in the project namespace, too).
    config: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError, SettingsError):  # the region may still come from --region
        config = read_stack_config(Project.load(project_root(Path.cwd())), args.stack).values
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
        review_key = os.environ.get("HEROKU_REVIEW_API_KEY")
        operator_key = os.environ.get("HEROKU_API_KEY")  # the operator's: reads the apps' team lock
        # Who may reach the Heroku apps is not something a host coming up changes: asked once, and
        # never waited for.
        heroku = review_key_checks(outputs, review_key, args.production_app) + app_lock_checks(
            outputs, operator_key, args.production_app
        )
        checks = verifier.run(gitlab)
        while any(c.result == FAIL for c in checks) and time.monotonic() + args.interval <= deadline:
            failing = ", ".join(c.name for c in checks if c.result == FAIL)
            print(f"shipyard verify: not yet: {failing}; checking again in {args.interval:g} s", file=sys.stderr)
            time.sleep(args.interval)
            checks = verifier.run(gitlab)
        checks += heroku
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
