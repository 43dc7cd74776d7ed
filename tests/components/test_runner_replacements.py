"""The runners on the real stack documents: no runner setting replaces the Auto Scaling group or any
other runner resource that cannot be replaced safely (R19, P11), and every ARN the runners' roles
name carries the region's partition (P9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import facts
from infra.facts.replacements import replace_reasons
from infra.offline.diff import value_changes
from infra.offline.engine import Run, Step
from infra.settings import FleetSettings, ReviewRunnerSettings, RunnerSettings, SettingsError
from tests.conftest import fleet_document, run_stack, stack_document

GROUP = "aws:autoscaling/group:Group"
FIELDS = {field.alias or name: name for name, field in RunnerSettings.model_fields.items()}
# Each runner of the committed stacks: (stack, its settings key) → the runner component's name.
# The build stack (staging) has the protected release build runner and the review runner (G11),
# production its deploy runner.
RUNNERS = {
    ("staging", "shipyard:runner"): "runner",
    ("staging", "shipyard:reviewRunner"): "review-runner",
    ("prod", "shipyard:runner"): "runner",
}
# A valid value per runner setting, different from the committed stacks' values. A setting added to
# RunnerSettings fails test_no_runner_setting_replaces_a_runner_resource until it is given one.
CHANGED: dict[str, Any] = {
    "instanceType": "m6i.xlarge",  # x86_64: the build runners build Heroku's linux/amd64 images (R22)
    "concurrent": 8,
    "diskGb": 200,
    "tags": ["shipyard", "docker", "build", "large"],
    "protectedOnly": False,  # production's deploy runner only: see BUILD_STACK_FIXED
    "maximumTimeout": 7200,
    "subnetIds": ["subnet-0abc1234", "subnet-0def5678"],
    "dockerVersion": "25.0.8",
}
# Where a runner needs its own changed value: each runner keeps tags of its own purpose.
CHANGED_FOR: dict[tuple[str, str], dict[str, Any]] = {
    ("staging", "shipyard:reviewRunner"): {"tags": ["shipyard", "review", "large"]},
    ("prod", "shipyard:runner"): {"tags": ["shipyard", "deploy", "production", "large"]},
}
# Settings that cannot change on the build stack's runners: a settings rule (G11) requires
# `protectedOnly: true` of the release build runner, whose role pushes and signs release images,
# and refuses it on the review runner, which must pick up merge-request jobs. So protectedOnly is
# exercised on production's deploy runner, where either value is valid, and
# test_the_build_stacks_runners_cannot_change_protected_only checks that the rule exists.
BUILD_STACK_FIXED = {"protectedOnly"}
# Fleet mode adds resources (the workers) rather than changing the host's: it has tests of its own
# below, test_fleet_mode_replaces_no_resource_of_the_host and test_no_fleet_setting_replaces_a_resource.
FLEET_KEYS = {"mode", "fleet"}
CASES = [
    (stack, runner, key)
    for (stack, runner) in RUNNERS
    for key in sorted(FIELDS)
    if not (stack == "staging" and key in BUILD_STACK_FIXED) and key not in FLEET_KEYS
]
# A valid value per fleet setting, different from the defaults.
FLEET_CHANGED: dict[str, Any] = {
    "instanceTypes": ["m6i.xlarge", "m5.xlarge"],
    "maxInstances": 20,
    "onDemandBase": 2,
    "spot": False,
    "diskGb": 100,
    "idle": [{"periods": ["* 8-18 * * mon-fri"], "timezone": "Europe/Berlin", "idleCount": 2, "idleTime": "30m"}],
    "cacheDays": 30,
}
# Replacements a setting is meant to cause: a security group belongs to one VPC, and subnets of
# another VPC move the runner there (the mock's default VPC differs from the given subnets' VPC).
EXPECTED_REPLACEMENTS = {"subnetIds": {("aws:ec2/securityGroup:SecurityGroup", "vpcId")}}


def runner_steps(run: Run) -> dict[str, Step]:
    """URN → step of every resource inside any runner component."""
    return {s.urn: s for s in run.steps if "shipyard:aws:GitlabRunner$" in s.urn}


def of_runner(urn: str, component: str) -> bool:
    """Whether a runner component's resource belongs to the runner of this name: its children are
    named like it (the GitLab runner) or `<component>-…` (`runner-lt`, `review-runner-lt`)."""
    name = urn.rsplit("::", 1)[1]
    return name == component or name.startswith(f"{component}-")


def other_runner_release(current: str) -> str | None:
    """Another gitlab-runner release that the settings accept: one with a fact file (R17)."""
    releases = sorted(p.stem for p in (facts.FACTS_DIR / "gitlab-runner").glob("*.yaml"))
    return next((v for v in releases if v != current), None)


def changed_value(
    key: str, runner: dict[str, Any], overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Any:
    if key == "gitlabRunnerVersion":
        current = runner.get(key, RunnerSettings.model_fields["gitlab_runner_version"].default)
        release = other_runner_release(current)
        if release is None:
            # Only one release has a fact file: stand in the next patch release with the same
            # files, known to this test alone, so that a version change is exercised all the same.
            major, minor, patch = current.split(".")
            release = f"{major}.{minor}.{int(patch) + 1}"
            fake = tmp_path / f"{release}.yaml"
            fake.write_text(facts.path_of(f"gitlab-runner/{current}").read_text().replace(current, release))
            real = facts.path_of
            monkeypatch.setattr(
                facts, "path_of", lambda name: fake if name == f"gitlab-runner/{release}" else real(name)
            )
        return release
    assert key in CHANGED, f"give the runner setting {key} a changed value in CHANGED"
    return overrides.get(key, CHANGED[key])


def test_the_review_runner_has_the_release_runners_settings() -> None:
    # The cases below give both build-stack runners the same settings, from RunnerSettings.
    assert {field.alias or name for name, field in ReviewRunnerSettings.model_fields.items()} == set(FIELDS)


@pytest.mark.parametrize(("stack", "runner", "key"), CASES)
def test_no_runner_setting_replaces_a_runner_resource(
    stack: str, runner: str, key: str, committed_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # guards R19, P11: `protect` makes any replacement fail production's `pulumi up`.
    doc = stack_document(stack)
    value = changed_value(key, doc[runner], CHANGED_FOR.get((stack, runner), {}), monkeypatch, tmp_path)
    assert doc[runner].get(key) != value
    doc[runner] = {**doc[runner], key: value}
    before, after = runner_steps(committed_runs[stack]), runner_steps(run_stack(doc, stack))
    assert before.keys() == after.keys()
    component = RUNNERS[(stack, runner)]
    replaced, changed = set(), False
    for urn, new in after.items():
        paths = [c.path for c in value_changes(before[urn].inputs, new.inputs)]
        if not of_runner(urn, component):
            assert not paths, f"changing {runner}.{key} changes {urn}, a resource of another runner"
            continue
        changed = changed or bool(paths)
        replaced |= {(new.type, path) for path in replace_reasons(new.type, paths)}
    assert changed, f"changing {key} reaches no resource of {runner}"
    assert not {r for r in replaced if r[0] == GROUP}
    assert replaced == EXPECTED_REPLACEMENTS.get(key, set())


def replacements(before: dict[str, Step], after: dict[str, Step]) -> tuple[set[tuple[str, str]], set[str]]:
    """(type, path) of every replacement between two runs' runner resources, and the resources changed."""
    replaced, changed = set(), set()
    for urn, new in after.items():
        if urn in before and new.custom:  # a component (the workers') has no provider inputs
            paths = [c.path for c in value_changes(before[urn].inputs, new.inputs)]
            changed |= {urn} if paths else set()
            replaced |= {(new.type, path) for path in replace_reasons(new.type, paths)}
    return replaced, changed


