"""`shipyard verify` against moto's server: a healthy deployed build stack passes; each broken variant
(IMDSv1 allowed, a String token parameter, a registry that does not scan a repository, no
instance, of either runner; a review repository without lifecycle; a signing key that is symmetric,
that another principal may sign with, or whose public key is not the exported one) fails with its
own message; a stack without the build stack's outputs skips those checks and says why. The GitLab
checks run against a local fake of GitLab's API.

moto 5.2.5 creates ECC_NIST_P256 SIGN_VERIFY keys, keeps their key policies and grants and answers
GetPublicKey with the DER SubjectPublicKeyInfo, as AWS does. Where it does not answer as AWS does
(GetPublicKey of a symmetric or disabled key returns a key; AWS refuses with
UnsupportedOperationException / DisabledException), KMS is answered by botocore's Stubber with the
shapes of botocore's KMS service model and its documented examples."""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from email.message import Message
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import gitlab
import pytest
from botocore.stub import Stubber

from infra.cli.main import main
from infra.cli.verify import FAIL, PASS, SKIP, Verify
from infra.components.signing import key_policy
from tests.conftest import ROOT
from tests.fake_api import serve
from tests.moto_aws import REGION, Aws

ACCOUNT = "123456789012"  # moto's default account
PARAMETER = "/shipyard/staging/gitlab-runner-token"
ASG = "shipyard-staging-runner"
REVIEW_PARAMETER = "/shipyard/staging/gitlab-review-runner-token"
REVIEW_ASG = "shipyard-staging-review-runner"
REPOSITORY = "acme/storefront"
REVIEW_REPOSITORY = "acme/storefront-review"
PROJECT = "acme/storefront"
TOKEN = "glpat-verifyCanary0123456789"
# Rows that only the build stack has (besides the release runner's and the registry's).
BUILD_ROWS = (
    "review runner instance in service",
    "review runner requires IMDSv2",
    "review runner token is a SecureString",
    "review repository scanned on push",
    "review repository has a lifecycle policy",
    "signing key enabled, ECC_NIST_P256, SIGN_VERIFY",
    "only the release runner may sign",
    "signing key's public key in the outputs",
)


def pem(der: bytes) -> str:
    """A public key as the provider's getPublicKey gives `publicKeyPem`."""
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def runner_host(aws: Aws, asg: str, parameter: str, tokens: str, parameter_type: str, instances: int) -> str:
    """One runner component as `pulumi up` leaves it: token parameter, launch template, group, role.
    Returns the role's ARN."""
    ssm: Any = aws.client("ssm")
    ssm.put_parameter(Name=parameter, Value="glrt-notReadByVerify", Type=parameter_type)
    ec2: Any = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{asg}-lt",
        LaunchTemplateData={
            "ImageId": "ami-12c6146b",
            "InstanceType": "t3.large",
            "MetadataOptions": {"HttpTokens": tokens, "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
        },
    )["LaunchTemplate"]
    autoscaling: Any = aws.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=asg,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        MinSize=instances,
        MaxSize=1,
        DesiredCapacity=instances,
        AvailabilityZones=[f"{REGION}a"],
    )
    trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [trust]})
    iam: Any = aws.client("iam")
    return str(iam.create_role(RoleName=f"{asg}-role", AssumeRolePolicyDocument=document)["Role"]["Arn"])


