"""`shipyard verify` against moto: a healthy deployed build stack passes; each broken variant
(IMDSv1 allowed, a String token parameter, a registry that does not scan a repository, no
instance, of either runner; a review repository without lifecycle; a signing key that is symmetric,
that another principal may sign with, or whose public key is not the exported one) fails with its
own message; a stack without the build stack's outputs skips those checks and says why. The GitLab
checks run against a local fake of GitLab's API.

The healthy build stack is deployed into moto once and shared by these tests (`BuildStacks`); each
broken variant is deployed next to it as separately named resources (a runner group, a parameter, a
repository, a KMS key) that the variant's outputs point at instead of the healthy ones, and what a
registry has only one of (its scanning configuration) varies by emulated account. Nothing shared is
changed afterwards: a test that changes something (scales a group, sets a registry's scanning) gets
a resource or an account of its own. The command (`shipyard verify`: its boto3 session, table and
exit code) runs end to end for the healthy stack, a failing one, skipped checks, GitLab and waiting;
the parametrized variants run every check through `Verify`, as the command does, over one set of
boto3 clients, and assert each check's result: the broken one fails with its message, no other fails.

moto 5.2.5 creates ECC_NIST_P256 SIGN_VERIFY keys, keeps their key policies and grants and answers
GetPublicKey with the DER SubjectPublicKeyInfo, as AWS does. Where it does not answer as AWS does
(GetPublicKey of a symmetric or disabled key returns a key; AWS refuses with
UnsupportedOperationException / DisabledException), KMS is answered by botocore's Stubber with the
shapes of botocore's KMS service model and its documented examples."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import botocore.loaders
import gitlab
import pytest
from botocore.stub import Stubber

from infra.cli.main import main
from infra.components.signing import key_policy
from infra.ops.verify import FAIL, PASS, SKIP, Check, Verify
from tests.conftest import ROOT
from tests.fake_api import serve
from tests.moto_aws import DEFAULT_ACCOUNT, REGION, Aws, account, environment

ACCOUNT = DEFAULT_ACCOUNT  # the build stack's; variants of a registry's one configuration get their own
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


# A broken resource is named after what is broken, next to the healthy one of the same account.
def group_name(asg: str, tokens: str = "required", instances: int = 1) -> str:
    suffix = "" if tokens == "required" else "-imdsv1" if tokens == "optional" else f"-httptokens-{tokens}"
    return asg + suffix + ("" if instances == 1 else "-empty" if instances == 0 else f"-{instances}-instances")


def parameter_name(parameter: str, parameter_type: str = "SecureString") -> str:
    return parameter if parameter_type == "SecureString" else f"{parameter}-{parameter_type.lower()}"


def repository_name(repository: str, lifecycle: bool = True) -> str:
    return repository if lifecycle else f"{repository}-without-lifecycle"


@dataclass(frozen=True)
class Deployed:
    """A build stack's outputs and the emulated account its resources are in."""

    account: str
    outputs: dict[str, Any]


