"""The trust-policy evaluator of tests/ops/iam_eval.py, on cases whose answer the IAM and GitLab
docs give, so the who-can-assume table of test_ci_access.py does not rest on an untested model."""

from __future__ import annotations

from typing import Any

import pytest

from infra.facts import load
from tests.ops.iam_eval import Unsupported, allows, condition_holds, request_context

PROVIDER = "gitlab.example.com"
PROVIDER_ARN = f"arn:aws:iam::111122223333:oidc-provider/{PROVIDER}"
KEYS = load("gitlab-oidc")["aws"]["condition_keys"]


def token(sub: str, aud: str = "sts.amazonaws.com", **claims: str) -> dict[str, list[str]]:
    return request_context(PROVIDER, {"sub": sub, "aud": aud, **claims}, KEYS)


def trust(condition: dict[str, Any], effect: str = "Allow", principal: str = PROVIDER_ARN) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": effect,
                "Principal": {"Federated": principal},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


def test_the_gitlab_docs_example_admits_main_and_nothing_else() -> None:
    # doc/ci/cloud_services/aws/_index.md, "Configure a role and trust"
    policy = trust({"StringEquals": {f"{PROVIDER}:sub": "project_path:mygroup/myproject:ref_type:branch:ref:main"}})
    assert allows(policy, PROVIDER_ARN, token("project_path:mygroup/myproject:ref_type:branch:ref:main"))
    assert not allows(policy, PROVIDER_ARN, token("project_path:mygroup/myproject:ref_type:branch:ref:mainline"))
    assert not allows(policy, PROVIDER_ARN, token("project_path:mygroup/myproject:ref_type:tag:ref:main"))
    # StringEquals takes `*` literally: the docs' troubleshooting entry for wildcards with StringEquals
    wildcard = trust({"StringEquals": {f"{PROVIDER}:sub": "project_path:mygroup/myproject:ref_type:branch:ref:*"}})
    assert not allows(wildcard, PROVIDER_ARN, token("project_path:mygroup/myproject:ref_type:branch:ref:main"))


def test_stringlike_star_spans_any_run_and_question_mark_exactly_one_character() -> None:
    # doc/ci/cloud_services/_index.md: "Filter to all projects under a group"
    group = trust({"StringLike": {f"{PROVIDER}:sub": "project_path:mygroup/*:ref_type:branch:ref:main"}})
    assert allows(group, PROVIDER_ARN, token("project_path:mygroup/myproject:ref_type:branch:ref:main"))
    assert allows(group, PROVIDER_ARN, token("project_path:mygroup/sub/project:ref_type:branch:ref:main"))
    assert not allows(group, PROVIDER_ARN, token("project_path:othergroup/p:ref_type:branch:ref:main"))
    context = {"k": ["v1.2"]}
    assert condition_holds("StringLike", "k", "v?.?", context)
    assert not condition_holds("StringLike", "k", "v?", context)
    assert condition_holds("StringLike", "k", "v1.2*", context)  # `*` matches no characters too
    assert not condition_holds("StringLike", "k", "V1.2", context)  # case-sensitive


def test_keys_are_anded_values_ored_and_keys_compare_case_insensitively() -> None:
    both = {f"{PROVIDER}:aud": "sts.amazonaws.com", f"{PROVIDER}:sub": ["project_path:a/b:ref_type:branch:ref:x", "y"]}
    policy = trust({"StringEquals": both})
    assert allows(policy, PROVIDER_ARN, token("y"))
    assert not allows(policy, PROVIDER_ARN, token("y", aud="https://gitlab.example.com"))
    assert condition_holds("StringEquals", "GitLab.Example.com:SUB", "y", token("y"))


def test_a_missing_key_fails_plain_operators_and_passes_negated_ifexists_and_forallvalues() -> None:
    context: dict[str, list[str]] = {}
    assert not condition_holds("StringEquals", "k", "v", context)
    assert not condition_holds("StringLike", "k", "*", context)
    assert not condition_holds("ForAnyValue:StringLike", "k", "*", context)
    assert condition_holds("StringNotEquals", "k", "v", context)
    assert condition_holds("StringEqualsIfExists", "k", "v", context)
    # The documented trap: ForAllValues with no value is true.
    assert condition_holds("ForAllValues:StringEquals", "k", "v", context)


def test_a_condition_on_a_claim_aws_does_not_pass_admits_no_token() -> None:
    # ref_protected is in every GitLab token, but IAM hands the policy only aud and sub (G8).
    policy = trust({"StringEquals": {f"{PROVIDER}:ref_protected": "true"}})
    context = token("project_path:a/b:ref_type:branch:ref:main", ref_protected="true")
    assert f"{PROVIDER}:ref_protected" not in context
    assert not allows(policy, PROVIDER_ARN, context)


def test_a_deny_wins_and_another_provider_or_action_is_not_allowed() -> None:
    sub = "project_path:a/b:ref_type:branch:ref:main"
    allow = trust({"StringLike": {f"{PROVIDER}:sub": "project_path:a/b:*"}})
    deny = trust({"StringEquals": {f"{PROVIDER}:sub": sub}}, effect="Deny")
    both = {"Version": "2012-10-17", "Statement": allow["Statement"] + deny["Statement"]}
    assert allows(allow, PROVIDER_ARN, token(sub))
    assert not allows(both, PROVIDER_ARN, token(sub))
    assert not allows(allow, "arn:aws:iam::111122223333:oidc-provider/gitlab.com", token(sub))
    assert not allows(allow, PROVIDER_ARN, token(sub), action="sts:AssumeRole")


@pytest.mark.parametrize(
    "operator", ["NumericEquals", "ArnLike", "Bool", "StringEqualsIgnoreCase", "ForSomeValues:StringEquals"]
)
def test_an_operator_the_model_does_not_know_raises(operator: str) -> None:
    with pytest.raises(Unsupported):
        condition_holds(operator, "k", "v", {"k": ["v"]})
