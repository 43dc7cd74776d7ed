"""The GitLab environment and CI/CD variables: scopes, masking, protection, secrets in state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pytest

from infra.components.ci_variables import CiVariables, CiVariablesArgs, Variable
from infra.offline.engine import SECRET, RecordingMonitor, find_one
from infra.settings import SettingsError
from tests.conftest import run_stack

VAR = "gitlab:index/projectVariable:ProjectVariable"
KEY = "HRKU-ciVariablesTest000000"


def variables(**overrides: Any) -> CiVariables:
    args = CiVariablesArgs(
        project="acme/web",
        environment="production",
        external_url="https://acme-web.herokuapp.com/",
        scoped=[
            Variable("HEROKU_APP_NAME", "acme-web"),
            Variable("HEROKU_API_KEY", pulumi.Output.secret(KEY), secret=True),
        ],
        unscoped=[Variable("AWS_DEFAULT_REGION", "eu-west-1")],
        protected=True,
    )
    return CiVariables("production", replace(args, **overrides))


def settled(ci: CiVariables) -> pulumi.Output:
    return pulumi.Output.all(ci.environment.urn, *[v.urn for v in ci.variables.values()])


@pulumi.runtime.test
def test_environment_is_named_tiered_and_stopped_before_destroy(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables()  # guards G7

    def check(_: list[str]) -> None:
        env = find_one(mocked.steps, "gitlab:index/projectEnvironment:ProjectEnvironment").raw_inputs
        assert (env["name"], env["tier"], env["stopBeforeDestroy"]) == ("production", "production", True)
        assert env["externalUrl"] == "https://acme-web.herokuapp.com/"

    return settled(ci).apply(check)


@pulumi.runtime.test
def test_api_key_is_masked_hidden_protected_and_secret_in_state(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables()  # guards G1, G3, G4

    def check(_: list[str]) -> None:
        key = find_one(mocked.steps, VAR, key="HEROKU_API_KEY")
        assert key.raw_inputs["environmentScope"] == "production"
        assert key.raw_inputs["masked"] and key.raw_inputs["hidden"] and key.raw_inputs["protected"]
        assert key.inputs["value"] == SECRET
        assert key.raw_inputs["value"] == KEY

    return settled(ci).apply(check)


@pulumi.runtime.test
def test_hidden_can_be_turned_off_for_older_gitlab(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables(hide_secrets=False)  # guards G3

    def check(_: list[str]) -> None:
        key = find_one(mocked.steps, VAR, key="HEROKU_API_KEY").raw_inputs
        assert key["masked"] and not key["hidden"]

    return settled(ci).apply(check)


@pulumi.runtime.test
def test_plain_variables_are_neither_masked_nor_secret(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables()

    def check(_: list[str]) -> None:
        name = find_one(mocked.steps, VAR, key="HEROKU_APP_NAME")
        assert name.inputs["value"] == "acme-web"
        assert not name.raw_inputs["masked"] and not name.raw_inputs["hidden"]

    return settled(ci).apply(check)


@pulumi.runtime.test
def test_unscoped_variables_reach_every_environment_unprotected(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables()  # guards G5

    def check(_: list[str]) -> None:
        region = find_one(mocked.steps, VAR, key="AWS_DEFAULT_REGION").raw_inputs
        assert region["environmentScope"] == "*"
        assert region["protected"] is False

    return settled(ci).apply(check)


@pulumi.runtime.test
def test_staging_variables_are_not_protected(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables(environment="staging", protected=False)  # guards G4: MR and branch pipelines deploy staging

    def check(_: list[str]) -> None:
        for step in mocked.steps:
            if step.type == VAR and step.raw_inputs["key"].startswith("HEROKU_"):
                assert step.raw_inputs["environmentScope"] == "staging"
                assert step.raw_inputs["protected"] is False

    return settled(ci).apply(check)


def test_a_value_known_only_at_deploy_time_is_checked_before_gitlab_sees_it(mocked: RecordingMonitor) -> None:
    # guards G2: the value resolves inside the deployment, so the check runs inside apply.
    late = pulumi.Output.from_input("x").apply(lambda _: "not maskable: has spaces")

    @pulumi.runtime.test
    def build() -> pulumi.Output:
        ci = variables(scoped=[Variable("HEROKU_API_KEY", late, secret=True)], unscoped=[])
        return settled(ci)

    with pytest.raises(SettingsError) as info:
        build()
    assert "HEROKU_API_KEY" in str(info.value)
    assert "has spaces" not in str(info.value)


@pulumi.runtime.test
def test_named_gitlab_resources_are_deleted_before_replacement(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables()  # guards G5: a key and scope, or an environment name, exist once

    def check(_: list[str]) -> None:
        named = [s for s in mocked.steps if s.type.startswith("gitlab:index/project")]
        assert named and all(s.delete_before_replace for s in named)

    return settled(ci).apply(check)


# --- adopting an environment that already exists (G7) ---------------------------------------------

ENVIRONMENT = "gitlab:index/projectEnvironment:ProjectEnvironment"


@pulumi.runtime.test
def test_an_existing_environment_is_imported_by_project_and_id(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables(project="acme/web", adopt_environment_id=4242)  # guards G7

    def check(_: Any) -> None:
        # `<project>:<environment id>`, the project spelled as the program passes it.
        assert [s.import_id for s in mocked.steps if s.type == ENVIRONMENT] == ["acme/web:4242"]
        assert {s.import_id for s in mocked.steps if s.type == VAR} == {""}  # variables are created, never imported

    return settled(ci).apply(check)


@pulumi.runtime.test
def test_without_an_id_the_environment_is_created(mocked: RecordingMonitor) -> pulumi.Output:
    ci = variables()

    def check(_: Any) -> None:
        assert [s.import_id for s in mocked.steps if s.type == ENVIRONMENT] == [""]

    return settled(ci).apply(check)


def test_the_stack_setting_adopts_the_environment(staging_doc: dict[str, Any]) -> None:  # guards G7
    staging_doc["shipyard:gitlabEnvironmentId"] = 1234  # as `pulumi config set gitlabEnvironmentId 1234` stores it
    assert run_stack(staging_doc, "staging").one(ENVIRONMENT).import_id == "acme/storefront:1234"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("staging", "Input should be a valid integer"),
        ("12.5", "Input should be a valid integer"),
        (0, "Input should be greater than or equal to 1"),
        (-7, "Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_environment_id_is_a_settings_error(staging_doc: dict[str, Any], value: Any, message: str) -> None:
    staging_doc["shipyard:gitlabEnvironmentId"] = value
    with pytest.raises(SettingsError) as info:
        run_stack(staging_doc, "staging")
    assert [p for p in info.value.problems if p.startswith(f"shipyard:gitlabEnvironmentId: {message}")]
