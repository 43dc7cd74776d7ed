"""The permissions of the roles `shipyard ci-access` creates, one inline policy each: what the
pipeline's jobs need of AWS and of the Pulumi state, scoped by the names the program and Pulumi's
DIY backend give where AWS allows it. Where a statement is broad, its comment says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infra.ops.bootstrap import bucket_arn
from infra.settings import runner_name, signing_key_alias, workers_name

# What `pulumi preview` and `--refresh` read of the stacks' AWS resources: descriptions and
# settings, never data (no parameter value, object, image layer or secret). `Describe*` of EC2 and
# Auto Scaling takes no resource ARN, so these statements need `Resource: "*"`.
READ_ACTIONS = (
    "autoscaling:Describe*",
    "ec2:Describe*",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:DescribeRegistry",
    "ecr:DescribeRepositories",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRegistryScanningConfiguration",
    "ecr:GetRepositoryPolicy",
    "ecr:ListTagsForResource",
    "iam:GetInstanceProfile",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:ListRoleTags",
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:GetPublicKey",
    "kms:ListAliases",
    "kms:ListResourceTags",
    "ssm:DescribeParameters",
    "ssm:ListTagsForResource",
)
# A fleet runner's job cache buckets, as a refresh reads them: settings of the bucket itself (its
# ARN, never an object's), so no cached data. The Terraform provider reads every bucket setting.
CACHE_BUCKET_READ = ("s3:Get*", "s3:ListBucket", "s3:ListBucketVersions")
CACHE_BUCKET_WRITE = (
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketTagging",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
)
# `force_destroy`: deleting the bucket first empties it (a cache, rebuilt by the next job).
CACHE_OBJECT_DELETE = ("s3:DeleteObject", "s3:DeleteObjectVersion")
AUTOSCALING_WRITE = (
    "autoscaling:CreateAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteAutoScalingGroup",
    "autoscaling:DeleteLifecycleHook",
    "autoscaling:DeleteTags",
    "autoscaling:PutLifecycleHook",
    "autoscaling:ResumeProcesses",
    "autoscaling:SetInstanceProtection",
    "autoscaling:StartInstanceRefresh",
    "autoscaling:CancelInstanceRefresh",
    "autoscaling:SuspendProcesses",
    "autoscaling:UpdateAutoScalingGroup",
)
EC2_WRITE = (
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateLaunchTemplate",
    "ec2:CreateLaunchTemplateVersion",
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:DeleteLaunchTemplate",
    "ec2:DeleteLaunchTemplateVersions",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteTags",
    "ec2:ModifyLaunchTemplate",
    "ec2:ModifySecurityGroupRules",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RunInstances",
    "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
)
IAM_WRITE = (
    "iam:AddRoleToInstanceProfile",
    "iam:CreateInstanceProfile",
    "iam:CreateRole",
    "iam:DeleteInstanceProfile",
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:PutRolePolicy",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:TagRole",
    "iam:UntagInstanceProfile",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
)
PARAMETER_WRITE = (
    "ssm:AddTagsToResource",
    "ssm:DeleteParameter",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:PutParameter",
    "ssm:RemoveTagsFromResource",
)
REGISTRY_WRITE = (
    "ecr:CreateRepository",
    "ecr:DeleteLifecyclePolicy",
    "ecr:DeleteRepository",
    "ecr:DeleteRepositoryPolicy",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutImageTagMutability",
    "ecr:PutLifecyclePolicy",
    "ecr:SetRepositoryPolicy",
    "ecr:TagResource",
    "ecr:UntagResource",
)
SIGNING_KEY_ADMIN = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
ALIAS_WRITE = ("kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias")
# Enhanced scanning (Amazon Inspector) as the ECR user guide lists it ("IAM permissions required for
# enhanced scanning"), for a registry scanning configuration of type ENHANCED.
INSPECTOR = (
    "inspector2:Disable",
    "inspector2:Enable",
    "inspector2:ListAccountPermissions",
    "inspector2:ListCoverage",
    "inspector2:ListFindings",
)


@dataclass(frozen=True)
class Scope:
    """What the policies name: the account (ARNs carry the partition, P9), the state backend and
    its layout, and the stacks' secrets-provider keys."""

    partition: str
    account: str
    region: str
    dns_suffix: str
    bucket: str
    bucket_key: str | None  # the state bucket's SSE-KMS key, if it has one
    pulumi_project: str
    staging_stack: str  # the build stack: owns the registry and the signing key
    prod_stack: str  # reads the build stack's outputs (a StackReference)
    staging_key: str  # key ARNs, resolved from aliases
    prod_key: str

    def cache_buckets(self, stack: str) -> list[str]:
        """The job cache buckets of a stack's fleet runners, its main and its review runner's, by their
        exact names: a wildcard after the stack's name would also match the buckets of every stack whose
        name starts with it (`staging-eu`'s from `staging`)."""
        return [f"arn:{self.partition}:s3:::{runner_name(stack, review, self.account)}" for review in (False, True)]

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account if account else ''}:"
            f"{resource}"
        )


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _state_objects(aws: Scope, stack: str) -> list[str]:
    """A stack's objects in the DIY backend's project layout (pulumi pkg/backend/diy/store.go): the
    checkpoint (`.json`, `.json.gz`, `.json.zst`, and `.bak` copies) and its tags file."""
    base = f".pulumi/stacks/{aws.pulumi_project}/{stack}"
    return [f"{base}.json*", f"{base}.pulumi-tags"]


