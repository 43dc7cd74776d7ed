"""`shipyard ci-access` against moto: from nothing, twice, a trust policy loosened by hand
and a policy attached by hand (reported, fixed only with --fix), denied access, no credentials, bad
arguments; the GitLab check of the protected branch against a local fake. And who may assume what:
each role's trust policy as IAM stores it, evaluated against the ID tokens of GitLab's pipelines."""

from __future__ import annotations

import json
import re
import shlex
from email.message import Message
from typing import Any

import boto3
import pytest
import yaml

from infra.cli.main import build_parser, main
from infra.facts import load
from infra.ops.ci_access import ROLES, CiAccess, Outcome, Request, sub, summary, variables
from tests.conftest import ROOT
from tests.fake_api import serve
from tests.moto_aws import REGION, Aws, act_as_user
from tests.ops.iam_eval import allows, request_context

PROJECT = "acme/shipyard"
BUCKET = "acme-pulumi-state"
STAGING_KEY, PROD_KEY = "alias/shipyard-staging", "alias/shipyard-prod"
ROLE_NAMES = [f"shipyard-ci-{role.suffix}" for role in ROLES]
FACTS = load("gitlab-oidc")


REQUIRED = ("--project", PROJECT, "--region", REGION, "--state-bucket", BUCKET,
            "--staging-kms-key", STAGING_KEY, "--prod-kms-key", PROD_KEY)  # fmt: skip


def ci_access(capsys: pytest.CaptureFixture[str], *extra: str, region: str = REGION) -> tuple[int, str, str]:
    code = main(["ci-access", *REQUIRED, "--region", region, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def row(out: str, item: str) -> str:
    return next(line for line in out.splitlines() if item in line)


def make_backend(aws: Aws, region: str = REGION) -> None:
    """The state backend as `shipyard bootstrap` leaves it, in short: the bucket encrypted with
    staging's secrets key (the README's first `--kms-alias`), and a second key for production."""
    kms: Any = aws.client("kms", region)
    for alias in (STAGING_KEY, PROD_KEY):
        kms.create_alias(AliasName=alias, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    s3: Any = aws.client("s3", region)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": region})
    rule = {
        "ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": key_arn(aws, STAGING_KEY, region),
        }
    }
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [rule]})


@pytest.fixture
def backend(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    make_backend(aws)
    return aws


def key_arn(aws: Aws, alias: str, region: str = REGION) -> str:
    return str(aws.client("kms", region).describe_key(KeyId=alias)["KeyMetadata"]["Arn"])


def role_documents(aws: Aws, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A role's trust policy and inline policy, as IAM stores them."""
    iam: Any = aws.client("iam")
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    policy = iam.get_role_policy(RoleName=name, PolicyName="shipyard-ci-access")["PolicyDocument"]
    return trust, policy


# --- who may assume what ------------------------------------------------------------------------------


def tokens() -> dict[str, tuple[str, dict[str, list[str]]]]:
    """Sample ID tokens of the facts, plus two the facts' format implies: per token, the provider its
    issuer names and the condition keys IAM fills from it."""
    found = {}
    for name, sample in FACTS["samples"].items():
        claims = {**sample["claims"], "aud": FACTS["aws"]["default_audience"], "iss": "https://gitlab.com"}
        found[name] = claims
    found["other-audience"] = {**found["default-branch-push"], "aud": "https://vault.example.com"}
    found["other-gitlab"] = {**found["default-branch-push"], "iss": "https://gitlab.example.com"}
    keys = FACTS["aws"]["condition_keys"]
    result = {}
    for name, claims in found.items():
        claims["sub"] = sub(claims["project_path"], claims["ref_type"], claims["ref"])
        issuer = claims["iss"].removeprefix("https://")
        result[name] = (issuer, request_context(issuer, claims, keys))
    return result


def who_can_assume(aws: Aws) -> dict[str, list[str]]:
    """Token → the roles whose trust policy, read back from IAM, lets it in."""
    account = aws.client("sts").get_caller_identity()["Account"]
    trusts = {name: role_documents(aws, name)[0] for name in ROLE_NAMES}
    return {
        token: [
            name.removeprefix("shipyard-ci-")
            for name in ROLE_NAMES
            if allows(trusts[name], f"arn:aws:iam::{account}:oidc-provider/{issuer}", context)
        ]
        for token, (issuer, context) in tokens().items()
    }


# guards G8: only the default branch's pipelines reach the roles that deploy or read production
WHO_CAN_ASSUME = {
    "merge-request": ["preview"],
    "default-branch-push": ["preview", "deploy-staging", "deploy-prod", "drift"],
    "tag": [],
    "scheduled": ["preview", "deploy-staging", "deploy-prod", "drift"],
    "other-project": [],
    "unprotected-branch": ["preview"],
    "fork-merge-request": [],
    "other-audience": [],
    "other-gitlab": [],
}


def test_from_nothing_the_provider_and_four_roles_are_created_and_the_variables_printed(
    backend: Aws, capsys: Any
) -> None:
    code, out, err = ci_access(capsys)
    assert code == 0, err
    iam: Any = backend.client("iam")
    [provider] = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert provider["Arn"].endswith(":oidc-provider/gitlab.com")
    found = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider["Arn"])
    assert found["ClientIDList"] == ["sts.amazonaws.com"]
    assert {"Key": "managed-by", "Value": "shipyard-ci-access"} in found["Tags"]
    arns = {}
    for name in ROLE_NAMES:
        role = iam.get_role(RoleName=name)["Role"]
        assert role["MaxSessionDuration"] == 3600
        assert {"Key": "gitlab-project", "Value": PROJECT} in role["Tags"]
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        arns[name] = role["Arn"]
    assert who_can_assume(backend) == WHO_CAN_ASSUME

    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert f"PREVIEW_AWS_ROLE_ARN {arns['shipyard-ci-preview']} no *" in lines
    assert f"DEPLOY_AWS_ROLE_ARN {arns['shipyard-ci-deploy-staging']} yes infra/staging" in lines
    assert f"DEPLOY_AWS_ROLE_ARN {arns['shipyard-ci-deploy-prod']} yes infra/production" in lines
    assert f"DRIFT_AWS_ROLE_ARN {arns['shipyard-ci-drift']} yes *" in lines
    assert "id_tokens: AWS_ID_TOKEN: aud: sts.amazonaws.com" in out
    assert "not checked: that GitLab protects main" in out


def test_a_second_run_changes_nothing_and_says_so(backend: Aws, capsys: Any) -> None:
    assert ci_access(capsys)[0] == 0
    code, out, _ = ci_access(capsys)
    assert code == 0
    assert "nothing to change" in out
    assert " created" not in out and " configured" not in out and " fixed" not in out
    assert len(backend.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]) == 1


