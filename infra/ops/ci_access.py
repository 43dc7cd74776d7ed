"""`shipyard ci-access`: the AWS access of shipyard's own pipeline. GitLab becomes an IAM OIDC
identity provider, and four roles trust the ID tokens of one GitLab project's pipelines: `preview`
(merge requests: read-only, staging only), `deploy-staging`, `deploy-prod` and `drift` (the
protected default branch only). No AWS key is stored anywhere; the CI/CD variables to set are
printed at the end.

What AWS can check, and so what the roles trust, is in infra/facts/gitlab-oidc.yaml: a trust
policy sees only the token's `aud` and `sub`, and `sub` names the project, the ref type and the
ref, not whether the ref is protected. A role for protected pipelines therefore trusts the `sub` of
the default branch, and GitLab must protect that branch; with a GitLab token the run checks that.

Idempotent like `shipyard bootstrap`: what is there and right is left alone; what this run creates
is made right; a role that differs (a trust policy loosened by hand, a policy attached by someone)
is reported, and changed only with `fix=True`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.facts import aws_partition, load
from infra.ops.bootstrap import BUCKET_NAME, DENIED, KMS_ALIAS, REGION, call_naming_denials, error_code
from infra.ops.ci_permissions import Scope, permissions

FACTS = "gitlab-oidc"
MANAGED_BY = {"Key": "managed-by", "Value": "shipyard-ci-access"}
POLICY_NAME = "shipyard-ci-access"
# The shortest session IAM allows. The SDKs and the Pulumi providers assume the role again with the
# token file before a session ends, and GitLab's ID token lives as long as the job's timeout, so a
# long job needs no longer session; a leaked session key is good for an hour at most.
SESSION_SECONDS = 3600
# The GitLab environments of .gitlab-ci.yml's deploy jobs: DEPLOY_AWS_ROLE_ARN is set once per
# environment, so each deploy job gets the role of its own stack (an environment-scoped variable
# reaches only jobs whose `environment:` matches, G5).
STAGING_ENVIRONMENT = "infra/staging"
PRODUCTION_ENVIRONMENT = "infra/production"
# Outcome states besides bootstrap's: missing and unprotected fail the run, unchecked does not.
MISSING, UNPROTECTED, UNCHECKED = "missing", "unprotected", "unchecked"

GITLAB_SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$")
URL_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
AUDIENCE = re.compile(r"^[!#-)+->@-~]{1,255}$")  # printable ASCII without space, `"`, `*` or `?`
ROLE_PREFIX = re.compile(r"^[\w+=,.@-]*$")
STACK_OR_PROJECT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]+|alias/(?!aws/)[A-Za-z0-9/_-]+)$")


class CiAccessError(Exception):
    """A failure the run cannot get past; the message is what to tell the user."""


@dataclass(frozen=True)
class Request:
    """What `shipyard ci-access` sets up: for which GitLab project, instance and state backend."""

    project: str  # GitLab project path, group/project
    gitlab_url: str
    audience: str
    default_branch: str  # the protected branch that deploys
    region: str
    state_bucket: str
    staging_key: str  # alias/NAME or ARN of staging's secrets-provider key
    prod_key: str
    role_prefix: str
    pulumi_project: str
    staging_stack: str  # the build stack: owns the registry and the signing key
    prod_stack: str  # reads the build stack's outputs (Pulumi.prod.yaml, shipyard:buildStack)

    @property
    def provider(self) -> str:
        """The IAM OIDC provider's name, and the prefix of its condition keys: `gitlab.com`."""
        return self.gitlab_url.removeprefix("https://").rstrip("/")


@dataclass(frozen=True)
class Role:
    suffix: str
    variable: str  # as .gitlab-ci.yml reads it
    environment: str  # the variable's environment scope in GitLab
    protected_ref: bool  # trusts the default branch only, and its variable is protected
    purpose: str

    def name(self, request: Request) -> str:
        return f"{request.role_prefix}{self.suffix}"

    def who(self, request: Request) -> str:
        if self.protected_ref:
            return f"{request.project}'s branch {request.default_branch} only (GitLab must protect it)"
        return f"every branch pipeline of {request.project}, merge requests included"