class BuildStacks:
    """The build stack as `pulumi up` leaves it, deployed into moto once (per account) and shared;
    each broken variant is made once, next to it, under a name of its own. Remade after moto's state
    is reset (tests of other modules run in between, in random order and on xdist's workers)."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.session = aws.session()
        self._made: dict[tuple[Any, ...], Any] = {}
        self._resets = aws.resets
        self._numbers = itertools.count(1)

    def _once(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        if self._resets != self.aws.resets:  # moto's state was reset: everything made before is gone
            self._made.clear()
            self._resets = self.aws.resets
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def unique(self, name: str) -> str:
        """A name no other test of this process uses: for what a test changes."""
        return f"{name}-{next(self._numbers)}"

    def _new_account(self) -> str:
        return str(210_000_000_000 + next(self._numbers))

    # --- what `pulumi up` creates ---------------------------------------------------------------

    def _group(self, account_id: str, asg: str, tokens: str, instances: int) -> str:
        """A runner's launch template and Auto Scaling group; returns the group's name."""
        ec2: Any = self.aws.client("ec2")
        autoscaling: Any = self.aws.client("autoscaling")
        with account(account_id):
            template = ec2.create_launch_template(
                LaunchTemplateName=f"{asg}-lt",
                LaunchTemplateData={
                    "ImageId": "ami-12c6146b",
                    "InstanceType": "t3.large",
                    "MetadataOptions": {"HttpTokens": tokens, "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
                },
            )["LaunchTemplate"]
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=asg,
                LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
                MinSize=instances,
                MaxSize=1,
                DesiredCapacity=instances,
                AvailabilityZones=[f"{REGION}a"],
            )
        return asg

    def group(self, account_id: str, asg: str, tokens: str = "required", instances: int = 1) -> str:
        name = group_name(asg, tokens, instances)
        return str(self._once(("group", account_id, name), lambda: self._group(account_id, name, tokens, instances)))

    def parameter(self, account_id: str, parameter: str, parameter_type: str = "SecureString") -> str:
        name = parameter_name(parameter, parameter_type)

        def make() -> str:
            with account(account_id):
                self.aws.client("ssm").put_parameter(Name=name, Value="glrt-notReadByVerify", Type=parameter_type)
            return name

        return str(self._once(("parameter", account_id, name), make))

    def repository(self, account_id: str, repository: str, lifecycle: bool = True) -> str:
        """A repository, under the build stack's lifecycle policy; returns its URI."""
        name = repository_name(repository, lifecycle)

        def make() -> str:
            ecr: Any = self.aws.client("ecr")
            with account(account_id):
                uri = ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"]
                if lifecycle:
                    expire = {"rulePriority": 1, "description": "Expire untagged images after one day"}
                    expire["action"] = {"type": "expire"}
                    expire["selection"] = {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    }
                    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps({"rules": [expire]}))
            return str(uri)

        return str(self._once(("repository", account_id, name), make))

    def role(self, account_id: str, asg: str) -> str:
        """A runner's instance role; returns its ARN."""
        trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        document = json.dumps({"Version": "2012-10-17", "Statement": [trust]})

        def make() -> str:
            with account(account_id):
                role = self.aws.client("iam").create_role(RoleName=f"{asg}-role", AssumeRolePolicyDocument=document)
            return str(role["Role"]["Arn"])

        return str(self._once(("role", account_id, asg), make))

    def signing_key(self, account_id: str, key_spec: str = "ECC_NIST_P256", key_usage: str = "SIGN_VERIFY",
                    signer: bool = True, also_signs: list[Any] | None = None,
                    key_state: str = "Enabled") -> tuple[str, str]:  # fmt: skip
        """The image-signing key as infra/components/signing.py creates it, or a broken one: returns its
        ARN and its public key as PEM. `also_signs` are more key-policy statements, where the principal
        "review-role" stands for the review runner's role; the item "grant" is a grant of kms:Sign to
        that role, "release-grant" one to the release runner's."""
        role, review_role = self.role(account_id, ASG), self.role(account_id, REVIEW_ASG)

        def make() -> tuple[str, str]:
            policy = json.loads(key_policy("aws", account_id, role if signer else None))
            statements = [s for s in also_signs or [] if isinstance(s, dict)]
            policy["Statement"].extend(
                json.loads(json.dumps(s).replace("review-role", review_role)) for s in statements
            )
            kms: Any = self.aws.client("kms")
            with account(account_id):
                key = kms.create_key(
                    KeySpec=key_spec,
                    KeyUsage=key_usage,
                    Policy=json.dumps(policy),
                    Description="shipyard staging: signs",
                )["KeyMetadata"]
                for grant, grantee in (("grant", review_role), ("release-grant", role)):
                    if grant in (also_signs or []):
                        kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Sign", "Verify"])
                if key_state == "Disabled":
                    kms.disable_key(KeyId=key["KeyId"])  # moto takes the key id here, not the ARN
                elif key_state == "PendingDeletion":
                    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=30)
                return str(key["Arn"]), pem(kms.get_public_key(KeyId=key["Arn"])["PublicKey"])

        variant = (key_spec, key_usage, signer, json.dumps(also_signs, sort_keys=True), key_state)
        return tuple(self._once(("signing key", account_id, variant), make))

    def other_public_key(self, account_id: str = ACCOUNT) -> str:
        """The public key of another signing key: the outputs of another stack, or of a key replaced since."""

        def make() -> str:
            kms: Any = self.aws.client("kms")
            with account(account_id):
                other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
                return pem(kms.get_public_key(KeyId=other["Arn"])["PublicKey"])

        return str(self._once(("other key", account_id), make))

    def _stack(self, account_id: str, scan: bool, review_scan: bool) -> dict[str, Any]:
        """Everything of a healthy build stack in an account, the registry's scanning configuration aside."""

        def make() -> dict[str, Any]:
            # What the build stack's registry scanning configuration sets (R21): a filter per repository.
            # Broken: a hand-written wildcard that matches the release repository's whole name only.
            filters = [REPOSITORY, REVIEW_REPOSITORY] if review_scan else ["acme/*front"]
            if scan:
                rule = {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": f, "filterType": "WILDCARD"} for f in filters],
                }
                with account(account_id):
                    self.aws.client("ecr").put_registry_scanning_configuration(scanType="BASIC", rules=[rule])
            key, public_key = self.signing_key(account_id)
            return {
                "environment": "staging",
                "gitlabProject": PROJECT,
                "registryUrl": self.repository(account_id, REPOSITORY),
                "registryScanning": "basic",
                "reviewRegistryUrl": self.repository(account_id, REVIEW_REPOSITORY),
                "imageSigningKeyArn": key,
                "imageSigningPublicKey": public_key,
                "runnerAsgName": self.group(account_id, ASG),
                "runnerTokenParameter": self.parameter(account_id, PARAMETER),
                "runnerId": "4242",
                "runnerRoleArn": self.role(account_id, ASG),
                "reviewRunnerAsgName": self.group(account_id, REVIEW_ASG),
                "reviewRunnerTokenParameter": self.parameter(account_id, REVIEW_PARAMETER),
                "reviewRunnerId": "4343",
                "reviewRunnerRoleArn": self.role(account_id, REVIEW_ASG),
                "herokuApiKey": "[secret]",
            }

        return dict(self._once(("stack", account_id, scan, review_scan), make))

    def fresh(self, scan: bool = True) -> Deployed:
        """A healthy build stack (with or without the registry's scanning configuration) in an account
        of its own, for a test that changes what is there."""
        account_id = self._new_account()
        return Deployed(account_id, self._stack(account_id, scan, True))

    def deploy(self, tokens: str = "required", parameter_type: str = "SecureString", scan: bool = True,
               instances: int = 1, review_tokens: str = "required", review_parameter_type: str = "SecureString",
               review_instances: int = 1, review_scan: bool = True, review_lifecycle: bool = True,
               key_spec: str = "ECC_NIST_P256", key_usage: str = "SIGN_VERIFY", signer: bool = True,
               also_signs: list[Any] | None = None, exported_key: str = "own",
               key_state: str = "Enabled") -> Deployed:  # fmt: skip
        """What `pulumi up` leaves behind for the staging (build) stack, with things optionally broken:
        the shared healthy deployment's outputs, pointing at the broken resources instead."""
        registry = (scan, review_scan)
        account_id = ACCOUNT if all(registry) else self._once(("account of a registry", *registry), self._new_account)
        outputs = self._stack(account_id, scan, review_scan)
        outputs["runnerAsgName"] = self.group(account_id, ASG, tokens, instances)
        outputs["runnerTokenParameter"] = self.parameter(account_id, PARAMETER, parameter_type)
        outputs["reviewRunnerAsgName"] = self.group(account_id, REVIEW_ASG, review_tokens, review_instances)
        outputs["reviewRunnerTokenParameter"] = self.parameter(account_id, REVIEW_PARAMETER, review_parameter_type)
        outputs["reviewRegistryUrl"] = self.repository(account_id, REVIEW_REPOSITORY, review_lifecycle)
        key, exported = self.signing_key(account_id, key_spec, key_usage, signer, also_signs, key_state)
        outputs["imageSigningKeyArn"] = key
        if exported_key == "other":  # the outputs of another stack, or of a key replaced since
            exported = self.other_public_key(account_id)
        elif exported_key != "own":
            exported = exported_key
        outputs["imageSigningPublicKey"] = exported
        return Deployed(account_id, outputs)