def test_a_trust_policy_loosened_by_hand_is_reported_and_restored_only_with_fix(backend: Aws, capsys: Any) -> None:
    assert ci_access(capsys)[0] == 0
    iam: Any = backend.client("iam")
    trust, _ = role_documents(backend, "shipyard-ci-deploy-prod")
    # Someone lets every branch deploy production: a wildcard where the default branch was.
    condition = trust["Statement"][0]["Condition"]
    condition["StringLike"] = {"gitlab.com:sub": f"project_path:{PROJECT}:ref_type:branch:ref:*"}
    del condition["StringEquals"]["gitlab.com:sub"]
    iam.update_assume_role_policy(RoleName="shipyard-ci-deploy-prod", PolicyDocument=json.dumps(trust))
    assert "deploy-prod" in who_can_assume(backend)["unprotected-branch"]

    code, out, _ = ci_access(capsys)
    assert code == 1
    assert "missing" in row(out, "shipyard-ci-deploy-prod trust")
    assert "run again with --fix" in out
    assert "DEPLOY_AWS_ROLE_ARN" not in out  # no variables while a role is wrong
    assert "deploy-prod" in who_can_assume(backend)["unprotected-branch"]  # reported, not changed

    code, out, _ = ci_access(capsys, "--fix")
    assert code == 0
    assert "fixed" in row(out, "shipyard-ci-deploy-prod trust")
    assert who_can_assume(backend) == WHO_CAN_ASSUME
    assert "nothing to change" in ci_access(capsys)[1]


