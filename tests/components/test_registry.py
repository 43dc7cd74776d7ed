"""The ECR registry component: what AWS is asked for, checked on the recorded registrations."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pulumi

from infra.cli.engine import RecordingMonitor, find_one
from infra.components.registry import Registry, RegistryArgs

REPO = "aws:ecr/repository:Repository"


def make(**overrides: Any) -> Registry:
    args = RegistryArgs(name="acme/web", keep_images=25, cache_tag="buildcache")
    return Registry("registry", replace(args, **overrides))


@pulumi.runtime.test
def test_repository_has_explicit_name_scan_on_push_and_kms_encryption(mocked: RecordingMonitor) -> pulumi.Output:
    # guards P5: the URL comes from the mock's camelCase `repositoryUrl`, read as `repository_url`.
    registry = make()

    def check(url: str) -> None:
        repo = find_one(mocked.steps, REPO).raw_inputs
        assert repo["name"] == "acme/web"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
        assert repo["forceDelete"] is False
        assert url == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/web"

    return registry.repository_url.apply(check)


@pulumi.runtime.test
def test_release_tags_are_immutable_and_only_the_cache_tag_moves(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make(cache_tag="layers")

    def check(_: str) -> None:
        repo = find_one(mocked.steps, REPO).raw_inputs
        assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert repo["imageTagMutabilityExclusionFilters"] == [{"filter": "layers", "filterType": "WILDCARD"}]

    return registry.repository_arn.apply(check)


@pulumi.runtime.test
def test_lifecycle_keeps_newest_tagged_and_expires_untagged_after_a_day(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make(keep_images=7)

    def check(_: str) -> None:
        policy = json.loads(find_one(mocked.steps, "aws:ecr/lifecyclePolicy:LifecyclePolicy").raw_inputs["policy"])
        by_status = {r["selection"]["tagStatus"]: r for r in policy["rules"]}
        assert by_status["untagged"]["selection"]["countType"] == "sinceImagePushed"
        assert by_status["untagged"]["selection"]["countNumber"] == 1
        tagged = by_status["tagged"]["selection"]
        assert (tagged["countType"], tagged["countNumber"]) == ("imageCountMoreThan", 7)
        # ECR refuses a tagged rule without a tag list.
        assert tagged["tagPatternList"] == ["*"]
        priorities = [r["rulePriority"] for r in policy["rules"]]
        assert len(set(priorities)) == len(priorities)

    return registry.lifecycle_policy.urn.apply(check)


@pulumi.runtime.test
def test_no_repository_policy_without_pull_principals(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make()
    assert registry.pull_policy is None

    def check(_: str) -> None:
        assert not [s for s in mocked.steps if s.type == "aws:ecr/repositoryPolicy:RepositoryPolicy"]

    return registry.lifecycle_policy.urn.apply(check)


@pulumi.runtime.test
def test_pull_principals_get_read_only_actions(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make(pull_principals=["210987654321", "arn:aws:iam::210987654321:role/deployer"])

    def check(_: str) -> None:
        doc = json.loads(find_one(mocked.steps, "aws:ecr/repositoryPolicy:RepositoryPolicy").raw_inputs["policy"])
        (statement,) = doc["Statement"]
        assert statement["Principal"]["AWS"] == [
            "arn:aws:iam::210987654321:root",
            "arn:aws:iam::210987654321:role/deployer",
        ]
        assert all(a.startswith(("ecr:BatchGet", "ecr:GetDownload", "ecr:BatchCheck")) for a in statement["Action"])

    assert registry.pull_policy is not None
    return registry.pull_policy.urn.apply(check)
