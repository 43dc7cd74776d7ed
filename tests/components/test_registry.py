"""The ECR registry component: what AWS is asked for, checked on the recorded registrations; the
lifecycle policy run through the documented ECR evaluation rules; the partition of the pull policy
in every AWS partition; the registry's settings."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pytest

from infra.components.registry import IMAGES_TAG, Registry, RegistryArgs, lifecycle_policy, review_lifecycle_policy
from infra.offline.engine import RecordingMonitor, find_one
from infra.settings import SettingsError
from policy import policies
from policy.policies import registry_scans
from tests.conftest import run_stack
from tests.moto_aws import Aws

REPO = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
SCANNING = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
PULL = "aws:ecr/repositoryPolicy:RepositoryPolicy"


def make(**overrides: Any) -> Registry:
    args = RegistryArgs(name="acme/web", review_name="acme/web-review", keep_images=25, cache_tag="buildcache")
    return Registry("registry", replace(args, **overrides))


@pulumi.runtime.test
def test_repository_has_explicit_name_kms_encryption_and_no_deprecated_scan_flag(
    mocked: RecordingMonitor,
) -> pulumi.Output:
    # guards P5: the URL comes from the mock's camelCase `repositoryUrl`, read as `repository_url`.
    registry = make()

    def check(url: str) -> None:
        repo = find_one(mocked.steps, REPO, name="acme/web").raw_inputs
        # guards R21: scanning is the registry's; the per-repository flag is deprecated.
        assert "imageScanningConfiguration" not in repo
        assert repo["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
        assert repo["forceDelete"] is False
        assert repo["tags"] == {IMAGES_TAG: "release"}
        assert url == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/web"

    return registry.repository_url.apply(check)


@pulumi.runtime.test
def test_release_tags_are_immutable_and_only_the_cache_and_signature_tags_move(
    mocked: RecordingMonitor,
) -> pulumi.Output:
    registry = make(cache_tag="layers")

    def check(_: str) -> None:
        repo = find_one(mocked.steps, REPO, name="acme/web").raw_inputs
        assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        # cosign writes `sha256-<hex>.sig` beside the image it signs, again when it signs it again.
        assert repo["imageTagMutabilityExclusionFilters"] == [
            {"filter": "layers", "filterType": "WILDCARD"},
            {"filter": "sha256-*", "filterType": "WILDCARD"},
        ]

    return registry.repository_arn.apply(check)


@pulumi.runtime.test
def test_merge_request_images_have_a_repository_of_their_own(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make()  # guards G11: nothing a merge request pushes lands where releases are read

    def check(values: list[str]) -> None:
        url, arn, _ = values
        review = find_one(mocked.steps, REPO, name="acme/web-review")
        inputs = review.raw_inputs
        # A re-run merge-request build pushes its tag again; nothing is released from here.
        assert inputs["imageTagMutability"] == "MUTABLE"
        assert "imageTagMutabilityExclusionFilters" not in inputs
        assert inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
        assert inputs["forceDelete"] is True  # throwaway images never block a delete
        # The mark the release-push-protected-only policy reads, under the name it reads it by.
        assert inputs["tags"] == {IMAGES_TAG: "review"} and IMAGES_TAG == policies.IMAGES_TAG
        assert url == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/web-review"
        assert arn == mocked.resources[review.urn].state["arn"]
        lifecycle = find_one(mocked.steps, LIFECYCLE, repository="acme/web-review").raw_inputs["policy"]
        assert lifecycle == review_lifecycle_policy(7)

    return pulumi.Output.all(
        registry.review_repository_url, registry.review_repository_arn, registry.review_lifecycle_policy.urn
    ).apply(check)


# --- registry-level scanning (R21) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("scanning", "scan_type", "frequency"),
    [("basic", "BASIC", "SCAN_ON_PUSH"), ("enhanced", "ENHANCED", "CONTINUOUS_SCAN")],
)
def test_the_registry_scanning_configuration_covers_the_repository(
    mocked: RecordingMonitor, scanning: str, scan_type: str, frequency: str
) -> None:
    # guards R21: BASIC takes SCAN_ON_PUSH only, ENHANCED SCAN_ON_PUSH or CONTINUOUS_SCAN
    # (API_RegistryScanningRule); the filter must match the repository's name.
    @pulumi.runtime.test
    def build() -> pulumi.Output:
        registry = make(scanning=scanning)

        def check(_: str) -> None:
            config = find_one(mocked.steps, SCANNING).raw_inputs
            assert config["scanType"] == scan_type
            [rule] = config["rules"]
            assert rule["scanFrequency"] == frequency
            assert rule["repositoryFilters"] == [
                {"filter": "acme/web", "filterType": "WILDCARD"},
                {"filter": "acme/web-review", "filterType": "WILDCARD"},
            ]
            for repository in ("acme/web", "acme/web-review"):
                assert registry_scans(config["scanType"], config["rules"], repository)

        return registry.scanning.urn.apply(check)

    build()


# --- the lifecycle policy, by ECR's documented evaluation rules ----------------------------------


@dataclass(frozen=True)
class Image:
    tags: tuple[str, ...]
    pushed_days_ago: float


def matches(rule: dict[str, Any], image: Image) -> bool:
    """Whether an image meets a rule's tag requirements (lifecycle_policy_parameters.html): `any` all
    images; `untagged` images without tags; with tagPatternList or tagPrefixList EVERY entry must
    match one of the image's tags; patterns have `*` as their only wildcard."""
    selection = rule["selection"]
    if selection["tagStatus"] == "any":
        return True
    if selection["tagStatus"] == "untagged":
        return not image.tags
    if not image.tags:
        return False
    if "tagPatternList" in selection:
        return all(
            any(fnmatch.fnmatchcase(t, p.replace("[", "[[]").replace("?", "[?]")) for t in image.tags)
            for p in selection["tagPatternList"]
        )
    return all(any(t.startswith(p) for t in image.tags) for p in selection["tagPrefixList"])


