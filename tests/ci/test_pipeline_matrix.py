"""Every kind of pipeline against both CI files: which jobs run, with which `when` and
`allow_failure`, and which credentials reach them (tests/ci/matrix.py models GitLab's rules)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.offline.engine import Run
from tests.ci.gitlab import Planned, effective, jobs, plan
from tests.ci.matrix import (
    OWN,
    RUNNERS,
    SOURCES,
    markdown,
    own_plan,
    own_token,
    own_uses,
    own_variables,
    provisioned,
    reaches,
    rows,
    runner,
)

MANUAL = ("manual", True)  # by hand, never blocking (G9)
AUTO = ("on_success", False)
CHECKS = {"lint": AUTO, "test": AUTO, "plan": AUTO}
DEPLOYS = CHECKS | {"deploy-staging": AUTO, "preview-prod": AUTO, "deploy-prod": MANUAL}
RELEASE = {"shipyard-build": AUTO, "shipyard-staging": AUTO, "shipyard-production": MANUAL}
ROLLBACK = {"shipyard-rollback-staging": MANUAL, "shipyard-rollback-production": MANUAL}
# Only merge requests create a review app; the stop job exists wherever the review job does.
REVIEW = {"shipyard-review": AUTO, "shipyard-review-stop": MANUAL}

OWN_PIPELINES = {
    "merge request": CHECKS | {"preview": AUTO, "offline-diff-prod": AUTO},
    "merge request from a fork": CHECKS | {"offline-diff": AUTO},  # no preview credentials in a fork
    "push, default branch": DEPLOYS,
    "push, other branch": CHECKS,
    "schedule, default branch": {"drift": AUTO},
    "schedule, other branch": {},
    "web, default branch": DEPLOYS,
    "api, default branch": DEPLOYS,
    "tag": {},
}
TEMPLATE_PIPELINES = {
    "merge request": {"shipyard-build": AUTO} | REVIEW,
    "merge request from a fork": {},  # the fork has neither shipyard's runners nor its variables
    "push, default branch": RELEASE,
    "push, other branch": {},
    "schedule, default branch": {},  # no release unless asked for
    "schedule, other branch": {},
    "web, default branch": ROLLBACK,
    "api, default branch": ROLLBACK,
    "tag": {},
}


def shape(planned: dict[str, Planned]) -> dict[str, tuple[str, bool]]:
    return {name: (p.when, p.allow_failure) for name, p in planned.items()}


@pytest.mark.parametrize("label", OWN_PIPELINES)
def test_this_repositorys_pipeline_for_each_source(own: dict[str, Any], label: str) -> None:
    assert shape(own_plan(own, SOURCES[label])) == OWN_PIPELINES[label]


@pytest.mark.parametrize("label", TEMPLATE_PIPELINES)
def test_the_templates_pipeline_for_each_source(template: dict[str, Any], label: str) -> None:
    assert shape(plan(template, SOURCES[label].variables)) == TEMPLATE_PIPELINES[label]


@pytest.mark.parametrize("label", ["schedule, default branch", "web, default branch", "api, default branch"])
def test_a_pipeline_started_without_a_push_releases_only_when_asked(template: dict[str, Any], label: str) -> None:
    # A schedule, a re-run from the UI or an API call on the default branch must not re-release
    # staging by itself; SHIPYARD_RELEASE=true asks for a build and release like a push's.
    asked = shape(plan(template, SOURCES[label].variables | {"SHIPYARD_RELEASE": "true"}))
    assert asked == RELEASE | TEMPLATE_PIPELINES[label]
    for other in ("1", "yes", "TRUE", ""):
        assert (
            shape(plan(template, SOURCES[label].variables | {"SHIPYARD_RELEASE": other})) == TEMPLATE_PIPELINES[label]
        )


def test_shipyard_release_changes_nothing_outside_the_default_branch(template: dict[str, Any]) -> None:
    for label in ("push, other branch", "schedule, other branch", "tag", "merge request"):
        asked = plan(template, SOURCES[label].variables | {"SHIPYARD_RELEASE": "true"})
        assert shape(asked) == TEMPLATE_PIPELINES[label], label


def test_a_pipeline_started_by_hand_is_never_dropped_for_an_open_merge_request(template: dict[str, Any]) -> None:
    # A rollback or a release asked for by hand must not depend on whether the branch is the source
    # of an open merge request; only push pipelines give way to the merge-request pipeline.
    open_merge_request = {"CI_OPEN_MERGE_REQUESTS": "acme/app!9"}
    for label in ("web, default branch", "api, default branch"):
        assert shape(plan(template, SOURCES[label].variables | open_merge_request)) == TEMPLATE_PIPELINES[label]
    assert plan(template, SOURCES["push, default branch"].variables | open_merge_request) == {}


def test_no_manual_job_blocks_any_pipeline(own: dict[str, Any], template: dict[str, Any]) -> None:
    # guards G9: `when: manual` inside `rules:` defaults to allow_failure: false, "blocked" pipelines
    for source in SOURCES.values():
        for asked in ({}, {"SHIPYARD_RELEASE": "true"}):
            for planned in (own_plan(own, source), plan(template, source.variables | asked)):
                assert [name for name, p in planned.items() if p.blocks] == [], source.label


def test_drift_runs_only_on_schedules_of_the_default_branch(own: dict[str, Any]) -> None:
    # The stacks hold what the default branch deployed; a schedule of another branch would compare
    # them with that branch's program and report its changes as drift.
    found = {label for label, source in SOURCES.items() if "drift" in own_plan(own, source)}
    assert found == {"schedule, default branch"}


# --- credentials -------------------------------------------------------------------------------------


def test_the_header_documents_every_variable_the_pipeline_reads(own: dict[str, Any]) -> None:
    documented = own_variables()
    defined = set(own.get("variables", {})) | {"STACK", "AWS_ID_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
    for job in jobs(own).values():
        defined |= set(job.get("variables", {}))
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", OWN.read_text().split("\nworkflow:", 1)[1]))
    assert {name for name in used - defined if not name.startswith("CI_")} <= set(documented)
    assert {key for key, v in documented.items() if v.protected} == {
        "PULUMI_ACCESS_TOKEN",
        "DRIFT_AWS_ROLE_ARN",
        "DRIFT_HEROKU_API_KEY",
        "DEPLOY_AWS_ROLE_ARN",
        "DEPLOY_HEROKU_API_KEY",
        "DEPLOY_GITLAB_TOKEN",
    }


@pytest.mark.parametrize("label", OWN_PIPELINES)
def test_every_job_gets_the_protected_credentials_it_uses(own: dict[str, Any], label: str) -> None:
    # guards G4: protected variables are empty outside protected refs; a job that needs one must not
    # run there (it would fail confusingly, or run with less than it needs)
    source, documented = SOURCES[label], own_variables()
    for name in own_plan(own, source):
        needed = {key for key in own_uses(own, name, documented) if documented[key].protected}
        assert all(reaches(documented[key], source, None) for key in needed), (label, name, needed)


@pytest.mark.parametrize("label", ["merge request", "merge request from a fork"])
def test_no_merge_request_job_gets_production_state_or_any_protected_credential(
    own: dict[str, Any], label: str
) -> None:
    # guards P1: merge-request code runs with whatever the job holds; guards G4: protected variables
    # reach protected refs only, and merge-request pipelines run on the source branch's ref
    source, documented = SOURCES[label], own_variables()
    for name in own_plan(own, source):
        received = {key for key, v in documented.items() if reaches(v, source, None)}
        assert not {key for key in received if documented[key].protected}, (label, name)
        assert "PULUMI_ACCESS_TOKEN" not in received
        if "PULUMI_ACCESS_TOKEN" in own_uses(own, name, documented) | set(effective(own, name)["variables"]):
            # The Pulumi CLI's token is the staging-only one, mapped in by the job.
            assert own_token(own, name, source, documented) == "PREVIEW_PULUMI_ACCESS_TOKEN", name


def test_the_preview_maps_the_staging_only_token_and_the_deploys_use_the_protected_one(own: dict[str, Any]) -> None:
    documented = own_variables()
    assert effective(own, "preview")["variables"]["PULUMI_ACCESS_TOKEN"] == "$PREVIEW_PULUMI_ACCESS_TOKEN"
    main = SOURCES["push, default branch"]
    for name in ("deploy-staging", "deploy-prod", "preview-prod"):
        assert "PULUMI_ACCESS_TOKEN" not in effective(own, name)["variables"], name
        assert own_token(own, name, main, documented) == "PULUMI_ACCESS_TOKEN", name
    assert own_token(own, "drift", SOURCES["schedule, default branch"], documented) == "PULUMI_ACCESS_TOKEN"


def test_a_template_job_on_an_unprotected_ref_never_waits_for_a_protected_runner(template: dict[str, Any]) -> None:
    # guards G11: the release build runner and production's runner take protected refs only; a merge
    # request builds on the review runner, whose role cannot write release images
    for source in SOURCES.values():
        for asked in ({}, {"SHIPYARD_RELEASE": "true"}):
            for name, planned in plan(template, source.variables | asked).items():
                used = runner(effective(template, name), planned)
                assert source.protected or RUNNERS[used][0] == "any ref", (source.label, name, used)
    assert (
        runner(
            effective(template, "shipyard-build"), plan(template, SOURCES["merge request"].variables)["shipyard-build"]
        )
        == "review"
    )


def test_the_runners_are_protected_as_the_stacks_register_them(committed_runs: dict[str, Run]) -> None:
    # The G11 test above relies on which runners take protected refs only: the stacks' UserRunners.
    registered = {
        tag: step.raw_inputs["accessLevel"]
        for run in committed_runs.values()
        for step in run.resources("gitlab:index/userRunner:UserRunner")
        for tag in step.raw_inputs["tagLists"]
        if tag in RUNNERS
    }
    assert registered == {
        name: "ref_protected" if who == "protected refs" else "not_protected" for name, (who, _) in RUNNERS.items()
    }


def test_template_deploys_get_their_environments_key_only_on_protected_refs(
    template: dict[str, Any], committed_runs: dict[str, Run]
) -> None:
    # guards G4, G5: production's HEROKU_API_KEY is protected and scoped to production
    variables = provisioned(committed_runs)
    for source in SOURCES.values():
        for asked in ({}, {"SHIPYARD_RELEASE": "true"}):
            for name in plan(template, source.variables | asked):
                environment = effective(template, name).get("environment", {}).get("name")
                keys = {
                    v.key for v in variables.values() if v.key == "HEROKU_API_KEY" and reaches(v, source, environment)
                }
                deploys = environment in ("staging", "production")
                assert keys == ({"HEROKU_API_KEY"} if deploys else set()), (source.label, name)


def test_review_jobs_run_in_merge_request_pipelines_only_and_can_always_be_stopped(template: dict[str, Any]) -> None:
    # The review/* variables may be unknown when GitLab evaluates rules (G5): the rules must not
    # read them, so a project without shipyard:review runs the jobs, which then do nothing.
    for source in SOURCES.values():
        for asked in ({}, {"SHIPYARD_RELEASE": "true"}, {"SHIPYARD_REVIEW_APP_PREFIX": "acme-shop"}):
            planned = shape(plan(template, source.variables | asked))
            review = {name: how for name, how in planned.items() if name in REVIEW}
            expected = REVIEW if source.label == "merge request" else {}
            assert review == expected, source.label
    for name in REVIEW:
        rules = repr(effective(template, name)["rules"])
        assert "SHIPYARD_REVIEW" not in rules and "HEROKU_REVIEW" not in rules, name


def test_the_table_of_sources_jobs_and_credentials(
    own: dict[str, Any], template: dict[str, Any], committed_runs: dict[str, Run]
) -> None:
    found = rows(provisioned(committed_runs))
    expected = {(label, name) for label, jobs_ in OWN_PIPELINES.items() for name in jobs_} | {
        (label, name) for label, jobs_ in TEMPLATE_PIPELINES.items() for name in jobs_
    }
    assert {(row.source, row.job) for row in found} == expected
    table = markdown(found)
    assert table.count("\n") == len(found) + 1
    # The rows that matter most, as the table says them.
    assert "| merge request | .gitlab-ci.yml | `preview` | on_success | false | (any) | PREVIEW_AWS_ROLE_ARN" in table
    for row in found:
        if row.source.startswith("merge request"):
            assert "PULUMI_ACCESS_TOKEN" not in row.uses and row.idle == (), row
