"""Pipelines by ref kind, and what each job waits for, in both GitLab CI files: tag pipelines, and
deploys that start only after the checks that guard them. A job waits for its `needs:`, or without
them for every job of the earlier stages in its pipeline (GitLab's order), evaluated with the rules
evaluator on realistic pipeline variables."""

from __future__ import annotations

from typing import Any

from tests.ci.gitlab import jobs, pipeline

GITLAB_DEFAULT_STAGES = [".pre", "build", "test", "deploy", ".post"]

DEFAULT_BRANCH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
WEB = {"CI_PIPELINE_SOURCE": "web", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
# A tag pipeline: GitLab sets CI_COMMIT_TAG and no CI_COMMIT_BRANCH.
TAG = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.4.0", "CI_DEFAULT_BRANCH": "main"}
# What an application adds next to the included template: a job of its own for its tags.
APPLICATION_TAG_JOB = {"stage": "build", "script": ["make publish"], "rules": [{"if": "$CI_COMMIT_TAG"}]}


def waits_for(doc: dict[str, Any], planned: dict[str, str], name: str) -> set[str]:
    """The jobs of this pipeline that `name` starts after (directly)."""
    resolved = jobs(doc)
    job = resolved[name]
    if "needs" in job:
        needed = {need if isinstance(need, str) else need["job"] for need in job["needs"]}
        # GitLab refuses to create a pipeline whose job needs a job the pipeline does not have.
        assert needed <= set(planned), (name, needed - set(planned))
        return needed
    stages = doc.get("stages", GITLAB_DEFAULT_STAGES)

    def stage_of(job_name: str) -> int:
        return int(stages.index(resolved[job_name].get("stage", "test")))

    return {other for other in planned if stage_of(other) < stage_of(name)}


def upstream(doc: dict[str, Any], planned: dict[str, str], name: str) -> set[str]:
    """Every job `name` waits for, directly or through the jobs it waits for."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for job in waits_for(doc, planned, todo.pop()) - found:
            found.add(job)
            todo.append(job)
    return found


def test_staging_is_deployed_only_after_lint_tests_and_the_plan(own: dict[str, Any]) -> None:
    planned = pipeline(own, DEFAULT_BRANCH)
    assert waits_for(own, planned, "deploy-staging") >= {"lint", "test", "plan"}
    # Production waits for all of it too, through staging's deploy and the production preview.
    assert upstream(own, planned, "deploy-prod") >= {"lint", "test", "plan", "deploy-staging", "preview-prod"}


def test_the_evaluator_reads_needs_and_stage_order_as_gitlab_does(own: dict[str, Any]) -> None:
    planned = pipeline(own, DEFAULT_BRANCH)
    # `needs: [deploy-staging]` replaces the stage order: preview-prod starts once staging is up.
    assert waits_for(own, planned, "preview-prod") == {"deploy-staging"}
    # A deploy without `needs:` would wait for every job of the earlier stages.
    without_needs = {**own, "deploy-staging": {k: v for k, v in own["deploy-staging"].items() if k != "needs"}}
    assert waits_for(without_needs, planned, "deploy-staging") == {"lint", "test", "plan"}
    # And `needs: []` waits for nothing: the reason the checks must be named.
    no_wait = {**own, "deploy-staging": {**own["deploy-staging"], "needs": []}}
    assert waits_for(no_wait, planned, "deploy-staging") == set()


def test_the_template_releases_only_what_the_pipeline_built_and_staging_released(template: dict[str, Any]) -> None:
    planned = pipeline(template, DEFAULT_BRANCH)
    assert waits_for(template, planned, "shipyard-staging") == {"shipyard-build"}
    assert upstream(template, planned, "shipyard-production") == {"shipyard-build", "shipyard-staging"}


def test_a_rollback_waits_for_nothing_in_its_pipeline(template: dict[str, Any]) -> None:
    # guards H13: a rollback is for when something is wrong; it must not wait for a build or a
    # release of the same pipeline (`needs: []`), even in one that also releases.
    for variables in (WEB, WEB | {"SHIPYARD_RELEASE": "true"}):
        planned = pipeline(template, variables)
        for name in ("shipyard-rollback-staging", "shipyard-rollback-production"):
            assert waits_for(template, planned, name) == set(), (name, variables)


def test_a_tag_pipeline_runs_the_applications_tag_jobs_and_none_of_shipyards(template: dict[str, Any]) -> None:
    # The template's `workflow:` becomes the including project's (G10), so it admits tag pipelines
    # for the application's own jobs. None of shipyard's jobs runs in them: the deploys release the
    # image the default-branch pipeline built for the commit, and nothing releases from a tag, so a
    # build there would be wasted (and would write a tag no release path reads).
    assert pipeline(template, TAG) == {}
    with_application = {**template, "publish": APPLICATION_TAG_JOB}
    assert pipeline(with_application, TAG) == {"publish": "on_success"}


def test_a_tag_of_shipyard_starts_no_pipeline_of_its_own(own: dict[str, Any]) -> None:
    # A shipyard tag (what applications pin their `include:` to) names a commit that the default
    # branch's pipeline already checked and deployed; a tag pipeline would change nothing.
    assert pipeline(own, TAG) == {}
