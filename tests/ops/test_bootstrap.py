"""`shipyard bootstrap` against moto: from nothing, twice, a half-configured bucket (reported,
fixed only with --fix), denied access, someone else's bucket, no credentials, bad arguments; one key
per stack, the first also the bucket's."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.cli.main import main
from infra.ops.bootstrap import Bootstrap, login_lines
from tests.moto_aws import REGION, Aws, act_as_user

BUCKET = "acme-pulumi-state"
ALIAS = "alias/acme-pulumi"
STAGING, PROD = "alias/shipyard-staging", "alias/shipyard-prod"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`shipyard bootstrap` of BUCKET in REGION with these further arguments: exit code, stdout, stderr."""
    code = main(["bootstrap", "--bucket", BUCKET, "--region", REGION, *args])
    out, err = capsys.readouterr()
    return code, out, err


def bootstrap(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run(capsys, "--kms-alias", ALIAS, *extra)


def row(out: str, item: str) -> str:
    return next(line for line in out.splitlines() if item in line)


def key_of(aws: Aws, alias: str) -> dict[str, Any]:
    kms: Any = aws.client("kms")
    return dict(kms.describe_key(KeyId=alias)["KeyMetadata"])


def bucket_key(aws: Aws) -> str:
    s3: Any = aws.client("s3")
    [rule] = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    return str(rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"])


def assert_backend_ready(aws: Aws) -> None:
    s3: Any = aws.client("s3")
    kms: Any = aws.client("kms")
    key = kms.describe_key(KeyId=ALIAS)["KeyMetadata"]
    assert key["KeyState"] == "Enabled" and kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    [rule] = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}
    assert all(s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"].values())
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    tls = next(s for s in statements if s.get("Sid") == "DenyInsecureTransport")
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert tls["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert any(r["Status"] == "Enabled" and r["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90 for r in rules)


def test_bootstrap_from_nothing_creates_a_ready_backend(aws: Aws, capsys: Any) -> None:
    code, out, err = bootstrap(capsys)
    assert code == 0, err
    assert_backend_ready(aws)
    assert f"pulumi login 's3://{BUCKET}?region={REGION}&awssdk=v2'" in out
    assert f"--secrets-provider 'awskms://{ALIAS}?region={REGION}'" in out


def test_a_second_run_changes_nothing_and_says_so(aws: Aws, capsys: Any) -> None:
    assert bootstrap(capsys)[0] == 0
    code, out, _ = bootstrap(capsys)
    assert code == 0
    assert "nothing to change" in out
    assert " created" not in out and " configured" not in out
    s3: Any = aws.client("s3")
    kms: Any = aws.client("kms")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    assert len(kms.list_keys()["Keys"]) == 1
    assert [a["AliasName"] for a in kms.list_aliases()["Aliases"] if not a["AliasName"].startswith("alias/aws/")] == [
        ALIAS
    ]


def test_a_half_configured_bucket_is_reported_and_fixed_only_with_fix(aws: Aws, capsys: Any) -> None:
    s3: Any = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    theirs = {"Sid": "ReadForAudit", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}
    theirs |= {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))

    code, out, _ = bootstrap(capsys)
    assert code == 1
    for item in ("default encryption", "public access block", "tls only", "old versions expire"):
        line = next(line for line in out.splitlines() if item in line)
        assert "missing" in line, line
    assert "run again with --fix" in out
    with pytest.raises(ClientError):  # reported, not changed
        s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)

    code, out, _ = bootstrap(capsys, "--fix")
    assert code == 0
    assert "fixed" in out
    assert_backend_ready(aws)
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert theirs in statements  # the statements already there are kept

    assert "nothing to change" in bootstrap(capsys)[1]


def test_someone_elses_bucket_is_refused(aws: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "111111111111")  # moto runs in this process and reads it on each request
    s3: Any = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    code, _, err = bootstrap(capsys)
    assert code == 1
    assert f"bucket {BUCKET} exists but belongs to another AWS account" in err
    assert "Traceback" not in err


