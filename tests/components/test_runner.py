"""The GitLab runner component: least privilege, no secret on the host's way in, a host that
heals itself and stops gracefully. Checked on what AWS and GitLab would be asked for, against the
values the offline mocks answer with."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from typing import Any, cast

import pulumi
import pytest

from infra.components.launch import ROOT_DEVICE
from infra.components.runner import GitlabRunner, GitlabRunnerArgs, image_statements
from infra.offline.engine import SECRET, RecordingMonitor, ShipyardMocks, find_one
from infra.settings import RunnerSettings, architecture
from infra.userdata import USERDATA_DIR, decode

REPO_ARN = "arn:aws:ecr:eu-west-1:123456789012:repository/acme/web"
REVIEW_ARN = "arn:aws:ecr:eu-west-1:123456789012:repository/acme/web-review"
PARAMETER_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/shipyard/staging/gitlab-runner-token"
PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
PUSH = ["ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"]
SCAN_FINDINGS = "ecr:DescribeImageScanFindings"
# The statements every runner has, whatever its purpose.
COMMON = {"ReadRunnerToken", "WriteBackRotatedToken", "EcrLogin", "OwnLifecycleHooks"}
GROUP = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def runner(name: str = "runner", **overrides: Any) -> GitlabRunner:
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
        purpose="release",
        repository_arn=REPO_ARN,
        review_repository_arn=REVIEW_ARN,
        gitlab_runner_version="19.1.1",
        docker_version="25.0.*",
    )
    return GitlabRunner(name, replace(args, **overrides))


def settled(r: GitlabRunner) -> pulumi.Output:
    return pulumi.Output.all(r.group.urn, r.launch_template.urn, r.token_parameter.urn, r.security_group.urn)


def step(monitor: RecordingMonitor, typ: str) -> Any:
    return find_one(monitor.steps, typ)


def state(monitor: RecordingMonitor, typ: str) -> dict[str, Any]:
    """What the mock provider answered for the one resource of this type."""
    return monitor.resources[step(monitor, typ).urn].state


def answer(monitor: RecordingMonitor, token: str, **inputs: Any) -> dict[str, Any]:
    """What the mocks answer to a data source call, as the component's own call gets it."""
    found = cast(ShipyardMocks, monitor.mocks)._answer(token, inputs)
    assert found is not None, token
    return found


def statements(monitor: RecordingMonitor) -> dict[str, dict[str, Any]]:
    doc = json.loads(step(monitor, "aws:iam/rolePolicy:RolePolicy").raw_inputs["policy"])
    return {s["Sid"]: s for s in doc["Statement"]}


def user_data(monitor: RecordingMonitor) -> str:
    return decode(step(monitor, LAUNCH_TEMPLATE).raw_inputs["userData"])


