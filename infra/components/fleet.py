"""The workers of a runner in fleet mode: the Auto Scaling group that GitLab Runner's
docker-autoscaler grows and shrinks, the workers' role (the jobs' permissions), their security group
and launch template, and the S3 bucket the runner manager keeps the jobs' cache in.

Pulumi creates the group at zero and never touches its desired capacity again: the runner owns it
(R15).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_aws import autoscaling, ec2, iam, s3, vpc

from infra.components.launch import (
    ec2_assume_role_policy,
    encrypted_root_volume,
    group_tags,
    image_id,
    imdsv2_only,
    instance_tags,
    launched_tags,
    web_egress,
)
from infra.settings import FleetSettings
from infra.userdata import USERDATA_DIR, encode

WORKER_CLOUD_CONFIG = USERDATA_DIR / "worker-cloud-config.yaml"
# The only way in: the manager's SSH connections to run jobs over (docker-autoscaler, EC2 Instance
# Connect keys). Nothing else may reach a worker (R13).
SSH_PORT = 22
# The login the manager's connector uses on Amazon Linux (`connector_config` username).
WORKER_USER = "ec2-user"


@dataclass
class WorkerFleetArgs:
    stack: str
    asg_name: str
    """The group's name, which the manager's config.toml and IAM policy name too."""
    cache_bucket: pulumi.Input[str]
    """The cache bucket's name; S3 names are global, so it carries the account and region."""
    description: str
    """What the workers are, for people: `shipyard staging GitLab review runner workers`."""
    fleet: FleetSettings
    """The fleet's settings: instance types (one architecture), size, spot, disk, cache expiry."""
    docker_version: str
    job_policy: pulumi.Input[str]
    """The jobs' permissions (IAM policy document): jobs run on the workers, not on the manager."""
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]