def test_denied_access_names_the_missing_permission(aws: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    act_as_user(aws, monkeypatch, ["sts:GetCallerIdentity", "kms:*"])  # no S3 at all

    code, _, err = bootstrap(capsys)
    assert code == 1
    assert "access denied: listing your buckets needs s3:ListAllMyBuckets for arn:aws:iam::123456789012:user/ci" in err
    assert "Traceback" not in err


def test_no_credentials_is_a_clear_error(aws: Aws, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = bootstrap(capsys)
    assert code == 2
    assert "no AWS credentials" in err and "Traceback" not in err


def test_bad_arguments_are_all_named_before_any_call(capsys: Any) -> None:
    code = main(["bootstrap", "--bucket", "Acme_State", "--region", "europe", "--kms-alias", "alias/aws/s3"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "--bucket 'Acme_State'" in err and "--region 'europe'" in err and "--kms-alias 'alias/aws/s3'" in err


def test_a_bucket_in_another_region_is_refused(aws: Aws, capsys: Any) -> None:
    s3: Any = aws.client("s3", "eu-central-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    code, _, err = bootstrap(capsys)
    assert code == 1
    assert f"bucket {BUCKET} is in eu-central-1, not {REGION}: run again with --region eu-central-1" in err


def test_encryption_with_another_key_or_a_key_pending_deletion_is_fixed_only_with_fix(aws: Aws, capsys: Any) -> None:
    assert bootstrap(capsys)[0] == 0
    s3: Any = aws.client("s3")
    kms: Any = aws.client("kms")
    other = kms.create_key(Description="someone's key")["KeyMetadata"]["Arn"]
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": other}}
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [rule]})
    ours = kms.describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=ours, PendingWindowInDays=7)

    code, out, _ = bootstrap(capsys)
    assert code == 1
    assert "missing" in next(line for line in out.splitlines() if "default encryption" in line)
    assert "missing" in row(out, f"kms key {ALIAS} enabled")

    assert bootstrap(capsys, "--fix")[0] == 0
    assert kms.describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyState"] == "Enabled"
    assert_backend_ready(aws)


@pytest.mark.parametrize("flag", ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"])
def test_a_bucket_with_any_one_public_access_setting_off_is_reported(aws: Aws, capsys: Any, flag: str) -> None:
    assert bootstrap(capsys)[0] == 0
    s3: Any = aws.client("s3")
    settings = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration=settings | {flag: False})

    code, out, _ = bootstrap(capsys)
    assert code == 1
    assert "missing" in next(line for line in out.splitlines() if "public access block" in line)
    assert bootstrap(capsys, "--fix")[0] == 0
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"] == settings


def test_a_public_access_answer_without_a_setting_counts_it_as_off() -> None:
    # Each setting is optional in S3's answer (API_PublicAccessBlockConfiguration): absent is not on.
    class Answer(Bootstrap):
        def read(self, what: str, operation: Any, absent: str) -> Any:
            return {"PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                                       "BlockPublicPolicy": True}}  # fmt: skip

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    assert Answer(session, BUCKET, REGION, [ALIAS])._private() is False


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_the_tls_policy_names_the_bucket_in_its_regions_partition(
    aws: Aws, capsys: Any, region: str, partition: str
) -> None:
    # guards P9: `arn:aws:s3:::` names no bucket in China or GovCloud
    code = main(["bootstrap", "--bucket", BUCKET, "--region", region, "--kms-alias", ALIAS])
    _, err = capsys.readouterr()
    assert code == 0, err
    s3: Any = aws.client("s3", region)
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    tls = next(s for s in statements if s.get("Sid") == "DenyInsecureTransport")
    assert tls["Resource"] == [f"arn:{partition}:s3:::{BUCKET}", f"arn:{partition}:s3:::{BUCKET}/*"]


def test_a_region_of_no_partition_is_refused_before_any_call(capsys: Any) -> None:
    code = main(["bootstrap", "--bucket", BUCKET, "--region", "xx-nowhere-1", "--kms-alias", ALIAS])
    _, err = capsys.readouterr()
    assert code == 2
    assert "--region 'xx-nowhere-1': not a region of any AWS partition" in err


# --- one key per stack -------------------------------------------------------------------------------


def test_each_alias_gets_its_own_rotating_key_and_the_first_encrypts_the_bucket(aws: Aws, capsys: Any) -> None:
    code, out, err = run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD)
    assert code == 0, err
    kms: Any = aws.client("kms")
    staging, prod = key_of(aws, STAGING), key_of(aws, PROD)
    assert staging["KeyId"] != prod["KeyId"]
    for key in (staging, prod):
        assert key["KeyState"] == "Enabled" and kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    assert bucket_key(aws) == staging["Arn"]
    assert "SSE-KMS with alias/shipyard-staging" in row(out, "default encryption")


def test_a_second_run_with_both_keys_changes_nothing_and_says_so(aws: Aws, capsys: Any) -> None:
    assert run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD)[0] == 0
    code, out, _ = run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD)
    assert code == 0
    assert "nothing to change" in out
    kms: Any = aws.client("kms")
    assert len(kms.list_keys()["Keys"]) == 2


