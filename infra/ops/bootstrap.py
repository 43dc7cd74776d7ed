"""`shipyard bootstrap`: what a team's self-managed Pulumi backend needs before the first
`pulumi login`, which Pulumi cannot create for itself: an S3 bucket for the state (versioned,
encrypted with KMS, no public access, TLS only, old versions expiring, ACLs off) and a KMS key behind
each alias, one `awskms://` secrets provider per stack. The first alias's key also encrypts the
bucket; the others are secrets-provider keys only and never change the bucket's encryption.

Idempotent: what is there and right is left alone. A bucket or key that already exists but lacks a
setting is reported, and changed only with `fix=True`; what this run creates is configured fully.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError, UnknownRegionError

TLS_SID = "DenyInsecureTransport"
LIFECYCLE_ID = "expire-old-state-versions"
OLD_VERSION_DAYS = 90
# Each of the four public-access-block settings closes a different way in, so all four must be on;
# each is optional in the API's answer, and can be set in any combination
# (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PublicAccessBlockConfiguration.html).
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
BUCKET_NAME = re.compile(r"^(?!xn--)(?!sthree-)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KMS_ALIAS = re.compile(r"^alias/(?!aws/)[a-zA-Z0-9/_-]{1,250}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
# One secrets-provider key per stack of this repository, staging's first (it also encrypts the
# bucket): merge requests' previews may decrypt staging's secrets, never production's (P1).
DEFAULT_KMS_ALIASES = ("alias/shipyard-staging", "alias/shipyard-prod")
# The alias naming convention above: its stack is what follows `alias/shipyard-`.
STACK_KEY_ALIAS = re.compile(r"alias/shipyard-([A-Za-z0-9_-]+)")
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
# IAM actions whose names differ from the API operation they allow.
IAM_ACTIONS = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "HeadBucket": "s3:ListBucket",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
}


class BootstrapError(Exception):
    """A failure the run cannot get past; the message is what to tell the user."""


@dataclass(frozen=True)
class Outcome:
    item: str
    state: str  # ok | created | configured | fixed | missing
    detail: str


def problems(bucket: str, region: str, aliases: Sequence[str]) -> list[str]:
    """Every problem with the arguments, at once."""
    found = []
    if not BUCKET_NAME.match(bucket) or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
        found.append(f"--bucket {bucket!r}: S3 bucket names are 3 to 63 lowercase letters, digits, dots and dashes")
    if not REGION.match(region):
        found.append(f"--region {region!r}: an AWS region such as eu-west-1")
    elif partition_of(region) is None:
        found.append(f"--region {region!r}: not a region of any AWS partition (aws, aws-cn, aws-us-gov, …)")
    for alias in aliases:
        if not KMS_ALIAS.match(alias):
            found.append(f"--kms-alias {alias!r}: alias/NAME of letters, digits, / _ -; not under alias/aws/")
    for alias in sorted({a for a in aliases if aliases.count(a) > 1}):
        found.append(f"--kms-alias {alias!r} is given more than once: each alias names one key")
    return found


def partition_of(region: str) -> str | None:
    """The AWS partition of a region from botocore's partition table (aws-cn for cn-north-1), or None."""
    try:
        return str(boto3.session.Session().get_partition_for_region(region))
    except UnknownRegionError:
        return None


