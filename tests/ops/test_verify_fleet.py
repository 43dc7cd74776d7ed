"""`shipyard verify` of a runner in fleet mode, against moto: the manager as in host mode,
then its workers' Auto Scaling group shaped for the runner to own it (R15: minimum 0, scale-in
protection, AZRebalance suspended, no scaling policies), their launch template requiring IMDSv2,
the shared job cache private, encrypted and expiring, and the plugin vouched for by the manager's
completed launch. Each broken variant fails with its own message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.ops.verify import FAIL, PASS, Check, Verify
from tests.moto_aws import REGION, Aws

# Named apart from what other modules deploy into the same moto and share (test_verify.py's
# build stack is remade after a reset under its own names, which must still be free).
MANAGER = "fleet-check-runner"
WORKERS = "fleet-check-runner-workers"
PARAMETER = "/fleet-check/gitlab-runner-token"
BUCKET = "fleet-check-runner-cache"


def template(aws: Aws, name: str, tokens: str = "required") -> str:
    data = {"ImageId": "ami-12c6146b", "InstanceType": "t3.small", "MetadataOptions": {"HttpTokens": tokens}}
    found = aws.client("ec2").create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
    return str(found["LaunchTemplate"]["LaunchTemplateId"])


def manager(aws: Aws, instances: int = 1) -> None:
    autoscaling: Any = aws.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=MANAGER,
        LaunchTemplate={"LaunchTemplateId": template(aws, f"{MANAGER}-lt"), "Version": "$Latest"},
        MinSize=instances,
        MaxSize=1,
        DesiredCapacity=instances,
        AvailabilityZones=[f"{REGION}a"],
    )
    aws.client("ssm").put_parameter(Name=PARAMETER, Value="glrt-notReadByVerify", Type="SecureString")


def workers(
    aws: Aws, *, min_size: int = 0, protected: bool = True, suspend: bool = True, policy: bool = False,
    tokens: str = "required",
) -> None:  # fmt: skip
    autoscaling: Any = aws.client("autoscaling")
    spec = {"LaunchTemplateId": template(aws, f"{WORKERS}-lt", tokens), "Version": "$Latest"}
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=WORKERS,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": spec,
                "Overrides": [{"InstanceType": "m7i.large"}, {"InstanceType": "m6i.large"}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        },
        MinSize=min_size,
        MaxSize=10,
        NewInstancesProtectedFromScaleIn=protected,
        AvailabilityZones=[f"{REGION}a"],
    )
    if suspend:
        autoscaling.suspend_processes(AutoScalingGroupName=WORKERS, ScalingProcesses=["AZRebalance"])
    if policy:
        autoscaling.put_scaling_policy(
            AutoScalingGroupName=WORKERS, PolicyName="cpu", AdjustmentType="ChangeInCapacity", ScalingAdjustment=1
        )


def cache(aws: Aws, *, private: bool = True, encrypted: bool = True, expiring: bool = True) -> None:
    s3: Any = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    if private:
        flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration=dict.fromkeys(flags, True))
    if encrypted:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [rule]})
    if expiring:
        expire = {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 14}}
        s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [expire]})


FLEET_OUTPUTS = {
    "registryUrl": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/acme/storefront",
    "runnerAsgName": MANAGER,
    "runnerTokenParameter": PARAMETER,
    "runnerWorkersAsgName": WORKERS,
    "runnerCacheBucket": BUCKET,
}


def fleet_rows(aws: Aws) -> dict[str, Check]:
    checks = Verify(aws.session(), REGION, json.loads(json.dumps(FLEET_OUTPUTS))).run(None)
    return {c.name: c for c in checks if c.name.startswith("runner ")}


def test_each_group_is_described_once_a_round(aws: Aws) -> None:
    # Several checks read the manager's and the workers' groups: AWS is asked once for each, and
    # again in the next round (`--wait`), when the groups may have changed.
    manager(aws)
    workers(aws)
    cache(aws)
    verifier = Verify(aws.session(), REGION, FLEET_OUTPUTS)
    asked: list[list[str]] = []
    real = verifier.autoscaling

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def describe_auto_scaling_groups(self, **kwargs: Any) -> Any:
            asked.append(kwargs["AutoScalingGroupNames"])
            return real.describe_auto_scaling_groups(**kwargs)

    verifier.autoscaling = Counting()
    for _ in range(2):
        asked.clear()
        assert all(c.result != FAIL for c in verifier.run(None) if c.name.startswith("runner "))
        assert sorted(asked) == [[MANAGER], [WORKERS]]


def test_a_healthy_fleet_passes_every_fleet_check(aws: Aws) -> None:
    manager(aws)
    workers(aws)
    cache(aws)
    rows = fleet_rows(aws)
    for name in (
        "runner instance in service",
        "runner workers: group shape",
        "runner workers require IMDSv2",
        "runner job cache private, encrypted, expiring",
        "runner fleeting plugin installed",
    ):
        assert rows[name].result == PASS, rows[name]
    assert "0 to 10 workers" in rows["runner workers: group shape"].detail
    assert "expire after 14 days" in rows["runner job cache private, encrypted, expiring"].detail


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"min_size": 1}, "MinSize 1, not 0"),
        ({"protected": False}, "not protected from scale-in"),
        ({"suspend": False}, "AZRebalance is not suspended"),
        ({"policy": True}, "scaling policies (cpu) compete with the runner"),
    ],
)
def test_a_worker_group_the_runner_cannot_own_fails_naming_why(aws: Aws, broken: dict[str, Any], message: str) -> None:
    # guards R15
    manager(aws)
    workers(aws, **broken)
    cache(aws)
    row = fleet_rows(aws)["runner workers: group shape"]
    assert row.result == FAIL and message in row.detail and "(R15)" in row.detail


def test_workers_that_allow_imdsv1_fail(aws: Aws) -> None:
    # guards R6: a job on a worker reaches the instance role through the metadata service
    manager(aws)
    workers(aws, tokens="optional")
    cache(aws)
    row = fleet_rows(aws)["runner workers require IMDSv2"]
    assert row.result == FAIL and "IMDSv1" in row.detail


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"private": False}, "public access is not blocked"),
        ({"encrypted": False}, "no default encryption"),
        ({"expiring": False}, "no lifecycle rule expires"),
    ],
)
def test_a_cache_bucket_that_is_public_plain_or_kept_forever_fails(
    aws: Aws, broken: dict[str, Any], message: str
) -> None:
    manager(aws)
    workers(aws)
    cache(aws, **broken)
    row = fleet_rows(aws)["runner job cache private, encrypted, expiring"]
    assert row.result == FAIL and message in row.detail


def test_without_a_manager_in_service_nothing_vouches_for_the_plugin(aws: Aws) -> None:
    manager(aws, instances=0)
    workers(aws)
    cache(aws)
    rows = fleet_rows(aws)
    assert rows["runner instance in service"].result == FAIL
    assert rows["runner fleeting plugin installed"].result == FAIL


def test_host_mode_has_no_fleet_rows(aws: Aws) -> None:
    manager(aws)
    outputs = {"registryUrl": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/acme/storefront"}
    outputs |= {"runnerAsgName": MANAGER, "runnerTokenParameter": PARAMETER}
    names = {c.name for c in Verify(aws.session(), REGION, outputs).run(None)}
    assert not {n for n in names if "workers" in n or "cache" in n or "fleeting" in n}


def test_in_fleet_mode_the_workers_role_is_the_one_signer(aws: Aws) -> None:
    # guards G11, R15: the release build signs on its workers, so the key names the workers' role;
    # verify must judge the key against that role, not the manager's.
    from infra.components.signing import key_policy

    iam: Any = aws.client("iam")
    trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [trust]})
    manager_role, workers_role = (
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=document)["Role"]["Arn"]
        for name in ("fleet-check-manager-role", "fleet-check-workers-role")
    )
    kms: Any = aws.client("kms")
    key = kms.create_key(
        KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Policy=key_policy("aws", "123456789012", workers_role)
    )["KeyMetadata"]["Arn"]
    outputs = {"runnerRoleArn": manager_role, "runnerJobRoleArn": workers_role}
    ok, detail = Verify(aws.session(), REGION, outputs)._sign_policy(key)
    assert ok, detail
    ok, detail = Verify(aws.session(), REGION, {"runnerRoleArn": manager_role})._sign_policy(key)
    assert not ok  # judged against the manager's role, the workers' is another signer
