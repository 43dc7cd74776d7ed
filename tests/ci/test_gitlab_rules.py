"""The rules evaluator the pipeline tests rely on, against GitLab's documented semantics: if it
were wrong, the pipeline tests would assert the wrong pipelines."""

from __future__ import annotations

import pytest

from tests.ci.gitlab import Reference, effective, evaluate, include, pipeline, plan


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


def test_allow_failure_defaults_as_gitlab_documents() -> None:
    # https://docs.gitlab.com/ci/yaml/#allow_failure: true for manual jobs, false for manual jobs
    # that use `rules` (G9), false otherwise; a rule's own allow_failure wins over the job's.
    doc = {
        "manual": {"script": ["x"], "when": "manual"},
        "rules-manual": {"script": ["x"], "rules": [{"when": "manual"}]},
        "rules-manual-allowed": {"script": ["x"], "rules": [{"when": "manual", "allow_failure": True}]},
        "job-allowed": {"script": ["x"], "allow_failure": True, "rules": [{"when": "manual"}]},
        "rule-over-job": {
            "script": ["x"],
            "allow_failure": True,
            "rules": [{"when": "manual", "allow_failure": False}],
        },
        "plain": {"script": ["x"]},
    }
    planned = plan(doc, {})
    assert {name: (p.when, p.allow_failure, p.blocks) for name, p in planned.items()} == {
        "manual": ("manual", True, False),
        "rules-manual": ("manual", False, True),
        "rules-manual-allowed": ("manual", True, False),
        "job-allowed": ("manual", True, False),
        "rule-over-job": ("manual", False, True),
        "plain": ("on_success", False, False),
    }


def test_the_matching_rule_sets_its_variables_and_rules_see_the_jobs_variables() -> None:
    doc = {
        "job": {
            "script": ["x"],
            "variables": {"KIND": "fast"},
            "rules": [{"if": '$KIND == "slow"', "when": "never"}, {"if": "$A", "variables": {"RUNNER": "review"}}],
        }
    }
    assert plan(doc, {"A": "1"})["job"].variables == {"RUNNER": "review"}
    assert plan(doc, {"A": "1", "KIND": "slow"}) == {}  # a pipeline variable outranks the job's


def test_jobs_inherit_defaults_and_global_variables_unless_they_opt_out() -> None:
    # https://docs.gitlab.com/ci/yaml/#inherit: `inherit:default` and `inherit:variables`, true,
    # false or a list of the names to inherit (G10)
    doc = {
        "default": {"image": "node:22", "before_script": ["npm ci"]},
        "variables": {"A": "1", "B": {"value": "2", "description": "shown in the run form"}},
        "all": {"script": ["x"]},
        "none": {"script": ["x"], "inherit": {"default": False, "variables": False}},
        "some": {"script": ["x"], "image": "python:3", "inherit": {"default": ["before_script"], "variables": ["B"]}},
    }
    assert (effective(doc, "all")["image"], effective(doc, "all")["before_script"]) == ("node:22", ["npm ci"])
    assert effective(doc, "all")["variables"] == {"A": "1", "B": "2"}
    assert "image" not in effective(doc, "none") and "before_script" not in effective(doc, "none")
    assert effective(doc, "none")["variables"] == {}
    some = effective(doc, "some")
    assert (some["image"], some["before_script"], some["variables"]) == ("python:3", ["npm ci"], {"B": "2"})


def test_an_including_file_wins_over_the_included_one_and_references_are_spliced() -> None:
    template = {
        "variables": {"DOCKERFILE": "Dockerfile"},
        ".rules": {"rules": [{"if": "$A"}]},
        "job": {"script": ["x"], "rules": [Reference([".rules", "rules"])]},
    }
    application = {"include": [{"local": "template.yml"}], "variables": {"DOCKERFILE": "web.Dockerfile"}}
    merged = include(application, template)
    assert merged["variables"] == {"DOCKERFILE": "web.Dockerfile"} and "include" not in merged
    assert pipeline(merged, {"A": "1"}) == {"job": "on_success"} and pipeline(merged, {}) == {}