@pytest.fixture(scope="session")
def build_stacks(moto_endpoint: str) -> BuildStacks:
    return BuildStacks(Aws(moto_endpoint))


@pytest.fixture
def stacks(build_stacks: BuildStacks, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> BuildStacks:
    """The shared build stacks, and an environment whose credentials are moto's only."""
    environment(moto_endpoint, monkeypatch)
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    return build_stacks


def verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, outputs: dict[str, Any]) -> tuple[int, str, str]:
    """`shipyard verify --outputs FILE`, end to end, against the build stack's account."""
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["verify", "--stack", "staging", "--outputs", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def run_checks(stacks: BuildStacks, deployed: Deployed, gitlab_api: tuple[str, str] | None = None) -> dict[str, Check]:
    """Every check of `Verify`, by name, as `shipyard verify` runs them for these outputs."""
    with account(deployed.account):
        return {c.name: c for c in Verify(stacks.session, REGION, deployed.outputs).run(gitlab_api)}


def failed(checks: dict[str, Check]) -> set[str]:
    return {name for name, check in checks.items() if check.result == FAIL}


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


def test_a_healthy_stack_passes_every_check(stacks: BuildStacks, capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT)  # aws:region comes from Pulumi.staging.yaml
    outputs = stacks.deploy().outputs
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
        (
            {"instances": 0},
            "runner instance in service",
            f"0 instances InService in {group_name(ASG, instances=0)}, expected 1",
        ),
        # The same checks of the review runner (G11).
        ({"review_tokens": "optional"}, "review runner requires IMDSv2", "lets the host use IMDSv1"),
        (
            {"review_parameter_type": "String"},
            "review runner token is a SecureString",
            f"parameter {parameter_name(REVIEW_PARAMETER, 'String')} is a String",
        ),
        (
            {"review_instances": 0},
            "review runner instance in service",
            f"0 instances InService in {group_name(REVIEW_ASG, instances=0)}, expected 1",
        ),
        (
            {"review_scan": False},
            "review repository scanned on push",
            f"does not scan images pushed to {REVIEW_REPOSITORY} (R21)",
        ),
        (
            {"review_lifecycle": False},
            "review repository has a lifecycle policy",
            f"repository {repository_name(REVIEW_REPOSITORY, lifecycle=False)} has no lifecycle policy",
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
    stacks: BuildStacks, broken: dict[str, Any], check: str, message: str
) -> None:
    checks = run_checks(stacks, stacks.deploy(**broken))
    assert checks[check].result == FAIL, checks[check]
    assert message in checks[check].detail, checks[check]
    also = {
        # No instance: its IMDS setting cannot be read either.
        "runner instance in service": "runner requires IMDSv2",
        "review runner instance in service": "review runner requires IMDSv2",
        # No scanning configuration at all: the review repository is not scanned either.
        "registry scans on push": "review repository scanned on push",
    }
    assert failed(checks) == {check, also.get(check, check)}, checks


def test_a_different_public_key_is_named_by_both_fingerprints(
    stacks: BuildStacks, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(ROOT)
    outputs = stacks.deploy(exported_key="other").outputs
    code, out, _ = verify(capsys, tmp_path, outputs)
    assert code == 1
    assert [name for name, result in results(out).items() if result == FAIL] == [
        "signing key's public key in the outputs"
    ]
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
    stacks: BuildStacks, also_signs: list[Any], signer: bool, message: str
) -> None:  # guards G11
    checks = run_checks(stacks, stacks.deploy(also_signs=also_signs, signer=signer))
    assert message in checks["only the release runner may sign"].detail, checks["only the release runner may sign"]
    assert failed(checks) == {"only the release runner may sign"}, checks


def test_statements_that_do_not_sign_pass(stacks: BuildStacks) -> None:
    also = [
        # The review role may read the public key and verify: kms:Verify is not kms:Sign.
        allow("ReviewReads", {"AWS": "review-role"}, ["kms:GetPublicKey", "kms:DescribeKey", "kms:Verify"]),
        # A Deny grants nothing.
        {**allow("NoOneElse", "*", "kms:Sign"), "Effect": "Deny"},
        # A grant of kms:Sign to the release runner's role adds no signer.
        "release-grant",
    ]
    checks = run_checks(stacks, stacks.deploy(also_signs=also))
    assert failed(checks) == set(), checks
    assert checks["only the release runner may sign"].result == PASS


def test_a_stack_without_build_outputs_skips_those_checks(
    stacks: BuildStacks, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(ROOT)
    outputs = stacks.deploy().outputs
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


def test_the_ci_variable_is_read_only_with_the_project_known(stacks: BuildStacks) -> None:
    deployed = stacks.deploy()
    outputs = {k: v for k, v in deployed.outputs.items() if k not in ("gitlabProject", "runnerId", "reviewRunnerId")}
    checks = run_checks(stacks, Deployed(deployed.account, outputs), ("http://127.0.0.1:9", TOKEN))
    variable = checks["signing key's public key in the CI variable"]
    assert (variable.result, variable.detail) == (SKIP, "no gitlabProject output: the GitLab project is not known")
    assert not failed(checks)


def kms_example(operation: str, title: str) -> dict[str, Any]:
    """An answer of AWS KMS as botocore documents it (its examples-1.json)."""
    examples = botocore.loaders.Loader().load_service_model("kms", "examples-1")["examples"][operation]
    return copy.deepcopy(next(e["output"] for e in examples if e["title"] == title))


@pytest.mark.parametrize(
    ("example", "error", "failed_checks", "message"),
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
    stacks: BuildStacks, example: str | None, error: str | None, failed_checks: set[str], message: str
) -> None:
    """KMS answered by botocore's Stubber, which checks every request and answer against botocore's
    KMS service model; DescribeKey, GetKeyPolicy and ListGrants answer with its documented examples."""
    outputs = stacks.deploy().outputs
    key = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    der = stacks.aws.client("kms").get_public_key(KeyId=outputs["imageSigningKeyArn"])["PublicKey"]
    outputs["imageSigningKeyArn"] = key
    role = outputs["runnerRoleArn"]
    verifier = Verify(stacks.session, REGION, outputs)
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
    assert {c.name for c in checks if c.result == FAIL} == failed_checks, checks
    assert any(message in c.detail for c in checks), checks
    assert by_name["runner instance in service"].result == PASS  # the other services are moto's
    assert by_name["signing key's public key in the CI variable"].result == SKIP


@pytest.mark.parametrize(
    ("review_status", "variable", "code"),
    [("online", "own", 0), ("offline", "own", 1), ("online", "other", 1), ("online", None, 1)],
)
def test_the_runners_and_the_public_key_are_checked_in_gitlab(
    stacks: BuildStacks,
    capsys: Any,
    tmp_path: Path,
    monkeypatch: Any,
    review_status: str,
    variable: str | None,
    code: int,
) -> None:
    seen: list[tuple[str, str | None]] = []
    outputs = stacks.deploy().outputs
    carried = {"own": outputs["imageSigningPublicKey"], "other": stacks.other_public_key()}
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
    stacks: BuildStacks, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(ROOT)
    # As during an instance refresh: no host in service yet. The group is this test's own: it scales it.
    asg = stacks.group(ACCOUNT, stacks.unique(ASG), instances=0)
    outputs = {**stacks.deploy().outputs, "runnerAsgName": asg}
    autoscaling: Any = stacks.aws.client("autoscaling")
    waits: list[float] = []

    real_sleep = time.sleep

    def host_comes_up(seconds: float) -> None:  # the pause between two rounds of checks
        if seconds != 5:  # anyone else's sleep (time.sleep is process-wide)
            return real_sleep(seconds)
        waits.append(seconds)
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=asg, MinSize=1, DesiredCapacity=1)
        return None

    monkeypatch.setattr("infra.ops.commands.time.sleep", host_comes_up)
    # Heroku's answers on the apps are asked once: waiting for a host changes none of them.
    asked: list[str] = []

    def heroku_check(name: str) -> Any:
        def check(*args: Any, **kwargs: Any) -> list[Check]:
            asked.append(name)
            return [Check(name, PASS, "as Heroku answered")]

        return check

    monkeypatch.setattr("infra.ops.verify.review_key_checks", heroku_check("review key refused"))
    monkeypatch.setattr("infra.ops.verify.app_lock_checks", heroku_check("apps locked"))
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["verify", "--stack", "staging", "--outputs", str(path), "--wait", "60", "--interval", "5"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert waits == [5]
    assert "not yet: runner instance in service, runner requires IMDSv2; checking again in 5 s" in err
    assert "every check passed" in out
    assert asked == ["review key refused", "apps locked"]
    assert "review key refused" in out and "apps locked" in out


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
    stacks: BuildStacks, scan_type: str, frequency: str, pattern: str, passes: bool
) -> None:  # guards R21
    deployed = stacks.fresh(scan=False)  # a registry of its own: the test sets its scanning configuration
    rule = {"scanFrequency": frequency, "repositoryFilters": [{"filter": pattern, "filterType": "WILDCARD"}]}
    with account(deployed.account):
        stacks.aws.client("ecr").put_registry_scanning_configuration(scanType=scan_type, rules=[rule])
    checks = run_checks(stacks, deployed)
    registry = checks["registry scans on push"]
    assert registry.result == (PASS if passes else FAIL), registry
    assert failed(checks) <= {"registry scans on push", "review repository scanned on push"}, checks
    assert bool(failed(checks)) != passes, checks
    assert f"{scan_type.lower()} scanning" in registry.detail, registry


def test_the_deprecated_repository_flag_alone_does_not_count(stacks: BuildStacks) -> None:  # guards R21
    deployed = stacks.fresh(scan=False)  # a registry of its own: the test changes its repository
    with account(deployed.account):
        stacks.aws.client("ecr").put_image_scanning_configuration(
            repositoryName=REPOSITORY, imageScanningConfiguration={"scanOnPush": True}
        )
    checks = run_checks(stacks, deployed)
    assert checks["registry scans on push"].result == FAIL, checks["registry scans on push"]
