"""The Amazon ECR repositories the runners build into: the release repository (images that staging
and production release, their cosign signatures, the layer cache) and the review repository
(merge-request images); their encryption, tag rules and lifecycles, the pull policy, and the
registry-level scanning configuration that scans what is pushed to both.

Owned by the build stack only; other stacks read the release repository's URL and ARN through a
stack reference.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Literal

import pulumi
from pulumi_aws import ecr, get_partition_output

from infra.settings import SIGNATURE_TAG_PREFIX

# Read-only actions a pulling principal needs; nothing that writes or deletes.
PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
# Release images are tagged `<commit SHA>-<job id>`: the SHA's 40 lowercase hex digits come first.
HEX_DIGITS = "0123456789abcdef"
# The repository tag that says what a repository holds; the release-push-protected-only policy
# reads it (policy/policies.py): only a repository marked `review` may take pushes from runners
# that also run merge-request jobs.
IMAGES_TAG = "shipyard:images"
# Registry scanning frequency per scan type. BASIC supports SCAN_ON_PUSH only; ENHANCED supports
# SCAN_ON_PUSH and CONTINUOUS_SCAN, which also rescans as new vulnerabilities are published
# (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_RegistryScanningRule.html,
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning.html).
SCAN_FREQUENCY = {"BASIC": "SCAN_ON_PUSH", "ENHANCED": "CONTINUOUS_SCAN"}


@dataclass
class RegistryArgs:
    name: str
    """Explicit repository name: the bridge would auto-name it otherwise."""
    review_name: str
    """Explicit name of the review repository, where merge-request builds push."""
    keep_images: int
    """Keep at least the newest N release images (`<commit SHA>-<job id>` tags) and their signatures."""
    cache_tag: str
    """The BuildKit layer-cache tag: overwritten by every release build, like cosign's signature tags."""
    pull_principals: list[str] = field(default_factory=list)
    """Other AWS accounts (12 digits) or role ARNs allowed to pull release images."""
    review_image_days: int = 7
    """Days a merge-request image is kept after its push."""
    scanning: Literal["basic", "enhanced"] = "basic"
    """Registry-level scan type; the configuration is one per account and region (R21)."""


def _rule(priority: int, description: str, selection: dict[str, object]) -> dict[str, object]:
    return {"rulePriority": priority, "description": description, "selection": selection, "action": {"type": "expire"}}


def _untagged_rule(priority: int) -> dict[str, object]:
    return _rule(
        priority,
        "Expire untagged images (replaced cache and signature manifests, failed pushes) after one day",
        {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1},
    )


