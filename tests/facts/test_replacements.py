"""The replace-on-change fact table (infra/facts/replace-on-change.yaml) and its API: it covers every
resource type the program creates, each entry names its source, the SDK versions it was read for
are the locked ones, and a few entries are pinned to what their upstream source says (P11)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from infra.facts import load
from infra.facts.replacements import (
    FACTS,
    UnknownType,
    facts_of,
    identity_changes,
    known_types,
    loses,
    replace_reasons,
)
from infra.offline.engine import Run
from tests.conftest import ROOT

ASG = "aws:autoscaling/group:Group"
APP = "heroku:app/app:App"
ECR = "aws:ecr/repository:Repository"
SSM = "aws:ssm/parameter:Parameter"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
# Being added to the registry component; the table must know it before the program creates it.
SCANNING = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"


def test_every_type_the_committed_plans_create_or_read_is_in_the_fact_table(committed_runs: dict[str, Run]) -> None:
    # guards P11: a resource type the table lacks would have its replacements go unseen in the diff
    types = {s.type for run in committed_runs.values() for s in run.steps if s.custom}
    assert types, "the committed plans create resources"
    missing = sorted(types - known_types())
    assert not missing, f"add these types to infra/facts/{FACTS}.yaml with their sources: {missing}"
    assert SCANNING in known_types()


def test_a_type_missing_from_the_table_is_an_error_naming_the_fact_file() -> None:
    # guards P11: never an empty answer for a type nobody has looked up
    with pytest.raises(UnknownType, match=r"aws:sns/topic:Topic is not in infra/facts/replace-on-change\.yaml"):
        replace_reasons("aws:sns/topic:Topic", ["name"])


def test_every_entry_names_one_of_the_listed_sources_and_says_what_it_is() -> None:
    doc = load(FACTS)
    listed = {s.get("ref") or s.get("url") for s in doc["sources"]}
    for token in known_types():
        facts = facts_of(token)
        assert facts.source in listed, f"{token}: source {facts.source} is not under sources:"
        assert facts.noun and all(isinstance(p, str) and p for p in facts.replace_on_change)


def locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (version,) = [p["version"] for p in lock["package"] if p["name"] == package]
    return str(version)


@pytest.mark.parametrize("package", ["pulumi-aws", "pulumi-gitlab", "pulumiverse-heroku"])
def test_the_facts_were_read_for_the_locked_sdk_versions(package: str) -> None:
    # An SDK upgrade in uv.lock fails here until the table is read again at the new upstream version.
    bridge: dict[str, Any] = load(FACTS)["bridges"][package]
    assert str(bridge["sdk"]) == locked_version(package)


def test_heroku_facts_come_from_the_provider_tag_the_locked_sdk_bridges() -> None:
    # pulumiverse-heroku 1.0.4 requires terraform-provider-heroku v5.2.10 (its provider/go.mod).
    assert load(FACTS)["bridges"]["pulumiverse-heroku"]["upstreamTag"] == "v5.2.10"
    for token in known_types():
        if token.startswith("heroku:"):
            assert facts_of(token).source.startswith("heroku/terraform-provider-heroku@v5.2.10:")


def test_a_changed_initial_lifecycle_hook_forces_a_new_auto_scaling_group() -> None:
    # guards R19: terraform-provider-aws PR #34260 made every initial_lifecycle_hook field ForceNew
    changed = ["initialLifecycleHooks[1].heartbeatTimeout", "minSize", "launchTemplate.version"]
    assert replace_reasons(ASG, changed) == ["initialLifecycleHooks[1].heartbeatTimeout"]
    assert replace_reasons(ASG, ["initialLifecycleHooks[2]"]) == ["initialLifecycleHooks[2]"]  # a hook added
    assert replace_reasons(ASG, ["name"]) == ["name"]


def test_heroku_app_region_replaces_the_app_and_its_name_changes_in_place() -> None:
    # guards H4: region, space, internal routing and the team force a new app; a rename does not
    assert replace_reasons(APP, ["region", "configVars.LOG_LEVEL", "name", "stack"]) == ["region"]
    assert replace_reasons(APP, ["organization"]) == ["organization"]  # the team block, added whole
    assert replace_reasons(APP, ["organization.locked"]) == []
    assert identity_changes(APP, ["name", "region"]) == ["name"]
    assert loses(APP) is not None and "URL" in str(loses(APP))


def test_ecr_repository_name_and_encryption_replace_it_and_its_images_go_with_it() -> None:
    changed = ["name", "encryptionConfigurations[0].kmsKey", "imageTagMutability", "imageScanningConfiguration"]
    assert replace_reasons(ECR, changed) == ["name", "encryptionConfigurations[0].kmsKey"]
    assert replace_reasons(ECR, ["encryptionConfigurations"]) == ["encryptionConfigurations"]
    assert "images" in str(loses(ECR))


def test_ssm_parameter_name_replaces_it_and_its_tier_only_when_downgraded() -> None:
    assert replace_reasons(SSM, ["name", "value", "description", "type"]) == ["name"]
    # The tier is ForceNew only through CustomizeDiff, from Advanced to Standard.
    assert replace_reasons(SSM, ["tier"], {"tier": ("Advanced", "Standard")}) == ["tier"]
    assert replace_reasons(SSM, ["tier"], {"tier": ("Standard", "Advanced")}) == []
    assert replace_reasons(SSM, ["tier"]) == ["tier"]  # values unknown: it may replace
    assert "version history" in str(loses(SSM))


def test_launch_template_instance_type_and_user_data_are_a_new_version_not_a_replacement() -> None:
    changed = ["instanceType", "userData", "imageId", "blockDeviceMappings[0].ebs.volumeSize"]
    assert replace_reasons(LAUNCH_TEMPLATE, changed) == []
    assert loses(LAUNCH_TEMPLATE) is None


@pytest.mark.parametrize(
    ("token", "path"),
    [
        ("gitlab:index/userRunner:UserRunner", "projectId"),
        ("gitlab:index/projectEnvironment:ProjectEnvironment", "name"),
        ("gitlab:index/projectVariable:ProjectVariable", "environmentScope"),
        ("heroku:pipeline/coupling:Coupling", "stage"),
        ("aws:ec2/securityGroup:SecurityGroup", "description"),
    ],
)
def test_identity_and_scope_inputs_force_a_replacement(token: str, path: str) -> None:
    assert replace_reasons(token, [path]) == [path]


def test_the_replacements_that_lose_data_or_identity_say_what_they_lose() -> None:
    losing = {t for t in known_types() if loses(t)}
    assert {
        ECR,
        APP,
        SSM,
        "gitlab:index/userRunner:UserRunner",
        "gitlab:index/projectEnvironment:ProjectEnvironment",
    } <= losing
    assert "token" in str(loses("gitlab:index/userRunner:UserRunner"))
    assert "deployment history" in str(loses("gitlab:index/projectEnvironment:ProjectEnvironment"))
    assert facts_of("pulumi:pulumi:StackReference").read_only


def test_every_type_a_fleet_runner_creates_is_in_the_fact_table(fleet_run: Run) -> None:
    # guards P11, R15: the workers' group, template, ingress rule and S3 cache are looked up too
    types = {s.type for s in fleet_run.steps if s.custom}
    assert "aws:s3/bucket:Bucket" in types and "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" in types
    assert not sorted(types - known_types())