def _state_write_objects(aws: Scope, stack: str) -> list[str]:
    """What `pulumi up` writes for a stack besides the checkpoint: history, backups, the journal,
    and the lock (`.pulumi/locks/organization/<project>/<stack>/<id>.json`, diy/lock.go), which
    DIY backends take by default since 2026-01 (P10). A preview takes no lock (P6)."""
    project = aws.pulumi_project
    return [
        *_state_objects(aws, stack),
        f".pulumi/history/{project}/{stack}/*",
        f".pulumi/backups/{project}/{stack}/*",
        f".pulumi/journal/{project}/{stack}/*",
        f".pulumi/locks/organization/{project}/{stack}/*",
    ]


def _state(aws: Scope, reads: Iterable[str], writes: Iterable[str]) -> list[dict[str, Any]]:
    bucket = bucket_arn(aws.partition, aws.bucket)
    reads, writes = list(reads), list(writes)
    objects = [f"{bucket}/.pulumi/meta.yaml"] + [f"{bucket}/{o}" for s in reads for o in _state_objects(aws, s)]
    statements: list[dict[str, Any]] = [
        # Listing names objects, never shows them. It is also what makes S3 answer a missing object
        # (a stack without a tags file, a first run) with 404 rather than 403, which the backend
        # needs; s3:prefix conditions would not cover those reads.
        {"Sid": "ListState", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket},
        {"Sid": "ReadState", "Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
    ]
    if writes:
        statements.append(
            {
                "Sid": "WriteState",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": [f"{bucket}/{o}" for s in writes for o in _state_write_objects(aws, s)],
            }
        )
    if aws.bucket_key:
        # The bucket's default encryption key, usable only by S3 on this bucket's behalf: the role
        # cannot decrypt anything else with it, even when it is a stack's secrets key.
        statements.append(
            {
                "Sid": "StateBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"] if writes else "kms:Decrypt",
                "Resource": aws.bucket_key,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"s3.{aws.region}.{aws.dns_suffix}"},
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket, f"{bucket}/*"]},
                },
            }
        )
    return statements


def _secrets(*keys: str) -> dict[str, Any]:
    # The awskms secrets provider decrypts the stack's data key once; secrets are then encrypted
    # and decrypted locally, so no run needs kms:Encrypt (creating the data key is `stack init`'s).
    return {"Sid": "StackSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": sorted(set(keys))}


