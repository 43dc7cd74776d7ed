"""The `shipyard` command: its arguments, and the room each command lives in. Kept apart from the
Pulumi program: it drives the program, never the other way round. The offline engine (plan,
diff) is in infra/offline, the review tooling (MR note, policy check) in infra/review, the AWS
operations (bootstrap, verify, CI access) in infra/ops. Each command imports what it needs when it
runs: `plan diff` and `mr-note` run in CI jobs that should not wait for the Pulumi SDK to load."""

from __future__ import annotations

import argparse
import gc
import sys

from infra.offline.commands import plan, plan_diff
from infra.ops.commands import bootstrap, ci_access, verify
from infra.review.commands import mr_note, policy_check


def _stack_name(value: str) -> str:
    from infra.review.mr_note import STACK_NAME

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


class _Version(argparse.Action):
    """`--version`: the installed package's version, looked up only when asked (the lookup imports
    more than a plan should wait for)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"shipyard {version('shipyard')}")
        except PackageNotFoundError:
            parser.exit(2, "shipyard: not installed as a package, so it has no version (run `make setup`)\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipyard", description="shipyard: GitLab → AWS runner → Heroku, on Pulumi.")
    parser.add_argument("--version", action=_Version, help="print shipyard's version and exit")
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
    shape.add_argument(
        "--show",
        metavar="NAME",
        help="print the complete inputs of one resource: its name, or the end of its URN (TYPE::NAME)",
    )
    shape.add_argument(
        "--cost",
        action="store_true",
        help="print the stack's monthly cost instead (runner hosts, worker fleets' bounds, Heroku dynos)",
    )
    p.add_argument(
        "--full", action="store_true", help="print every resource's complete inputs; with --base: changed values whole"
    )
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
    n.add_argument("--dry-run", action="store_true", help="print the note instead of posting it; needs no GitLab")
    n.set_defaults(func=mr_note)
    pol = sub.add_parser("policy", help="the policy pack's validators")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    c = pol_sub.add_parser(
        "check",
        help="check a plan document (`shipyard plan --json` or `pulumi preview --json`); exit 1 on any violation",
    )
    c.add_argument("file", metavar="FILE.json")
    c.set_defaults(func=policy_check)
    b = sub.add_parser(
        "bootstrap", help="create or check the S3 bucket and the KMS keys of a self-managed state backend"
    )
    b.add_argument("--bucket", required=True, help="S3 bucket for the Pulumi state")
    b.add_argument("--region", required=True, help="AWS region of the bucket and the keys")
    # No default in argparse: `append` would add the given aliases to it rather than replace it.
    b.add_argument(
        "--kms-alias",
        action="append",
        metavar="ALIAS",
        help="alias of a secrets-provider key, one per stack; repeat it for each. The first key also encrypts "
        "the bucket. Default: alias/shipyard-staging and alias/shipyard-prod",
    )
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
    v.add_argument(
        "--production-app",
        help=(
            "production's Heroku app, on which HEROKU_REVIEW_API_KEY must be refused and which must be locked "
            "(build stack with review apps)"
        ),
    )
    v.set_defaults(func=verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A short-lived command that imports large SDKs and runs a program allocating tens of thousands of
    # short-lived objects: at CPython's default threshold (700) the collector would walk that heap
    # again and again. Nothing here depends on when garbage is collected.
    gc.set_threshold(50_000, 50, 50)
    argv = sys.argv[1:] if argv is None else argv
    # `plan diff` compares two files and takes no stack: a parser of its own keeps `plan --stack` as it is.
    parser, rest = (build_diff_parser(), argv[2:]) if argv[:2] == ["plan", "diff"] else (build_parser(), argv)
    args = parser.parse_args(rest)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
