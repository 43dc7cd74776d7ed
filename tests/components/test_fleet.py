"""The workers of a runner in fleet mode: a group the runner owns, spot capacity across several
instance types, workers reachable only by the manager over SSH, and a private, expiring job cache.
Checked on what AWS would be asked for, against the values the offline mocks answer with."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.components.fleet import WorkerFleet, WorkerFleetArgs, worker_user_data
from infra.components.launch import ROOT_DEVICE
from infra.offline.engine import RecordingMonitor, Step, find_one
from infra.settings import FleetSettings
from infra.userdata import decode
from tests.test_userdata import cloud_init_schema

GROUP = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
BUCKET = "shipyard-staging-runner-cache-123456789012"
JOB_POLICY = json.dumps({"Version": "2012-10-17", "Statement": []})


# Fleet settings by their keys (`spot`, `cacheDays`); any other override is an argument of the component.
FLEET_KEYS = {"spot", "cacheDays"}


def fleet(**overrides: Any) -> WorkerFleet:
    args = WorkerFleetArgs(
        stack="staging",
        asg_name="shipyard-staging-runner-workers",
        cache_bucket=BUCKET,
        description="shipyard staging GitLab runner workers",
        fleet=FleetSettings(onDemandBase=1, **{k: v for k, v in overrides.items() if k in FLEET_KEYS}),
        docker_version="25.0.8",
        job_policy=JOB_POLICY,
        vpc_id="vpc-0123",
        subnet_ids=["subnet-0aaa1111", "subnet-0bbb2222"],
    )
    workers = WorkerFleet(
        "runner-workers", replace(args, **{k: v for k, v in overrides.items() if k not in FLEET_KEYS})
    )
    workers.admit_ssh_from("sg-manager")
    return workers


def settled(workers: WorkerFleet) -> pulumi.Output:
    """Every resource the checks read, registered: the bucket's settings register only once the bucket
    has an id, and its policy after two of them, so waiting for the bucket alone races them."""
    resources = [workers.group, workers.launch_template, workers.cache_bucket, *workers.cache_settings]
    return pulumi.Output.all(*(resource.id for resource in resources))


def one(monitor: RecordingMonitor, typ: str) -> Step:
    return find_one(monitor.steps, typ)


@pulumi.runtime.test
def test_the_runner_owns_the_worker_groups_capacity(mocked: RecordingMonitor) -> pulumi.Output:
    workers = fleet()  # guards R15

    def check(_: Any) -> None:
        group = one(mocked, GROUP)
        inputs = group.raw_inputs
        assert inputs["name"] == "shipyard-staging-runner-workers"
        assert (inputs["minSize"], inputs["maxSize"]) == (0, 10)
        # Pulumi neither sets nor resets the desired capacity: the runner scales the group.
        assert "desiredCapacity" not in inputs
        assert group.ignore_changes == ["desiredCapacity"]
        assert inputs["protectFromScaleIn"] is True
        assert inputs["suspendedProcesses"] == ["AZRebalance"]
        assert "initialLifecycleHooks" not in inputs and "instanceRefresh" not in inputs
        assert group.delete_before_replace  # a fixed name
        assert mocked.resources[group.urn].state["name"] == workers.asg_name

    return settled(workers).apply(check)


@pytest.mark.parametrize(("spot", "above_base"), [(True, 0), (False, 100)])
@pulumi.runtime.test
def test_workers_beyond_the_on_demand_base_are_spot_across_every_instance_type(
    mocked: RecordingMonitor, spot: bool, above_base: int
) -> pulumi.Output:
    workers = fleet(spot=spot)  # guards R15

    def check(_: Any) -> None:
        policy = one(mocked, GROUP).raw_inputs["mixedInstancesPolicy"]
        distribution = policy["instancesDistribution"]
        assert distribution["spotAllocationStrategy"] == "price-capacity-optimized"
        assert distribution["onDemandBaseCapacity"] == 1
        assert distribution["onDemandPercentageAboveBaseCapacity"] == above_base
        template = policy["launchTemplate"]
        assert [o["instanceType"] for o in template["overrides"]] == ["m7i.large", "m6i.large", "m5.large"]
        spec = template["launchTemplateSpecification"]
        assert spec["launchTemplateId"] == mocked.resources[one(mocked, LAUNCH_TEMPLATE).urn].id
        assert spec["version"] == "1"  # the template's latest version

    return settled(workers).apply(check)


@pulumi.runtime.test
def test_workers_require_imdsv2_for_containers_and_encrypt_their_root_volume(
    mocked: RecordingMonitor,
) -> pulumi.Output:
    workers = fleet()  # guards R6, R10, R14

    def check(_: Any) -> None:
        inputs = one(mocked, LAUNCH_TEMPLATE).raw_inputs
        assert inputs["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 2,
        }
        [mapping] = inputs["blockDeviceMappings"]
        assert mapping["deviceName"] == ROOT_DEVICE == "/dev/xvda"
        assert mapping["ebs"] == {
            "volumeSize": 50,
            "volumeType": "gp3",
            "encrypted": "true",
            "deleteOnTermination": "true",
        }

    return settled(workers).apply(check)


@pulumi.runtime.test
def test_workers_take_their_subnets_public_addressing_as_the_host_does(mocked: RecordingMonitor) -> pulumi.Output:
    workers = fleet()  # guards R13 (egress on 443 and 80 needs a way out)

    def check(_: Any) -> None:
        inputs = one(mocked, LAUNCH_TEMPLATE).raw_inputs
        group_id = mocked.resources[one(mocked, SECURITY_GROUP).urn].id
        # Given subnets may be public ones without NAT: a worker forced to have no public address has
        # no egress there and every job fails. So nothing overrides the subnet's MapPublicIpOnLaunch:
        # no network interface (which would also have to carry the groups), the groups on the template.
        assert "networkInterfaces" not in inputs
        assert "associatePublicIpAddress" not in json.dumps(inputs)
        assert inputs["vpcSecurityGroupIds"] == [group_id]

    return settled(workers).apply(check)


@pulumi.runtime.test
def test_only_the_manager_reaches_the_workers_and_only_over_ssh(mocked: RecordingMonitor) -> pulumi.Output:
    workers = fleet()  # guards R13

    def check(_: Any) -> None:
        group = one(mocked, SECURITY_GROUP).raw_inputs
        assert "ingress" not in group  # the rule resource below is the only ingress
        assert {(e["fromPort"], e["toPort"]) for e in group["egress"]} == {(443, 443), (80, 80)}
        [rule] = [s for s in mocked.steps if s.type == INGRESS_RULE]
        assert rule.name == "runner-workers-ssh-from-manager"
        inputs = rule.raw_inputs
        assert inputs["securityGroupId"] == mocked.resources[one(mocked, SECURITY_GROUP).urn].id
        assert inputs["referencedSecurityGroupId"] == "sg-manager"
        assert (inputs["ipProtocol"], inputs["fromPort"], inputs["toPort"]) == ("tcp", 22, 22)
        assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(inputs)

    return settled(workers).apply(check)


@pulumi.runtime.test
def test_the_job_cache_is_encrypted_private_tls_only_and_expires(mocked: RecordingMonitor) -> pulumi.Output:
    workers = fleet(cacheDays=7)

    def check(_: Any) -> None:
        bucket = one(mocked, "aws:s3/bucket:Bucket")
        assert bucket.raw_inputs["bucket"] == BUCKET
        name = mocked.resources[bucket.urn].id
        of_bucket = [s for s in mocked.steps if s.raw_inputs.get("bucket") == name and s is not bucket]
        by_type = {s.type.rsplit(":", 1)[1]: s.raw_inputs for s in of_bucket}
        [rule] = by_type["BucketServerSideEncryptionConfiguration"]["rules"]
        assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        block = by_type["BucketPublicAccessBlock"]
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls"))
        assert block["restrictPublicBuckets"] is True
        assert by_type["BucketOwnershipControls"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        [deny] = json.loads(by_type["BucketPolicy"]["policy"])["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
        [expiry] = by_type["BucketLifecycleConfiguration"]["rules"]
        assert expiry["status"] == "Enabled" and expiry["expiration"]["days"] == 7
        # The policy waits for the block and the ownership controls: S3 aborts racing changes of a bucket.
        policy = next(step for step in of_bucket if step.type.endswith(":BucketPolicy"))
        blockers = {
            step.urn
            for step in of_bucket
            if step.type.endswith((":BucketPublicAccessBlock", ":BucketOwnershipControls"))
        }
        assert blockers <= set(policy.dependencies)

    return settled(workers).apply(check)


@pulumi.runtime.test
def test_workers_boot_with_the_pinned_docker_and_no_secret(mocked: RecordingMonitor) -> pulumi.Output:
    workers = fleet()  # guards R1, R12

    def check(_: Any) -> None:
        text = decode(one(mocked, LAUNCH_TEMPLATE).raw_inputs["userData"])
        assert text.startswith("#cloud-config\n")
        assert '"docker-25.0.8"' in text and "@docker-version" not in text
        assert "glrt-" not in text and "ssm" not in text.lower()  # nothing to read a credential with

    return settled(workers).apply(check)


def test_the_workers_cloud_config_passes_cloud_inits_own_schema(tmp_path: Path) -> None:  # guards R9
    path = tmp_path / "user-data.yaml"
    path.write_text(decode(worker_user_data("25.0.*")))
    result = cloud_init_schema(path)
    assert result.returncode == 0 and result.stdout.startswith("Valid "), result.stdout + result.stderr
