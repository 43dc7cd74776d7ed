"""Settings that real AWS and GitLab Runner would refuse later are refused when the settings are
read: a runner release shipyard has no facts for, a Graviton host building Heroku's amd64 images."""

from __future__ import annotations

import pytest

from infra import facts
from infra.settings import architecture
from tests.test_settings import base, parse, problems


def test_the_default_runner_release_has_a_fact_file() -> None:  # guards R17
    version = parse(base(runner={"instanceType": "t3.large", "protectedOnly": True})).runner.gitlab_runner_version
    assert facts.load(f"gitlab-runner/{version}")["sources"]


def test_a_runner_release_without_a_fact_file_names_the_file_to_add() -> None:  # guards R12, R17
    found = problems(base(runner={"instanceType": "t3.large", "protectedOnly": True, "gitlabRunnerVersion": "19.2.0"}))
    assert len(found) == 1
    assert found[0].startswith("shipyard:runner.gitlabRunnerVersion: ")
    assert "add infra/facts/gitlab-runner/19.2.0.yaml" in found[0]
    assert "releases known: 19.1.1" in found[0]


@pytest.mark.parametrize("instance_type", ["t4g.large", "m7g.xlarge", "c6gn.2xlarge", "m6gd.large"])
def test_a_graviton_build_runner_is_refused(instance_type: str) -> None:  # guards R22
    found = problems(base(runner={"instanceType": instance_type, "protectedOnly": True}))
    assert len(found) == 1
    assert f"shipyard:runner.instanceType {instance_type} is a Graviton (arm64) type" in found[0]
    assert "linux/amd64" in found[0]


def test_a_graviton_deploy_runner_is_allowed() -> None:  # guards R22: only the build runner builds
    settings = parse(base(registry=None, buildStack="acme/shipyard/staging", runner={"instanceType": "t4g.small"}))
    assert settings.runner.instance_type == "t4g.small"


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [("t3.large", "x86_64"), ("m7i.large", "x86_64"), ("g4dn.xlarge", "x86_64"), ("c7a.large", "x86_64"),
     ("t4g.small", "arm64"), ("g5g.xlarge", "arm64"), ("im4gn.large", "arm64"), ("hpc7g.4xlarge", "arm64")],
)  # fmt: skip
def test_architecture_follows_the_instance_family(instance_type: str, arch: str) -> None:  # guards R17, R22
    assert architecture(instance_type) == arch


def test_a_graviton_build_runner_is_named_beside_other_mistakes() -> None:  # guards R22
    found = problems(base(runner={"instanceType": "t4g.large", "protectedOnly": True}, heroku={"region": "mars"}))
    assert len(found) == 2
    assert any("t4g.large is a Graviton" in p for p in found)
    assert any(p.startswith("shipyard:heroku.region") for p in found)