ROLES = (
    Role("preview", "PREVIEW_AWS_ROLE_ARN", "*", False, "merge requests' `pulumi preview` of staging: read-only"),
    Role("deploy-staging", "DEPLOY_AWS_ROLE_ARN", STAGING_ENVIRONMENT, True, "`pulumi up` of staging"),
    Role("deploy-prod", "DEPLOY_AWS_ROLE_ARN", PRODUCTION_ENVIRONMENT, True, "`pulumi up` of production"),
    Role("drift", "DRIFT_AWS_ROLE_ARN", "*", True, "`drift` and `preview-prod`: read-only, both stacks"),
)


@dataclass(frozen=True)
class Outcome:
    item: str
    state: str  # ok | created | configured | fixed | missing | unprotected | unchecked
    detail: str


@dataclass(frozen=True)
class Variable:
    """A CI/CD variable of the GitLab project, as the printed table shows it."""

    name: str
    value: str
    protected: str
    environment: str


# --- arguments --------------------------------------------------------------------------------------


def _branch_problem(branch: str) -> str | None:
    """Why git would refuse `branch` as a branch name (git-check-ref-format), or None."""
    if not branch or branch.startswith(("-", "/", ".")) or branch.endswith(("/", ".", ".lock")):
        return "not a branch name"
    # `*`, `?` and `:` matter most: a wildcard would let any branch deploy, a colon would reach
    # into another field of the token's `sub` (G8).
    if re.search(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{|/\.", branch) or branch == "@":
        return "not a branch name (no spaces, `~ ^ : ? * [ \\`, `..` or `@{`)"
    return None


def partition_of(region: str) -> str | None:
    """The AWS partition of a region (aws-cn for cn-north-1), or None: botocore's table, as the
    facts keep it (tests/facts/test_partitions.py), without loading botocore's endpoint data."""
    for partition in load("aws-partitions")["partitions"]:
        if re.match(partition["regionRegex"], region):
            return str(partition["id"])
    return None


def problems(request: Request) -> list[str]:
    """Every problem with the arguments, at once, before any call to AWS."""
    found = []
    segments = request.project.split("/")
    if (
        len(segments) < 2
        or not all(GITLAB_SEGMENT.match(s) for s in segments)
        or request.project.endswith((".git", ".atom"))
    ):
        # guards G8: the path goes into the trust policy's `sub`; `*` or `?` there would trust other projects
        found.append(
            f"--project {request.project!r}: a GitLab project path such as group/project "
            "(letters, digits, `_ . -`; subgroups allowed)"
        )
    url = urllib.parse.urlsplit(request.gitlab_url)
    if (
        url.scheme != "https"
        or not HOST.match(url.netloc)
        or not URL_PATH.match(url.path.rstrip("/"))
        or url.query
        or url.fragment
    ):
        found.append(
            f"--gitlab-url {request.gitlab_url!r}: the https URL of the GitLab instance, such as https://gitlab.com "
            "(no port, query or fragment): the issuer of its ID tokens"
        )
    if not AUDIENCE.match(request.audience):
        found.append(
            f"--audience {request.audience!r}: the `aud` the jobs ask for in `id_tokens`, 1 to 255 characters "
            "without spaces, `*` or `?` (shipyard's .gitlab-ci.yml asks for sts.amazonaws.com)"
        )
    why = _branch_problem(request.default_branch)
    if why:
        found.append(f"--default-branch {request.default_branch!r}: {why}")
    longest = max(len(role.suffix) for role in ROLES)
    if not ROLE_PREFIX.match(request.role_prefix) or len(request.role_prefix) + longest > 64:
        found.append(
            f"--role-prefix {request.role_prefix!r}: letters, digits and `+=,.@_-`, at most {64 - longest} "
            f"characters (IAM role names are at most 64, and the longest suffix is {longest})"
        )
    if not BUCKET_NAME.match(request.state_bucket):
        found.append(
            f"--state-bucket {request.state_bucket!r}: S3 bucket names are 3 to 63 lowercase letters, digits, dots "
            "and dashes (the bucket `shipyard bootstrap` created)"
        )
    if not REGION.match(request.region):
        found.append(f"--region {request.region!r}: an AWS region such as eu-west-1")
    elif partition_of(request.region) is None:
        found.append(f"--region {request.region!r}: not a region of any AWS partition (aws, aws-cn, aws-us-gov, …)")
    for flag, key in (("--staging-kms-key", request.staging_key), ("--prod-kms-key", request.prod_key)):
        if not (KMS_ALIAS.match(key) or KEY_ARN.match(key)):
            found.append(f"{flag} {key!r}: alias/NAME or the ARN of the stack's secrets-provider key")
    if request.staging_key == request.prod_key:
        # guards P1: merge requests assume the preview role, which decrypts staging's secrets
        found.append(
            f"--staging-kms-key and --prod-kms-key are both {request.staging_key!r}: each stack needs its own key, "
            "or merge requests could decrypt production's secrets with the preview role"
        )
    for flag, name in (
        ("--pulumi-project", request.pulumi_project),
        ("--staging-stack", request.staging_stack),
        ("--prod-stack", request.prod_stack),
    ):
        if not STACK_OR_PROJECT.match(name):
            found.append(f"{flag} {name!r}: letters, digits and `_ . -`, as Pulumi names a project or stack")
    if request.staging_stack == request.prod_stack:
        found.append(f"--staging-stack and --prod-stack are both {request.staging_stack!r}")
    return found


# --- trust --------------------------------------------------------------------------------------------


def sub(project: str, ref_type: str, ref: str) -> str:
    """The `sub` claim of a GitLab ID token, in the format the facts give."""
    return str(load(FACTS)["sub"]["format"]).format(project_path=project, ref_type=ref_type, ref=ref)


def trust_policy(request: Request, provider_arn: str, role: Role) -> dict[str, Any]:
    """Who may assume `role`: tokens of the provider, for the audience, of one project's pipelines.

    Only `aud` and `sub` reach a trust policy (facts: aws.condition_keys), so the default branch
    is named in `sub`; a condition on `ref_protected` would match no token at all.
    """
    keys = load(FACTS)["aws"]["condition_keys"]
    assert {"aud", "sub"} <= set(keys), "the design needs both aud and sub as condition keys"
    aud, sub_key = f"{request.provider}:aud", f"{request.provider}:sub"
    if role.protected_ref:
        # guards G8: the exact `sub` of the default branch: no wildcard, and `ref_type:branch`, so
        # a tag named like the branch does not match
        condition = {
            "StringEquals": {aud: request.audience, sub_key: sub(request.project, "branch", request.default_branch)}
        }
    else:
        # Any branch of this project: the ref is the last field and git allows no `:` in it, so
        # `*` cannot reach another project or a tag. AWS cannot tell merge-request pipelines from
        # pushes; this role is read-only and staging-only for that reason (P1).
        condition = {
            "StringEquals": {aud: request.audience},
            "StringLike": {sub_key: sub(request.project, "branch", "*")},
        }
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitlabPipelines",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


def canonical(value: Any) -> Any:
    """A policy document in a form two equal documents share: key order, the order of list
    items, and one-item lists against plain values make no difference to IAM."""
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def _document(value: Any) -> dict[str, Any]:
    """IAM answers with a policy document URL-decoded into a dict by botocore, or as a string."""
    return value if isinstance(value, dict) else json.loads(urllib.parse.unquote(str(value)))


def _as_alias(key: str) -> str:
    """`key` as bootstrap's --kms-alias takes it: an alias as it is; for an ARN, where its alias goes."""
    return key if KMS_ALIAS.match(key) else f"<an alias of {key}>"


# --- the run ------------------------------------------------------------------------------------


class CiAccess:
    def __init__(
        self, session: boto3.Session, request: Request, fix: bool = False, gitlab: tuple[str, str] | None = None
    ) -> None:
        """`gitlab`: the GitLab API's URL and a token that may read the project, to check the branch."""
        self.request, self.fix, self.gitlab = request, fix, gitlab
        # IAM is global to a partition; the region picks the partition's endpoint (aws-cn, …).
        self.iam = session.client("iam", region_name=request.region)
        self.kms = session.client("kms", region_name=request.region)
        self.s3 = session.client("s3", region_name=request.region)
        self.sts = session.client("sts", region_name=request.region)
        # guards P9: ARNs name the region's partition
        self.partition = partition_of(request.region) or "aws"
        self.outcomes: list[Outcome] = []
        self.role_arns: dict[str, str] = {}
        self.caller = "the current AWS identity"

    def call(self, what: str, operation: Callable[..., Any], **kwargs: Any) -> Any:
        """One API call; access denied becomes a sentence that names the permission."""
        return call_naming_denials(what, operation, self.caller, CiAccessError, **kwargs)

    def note(self, item: str, state: str, detail: str) -> None:
        self.outcomes.append(Outcome(item, state, detail))

    def setting(self, item: str, is_set: bool, apply: Callable[[], Any], want: str) -> None:
        """Leave a right setting alone; change what exists but differs only with fix."""
        if is_set:
            self.note(item, "ok", want)
        elif self.fix:
            apply()
            self.note(item, "fixed", want)
        else:
            self.note(item, MISSING, f"wanted: {want}; run again with --fix")

    def run(self) -> list[Outcome]:
        identity = self.call("identifying the caller", self.sts.get_caller_identity)
        self.caller, account = identity["Arn"], identity["Account"]
        aws = self._scope(account)
        provider_arn = self._provider(aws)
        for role in ROLES:
            self._role(role, provider_arn, aws)
        self._protected_branch()
        return self.outcomes

    # --- what exists already: the state bucket and the keys ----------------------------------

    def _scope(self, account: str) -> Scope:
        request = self.request
        bucket_key = self._bucket_key(account)
        staging, prod = self._key_arn(request.staging_key), self._key_arn(request.prod_key)
        if staging is None or prod is None:
            raise CiAccessError(self._no_such_keys(staging, prod, bucket_key))
        if staging == prod:
            raise CiAccessError(
                f"--staging-kms-key {request.staging_key} and --prod-kms-key {request.prod_key} name the "
                f"same key {staging}: each stack needs its own, or merge requests could decrypt production's secrets"
            )
        return Scope(
            partition=self.partition,
            account=account,
            region=request.region,
            dns_suffix=aws_partition(request.region)[1],
            bucket=request.state_bucket,
            bucket_key=bucket_key,
            pulumi_project=request.pulumi_project,
            staging_stack=request.staging_stack,
            prod_stack=request.prod_stack,
            staging_key=staging,
            prod_key=prod,
        )

    def _key_arn(self, key: str) -> str | None:
        """The ARN of the key named by `key` (alias, ARN or id), or None where there is no such key."""
        try:
            return str(self.call(f"reading the key {key}", self.kms.describe_key, KeyId=key)["KeyMetadata"]["Arn"])
        except ClientError as error:
            if error_code(error) != "NotFoundException":
                raise
        return None

    def _no_such_keys(self, staging: str | None, prod: str | None, bucket_key: str | None) -> str:
        """Which stack keys are missing, and the `shipyard bootstrap` run that creates them."""
        request = self.request
        given = (("--staging-kms-key", request.staging_key, staging), ("--prod-kms-key", request.prod_key, prod))
        missing = [key for _, key, arn in given if arn is None]
        named = " and ".join(f"{flag} {key}" for flag, key, arn in given if arn is None)
        message = f"{named}: no such key{'s' if len(missing) > 1 else ''} in {request.region}"
        if not all(KMS_ALIAS.match(key) for key in missing):
            return message  # bootstrap creates a key by its alias; an ARN names a key that exists or never will
        # Bootstrap encrypts the bucket with the key of its first alias: the bucket's present key
        # comes first, so that the run creates the keys and leaves the bucket's encryption alone.
        first = self._alias_of(bucket_key) if bucket_key else _as_alias(request.staging_key)
        command = self._bootstrap(first, *(key for key in missing if key != first))
        return f"{message}; create {'it' if len(missing) == 1 else 'them'} with {command}"

    def _alias_of(self, arn: str) -> str:
        """An alias of the key `arn` that bootstrap's --kms-alias takes (none of AWS's own `alias/aws/…`):
        a stack's key if it is one."""
        stack_keys = (self.request.staging_key, self.request.prod_key)
        try:
            found = self.call("listing the aliases of the bucket's key", self.kms.list_aliases, KeyId=arn)
        except CiAccessError:  # not allowed to list them: the command shows where the alias goes
            return _as_alias(arn)
        names = [alias["AliasName"] for alias in found["Aliases"] if KMS_ALIAS.match(alias["AliasName"])]
        return next((name for name in names if name in stack_keys), names[0] if names else _as_alias(arn))

    def _bootstrap(self, *aliases: str, fix: bool = False) -> str:
        """The `shipyard bootstrap` command, to copy, that creates or checks the state bucket and the
        keys of these aliases; the first one's key encrypts the bucket."""
        request = self.request
        flags = "".join(f" --kms-alias {alias}" for alias in aliases) + (" --fix" if fix else "")
        return f"`.venv/bin/shipyard bootstrap --bucket {request.state_bucket} --region {request.region}{flags}`"

    def _bucket_key(self, account: str) -> str | None:
        request = self.request
        bucket = request.state_bucket
        try:
            self.s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
                # staging's key encrypts the bucket, as in the README's bootstrap run
                prod = [request.prod_key] if KMS_ALIAS.match(request.prod_key) else []
                command = self._bootstrap(_as_alias(request.staging_key), *prod)
                raise CiAccessError(f"--state-bucket {bucket}: no such bucket; create it with {command}") from None
            if error_code(error) in DENIED:
                raise CiAccessError(
                    f"--state-bucket {bucket}: the bucket belongs to another AWS account, or {self.caller} may not "
                    "read it (s3:ListBucket)"
                ) from None
            raise
        try:
            found = self.call("reading the state bucket's encryption", self.s3.get_bucket_encryption, Bucket=bucket)
        except ClientError as error:
            if error_code(error) == "ServerSideEncryptionConfigurationNotFoundError":
                return None
            raise
        for rule in found["ServerSideEncryptionConfiguration"]["Rules"]:
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            key = default.get("KMSMasterKeyID")
            if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and key:
                arn = self._key_arn(key)
                if arn is None:
                    raise CiAccessError(
                        f"--state-bucket {bucket}: its default encryption names the key {key}, which does not exist "
                        f"in {request.region}; {self._bootstrap(_as_alias(request.staging_key), fix=True)} sets it "
                        "to staging's key"
                    )
                return arn
        return None

    # --- the identity provider ------------------------------------------------------------------

    def _provider(self, aws: Scope) -> str:
        request = self.request
        arn = f"arn:{aws.partition}:iam::{aws.account}:oidc-provider/{request.provider}"
        item, want = f"oidc provider {request.provider}", f"accepts tokens for {request.audience}"
        try:
            found = self.call(
                "reading the OIDC provider", self.iam.get_open_id_connect_provider, OpenIDConnectProviderArn=arn
            )
        except ClientError as error:
            if error_code(error) != "NoSuchEntity":
                raise
            # No ThumbprintList: IAM fetches it itself, and checks GitLab's certificate against its
            # own trusted CAs anyway (facts: aws.thumbprint_needed).
            self.call(
                "creating the OIDC provider",
                self.iam.create_open_id_connect_provider,
                Url=f"https://{request.provider}",
                ClientIDList=[request.audience],
                Tags=[MANAGED_BY],
            )
            self.note(item, "created", f"{arn}, {want}")
            return arn
        # One provider per URL and account: one made by someone else is shared, never replaced.
        mine = MANAGED_BY in found.get("Tags", [])
        self.note(item, "ok", arn if mine else f"{arn} (created elsewhere; shared)")
        self.setting(
            f"audience {request.audience}",
            request.audience in found.get("ClientIDList", []),
            lambda: self.call(
                "adding the audience",
                self.iam.add_client_id_to_open_id_connect_provider,
                OpenIDConnectProviderArn=arn,
                ClientID=request.audience,
            ),
            f"the provider {want}",
        )
        return arn

    # --- the roles --------------------------------------------------------------------------------

    def _role(self, role: Role, provider_arn: str, aws: Scope) -> None:
        request = self.request
        name = role.name(request)
        trust = trust_policy(request, provider_arn, role)
        policy = permissions(role.suffix, aws)
        tags = [MANAGED_BY, {"Key": "gitlab-project", "Value": request.project}]
        try:
            found = self.call(f"reading the role {name}", self.iam.get_role, RoleName=name)["Role"]
            new = False
        except ClientError as error:
            if error_code(error) != "NoSuchEntity":
                raise
            found = self.call(
                f"creating the role {name}",
                self.iam.create_role,
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=f"shipyard CI: {role.purpose}"[:1000],
                MaxSessionDuration=SESSION_SECONDS,
                Tags=tags,
            )["Role"]
            new = True
        arn = str(found["Arn"])
        self.role_arns[role.suffix] = arn
        if new:
            # Trust, session length and tags came with the role; its permissions follow.
            self.call(
                f"setting the permissions of {name}",
                self.iam.put_role_policy,
                RoleName=name,
                PolicyName=POLICY_NAME,
                PolicyDocument=json.dumps(policy, separators=(",", ":")),
            )
            self.note(f"role {name}", "created", arn)
            self.note(f"{name} trust", "configured", role.who(request))
            self.note(f"{name} session", "configured", f"sessions of at most {SESSION_SECONDS // 60} minutes")
            self.note(f"{name} permissions", "configured", role.purpose)
            return
        if MANAGED_BY not in found.get("Tags", []):
            raise CiAccessError(
                f"role {name} exists but `shipyard ci-access` did not create it (no managed-by tag): "
                "choose another --role-prefix"
            )
        self.note(f"role {name}", "ok", arn)
        self.setting(
            f"{name} trust",
            canonical(_document(found["AssumeRolePolicyDocument"])) == canonical(trust),
            lambda: self.call(
                f"setting the trust of {name}",
                self.iam.update_assume_role_policy,
                RoleName=name,
                PolicyDocument=json.dumps(trust),
            ),
            role.who(request),
        )
        self.setting(
            f"{name} session",
            found.get("MaxSessionDuration") == SESSION_SECONDS,
            lambda: self.call(
                f"limiting the sessions of {name}",
                self.iam.update_role,
                RoleName=name,
                MaxSessionDuration=SESSION_SECONDS,
            ),
            f"sessions of at most {SESSION_SECONDS // 60} minutes",
        )
        self.setting(
            f"{name} permissions",
            self._inline_policy(name) == canonical(policy),
            lambda: self.call(
                f"setting the permissions of {name}",
                self.iam.put_role_policy,
                RoleName=name,
                PolicyName=POLICY_NAME,
                PolicyDocument=json.dumps(policy, separators=(",", ":")),
            ),
            role.purpose,
        )
        others = [
            p
            for p in self.call(f"listing the policies of {name}", self.iam.list_role_policies, RoleName=name)[
                "PolicyNames"
            ]
            if p != POLICY_NAME
        ]
        attached = self.call(
            f"listing the attached policies of {name}", self.iam.list_attached_role_policies, RoleName=name
        )["AttachedPolicies"]
        self.setting(
            f"{name} no other policies",
            not others and not attached,
            lambda: self._remove_others(name, others, attached),
            "no other inline or attached policy"
            + (f" (found {', '.join([*others, *(a['PolicyName'] for a in attached)])})" if others or attached else ""),
        )
        self.setting(
            f"{name} tags",
            all(tag in found.get("Tags", []) for tag in tags),
            lambda: self.call(f"tagging {name}", self.iam.tag_role, RoleName=name, Tags=tags),
            ", ".join(f"{t['Key']}={t['Value']}" for t in tags),
        )

    def _inline_policy(self, name: str) -> Any:
        try:
            found = self.call(
                f"reading the permissions of {name}", self.iam.get_role_policy, RoleName=name, PolicyName=POLICY_NAME
            )
        except ClientError as error:
            if error_code(error) == "NoSuchEntity":
                return None
            raise
        return canonical(_document(found["PolicyDocument"]))

    def _remove_others(self, name: str, inline: list[str], attached: list[dict[str, Any]]) -> None:
        for policy in inline:
            self.call(f"removing {policy} from {name}", self.iam.delete_role_policy, RoleName=name, PolicyName=policy)
        for managed in attached:
            self.call(
                f"detaching {managed['PolicyName']} from {name}",
                self.iam.detach_role_policy,
                RoleName=name,
                PolicyArn=managed["PolicyArn"],
            )

    # --- GitLab ---------------------------------------------------------------------------------

    def _protected_branch(self) -> None:
        """The protected roles trust the default branch by name: GitLab must protect it."""
        request = self.request
        item = f"gitlab: {request.default_branch} protected"
        if self.gitlab is None:
            self.note(item, UNCHECKED, "no GITLAB_TOKEN in the environment (a read_api token checks it)")
            return
        import gitlab

        url, token = self.gitlab
        try:
            project = gitlab.Gitlab(url=url, private_token=token, timeout=30).projects.get(request.project, lazy=True)
            branch = project.protectedbranches.get(request.default_branch)
        except gitlab.exceptions.GitlabGetError as error:
            if error.response_code == 404:
                self.note(
                    item,
                    UNPROTECTED,
                    f"{request.default_branch} is not a protected branch of {request.project} (or the token cannot "
                    "see the project): every role but preview trusts any pipeline of that branch",
                )
            else:
                self.note(item, UNCHECKED, f"GitLab at {url} answered {error.response_code}")
            return
        except (gitlab.exceptions.GitlabError, OSError) as error:
            self.note(item, UNCHECKED, f"cannot ask GitLab at {url}: {type(error).__name__}")
            return

        def who(levels: list[dict[str, Any]]) -> str:
            return ", ".join(str(level.get("access_level_description")) for level in levels) or "no one"

        self.note(
            item,
            "ok",
            f"push: {who(branch.push_access_levels)}; merge: {who(branch.merge_access_levels)}",
        )


# --- what to tell the user ------------------------------------------------------------------------


def summary(outcomes: list[Outcome], request: Request) -> tuple[list[str], int]:
    """The lines under the table, and the exit code."""
    states = [o.state for o in outcomes]
    lines = []
    if all(state in ("ok", UNCHECKED) for state in states):
        lines.append("nothing to change: the provider and the roles are as they should be")
    else:
        counts = {s: states.count(s) for s in ("created", "configured", "fixed", MISSING, UNPROTECTED) if s in states}
        lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    if MISSING in states:
        lines.append("settings are missing or differ: run again with --fix to set them")
    if UNPROTECTED in states:
        lines.append(
            f"protect {request.default_branch} in {request.project} (Settings > Repository > Protected branches), "
            "allowed to push and merge: Maintainers"
        )
    if UNCHECKED in states:
        lines.append(f"not checked: that GitLab protects {request.default_branch}; the protected roles rely on it")
    return lines, 1 if MISSING in states or UNPROTECTED in states else 0


def variables(role_arns: dict[str, str]) -> list[Variable]:
    """The CI/CD variables .gitlab-ci.yml reads, one per role; DEPLOY_AWS_ROLE_ARN once per
    environment. A role ARN is no secret (G8): nothing is masked, the trust policies protect."""
    return [
        Variable(
            role.variable,
            role_arns[role.suffix],
            "yes" if role.protected_ref else "no",
            role.environment,
        )
        for role in ROLES
    ]