def manager_statements(group_arn: str, group_name: str, instances: str, bucket_arn: str) -> list[dict[str, Any]]:
    """What a fleet's runner manager may do, and nothing more: scale and shrink its own worker group,
    read the groups and instances (no resource scoping exists for Describe*), send a one-minute SSH
    key to its own workers as ec2-user, and keep the job cache (infra/facts/gitlab-runner-autoscaler.yaml,
    `iam` for plugin 1.1.0 and `cache_notes`). `instances` is the region's instance ARN pattern."""
    return [
        {
            "Sid": "ScaleOwnWorkers",
            "Effect": "Allow",
            "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
            "Resource": group_arn,
        },
        {
            "Sid": "DescribeWorkers",
            "Effect": "Allow",
            "Action": [
                "autoscaling:DescribeAutoScalingGroups",
                "ec2:DescribeInstances",
                "ec2:DescribeSpotInstanceRequests",
            ],
            "Resource": "*",
        },
        # Auto Scaling tags every instance it launches with its group's name, which no job can change.
        {
            "Sid": "ConnectToOwnWorkers",
            "Effect": "Allow",
            "Action": "ec2-instance-connect:SendSSHPublicKey",
            "Resource": instances,
            "Condition": {
                "StringEquals": {"ec2:ResourceTag/aws:autoscaling:groupName": group_name, "ec2:osuser": WORKER_USER}
            },
        },
        {"Sid": "ListJobCache", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        # The manager presigns the cache URLs the jobs use: the workers hold no cache credential.
        {
            "Sid": "ReadWriteJobCache",
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            "Resource": f"{bucket_arn}/*",
        },
    ]


def worker_user_data(docker_version: str) -> str:
    """The workers' cloud-config, gzipped and base64-encoded for the launch template (R9)."""
    return encode(WORKER_CLOUD_CONFIG.read_text().replace("@docker-version", docker_version))


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "RefuseWithoutTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class WorkerFleet(pulumi.ComponentResource):
    """A runner's autoscaled workers: IAM role, security group, launch template, ASG, cache bucket."""

    role: iam.Role
    policy: iam.RolePolicy
    security_group: ec2.SecurityGroup
    launch_template: ec2.LaunchTemplate
    group: autoscaling.Group
    cache_bucket: s3.Bucket
    cache_settings: list[pulumi.CustomResource]
    """The bucket's encryption, public access block, ownership controls, TLS-only policy and expiry."""
    asg_name: str

    def __init__(self, name: str, args: WorkerFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:aws:WorkerFleet", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        self.asg_name = args.asg_name

        self.role = iam.Role(
            f"{name}-role",
            assume_role_policy=ec2_assume_role_policy(),
            description=args.description,
            opts=child,
        )
        self.policy = iam.RolePolicy(f"{name}-jobs", role=self.role.id, policy=args.job_policy, opts=child)
        profile = iam.InstanceProfile(f"{name}-profile", role=self.role.name, opts=child)

        # Egress for HTTPS and packages; the one ingress is a rule of its own (`admit_ssh_from`), as the
        # manager's security group, which it names, is created after this one.
        self.security_group = ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.description}: SSH from the manager only, web egress",
            egress=web_egress(),
            opts=child,
        )

        tags = instance_tags(args.asg_name, args.stack)
        self.launch_template = ec2.LaunchTemplate(
            f"{name}-lt",
            description=args.description,
            # One architecture across the types (a settings rule): the image of the first fits all.
            image_id=image_id(args.fleet.instance_types[0]),
            iam_instance_profile=ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            # As the host's: the groups on the template, no network interface and no public-address
            # setting, so a worker takes its subnet's MapPublicIpOnLaunch. A public subnet without NAT
            # gives the address the workers' egress needs; a private one gives none. An interface block
            # would have to carry the groups itself (pulumi-aws 7.51.1 LaunchTemplate:
            # `vpc_security_group_ids` conflicts with `network_interfaces.security_groups`).
            vpc_security_group_ids=[self.security_group.id],
            metadata_options=imdsv2_only(),
            block_device_mappings=encrypted_root_volume(args.fleet.disk_gb),
            user_data=worker_user_data(args.docker_version),
            tag_specifications=launched_tags(tags),
            update_default_version=True,
            tags=tags,
            opts=child,
        )

        self.group = autoscaling.Group(
            f"{name}-asg",
            name=args.asg_name,  # explicit: the manager's config.toml and IAM policy name it
            # Created empty; from then on the runner sets the desired capacity, never Pulumi (R15).
            min_size=0,
            max_size=args.fleet.max_instances,
            vpc_zone_identifiers=args.subnet_ids,
            mixed_instances_policy=autoscaling.GroupMixedInstancesPolicyArgs(
                instances_distribution=autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                    on_demand_base_capacity=args.fleet.on_demand_base,
                    on_demand_percentage_above_base_capacity=0 if args.fleet.spot else 100,
                    spot_allocation_strategy="price-capacity-optimized",
                ),
                launch_template=autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                    launch_template_specification=(
                        autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                            launch_template_id=self.launch_template.id,
                            version=self.launch_template.latest_version.apply(str),
                        )
                    ),
                    overrides=[
                        autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=instance_type)
                        for instance_type in args.fleet.instance_types
                    ],
                ),
            ),
            health_check_type="EC2",
            # Only the runner removes a worker, once its job is done; AWS neither scales in nor moves
            # workers between zones under a running job (R15).
            protect_from_scale_in=True,
            suspended_processes=["AZRebalance"],
            tags=group_tags(tags),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.policy],
                delete_before_replace=True,  # a fixed name
                # The runner's desired capacity is not drift: `pulumi up` must not reset it to 0 (R15).
                ignore_changes=["desiredCapacity"],
            ),
        )

        # Cache archives only: nothing here outlives `cacheDays`, so a destroy may empty the bucket.
        self.cache_bucket = s3.Bucket(f"{name}-cache", bucket=args.cache_bucket, force_destroy=True, opts=child)
        bucket = self.cache_bucket.id
        encryption = s3.BucketServerSideEncryptionConfiguration(
            f"{name}-cache-encryption",
            bucket=bucket,
            rules=[
                s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=(
                        s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                            sse_algorithm="AES256"
                        )
                    )
                )
            ],
            opts=child,
        )
        private = s3.BucketPublicAccessBlock(
            f"{name}-cache-private",
            bucket=bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        ownership = s3.BucketOwnershipControls(
            f"{name}-cache-ownership",
            bucket=bucket,
            rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        # S3 answers OperationAborted to a bucket-policy change that races the public access block
        # or the ownership controls of the same new bucket: one after the other.
        tls_only = s3.BucketPolicy(
            f"{name}-cache-tls-only",
            bucket=bucket,
            policy=self.cache_bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[private, ownership])),
        )
        expiry = s3.BucketLifecycleConfiguration(
            f"{name}-cache-expiry",
            bucket=bucket,
            rules=[
                s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-cache",
                    status="Enabled",
                    filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.fleet.cache_days),
                    abort_incomplete_multipart_upload=(
                        s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=1)
                    ),
                )
            ],
            opts=child,
        )
        self.cache_settings = [encryption, private, ownership, tls_only, expiry]
        self.register_outputs({"asgName": self.asg_name, "cacheBucket": self.cache_bucket.id})

    def admit_ssh_from(self, manager_security_group_id: pulumi.Input[str]) -> vpc.SecurityGroupIngressRule:
        """The workers' one ingress: SSH from the runner manager's security group, no address range."""
        return vpc.SecurityGroupIngressRule(
            f"{self._name}-ssh-from-manager",
            security_group_id=self.security_group.id,
            referenced_security_group_id=manager_security_group_id,
            ip_protocol="tcp",
            from_port=SSH_PORT,
            to_port=SSH_PORT,
            description="docker-autoscaler: the runner manager runs jobs over SSH",
            opts=pulumi.ResourceOptions(parent=self),
        )
