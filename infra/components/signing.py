"""The key that signs release images: an asymmetric AWS KMS key that only the release build runner's
role may sign with, its alias, and its public key (PEM) for `cosign verify`.

Owned by the build stack. The private key never leaves KMS; the public key is not secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_aws import get_caller_identity_output, get_partition_output, kms

from infra.settings import signing_key_alias

# An ECDSA key on NIST P-256, which KMS signs with ECDSA_SHA_256 and cosign's `awskms://` signer
# supports (the provider's kms.Key docs list the key specs; AWS KMS Developer Guide, "Choosing a key
# spec"). Both are fixed at creation: changing either replaces the key (ForceNew).
KEY_SPEC = "ECC_NIST_P256"
KEY_USAGE = "SIGN_VERIFY"
# What the signer needs: sign, and read the public key and the key's algorithms (cosign's KMS signer
# reads both before it signs).
SIGNER_ACTIONS = ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"]
# The account administers the key through IAM, so no deleted role or broken policy can make it
# unmanageable; but not `kms:Sign` (nor `kms:CreateGrant`, which could hand it out): only the
# signer's own statement allows that. The AWS default key administrators' actions
# (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-administrators)
# with CreateAlias in place of `kms:Create*`.
ADMIN_ACTIONS = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:Delete*",
    "kms:Describe*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:Revoke*",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:Update*",
]
# A deleted key cannot be brought back, and every signature it made becomes unverifiable with it:
# the longest waiting period KMS allows, during which the deletion can be cancelled.
DELETION_WINDOW_DAYS = 30


@dataclass
class SigningKeyArgs:
    stack: str
    signer_role_arn: pulumi.Input[str] | None
    """The release build runner's role, the only principal that may sign; None: nobody signs."""


def key_policy(partition: str, account: str, signer_role_arn: str | None) -> str:
    """The key policy: the account administers the key, only the signer's role signs with it.
    ARNs in the stack's own partition (P9)."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministersTheKey",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
            "Action": ADMIN_ACTIONS,
            "Resource": "*",
        }
    ]
    if signer_role_arn is not None:
        statements.append(
            {
                "Sid": "ReleaseBuildRunnerSigns",
                "Effect": "Allow",
                "Principal": {"AWS": signer_role_arn},
                "Action": SIGNER_ACTIONS,
                "Resource": "*",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class SigningKey(pulumi.ComponentResource):
    """The image-signing KMS key, its alias and its public key."""

    key: kms.Key
    alias: kms.Alias
    key_arn: pulumi.Output[str]
    signing_key_uri: pulumi.Output[str]
    """The key as cosign names it: `awskms:///<key ARN>`."""
    public_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: SigningKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("shipyard:aws:SigningKey", name, None, opts)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = get_partition_output(opts=invoke).partition
        account = get_caller_identity_output(opts=invoke).account_id

        # Signing is granted here, in the key policy, and nowhere else: a key policy that names a
        # principal needs no IAM statement, and an IAM statement alone would grant nothing, as the
        # account's statement leaves `kms:Sign` out. KMS refuses a policy naming a role that does not
        # exist yet; the provider retries while IAM propagates (terraform-provider-aws kms/key.go).
        self.key = kms.Key(
            name,
            description=f"shipyard {args.stack}: signs release images (cosign); only the release build runner signs",
            customer_master_key_spec=KEY_SPEC,
            key_usage=KEY_USAGE,
            policy=pulumi.Output.all(partition, account, args.signer_role_arn).apply(
                lambda values: key_policy(values[0], values[1], values[2])
            ),
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.alias = kms.Alias(
            f"{name}-alias",
            name=signing_key_alias(args.stack),
            target_key_id=self.key.key_id,
            # A fixed name: a replacement must not be created while the old alias still holds it.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.key_arn = self.key.arn
        self.signing_key_uri = self.key.arn.apply(lambda arn: f"awskms:///{arn}")
        self.public_key_pem = kms.get_public_key_output(key_id=self.key.arn, opts=invoke).public_key_pem
        self.register_outputs({"keyArn": self.key_arn, "publicKeyPem": self.public_key_pem})
