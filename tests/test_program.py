"""The whole program per stack, on the offline engine: what each stack owns, how prod reads
staging, production protection, and settings errors that stop the run before anything exists."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import wiring
from infra.offline.engine import Run, Step
from infra.settings import SettingsError
from infra.userdata import decode
from tests.conftest import run_stack, stack_document

APP = "heroku:app/app:App"
VAR = "gitlab:index/projectVariable:ProjectVariable"
COUPLING = "heroku:pipeline/coupling:Coupling"


def keys(run: Any, scope: str) -> set[str]:
    return {s.raw_inputs["key"] for s in run.resources(VAR) if s.raw_inputs["environmentScope"] == scope}


def test_staging_is_the_build_stack(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]
    repos = {s.raw_inputs["name"] for s in run.resources("aws:ecr/repository:Repository")}
    assert repos == {"acme/storefront", "acme/storefront-review"}
    assert {s.raw_inputs["repository"] for s in run.resources("aws:ecr/lifecyclePolicy:LifecyclePolicy")} == repos
    assert run.one("heroku:pipeline/pipeline:Pipeline").raw_inputs["name"] == "acme-storefront"
    app = run.one(APP)
    assert (app.raw_inputs["name"], app.raw_inputs["stack"]) == ("acme-storefront-staging", "container")
    assert run.one("gitlab:index/projectEnvironment:ProjectEnvironment").raw_inputs["name"] == "staging"
    assert keys(run, "staging") == {"HEROKU_APP_NAME", "HEROKU_REGISTRY_IMAGE", "HEROKU_API_KEY"}
    assert keys(run, "*") == {
        "ECR_REPOSITORY_URL",
        "ECR_REVIEW_REPOSITORY_URL",
        "AWS_DEFAULT_REGION",
        "ECR_CACHE_TAG",
        "SHIPYARD_SIGNING_KEY",
        "SHIPYARD_SIGNING_PUBLIC_KEY",
        "SHIPYARD_SCAN_THRESHOLD",
    }
    assert not run.resources("pulumi:pulumi:StackReference")


def test_build_stack_couples_its_own_app_to_the_pipeline_it_creates(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]  # guards H11: a pipeline without an app is deleted
    assert run.one(COUPLING).raw_inputs["pipeline"] == run.outputs[wiring.PIPELINE_ID]
    assert run.one(COUPLING).raw_inputs["stage"] == "staging"


def test_unscoped_registry_variable_carries_the_repository_url(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]
    url = run.one(VAR, key="ECR_REPOSITORY_URL").raw_inputs["value"]
    assert url == run.outputs[wiring.REGISTRY_URL] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/storefront"
    assert run.one(VAR, key="HEROKU_REGISTRY_IMAGE").raw_inputs["value"] == (
        "registry.heroku.com/acme-storefront-staging/web"
    )


def test_prod_reads_the_build_stack_and_owns_no_registry(committed_runs: dict[str, Run]) -> None:
    staging, run = committed_runs["staging"], committed_runs["prod"]
    ref = run.one("pulumi:pulumi:StackReference")
    assert ref.op == "read" and ref.name == "organization/shipyard/staging"
    assert not run.resources("aws:ecr/repository:Repository")
    assert not run.resources("heroku:pipeline/pipeline:Pipeline")
    assert keys(run, "*") == set()  # guards G5: unscoped variables belong to the build stack only
    # The real wiring: prod couples to the pipeline staging creates and exports staging's registry.
    assert run.one(COUPLING).raw_inputs["pipeline"] == staging.outputs[wiring.PIPELINE_ID]
    assert run.one(COUPLING).raw_inputs["stage"] == "production"
    assert run.outputs[wiring.REGISTRY_URL] == staging.outputs[wiring.REGISTRY_URL]


def test_production_resources_are_protected_and_staging_ones_are_not(committed_runs: dict[str, Run]) -> None:
    prod = committed_runs["prod"]
    created = [s for s in prod.steps if s.op == "create" and s.custom]
    assert created and all(s.protect for s in created), [s.urn for s in created if not s.protect]
    assert not any(s.protect for s in committed_runs["staging"].steps)


def test_production_variables_are_protected_and_api_key_masked(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["prod"]  # guards G4
    assert keys(run, "production") == {"HEROKU_APP_NAME", "HEROKU_REGISTRY_IMAGE", "HEROKU_API_KEY"}
    for step in run.resources(VAR):
        assert step.raw_inputs["protected"] is True
    api_key = run.one(VAR, key="HEROKU_API_KEY")
    assert api_key.raw_inputs["masked"] and api_key.inputs["value"] == "[secret]"


def test_production_gets_preboot(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["prod"]
    assert run.one("heroku:app/feature:Feature").raw_inputs["name"] == "preboot"


def test_formation_is_skipped_with_a_warning_until_an_image_is_released(staging_doc: dict[str, Any]) -> None:
    run = run_stack(staging_doc, "staging")  # guards H6
    assert not run.resources("heroku:formation/formation:Formation")
    assert any("imageReleased" in w and "H6" in w for w in run.warnings)
    staging_doc["shipyard:heroku"]["imageReleased"] = True
    released = run_stack(staging_doc, "staging")
    web = released.one("heroku:formation/formation:Formation")
    assert (web.raw_inputs["type"], web.raw_inputs["size"], web.raw_inputs["quantity"]) == ("web", "basic", 1)
    assert web.raw_inputs["appId"] == released.one(COUPLING).raw_inputs["appId"] != "acme-storefront-staging"


def test_two_stacks_in_one_environment_are_refused(prod_doc: dict[str, Any]) -> None:
    prod_doc["shipyard:environment"] = "staging"  # guards G5
    with pytest.raises(SettingsError) as info:
        run_stack(prod_doc, "prod")
    assert "shipyard:environment" in str(info.value) and "claimed by stacks prod and staging" in str(info.value)


def test_a_stack_for_another_gitlab_project_is_refused(prod_doc: dict[str, Any]) -> None:
    prod_doc["shipyard:gitlabProject"] = "acme/other"
    with pytest.raises(SettingsError) as info:
        run_stack(prod_doc, "prod")
    assert "shipyard:gitlabProject" in str(info.value)


def test_a_build_stack_outside_this_repository_gets_placeholders(prod_doc: dict[str, Any]) -> None:
    prod_doc["shipyard:buildStack"] = "acme/delivery/staging"
    run = run_stack(prod_doc, "prod")
    assert "stack reference acme/delivery/staging" in run.placeholders
    assert run.one(COUPLING).raw_inputs["pipeline"] == "offline-placeholder-pipelineId"


def test_bad_settings_stop_the_run_before_any_resource(staging_doc: dict[str, Any]) -> None:
    staging_doc["shipyard:heroku"]["app"] = "Not_Valid"
    staging_doc["shipyard:registy"] = {"name": "x"}
    record: list[Step] = []
    with pytest.raises(SettingsError) as info:
        run_stack(staging_doc, "staging", record=record)
    problems = info.value.problems
    assert any(p.startswith("shipyard:heroku.app:") for p in problems), problems
    assert any(p.startswith("shipyard:registy is not a known setting") for p in problems), problems
    assert [s for s in record if s.custom or s.type != "pulumi:pulumi:Stack"] == []


RUNNER_TYPES = {
    "gitlab:index/userRunner:UserRunner",
    "aws:ssm/parameter:Parameter",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:autoscaling/group:Group",
}
RUNNER = "gitlab:index/userRunner:UserRunner"


def runner_step(run: Run, typ: str, component: str = "runner") -> Step:
    """The one resource of a type inside the runner component of that name."""
    [found] = [s for s in run.resources(typ) if s.parent.endswith(f"shipyard:aws:GitlabRunner::{component}")]
    return found


def image_statements(run: Run, component: str = "runner") -> dict[str, dict[str, Any]]:
    doc = json.loads(runner_step(run, "aws:iam/rolePolicy:RolePolicy", component).raw_inputs["policy"])
    return {s["Sid"]: s for s in doc["Statement"] if s["Sid"] not in COMMON_STATEMENTS}


COMMON_STATEMENTS = {"ReadRunnerToken", "WriteBackRotatedToken", "EcrLogin", "OwnLifecycleHooks"}


def user_data(run: Run, component: str = "runner") -> str:
    return decode(runner_step(run, "aws:ec2/launchTemplate:LaunchTemplate", component).raw_inputs["userData"])


def test_staging_has_the_protected_release_build_runner(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]  # guards G11
    assert {s.type for s in run.steps} >= RUNNER_TYPES
    assert runner_step(run, RUNNER).raw_inputs["accessLevel"] == "ref_protected"
    statements = image_statements(run)
    assert set(statements) == {"PushReleaseImages", "ReadScanFindings"}
    assert statements["PushReleaseImages"]["Resource"] == run.outputs[wiring.REGISTRY_ARN]
    assert "ecr:PutImage" in statements["PushReleaseImages"]["Action"]
    assert "PRIVILEGED=true" in user_data(run)


def test_staging_has_the_review_runner_for_merge_request_builds(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]  # guards G11
    review = runner_step(run, RUNNER, "review-runner").raw_inputs
    assert review["accessLevel"] == "not_protected"
    assert review["tagLists"] == ["shipyard", "review"] == run.outputs["reviewRunnerTags"]
    statements = image_statements(run, "review-runner")
    assert set(statements) == {"PushReviewImages", "PullReleaseLayerCache"}
    assert statements["PushReviewImages"]["Resource"] == (
        "arn:aws:ecr:eu-west-1:123456789012:repository/acme/storefront-review"
    )
    assert run.outputs["reviewRegistryUrl"].endswith("/acme/storefront-review")
    assert statements["PullReleaseLayerCache"]["Resource"] == run.outputs[wiring.REGISTRY_ARN]
    assert "PRIVILEGED=true" in user_data(run, "review-runner")  # it builds
    assert run.outputs["reviewRunnerAsgName"] == "shipyard-staging-review-runner"
    assert run.outputs["reviewRunnerTokenParameter"] == "/shipyard/staging/gitlab-review-runner-token"


def test_prod_has_a_protected_pull_only_deploy_runner(committed_runs: dict[str, Run]) -> None:
    staging, run = committed_runs["staging"], committed_runs["prod"]
    runner = run.one(RUNNER)
    assert runner.raw_inputs["accessLevel"] == "ref_protected" and runner.protect
    statements = image_statements(run)
    assert set(statements) == {"PullReleaseImages", "ReadScanFindings"}
    assert statements["PullReleaseImages"]["Resource"] == staging.outputs[wiring.REGISTRY_ARN]
    assert statements["ReadScanFindings"]["Resource"] == staging.outputs[wiring.REGISTRY_ARN]
    assert "ecr:PutImage" not in json.dumps(statements)
    assert "PRIVILEGED=false" in user_data(run)
    assert run.one("aws:ssm/parameter:Parameter").raw_inputs["name"] == "/shipyard/prod/gitlab-runner-token"
    assert not run.resources("aws:kms/key:Key")  # the build stack signs; prod only verifies


def test_stack_outputs_name_the_runners_but_hold_no_token(committed_runs: dict[str, Run]) -> None:  # guards R1
    run = committed_runs["staging"]
    tokens = [s.raw_inputs["valueWo"] for s in run.resources("aws:ssm/parameter:Parameter")]  # glrt- tokens
    assert len(tokens) == 2 and all(t.startswith("glrt-") for t in tokens)  # real tokens: absence means something
    assert run.outputs["runnerTokenParameter"] == "/shipyard/staging/gitlab-runner-token"
    assert run.outputs["runnerAsgName"] == "shipyard-staging-runner"
    assert run.outputs["runnerTags"] == stack_document("staging")["shipyard:runner"]["tags"]
    assert not any(t in json.dumps(run.outputs) for t in tokens)
    assert not run.secret_outputs


def test_no_runner_without_runner_settings(staging_doc: dict[str, Any]) -> None:
    del staging_doc["shipyard:runner"], staging_doc["shipyard:reviewRunner"]
    run = run_stack(staging_doc, "staging")
    assert not RUNNER_TYPES & {s.type for s in run.steps}
    assert "runnerId" not in run.outputs and "reviewRunnerId" not in run.outputs
    # The key stays (its signatures verify as long as it exists), and nobody may sign with it.
    assert "kms:Sign" not in run.one("aws:kms/key:Key").raw_inputs["policy"]
