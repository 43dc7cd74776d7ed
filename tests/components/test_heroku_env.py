"""The Heroku environment and pipeline components: names, container stack, ids, secrets, H6."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
from pulumiverse_heroku import team as heroku_team

from infra.components.heroku_env import (
    FormationEntry,
    HerokuEnvironment,
    HerokuEnvironmentArgs,
    HerokuPipeline,
    HerokuPipelineArgs,
)
from infra.offline.engine import SECRET, RecordingMonitor, find_one

APP = "heroku:app/app:App"
PIPELINE_ID = "0b7f2f5e-7a51-4b8c-9d7e-3c2b1a0f9e8d"


def environment(**overrides: Any) -> HerokuEnvironment:
    args = HerokuEnvironmentArgs(app_name="acme-web-staging", region="eu", stage="staging", pipeline_id=PIPELINE_ID)
    return HerokuEnvironment("staging", replace(args, **overrides))


@pulumi.runtime.test
def test_app_is_explicitly_named_on_the_container_stack(mocked: RecordingMonitor) -> pulumi.Output:  # guards H2
    env = environment()

    def check(values: list[str]) -> None:
        url, hostname = values
        app = find_one(mocked.steps, APP)
        assert app.raw_inputs["name"] == "acme-web-staging"
        assert app.raw_inputs["stack"] == "container"
        assert app.raw_inputs["region"] == "eu"
        assert url == f"https://{hostname}/"  # the app's own address, as the provider reports it

    return pulumi.Output.all(env.web_url, env.app.heroku_hostname).apply(check)


@pulumi.runtime.test
def test_named_replaceable_resources_are_deleted_before_replacement(mocked: RecordingMonitor) -> pulumi.Output:
    env = environment()  # guards H4

    def check(_: str) -> None:
        assert find_one(mocked.steps, APP).delete_before_replace
        assert find_one(mocked.steps, "heroku:pipeline/coupling:Coupling").delete_before_replace

    return env.coupling.urn.apply(check)


@pulumi.runtime.test
def test_children_take_the_app_uuid_not_its_name(mocked: RecordingMonitor) -> pulumi.Output:  # guards H3
    env = environment(features=["preboot"])

    def check(values: list[str]) -> None:
        app_id = values[0]
        coupling = find_one(mocked.steps, "heroku:pipeline/coupling:Coupling").raw_inputs
        feature = find_one(mocked.steps, "heroku:app/feature:Feature").raw_inputs
        assert coupling["appId"] == feature["appId"] == app_id != "acme-web-staging"
        assert coupling["pipeline"] == PIPELINE_ID
        assert coupling["stage"] == "staging"

    return pulumi.Output.all(env.app_id, env.coupling.urn, env.features[0].urn).apply(check)


@pulumi.runtime.test
def test_feature_is_named_exactly(mocked: RecordingMonitor) -> pulumi.Output:  # guards H2
    env = environment(features=["preboot", "runtime-dyno-metadata"])

    def check(_: list[str]) -> None:
        names = sorted(s.raw_inputs["name"] for s in mocked.steps if s.type == "heroku:app/feature:Feature")
        assert names == ["preboot", "runtime-dyno-metadata"]

    return pulumi.Output.all(*[f.urn for f in env.features]).apply(check)


@pulumi.runtime.test
def test_sensitive_config_vars_are_secret_and_plain_ones_are_not(mocked: RecordingMonitor) -> pulumi.Output:
    env = environment(config_vars={"LOG_LEVEL": "info"}, sensitive_config_vars={"DATABASE_URL": "postgres://x"})

    def check(_: str) -> None:  # guards H5
        app = find_one(mocked.steps, APP)
        assert app.inputs["sensitiveConfigVars"] == SECRET
        assert app.raw_inputs["sensitiveConfigVars"] == {"DATABASE_URL": "postgres://x"}
        assert app.inputs["configVars"] == {"LOG_LEVEL": "info"}
        assert "DATABASE_URL" not in app.raw_inputs["configVars"]

    return env.app.urn.apply(check)


@pulumi.runtime.test
def test_formation_waits_for_the_first_release(mocked: RecordingMonitor) -> pulumi.Output:  # guards H6
    env = environment(formation={"web": FormationEntry("standard-1X", 2)}, image_released=False)
    assert env.formations == []
    assert env.formation_skipped

    def check(_: str) -> None:
        assert not [s for s in mocked.steps if s.type == "heroku:formation/formation:Formation"]

    return env.coupling.urn.apply(check)


@pulumi.runtime.test
def test_formation_applies_once_released(mocked: RecordingMonitor) -> pulumi.Output:  # guards H6
    env = environment(formation={"web": FormationEntry("standard-1X", 2)}, image_released=True)
    assert not env.formation_skipped

    def check(values: list[str]) -> None:
        formation = find_one(mocked.steps, "heroku:formation/formation:Formation").raw_inputs
        assert formation == {"appId": values[0], "type": "web", "size": "standard-1X", "quantity": 2}

    return pulumi.Output.all(env.app_id, env.formations[0].urn).apply(check)


@pulumi.runtime.test
def test_team_app_and_team_pipeline(mocked: RecordingMonitor) -> pulumi.Output:
    env = environment(team="acme")
    pipeline = HerokuPipeline("pipeline", HerokuPipelineArgs(name="acme-web", team="acme"))
    # What Heroku answers for the team named `acme` (here: the mocks' getTeam), asked independently.
    team = heroku_team.get_team_output(name="acme")

    def check(values: list[str]) -> None:
        team_id = values[2]
        assert find_one(mocked.steps, APP).raw_inputs["organization"] == {"name": "acme"}
        owned = find_one(mocked.steps, "heroku:pipeline/pipeline:Pipeline").raw_inputs
        assert owned["name"] == "acme-web"  # guards H2
        assert owned["owner"] == {"id": team_id, "type": "team"}  # the team's id, looked up by its name

    return pulumi.Output.all(env.app.urn, pipeline.pipeline.urn, team.id).apply(check)