@pytest.mark.parametrize(("stack", "runner"), list(RUNNERS))
def test_fleet_mode_replaces_no_resource_of_the_host(stack: str, runner: str, committed_runs: dict[str, Run]) -> None:
    # guards R15, P11: switching a runner to fleet mode updates its host (now the manager) in place
    doc = stack_document(stack)
    doc[runner] = {**doc[runner], "mode": "fleet"}
    before, after = runner_steps(committed_runs[stack]), runner_steps(run_stack(doc, stack))
    assert before.keys() <= after.keys()
    added = {urn.rsplit("::", 1)[1] for urn in after.keys() - before.keys()}
    component = RUNNERS[(stack, runner)]
    assert added and all(name.startswith(f"{component}-workers") for name in added)
    replaced, changed = replacements(before, after)
    assert replaced == set()
    assert all(of_runner(urn, component) for urn in changed), "another runner's resources changed"


def test_no_fleet_setting_replaces_a_resource(fleet_run: Run) -> None:
    # guards R15, P11: the workers' settings are updates (a new template version, the group's sizes)
    assert set(FLEET_CHANGED) == {f.alias or name for name, f in FleetSettings.model_fields.items()}
    doc = fleet_document()
    doc["shipyard:runner"]["fleet"] = FLEET_CHANGED
    before, after = runner_steps(fleet_run), runner_steps(run_stack(doc))
    assert before.keys() == after.keys()
    replaced, changed = replacements(before, after)
    assert replaced == set()
    names = {urn.rsplit("::", 1)[1] for urn in changed}
    # Each setting reaches the workers (group, template, cache expiry) or the manager's config.toml.
    assert {"runner-workers-asg", "runner-workers-lt", "runner-workers-cache-expiry", "runner-lt"} <= names
    assert all(of_runner(urn, "runner") for urn in changed)


