"""The Amazon ECR repository the runner builds into: scanning, encryption, tag rules, lifecycle.

Owned by the build stack only; other stacks read its URL and ARN through a stack reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import ecr

# Read-only actions a pulling principal needs; nothing that writes or deletes.
PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


@dataclass
class RegistryArgs:
    name: str
    """Explicit repository name: the bridge would auto-name it otherwise."""
    keep_images: int
    """Keep the newest N tagged images; older ones expire."""
    cache_tag: str
    """The BuildKit layer-cache tag: the only tag that may be overwritten."""
    pull_principals: list[str] = field(default_factory=list)
    """Other AWS accounts (12 digits) or role ARNs allowed to pull."""


def lifecycle_policy(keep_images: int) -> str:
    """ECR lifecycle rules: untagged layers go after a day, tagged images beyond the newest N go."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Expire untagged images after one day",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the newest {keep_images} tagged images",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPatternList": ["*"],
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


def pull_policy(principals: list[str]) -> str:
    aws_principals = [p if p.startswith("arn:") else f"arn:aws:iam::{p}:root" for p in principals]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ShipyardPull", "Effect": "Allow", "Principal": {"AWS": aws_principals}, "Action": PULL_ACTIONS}
            ],
        }
    )


class Registry(pulumi.ComponentResource):
    """ECR repository with scan on push, KMS encryption, immutable release tags and a lifecycle policy."""

    repository: ecr.Repository
    lifecycle_policy: ecr.LifecyclePolicy
    pull_policy: ecr.RepositoryPolicy | None
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
            image_scanning_configuration=ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            # The AWS-managed key (aws/ecr): encrypted at rest, key use audited, no key policy to keep.
            encryption_configurations=[ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            # Deleting the stack must not silently delete the images production runs.
            force_delete=False,
            opts=child,
        )
        self.lifecycle_policy = ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=lifecycle_policy(args.keep_images),
            opts=child,
        )
        self.pull_policy = None
        if args.pull_principals:
            self.pull_policy = ecr.RepositoryPolicy(
                f"{name}-pull",
                repository=self.repository.name,
                policy=pull_policy(args.pull_principals),
                opts=child,
            )

        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.register_outputs({"repositoryUrl": self.repository_url, "repositoryArn": self.repository_arn})
