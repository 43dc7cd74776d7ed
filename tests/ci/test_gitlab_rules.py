"""The rules evaluator the pipeline tests rely on, against GitLab's documented semantics: if it
were wrong, the pipeline tests would assert the wrong pipelines."""

from __future__ import annotations

import pytest

from tests.ci.gitlab import evaluate, pipeline


@pytest.mark.parametrize(
    ("expression", "variables", "expected"),
    [
        ('$CI_PIPELINE_SOURCE == "merge_request_event"', {"CI_PIPELINE_SOURCE": "merge_request_event"}, True),
        ('$CI_PIPELINE_SOURCE == "merge_request_event"', {"CI_PIPELINE_SOURCE": "push"}, False),
        ("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}, True),
        ("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", {"CI_DEFAULT_BRANCH": "main"}, False),  # an MR pipeline
        ("$ROLE", {"ROLE": "arn"}, True),
        ("$ROLE", {"ROLE": ""}, False),  # a variable set to empty is false
        ("$ROLE", {}, False),
        ("$ROLE == null", {}, True),
        ("$ROLE == null", {"ROLE": ""}, False),  # empty is not null
        ('$ROLE == ""', {"ROLE": ""}, True),
        ('$A && ($B == null || $B == "")', {"A": "x"}, True),
        ('$A && ($B == null || $B == "")', {"A": "x", "B": "y"}, False),
        ("$A || $B && $C", {"A": "x"}, True),  # && binds tighter than ||
    ],
)
def test_expressions_follow_gitlab(expression: str, variables: dict[str, str], expected: bool) -> None:
    assert evaluate(expression, variables) is expected


def test_unsupported_syntax_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError):
        evaluate("$CI_COMMIT_BRANCH =~ /^release/", {})


def test_the_first_matching_rule_decides_and_never_drops_the_job() -> None:
    doc = {
        "job": {
            "script": ["true"],
            "rules": [{"if": "$A", "when": "never"}, {"if": "$B", "when": "manual"}, {"when": "on_success"}],
        }
    }
    assert pipeline(doc, {"A": "1", "B": "1"}) == {}
    assert pipeline(doc, {"B": "1"}) == {"job": "manual"}
    assert pipeline(doc, {}) == {"job": "on_success"}
    assert pipeline({**doc, "workflow": {"rules": [{"if": "$RUN"}]}}, {}) == {}  # no workflow rule matched