def call_naming_denials(
    what: str, operation: Callable[..., Any], caller: str, failure: type[Exception], **kwargs: Any
) -> Any:
    """One boto3 call; access denied raises `failure` with a sentence naming the IAM action needed."""
    try:
        return operation(**kwargs)
    except ClientError as error:
        if error_code(error) in DENIED:
            client = operation.__self__  # type: ignore[attr-defined]
            api = client.meta.method_to_api_mapping[operation.__name__]
            action = IAM_ACTIONS.get(api, f"{client.meta.service_model.signing_name}:{api}")
            raise failure(f"access denied: {what} needs {action} for {caller}") from None
        raise


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call, e.g. `NoSuchBucket`; empty where the answer has none."""
    return str(error.response.get("Error", {}).get("Code", ""))


class Bootstrap:
    def __init__(
        self, session: boto3.Session, bucket: str, region: str, aliases: Sequence[str], fix: bool = False
    ) -> None:
        """`aliases`: one secrets-provider key each; the first one's key encrypts the bucket."""
        self.bucket, self.region, self.aliases, self.fix = bucket, region, tuple(aliases), fix
        self.bucket_alias = self.aliases[0]
        self.s3 = session.client("s3", region_name=region)
        self.kms = session.client("kms", region_name=region)
        self.sts = session.client("sts", region_name=region)
        self.outcomes: list[Outcome] = []
        self.key_arns: dict[str, str] = {}  # alias: ARN of its key
        # ARNs name the region's partition: `arn:aws` is wrong in China (aws-cn) and GovCloud
        # (aws-us-gov) (P9); botocore's own partition table answers, no call needed.
        self.partition = session.get_partition_for_region(region)

    def call(self, what: str, operation: Callable[..., Any], **kwargs: Any) -> Any:
        """One API call; access denied becomes a sentence that names the permission."""
        return call_naming_denials(what, operation, self.caller, BootstrapError, **kwargs)

    def run(self) -> list[Outcome]:
        self.caller = "the current AWS identity"
        identity = self.call("identifying the caller", self.sts.get_caller_identity)
        self.caller, self.account = identity["Arn"], identity["Account"]
        for alias in self.aliases:
            self._key(alias)
        self._bucket()
        return self.outcomes

    def note(self, item: str, state: str, detail: str) -> None:
        self.outcomes.append(Outcome(item, state, detail))

    def setting(self, item: str, new: bool, is_set: bool, apply: Callable[[], Any], want: str) -> None:
        """Leave a right setting alone; set it on what this run created; on what existed, only with fix."""
        if is_set:
            self.note(item, "ok", want)
        elif new:
            apply()
            self.note(item, "configured", want)
        elif self.fix:
            apply()
            self.note(item, "fixed", want)
        else:
            self.note(item, "missing", f"wanted: {want}; run again with --fix")

    # --- the KMS keys -----------------------------------------------------------------------------

    def _key(self, alias: str) -> None:
        try:
            key = self.call(f"reading the key alias {alias}", self.kms.describe_key, KeyId=alias)["KeyMetadata"]
            new = False
            self.note(f"kms key {alias}", "ok", key["Arn"])
        except ClientError as error:
            if error_code(error) != "NotFoundException":
                raise
            key = self.call(
                f"creating the KMS key of {alias}",
                self.kms.create_key,
                Description=f"Pulumi secrets provider {alias} (shipyard bootstrap, {self.bucket})",
                KeyUsage="ENCRYPT_DECRYPT",
                Tags=[{"TagKey": "managed-by", "TagValue": "shipyard-bootstrap"}],
            )["KeyMetadata"]
            self.call(f"naming the KMS key {alias}", self.kms.create_alias, AliasName=alias, TargetKeyId=key["KeyId"])
            new = True
            self.note(f"kms key {alias}", "created", key["Arn"])
        # guards P1: two aliases of one key would let whoever may decrypt one stack's secrets read the other's
        shared = next((other for other, arn in self.key_arns.items() if arn == key["Arn"]), None)
        if shared:
            raise BootstrapError(
                f"--kms-alias {shared} and --kms-alias {alias} name the same key {key['Arn']}: each stack needs "
                "a key of its own; give one of them an alias that does not exist yet, and bootstrap creates its key"
            )
        self.key_arns[alias] = key["Arn"]
        self.setting(
            f"kms key {alias} enabled",
            new,
            key.get("KeyState", "Enabled") == "Enabled",
            lambda: self._enable(key),
            "the key is enabled",
        )
        rotation = self.call("reading key rotation", self.kms.get_key_rotation_status, KeyId=key["KeyId"])
        self.setting(
            f"kms key {alias} rotation",
            new,
            bool(rotation.get("KeyRotationEnabled")),
            lambda: self.call("enabling key rotation", self.kms.enable_key_rotation, KeyId=key["KeyId"]),
            "yearly rotation on",
        )

    def _enable(self, key: dict[str, Any]) -> None:
        if key.get("KeyState") == "PendingDeletion":
            self.call("cancelling the key's deletion", self.kms.cancel_key_deletion, KeyId=key["KeyId"])
        self.call("enabling the key", self.kms.enable_key, KeyId=key["KeyId"])

    # --- the bucket -------------------------------------------------------------------------------

    def _bucket(self) -> None:
        new = not self._owned()
        if new:
            self._create()
        b = self.bucket
        self.setting(
            "versioning",
            new,
            self._versioning(),
            lambda: self.call(
                "turning versioning on",
                self.s3.put_bucket_versioning,
                Bucket=b,
                VersioningConfiguration={"Status": "Enabled"},
            ),
            "versioning enabled",
        )
        self.setting(
            "default encryption",
            new,
            self._encrypted(),
            lambda: self.call(
                "setting default encryption",
                self.s3.put_bucket_encryption,
                Bucket=b,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": self.key_arns[self.bucket_alias],
                            },
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
            ),
            f"SSE-KMS with {self.bucket_alias}",
        )
        self.setting(
            "public access block",
            new,
            self._private(),
            lambda: self.call(
                "blocking public access",
                self.s3.put_public_access_block,
                Bucket=b,
                PublicAccessBlockConfiguration=dict.fromkeys(PUBLIC_ACCESS_FLAGS, True),
            ),
            "all four public access settings on",
        )
        policy = self._policy()
        self.setting(
            "tls only",
            new,
            any(_denies_plain_http(s) for s in policy["Statement"]),
            lambda: self.call(
                "setting the bucket policy",
                self.s3.put_bucket_policy,
                Bucket=b,
                Policy=json.dumps({**policy, "Statement": [*policy["Statement"], self._tls_statement()]}),
            ),
            "a bucket policy denying requests without TLS",
        )
        self.setting(
            "acls disabled",
            new,
            self._owner_enforced(),
            lambda: self.call(
                "disabling ACLs",
                self.s3.put_bucket_ownership_controls,
                Bucket=b,
                OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            ),
            "object ownership BucketOwnerEnforced",
        )
        rules = self._lifecycle_rules()
        self.setting(
            "old versions expire",
            new,
            any(_expires_versions(r) for r in rules),
            lambda: self.call(
                "setting the lifecycle",
                self.s3.put_bucket_lifecycle_configuration,
                Bucket=b,
                LifecycleConfiguration={
                    "Rules": [
                        *(r for r in rules if r.get("ID") != LIFECYCLE_ID),  # IDs are unique
                        {
                            "ID": LIFECYCLE_ID,
                            "Status": "Enabled",
                            "Filter": {},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": OLD_VERSION_DAYS},
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                        },
                    ]
                },
            ),
            f"noncurrent state versions expire after {OLD_VERSION_DAYS} days",
        )

    def _owned(self) -> bool:
        """True for a bucket of this account; False when there is none; an error for anyone else's."""
        try:
            self.s3.head_bucket(Bucket=self.bucket, ExpectedBucketOwner=self.account)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
                return False
            if error_code(error) not in DENIED:
                raise
        buckets = self.call("listing your buckets", self.s3.list_buckets)["Buckets"]
        if self.bucket in {b["Name"] for b in buckets}:
            location = self.call("reading the bucket's region", self.s3.get_bucket_location, Bucket=self.bucket)
            region = location.get("LocationConstraint") or "us-east-1"  # S3 answers null for us-east-1
            if region != self.region:
                raise BootstrapError(
                    f"bucket {self.bucket} is in {region}, not {self.region}: run again with --region {region}"
                )
            self.note(f"bucket {self.bucket}", "ok", f"in {self.region}, account {self.account}")
            return True
        raise BootstrapError(
            f"bucket {self.bucket} exists but belongs to another AWS account (or is closed to {self.caller}); "
            "bucket names are global: choose another --bucket"
        )

    def _create(self) -> None:
        location = (
            {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        )
        try:
            self.call(
                "creating the bucket",
                self.s3.create_bucket,
                Bucket=self.bucket,
                ObjectOwnership="BucketOwnerEnforced",
                **location,
            )
        except ClientError as error:
            if error_code(error) == "BucketAlreadyExists":
                raise BootstrapError(
                    f"bucket {self.bucket} belongs to another AWS account; bucket names are global: "
                    "choose another --bucket"
                ) from None
            raise
        self.note(f"bucket {self.bucket}", "created", f"in {self.region}, account {self.account}")

    def read(self, what: str, operation: Callable[..., Any], absent: str) -> Any | None:
        """A bucket setting, or None where the bucket has none (S3 answers with the error `absent`)."""
        try:
            return self.call(what, operation, Bucket=self.bucket)
        except ClientError as error:
            if error_code(error) == absent:
                return None
            raise

    def _versioning(self) -> bool:
        return self.call("reading versioning", self.s3.get_bucket_versioning, Bucket=self.bucket).get("Status") == (
            "Enabled"
        )

    def _encrypted(self) -> bool:
        found = self.read(
            "reading encryption", self.s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError"
        )
        # The key may be named by id, ARN, alias or alias ARN.
        arn, alias = self.key_arns[self.bucket_alias], self.bucket_alias
        names = {arn, arn.rsplit("/", 1)[-1], alias, arn.split(":key/")[0] + f":{alias}"}
        return found is not None and any(
            r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") == "aws:kms"
            and r["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID") in names
            for r in found["ServerSideEncryptionConfiguration"]["Rules"]
        )

    def _private(self) -> bool:
        found = self.read(
            "reading the public access block", self.s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration"
        )
        # Every flag by name: a setting that is off, or absent from the answer, leaves that way in open.
        settings = found["PublicAccessBlockConfiguration"] if found else {}
        return all(settings.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS)

    def _policy(self) -> dict[str, Any]:
        found = self.read("reading the bucket policy", self.s3.get_bucket_policy, "NoSuchBucketPolicy")
        policy = json.loads(found["Policy"]) if found else {"Version": "2012-10-17", "Statement": []}
        statements = policy.get("Statement", [])
        return {**policy, "Statement": statements if isinstance(statements, list) else [statements]}

    def _owner_enforced(self) -> bool:
        found = self.read("reading ownership", self.s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError")
        rules = found["OwnershipControls"]["Rules"] if found else []
        return any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules)

    def _tls_statement(self) -> dict[str, Any]:
        arn = bucket_arn(self.partition, self.bucket)
        return {
            "Sid": TLS_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }

    def _lifecycle_rules(self) -> list[dict[str, Any]]:
        found = self.read(
            "reading the lifecycle", self.s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"
        )
        return list(found["Rules"]) if found else []


def bucket_arn(partition: str, bucket: str) -> str:
    """An S3 bucket's ARN: no region or account, but the partition (P9)."""
    return f"arn:{partition}:s3:::{bucket}"


def _denies_plain_http(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition", {}).get("Bool", {})
    return statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false"


def _expires_versions(rule: dict[str, Any]) -> bool:
    return rule.get("Status") == "Enabled" and "NoncurrentVersionExpiration" in rule


def login_lines(bucket: str, region: str, aliases: Sequence[str]) -> list[str]:
    """What to run next: the login, and one `pulumi stack init` per key. An alias that follows the
    convention `alias/shipyard-<stack>` names its stack; for any other the stack is left to fill in."""
    stacks = [match[1] if (match := STACK_KEY_ALIAS.fullmatch(alias)) else "<stack>" for alias in aliases]
    width = max(len(stack) for stack in stacks)
    return [
        f"pulumi login 's3://{bucket}?region={region}&awssdk=v2'",
        *(
            f"pulumi stack init {stack:<{width}} --secrets-provider 'awskms://{alias}?region={region}'"
            for stack, alias in zip(stacks, aliases, strict=True)
        ),
    ]