def lifecycle_policy(keep_images: int, review_image_days: int, cache_tag: str) -> str:
    """ECR lifecycle rules of the release repository: release images, their signatures and the layer
    cache, each counted apart.

    ECR evaluates every rule over every image, then applies them by priority: an image that matches
    the tags of a rule cannot be expired by a lower-priority rule, but lower-priority rules still
    *count* it ("Rules can never mark images that are marked by higher priority rules, but can still
    identify them as if they haven't been expired";
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html, and Example A of
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html).

    Merge-request images live in the review repository now, but a keep-the-newest-N rule over `*`
    would still be wrong here: it counts the layer cache and every cosign signature (`sha256-…`, one
    per signed image, re-pushed whenever an image is signed again), so a burst of signatures would
    push the release images production rolls back to out of the newest N. The release images are
    therefore still selected by what only they look like: their tag starts with the commit SHA's hex
    digits, ECR wildcards have only `*`, and a rule's tagPatternList entries must ALL match
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html), so one
    rule per leading hex digit (`0*` … `f*`), each keeping N: the newest N release images are always
    kept, up to 16 times N in all. Signature tags start with `s`, not a hex digit: no release rule
    counts them. The cache and the signatures get rules of their own before them; where the cache
    tag starts with a hex digit that digit's rule counts it too, so that rule keeps one more.

    Signatures must stay as long as their images (the release script verifies one before every
    release and rollback). Each release build signs its own image once, so the newest N signatures
    are those of the newest N release images; the signature rule keeps 16 times N, as many as the
    release rules can keep images.

    Anything else (merge-request images pushed here before the review repository existed, stray
    tags) expires after `review_image_days`, by a last rule over any image that the rules before it
    protect from (ECR wants a rule over `any` to come last).
    """
    rules = [
        _untagged_rule(1),
        _rule(
            2,
            f"Keep the layer cache ({cache_tag})",
            {"tagStatus": "tagged", "tagPatternList": [cache_tag], "countType": "imageCountMoreThan", "countNumber": 1},
        ),
        _rule(
            3,
            f"Keep the newest {16 * keep_images} image signatures (cosign's {SIGNATURE_TAG_PREFIX}<digest>.sig)",
            {
                "tagStatus": "tagged",
                "tagPrefixList": [SIGNATURE_TAG_PREFIX],
                "countType": "imageCountMoreThan",
                "countNumber": 16 * keep_images,
            },
        ),
    ]
    for priority, digit in enumerate(HEX_DIGITS, start=10):
        pattern = f"{digit}*"
        rules.append(
            _rule(
                priority,
                f"Keep the newest {keep_images} release images whose commit SHA starts with {digit}",
                {
                    "tagStatus": "tagged",
                    "tagPatternList": [pattern],
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_images + (1 if fnmatch.fnmatchcase(cache_tag, pattern) else 0),
                },
            )
        )
    rules.append(
        _rule(
            100,
            f"Expire anything else (e.g. merge-request images from before the review repository) after "
            f"{review_image_days} days",
            {
                "tagStatus": "any",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": review_image_days,
            },
        )
    )
    # In ascending priority: ECR hands rules back sorted, and an unsorted policy would show a change
    # on every run (the provider's LifecyclePolicy docs).
    return json.dumps({"rules": rules})


def review_lifecycle_policy(review_image_days: int) -> str:
    """ECR lifecycle rules of the review repository: every merge-request image expires after
    `review_image_days` days, whatever its tag; untagged ones (failed pushes) after a day."""
    rules = [
        _untagged_rule(1),
        _rule(
            2,
            f"Expire merge-request images after {review_image_days} days",
            {
                "tagStatus": "tagged",
                "tagPatternList": ["*"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": review_image_days,
            },
        ),
    ]
    return json.dumps({"rules": rules})


def pull_policy(principals: list[str], partition: str) -> str:
    # Account ids become root ARNs in the stack's own partition: `arn:aws` is wrong in China and
    # GovCloud (P9).
    aws_principals = [p if p.startswith("arn:") else f"arn:{partition}:iam::{p}:root" for p in principals]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ShipyardPull", "Effect": "Allow", "Principal": {"AWS": aws_principals}, "Action": PULL_ACTIONS}
            ],
        }
    )


