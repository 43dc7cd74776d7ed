"""The Amazon ECR repository the runner builds into: encryption, tag rules, lifecycle, pull policy,
and the registry-level scanning configuration that scans what is pushed to it.

Owned by the build stack only; other stacks read its URL and ARN through a stack reference.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Literal

import pulumi
from pulumi_aws import ecr, get_partition_output

# Read-only actions a pulling principal needs; nothing that writes or deletes.
PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
# The delivery template tags merge-request builds `mr-<iid>-<sha>`; no release path reads them.
REVIEW_TAG_PREFIX = "mr-"
# Release images are tagged with the default branch's commit SHA: 40 lowercase hex digits.
HEX_DIGITS = "0123456789abcdef"
# Registry scanning frequency per scan type. BASIC supports SCAN_ON_PUSH only; ENHANCED supports
# SCAN_ON_PUSH and CONTINUOUS_SCAN, which also rescans as new vulnerabilities are published
# (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_RegistryScanningRule.html,
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning.html).
SCAN_FREQUENCY = {"BASIC": "SCAN_ON_PUSH", "ENHANCED": "CONTINUOUS_SCAN"}


@dataclass
class RegistryArgs:
    name: str
    """Explicit repository name: the bridge would auto-name it otherwise."""
    keep_images: int
    """Keep at least the newest N release images (commit-SHA tags)."""
    cache_tag: str
    """The BuildKit layer-cache tag: the only tag that may be overwritten."""
    pull_principals: list[str] = field(default_factory=list)
    """Other AWS accounts (12 digits) or role ARNs allowed to pull."""
    review_image_days: int = 7
    """Days a merge-request image (`mr-…` tag) is kept after its push."""
    scanning: Literal["basic", "enhanced"] = "basic"
    """Registry-level scan type; the configuration is one per account and region (R21)."""


def _rule(priority: int, description: str, selection: dict[str, object]) -> dict[str, object]:
    return {"rulePriority": priority, "description": description, "selection": selection, "action": {"type": "expire"}}


def lifecycle_policy(keep_images: int, review_image_days: int, cache_tag: str) -> str:
    """ECR lifecycle rules that keep release images apart from merge-request images.

    ECR evaluates every rule over every image, then applies them by priority: an image that matches
    the tags of a rule cannot be expired by a lower-priority rule, but lower-priority rules still
    *count* it ("Rules can never mark images that are marked by higher priority rules, but can still
    identify them as if they haven't been expired";
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html, and Example A of
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html). A
    keep-the-newest-N rule over `*` therefore counts merge-request images too: a burst of them would
    push the release images production still rolls back to out of the newest N.

    So the release images are selected by what only they look like. Their tag is the commit SHA
    (40 hex digits) and ECR wildcards have only `*`; a rule's tagPatternList entries must ALL match
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html), so
    one rule per leading hex digit (`0*` … `f*`), each keeping N: the newest N release images are
    always kept, up to 16 times N in all. `mr-…` tags never match (`m` is not a hex digit). The layer
    cache gets a rule of its own before them (it must outlive any burst), and where its tag starts
    with a hex digit that digit's rule counts it too, so that rule keeps one more.
    """
    rules = [
        _rule(
            1,
            "Expire untagged images (replaced cache manifests, failed pushes) after one day",
            {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1},
        ),
        _rule(
            2,
            f"Keep the layer cache ({cache_tag})",
            {"tagStatus": "tagged", "tagPatternList": [cache_tag], "countType": "imageCountMoreThan", "countNumber": 1},
        ),
        _rule(
            3,
            f"Expire merge-request images after {review_image_days} days",
            {
                "tagStatus": "tagged",
                "tagPrefixList": [REVIEW_TAG_PREFIX],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": review_image_days,
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
    # In ascending priority: ECR hands rules back sorted, and an unsorted policy would show a change
    # on every run (the provider's LifecyclePolicy docs).
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
    """ECR repository with KMS encryption, immutable release tags, a lifecycle that keeps release
    images apart from merge-request images, and registry-level scanning of what is pushed."""

    repository: ecr.Repository
    lifecycle_policy: ecr.LifecyclePolicy
    pull_policy: ecr.RepositoryPolicy | None
    scanning: ecr.RegistryScanningConfiguration
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:aws:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.repository = ecr.Repository(
            name,
            name=args.name,
            # Release tags (commit SHAs) never move; only the layer-cache tag is rewritten by each build.
            image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
            image_tag_mutability_exclusion_filters=[
                ecr.RepositoryImageTagMutabilityExclusionFilterArgs(filter=args.cache_tag, filter_type="WILDCARD")
            ],
            # No per-repository scanOnPush: PutImageScanningConfiguration is deprecated in favour of the
            # registry's scanning configuration below (R21;
            # https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImageScanningConfiguration.html).
            # The AWS-managed key (aws/ecr): encrypted at rest, key use audited, no key policy to keep.
            encryption_configurations=[ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            # Deleting the stack must not silently delete the images production runs.
            force_delete=False,
            opts=child,
        )
        self.lifecycle_policy = ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=lifecycle_policy(args.keep_images, args.review_image_days, args.cache_tag),
            opts=child,
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
        # provider's RegistryScanningConfiguration docs).
        scan_type = args.scanning.upper()
        self.scanning = ecr.RegistryScanningConfiguration(
            f"{name}-scanning",
            scan_type=scan_type,
            rules=[
                ecr.RegistryScanningConfigurationRuleArgs(
                    scan_frequency=SCAN_FREQUENCY[scan_type],
                    # A filter without a wildcard matches every repository whose name contains it
                    # (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-enhanced-enabling.html):
                    # this one, and any other that contains its name, which then is scanned too.
                    repository_filters=[
                        ecr.RegistryScanningConfigurationRuleRepositoryFilterArgs(
                            filter=args.name, filter_type="WILDCARD"
                        )
                    ],
                )
            ],
            opts=child,
        )

        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.register_outputs({"repositoryUrl": self.repository_url, "repositoryArn": self.repository_arn})