def _deploy(aws: Scope, stack: str, builds: bool) -> list[dict[str, Any]]:
    """What `pulumi up` of one stack changes, scoped by the names the program gives (the runner's
    `shipyard-<stack>-runner` group and `/shipyard/<stack>/` parameters) where AWS allows it."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "StackParameters",
            "Effect": "Allow",
            "Action": list(PARAMETER_WRITE),
            "Resource": aws.arn("ssm", f"parameter/shipyard/{stack}/*"),
        },
        {
            # The launch template names its AMI as `resolve:ssm:` of this public parameter.
            "Sid": "AmiParameter",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": aws.arn("ssm", "parameter/aws/service/ami-amazon-linux-latest/*", account=False),
        },
        {
            "Sid": "StackRunnerGroup",
            "Effect": "Allow",
            "Action": list(AUTOSCALING_WRITE),
            # The groups of this stack's runners, by name: `shipyard-<stack>-*` would also be every
            # group of a stack `<stack>-eu`.
            "Resource": [
                aws.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{group}")
                for review in (False, True)
                for group in (runner_name(stack, review), workers_name(stack, review))
            ],
        },
        {
            # Broad: security groups and launch templates are auto-named, so any of them in the
            # region; EC2 takes no name condition on most of these actions.
            "Sid": "Ec2InRegion",
            "Effect": "Allow",
            "Action": list(EC2_WRITE),
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": aws.region}},
        },
        {
            # Broad, and the widest door: the program auto-names the runner's role and instance
            # profile (`runner-role-<hex>`, `runner-profile-<hex>`, the same in every stack), and
            # PutRolePolicy can give such a role any permission. Only a permissions boundary that
            # the program sets on its roles would close that.
            "Sid": "RunnerRoles",
            "Effect": "Allow",
            "Action": list(IAM_WRITE),
            "Resource": [
                aws.arn("iam", "role/*runner-role-*", region=False),
                aws.arn("iam", "instance-profile/*runner-profile-*", region=False),
                # A fleet runner's workers: `runner-workers-role-<hex>`, `runner-workers-profile-<hex>`.
                aws.arn("iam", "role/*runner-workers-role-*", region=False),
                aws.arn("iam", "instance-profile/*runner-workers-profile-*", region=False),
            ],
        },
        {
            "Sid": "RunnerManagedPolicy",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            "Resource": aws.arn("iam", "role/*runner-role-*", region=False),
            "Condition": {
                "ArnEquals": {"iam:PolicyARN": f"arn:{aws.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}
            },
        },
        {
            "Sid": "PassRunnerRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": [
                aws.arn("iam", "role/*runner-role-*", region=False),
                aws.arn("iam", "role/*runner-workers-role-*", region=False),
            ],
            "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}},
        },
        {
            "Sid": "RunnerCacheBuckets",
            "Effect": "Allow",
            "Action": [*CACHE_BUCKET_READ, *CACHE_BUCKET_WRITE],
            "Resource": aws.cache_buckets(stack),
        },
        {
            "Sid": "RunnerCacheObjects",
            "Effect": "Allow",
            "Action": list(CACHE_OBJECT_DELETE),
            "Resource": [f"{bucket}/*" for bucket in aws.cache_buckets(stack)],
        },
        {
            "Sid": "AutoScalingServiceRole",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": aws.arn(
                "iam", "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling*", region=False
            ),
            "Condition": {"StringEquals": {"iam:AWSServiceName": "autoscaling.amazonaws.com"}},
        },
    ]
    if builds:
        statements += [
            {
                # The registry's repositories are named in the stack's settings, which this
                # command does not read: any repository of the region.
                "Sid": "Registry",
                "Effect": "Allow",
                "Action": list(REGISTRY_WRITE),
                "Resource": aws.arn("ecr", "repository/*"),
            },
            {
                "Sid": "RegistryScanning",
                "Effect": "Allow",
                "Action": ["ecr:PutRegistryScanningConfiguration", *INSPECTOR],
                "Resource": "*",
            },
            {
                "Sid": "InspectorServiceRole",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "inspector2.amazonaws.com"}},
            },
            {
                # The release signing key: only keys for signing, so no secrets-provider key
                # (ENCRYPT_DECRYPT) can be re-policied from here.
                "Sid": "CreateSigningKey",
                "Effect": "Allow",
                "Action": ["kms:CreateKey", "kms:PutKeyPolicy", "kms:TagResource"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:KeyUsage": "SIGN_VERIFY"}},
            },
            {
                "Sid": "SigningKey",
                "Effect": "Allow",
                "Action": list(SIGNING_KEY_ADMIN),
                "Resource": aws.arn("kms", "key/*"),
                "Condition": {"StringEquals": {"kms:KeyUsage": "SIGN_VERIFY"}},
            },
            {
                # An alias names both itself and its key: the key side is the statement above.
                "Sid": "SigningKeyAlias",
                "Effect": "Allow",
                "Action": list(ALIAS_WRITE),
                "Resource": aws.arn("kms", signing_key_alias(stack)),
            },
        ]
    return statements


def permissions(role: str, aws: Scope) -> dict[str, Any]:
    """The one inline policy of a role: preview, deploy-staging, deploy-prod or drift."""
    read = {"Sid": "ReadResources", "Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": "*"}
    staging, prod = aws.staging_stack, aws.prod_stack

    def caches(*stacks: str) -> dict[str, Any]:
        return {
            "Sid": "ReadCacheBuckets",
            "Effect": "Allow",
            "Action": list(CACHE_BUCKET_READ),
            "Resource": [bucket for s in stacks for bucket in aws.cache_buckets(s)],
        }

    if role == "preview":
        # guards P1: merge-request code runs with these credentials: staging's state and key only
        return _policy(read, caches(staging), *_state(aws, [staging], []), _secrets(aws.staging_key))
    if role == "drift":
        # A refresh reads the runner token parameters too (the provider reads a SecureString
        # decrypted, with the aws/ssm key every principal of the account may use through SSM).
        tokens = {
            "Sid": "RefreshParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": [aws.arn("ssm", f"parameter/shipyard/{s}/*") for s in (staging, prod)],
        }
        keys = _secrets(aws.staging_key, aws.prod_key)
        return _policy(read, caches(staging, prod), tokens, *_state(aws, [staging, prod], []), keys)
    if role == "deploy-staging":
        return _policy(
            read,
            *_state(aws, [staging], [staging]),
            _secrets(aws.staging_key),
            *_deploy(aws, staging, builds=True),
        )
    # Production reads the build stack's outputs (a StackReference): its state, and its key for
    # any secret output.
    return _policy(
        read,
        *_state(aws, [prod, staging], [prod]),
        _secrets(aws.prod_key, aws.staging_key),
        *_deploy(aws, prod, builds=False),
    )
