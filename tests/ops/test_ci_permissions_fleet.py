"""The pipeline's roles (`shipyard ci-access`) against what a build stack in fleet mode creates: the
deploy role may create and pass the workers' roles and profiles and set up the job cache buckets by
the names the program gives them; the preview and drift roles may read those buckets' settings but
no cached object. Names come from the offline plan of the fleet stack, not from the test."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from infra.offline.engine import Run
from infra.ops.ci_permissions import Scope, permissions

ACCOUNT = "123456789012"  # the offline engine's account
SCOPE = Scope(
    partition="aws",
    account=ACCOUNT,
    region="eu-west-1",
    dns_suffix="amazonaws.com",
    bucket="acme-pulumi-state",
    bucket_key=None,
    pulumi_project="shipyard",
    staging_stack="staging",
    prod_stack="prod",
    staging_key=f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/staging",
    prod_key=f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/prod",
)


def _like(pattern: str, value: str) -> bool:
    return (
        re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), value)
        is not None
    )


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement names the action and the resource (actions compare case-insensitively).
    Conditions are not evaluated: the statements these resources meet carry none but a region's."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if (
            statement["Effect"] == "Allow"
            and any(_like(a.lower(), action.lower()) for a in actions)
            and any(_like(r, resource) for r in resources)
        ):
            return True
    return False


def names(run: Run, type_: str, key: str) -> list[str]:
    found = [str(s.inputs[key]) for s in run.steps if s.type == type_ and key in s.inputs]
    assert found, f"the fleet plan has no {type_}"
    return found


def test_the_deploy_role_may_create_the_workers_roles_and_pass_them(fleet_run: Run) -> None:
    policy = permissions("deploy-staging", SCOPE)
    # The roles and profiles are auto-named: their names as the resources that use them see them.
    roles = [n for n in names(fleet_run, "aws:iam/instanceProfile:InstanceProfile", "role") if "workers" in n]
    profiles = [
        str(s.inputs["iamInstanceProfile"]["arn"])
        for s in fleet_run.steps
        if s.type == "aws:ec2/launchTemplate:LaunchTemplate" and "workers" in s.name
    ]
    assert len(roles) == len(profiles) == 2  # the release and the review runner's workers
    for role in roles:
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        assert allowed(policy, "iam:CreateRole", arn) and allowed(policy, "iam:PutRolePolicy", arn), role
        assert allowed(policy, "iam:PassRole", arn), role
    for profile in profiles:
        assert allowed(policy, "iam:CreateInstanceProfile", profile) and allowed(
            policy, "iam:AddRoleToInstanceProfile", profile
        )


def test_the_deploy_role_may_set_up_and_remove_the_job_cache_buckets(fleet_run: Run) -> None:
    policy = permissions("deploy-staging", SCOPE)
    buckets = names(fleet_run, "aws:s3/bucket:Bucket", "bucket")
    assert len(buckets) == 2
    for bucket in buckets:
        arn = f"arn:aws:s3:::{bucket}"
        for action in (
            "s3:CreateBucket",
            "s3:PutEncryptionConfiguration",
            "s3:PutBucketPublicAccessBlock",
            "s3:PutBucketOwnershipControls",
            "s3:PutBucketPolicy",
            "s3:PutLifecycleConfiguration",
            "s3:GetBucketPolicy",
            "s3:DeleteBucket",
        ):
            assert allowed(policy, action, arn), (action, bucket)
        assert allowed(policy, "s3:DeleteObject", f"{arn}/layer.tgz")  # force_destroy empties it first
        assert not allowed(permissions("deploy-prod", SCOPE), "s3:CreateBucket", arn)  # another stack's


def test_preview_and_drift_read_the_cache_buckets_settings_and_no_cached_object(fleet_run: Run) -> None:
    for role in ("preview", "drift"):
        policy = permissions(role, SCOPE)
        for bucket in names(fleet_run, "aws:s3/bucket:Bucket", "bucket"):
            arn = f"arn:aws:s3:::{bucket}"
            assert allowed(policy, "s3:GetBucketPolicy", arn) and allowed(policy, "s3:GetLifecycleConfiguration", arn)
            assert not allowed(policy, "s3:GetObject", f"{arn}/runner/project/cache.zip"), role
            assert not allowed(policy, "s3:PutBucketPolicy", arn), role


def _iam_like(pattern: str, value: str) -> bool:
    """IAM's wildcards in a resource ARN: `*` any characters (slashes and hyphens too), `?` one."""
    return fnmatch.fnmatchcase(value, pattern)


def test_a_stacks_cache_grant_names_its_own_runners_buckets_and_not_a_longer_named_stacks() -> None:
    for role, stacks in (("deploy-staging", ["staging"]), ("preview", ["staging"]), ("drift", ["staging", "prod"])):
        policy = permissions(role, SCOPE)
        resources = [
            r
            for s in policy["Statement"]
            if s["Sid"] in {"RunnerCacheBuckets", "RunnerCacheObjects", "ReadCacheBuckets"}
            for r in s["Resource"]
        ]
        for stack in stacks:
            for runner in ("runner", "review-runner"):
                own = f"arn:aws:s3:::shipyard-{stack}-{runner}-cache-{ACCOUNT}"
                assert any(_iam_like(r, own) for r in resources), (role, own)
                # `staging-eu` is another stack: a pattern `shipyard-staging-*runner-cache-…` took its bucket.
                other = f"arn:aws:s3:::shipyard-{stack}-eu-{runner}-cache-{ACCOUNT}"
                assert not any(_iam_like(r, other) or _iam_like(r, f"{other}/cache.zip") for r in resources), (
                    role,
                    other,
                )


def test_a_stacks_runner_groups_and_signing_alias_are_its_own_and_not_a_longer_named_stacks() -> None:
    # `shipyard-staging-*` also named every group and alias of a stack `staging-eu`.
    policy = permissions("deploy-staging", SCOPE)
    resources = {s["Sid"]: _as_list(s["Resource"]) for s in policy["Statement"]}
    groups, alias = resources["StackRunnerGroup"], resources["SigningKeyAlias"]
    for runner in ("runner", "review-runner"):
        for group in (f"shipyard-staging-{runner}", f"shipyard-staging-{runner}-workers"):
            arn = f"arn:aws:autoscaling:eu-west-1:{ACCOUNT}:autoScalingGroup:0a1b:autoScalingGroupName/{group}"
            assert any(_iam_like(r, arn) for r in groups), group
            assert not any(_iam_like(r, arn.replace("staging-", "staging-eu-")) for r in groups), group
    own = f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/shipyard-staging-image-signing"
    assert any(_iam_like(r, own) for r in alias)
    assert not any(_iam_like(r, own.replace("staging-", "staging-eu-")) for r in alias)


def _as_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