def test_a_policy_attached_by_hand_and_a_longer_session_are_reported_and_undone_with_fix(
    backend: Aws, capsys: Any
) -> None:
    assert ci_access(capsys)[0] == 0
    iam: Any = backend.client("iam")
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    admin = iam.create_policy(PolicyName="Everything", PolicyDocument=json.dumps(everything))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="shipyard-ci-preview", PolicyArn=admin)
    iam.put_role_policy(RoleName="shipyard-ci-preview", PolicyName="extra", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    ))  # fmt: skip
    iam.update_role(RoleName="shipyard-ci-drift", MaxSessionDuration=43200)

    code, out, _ = ci_access(capsys)
    assert code == 1
    assert "missing" in row(out, "shipyard-ci-preview no other policies")
    assert "Everything" in out and "extra" in out
    assert "missing" in row(out, "shipyard-ci-drift session")

    assert ci_access(capsys, "--fix")[0] == 0
    assert iam.list_attached_role_policies(RoleName="shipyard-ci-preview")["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName="shipyard-ci-preview")["PolicyNames"] == ["shipyard-ci-access"]
    assert iam.get_role(RoleName="shipyard-ci-drift")["Role"]["MaxSessionDuration"] == 3600


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_only_protected_roles_reach_production_and_preview_reads_staging_only(backend: Aws, capsys: Any) -> None:
    assert ci_access(capsys)[0] == 0
    staging_key, prod_key = key_arn(backend, STAGING_KEY), key_arn(backend, PROD_KEY)
    protected = {f"shipyard-ci-{role.suffix}": role.protected_ref for role in ROLES}
    for name in ROLE_NAMES:
        _, policy = role_documents(backend, name)
        for statement in policy["Statement"]:
            resources = as_list(statement["Resource"])
            if statement["Sid"] == "StateBucketKey":
                # the bucket's key only through S3, for this bucket: not a way to production's secrets
                assert statement["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{REGION}.amazonaws.com"
                continue
            # guards P1: production's key, state, parameters or runner group only for a protected ref
            if any(r == prod_key or "shipyard/prod" in r or "shipyard-prod-" in r for r in resources):
                assert protected[name], (name, statement["Sid"])
            actions = as_list(statement["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, statement["Sid"])
        assert len(json.dumps(policy, separators=(",", ":"))) < 10240, f"{name}: over IAM's inline policy size"

    _, preview = role_documents(backend, "shipyard-ci-preview")
    statements = {s["Sid"]: s for s in preview["Statement"]}
    assert as_list(statements["StackSecrets"]["Resource"]) == [staging_key]
    assert all("/stacks/shipyard/staging." in r or r.endswith("meta.yaml") for r in statements["ReadState"]["Resource"])
    assert "WriteState" not in statements
    assert "ssm:GetParameter" not in json.dumps(preview)  # no runner token, no SecureString
    _, deploy_prod = role_documents(backend, "shipyard-ci-deploy-prod")
    writes = next(s for s in deploy_prod["Statement"] if s["Sid"] == "WriteState")["Resource"]
    assert all("/prod" in w for w in writes)
    # P10: `pulumi up` takes the DIY backend's lock; no read-only role may write one
    assert f"arn:aws:s3:::{BUCKET}/.pulumi/locks/organization/shipyard/prod/*" in writes


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_policies_name_the_partition_of_the_region(
    aws: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch, region: str, partition: str
) -> None:
    # guards P9: `arn:aws:` names nothing in China or GovCloud
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    make_backend(aws, region)
    code, _, err = ci_access(capsys, region=region)
    assert code == 0, err
    iam: Any = aws.client("iam", region)
    trust = iam.get_role(RoleName="shipyard-ci-deploy-staging")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"]["Federated"].startswith(f"arn:{partition}:iam::")
    policy = iam.get_role_policy(RoleName="shipyard-ci-deploy-staging", PolicyName="shipyard-ci-access")
    resources = [
        r
        for s in policy["PolicyDocument"]["Statement"]
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        if r != "*"
    ]
    assert resources and all(r.startswith(f"arn:{partition}:") for r in resources)


# --- the variables, as .gitlab-ci.yml reads them ---------------------------------------------------


def role_jobs() -> list[tuple[str, str, str | None, bool]]:
    """(job, role variable, environment, runs in merge-request pipelines) for each job of
    .gitlab-ci.yml that assumes a role, with `extends` resolved."""
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())

    def resolved(name: str) -> dict[str, Any]:
        job = ci[name]
        merged: dict[str, Any] = {}
        parents = job.get("extends", [])
        for parent in [parents] if isinstance(parents, str) else parents:
            base = resolved(parent)
            merged = {**merged, **base, "variables": {**merged.get("variables", {}), **base.get("variables", {})}}
        return {**merged, **job, "variables": {**merged.get("variables", {}), **job.get("variables", {})}}

    found = []
    for name in ci:
        if name.startswith(".") or not isinstance(ci[name], dict) or "script" not in resolved(name):
            continue
        job = resolved(name)
        role = str(job["variables"].get("AWS_ROLE_ARN", ""))
        if role:
            in_mr = any("merge_request_event" in str(rule.get("if", "")) and rule.get("when") != "never"
                        for rule in job.get("rules", []))  # fmt: skip
            environment = (job.get("environment") or {}).get("name")
            found.append((name, role.removeprefix("$"), environment, in_mr))
    return found


def test_the_printed_variables_are_the_ones_the_pipeline_reads() -> None:
    printed = variables({role.suffix: f"arn-of-{role.suffix}" for role in ROLES})
    jobs = role_jobs()
    assert {job for job, *_ in jobs} >= {"preview", "deploy-staging", "deploy-prod", "drift", "preview-prod"}
    for job, variable, environment, in_mr in jobs:
        # An environment-scoped variable reaches only jobs of that environment (G5).
        [match] = [v for v in printed if v.name == variable and v.environment in (environment, "*")]
        # A protected variable is empty outside protected refs (G4): merge requests need an unprotected one,
        # and every other role variable is protected.
        assert match.protected == ("no" if in_mr else "yes"), job
    assert {v.name for v in printed} == {variable for _, variable, _, _ in jobs}
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    default = build_parser().parse_args(["ci-access", *REQUIRED]).audience
    assert ci[".aws-oidc"]["id_tokens"]["AWS_ID_TOKEN"]["aud"] == default == FACTS["aws"]["default_audience"]


# --- errors -------------------------------------------------------------------------------------


def test_bad_arguments_are_all_named_before_any_call(aws: Aws, capsys: Any) -> None:
    code = main(
        [
            "ci-access",
            "--project", "acme/*",
            "--gitlab-url", "http://gitlab.example.com:8080/",
            "--audience", "sts amazonaws",
            "--default-branch", "release-*",
            "--region", "europe",
            "--state-bucket", "Acme_State",
            "--staging-kms-key", "alias/same",
            "--prod-kms-key", "alias/same",
            "--role-prefix", "x" * 60,
        ]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2
    for flag in (
        "--project 'acme/*'",
        "--gitlab-url 'http://gitlab.example.com:8080/'",
        "--audience 'sts amazonaws'",
        "--default-branch 'release-*'",
        "--region 'europe'",
        "--state-bucket 'Acme_State'",
        "--role-prefix",
        "--staging-kms-key and --prod-kms-key are both 'alias/same'",
    ):
        assert flag in err
    assert aws.client("iam").list_roles()["Roles"] == []  # nothing created


def test_no_credentials_is_a_clear_error(backend: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = ci_access(capsys)
    assert code == 2
    assert "no AWS credentials" in err and "Traceback" not in err


def test_denied_access_names_the_missing_permission_and_creates_nothing(
    backend: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings

    iam = act_as_user(backend, monkeypatch, ["sts:GetCallerIdentity", "kms:*", "s3:*"])  # no IAM at all

    code, _, err = ci_access(capsys)
    assert code == 1
    assert (
        "access denied: reading the OIDC provider needs iam:GetOpenIDConnectProvider "
        "for arn:aws:iam::123456789012:user/ci" in err
    )
    assert "Traceback" not in err
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == []


def test_keys_and_bucket_must_exist_and_differ(backend: Aws, capsys: Any) -> None:
    code, _, err = ci_access(capsys, "--prod-kms-key", "alias/nowhere")
    assert code == 1
    assert (
        "--prod-kms-key alias/nowhere: no such key in eu-west-1; create it with `.venv/bin/shipyard bootstrap "
        f"--bucket {BUCKET} --region {REGION} --kms-alias {STAGING_KEY} --kms-alias alias/nowhere`"
    ) in err
    missing_arn = f"arn:aws:kms:{REGION}:123456789012:key/00000000-0000-0000-0000-000000000000"
    code, _, err = ci_access(capsys, "--prod-kms-key", missing_arn)
    assert code == 1
    assert err.strip() == f"shipyard ci-access: --prod-kms-key {missing_arn}: no such key in {REGION}"
    kms: Any = backend.client("kms")
    kms.create_alias(AliasName="alias/also-staging", TargetKeyId=key_arn(backend, STAGING_KEY))
    code, _, err = ci_access(capsys, "--prod-kms-key", "alias/also-staging")
    assert code == 1
    assert "name the same key" in err
    code, _, err = ci_access(capsys, "--state-bucket", "nobodys-bucket")
    assert code == 1
    assert (
        "--state-bucket nobodys-bucket: no such bucket; create it with `.venv/bin/shipyard bootstrap "
        f"--bucket nobodys-bucket --region {REGION} --kms-alias {STAGING_KEY} --kms-alias {PROD_KEY}`"
    ) in err
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": missing_arn}}
    backend.client("s3").put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [rule]})
    code, _, err = ci_access(capsys)
    assert code == 1
    assert (
        f"--state-bucket {BUCKET}: its default encryption names the key {missing_arn}, which does not exist in "
        f"{REGION}; `.venv/bin/shipyard bootstrap --bucket {BUCKET} --region {REGION} --kms-alias {STAGING_KEY} "
        "--fix` sets it to staging's key"
    ) in err
    assert backend.client("iam").list_roles()["Roles"] == []


@pytest.mark.parametrize(
    "bucket_alias",
    [
        STAGING_KEY,  # the bucket of the README's bootstrap run, before production's key
        "alias/shipyard-pulumi",  # the bucket's one key of earlier bootstrap versions
    ],
)
def test_the_bootstrap_run_a_missing_key_asks_for_creates_it_and_keeps_the_bucket_key(
    aws: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch, bucket_alias: str
) -> None:
    # Bootstrap encrypts the bucket with its first alias's key: the command must name the bucket's
    # present key first, or it would report the bucket's encryption missing, and --fix move it.
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    assert main(["bootstrap", "--bucket", BUCKET, "--region", REGION, "--kms-alias", bucket_alias]) == 0
    bucket_key = bucket_encryption_key(aws)
    code, _, err = ci_access(capsys)
    assert code == 1
    [command] = re.findall(r"create (?:it|them) with `([^`]+)`", err)
    argv = shlex.split(command)
    assert argv[:2] == [".venv/bin/shipyard", "bootstrap"] and argv[argv.index("--kms-alias") + 1] == bucket_alias

    assert main(argv[1:]) == 0, capsys.readouterr()
    assert bucket_encryption_key(aws) == bucket_key
    assert ci_access(capsys)[0] == 0


def bucket_encryption_key(aws: Aws) -> str:
    s3: Any = aws.client("s3")
    [rule] = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    return str(rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"])


def test_a_role_of_the_same_name_made_by_someone_else_is_refused(backend: Aws, capsys: Any) -> None:
    iam: Any = backend.client("iam")
    ec2_trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    iam.create_role(
        RoleName="shipyard-ci-drift",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [ec2_trust]}),
    )
    code, _, err = ci_access(capsys)
    assert code == 1
    assert "role shipyard-ci-drift exists but `shipyard ci-access` did not create it" in err
    assert iam.get_role(RoleName="shipyard-ci-drift")["Role"]["AssumeRolePolicyDocument"]["Statement"] == [ec2_trust]


# --- GitLab: the branch the protected roles trust -----------------------------------------------


def protected_main(access: str | None) -> Any:
    """GitLab's protected-branches API for acme/shipyard: `main` protected for `access`, or not at all."""

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        if headers.get("PRIVATE-TOKEN") != "glpat-test" or method != "GET":
            return 401, {"message": "401 Unauthorized"}
        if path == "/api/v4/projects/acme%2Fshipyard/protected_branches/main" and access:
            level = {"access_level": 40, "access_level_description": access}
            return 200, {"id": 1, "name": "main", "push_access_levels": [level], "merge_access_levels": [level]}
        return 404, {"message": "404 Not found"}

    return answer


def run_with_gitlab(access: str | None) -> tuple[list[Outcome], list[str], int]:
    request = Request(
        project=PROJECT,
        gitlab_url="https://gitlab.com",
        audience="sts.amazonaws.com",
        default_branch="main",
        region=REGION,
        state_bucket=BUCKET,
        staging_key=STAGING_KEY,
        prod_key=PROD_KEY,
        role_prefix="shipyard-ci-",
        pulumi_project="shipyard",
        staging_stack="staging",
        prod_stack="prod",
    )
    with serve(protected_main(access)) as url:
        outcomes = CiAccess(boto3.Session(), request, gitlab=(url, "glpat-test")).run()
    lines, code = summary(outcomes, request)
    return outcomes, lines, code


def test_gitlab_is_asked_whether_it_protects_the_branch_the_roles_trust(backend: Aws) -> None:
    outcomes, _, code = run_with_gitlab("Maintainers")
    assert code == 0
    [check] = [o for o in outcomes if o.item == "gitlab: main protected"]
    assert (check.state, check.detail) == ("ok", "push: Maintainers; merge: Maintainers")


def test_an_unprotected_default_branch_fails_the_run(backend: Aws) -> None:
    outcomes, lines, code = run_with_gitlab(None)
    assert code == 1
    [check] = [o for o in outcomes if o.item == "gitlab: main protected"]
    assert check.state == "unprotected"
    assert "every role but preview trusts any pipeline of that branch" in check.detail
    assert any(line.startswith("protect main in acme/shipyard") for line in lines)