def expired(policy: str, images: list[Image]) -> set[Image]:
    """The images a lifecycle policy expires, by the evaluation rules of
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html: every rule marks
    the images it selects (newest first for imageCountMoreThan, by age for sinceImagePushed), then
    rules apply by priority; an image is expired by at most one rule, and an image that matches the
    tags of a rule is never expired by a lower-priority one, though lower rules still count it."""
    rules = sorted(json.loads(policy)["rules"], key=lambda r: r["rulePriority"])
    gone: set[Image] = set()
    for index, rule in enumerate(rules):
        selected = sorted((i for i in images if matches(rule, i)), key=lambda i: i.pushed_days_ago)
        selection = rule["selection"]
        if selection["countType"] == "imageCountMoreThan":
            marked = selected[selection["countNumber"] :]
        else:
            marked = [i for i in selected if i.pushed_days_ago > selection["countNumber"]]
        gone |= {i for i in marked if not any(matches(higher, i) for higher in rules[:index])}
    return gone


def sha(n: int) -> str:
    return f"{n * 2654435761 % 16**40:040x}"  # 40 hex digits, spread over every leading digit


def release(n: int, days_ago: float) -> Image:
    """A release image: tagged `<commit SHA>-<job id>`, as the delivery template pushes it."""
    return Image((f"{sha(n)}-{5000 + n}",), days_ago)


def signature(n: int, days_ago: float) -> Image:
    """cosign's signature of release image n: `sha256-<digest>.sig`."""
    return Image((f"sha256-{sha(n)}{sha(n)[:24]}.sig",), days_ago)


def test_the_evaluator_reproduces_the_documented_example() -> None:
    # Example A of lifecycle_policy_examples.html: only Image A is expired.
    a, b, c = Image(("beta-1", "prod-1"), 10), Image(("beta-2", "prod-2"), 9), Image(("beta-3",), 8)
    rules = [
        {"rulePriority": p, "selection": {"tagStatus": "tagged", "tagPrefixList": [prefix],
                                          "countType": "imageCountMoreThan", "countNumber": 1}}
        for p, prefix in ((1, "prod"), (2, "beta"))
    ]  # fmt: skip
    assert expired(json.dumps({"rules": rules}), [a, b, c]) == {a}


def test_a_burst_of_signatures_expires_no_release_image() -> None:
    # Signing every kept image again (a new key, a re-run) pushes a fresh signature for each.
    releases = [release(n, 30 - n) for n in range(5)]
    signatures = [signature(n, n / 100) for n in range(200)]  # all newer than every release
    cache = Image(("buildcache",), 29)
    policy = lifecycle_policy(keep_images=30, review_image_days=7, cache_tag="buildcache")
    assert not expired(policy, [*releases, *signatures, cache]) & {*releases, cache}
    # A keep-the-newest-30 rule over `*` would count the signatures and lose every release image.
    star = {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["*"],
                                             "countType": "imageCountMoreThan", "countNumber": 30}}  # fmt: skip
    assert set(releases) <= expired(json.dumps({"rules": [star]}), [*releases, *signatures, cache])


def test_the_newest_release_images_keep_their_signatures() -> None:
    keep = 5
    builds = 40 * keep  # one image and its signature per default-branch build, newest first
    images = [release(n, n + 0.5) for n in range(builds)]
    signatures = [signature(n, n + 0.4) for n in range(builds)]
    gone = expired(lifecycle_policy(keep, 7, "buildcache"), [*images, *signatures])
    assert not gone & {*images[:keep], *signatures[:keep]}
    # Signatures are capped too, at as many as the release rules can keep images.
    assert len(set(signatures) - gone) == 16 * keep