def test_a_run_adding_an_alias_creates_just_its_key_and_leaves_the_bucket_encrypted_as_it_was(
    aws: Aws, capsys: Any
) -> None:
    assert run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD)[0] == 0
    code, out, err = run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD, "--kms-alias", "alias/shipyard-qa")
    assert code == 0, err
    assert "created" in row(out, "kms key alias/shipyard-qa")
    assert "ok" in row(out, f"kms key {PROD} ") and "ok" in row(out, "default encryption")
    assert out.count(" created ") == 1 and " fixed " not in out
    assert bucket_key(aws) == key_of(aws, STAGING)["Arn"]
    assert "pulumi stack init qa      --secrets-provider 'awskms://alias/shipyard-qa?region=eu-west-1'" in out


def test_a_secrets_key_with_rotation_off_is_reported_and_fixed_only_with_fix(aws: Aws, capsys: Any) -> None:
    kms: Any = aws.client("kms")
    prod = kms.create_key(Description="made by hand")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=PROD, TargetKeyId=prod)

    code, out, _ = run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD)
    assert code == 1
    assert "missing" in row(out, f"kms key {PROD} rotation")
    assert not kms.get_key_rotation_status(KeyId=prod)["KeyRotationEnabled"]

    assert run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD, "--fix")[0] == 0
    assert kms.get_key_rotation_status(KeyId=prod)["KeyRotationEnabled"]
    assert bucket_key(aws) == key_of(aws, STAGING)["Arn"]


def test_two_aliases_of_one_key_are_refused(aws: Aws, capsys: Any) -> None:
    # guards P1: whoever may decrypt staging's secrets would read production's
    assert run(capsys, "--kms-alias", STAGING)[0] == 0
    kms: Any = aws.client("kms")
    kms.create_alias(AliasName=PROD, TargetKeyId=key_of(aws, STAGING)["KeyId"])
    code, _, err = run(capsys, "--kms-alias", STAGING, "--kms-alias", PROD)
    assert code == 1
    assert f"--kms-alias {STAGING} and --kms-alias {PROD} name the same key" in err


def test_the_same_alias_twice_is_refused_before_any_call(capsys: Any) -> None:
    code, out, err = run(capsys, "--kms-alias", STAGING, "--kms-alias", "alias/aws/s3", "--kms-alias", STAGING)
    assert code == 2
    assert f"--kms-alias '{STAGING}' is given more than once" in err
    assert "--kms-alias 'alias/aws/s3'" in err  # every problem at once
    assert out == ""


def test_without_kms_alias_each_stack_of_this_repository_gets_its_own_key(aws: Aws, capsys: Any) -> None:
    code, out, err = run(capsys)
    assert code == 0, err
    assert bucket_key(aws) == key_of(aws, STAGING)["Arn"] != key_of(aws, PROD)["Arn"]
    closing = out[out.index("next:") :].splitlines()
    assert closing == [
        "next:",
        f"  pulumi login 's3://{BUCKET}?region={REGION}&awssdk=v2'",
        f"  pulumi stack init staging --secrets-provider 'awskms://{STAGING}?region={REGION}'",
        f"  pulumi stack init prod    --secrets-provider 'awskms://{PROD}?region={REGION}'",
    ]


def test_an_alias_outside_the_naming_convention_leaves_the_stack_to_fill_in() -> None:
    assert login_lines(BUCKET, REGION, [ALIAS, PROD])[1:] == [
        f"pulumi stack init <stack> --secrets-provider 'awskms://{ALIAS}?region={REGION}'",
        f"pulumi stack init prod    --secrets-provider 'awskms://{PROD}?region={REGION}'",
    ]
