"""Values a real `pulumi preview` does not know yet (the outputs of resources it has not created):
each check judges what is known and skips only the unknown part, and where that part could itself
grant a release push or a signature (G11) it waits with a message that says so, which the preview
shows as Pulumi's advisory note: the offline plan judges it with every value known, and `pulumi up`
again once the resources exist.

Where the unknowns sit: a real preview knows a document built with `Output.apply` from a new ARN
not at all (the function runs only on known inputs), so whole unknown documents, a new role's id in
a role policy's `role` and unknown lists are the preview's shapes. Unknowns inside a document's
statements are the shape of a document built from known and unknown parts (`Output.json_dumps`, a
plan document): the per-statement cases hold the policy to it. Each case runs through `check` (plan
documents) and through the pack, props in the SDK's proxies (`verdict`,
tests/policy/test_release_push_policy.py), where the proxies raise on every unknown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from policy.policies import NOT_KNOWN_FIX, UNKNOWN, Policy, Resource, UnknownValue, Waits, check, resources_of_plan
from tests.policy.pack import BY_NAME, advisory_of_the_pack, changed, one, violations
from tests.policy.test_release_push_policy import (
    POLICY,
    RELEASE_ARN,
    replace_in,
    runner_policy,
    verdict,
    workers_policy,
)

KEY = "aws:kms/key:Key"
UNKNOWN_ARRAY = "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2"  # the engine's sentinel for a list not known yet
REVIEW_RUNNER = "runner review-runner takes jobs of unprotected refs (accessLevel not_protected)"
PUSH_TO_RELEASE = {"Sid": "Oops", "Effect": "Allow", "Action": ["ecr:PutImage"], "Resource": RELEASE_ARN}


def edit_document(resource: Resource, edit: Any) -> Resource:
    """The resource with its policy document changed by `edit`, kept as JSON text as the plan has it."""
    document = json.loads(resource.props["policy"])
    edit(document["Statement"])
    return changed(resource, policy=json.dumps(document))


def statement(statements: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    [found] = [s for s in statements if s.get("Sid") == sid]
    return found


def new_review_runner(resources: list[Resource], edit: Any = lambda statements: None) -> list[Resource]:
    """The review runner with its role's id (the policy's `role`) and the token parameter's ARN
    (ReadRunnerToken, WriteBackRotatedToken) not known yet, inside a document that is otherwise known."""
    policy = runner_policy(resources, "review-runner")

    def unknown_token(statements: list[dict[str, Any]]) -> None:
        for sid in ("ReadRunnerToken", "WriteBackRotatedToken"):
            statement(statements, sid)["Resource"] = UNKNOWN
        edit(statements)

    return replace_in(resources, policy, changed(edit_document(policy, unknown_token), role=UNKNOWN))


# --- (a) a known forbidden grant next to an unknown value is still a violation -----------------------


def test_a_known_push_beside_unknown_arns_is_still_a_violation(plans: dict[str, list[Resource]]) -> None:
    resources = new_review_runner(plans["staging"], lambda statements: statements.append(PUSH_TO_RELEASE))
    assert verdict(resources) == [  # guards G11
        f"{REVIEW_RUNNER}, but its role may push (ecr:PutImage) to {RELEASE_ARN} (Oops): only review repositories "
        "take its images"
    ]


def test_a_known_open_rule_beside_a_group_not_created_yet_is_still_a_violation(
    plans: dict[str, list[Resource]],
) -> None:  # guards R13
    group = one(plans["staging"], "aws:ec2/securityGroup:SecurityGroup", named="runner-sg")
    from_manager = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "securityGroups": UNKNOWN_ARRAY}
    https = {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}
    ingress = changed(group, ingress=[from_manager, https])
    assert violations("no-ingress-from-anywhere", ingress) == ["ingress from 0.0.0.0/0 on ports 443-443"]
    assert check([ingress], [BY_NAME["no-ingress-from-anywhere"]])[1] == 1  # the manager's rule waits


def test_a_known_production_stage_decides_beside_an_unknown_one(plans: dict[str, list[Resource]]) -> None:
    resources = plans["prod"]  # guards H4
    app = one(resources, "heroku:app/app:App")
    environment = one(resources, "gitlab:index/projectEnvironment:ProjectEnvironment")
    coupling = one(resources, "heroku:pipeline/coupling:Coupling")
    order = [changed(coupling, stage=UNKNOWN), environment, changed(app, protect=False)]
    assert violations("production-protected", *order) == [f"production app {app.props['name']} is not protected"]


def test_a_statement_whose_action_is_not_known_waits_instead_of_passing(plans: dict[str, list[Resource]]) -> None:
    policy = runner_policy(plans["staging"], "review-runner")  # guards R7

    def edit(statements: list[dict[str, Any]]) -> None:
        statements.append({"Sid": "Later", "Effect": "Allow", "Action": UNKNOWN, "Resource": "*"})
        statements.append({"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"})

    edited = edit_document(policy, edit)
    assert violations("iam-least-privilege", edited) == ["Everything allows every action (*)"]
    assert check([edited], [BY_NAME["iam-least-privilege"]])[1] == 1


# --- (b) an unknown that cannot grant the forbidden thing does not block ----------------------------


def test_unknown_arns_that_grant_no_push_or_signature_do_not_block(plans: dict[str, list[Resource]]) -> None:
    resources = new_review_runner(plans["staging"])  # guards G11
    assert verdict(resources) == []
    assert check(resources, [BY_NAME[POLICY]]) == ([], 0)


def test_a_key_statement_that_cannot_sign_may_name_a_principal_not_known_yet(
    plans: dict[str, list[Resource]],
) -> None:
    resources = new_review_runner(plans["staging"])  # guards G11; the preview that creates the runner
    key = one(resources, KEY)
    reader = {"Sid": "Reader", "Effect": "Allow", "Principal": {"AWS": UNKNOWN}, "Action": "kms:GetPublicKey"}
    resources = replace_in(resources, key, edit_document(key, lambda statements: statements.append(reader)))
    assert check(resources, [BY_NAME[POLICY]]) == ([], 0)
    assert verdict(resources) == []


# --- (c) an unknown that could grant it is not silently passed --------------------------------------


def waits(resources: list[Resource]) -> list[str]:
    """The parts the policy could not judge: the same through `check` and through the pack, and no
    violation beside them (the preview goes on; the offline plan judges them)."""
    stack_check = BY_NAME[POLICY].check_stack
    assert stack_check is not None
    found = [str(m) for _, m in stack_check(resources) if isinstance(m, Waits)]
    assert advisory_of_the_pack(POLICY, tuple(resources)) == found
    assert all(m.endswith(NOT_KNOWN_FIX) for m in found)
    return found


def test_a_push_to_a_repository_not_known_yet_waits_naming_it(plans: dict[str, list[Resource]]) -> None:
    def unknown_review_repository(statements: list[dict[str, Any]]) -> None:
        statement(statements, "PushReviewImages")["Resource"] = UNKNOWN

    resources = new_review_runner(plans["staging"], unknown_review_repository)
    assert verdict(resources) == []
    assert waits(resources) == [  # guards G11
        f"{REVIEW_RUNNER}, and Resource of PushReviewImages in review-runner-least-privilege is not known yet: its "
        f"role may push to a release repository; {NOT_KNOWN_FIX}"
    ]


def test_a_statement_or_action_not_known_yet_waits_naming_it(plans: dict[str, list[Resource]]) -> None:
    for unknown_part, expected in (
        (UNKNOWN, "a statement in review-runner-least-privilege"),
        ({"Sid": "Later", "Effect": "Allow", "Action": [UNKNOWN], "Resource": RELEASE_ARN}, "Action of Later"),
        ({"Sid": "Later", "Effect": UNKNOWN, "Action": "kms:Sign", "Resource": "*"}, "Effect of Later"),
    ):
        resources = new_review_runner(plans["staging"], lambda statements, part=unknown_part: statements.append(part))
        assert verdict(resources) == []
        found = waits(resources)
        assert len(found) == 1 and found[0].startswith(f"{REVIEW_RUNNER}, and {expected} "), found  # guards G11
        assert "is not known yet: its role may" in found[0]


def test_a_new_fleet_of_the_review_runner_is_judged_not_passed(fleet_run: Run) -> None:
    # Switching to fleet mode: the manager's document names the new group and bucket, so a preview
    # knows none of it; the workers' document names only existing repositories and is judged.
    resources = resources_of_plan(to_preview_json(fleet_run))
    manager = runner_policy(resources, "review-runner")
    workers = workers_policy(resources, "review-runner")
    pushing = edit_document(workers, lambda statements: statements.append(PUSH_TO_RELEASE))
    switched = replace_in(replace_in(resources, manager, changed(manager, policy=UNKNOWN)), workers, pushing)
    # guards G11: the known push is a violation; the unknown document waits beside it.
    assert [m.split(":")[0] for m in verdict(switched)] == [f"{REVIEW_RUNNER}, but its role may push (ecr"]
    assert [m.split(":")[0] for m in waits(switched)] == [
        f"{REVIEW_RUNNER}, and the document of its role policy review-runner-least-privilege is not known yet"
    ]


def test_a_key_policy_or_signer_not_known_yet_waits_naming_it(plans: dict[str, list[Resource]]) -> None:
    resources = plans["staging"]  # guards G11, G8
    key = one(resources, KEY)
    unknown_policy = replace_in(resources, key, changed(key, policy=UNKNOWN))
    assert verdict(unknown_policy) == []
    [whole] = waits(unknown_policy)
    assert whole.startswith("the policy of KMS key image-signing is not known yet: it may let anyone sign")

    def unknown_signer(statements: list[dict[str, Any]]) -> None:
        statement(statements, "ReleaseBuildRunnerSigns")["Principal"] = {"AWS": UNKNOWN}

    unknown_principal = replace_in(resources, key, edit_document(key, unknown_signer))
    assert verdict(unknown_principal) == []
    [signer] = waits(unknown_principal)
    assert signer.startswith("Principal of ReleaseBuildRunnerSigns in KMS key image-signing is not known yet")


def test_what_a_check_found_before_it_stopped_on_an_unknown_value_stands() -> None:
    # `shipyard policy check` and the pack must agree: the pack has reported the first finding before
    # the check reads the unknown value, so `check` keeps it too.
    def first_then_unknown(resource: Resource) -> Iterator[str]:
        yield f"{resource.name} is open to the world"
        raise UnknownValue("securityGroupId", UNKNOWN)

    policy = Policy(
        "stops-midway", "a check that stops on an unknown value", "none", "nothing", ("t:t:T",), first_then_unknown
    )
    rule = Resource("t:t:T", "rule", "urn:pulumi:s::p::t:t:T::rule", {})
    violations, waited = check([rule], [policy])
    assert [v.message for v in violations] == ["rule is open to the world"] and waited == 1


# --- (d) branches that only an unknown value reaches ------------------------------------------------


def test_an_unprotected_app_of_a_stage_not_known_yet_waits(plans: dict[str, list[Resource]]) -> None:
    # guards H4: neither the environment's tier nor the coupling's stage is known, so the unprotected
    # app may be production's: it waits, named in the advisory note, and is no violation yet.
    resources = [
        changed(r, tier=UNKNOWN)
        if r.type == "gitlab:index/projectEnvironment:ProjectEnvironment"
        else changed(r, stage=UNKNOWN)
        if r.type == "heroku:pipeline/coupling:Coupling"
        else changed(r, protect=False)
        if r.type == "heroku:app/app:App"
        else r
        for r in plans["prod"]
    ]
    assert check(resources, [BY_NAME["production-protected"]]) == ([], 1)
    assert advisory_of_the_pack("production-protected", tuple(resources)) == [
        "whether app production is production's is not known yet"
    ]


def test_a_repository_a_lifecycle_policy_not_known_yet_may_cover_waits(plans: dict[str, list[Resource]]) -> None:
    # guards the registry lifecycle (README): the review repository's lifecycle names a repository not
    # known yet, which may be the review repository: it waits instead of failing; the release one is covered.
    lifecycle = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
    review_lifecycle = one(plans["staging"], lifecycle, repository="acme/storefront-review")
    resources = replace_in(plans["staging"], review_lifecycle, changed(review_lifecycle, repository=UNKNOWN))
    assert check(resources, [BY_NAME["ecr-lifecycle-policy"]]) == ([], 1)
    assert advisory_of_the_pack("ecr-lifecycle-policy", tuple(resources)) == [
        "whether repository registry-review has a lifecycle policy is not known yet"
    ]


def new_review_role(resources: list[Resource]) -> list[Resource]:
    """The review runner's role created in this run: the role id its policy and instance profile take
    is not known yet (its `name` is not in the plan either: the bridge auto-names it)."""
    profile = one(resources, "aws:iam/instanceProfile:InstanceProfile", named="review-runner-profile")
    return new_review_runner(replace_in(resources, profile, changed(profile, role=UNKNOWN)))


def signer(principal: str) -> dict[str, Any]:
    return {"Sid": "ReviewSigns", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:Sign"}


def test_a_key_letting_a_new_runner_role_sign_by_its_known_name_violates(plans: dict[str, list[Resource]]) -> None:
    # guards G11, G8: a preview knows the new role's own name (explicit or the bridge's auto-name, as
    # the plan's instance profile shows it), not the id its policy and instance profile take.
    name = one(plans["staging"], "aws:iam/instanceProfile:InstanceProfile", named="review-runner-profile").props["role"]
    resources = new_review_role(plans["staging"])
    role = one(resources, "aws:iam/role:Role", named="review-runner-role")
    resources = replace_in(resources, role, changed(role, name=name))
    key = one(resources, KEY)
    role_arn = f"arn:aws:iam::123456789012:role/{name}"
    signing = replace_in(resources, key, edit_document(key, lambda statements: statements.append(signer(role_arn))))
    assert verdict(signing) == [
        "KMS key image-signing lets the role of runner review-runner sign (ReviewSigns), a runner that takes jobs "
        "of unprotected refs (accessLevel not_protected)"
    ]
    assert check(signing, [BY_NAME[POLICY]])[1] == 0  # judged by the name, not waiting on the id


def test_a_role_name_not_known_yet_matches_no_key_principal(plans: dict[str, list[Resource]]) -> None:
    # guards G11: the review runner's role policy and instance profile take a role not known yet; the
    # sentinel standing for it is no role name, so a principal that ends in it is not the runner's role.
    resources = new_review_role(plans["staging"])
    key = one(resources, KEY)
    sentinel_arn = f"arn:aws:iam::123456789012:role/{UNKNOWN}"
    signing = replace_in(resources, key, edit_document(key, lambda statements: statements.append(signer(sentinel_arn))))
    assert not any("review-runner" in m for m in verdict(signing))


def test_an_element_not_known_yet_in_a_list_waits_and_is_never_shown(plans: dict[str, list[Resource]]) -> None:
    # guards R13, R15: the preview's shape for `security_groups=[manager_sg.id]` or a CIDR from a new
    # resource is a known list holding a sentinel; the rule waits and the sentinel is no value.
    group = one(plans["staging"], "aws:ec2/securityGroup:SecurityGroup", named="runner-sg")
    https = {"protocol": "tcp", "fromPort": 443, "toPort": 443}
    for rule in (
        {**https, "securityGroups": [UNKNOWN]},
        {**https, "cidrBlocks": [UNKNOWN]},
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "securityGroups": ["sg-0123456789abcdef0", UNKNOWN]},
    ):
        ingress = changed(group, ingress=[rule])
        assert violations("no-ingress-from-anywhere", ingress) == [], rule
        assert check([ingress], [BY_NAME["no-ingress-from-anywhere"]]) == ([], 1), rule
    # an element of the ingress list itself not known yet: the whole list waits
    ingress = changed(group, ingress=[UNKNOWN])
    assert check([ingress], [BY_NAME["no-ingress-from-anywhere"]]) == ([], 1)
