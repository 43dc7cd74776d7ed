"""The runners in fleet mode, on the staging stack with both runners switched to `mode: fleet`: one
worker group per runner that the runner owns, a manager that may scale, reach and cache for its own
workers only, jobs' permissions on the workers, and host mode planned exactly as before."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.offline.engine import Run, Step
from infra.userdata import decode
from tests.conftest import fleet_document, run_stack

FLEET = "shipyard:aws:WorkerFleet"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
RUNNERS = {"runner": "shipyard-staging-runner", "review-runner": "shipyard-staging-review-runner"}
PUSH = {"ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"}


def named(run: Run, name: str) -> Step:
    [step] = [s for s in run.steps if s.name == name]
    return step


def statements(step: Step) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in json.loads(step.raw_inputs["policy"])["Statement"]}


def test_each_runner_owns_a_worker_group_of_its_own(fleet_run: Run) -> None:  # guards R15
    for component, asg in RUNNERS.items():
        fleet = named(fleet_run, f"{component}-workers")
        assert fleet.type == FLEET and fleet.parent.endswith(f"shipyard:aws:GitlabRunner::{component}")
        group = named(fleet_run, f"{component}-workers-asg")
        assert group.parent == fleet.urn
        inputs = group.raw_inputs
        assert inputs["name"] == f"{asg}-workers"
        assert (inputs["minSize"], inputs["maxSize"]) == (0, 10)  # the fleet's defaults
        assert "desiredCapacity" not in inputs and group.ignore_changes == ["desiredCapacity"]
        assert inputs["protectFromScaleIn"] is True and inputs["suspendedProcesses"] == ["AZRebalance"]
        # The manager's own group is unchanged: one host.
        manager = named(fleet_run, f"{component}-asg").raw_inputs
        assert (manager["name"], manager["minSize"], manager["maxSize"]) == (asg, 1, 1)
    assert not [s for s in fleet_run.steps if "scalingPolicy" in s.type or "autoscaling/policy" in s.type]
    outputs = fleet_run.outputs
    assert outputs["runnerWorkersAsgName"] == "shipyard-staging-runner-workers"
    assert outputs["reviewRunnerWorkersAsgName"] == "shipyard-staging-review-runner-workers"
    assert outputs["runnerCacheBucket"] == "shipyard-staging-runner-cache-123456789012"
    assert outputs["reviewRunnerCacheBucket"] == "shipyard-staging-review-runner-cache-123456789012"


def test_the_manager_scales_reaches_and_caches_for_its_own_workers_only(fleet_run: Run) -> None:  # guards R15
    for component, asg in RUNNERS.items():
        found = statements(named(fleet_run, f"{component}-least-privilege"))
        scale = found["ScaleOwnWorkers"]
        assert re.fullmatch(
            rf"arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:[0-9a-f-]{{36}}:autoScalingGroupName/{asg}-workers",
            scale["Resource"],
        )  # the worker group's own ARN, no wildcard
        assert scale["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
        connect = found["ConnectToOwnWorkers"]
        assert connect["Action"] == "ec2-instance-connect:SendSSHPublicKey"
        assert connect["Resource"] == "arn:aws:ec2:eu-west-1:123456789012:instance/*"
        assert connect["Condition"] == {
            "StringEquals": {"ec2:ResourceTag/aws:autoscaling:groupName": f"{asg}-workers", "ec2:osuser": "ec2-user"}
        }
        bucket = f"arn:aws:s3:::{asg}-cache-123456789012"
        assert found["ListJobCache"]["Resource"] == bucket
        assert found["ReadWriteJobCache"]["Resource"] == f"{bucket}/*"
        # The jobs' permissions left the manager: no ECR login, no image, no push.
        assert not {"EcrLogin", "PushReleaseImages", "PushReviewImages", "PullReleaseLayerCache"} & set(found)
        assert "ecr:" not in named(fleet_run, f"{component}-least-privilege").raw_inputs["policy"]


def test_the_jobs_permissions_live_on_the_workers_role(fleet_run: Run) -> None:  # guards G11
    release = statements(named(fleet_run, "runner-workers-jobs"))
    assert set(release) == {"EcrLogin", "PushReleaseImages", "ReadScanFindings"}
    review = statements(named(fleet_run, "review-runner-workers-jobs"))
    assert set(review) == {"EcrLogin", "PushReviewImages", "PullReleaseLayerCache"}
    assert set(review["PushReviewImages"]["Action"]) >= PUSH
    assert review["PushReviewImages"]["Resource"].endswith(":repository/acme/storefront-review")
    # The release build's jobs sign on the workers: the key names the workers' role, not the manager's.
    key = json.loads(fleet_run.one("aws:kms/key:Key").raw_inputs["policy"])
    [signer] = [s for s in key["Statement"] if "kms:Sign" in s["Action"]]
    assert re.fullmatch(r"arn:aws:iam::123456789012:role/runner-workers-role-[0-9a-f]{7}", signer["Principal"]["AWS"])
    # What `shipyard verify` compares the key policy with: the jobs' role, not the manager's.
    assert fleet_run.outputs["runnerJobRoleArn"] == signer["Principal"]["AWS"] != fleet_run.outputs["runnerRoleArn"]


def test_only_the_manager_reaches_its_workers_and_only_over_ssh(fleet_run: Run) -> None:  # guards R13, R15
    for component in RUNNERS:
        # Each group's id as the launch templates carry it.
        [manager_id] = named(fleet_run, f"{component}-lt").raw_inputs["vpcSecurityGroupIds"]
        [workers_id] = named(fleet_run, f"{component}-workers-lt").raw_inputs["vpcSecurityGroupIds"]
        manager_sg = named(fleet_run, f"{component}-sg").raw_inputs
        [egress] = [e for e in manager_sg["egress"] if e["fromPort"] == 22]
        assert egress["securityGroups"] == [workers_id] and "cidrBlocks" not in egress
        rule = named(fleet_run, f"{component}-workers-ssh-from-manager").raw_inputs
        assert (rule["securityGroupId"], rule["referencedSecurityGroupId"]) == (workers_id, manager_id)
        assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 22, 22)
        assert "ingress" not in named(fleet_run, f"{component}-workers-sg").raw_inputs
        # The manager's group keeps its description, whose change would replace it (P11).
        assert manager_sg["description"].endswith("no ingress, web egress")


def test_the_manager_is_told_its_fleet_and_holds_no_secret(fleet_run: Run) -> None:  # guards R1, R15
    text = decode(named(fleet_run, "runner-lt").raw_inputs["userData"])
    assert "EXECUTOR=docker-autoscaler" in text
    assert "FLEET_ASG_NAME=shipyard-staging-runner-workers" in text
    assert "FLEET_CACHE_BUCKET=shipyard-staging-runner-cache-123456789012" in text
    assert not re.search(r"glrt-[A-Za-z0-9_-]{10,}", text)


def test_workers_in_given_subnets_take_the_subnets_public_addressing_as_the_host_does() -> None:  # guards R13
    doc = fleet_document()
    doc["shipyard:runner"]["subnetIds"] = ["subnet-0abc1234", "subnet-0def5678"]
    run = run_stack(doc)
    workers, host = named(run, "runner-workers-lt").raw_inputs, named(run, "runner-lt").raw_inputs
    # Given subnets may be public ones without NAT, where a worker without a public address has no
    # egress and fails every job: like the host, the workers leave addressing to MapPublicIpOnLaunch.
    for template in (workers, host):
        assert "networkInterfaces" not in template and "associatePublicIpAddress" not in json.dumps(template)
    workers_sg = named(run, "runner-workers-ssh-from-manager").raw_inputs["securityGroupId"]
    assert workers["vpcSecurityGroupIds"] == [workers_sg]
    assert named(run, "runner-workers-asg").raw_inputs["vpcZoneIdentifiers"] == ["subnet-0abc1234", "subnet-0def5678"]


def test_host_mode_has_no_fleet(committed_runs: dict[str, Run]) -> None:  # guards R15
    for run in committed_runs.values():
        assert not [s for s in run.steps if s.type == FLEET or "-workers" in s.name]
        assert not [k for k in run.outputs if "Workers" in k or "CacheBucket" in k]
        for policy in run.resources(ROLE_POLICY):
            assert "EcrLogin" in statements(policy) and "ScaleOwnWorkers" not in statements(policy)