def test_merge_request_images_left_in_the_release_repository_expire_after_the_review_days() -> None:
    # Pushed here before the review repository existed; and anything else no rule keeps.
    old, fresh, stray = Image(("mr-7-" + sha(1),), 8), Image(("mr-9-" + sha(2),), 6), Image(("latest",), 30)
    kept = [release(3, 400), Image(("buildcache",), 400), signature(3, 400)]
    assert expired(lifecycle_policy(30, 7, "buildcache"), [old, fresh, stray, *kept]) == {old, stray}
    assert expired(lifecycle_policy(30, 10, "buildcache"), [old, fresh, *kept]) == set()


def test_review_images_expire_after_the_review_days_whatever_their_number_or_tag() -> None:
    old, fresh = Image(("mr-7-" + sha(1),), 8), Image(("mr-9-" + sha(2),), 6)
    burst = [Image((f"mr-{n}-{sha(n)}",), n / 100) for n in range(500)]
    other = Image((sha(3),), 8)  # whatever a merge request's own pipeline tags there goes too
    assert expired(review_lifecycle_policy(7), [old, fresh, other, *burst]) == {old, other}
    assert expired(review_lifecycle_policy(10), [old, fresh]) == set()
    assert expired(review_lifecycle_policy(7), [Image((), 2), Image((), 0.5)]) == {Image((), 2)}


def test_at_least_the_newest_keep_images_release_images_stay() -> None:
    releases = [release(n, n) for n in range(400)]  # newest first
    gone = expired(lifecycle_policy(keep_images=20, review_image_days=7, cache_tag="buildcache"), releases)
    assert not gone & set(releases[:20])
    assert gone and len(releases) - len(gone) <= 16 * 20
    same_digit = [Image((f"a{n:039x}-{n}",), n) for n in range(25)]  # the newest N may share a digit
    assert expired(lifecycle_policy(20, 7, "buildcache"), same_digit) == set(same_digit[20:])


@pytest.mark.parametrize("cache_tag", ["buildcache", "0cache", "layers"])
def test_the_layer_cache_survives_and_costs_no_release_image_its_place(cache_tag: str) -> None:
    # The cache tag is rewritten by every default-branch build. A hex-led one ("buildcache") is
    # counted by the release rule of its digit, which keeps one more for it.
    digit = cache_tag[0] if cache_tag[0] in "0123456789abcdef" else "b"
    releases = [Image((f"{digit}{n:039x}-{n}",), n + 1) for n in range(10)]  # newest first
    cache = Image((cache_tag,), 0.1)
    policy = lifecycle_policy(keep_images=10, review_image_days=7, cache_tag=cache_tag)
    assert expired(policy, [*releases, cache]) == set()
    newer = Image((f"{digit}{'f' * 39}-99",), 0.5)
    assert expired(policy, [*releases, newer, cache]) == {releases[-1]}
    # A cache older than every release image its digit's rule keeps is still never expired.
    stale = Image((cache_tag,), 400)
    assert expired(policy, [*releases, newer, stale]) == expired(policy, [*releases, newer])


def test_untagged_images_expire_after_a_day_and_rules_come_in_ascending_priority() -> None:
    policy = lifecycle_policy(keep_images=7, review_image_days=7, cache_tag="buildcache")
    assert expired(policy, [Image((), 2), Image((), 0.5)]) == {Image((), 2)}
    rules = json.loads(policy)["rules"]
    priorities = [r["rulePriority"] for r in rules]
    assert priorities == sorted(set(priorities))  # unique, and in the order ECR returns them
    # ECR: a rule over `any` must have the highest priority (lifecycle_policy_parameters.html).
    assert [r["selection"]["tagStatus"] for r in rules].index("any") == len(rules) - 1
    # Lifecycle policy length quota: 30,720 characters (ECR service quotas).
    assert len(policy) <= 30720


