"""The GitLab runner on AWS: a self-healing Auto Scaling group of one EC2 host with Docker,
registered once in GitLab, its token kept in SSM and read on the host, never in user data.

A runner has one purpose, and its role may do what that purpose needs and nothing more: the release
build runner pushes release images, the review build runner pushes merge-request images only, a
deploy runner pulls (G11).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pulumi
import pulumi_gitlab as gitlab
from pulumi_aws import autoscaling, ec2, get_caller_identity_output, get_partition_output, iam, ssm

from infra.components.fleet import WorkerFleet, WorkerFleetArgs, manager_statements
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
from infra.settings import FleetSettings, runner_name, workers_name
from infra.userdata import FleetHost, RunnerHost, user_data

LAUNCH_HOOK = "shipyard-launch"
TERMINATE_HOOK = "shipyard-terminate"
# Both hooks are fixed: any change to `initial_lifecycle_hooks` replaces the whole group in
# terraform-provider-aws (PR #34260, issue #49226), so no setting may reach them (R19).
# The launching host has this long to install, verify and report in; ABANDON after it (R8).
LAUNCH_HEARTBEAT_SECONDS = 900
# The stop script records a heartbeat every 300 s (runner_userdata/stop.sh) while jobs finish, so
# 900 s survives two missed ones. AWS allows 30 to 7200 s per heartbeat and holds a hook at most
# 100 heartbeats or 48 h, whichever is smaller (API LifecycleHook.GlobalTimeout): 25 h here, longer
# than the longest job a runner accepts (maximumTimeout up to 24 h) plus its stop margin (R7).
TERMINATE_HEARTBEAT_SECONDS = 900
# What a terminating host may need beyond its longest job: systemd's stop margin (300 s over
# maximumTimeout, bootstrap.sh), one heartbeat timeout should the stop script die (900 s), and the
# instance's own shutdown.
DRAIN_MARGIN_SECONDS = 1800

PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
PUSH_ACTIONS = [
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
# The release script reads an image's scan findings before it releases the image. With enhanced
# scanning ECR answers them from Amazon Inspector, which also checks the caller for
# inspector2:ListFindings, an action that takes no resource ARN
# (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-enhanced-iam.html).
SCAN_FINDINGS_ACTION = "ecr:DescribeImageScanFindings"
ENHANCED_FINDINGS_ACTION = "inspector2:ListFindings"

# release: builds default-branch images, pushes and signs them (protected refs only, G11);
# review: builds merge-request images into the review repository; deploy: releases what was built.
RunnerPurpose = Literal["release", "review", "deploy"]


@dataclass
class GitlabRunnerArgs:
    stack: str
    gitlab_project: str
    """`group/project` path or numeric id; the runner is locked to it."""
    gitlab_url: str
    region: str
    instance_type: str
    concurrent: int
    disk_gb: int
    tags: list[str]
    protected_only: bool
    """`ref_protected`: jobs of protected branches and tags only."""
    maximum_timeout: int
    purpose: RunnerPurpose
    repository_arn: pulumi.Input[str]
    """The release repository."""
    gitlab_runner_version: str
    docker_version: str
    review_repository_arn: pulumi.Input[str] | None = None
    """The review repository: where a review build runner pushes (and only there)."""
    enhanced_scanning: pulumi.Input[bool] = False
    """The registry scans with Amazon Inspector: reading findings needs inspector2:ListFindings."""
    subnet_ids: list[str] = field(default_factory=list)
    fleet: FleetSettings | None = None
    """Fleet mode: the host only manages, and each job runs on a worker of this fleet (R15)."""


def drain_timeout(maximum_timeout: int) -> str:
    """The group's delete timeout: deleting or replacing it first waits until its host has drained,
    which lasts as long as the longest job (R20; the provider's default is 10 minutes)."""
    return f"{math.ceil((maximum_timeout + DRAIN_MARGIN_SECONDS) / 60)}m"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(sid: str, actions: str | list[str], resource: str) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


def image_statements(
    purpose: RunnerPurpose, repository: str, review_repository: str | None, enhanced_scanning: bool
) -> list[dict[str, Any]]:
    """What the runner may do with images, by purpose (G11). Signing is not here: the signing key's
    own policy allows it to the release build runner's role (infra/components/signing.py)."""
    if purpose == "review":
        if review_repository is None:
            raise ValueError("a review build runner needs the review repository")
        return [
            _allow("PushReviewImages", sorted(PULL_ACTIONS + PUSH_ACTIONS), review_repository),
            # BuildKit reads the layer cache that release builds write; it never writes it.
            _allow("PullReleaseLayerCache", PULL_ACTIONS, repository),
        ]
    statements = [
        _allow("PushReleaseImages", sorted(PULL_ACTIONS + PUSH_ACTIONS), repository)
        if purpose == "release"
        else _allow("PullReleaseImages", PULL_ACTIONS, repository),
        _allow("ReadScanFindings", SCAN_FINDINGS_ACTION, repository),
    ]
    if enhanced_scanning:
        statements.append(_allow("ReadEnhancedScanFindings", ENHANCED_FINDINGS_ACTION, "*"))
    return statements


def job_statements(purpose: RunnerPurpose, arns: dict[str, Any]) -> list[dict[str, Any]]:
    """What a runner's jobs may do: log in to ECR and use images as their purpose allows."""
    return [
        # The one ECR action that cannot be scoped to a repository.
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        *image_statements(purpose, arns["repository"], arns["review_repository"], bool(arns["enhanced"])),
    ]


class GitlabRunner(pulumi.ComponentResource):
    """GitLab runner host: UserRunner + SSM token, IAM, security group, launch template, ASG; in fleet
    mode the host manages a WorkerFleet, whose workers run the jobs with the jobs' permissions."""

    runner: gitlab.UserRunner
    token_parameter: ssm.Parameter
    role: iam.Role
    """The host's role."""
    job_role: iam.Role
    """The role the jobs run with: the host's, or in fleet mode the workers'."""
    fleet: WorkerFleet | None
    policy: iam.RolePolicy
    security_group: ec2.SecurityGroup
    launch_template: ec2.LaunchTemplate
    group: autoscaling.Group
    runner_id: pulumi.Output[str]
    asg_name: str
    fleet_asg_name: str
    """The workers' group in fleet mode; its name is fixed either way."""
    cache_bucket_name: pulumi.Output[str]
    """The fleet's job cache in fleet mode: S3 names are global, so the account's id is in it."""
    token_parameter_name: str
    tags: list[str]

    def __init__(self, name: str, args: GitlabRunnerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:aws:GitlabRunner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        # The build stack may have two runners: the review one says so in every name the outside
        # world sees; the stack's main runner keeps the names it always had.
        is_review = args.purpose == "review"
        review, review_name = ("review ", "review-") if is_review else ("", "")
        self.asg_name = runner_name(args.stack, is_review)
        self.fleet_asg_name = workers_name(args.stack, is_review)
        self.tags = args.tags
        self.token_parameter_name = f"/shipyard/{args.stack}/gitlab-{review_name}runner-token"

        # Created once; its glrt- token is returned once and reused by every host (R2, G6).
        project_id = (
            pulumi.Output.from_input(int(args.gitlab_project))
            if args.gitlab_project.isdigit()
            else gitlab.get_project_output(path_with_namespace=args.gitlab_project, opts=invoke).id.apply(int)
        )
        self.runner = gitlab.UserRunner(
            name,
            runner_type="project_type",
            project_id=project_id,
            description=f"shipyard {args.stack} {review}runner on AWS",
            tag_lists=args.tags,
            untagged=False,
            locked=True,
            access_level="ref_protected" if args.protected_only else "not_protected",
            maximum_timeout=args.maximum_timeout,
            opts=child,
        )
        self.runner_id = self.runner.id
        # R1: the token lives only here, encrypted; the host reads it at boot. The host also writes
        # gitlab-runner's rotated token back here (R18), so the value is not Pulumi's to keep:
        # `value_wo` is written but never read back (terraform-provider-aws parameter.go), so a
        # refresh shows no drift and `pulumi up` never puts an old token over a rotated one.
        # `ignore_changes=["value"]` would not do: the engine sends the ignored input's old value
        # on a replacement too (pulumi/pulumi#2657), so a new runner's token would never arrive.
        # The provider writes `value_wo` when `value_wo_version` changes: the runner's id, new
        # exactly when GitLab has issued a new token. Keep the other inputs fixed: an update
        # without a new version sends the stored `value`, which is empty here, and AWS refuses it.
        self.token_parameter = ssm.Parameter(
            f"{name}-token",
            name=self.token_parameter_name,
            type="SecureString",
            value_wo=self.runner.token,  # secret on both sides: the gitlab and aws SDKs mark it so
            value_wo_version=self.runner_id.apply(int),
            description=f"GitLab {review}runner authentication token of shipyard {args.stack}",
            # A fixed name: a replacement must not be created while the old one still holds it.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        if args.subnet_ids:
            subnet_ids: pulumi.Input[list[str]] = args.subnet_ids
            vpc_id = ec2.get_subnet_output(id=args.subnet_ids[0], opts=invoke).vpc_id
        else:
            vpc = ec2.get_vpc_output(default=True, opts=invoke)
            vpc_id = vpc.id
            subnet_ids = vpc.id.apply(
                lambda vpc_id: (
                    ec2.get_subnets_output(
                        filters=[
                            ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc_id]),
                            ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
                        ],
                        opts=invoke,
                    ).ids
                )
            )

        self.role = iam.Role(
            f"{name}-role",
            assume_role_policy=ec2_assume_role_policy(),
            description=f"shipyard {args.stack} GitLab {review}runner host",
            opts=child,
        )
        partition = get_partition_output(opts=invoke).partition
        account = get_caller_identity_output(opts=invoke).account_id
        self.cache_bucket_name = account.apply(lambda account_id: runner_name(args.stack, is_review, account_id))
        asg_arn = pulumi.Output.format(
            "arn:{0}:autoscaling:{1}:{2}:autoScalingGroup:*:autoScalingGroupName/{3}",
            partition,
            args.region,
            account,
            self.asg_name,
        )
        # What the jobs may do, by purpose (G11): on the host's role, or in fleet mode on the workers'.
        jobs = pulumi.Output.all(
            repository=args.repository_arn,
            review_repository=args.review_repository_arn,
            enhanced=args.enhanced_scanning,
        ).apply(lambda arns: list(job_statements(args.purpose, arns)))
        self.fleet = None
        # The host's role: the jobs' permissions where the jobs run on it; a fleet manager runs none
        # and only scales, reaches and caches for its workers (R15), whose role gets the jobs'.
        host_statements = jobs
        if args.fleet is not None:
            self.fleet = self._workers(name, args, jobs.apply(lambda found: _policy(*found)), vpc_id, subnet_ids)
            instances = pulumi.Output.format("arn:{0}:ec2:{1}:{2}:instance/*", partition, args.region, account)
            host_statements = pulumi.Output.all(self.fleet.group.arn, instances, self.fleet.cache_bucket.arn).apply(
                lambda v: manager_statements(v[0], self.fleet_asg_name, v[1], v[2])
            )
        self.job_role = self.fleet.role if self.fleet is not None else self.role
        self.policy = iam.RolePolicy(
            f"{name}-least-privilege",
            role=self.role.id,
            policy=pulumi.Output.all(
                parameter=self.token_parameter.arn,
                statements=host_statements,
                asg=asg_arn,
            ).apply(
                lambda arns: _policy(
                    {
                        "Sid": "ReadRunnerToken",
                        "Effect": "Allow",
                        "Action": "ssm:GetParameter",
                        "Resource": arns["parameter"],
                    },
                    # R18: gitlab-runner's rotated token goes back where the next host reads it.
                    {
                        "Sid": "WriteBackRotatedToken",
                        "Effect": "Allow",
                        "Action": "ssm:PutParameter",
                        "Resource": arns["parameter"],
                    },
                    # No KMS statement: the parameter uses the AWS managed key aws/ssm, whose key
                    # policy already lets every principal of the account encrypt and decrypt with
                    # it through Parameter Store ("grants Decrypt permission to all IAM principals
                    # in the AWS account", Systems Manager guide, ps-restrict-decryption), and
                    # does not defer to IAM, so a grant here would change nothing. Its alias also
                    # exists only once Parameter Store has used the key, so looking it up would
                    # fail a new account's first preview.
                    *arns["statements"],
                    {
                        "Sid": "OwnLifecycleHooks",
                        "Effect": "Allow",
                        "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
                        "Resource": arns["asg"],
                    },
                )
            ),
            opts=child,
        )
        session_manager = iam.RolePolicyAttachment(
            f"{name}-session-manager",
            role=self.role.name,
            policy_arn=pulumi.Output.concat("arn:", partition, ":iam::aws:policy/AmazonSSMManagedInstanceCore"),
            opts=child,
        )
        profile = iam.InstanceProfile(f"{name}-profile", role=self.role.name, opts=child)

        # No ingress at all: Session Manager instead of SSH (R13). Egress for HTTPS and packages.
        self.security_group = ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc_id,
            description=f"shipyard {args.stack} GitLab {review}runner: no ingress, web egress",
            ingress=[],
            egress=web_egress()
            # A fleet manager runs its jobs over SSH on its workers, and reaches no other host. Inline,
            # as the rules above: a separate rule resource beside inline rules would be undone by them.
            # The description stays as it is: changing it replaces the group (P11).
            + (
                [
                    ec2.SecurityGroupEgressArgs(
                        protocol="tcp", from_port=22, to_port=22, security_groups=[self.fleet.security_group.id]
                    )
                ]
                if self.fleet is not None
                else []
            ),
            # Subnets of another VPC replace this security group; AWS deletes the old one only once
            # the host that uses it has drained, which outlasts the provider's 15 minutes (R20).
            opts=pulumi.ResourceOptions(
                parent=self, custom_timeouts=pulumi.CustomTimeouts(delete=drain_timeout(args.maximum_timeout))
            ),
        )

        if self.fleet is not None:
            self.fleet.admit_ssh_from(self.security_group.id)

        # The runner's id as the parameter's write version: a new runner changes the user data, so
        # new hosts roll out, only once its token is in the parameter. The host's own write-backs
        # (R18) bump the parameter's version, not this, and roll nothing.
        fleet = args.fleet
        host = pulumi.Output.all(self.token_parameter.value_wo_version, self.cache_bucket_name).apply(
            lambda values: RunnerHost(
                aws_region=args.region,
                token_parameter=self.token_parameter_name,
                token_version=cast(int, values[0]),
                asg_name=self.asg_name,
                launch_hook=LAUNCH_HOOK,
                terminate_hook=TERMINATE_HOOK,
                gitlab_url=args.gitlab_url,
                runner_name=f"shipyard-{args.stack}" + (f"-{review.strip()}" if review else ""),
                concurrent=args.concurrent,
                maximum_timeout=args.maximum_timeout,
                # Builds need Docker-in-Docker; deploy jobs only copy images.
                privileged=args.purpose != "deploy",
                gitlab_runner_version=args.gitlab_runner_version,
                docker_version=args.docker_version,
                fleet=None
                if fleet is None
                else FleetHost(
                    asg_name=self.fleet_asg_name,
                    region=args.region,
                    cache_bucket=values[1],
                    max_instances=fleet.max_instances,
                    policies=[
                        {
                            "periods": policy.periods,
                            "timezone": policy.timezone,
                            "idle_count": policy.idle_count,
                            "idle_time": policy.idle_time,
                        }
                        for policy in fleet.idle
                    ],
                ),
            )
        )
        tags = instance_tags(self.asg_name, args.stack)
        self.launch_template = ec2.LaunchTemplate(
            f"{name}-lt",
            description=f"shipyard {args.stack} GitLab {review}runner host",
            image_id=image_id(args.instance_type),
            instance_type=args.instance_type,
            iam_instance_profile=ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            vpc_security_group_ids=[self.security_group.id],
            metadata_options=imdsv2_only(),
            block_device_mappings=encrypted_root_volume(args.disk_gb),
            # Base64 is what a launch template takes (R9); names and numbers only (R1).
            user_data=host.apply(user_data),
            tag_specifications=launched_tags(tags),
            update_default_version=True,
            tags=tags,
            opts=child,
        )

        self.group = autoscaling.Group(
            f"{name}-asg",
            name=self.asg_name,  # explicit: the role's policy names it before it exists
            min_size=1,
            max_size=1,
            desired_capacity=1,
            vpc_zone_identifiers=subnet_ids,
            launch_template=autoscaling.GroupLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)
            ),
            health_check_type="EC2",
            # A new template version replaces the host: the new one up first, then the old one stops.
            instance_refresh=autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100, max_healthy_percentage=200
                ),
            ),
            # In place before the first host launches, which a separate LifecycleHook is not.
            initial_lifecycle_hooks=[
                autoscaling.GroupInitialLifecycleHookArgs(
                    name=LAUNCH_HOOK,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                    heartbeat_timeout=LAUNCH_HEARTBEAT_SECONDS,
                    default_result="ABANDON",  # a host that never reports in is replaced (R8)
                ),
                autoscaling.GroupInitialLifecycleHookArgs(
                    name=TERMINATE_HOOK,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
                    heartbeat_timeout=TERMINATE_HEARTBEAT_SECONDS,
                    default_result="CONTINUE",
                ),
            ],
            wait_for_capacity_timeout="20m",
            tags=group_tags(tags),
            # The host reads its token and completes its hooks at boot: allow that first.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.policy, session_manager, self.token_parameter],
                delete_before_replace=True,  # a fixed name, like the token parameter
                # Deleting waits for the host to finish its jobs (R20). No update timeout: the
                # provider starts an instance refresh and returns without waiting for it.
                custom_timeouts=pulumi.CustomTimeouts(delete=drain_timeout(args.maximum_timeout)),
            ),
        )
        self.register_outputs(
            {"runnerId": self.runner_id, "asgName": self.asg_name, "tokenParameter": self.token_parameter_name}
        )

    def _workers(
        self,
        name: str,
        args: GitlabRunnerArgs,
        job_policy: pulumi.Output[str],
        vpc_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
    ) -> WorkerFleet:
        assert args.fleet is not None
        review = "review " if args.purpose == "review" else ""
        return WorkerFleet(
            f"{name}-workers",
            WorkerFleetArgs(
                stack=args.stack,
                asg_name=self.fleet_asg_name,
                cache_bucket=self.cache_bucket_name,
                description=f"shipyard {args.stack} GitLab {review}runner workers",
                fleet=args.fleet,
                docker_version=args.docker_version,
                job_policy=job_policy,
                vpc_id=vpc_id,
                subnet_ids=subnet_ids,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
