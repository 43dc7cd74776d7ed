"""The runner on the real stack documents: no runner setting replaces the Auto Scaling group or any
other runner resource that cannot be replaced safely (R19, P11), and every ARN the runner's role
names carries the region's partition (P9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import facts
from infra.cli.diff import value_changes
from infra.cli.engine import Run, Step
from infra.facts.replacements import replace_reasons
from infra.settings import RunnerSettings
from tests.conftest import run_stack, stack_document

RUNNER = "shipyard:runner"
GROUP = "aws:autoscaling/group:Group"
FIELDS = {field.alias or name: name for name, field in RunnerSettings.model_fields.items()}
# A valid value per runner setting, different from the staging stack's. A setting added to
# RunnerSettings fails test_no_runner_setting_replaces_a_runner_resource until it is given one.
CHANGED: dict[str, Any] = {
    "instanceType": "m6i.xlarge",  # x86_64: the build runner builds Heroku's linux/amd64 images
    "concurrent": 8,
    "diskGb": 200,
    "tags": ["shipyard", "docker", "build", "large"],
    "protectedOnly": True,
    "maximumTimeout": 7200,
    "subnetIds": ["subnet-0abc1234", "subnet-0def5678"],
    "dockerVersion": "25.0.8",
}
# Replacements a setting is meant to cause: a security group belongs to one VPC, and subnets of
# another VPC move the runner there (the mock's default VPC differs from the given subnets' VPC).
EXPECTED_REPLACEMENTS = {"subnetIds": {("aws:ec2/securityGroup:SecurityGroup", "vpcId")}}


def runner_steps(run: Run) -> dict[str, Step]:
    """URN → step of every resource inside the runner component."""
    return {s.urn: s for s in run.steps if "shipyard:aws:GitlabRunner$" in s.urn}


def other_runner_release(current: str) -> str | None:
    """Another gitlab-runner release that the settings accept: one with a fact file (R17)."""
    releases = sorted(p.stem for p in (facts.FACTS_DIR / "gitlab-runner").glob("*.yaml"))
    return next((v for v in releases if v != current), None)


def changed_value(key: str, runner: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
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
    return CHANGED[key]


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_no_runner_setting_replaces_a_runner_resource(
    key: str, committed_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # guards R19, P11: `protect` makes any replacement fail production's `pulumi up`.
    doc = stack_document("staging")
    value = changed_value(key, doc[RUNNER], monkeypatch, tmp_path)
    assert doc[RUNNER].get(key) != value
    doc[RUNNER] = {**doc[RUNNER], key: value}
    before, after = runner_steps(committed_runs["staging"]), runner_steps(run_stack(doc))
    assert before.keys() == after.keys()
    replaced, changed = set(), False
    for urn, new in after.items():
        paths = [c.path for c in value_changes(before[urn].inputs, new.inputs)]
        changed = changed or bool(paths)
        replaced |= {(new.type, path) for path in replace_reasons(new.type, paths)}
    assert changed, f"changing {key} reaches no runner resource"
    assert not {r for r in replaced if r[0] == GROUP}
    assert replaced == EXPECTED_REPLACEMENTS.get(key, set())


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_every_arn_of_the_runner_role_carries_the_region_partition(region: str, partition: str) -> None:
    # guards P9
    doc = stack_document("staging")
    doc["aws:region"] = region
    run = run_stack(doc)
    policy = run.one("aws:iam/rolePolicy:RolePolicy").raw_inputs["policy"]
    resources = [s["Resource"] for s in json.loads(policy)["Statement"]]
    assert "arn:aws:" not in policy
    assert [r for r in resources if r != "*"] and all(r.startswith(f"arn:{partition}:") for r in resources if r != "*")
    attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment").raw_inputs["policyArn"]
    assert attachment == f"arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
    profile = run.one("aws:ec2/launchTemplate:LaunchTemplate").raw_inputs["iamInstanceProfile"]["arn"]
    assert profile.startswith(f"arn:{partition}:iam::")