@pulumi.runtime.test
def test_the_component_registers_the_lifecycle_of_its_settings(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make(keep_images=7, review_image_days=3, cache_tag="layers")

    def check(_: list[str]) -> None:
        release = find_one(mocked.steps, LIFECYCLE, repository="acme/web")
        assert release.raw_inputs["policy"] == lifecycle_policy(7, 3, "layers")
        review = find_one(mocked.steps, LIFECYCLE, repository="acme/web-review")
        assert review.raw_inputs["policy"] == review_lifecycle_policy(3)
        # Any change replaces a lifecycle policy, and deleting the old one after the new one is put
        # would delete the new one too (DeleteLifecyclePolicy goes by repository).
        assert release.delete_before_replace and review.delete_before_replace

    return pulumi.Output.all(registry.lifecycle_policy.urn, registry.review_lifecycle_policy.urn).apply(check)


def test_ecr_accepts_the_lifecycle_policies(aws: Aws) -> None:
    # moto validates a policy's shape the way ECR's PutLifecyclePolicy does.
    ecr: Any = aws.client("ecr")
    for repository, policy in (
        ("acme/web", lifecycle_policy(keep_images=30, review_image_days=7, cache_tag="buildcache")),
        ("acme/web-review", review_lifecycle_policy(7)),
    ):
        ecr.create_repository(repositoryName=repository)
        ecr.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=policy)
        stored = ecr.get_lifecycle_policy(repositoryName=repository)["lifecyclePolicyText"]
        assert json.loads(stored) == json.loads(policy)


# --- the pull policy ------------------------------------------------------------------------------


@pulumi.runtime.test
def test_no_repository_policy_without_pull_principals(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make()
    assert registry.pull_policy is None

    def check(_: str) -> None:
        assert not [s for s in mocked.steps if s.type == PULL]

    return registry.lifecycle_policy.urn.apply(check)


@pulumi.runtime.test
def test_pull_principals_get_read_only_actions(mocked: RecordingMonitor) -> pulumi.Output:
    registry = make(pull_principals=["210987654321", "arn:aws:iam::210987654321:role/deployer"])

    def check(_: str) -> None:
        doc = json.loads(find_one(mocked.steps, PULL).raw_inputs["policy"])
        (statement,) = doc["Statement"]
        assert statement["Principal"]["AWS"] == [
            "arn:aws:iam::210987654321:root",
            "arn:aws:iam::210987654321:role/deployer",
        ]
        assert all(a.startswith(("ecr:BatchGet", "ecr:GetDownload", "ecr:BatchCheck")) for a in statement["Action"])

    assert registry.pull_policy is not None
    return registry.pull_policy.urn.apply(check)


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"),
                                                   ("eu-west-1", "aws")])  # fmt: skip
def test_pull_principals_are_root_arns_of_the_stacks_partition(
    staging_doc: dict[str, Any], region: str, partition: str
) -> None:
    # guards P9: `arn:aws` names no principal in China or GovCloud
    staging_doc["aws:region"] = region
    staging_doc["shipyard:registry"]["pullPrincipals"] = ["210987654321"]
    run = run_stack(staging_doc, "staging")
    statement = json.loads(run.one(PULL).raw_inputs["policy"])["Statement"][0]
    assert statement["Principal"]["AWS"] == [f"arn:{partition}:iam::210987654321:root"]


# --- settings -------------------------------------------------------------------------------------


def review_days(run: Any, repository: str = "acme/storefront-review") -> int:
    policy = run.one(LIFECYCLE, repository=repository).raw_inputs["policy"]
    [rule] = [r for r in json.loads(policy)["rules"] if r["selection"]["countType"] == "sinceImagePushed"
              and r["selection"]["tagStatus"] != "untagged"]  # fmt: skip
    return int(rule["selection"]["countNumber"])


def test_the_program_passes_the_registry_settings_on(
    committed_runs: dict[str, Any], staging_doc: dict[str, Any]
) -> None:
    run = committed_runs["staging"]  # defaults: seven days, basic scanning, review repository named after it
    assert review_days(run) == 7
    assert run.one(SCANNING).raw_inputs["scanType"] == "BASIC"
    assert {s.raw_inputs["name"] for s in run.resources(REPO)} == {"acme/storefront", "acme/storefront-review"}
    staging_doc["shipyard:registry"] |= {
        "reviewImageDays": 3,
        "scanning": "enhanced",
        "reviewName": "acme/storefront-mr",
    }
    run = run_stack(staging_doc, "staging")
    assert review_days(run, "acme/storefront-mr") == 3
    assert review_days(run, "acme/storefront") == 3  # leftovers in the release repository too
    assert run.one(SCANNING).raw_inputs["scanType"] == "ENHANCED"
    assert {s.raw_inputs["name"] for s in run.resources(REPO)} == {"acme/storefront", "acme/storefront-mr"}


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        ({"reviewImageDays": 0}, "shipyard:registry.reviewImageDays: Input should be greater than or equal to 1"),
        ({"scanning": "inspector"}, "shipyard:registry.scanning: Input should be 'basic' or 'enhanced'"),
    ],
)
def test_bad_registry_settings_stop_the_run(
    staging_doc: dict[str, Any], registry: dict[str, Any], message: str
) -> None:
    staging_doc["shipyard:registry"] |= registry
    with pytest.raises(SettingsError) as info:
        run_stack(staging_doc, "staging")
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems
