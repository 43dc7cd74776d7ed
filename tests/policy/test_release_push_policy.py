"""The release-push-protected-only policy (G11): no runner that takes jobs of unprotected refs has a
role that may push anywhere but a review repository, or sign. The committed plans pass; variants of
them violate. Each case runs through `check` (plan documents) and through the pack, with resources
linked to their parent component the way the policy SDK links them."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, StackValidationArgs
from pulumi_policy.proxy import UnknownValueError

from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from policy.policies import NOT_KNOWN_FIX, POLICIES, UNKNOWN, Resource, check, pack_policies, resources_of_plan
from tests.policy.pack import BY_NAME, advisory_of_the_pack, changed, one, sdk_props, through_the_pack

POLICY = "release-push-protected-only"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
RUNNER = "gitlab:index/userRunner:UserRunner"
KEY = "aws:kms/key:Key"
REPO = "aws:ecr/repository:Repository"
RELEASE_ARN = "arn:aws:ecr:eu-west-1:123456789012:repository/acme/storefront"
PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def with_parents(resources: list[Resource]) -> list[str]:
    """The policy as `pulumi preview --policy-pack` runs it: every resource's options carry its parent's
    URN, and the resource links its parent's own PolicyResource."""
    built = {p.name: p for p in pack_policies([BY_NAME[POLICY]])}[POLICY]
    by_urn: dict[str, PolicyResource] = {}
    for r in resources:
        options = PolicyResourceOptions(r.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], r.parent or None)
        by_urn[r.urn] = PolicyResource(r.type, sdk_props(r.props), r.urn, r.name, options, None, None, [], {})
    for r in resources:
        by_urn[r.urn].parent = by_urn.get(r.parent)
    reported: list[str] = []
    with contextlib.suppress(UnknownValueError):  # the SDK catches it for stack policies: an advisory note
        built.validate(StackValidationArgs(list(by_urn.values())), lambda message, urn=None: reported.append(message))
    return [m.split(". Fix: ")[0] for m in reported]


def verdict(resources: list[Resource]) -> list[str]:
    """The policy's messages, the same through `check`, the pack with parents and the pack without."""
    found, _ = check(resources, [BY_NAME[POLICY]])
    plain = [v.message for v in found]
    assert with_parents(resources) == plain
    assert through_the_pack(POLICY, tuple(resources)) == plain  # no parents: grouped by the children's names
    return plain


def runner_policy(resources: list[Resource], component: str) -> Resource:
    return one([r for r in resources if r.name == f"{component}-least-privilege"], ROLE_POLICY)


def replace_in(resources: list[Resource], old: Resource, new: Resource) -> list[Resource]:
    return [new if r.urn == old.urn else r for r in resources]


def with_statement(resources: list[Resource], component: str, statement: dict[str, Any]) -> list[Resource]:
    policy = runner_policy(resources, component)
    document = json.loads(policy.props["policy"])
    document["Statement"].append(statement)
    return replace_in(resources, policy, changed(policy, policy=json.dumps(document)))


def test_the_committed_plans_pass(plans: dict[str, list[Resource]]) -> None:  # guards G11
    for resources in plans.values():
        assert verdict(resources) == []
    assert check(plans["staging"], [BY_NAME[POLICY]]) == ([], 0)


def test_the_release_runner_taking_unprotected_refs_violates(plans: dict[str, list[Resource]]) -> None:
    resources = plans["staging"]  # guards G11
    runner = one(resources, RUNNER, accessLevel="ref_protected")
    unprotected = replace_in(resources, runner, changed(runner, accessLevel="not_protected"))
    found = verdict(unprotected)
    assert found[0].startswith(
        "runner runner takes jobs of unprotected refs (accessLevel not_protected), but its role may push "
        f"(ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage) to {RELEASE_ARN}"
    )
    assert any(m.startswith("KMS key image-signing lets the role of runner runner sign (ReleaseBuildRunnerSigns)")
               for m in found), found  # fmt: skip


def test_the_review_runner_pushing_to_the_release_repository_violates(plans: dict[str, list[Resource]]) -> None:
    push = {"Sid": "Oops", "Effect": "Allow", "Action": ["ecr:PutImage"], "Resource": RELEASE_ARN}
    assert verdict(with_statement(plans["staging"], "review-runner", push)) == [
        "runner review-runner takes jobs of unprotected refs (accessLevel not_protected), but its role may push "
        f"(ecr:PutImage) to {RELEASE_ARN} (Oops): only review repositories take its images"
    ]


def test_wildcards_and_not_action_reach_the_release_repository_too(plans: dict[str, list[Resource]]) -> None:
    for statement in (
        {"Sid": "AnyRepository", "Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*"},
        {"Sid": "AllOfEcr", "Effect": "Allow", "Action": "ECR:*", "Resource": RELEASE_ARN},
        {"Sid": "Uploads", "Effect": "Allow", "Action": "ecr:*Upload*", "Resource": RELEASE_ARN},
        {"Sid": "AllButIam", "Effect": "Allow", "NotAction": "iam:*", "Resource": RELEASE_ARN},
        {"Sid": "Elsewhere", "Effect": "Allow", "Action": "ecr:PutImage", "NotResource": RELEASE_ARN},
        {"Sid": "Pattern", "Effect": "Allow", "Action": "ecr:PutImage", "Resource": RELEASE_ARN[:-9] + "*"},
    ):
        found = verdict(with_statement(plans["staging"], "review-runner", statement))
        assert any(f"({statement['Sid']})" in m and "may push" in m for m in found), (statement, found)
    deny = {"Sid": "NoPush", "Effect": "Deny", "Action": "ecr:*", "Resource": RELEASE_ARN}
    assert verdict(with_statement(plans["staging"], "review-runner", deny)) == []