def deploy(aws: Aws, tokens: str = "required", parameter_type: str = "SecureString", scan: bool = True,
           instances: int = 1, review_tokens: str = "required", review_parameter_type: str = "SecureString",
           review_instances: int = 1, review_scan: bool = True, review_lifecycle: bool = True,
           key_spec: str = "ECC_NIST_P256", key_usage: str = "SIGN_VERIFY", signer: bool = True,
           also_signs: list[Any] | None = None, exported_key: str = "own",
           key_state: str = "Enabled") -> dict[str, Any]:  # fmt: skip
    """What `pulumi up` leaves behind for the staging (build) stack, with one thing optionally broken.
    `also_signs` are more key-policy statements, where the principal "review-role" stands for the
    review runner's role; the item "grant" is a grant of kms:Sign to that role, "release-grant" one to
    the release runner's."""
    ecr: Any = aws.client("ecr")
    repo = ecr.create_repository(repositoryName=REPOSITORY)
    review_repo = ecr.create_repository(repositoryName=REVIEW_REPOSITORY)
    # What the build stack's registry scanning configuration sets (R21): a filter per repository.
    # Broken: a hand-written wildcard that matches the release repository's whole name only.
    filters = [REPOSITORY, REVIEW_REPOSITORY] if review_scan else ["acme/*front"]
    if scan:
        rule = {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [{"filter": f, "filterType": "WILDCARD"} for f in filters],
        }
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[rule])
    expire = {"rulePriority": 1, "description": "Expire untagged images after one day", "action": {"type": "expire"}}
    expire["selection"] = {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    }
    lifecycle = json.dumps({"rules": [expire]})
    ecr.put_lifecycle_policy(repositoryName=REPOSITORY, lifecyclePolicyText=lifecycle)
    if review_lifecycle:
        ecr.put_lifecycle_policy(repositoryName=REVIEW_REPOSITORY, lifecyclePolicyText=lifecycle)
    role = runner_host(aws, ASG, PARAMETER, tokens, parameter_type, instances)
    review_role = runner_host(aws, REVIEW_ASG, REVIEW_PARAMETER, review_tokens, review_parameter_type, review_instances)
    # The image-signing key as infra/components/signing.py creates it.
    policy = json.loads(key_policy("aws", ACCOUNT, role if signer else None))
    statements = [s for s in also_signs or [] if isinstance(s, dict)]
    extra = [json.loads(json.dumps(s).replace("review-role", review_role)) for s in statements]
    policy["Statement"].extend(extra)
    kms: Any = aws.client("kms")
    key = kms.create_key(
        KeySpec=key_spec, KeyUsage=key_usage, Policy=json.dumps(policy), Description="shipyard staging: signs"
    )["KeyMetadata"]
    for grant, grantee in (("grant", review_role), ("release-grant", role)):
        if grant in (also_signs or []):
            kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Sign", "Verify"])
    if key_state == "Disabled":
        kms.disable_key(KeyId=key["KeyId"])  # moto takes the key id here, not the ARN
    elif key_state == "PendingDeletion":
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=30)
    exported = pem(kms.get_public_key(KeyId=key["Arn"])["PublicKey"])
    if exported_key == "other":  # the outputs of another stack, or of a key replaced since
        other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        exported = pem(kms.get_public_key(KeyId=other["Arn"])["PublicKey"])
    elif exported_key != "own":
        exported = exported_key
    return {
        "environment": "staging",
        "gitlabProject": PROJECT,
        "registryUrl": repo["repository"]["repositoryUri"],
        "registryScanning": "basic",
        "reviewRegistryUrl": review_repo["repository"]["repositoryUri"],
        "imageSigningKeyArn": key["Arn"],
        "imageSigningPublicKey": exported,
        "runnerAsgName": ASG,
        "runnerTokenParameter": PARAMETER,
        "runnerId": "4242",
        "runnerRoleArn": role,
        "reviewRunnerAsgName": REVIEW_ASG,
        "reviewRunnerTokenParameter": REVIEW_PARAMETER,
        "reviewRunnerId": "4343",
        "reviewRunnerRoleArn": review_role,
        "herokuApiKey": "[secret]",
    }


def verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, outputs: dict[str, Any]) -> tuple[int, str, str]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["verify", "--stack", "staging", "--outputs", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def flat(out: str) -> str:
    """The table's text with borders and wrapping gone, so a wrapped detail reads as one sentence."""
    return re.sub(r"[│┃|\s]+", " ", out)


def line(out: str, check: str) -> str:
    """The table row of a check, by its whole name (`runner …` is not `review runner …`)."""
    return next(row for row in out.splitlines() if re.match(rf"^[│┃|]\s*{re.escape(check)}\s*[│┃|]", row))


def results(out: str) -> dict[str, str]:
    """Each check's result, by the check's name."""
    rows = (re.match(r"^│\s*(.+?)\s*│\s*(pass|FAIL|skip)\s*│", row) for row in out.splitlines())
    return {found[1]: found[2] for found in rows if found}


def test_a_healthy_stack_passes_every_check(aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)  # aws:region comes from Pulumi.staging.yaml
    outputs = deploy(aws)
    code, out, err = verify(capsys, tmp_path, outputs)
    assert code == 0, out + err
    for check in ("runner instance in service", "runner requires IMDSv2", "runner token is a SecureString",
                  "registry scans on push", "registry has a lifecycle policy", *BUILD_ROWS):  # fmt: skip
        assert " pass " in line(out, check), line(out, check)
    for check in ("runner online in GitLab", "review runner online in GitLab",
                  "signing key's public key in the CI variable"):  # fmt: skip
        assert "no GITLAB_TOKEN" in line(out, check)
    assert f"only the release runner's role {outputs['runnerRoleArn']} may kms:Sign (ReleaseBuildRunnerSigns)" in flat(
        out
    )
    assert "every check passed" in out


@pytest.mark.parametrize(
    ("broken", "check", "message"),
    [
        ({"tokens": "optional"}, "runner requires IMDSv2", "lets the host use IMDSv1 (HttpTokens optional)"),  # R6
        ({"parameter_type": "String"}, "runner token is a SecureString", "is a String: the token is stored"),  # R1
        ({"scan": False}, "registry scans on push", "basic scanning configuration does not scan images pushed to"),
        ({"instances": 0}, "runner instance in service", "0 instances InService in shipyard-staging-runner,"),
        # The same checks of the review runner (G11).
        ({"review_tokens": "optional"}, "review runner requires IMDSv2", "lets the host use IMDSv1"),
        (
            {"review_parameter_type": "String"},
            "review runner token is a SecureString",
            f"parameter {REVIEW_PARAMETER} is a String",
        ),
        ({"review_instances": 0}, "review runner instance in service", "0 instances InService in shipyard-staging-rev"),
        (
            {"review_scan": False},
            "review repository scanned on push",
            f"does not scan images pushed to {REVIEW_REPOSITORY} (R21)",
        ),
        (
            {"review_lifecycle": False},
            "review repository has a lifecycle policy",
            f"repository {REVIEW_REPOSITORY} has no lifecycle policy",
        ),
        # A symmetric key: KMS would refuse to sign. (On AWS its GetPublicKey fails too, which moto
        # does not do: see test_kms_answers_as_aws_documents_them.)
        (
            {"key_spec": "SYMMETRIC_DEFAULT", "key_usage": "ENCRYPT_DECRYPT"},
            "signing key enabled, ECC_NIST_P256, SIGN_VERIFY",
            "its KeySpec is SYMMETRIC_DEFAULT, not ECC_NIST_P256; its KeyUsage is ENCRYPT_DECRYPT, not SIGN_VERIFY; "
            "KeySpec and KeyUsage are fixed at creation",
        ),
        (
            {"key_spec": "ECC_NIST_P384"},
            "signing key enabled, ECC_NIST_P256, SIGN_VERIFY",
            "its KeySpec is ECC_NIST_P384, not ECC_NIST_P256",
        ),
        # A key KMS does not sign with. (On AWS its GetPublicKey fails too: see the Stubber test.)
        ({"key_state": "Disabled"}, "signing key enabled, ECC_NIST_P256, SIGN_VERIFY", "it is Disabled: KMS signs"),
        ({"key_state": "PendingDeletion"}, "signing key enabled, ECC_NIST_P256, SIGN_VERIFY", "it is PendingDeletion"),
        # The public key CI verifies with is not the key's.
        ({"exported_key": "other"}, "signing key's public key in the outputs", "cosign verify would refuse every"),
        ({"exported_key": "[secret]"}, "signing key's public key in the outputs", "is not a PEM public key"),
    ],
)
def test_each_broken_resource_fails_with_its_own_message(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, broken: dict[str, Any], check: str, message: str
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    code, out, _ = verify(capsys, tmp_path, deploy(aws, **broken))
    assert code == 1
    assert " FAIL " in line(out, check), out
    assert message in flat(out), out
    failed = {name for name, result in results(out).items() if result == FAIL}
    also = {
        # No instance: its IMDS setting cannot be read either.
        "runner instance in service": "runner requires IMDSv2",
        "review runner instance in service": "review runner requires IMDSv2",
        # No scanning configuration at all: the review repository is not scanned either.
        "registry scans on push": "review repository scanned on push",
    }
    assert failed == {check, also.get(check, check)}, failed


def test_a_different_public_key_is_named_by_both_fingerprints(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, exported_key="other")
    code, out, _ = verify(capsys, tmp_path, outputs)
    assert code == 1
    differs = r"imageSigningPublicKey \(SHA-256 (\w{16})\) is not the public key of (\S+) \(SHA-256 (\w{16})\)"
    found = re.search(differs, flat(out))
    assert found, out
    assert found[2] == outputs["imageSigningKeyArn"]
    assert found[1] != found[3]


def allow(sid: str, principal: Any, action: Any) -> dict[str, Any]:
    """A key-policy statement; the principal "review-role" becomes the review runner's role."""
    return {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*"}


RELEASE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{ASG}-role"
REVIEW_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{REVIEW_ASG}-role"
ALL_BUT = {"Sid": "AllBut", "Effect": "Allow", "NotPrincipal": {"AWS": "review-role"}, "NotAction": "kms:Decrypt"}


@pytest.mark.parametrize(
    ("also_signs", "signer", "message"),
    [
        # Another principal may sign: the review runner's role, which runs merge-request jobs (G11).
        (
            [allow("ReviewSigns", {"AWS": "review-role"}, "kms:Sign")],
            True,
            f"the key policy lets {REVIEW_ROLE} kms:Sign (ReviewSigns)",
        ),
        # The same role next to the release runner's, by an action wildcard.
        (
            [allow("Both", {"AWS": [RELEASE_ROLE, "review-role"]}, ["kms:Describe*", "kms:Sign*"])],
            True,
            f"the key policy lets {REVIEW_ROLE} kms:Sign (Both)",
        ),
        # Anyone.
        (
            [allow("Anyone", "*", "kms:*")],
            True,
            "the key policy lets any principal (*) kms:Sign (Anyone); the key policy lets any principal (*) "
            "kms:CreateGrant (Anyone)",
        ),
        ([allow("AnyAws", {"AWS": "*"}, "kms:Sign")], True, "lets any principal (*) kms:Sign (AnyAws)"),
        # Everyone but the listed: NotPrincipal in an Allow.
        ([{**ALL_BUT, "Resource": "*"}], True, "lets any principal (*) kms:Sign (AllBut)"),
        # The account: every IAM principal whose policies allow it (AWS's default key policy does this).
        (
            [allow("Enable IAM User Permissions", {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "kms:*")],
            True,
            f"the key policy lets the account arn:aws:iam::{ACCOUNT}:root (any IAM principal it allows) kms:Sign "
            "(Enable IAM User Permissions)",
        ),
        # A service principal; actions match case-insensitively.
        (
            [allow("Service", {"Service": "ec2.amazonaws.com"}, "KMS:sign")],
            True,
            "the key policy lets Service ec2.amazonaws.com kms:Sign (Service)",
        ),
        # Not kms:Sign itself, but what hands it out.
        (
            [allow("Grants", {"AWS": "review-role"}, "kms:CreateGrant")],
            True,
            f"the key policy lets {REVIEW_ROLE} kms:CreateGrant (Grants)",
        ),
        # A grant instead of a statement.
        (["grant"], True, f"lets {REVIEW_ROLE} kms:Sign: only the release runner's role {RELEASE_ROLE} may sign"),
        # Nobody else may sign, but neither may the release runner.
        ([], False, f"the key policy does not let the release runner's role {RELEASE_ROLE} sign: releases go unsigned"),
    ],
)
def test_only_the_release_runner_may_sign(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, also_signs: list[Any], signer: bool, message: str
) -> None:  # guards G11
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    code, out, _ = verify(capsys, tmp_path, deploy(aws, also_signs=also_signs, signer=signer))
    assert code == 1
    assert message in flat(out), out
    assert [name for name, result in results(out).items() if result == FAIL] == ["only the release runner may sign"]


def test_statements_that_do_not_sign_pass(aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    also = [
        # The review role may read the public key and verify: kms:Verify is not kms:Sign.
        allow("ReviewReads", {"AWS": "review-role"}, ["kms:GetPublicKey", "kms:DescribeKey", "kms:Verify"]),
        # A Deny grants nothing.
        {**allow("NoOneElse", "*", "kms:Sign"), "Effect": "Deny"},
        # A grant of kms:Sign to the release runner's role adds no signer.
        "release-grant",
    ]
    code, out, _ = verify(capsys, tmp_path, deploy(aws, also_signs=also))
    assert code == 0, out
    assert " pass " in line(out, "only the release runner may sign")


def test_a_stack_without_build_outputs_skips_those_checks(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws)
    # The prod stack, or a build stack deployed before the review runner and the signing key.
    older = {k: v for k, v in outputs.items() if not k.startswith(("review", "imageSigning", "registryScanning"))}
    code, out, err = verify(capsys, tmp_path, older)
    assert code == 0, out + err
    for check in (*BUILD_ROWS, "review runner online in GitLab", "signing key's public key in the CI variable"):
        assert " skip " in line(out, check), line(out, check)
    text = flat(out)
    before = "output: not the build stack, or a build stack deployed before it had"
    assert f"no reviewRunnerAsgName {before} a review runner" in text
    assert f"no imageSigningKeyArn {before} an image-signing key" in text
    assert "no reviewRegistryUrl output" in text
    assert f"no reviewRunnerId {before} a review runner" in text
    assert "Traceback" not in err

    # A build stack without shipyard:reviewRunner: the review runner's rows say so.
    no_review_runner = {k: v for k, v in outputs.items() if not k.startswith("reviewRunner")}
    code, out, _ = verify(capsys, tmp_path, no_review_runner)
    assert code == 0, out
    assert " skip " in line(out, "review runner instance in service")
    why = "no reviewRunnerAsgName output: this build stack has no review runner (shipyard:reviewRunner is not set)"
    assert why in flat(out)
    assert " pass " in line(out, "review repository has a lifecycle policy")
    assert " pass " in line(out, "only the release runner may sign")

    # A build stack without a release runner: nobody may sign.
    no_runner = {k: v for k, v in outputs.items() if not k.startswith("runner")}
    code, out, _ = verify(capsys, tmp_path, no_runner)
    assert code == 1
    assert "the key policy lets arn:aws:iam::123456789012:role/shipyard-staging-runner-role kms:Sign" in flat(out)
    assert "no principal (no release runner here) may sign" in flat(out)


def test_the_ci_variable_is_read_only_with_the_project_known(aws: Aws, monkeypatch: Any) -> None:
    outputs = {k: v for k, v in deploy(aws).items() if k not in ("gitlabProject", "runnerId", "reviewRunnerId")}
    checks = {c.name: c for c in Verify(boto3.Session(), REGION, outputs).run(("http://127.0.0.1:9", TOKEN))}
    variable = checks["signing key's public key in the CI variable"]
    assert (variable.result, variable.detail) == (SKIP, "no gitlabProject output: the GitLab project is not known")
    assert not [c for c in checks.values() if c.result == FAIL]


def kms_example(operation: str, title: str) -> dict[str, Any]:
    """An answer of AWS KMS as botocore documents it (its examples-1.json)."""
    examples = botocore.loaders.Loader().load_service_model("kms", "examples-1")["examples"][operation]
    return copy.deepcopy(next(e["output"] for e in examples if e["title"] == title))


@pytest.mark.parametrize(
    ("example", "error", "failed", "message"),
    [
        # AWS: GetPublicKey of a symmetric key is UnsupportedOperationException (moto returns a key).
        (
            "To get details about a KMS key",
            "UnsupportedOperationException",
            {"signing key enabled, ECC_NIST_P256, SIGN_VERIFY", "signing key's public key in the outputs"},
            "KMS has no public key for arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab: "
            "not an asymmetric key (UnsupportedOperationException)",
        ),
        # AWS: GetPublicKey of a disabled key is DisabledException (moto returns a key).
        (
            "To get details about an RSA asymmetric KMS key",
            "DisabledException",
            {"signing key enabled, ECC_NIST_P256, SIGN_VERIFY", "signing key's public key in the outputs"},
            "DisabledException: The request was rejected because the specified KMS key is not enabled.",
        ),
        # AWS's default key policy, as GetKeyPolicy's documented example returns it: the account may sign.
        (
            None,
            None,
            {"only the release runner may sign"},
            "the account arn:aws:iam::111122223333:root (any IAM principal it allows) kms:Sign "
            "(Enable IAM User Permissions)",
        ),
    ],
)
def test_kms_answers_as_aws_documents_them(
    aws: Aws, monkeypatch: Any, example: str | None, error: str | None, failed: set[str], message: str
) -> None:
    """KMS answered by botocore's Stubber, which checks every request and answer against botocore's
    KMS service model; DescribeKey, GetKeyPolicy and ListGrants answer with its documented examples."""
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    outputs = deploy(aws)
    key = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    der = aws.client("kms").get_public_key(KeyId=outputs["imageSigningKeyArn"])["PublicKey"]
    outputs["imageSigningKeyArn"] = key
    role = outputs["runnerRoleArn"]
    verifier = Verify(boto3.Session(), REGION, outputs)
    healthy = {
        "AWSAccountId": "111122223333", "Arn": key, "CreationDate": "2017-07-05T14:04:55-07:00", "Enabled": True,
        "KeyId": key.rsplit("/", 1)[-1], "KeyManager": "CUSTOMER", "KeySpec": "ECC_NIST_P256",
        "CustomerMasterKeySpec": "ECC_NIST_P256", "KeyState": "Enabled", "KeyUsage": "SIGN_VERIFY",
        "MultiRegion": False, "Origin": "AWS_KMS", "SigningAlgorithms": ["ECDSA_SHA_256"],
    }  # fmt: skip
    metadata = kms_example("DescribeKey", example)["KeyMetadata"] if example else healthy
    if example is None:
        policy = kms_example("GetKeyPolicy", "To retrieve a key policy")
    else:
        policy = {"Policy": key_policy("aws", "111122223333", role), "PolicyName": "default"}
    grants = kms_example("ListGrants", "To list grants for a KMS key")  # grants to ACM, none signs
    grants["Truncated"] = False
    with Stubber(verifier.kms) as kms:
        kms.add_response("describe_key", {"KeyMetadata": metadata}, {"KeyId": key})
        kms.add_response("get_key_policy", policy, {"KeyId": key, "PolicyName": "default"})
        kms.add_response("list_grants", grants, {"KeyId": key})
        if error is None:
            spec = {"KeySpec": "ECC_NIST_P256", "CustomerMasterKeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}
            answer = {"KeyId": key, "PublicKey": der, **spec, "SigningAlgorithms": ["ECDSA_SHA_256"]}
            kms.add_response("get_public_key", answer, {"KeyId": key})
        else:
            documented = botocore.loaders.Loader().load_service_model("kms", "service-2")["shapes"][error]
            text = re.sub(r"<[^>]+>", "", documented["documentation"]).strip()
            kms.add_client_error("get_public_key", error, text, 400, expected_params={"KeyId": key})
        checks = verifier.run(None)
        kms.assert_no_pending_responses()
    by_name = {c.name: c for c in checks}
    assert {c.name for c in checks if c.result == FAIL} == failed, checks
    assert any(message in c.detail for c in checks), checks
    assert by_name["runner instance in service"].result == PASS  # the other services are moto's
    assert by_name["signing key's public key in the CI variable"].result == SKIP


@pytest.mark.parametrize(
    ("review_status", "variable", "code"),
    [("online", "own", 0), ("offline", "own", 1), ("online", "other", 1), ("online", None, 1)],
)
def test_the_runners_and_the_public_key_are_checked_in_gitlab(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, review_status: str, variable: str | None, code: int
) -> None:
    seen: list[tuple[str, str | None]] = []
    outputs = deploy(aws)
    kms: Any = aws.client("kms")
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    carried = {"own": outputs["imageSigningPublicKey"], "other": pem(kms.get_public_key(KeyId=other)["PublicKey"])}
    public_key = "/api/v4/projects/acme%2Fstorefront/variables/SHIPYARD_SIGNING_PUBLIC_KEY"

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        seen.append((path, headers.get("PRIVATE-TOKEN")))
        if headers.get("PRIVATE-TOKEN") != TOKEN:  # as GitLab answers a missing or wrong token
            return 401, {"message": "401 Unauthorized"}
        if path == "/api/v4/runners/4242":
            return 200, {"id": 4242, "status": "online", "paused": False, "runner_type": "project_type"}
        if path == "/api/v4/runners/4343":
            return 200, {"id": 4343, "status": review_status, "paused": False, "runner_type": "project_type"}
        if path == public_key and variable is not None:
            found = {"key": "SHIPYARD_SIGNING_PUBLIC_KEY", "value": carried[variable], "variable_type": "env_var"}
            return 200, {**found, "protected": False, "masked": False, "raw": True, "environment_scope": "*"}
        return 404, {"message": "404 Variable Not Found" if path == public_key else "404 Not found"}

    # The fake sees paths without their query: the variable's scope filter is read off python-gitlab.
    filters: list[Any] = []
    real_get = gitlab.Gitlab.http_get

    def http_get(self: gitlab.Gitlab, path: str, *args: Any, **kwargs: Any) -> Any:
        filters.append((path, kwargs.get("filter")))
        return real_get(self, path, *args, **kwargs)

    monkeypatch.setattr(gitlab.Gitlab, "http_get", http_get)
    with serve(answer) as url:
        stack = tmp_path / "Pulumi.staging.yaml"
        # `gitlabUrl` without its namespace, as `pulumi config set gitlabUrl` writes it.
        stack.write_text(f"config:\n  aws:region: {REGION}\n  gitlabUrl: {url}\n")
        (tmp_path / "Pulumi.yaml").write_text("name: shipyard\nruntime: python\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        result, out, err = verify(capsys, tmp_path, outputs)
    assert result == code, out + err
    assert seen == [("/api/v4/runners/4242", TOKEN), ("/api/v4/runners/4343", TOKEN), (public_key, TOKEN)]
    # The unscoped variable (environment scope `*`), as infra/__main__.py creates it.
    assert filters[-1] == (public_key.removeprefix("/api/v4"), {"environment_scope": "*"})
    assert " pass " in line(out, "runner online in GitLab")
    expected = " pass " if review_status == "online" else " FAIL "
    assert expected in line(out, "review runner online in GitLab")
    row = line(out, "signing key's public key in the CI variable")
    assert (" pass " if variable == "own" else " FAIL ") in row, out
    if variable == "other":
        assert "SHIPYARD_SIGNING_PUBLIC_KEY in acme/storefront" in flat(out)
        assert "cosign verify would refuse every release signature" in flat(out)
    if variable is None:
        assert "answered 404 for SHIPYARD_SIGNING_PUBLIC_KEY of acme/storefront" in flat(out)
    if review_status == "offline":
        assert "review runner 4343 is offline in GitLab" in flat(out)
    assert TOKEN not in out + err


def test_unreadable_outputs_exit_2(capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT)
    code = main(["verify", "--stack", "staging", "--outputs", str(tmp_path / "missing.json")])
    _, err = capsys.readouterr()
    assert code == 2 and "not found" in err and "Traceback" not in err
    (tmp_path / "other.json").write_text(json.dumps({"bucket": "x"}))
    code = main(["verify", "--stack", "staging", "--outputs", str(tmp_path / "other.json")])
    assert code == 2 and "`registryUrl` is missing" in capsys.readouterr().err


def test_verify_waits_for_a_host_that_is_still_coming_up(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, instances=0)  # as during an instance refresh: no host in service yet
    autoscaling: Any = aws.client("autoscaling")
    waits: list[float] = []

    real_sleep = time.sleep

    def host_comes_up(seconds: float) -> None:  # the pause between two rounds of checks
        if seconds != 5:  # anyone else's sleep (time.sleep is process-wide)
            return real_sleep(seconds)
        waits.append(seconds)
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=ASG, MinSize=1, DesiredCapacity=1)
        return None

    monkeypatch.setattr("infra.cli.main.time.sleep", host_comes_up)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["verify", "--stack", "staging", "--outputs", str(path), "--wait", "60", "--interval", "5"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert waits == [5]
    assert "not yet: runner instance in service, runner requires IMDSv2; checking again in 5 s" in err
    assert "every check passed" in out


@pytest.mark.parametrize(
    ("scan_type", "frequency", "pattern", "passes"),
    [
        ("ENHANCED", "CONTINUOUS_SCAN", "acme/*", True),
        ("ENHANCED", "SCAN_ON_PUSH", "storefront", True),  # no wildcard: names that contain it
        ("BASIC", "SCAN_ON_PUSH", "acme/checkout*", False),  # another repository
        ("BASIC", "MANUAL", REPOSITORY, False),  # scans nothing by itself
    ],
)
def test_the_registry_scanning_configuration_decides(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, scan_type: str, frequency: str, pattern: str, passes: bool
) -> None:  # guards R21
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, scan=False)
    ecr: Any = aws.client("ecr")
    rule = {"scanFrequency": frequency, "repositoryFilters": [{"filter": pattern, "filterType": "WILDCARD"}]}
    ecr.put_registry_scanning_configuration(scanType=scan_type, rules=[rule])
    code, out, _ = verify(capsys, tmp_path, outputs)
    assert code == (0 if passes else 1), out
    assert (" pass " if passes else " FAIL ") in line(out, "registry scans on push")
    assert f"{scan_type.lower()} scanning" in flat(out)


def test_the_deprecated_repository_flag_alone_does_not_count(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:  # guards R21
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, scan=False)
    ecr: Any = aws.client("ecr")
    ecr.put_image_scanning_configuration(repositoryName=REPOSITORY, imageScanningConfiguration={"scanOnPush": True})
    code, out, _ = verify(capsys, tmp_path, outputs)
    assert code == 1
    assert " FAIL " in line(out, "registry scans on push")