def seconds(duration: str) -> int:
    """A Pulumi custom timeout such as `1h30m` or `95m` in seconds."""
    parts = re.findall(r"(\d+)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def script_number(script: str, pattern: str) -> int:
    """A number the host's scripts live by, read from the script itself."""
    found = re.search(pattern, (USERDATA_DIR / script).read_text())
    assert found, f"runner_userdata/{script} no longer matches {pattern!r}; update this test with it"
    return int(found.group(1))


# systemd gives gitlab-runner maximumTimeout plus this to stop (bootstrap.sh, R7).
STOP_MARGIN = script_number("bootstrap.sh", r"TimeoutStopSec=.*MAXIMUM_TIMEOUT \+ (\d+)")
# The stop script records a terminate-hook heartbeat this often while jobs finish (stop.sh).
HEARTBEAT_INTERVAL = script_number("stop.sh", r'HEARTBEAT_SECONDS="\$\{HEARTBEAT_SECONDS:-(\d+)\}"')


@pulumi.runtime.test
def test_gitlab_runner_is_locked_tagged_and_project_scoped(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards G6

    def check(_: Any) -> None:
        inputs = step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs
        project = answer(mocked, "gitlab:index/getProject:getProject", pathWithNamespace="acme/web")
        assert inputs["projectId"] == int(project["id"])  # the project's id, as an int
        assert inputs["runnerType"] == "project_type"
        assert inputs["tagLists"] == ["shipyard", "docker"]
        assert inputs["locked"] is True and inputs["untagged"] is False
        assert inputs["accessLevel"] == "not_protected"
        assert inputs["maximumTimeout"] == 3600

    return settled(r).apply(check)


@pulumi.runtime.test
def test_a_numeric_project_is_used_as_its_id(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(gitlab_project="4242")  # guards G6

    def check(_: Any) -> None:
        assert step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs["projectId"] == 4242

    return settled(r).apply(check)


@pulumi.runtime.test
def test_deploy_runner_is_protected_only_pulls_and_reads_scan_findings(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(protected_only=True, purpose="deploy", review_repository_arn=None)

    def check(_: Any) -> None:
        assert step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs["accessLevel"] == "ref_protected"
        sts = statements(mocked)
        assert set(sts) == {*COMMON, "PullReleaseImages", "ReadScanFindings"}
        assert (sts["PullReleaseImages"]["Action"], sts["PullReleaseImages"]["Resource"]) == (PULL, REPO_ARN)
        assert (sts["ReadScanFindings"]["Action"], sts["ReadScanFindings"]["Resource"]) == (SCAN_FINDINGS, REPO_ARN)
        assert "PRIVILEGED=false" in user_data(mocked)

    return settled(r).apply(check)


def actions_on(sts: dict[str, dict[str, Any]], resource: str) -> set[str]:
    found: set[str] = set()
    for s in sts.values():
        if s["Resource"] == resource:
            found |= {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
    return found


@pulumi.runtime.test
def test_review_runner_pushes_only_the_review_repository_and_reads_the_release_cache(
    mocked: RecordingMonitor,
) -> pulumi.Output:
    r = runner(purpose="review", tags=["shipyard", "review"])  # guards G11

    def check(_: Any) -> None:
        sts = statements(mocked)
        assert set(sts) == {*COMMON, "PushReviewImages", "PullReleaseLayerCache"}
        assert actions_on(sts, REVIEW_ARN) == set(PULL + PUSH)
        # The release repository: read the layer cache, never write, no scan findings to act on.
        assert actions_on(sts, REPO_ARN) == set(PULL)
        assert not [s for s in sts.values() if any(str(a).startswith("kms:") for a in [s["Action"]])]
        # Builds, so Docker-in-Docker; its own names wherever the outside world sees them.
        text = user_data(mocked)
        assert "PRIVILEGED=true" in text
        assert r.asg_name == "shipyard-staging-review-runner"
        assert "ASG_NAME=shipyard-staging-review-runner" in text
        assert r.token_parameter_name == "/shipyard/staging/gitlab-review-runner-token"
        assert step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs["description"] == (
            "shipyard staging review runner on AWS"
        )
        assert "RUNNER_NAME=shipyard-staging-review\n" in text

    return settled(r).apply(check)


def test_a_review_runner_without_the_review_repository_is_a_program_error() -> None:
    with pytest.raises(ValueError, match="review repository"):
        image_statements("review", REPO_ARN, None, enhanced_scanning=False)


@pytest.mark.parametrize(("purpose", "reads"), [("release", True), ("deploy", True), ("review", False)])
def test_enhanced_scanning_findings_are_readable_where_scan_findings_are(purpose: Any, reads: bool) -> None:
    # Amazon Inspector answers enhanced findings and checks inspector2:ListFindings, which takes no ARN.
    sids = {s["Sid"]: s for s in image_statements(purpose, REPO_ARN, REVIEW_ARN, enhanced_scanning=True)}
    basic = {s["Sid"] for s in image_statements(purpose, REPO_ARN, REVIEW_ARN, enhanced_scanning=False)}
    assert ("ReadEnhancedScanFindings" in sids) is reads
    assert ("ReadScanFindings" in basic) is reads and "ReadEnhancedScanFindings" not in basic
    if reads:
        assert (sids["ReadEnhancedScanFindings"]["Action"], sids["ReadEnhancedScanFindings"]["Resource"]) == (
            "inspector2:ListFindings",
            "*",
        )


@pulumi.runtime.test
def test_token_is_written_once_per_runner_to_a_secure_string_parameter_only(
    mocked: RecordingMonitor,
) -> pulumi.Output:
    r = runner()  # guards R1, R2, R18

    def check(values: list[Any]) -> None:
        token, runner_id = values[0], values[1]
        param = step(mocked, "aws:ssm/parameter:Parameter")
        assert param.raw_inputs["type"] == "SecureString"
        assert param.raw_inputs["name"] == "/shipyard/staging/gitlab-runner-token"
        # Write-only: written when the runner (and so its token) is new, never read back, so the
        # token that the host writes back after a rotation is not overwritten by `pulumi up`.
        assert param.raw_inputs["valueWo"] == token
        assert param.inputs["valueWo"] == SECRET
        assert param.raw_inputs["valueWoVersion"] == int(runner_id)
        assert "value" not in param.raw_inputs
        for other in mocked.steps:
            if other is not param:
                assert token not in json.dumps(other.raw_inputs), other.urn
        text = user_data(mocked)
        assert token not in text
        assert not re.search(r"glrt-[A-Za-z0-9_-]{8,}", text)

    return pulumi.Output.all(r.runner.token, r.runner_id, settled(r)).apply(check)


@pulumi.runtime.test
def test_role_reads_and_writes_back_exactly_its_parameter_and_pushes_exactly_its_repository(
    mocked: RecordingMonitor,
) -> pulumi.Output:
    r = runner()  # guards R1, R7, R18

    def check(_: Any) -> None:
        sts = statements(mocked)
        assert set(sts) == {*COMMON, "PushReleaseImages", "ReadScanFindings"}
        assert sts["ReadRunnerToken"] == {
            "Sid": "ReadRunnerToken",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": PARAMETER_ARN,
        }
        assert sts["WriteBackRotatedToken"] == {
            "Sid": "WriteBackRotatedToken",
            "Effect": "Allow",
            "Action": "ssm:PutParameter",
            "Resource": PARAMETER_ARN,
        }
        assert sts["EcrLogin"] == {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        }
        assert sts["PushReleaseImages"]["Action"] == sorted(PULL + PUSH)
        assert sts["PushReleaseImages"]["Resource"] == REPO_ARN
        assert sts["ReadScanFindings"] == {
            "Sid": "ReadScanFindings",
            "Effect": "Allow",
            "Action": SCAN_FINDINGS,
            "Resource": REPO_ARN,
        }
        # Nothing on the review repository; signing is the signing key's policy's (signing.py).
        assert actions_on(sts, REVIEW_ARN) == set()
        assert "kms:" not in json.dumps(sts)
        assert sts["OwnLifecycleHooks"]["Action"] == [
            "autoscaling:CompleteLifecycleAction",
            "autoscaling:RecordLifecycleActionHeartbeat",
        ]
        assert sts["OwnLifecycleHooks"]["Resource"] == (
            "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/shipyard-staging-runner"
        )
        assert all(s["Effect"] == "Allow" and "Condition" not in s for s in sts.values())
        managed = step(mocked, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").raw_inputs["policyArn"]
        assert managed == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"  # guards R13
        assert json.loads(step(mocked, "aws:iam/role:Role").raw_inputs["assumeRolePolicy"])["Statement"] == [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]

    return settled(r).apply(check)


@pulumi.runtime.test
def test_security_group_has_no_ingress_and_web_egress_in_the_default_vpc(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards R13

    def check(_: Any) -> None:
        sg = step(mocked, "aws:ec2/securityGroup:SecurityGroup").raw_inputs
        assert sg["ingress"] == []
        assert sorted((rule["fromPort"], rule["toPort"], rule["protocol"]) for rule in sg["egress"]) == [
            (80, 80, "tcp"),
            (443, 443, "tcp"),
        ]
        assert sg["vpcId"] == answer(mocked, "aws:ec2/getVpc:getVpc", default=True)["id"]

    return settled(r).apply(check)


@pulumi.runtime.test
def test_launch_template_requires_imdsv2_and_encrypts_the_real_root_volume(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(disk_gb=120)  # guards R6, R10, R14

    def check(_: Any) -> None:
        lt = step(mocked, LAUNCH_TEMPLATE).raw_inputs
        assert lt["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 2,
        }
        (disk,) = lt["blockDeviceMappings"]
        assert lt["imageId"] == "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
        assert lt["instanceType"] == "t3.large"
        assert disk["deviceName"] == ROOT_DEVICE == "/dev/xvda"  # Amazon Linux 2023's root device
        assert disk["ebs"] == {
            "volumeSize": 120,
            "volumeType": "gp3",
            "encrypted": "true",
            "deleteOnTermination": "true",
        }
        assert lt["iamInstanceProfile"] == {"arn": state(mocked, "aws:iam/instanceProfile:InstanceProfile")["arn"]}
        assert lt["vpcSecurityGroupIds"] == [
            mocked.resources[step(mocked, "aws:ec2/securityGroup:SecurityGroup").urn].id
        ]

    return settled(r).apply(check)


@pulumi.runtime.test
def test_user_data_is_base64_gzip_cloud_config_under_16kb(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards R9

    def check(values: list[Any]) -> None:
        encoded = step(mocked, LAUNCH_TEMPLATE).raw_inputs["userData"]
        assert len(base64.b64decode(encoded)) <= 16 * 1024
        text = decode(encoded)
        assert text.startswith("#cloud-config\n")
        assert "TOKEN_PARAMETER=/shipyard/staging/gitlab-runner-token" in text
        assert "ASG_NAME=shipyard-staging-runner" in text
        assert "MAXIMUM_TIMEOUT=3600" in text  # the host's stop timeout follows it (R7)
        # The runner's id, not the parameter's version: a new runner rolls new hosts; the host's
        # own write-backs of a rotated token (R18) do not.
        assert f"TOKEN_VERSION={values[0]}" in text

    return pulumi.Output.all(r.runner_id, settled(r)).apply(check)


@pulumi.runtime.test
def test_a_new_runner_rolls_new_hosts(mocked: RecordingMonitor) -> pulumi.Output:
    first, second = runner("first"), runner("second")  # guards R2, R18

    def check(ids: list[Any]) -> None:
        templates = sorted((s for s in mocked.steps if s.type == LAUNCH_TEMPLATE), key=lambda s: s.name)
        assert [t.name for t in templates] == ["first-lt", "second-lt"]
        lines = [{line.strip() for line in decode(t.raw_inputs["userData"]).splitlines()} for t in templates]
        assert ids[0] != ids[1]
        changed = lines[0] ^ lines[1]
        # A new runner means a new token in the parameter: only the runner's id differs, and it
        # makes a new launch template version, so the instance refresh brings up hosts that read it.
        assert changed == {f"TOKEN_VERSION={ids[0]}", f"TOKEN_VERSION={ids[1]}"}

    return pulumi.Output.all(first.runner_id, second.runner_id, settled(first), settled(second)).apply(check)


@pulumi.runtime.test
def test_group_of_one_heals_refreshes_and_hooks_launch_and_termination(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(maximum_timeout=5400)  # guards R7, R8

    def check(values: list[Any]) -> None:
        asg = step(mocked, GROUP)
        inputs = asg.raw_inputs
        assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (1, 1, 1)
        assert inputs["name"] == r.asg_name == "shipyard-staging-runner"
        assert inputs["healthCheckType"] == "EC2"
        assert asg.delete_before_replace and step(mocked, "aws:ssm/parameter:Parameter").delete_before_replace
        lt = mocked.resources[step(mocked, LAUNCH_TEMPLATE).urn]
        assert inputs["launchTemplate"] == {"id": lt.id, "version": str(lt.state["latestVersion"])}
        # The new host is up before the only old one stops: never below one host, at most two.
        assert inputs["instanceRefresh"] == {
            "strategy": "Rolling",
            "preferences": {"minHealthyPercentage": 100, "maxHealthyPercentage": 200},
        }
        assert inputs["vpcZoneIdentifiers"] == answer(mocked, "aws:ec2/getSubnets:getSubnets")["ids"]
        assert inputs["initialLifecycleHooks"] == [
            {
                "name": "shipyard-launch",
                "lifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "heartbeatTimeout": 900,
                "defaultResult": "ABANDON",  # a host that never reports in is replaced (R8)
            },
            {
                "name": "shipyard-terminate",
                "lifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                "heartbeatTimeout": 900,
                "defaultResult": "CONTINUE",
            },
        ]
        text = user_data(mocked)
        assert "LAUNCH_HOOK=shipyard-launch" in text and "TERMINATE_HOOK=shipyard-terminate" in text
        # The token and the permissions exist before the first host boots.
        assert {values[1], values[2]} <= set(asg.dependencies)

    return pulumi.Output.all(r.group.urn, r.token_parameter.urn, r.policy.urn).apply(check)


@pytest.mark.parametrize("maximum_timeout", [600, 3600, 5400, 7200, 86400])
@pulumi.runtime.test
def test_hooks_stay_fixed_and_deletion_outlasts_the_drain(
    mocked: RecordingMonitor, maximum_timeout: int
) -> pulumi.Output:
    r = runner(maximum_timeout=maximum_timeout)  # guards R7, R19, R20

    def check(_: Any) -> None:
        hooks = {h["lifecycleTransition"]: h for h in step(mocked, GROUP).raw_inputs["initialLifecycleHooks"]}
        terminate = hooks["autoscaling:EC2_INSTANCE_TERMINATING"]
        # Fixed whatever the setting: a changed hook replaces the group (R19).
        assert terminate["heartbeatTimeout"] == hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]["heartbeatTimeout"] == 900
        # The group's deletion (or replacement) waits for the drain: systemd lets running jobs
        # finish for maximumTimeout plus its margin, and a stop script that died leaves the hook
        # open for one more heartbeat timeout (R20; the provider's default is 10 minutes).
        drain = maximum_timeout + STOP_MARGIN + terminate["heartbeatTimeout"]
        assert seconds(step(mocked, GROUP).custom_timeouts["delete"]) > drain
        # A replaced security group goes once the host that uses it is gone.
        assert seconds(step(mocked, "aws:ec2/securityGroup:SecurityGroup").custom_timeouts["delete"]) > drain
        assert f"MAXIMUM_TIMEOUT={maximum_timeout}" in user_data(mocked)
        assert step(mocked, "gitlab:index/userRunner:UserRunner").raw_inputs["maximumTimeout"] == maximum_timeout

    return settled(r).apply(check)


@pulumi.runtime.test
def test_terminate_hook_outlives_heartbeat_gaps_and_the_longest_job(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner()  # guards R7

    def check(_: Any) -> None:
        hooks = {h["lifecycleTransition"]: h for h in step(mocked, GROUP).raw_inputs["initialLifecycleHooks"]}
        heartbeat = hooks["autoscaling:EC2_INSTANCE_TERMINATING"]["heartbeatTimeout"]
        assert all(30 <= h["heartbeatTimeout"] <= 7200 for h in hooks.values())  # PutLifecycleHook's range
        assert heartbeat >= 2 * HEARTBEAT_INTERVAL  # one late heartbeat does not end the drain
        # AWS holds a hook for at most 100 heartbeat timeouts or 48 h (LifecycleHook.GlobalTimeout):
        # enough for the longest job any setting allows, and the stop margin after it.
        longest_job = next(m.le for m in RunnerSettings.model_fields["maximum_timeout"].metadata if hasattr(m, "le"))
        assert min(100 * heartbeat, 48 * 3600) >= longest_job + STOP_MARGIN

    return settled(r).apply(check)


@pulumi.runtime.test
def test_given_subnets_are_used_with_their_vpc(mocked: RecordingMonitor) -> pulumi.Output:
    r = runner(subnet_ids=["subnet-0abc1234", "subnet-0def5678"])

    def check(_: Any) -> None:
        assert step(mocked, GROUP).raw_inputs["vpcZoneIdentifiers"] == ["subnet-0abc1234", "subnet-0def5678"]
        first = answer(mocked, "aws:ec2/getSubnet:getSubnet", id="subnet-0abc1234")
        assert step(mocked, "aws:ec2/securityGroup:SecurityGroup").raw_inputs["vpcId"] == first["vpcId"]
        assert first["vpcId"] != answer(mocked, "aws:ec2/getVpc:getVpc", default=True)["id"]

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