class Registry(pulumi.ComponentResource):
    """The release and review ECR repositories with KMS encryption, immutable image tags, lifecycles
    that keep each kind of image by its own rule, and registry-level scanning of what is pushed."""

    repository: ecr.Repository
    lifecycle_policy: ecr.LifecyclePolicy
    review_repository: ecr.Repository
    review_lifecycle_policy: ecr.LifecyclePolicy
    pull_policy: ecr.RepositoryPolicy | None
    scanning: ecr.RegistryScanningConfiguration
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    review_repository_url: pulumi.Output[str]
    review_repository_arn: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:aws:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.repository = ecr.Repository(
            name,
            name=args.name,
            # Release tags (`<sha>-<job id>`) never move. Two kinds of tags are rewritten: the layer
            # cache by each release build, and cosign's signature tag of an image whenever it is
            # signed (again); ECR refuses both pushes under IMMUTABLE without these exclusions.
            image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
            image_tag_mutability_exclusion_filters=[
                ecr.RepositoryImageTagMutabilityExclusionFilterArgs(filter=tag, filter_type="WILDCARD")
                for tag in (args.cache_tag, f"{SIGNATURE_TAG_PREFIX}*")
            ],
            # No per-repository scanOnPush: PutImageScanningConfiguration is deprecated in favour of the
            # registry's scanning configuration below (R21;
            # https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImageScanningConfiguration.html).
            # The AWS-managed key (aws/ecr): encrypted at rest, key use audited, no key policy to keep.
            encryption_configurations=[ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            # Deleting the stack must not silently delete the images production runs.
            force_delete=False,
            tags={IMAGES_TAG: "release"},
            opts=child,
        )
        # Every change of a lifecycle policy replaces it (`policy` is ForceNew), and deleting one deletes
        # whatever policy its repository holds (DeleteLifecyclePolicy by repository name;
        # terraform-provider-aws ecr/lifecycle_policy.go): the old one must go before the new one is
        # put, or the replacement leaves the repository without any.
        one_per_repository = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.lifecycle_policy = ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=lifecycle_policy(args.keep_images, args.review_image_days, args.cache_tag),
            opts=one_per_repository,
        )
        # Merge-request images (G11): a repository of their own, so that the runner of merge-request
        # jobs can be allowed to push here and nowhere a protected pipeline releases from.
        self.review_repository = ecr.Repository(
            f"{name}-review",
            name=args.review_name,
            # Mutable: a retried or re-run merge-request build pushes the same `mr-<iid>-<sha>` again,
            # which an immutable repository refuses (ImageTagAlreadyExistsException). Nothing is
            # released from here, so nothing depends on a tag staying put.
            image_tag_mutability="MUTABLE",
            encryption_configurations=[ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            # Throwaway images that no release reads and the lifecycle expires within days: deleting or
            # replacing the repository may take them along instead of failing on them.
            force_delete=True,
            tags={IMAGES_TAG: "review"},
            opts=child,
        )
        self.review_lifecycle_policy = ecr.LifecyclePolicy(
            f"{name}-review-lifecycle",
            repository=self.review_repository.name,
            policy=review_lifecycle_policy(args.review_image_days),
            opts=one_per_repository,
        )
        self.pull_policy = None
        if args.pull_principals:
            partition = get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
            self.pull_policy = ecr.RepositoryPolicy(
                f"{name}-pull",
                repository=self.repository.name,
                policy=partition.apply(lambda p: pull_policy(args.pull_principals, p)),
                opts=child,
            )
        # One scanning configuration per account and region, whatever its name: this stack replaces
        # what is there, and deleting it resets the registry to BASIC without rules (R21; the
        # provider's RegistryScanningConfiguration docs). Review images are scanned too: a merge
        # request learns of a vulnerable base image before it is merged.
        scan_type = args.scanning.upper()
        self.scanning = ecr.RegistryScanningConfiguration(
            f"{name}-scanning",
            scan_type=scan_type,
            rules=[
                ecr.RegistryScanningConfigurationRuleArgs(
                    scan_frequency=SCAN_FREQUENCY[scan_type],
                    # A filter without a wildcard matches every repository whose name contains it
                    # (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-enhanced-enabling.html):
                    # each repository by its own name, which then scans any other that contains it too.
                    repository_filters=[
                        ecr.RegistryScanningConfigurationRuleRepositoryFilterArgs(filter=repo, filter_type="WILDCARD")
                        for repo in (args.name, args.review_name)
                    ],
                )
            ],
            opts=child,
        )

        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.review_repository_url = self.review_repository.repository_url
        self.review_repository_arn = self.review_repository.arn
        self.register_outputs(
            {
                "repositoryUrl": self.repository_url,
                "repositoryArn": self.repository_arn,
                "reviewRepositoryUrl": self.review_repository_url,
                "reviewRepositoryArn": self.review_repository_arn,
            }
        )