@pytest.mark.parametrize(("runner", "refused", "problem"), [
    ("shipyard:runner", False, "shipyard:runner.protectedOnly must be true in the build stack"),
    ("shipyard:reviewRunner", True, "shipyard:reviewRunner.protectedOnly: must be false"),
])  # fmt: skip
def test_the_build_stacks_runners_cannot_change_protected_only(runner: str, refused: bool, problem: str) -> None:
    # guards G11; why BUILD_STACK_FIXED leaves protectedOnly out of the build stack's cases above
    doc = stack_document("staging")
    assert doc[runner].get("protectedOnly", False) is not refused  # the committed value, the only valid one
    doc[runner] = {**doc[runner], "protectedOnly": refused}
    with pytest.raises(SettingsError, match=problem):
        run_stack(doc)


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_every_arn_of_the_runner_role_carries_the_region_partition(region: str, partition: str) -> None:
    # guards P9, for each of the build stack's runners: the release build runner and the review runner
    doc = stack_document("staging")
    doc["aws:region"] = region
    run = run_stack(doc)
    components = [name for (stack, key), name in RUNNERS.items() if stack == "staging"]
    assert components == ["runner", "review-runner"]

    def of_each_runner(typ: str, suffix: str) -> dict[str, Step]:
        found = {s.urn.rsplit("::", 1)[1]: s for s in run.resources(typ)}
        # every one in the stack is a runner's: none goes unchecked
        assert sorted(found) == sorted(f"{c}-{suffix}" for c in components), typ
        return {c: found[f"{c}-{suffix}"] for c in components}

    policies = of_each_runner("aws:iam/rolePolicy:RolePolicy", "least-privilege")
    attachments = of_each_runner("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "session-manager")
    templates = of_each_runner("aws:ec2/launchTemplate:LaunchTemplate", "lt")
    for component in components:
        policy = policies[component].raw_inputs["policy"]
        resources = [s["Resource"] for s in json.loads(policy)["Statement"]]
        assert "arn:aws:" not in policy, component
        assert [r for r in resources if r != "*"], component
        assert all(r.startswith(f"arn:{partition}:") for r in resources if r != "*"), component
        attachment = attachments[component].raw_inputs["policyArn"]
        assert attachment == f"arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore", component
        profile = templates[component].raw_inputs["iamInstanceProfile"]["arn"]
        assert profile.startswith(f"arn:{partition}:iam::"), component
