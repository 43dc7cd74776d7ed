"""The GitLab runner component: least privilege, no secret on the host's way in, a host that
heals itself and stops gracefully. Checked on what AWS and GitLab would be asked for."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pulumi
import pytest

from infra.cli.engine import SECRET, RecordingMonitor, find_one
from infra.components.runner import ROOT_DEVICE, GitlabRunner, GitlabRunnerArgs, architecture
from infra.userdata import decode

REPO_ARN = "arn:aws:ecr:eu-west-1:123456789012:repository/acme/web"
TOKEN_PREFIX = "glrt-"


def runner(**overrides: Any) -> GitlabRunner:
    args = GitlabRunnerArgs(
        stack="staging",
        gitlab_project="acme/web",
        gitlab_url="https://gitlab.com",
        region="eu-west-1",
        instance_type="t3.large",
        concurrent=4,
        disk_gb=80,
        tags=["shipyard", "docker"],
        protected_only=False,
        maximum_timeout=3600,
        repository_arn=REPO_ARN,
        can_push=True,
        gitlab_runner_version="19.1.1",
        docker_version="25.0.*",
    )
    return GitlabRunner("runner", replace(args, **overrides))


def settled(r: GitlabRunner) -> pulumi.Output:
    return pulumi.Output.all(r.group.urn, r.launch_template.urn, r.token_parameter.urn, r.security_group.urn)


def step(monitor: RecordingMonitor, typ: str) -> Any:
    return find_one(monitor.steps, typ)


def statements(monitor: RecordingMonitor) -> dict[str, dict[str, Any]]:
    doc = json.loads(step(monitor, "aws:iam/rolePolicy:RolePolicy").raw_inputs["policy"])
    return {s["Sid"]: s for s in doc["Statement"]}


@pulumi.runtime.test
def test_gitlab_runner_is_locked_tagged_and_project_scoped(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards G6

    def check(_: Any) -> None:
        inputs = step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs
        assert inputs["runnerType"] == "project_type"
        assert isinstance(inputs["projectId"], int)
        assert inputs["tagLists"] == ["shipyard", "docker"]
        assert inputs["locked"] is True and inputs["untagged"] is False
        assert inputs["accessLevel"] == "not_protected"
        assert inputs["maximumTimeout"] >= 600

    return settled(r).apply(check)


@pulumi.runtime.test
def test_deploy_runner_is_protected_only_and_pull_only(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(protected_only=True, can_push=False)

    def check(_: Any) -> None:
        assert step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs["accessLevel"] == "ref_protected"
        actions = statements(mocked)["EcrRepository"]["Action"]
        assert not [a for a in actions if a in ("ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart")]
        assert "ecr:BatchGetImage" in actions
        assert "PRIVILEGED=false" in decode(
            step(mocked, "aws:ec2/launchTemplate:LaunchTemplate").raw_inputs["userData"]
        )

    return settled(r).apply(check)


@pulumi.runtime.test
def test_token_goes_to_a_secure_string_parameter_only(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards R1, R2

    def check(_: Any) -> None:
        param = step(mocked, "aws:ssm/parameter:Parameter")
        assert param.raw_inputs["type"] == "SecureString"
        assert param.raw_inputs["name"] == "/shipyard/staging/gitlab-runner-token"
        assert param.raw_inputs["value"].startswith(TOKEN_PREFIX)  # the real token flows here ...
        assert param.inputs["value"] == SECRET  # ... as a secret
        token = param.raw_inputs["value"]
        for other in mocked.steps:
            if other is not param:
                assert token not in json.dumps(other.raw_inputs), other.urn
        user_data = decode(step(mocked, "aws:ec2/launchTemplate:LaunchTemplate").raw_inputs["userData"])
        assert token not in user_data
        assert not re.search(r"glrt-[A-Za-z0-9_-]{8,}", user_data)

    return settled(r).apply(check)


@pulumi.runtime.test
def test_role_reads_exactly_its_parameter_and_pushes_exactly_its_repository(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()

    def check(_: Any) -> None:
        sts = statements(mocked)
        param_arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/shipyard/staging/gitlab-runner-token"
        assert sts["ReadRunnerToken"] == {
            "Sid": "ReadRunnerToken",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": param_arn,
        }
        assert sts["DecryptRunnerToken"]["Resource"].startswith("arn:aws:kms:eu-west-1:123456789012:key/")
        assert sts["DecryptRunnerToken"]["Condition"] == {
            "StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}
        }
        assert sts["EcrRepository"]["Resource"] == REPO_ARN
        assert "ecr:PutImage" in sts["EcrRepository"]["Action"]
        assert sts["OwnLifecycleHooks"]["Resource"] == (
            "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/shipyard-staging-runner"
        )
        for sid, statement in sts.items():
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), sid
            if statement["Resource"] == "*":
                assert actions == ["ecr:GetAuthorizationToken"], sid
        managed = step(mocked, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").raw_inputs["policyArn"]
        assert managed == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"  # guards R13
        assert step(mocked, "aws:iam/role:Role").raw_inputs["assumeRolePolicy"].count("ec2.amazonaws.com") == 1

    return settled(r).apply(check)


@pulumi.runtime.test
def test_security_group_has_no_ingress_and_web_egress(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards R13

    def check(_: Any) -> None:
        sg = step(mocked, "aws:ec2/securityGroup:SecurityGroup").raw_inputs
        assert sg["ingress"] == []
        assert sorted(rule["fromPort"] for rule in sg["egress"]) == [80, 443]
        assert sg["vpcId"].startswith("vpc-")

    return settled(r).apply(check)


@pulumi.runtime.test
def test_launch_template_requires_imdsv2_and_encrypts_the_real_root_volume(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(disk_gb=120)  # guards R6, R10, R14

    def check(_: Any) -> None:
        lt = step(mocked, "aws:ec2/launchTemplate:LaunchTemplate").raw_inputs
        assert lt["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 2,
        }
        (disk,) = lt["blockDeviceMappings"]
        assert lt["imageId"].startswith("resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-")
        assert disk["deviceName"] == ROOT_DEVICE == "/dev/xvda"  # Amazon Linux 2023's root device
        assert disk["ebs"] == {
            "volumeSize": 120,
            "volumeType": "gp3",
            "encrypted": "true",
            "deleteOnTermination": "true",
        }
        assert lt["iamInstanceProfile"]["arn"].startswith("arn:aws:iam::123456789012:instance-profile/")

    return settled(r).apply(check)


@pulumi.runtime.test
def test_user_data_is_base64_gzip_cloud_config_under_16kb(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards R9

    def check(_: Any) -> None:
        import base64

        encoded = step(mocked, "aws:ec2/launchTemplate:LaunchTemplate").raw_inputs["userData"]
        assert len(base64.b64decode(encoded)) <= 16 * 1024
        text = decode(encoded)
        assert text.startswith("#cloud-config\n")
        assert "TOKEN_PARAMETER=/shipyard/staging/gitlab-runner-token" in text
        assert "ASG_NAME=shipyard-staging-runner" in text

    return settled(r).apply(check)


@pulumi.runtime.test
def test_group_of_one_heals_refreshes_and_hooks_launch_and_termination(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(maximum_timeout=5400)  # guards R7, R8

    def check(values: list[Any]) -> None:
        asg = step(mocked, "aws:autoscaling/group:Group")
        inputs = asg.raw_inputs
        assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (1, 1, 1)
        assert inputs["name"] == r.asg_name == "shipyard-staging-runner"
        assert asg.delete_before_replace and step(mocked, "aws:ssm/parameter:Parameter").delete_before_replace
        assert inputs["launchTemplate"]["version"] == "1"
        assert inputs["instanceRefresh"]["strategy"] == "Rolling"
        assert len(inputs["vpcZoneIdentifiers"]) == 3  # the default VPC's subnets
        hooks = {h["lifecycleTransition"]: h for h in inputs["initialLifecycleHooks"]}
        launch = hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]
        assert launch["defaultResult"] == "ABANDON"
        terminate = hooks["autoscaling:EC2_INSTANCE_TERMINATING"]
        assert terminate["heartbeatTimeout"] >= 5400 and terminate["defaultResult"] == "CONTINUE"
        user_data = decode(step(mocked, "aws:ec2/launchTemplate:LaunchTemplate").raw_inputs["userData"])
        assert f"LAUNCH_HOOK={launch['name']}" in user_data and f"TERMINATE_HOOK={terminate['name']}" in user_data
        # The token and the permissions exist before the first host boots.
        assert {values[1], values[2]} <= set(asg.dependencies)

    return pulumi.Output.all(r.group.urn, r.token_parameter.urn, r.policy.urn).apply(check)


@pulumi.runtime.test
def test_given_subnets_are_used_with_their_vpc(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(subnet_ids=["subnet-0abc1234", "subnet-0def5678"])

    def check(_: Any) -> None:
        assert step(mocked, "aws:autoscaling/group:Group").raw_inputs["vpcZoneIdentifiers"] == [
            "subnet-0abc1234",
            "subnet-0def5678",
        ]
        assert step(mocked, "aws:ec2/securityGroup:SecurityGroup").raw_inputs["vpcId"].startswith("vpc-")

    return settled(r).apply(check)


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [
        ("t3.large", "x86_64"),
        ("t4g.medium", "arm64"),
        ("m7gd.xlarge", "arm64"),
        ("g4dn.xlarge", "x86_64"),
        ("c6gn.large", "arm64"),
        ("m6i.large", "x86_64"),
    ],
)
def test_ami_architecture_follows_the_instance_family(instance_type: str, arch: str) -> None:
    assert architecture(instance_type) == arch