def test_the_review_runner_signing_violates(plans: dict[str, list[Resource]]) -> None:
    sign = {"Sid": "Sign", "Effect": "Allow", "Action": "kms:Sign", "Resource": "*"}
    assert verdict(with_statement(plans["staging"], "review-runner", sign)) == [
        "runner review-runner takes jobs of unprotected refs (accessLevel not_protected), but its role may "
        "sign with KMS (Sign)"
    ]


def key_with_signer(resources: list[Resource], principal: Any) -> list[Resource]:
    key = one(resources, KEY)
    document = json.loads(key.props["policy"])
    document["Statement"].append(
        {"Sid": "Extra", "Effect": "Allow", "Principal": principal, "Action": "kms:*", "Resource": "*"}
    )
    return replace_in(resources, key, changed(key, policy=json.dumps(document)))


def test_a_key_policy_letting_the_review_runners_role_sign_violates(plans: dict[str, list[Resource]]) -> None:
    resources = plans["staging"]  # guards G11
    role_name = runner_policy(resources, "review-runner").props["role"]
    role_arn = f"arn:aws:iam::123456789012:role/{role_name}"
    assert verdict(key_with_signer(resources, {"AWS": [role_arn]})) == [
        "KMS key image-signing lets the role of runner review-runner sign (Extra), a runner that takes jobs of "
        "unprotected refs (accessLevel not_protected)"
    ]
    assert verdict(key_with_signer(resources, "*")) == ["KMS key image-signing lets any principal sign (Extra)"]
    # The protected release runner's role signing is the point of the key.
    release_role = runner_policy(resources, "runner").props["role"]
    assert verdict(key_with_signer(resources, {"AWS": f"arn:aws:iam::123456789012:role/{release_role}"})) == []


def test_a_managed_policy_that_pushes_everywhere_violates(plans: dict[str, list[Resource]]) -> None:
    resources = plans["staging"]
    attachment = one(
        [r for r in resources if r.name == "review-runner-session-manager"],
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    )
    power = changed(attachment, policyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser")
    assert verdict(replace_in(resources, attachment, power)) == [
        "runner review-runner takes jobs of unprotected refs (accessLevel not_protected), but its role has "
        "AmazonEC2ContainerRegistryPowerUser, which may push to every repository"
    ]


def test_only_a_repository_marked_for_review_images_takes_their_pushes(plans: dict[str, list[Resource]]) -> None:
    resources = plans["staging"]  # fails closed: an unmarked repository counts as a release repository
    review = one(resources, REPO, name="acme/storefront-review")
    unmarked = replace_in(resources, review, changed(review, tags={}))
    [message] = verdict(unmarked)
    assert message.startswith("runner review-runner takes jobs of unprotected refs") and "(PushReviewImages)" in message


def test_an_unprotected_runner_that_only_pulls_passes(plans: dict[str, list[Resource]]) -> None:
    resources = plans["prod"]  # a deploy runner that were not protected would still write nothing
    runner = one(resources, RUNNER)
    assert verdict(replace_in(resources, runner, changed(runner, accessLevel="not_protected"))) == []


def test_a_policy_not_known_until_apply_waits_for_the_offline_plan(plans: dict[str, list[Resource]]) -> None:
    # guards G11: a first preview of a review runner knows none of its documents. Failing it would
    # stop every first `pulumi up`; it waits, says what it could not judge, and the offline plan
    # (every value known) judges the same program.
    resources = copy.deepcopy(plans["staging"])
    policy = runner_policy(resources, "review-runner")
    unknown = replace_in(resources, policy, changed(policy, policy=UNKNOWN))
    assert verdict(unknown) == []
    [message] = advisory_of_the_pack(POLICY, tuple(unknown))
    assert "the document of its role policy review-runner-least-privilege is not known yet" in message
    assert message.endswith(NOT_KNOWN_FIX)


# --- fleet mode: the jobs' permissions are on the workers' role --------------------------------------


def workers_policy(resources: list[Resource], component: str) -> Resource:
    return one([r for r in resources if r.name == f"{component}-workers-jobs"], ROLE_POLICY)


def test_the_fleet_plan_passes_every_policy(fleet_run: Run) -> None:  # guards G11, R13, R15
    resources = resources_of_plan(to_preview_json(fleet_run))
    assert check(resources, POLICIES) == ([], 0)
    assert verdict(resources) == []


def test_review_workers_pushing_release_images_or_signing_violate(fleet_run: Run) -> None:  # guards G11
    resources = resources_of_plan(to_preview_json(fleet_run))
    policy = workers_policy(resources, "review-runner")
    document = json.loads(policy.props["policy"])
    document["Statement"] += [
        {"Sid": "Oops", "Effect": "Allow", "Action": ["ecr:PutImage"], "Resource": RELEASE_ARN},
        {"Sid": "Sign", "Effect": "Allow", "Action": "kms:Sign", "Resource": "*"},
    ]
    pushing = replace_in(resources, policy, changed(policy, policy=json.dumps(document)))
    assert verdict(pushing) == [
        "runner review-runner takes jobs of unprotected refs (accessLevel not_protected), but its role may push "
        f"(ecr:PutImage) to {RELEASE_ARN} (Oops): only review repositories take its images",
        "runner review-runner takes jobs of unprotected refs (accessLevel not_protected), but its role may "
        "sign with KMS (Sign)",
    ]
    # Nor may the signing key name the review workers' role.
    role_arn = f"arn:aws:iam::123456789012:role/{policy.props['role']}"
    assert verdict(key_with_signer(resources, {"AWS": role_arn})) == [
        "KMS key image-signing lets the role of runner review-runner sign (Extra), a runner that takes jobs of "
        "unprotected refs (accessLevel not_protected)"
    ]
