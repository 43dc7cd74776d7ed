"""shipyard's guardrails as plain validators over one resource (or one stack) at a time.

They run in three places: the policy pack (`policy/__main__.py`) during a real `pulumi preview` or
`pulumi up`, `shipyard policy check` over a plan document (the offline plan's or
`pulumi preview --json`'s), and the tests. Importing this module starts nothing (P3); the
`pulumi_policy` SDK is imported only when the pack is built.

Properties use the engine's camelCase input names, as all three places see them. A value that is
not known yet (a preview before the resource it comes from exists) stops a check without a
verdict; the real `pulumi up` runs it again with the value.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SECRET = "[secret]"  # how plan documents show a secret value
# How shipyard's review output (plan table and JSON, `plan diff`, the MR note) shows a value that
# `credentials` finds: the policies still judge it a credential stored in plain text.
REDACTED = "[redacted: looks like a credential]"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how the engine shows a string not known yet
# The engine's sentinels for values not known yet, one per kind (string, boolean, number, array,
# asset, archive, object), as plan documents carry them.
UNKNOWNS = frozenset(
    {
        UNKNOWN,
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
EBS_VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
ECR_SCANNING = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
IAM_ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
IAM_INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
KMS_KEY = "aws:kms/key:Key"
GITLAB_RUNNER = "gitlab:index/userRunner:UserRunner"
CI_VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
GITLAB_ENVIRONMENT = "gitlab:index/projectEnvironment:ProjectEnvironment"
HEROKU_APP = "heroku:app/app:App"
HEROKU_FEATURE = "heroku:app/feature:Feature"
HEROKU_PIPELINE = "heroku:pipeline/pipeline:Pipeline"
HEROKU_COUPLING = "heroku:pipeline/coupling:Coupling"

# Actions that take no resource ARN: `Resource: "*"` is the only way to grant them.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "sts:GetCallerIdentity",
        "inspector2:ListFindings",
        # A fleet runner reads its workers' group and instances: Auto Scaling and EC2 Describe* take no
        # resource (infra/facts/gitlab-runner-autoscaler.yaml, `iam`).
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeInstances",
        "ec2:DescribeSpotInstanceRequests",
    }
)
# The one ingress shipyard allows between security groups: the runner manager's SSH connections to
# its workers (docker-autoscaler, R15). Any other port or protocol from another group is refused.
SSH_INGRESS = ("tcp", 22, 22)
# Credentials by their shape: GitLab runner and personal tokens, Heroku keys, AWS access key ids.
TOKEN_SHAPES = re.compile(
    r"glrt-[A-Za-z0-9_-]{10,}|glpat-[A-Za-z0-9_-]{10,}|HRKU-[A-Za-z0-9_-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
)
CREDENTIAL_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^/:@\s]+:[^/@\s]+@")  # scheme://user:password@host
SECRET_NAME = re.compile(r"(?i)(api[_-]?key|token|secret|passw(or)?d|credential|private[_-]?key)")
HEROKU_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
USER_DATA_PATHS = (("userData",), ("userDataBase64",))
SSM_VALUES = ("value", "valueWo", "insecureValue")  # a parameter's value, write-only or not


class UnknownValue(Exception):
    """A value a check needs is not known until the deployment runs."""


@dataclass(frozen=True)
class Resource:
    """What a validator sees of one resource, wherever it runs."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    protect: bool = False
    parent: str = ""
    """The URN of the component (or stack) the resource belongs to; empty where it is not known."""


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    guards: str
    fix: str
    types: tuple[str, ...] = ()
    """The resource types `check` applies to; empty for a stack policy."""
    check: Callable[[Resource], Iterable[str]] | None = None
    check_stack: Callable[[Sequence[Resource]], Iterable[tuple[Resource, str]]] | None = None


@dataclass(frozen=True)
class Violation:
    policy: Policy
    resource: Resource
    message: str


def unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWNS


def is_list(value: Any) -> bool:
    # The policy SDK hands lists over as read-only Sequence proxies, not lists.
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def get(value: Any, *path: str | int) -> Any:
    """A nested property, None where it is absent; UnknownValue where it is not known yet."""
    for part in path:
        if isinstance(part, int):
            value = value[part] if is_list(value) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, Mapping) else None
        if unknown(value):
            raise UnknownValue(".".join(map(str, path)))
    return value


def items(value: Any) -> list[Any]:
    """A list property as a list: absent is empty."""
    if unknown(value):
        raise UnknownValue("a list")
    return list(value) if is_list(value) else []


def true(value: Any) -> bool:
    # Some AWS schema fields are strings ("true"), as the provider declares them.
    return value is True or value == "true"


def auto_named(resource: Resource, name: Any) -> bool:
    """The bridges' auto-name shape, `<logical name>-<7 hex>` (H2)."""
    return isinstance(name, str) and re.fullmatch(re.escape(resource.name) + r"-[0-9a-f]{7}", name) is not None


# --- credentials in plain text --------------------------------------------------------------------


def secret_name(name: Any) -> bool:
    """A key, variable or parameter name that says its value is a secret (`API_TOKEN`, `DB_PASSWORD`)."""
    return isinstance(name, str) and SECRET_NAME.search(name) is not None


@dataclass(frozen=True)
class Credential:
    """A credential in plain text among a resource's values, as the policies find it."""

    path: tuple[str | int, ...]
    """Where it is: `("configVars", "API_TOKEN")`, `("userData",)`, `("policy",)`."""
    found: str
    """The credential: the whole value, or the part of a longer text that holds it."""
    by_name: bool = False
    """A secret by the name it is stored under, whatever the value looks like."""
    whole: bool = True
    """The whole value counts as the credential; otherwise only `found` within a text that stays readable."""

    @property
    def hint(self) -> str:
        """Enough to tell the kind of credential (`glrt-…`), never the credential itself."""
        return "redacted in this document" if REDACTED in self.found else f"{self.found[:5]}…"


def _named_secret_paths(resource: Resource) -> set[tuple[str | int, ...]]:
    """The values that are secrets by the name they are stored under."""
    props = resource.props
    if resource.type == HEROKU_APP:
        config = props.get("configVars")
        return {("configVars", key) for key in config if secret_name(key)} if isinstance(config, Mapping) else set()
    if resource.type == CI_VARIABLE and secret_name(props.get("key")):
        return {("value",)}
    if resource.type == SSM_PARAMETER and secret_name(props.get("name")):
        return {(key,) for key in SSM_VALUES}
    return set()


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif is_list(value):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _user_data_text(raw: str) -> str:
    """User data as the host reads it: base64 (and gzip) decoded where it is encoded."""
    try:
        data = base64.b64decode(raw, validate=True)
        return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode(errors="replace")
    except (binascii.Error, ValueError, OSError, EOFError):
        return raw  # not base64 (an instance's plain user data): scan it as it is


def _shapes(text: str) -> list[str]:
    """The credentials a text holds by their shape: tokens and AWS key ids, a URL's user and
    password, or one already redacted."""
    found = [match.group(0) for match in TOKEN_SHAPES.finditer(text)]
    url = CREDENTIAL_URL.match(text)
    return found + ([url.group(0)] if url else []) + ([REDACTED] if REDACTED in text else [])


def credentials(resource: Resource) -> Iterator[Credential]:
    """Every credential stored in plain text among a resource's values (its inputs, or its outputs):
    the values of secret-looking names (Heroku config vars, CI/CD variables, SSM parameters),
    and every string shaped like a token, an AWS key id or a URL with a password, in user data
    once decoded. A value shown as "[secret]" is none; one already REDACTED still is.

    The policies judge the places where plain text is a mistake (config vars, user data,
    parameters, CI/CD variables); the review output hides every one found anywhere, since under the
    real pack a decrypted secret elsewhere is no violation but must not be shown either."""
    named = _named_secret_paths(resource)
    for path, value in _leaves(resource.props):
        if value == SECRET:
            continue
        if path in named:
            yield Credential(path, str(value), by_name=True)
        elif isinstance(value, str) and not unknown(value):
            user_data = path in USER_DATA_PATHS
            text = _user_data_text(value) if user_data else value
            # A config var or the user data is judged as a whole; elsewhere (an IAM policy document)
            # only the credential goes, so the rest can still be read and judged.
            whole = user_data or (resource.type == HEROKU_APP and path[0] == "configVars")
            for found in _shapes(text):
                yield Credential(path, found, whole=whole or found == value)


# --- the runner host ----------------------------------------------------------------------------


def imdsv2_required(resource: Resource) -> Iterator[str]:
    tokens = get(resource.props, "metadataOptions", "httpTokens")
    if tokens != "required":
        yield f"the instance metadata service accepts IMDSv1 (metadataOptions.httpTokens is {tokens!r})"


def ebs_encrypted(resource: Resource) -> Iterator[str]:
    props = resource.props
    if resource.type == LAUNCH_TEMPLATE:
        mappings = [m for m in items(get(props, "blockDeviceMappings")) if get(m, "ebs") is not None]
        if not mappings:
            yield "no EBS block device mapping: the root volume is whatever the AMI says, unencrypted by default"
        for m in mappings:
            if not true(get(m, "ebs", "encrypted")):
                yield f"the EBS volume on {get(m, 'deviceName')} is not encrypted"
    elif resource.type == INSTANCE:
        if not true(get(props, "rootBlockDevice", "encrypted")):
            yield "the root volume is not encrypted"
        for device in items(get(props, "ebsBlockDevices")):
            if not true(get(device, "encrypted")):
                yield f"the EBS volume on {get(device, 'deviceName')} is not encrypted"
    elif not true(get(props, "encrypted")):
        yield "the EBS volume is not encrypted"


def _open(cidrs: Iterable[Any]) -> list[str]:
    """Every address range a rule admits: shipyard's hosts take no traffic from any range at all
    (Session Manager reaches the hosts; a fleet's workers take SSH from their manager's group only)."""
    return [str(c) for c in cidrs if c]


def _from_groups(rule: Any, protocol_key: str, groups: list[Any]) -> Iterator[str]:
    """Ingress from other security groups: SSH only (SSH_INGRESS)."""
    protocol, low, high = get(rule, protocol_key), get(rule, "fromPort"), get(rule, "toPort")
    if groups and (str(protocol).lower(), low, high) != SSH_INGRESS:
        for group in groups:
            yield (
                f"ingress from security group {group} on {protocol} ports {low}-{high}: between security groups "
                "only SSH (tcp 22) from the runner manager to its workers is allowed"
            )


def no_open_ingress(resource: Resource) -> Iterator[str]:
    props = resource.props
    if resource.type == SECURITY_GROUP:
        for rule in items(get(props, "ingress")):
            for cidr in _open([*items(get(rule, "cidrBlocks")), *items(get(rule, "ipv6CidrBlocks"))]):
                yield f"ingress from {cidr} on ports {get(rule, 'fromPort')}-{get(rule, 'toPort')}"
            groups = [*items(get(rule, "securityGroups")), *(["itself"] if true(get(rule, "self")) else [])]
            yield from _from_groups(rule, "protocol", groups)
    elif resource.type == SECURITY_GROUP_RULE:
        if get(props, "type") == "ingress":
            for cidr in _open([*items(get(props, "cidrBlocks")), *items(get(props, "ipv6CidrBlocks"))]):
                yield f"ingress from {cidr} on ports {get(props, 'fromPort')}-{get(props, 'toPort')}"
            source = get(props, "sourceSecurityGroupId")
            groups = [*([source] if source else []), *(["itself"] if true(get(props, "self")) else [])]
            yield from _from_groups(props, "protocol", groups)
    else:
        for cidr in _open([get(props, "cidrIpv4"), get(props, "cidrIpv6")]):
            yield f"ingress from {cidr} on ports {get(props, 'fromPort')}-{get(props, 'toPort')}"
        referenced = get(props, "referencedSecurityGroupId")
        yield from _from_groups(props, "ipProtocol", [referenced] if referenced else [])


def _holds_credential(resource: Resource, *keys: str) -> bool:
    return any(c.path in [(key,) for key in keys] for c in credentials(resource))


def secret_parameter_is_secure_string(resource: Resource) -> Iterator[str]:
    name, kind = get(resource.props, "name"), get(resource.props, "type")
    secret = get(resource.props, "value") == SECRET or secret_name(name) or _holds_credential(resource, *SSM_VALUES)
    if secret and kind != "SecureString":
        yield f"parameter {name} holds a secret but is a {kind}, readable without decryption"


def _statements(document: Any) -> list[Mapping[str, Any]]:
    if document is None or document == SECRET:
        return []
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    statements = get(document, "Statement")
    statements = [statements] if isinstance(statements, Mapping) else statements
    return [s for s in statements or [] if isinstance(s, Mapping)]


def _as_list(value: Any) -> list[Any]:
    return list(value) if is_list(value) else [value] if value is not None else []


def iam_least_privilege(resource: Resource) -> Iterator[str]:
    props = resource.props
    documents = [get(props, "policy")] if resource.type != IAM_ROLE else [
        get(p, "policy") for p in items(get(props, "inlinePolicies"))
    ]  # fmt: skip
    for document in documents:
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid") or "a statement"
            actions = [str(a) for a in _as_list(statement.get("Action"))]
            if "NotAction" in statement or any(a == "*" or a.endswith(":*") for a in actions):
                yield f"{sid} allows every action ({', '.join(actions) or 'NotAction'})"
                continue
            if "*" in _as_list(statement.get("Resource")) or "NotResource" in statement:
                scopable = sorted(set(actions) - UNSCOPABLE_ACTIONS)
                if scopable:
                    yield f'{sid} allows {", ".join(scopable)} on every resource (`Resource: "*"`)'


def no_token_in_user_data(resource: Resource) -> Iterator[str]:
    raw = get(resource.props, "userData") or get(resource.props, "userDataBase64")
    if raw is None:
        return
    if raw == SECRET:
        yield "the user data is a secret value: something secret flowed into it"
        return
    for credential in credentials(resource):
        if credential.path in USER_DATA_PATHS:
            yield f"the user data holds a credential ({credential.hint})"


# --- the registry -------------------------------------------------------------------------------


# Scan frequencies that scan what is pushed, per registry scan type: BASIC supports SCAN_ON_PUSH,
# ENHANCED SCAN_ON_PUSH and CONTINUOUS_SCAN; MANUAL scans nothing by itself
# (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_RegistryScanningRule.html).
PUSH_SCANNING = {"BASIC": {"SCAN_ON_PUSH"}, "ENHANCED": {"SCAN_ON_PUSH", "CONTINUOUS_SCAN"}}


def repository_filter_matches(pattern: str, repository: str) -> bool:
    """A scanning filter as ECR applies it: without a wildcard it matches every repository name that
    contains it; with `*` wildcards, each standing for zero or more characters, the whole name
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-enhanced-enabling.html)."""
    if "*" not in pattern:
        return pattern in repository
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), repository) is not None


def registry_scans(scan_type: Any, rules: Any, repository: str) -> bool:
    """Whether a registry scanning configuration (the provider's inputs or the ECR API's answer: both
    camelCase) scans the images pushed to a repository."""
    frequencies = PUSH_SCANNING.get(str(scan_type), set())
    return any(
        get(rule, "scanFrequency") in frequencies
        and any(
            repository_filter_matches(str(get(f, "filter")), repository) for f in items(get(rule, "repositoryFilters"))
        )
        for rule in items(rules)
    )


def ecr_scan_on_push(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    # The repository's own scanOnPush is deprecated (PutImageScanningConfiguration, R21): only the
    # registry-level configuration in the same plan counts.
    configurations = [r for r in resources if r.type == ECR_SCANNING]
    for repository in (r for r in resources if r.type == ECR_REPOSITORY):
        name = get(repository.props, "name")
        if not any(registry_scans(get(c.props, "scanType"), get(c.props, "rules"), str(name)) for c in configurations):
            yield repository, f"no registry scanning configuration scans the images pushed to repository {name}"


def ecr_lifecycle(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    covered = {get(r.props, "repository") for r in resources if r.type == ECR_LIFECYCLE}
    for repository in (r for r in resources if r.type == ECR_REPOSITORY):
        if get(repository.props, "name") not in covered:
            yield repository, f"repository {get(repository.props, 'name')} has no lifecycle policy: images pile up"


# --- GitLab -------------------------------------------------------------------------------------


def ci_secrets_masked(resource: Resource) -> Iterator[str]:
    key, scope = get(resource.props, "key"), get(resource.props, "environmentScope")
    # A secret by its name, or by its value: a Pulumi secret (DATABASE_URL) or a token shows in job logs too.
    secret = secret_name(key) or get(resource.props, "value") == SECRET or _holds_credential(resource, "value")
    if not isinstance(key, str) or not secret:
        return
    if not true(get(resource.props, "masked")):
        yield f"{key} ({scope}) is not masked: it shows in job logs"
    if scope == "production" and not true(get(resource.props, "protected")):
        yield f"{key} of production is not protected: merge-request pipelines receive it"


# --- Heroku -------------------------------------------------------------------------------------


def heroku_secrets_sensitive(resource: Resource) -> Iterator[str]:
    found: dict[Any, Credential] = {}
    for credential in credentials(resource):
        if len(credential.path) == 2 and credential.path[0] == "configVars":
            found.setdefault(credential.path[1], credential)
    for key, value in sorted((get(resource.props, "configVars") or {}).items()):
        plain = found.get(key)
        if value == SECRET:
            yield f"config var {key} holds a secret value in the plain `config_vars`"
        elif plain is None:
            continue
        elif plain.by_name:
            yield f"config var {key} looks like a secret and is stored in plain text"
        elif REDACTED in plain.found:
            yield f"config var {key} holds a credential in plain text (redacted in this document)"
        else:
            yield f"config var {key} holds a credential in plain text"


def heroku_container_app(resource: Resource) -> Iterator[str]:
    name, stack = get(resource.props, "name"), get(resource.props, "stack")
    if stack != "container":
        yield f"app {name} runs on stack {stack!r}, not `container`: the image releases cannot reach it"
    if not isinstance(name, str) or auto_named(resource, name):
        yield f"app has no explicit name ({name!r}): Heroku names are global and the bridge invents one"
    elif not HEROKU_APP_NAME.match(name):
        yield f"app name {name!r} breaks Heroku's rule: 3 to 30 lowercase letters, digits and dashes"


def explicit_names(resource: Resource) -> Iterator[str]:
    name = get(resource.props, "name")
    if name is None or auto_named(resource, name):
        yield f"{resource.type.rsplit(':', 1)[-1]} {resource.name} has no explicit name ({name!r})"


# --- who may write release images (G11) ---------------------------------------------------------

# ECR's push API, in the order a push calls it: each one writes into the repository.
ECR_PUSH_ACTIONS = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")
SIGN_ACTION = "kms:Sign"
# The repository tag that marks what a repository holds (infra/components/registry.py, IMAGES_TAG).
IMAGES_TAG = "shipyard:images"
REVIEW_IMAGES = "review"
PROTECTED_ACCESS_LEVEL = "ref_protected"
# AWS managed policies that allow pushing to every repository (and, the first two, signing with every
# key): AWS Managed Policy Reference Guide.
PUSHING_MANAGED_POLICIES = frozenset(
    {
        "AdministratorAccess",
        "PowerUserAccess",
        "AmazonEC2ContainerRegistryFullAccess",
        "AmazonEC2ContainerRegistryPowerUser",
    }
)
ECR_REPOSITORY_ARN = re.compile(r"^arn:[^:]+:ecr:[^:]*:[^:]*:repository/(.+)$")


def _action_matches(pattern: str, action: str) -> bool:
    """IAM action matching: case-insensitive, `*` and `?` as wildcards."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, action.lower()) is not None


def _allowed(statement: Mapping[str, Any], actions: Sequence[str]) -> list[str]:
    """Which of `actions` an Allow statement grants, by `Action` or by `NotAction`."""
    if statement.get("Effect") != "Allow":
        return []
    if "NotAction" in statement:
        excluded = [str(a) for a in _as_list(statement.get("NotAction"))]
        return [a for a in actions if not any(_action_matches(p, a) for p in excluded)]
    granted = [str(a) for a in _as_list(statement.get("Action"))]
    return [a for a in actions if any(_action_matches(p, a) for p in granted)]


def _groups(resources: Sequence[Resource]) -> dict[str, list[Resource]]:
    """Resources by the runner component they belong to, the children of its own components (a fleet
    runner's workers) among them. Where a document or pack does not say (no parent), by shipyard's
    naming instead: a component's children are named after it (`runner`, `runner-role`,
    `runner-workers-role`)."""
    runner_names = sorted({r.name for r in resources if r.type == GITLAB_RUNNER}, key=len, reverse=True)
    runner_components = {r.parent for r in resources if r.type == GITLAB_RUNNER and r.parent}
    parents = {r.urn: r.parent for r in resources}

    def by_name(name: str) -> str:
        return next((n for n in runner_names if name == n or name.startswith(f"{n}-")), "")

    def component(resource: Resource) -> str:
        if not resource.parent:
            return by_name(resource.name)
        # Up through the components in the document to the runner's; a parent the document does not
        # hold (the pack passes only some) is the runner's when it is named after the runner.
        parent, seen = resource.parent, set()
        while parent not in runner_components and parent in parents and parent not in seen:
            seen.add(parent)
            parent = parents[parent] or parent
        if parent in runner_components:
            return parent
        runner = by_name(resource.parent.rsplit("::", 1)[-1])
        return next((c for c in runner_components if c.rsplit("::", 1)[-1] == runner), resource.parent)

    groups: dict[str, list[Resource]] = {}
    for resource in resources:
        groups.setdefault(component(resource), []).append(resource)
    return groups


def _role_documents(group: Sequence[Resource]) -> Iterator[tuple[Resource, Any]]:
    for resource in group:
        if resource.type in (IAM_ROLE_POLICY, IAM_POLICY):
            yield resource, get(resource.props, "policy")
        elif resource.type == IAM_ROLE:
            for inline in items(get(resource.props, "inlinePolicies")):
                yield resource, get(inline, "policy")


def _principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    return [str(p) for p in _as_list(get(principal, "AWS"))] if isinstance(principal, Mapping) else []


def _unprotected(runner: Resource) -> str:
    return f"runner {runner.name} takes jobs of unprotected refs (accessLevel {get(runner.props, 'accessLevel')})"


def _unprotected_runners(resources: Sequence[Resource]) -> list[tuple[Resource, list[Resource]]]:
    """Each runner that takes jobs of unprotected refs (merge requests among them), with the resources
    of its component: its role, the role's policies, the instance profile."""
    found = []
    for group in _groups(resources).values():
        for runner in (r for r in group if r.type == GITLAB_RUNNER):
            if get(runner.props, "accessLevel") != PROTECTED_ACCESS_LEVEL:
                found.append((runner, group))
    return found


def _role_findings(runner: Resource, group: Sequence[Resource], review: set[Any]) -> Iterator[tuple[Resource, str]]:
    who = _unprotected(runner)
    for resource in group:
        if resource.type == IAM_ROLE_POLICY_ATTACHMENT:
            managed = str(get(resource.props, "policyArn")).rsplit("/", 1)[-1]
            if managed in PUSHING_MANAGED_POLICIES:
                yield resource, f"{who}, but its role has {managed}, which may push to every repository"
    for resource, document in _role_documents(group):
        for statement in _statements(document):
            sid = statement.get("Sid") or "a statement"
            targets = ["*"] if "NotResource" in statement else [str(t) for t in _as_list(statement.get("Resource"))]
            pushes = _allowed(statement, ECR_PUSH_ACTIONS)
            elsewhere = [t for t in targets if not _is_review_repository(t, review)]
            if pushes and elsewhere:
                where = ", ".join(elsewhere)
                yield (
                    resource,
                    (
                        f"{who}, but its role may push ({', '.join(pushes)}) to {where} ({sid}): "
                        "only review repositories take its images"
                    ),
                )
            if _allowed(statement, (SIGN_ACTION,)):
                yield resource, f"{who}, but its role may sign with KMS ({sid})"


def _key_findings(resources: Sequence[Resource], refused: Mapping[str, Resource]) -> Iterator[tuple[Resource, str]]:
    """Key policies that let anyone, or the role (by name) of a runner in `refused`, sign."""
    for key in (r for r in resources if r.type == KMS_KEY):
        for statement in _statements(get(key.props, "policy")):
            if not _allowed(statement, (SIGN_ACTION,)):
                continue
            sid = statement.get("Sid") or "a statement"
            for principal in ["*"] if "NotPrincipal" in statement else _principals(statement):
                runner = refused.get(principal.rsplit("/", 1)[-1])
                if principal == "*":
                    yield key, f"KMS key {key.name} lets any principal sign ({sid})"
                elif runner is not None:
                    level = get(runner.props, "accessLevel")
                    yield (
                        key,
                        (
                            f"KMS key {key.name} lets the role of runner {runner.name} sign ({sid}), a runner that "
                            f"takes jobs of unprotected refs (accessLevel {level})"
                        ),
                    )


def release_push_protected_only(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    """Whoever can push a tag a protected pipeline releases decides what production runs (G11): a
    runner that also takes merge-request jobs may push only to repositories marked for review images,
    and neither its roles' policies (its host's, and in fleet mode its workers', where the jobs run)
    nor any key policy may let it sign. Fails closed: a repository
    without the review mark counts as a release repository, a wildcard as every repository."""
    review = {
        get(r.props, "name")
        for r in resources
        if r.type == ECR_REPOSITORY and get(r.props, "tags", IMAGES_TAG) == REVIEW_IMAGES
    }
    refused: dict[str, Resource] = {}  # role name → the unprotected runner whose role it is
    for runner, group in _unprotected_runners(resources):
        yield from _role_findings(runner, group, review)
        for resource in group:
            role = get(resource.props, "role") if resource.type in (IAM_ROLE_POLICY, IAM_INSTANCE_PROFILE) else None
            if isinstance(role, str):
                refused[role] = runner
    yield from _key_findings(resources, refused)


def _is_review_repository(arn: str, review: set[Any]) -> bool:
    found = ECR_REPOSITORY_ARN.match(arn)
    return found is not None and found.group(1) in review


def production_protected(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    production = any(
        (r.type == GITLAB_ENVIRONMENT and get(r.props, "tier") == "production")
        or (r.type == HEROKU_COUPLING and get(r.props, "stage") == "production")
        for r in resources
    )
    if production:
        for app in (r for r in resources if r.type == HEROKU_APP and not r.protect):
            yield app, f"production app {get(app.props, 'name')} is not protected"


POLICIES: tuple[Policy, ...] = (
    Policy(
        "imdsv2-required",
        "Runner hosts require IMDSv2 session tokens for the instance metadata service.",
        "R6",
        "set metadata_options http_tokens='required' (hop limit 2 for jobs in containers)",
        (LAUNCH_TEMPLATE, INSTANCE),
        check=imdsv2_required,
    ),
    Policy(
        "ebs-encrypted",
        "Every EBS volume of a runner host is encrypted.",
        "R14",
        "set encrypted='true' on the block device mapping of the AMI's root device",
        (LAUNCH_TEMPLATE, INSTANCE, EBS_VOLUME),
        check=ebs_encrypted,
    ),
    Policy(
        "no-ingress-from-anywhere",
        "No security group takes traffic from an address range (any CIDR, 0.0.0.0/0 and ::/0 included); between "
        "security groups only SSH (tcp 22), the runner manager's to its workers.",
        "R13, R15",
        "remove the ingress rule; reach hosts with Session Manager",
        (SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE),
        check=no_open_ingress,
    ),
    Policy(
        "secret-parameter-is-secure-string",
        "SSM parameters that hold a token or key, like the runner token, are SecureStrings.",
        "R1",
        "create the parameter with type='SecureString'",
        (SSM_PARAMETER,),
        check=secret_parameter_is_secure_string,
    ),
    Policy(
        "iam-least-privilege",
        'No IAM statement allows every action; `Resource: "*"` only for actions that take no ARN.',
        "R1, R7",
        "name the actions and the ARNs they act on",
        (IAM_ROLE, IAM_ROLE_POLICY, IAM_POLICY),
        check=iam_least_privilege,
    ),
    Policy(
        "no-credential-in-user-data",
        "Launch-template and instance user data hold no token-shaped string (glrt-, glpat-, HRKU-, AWS key ids).",
        "R1",
        "pass the name of an SSM SecureString and read it at boot",
        (LAUNCH_TEMPLATE, INSTANCE),
        check=no_token_in_user_data,
    ),
    Policy(
        "ecr-scan-on-push",
        "Every ECR repository's pushed images are scanned by the registry-level scanning configuration.",
        "R21",
        "add an aws.ecr.RegistryScanningConfiguration whose rule (BASIC: SCAN_ON_PUSH; ENHANCED: SCAN_ON_PUSH "
        "or CONTINUOUS_SCAN) has a repository filter matching the repository (shipyard:registry.scanning)",
        check_stack=ecr_scan_on_push,
    ),
    Policy(
        "ecr-lifecycle-policy",
        "Every ECR repository has a lifecycle policy.",
        "the registry lifecycle (README)",
        "add an aws.ecr.LifecyclePolicy for the repository",
        check_stack=ecr_lifecycle,
    ),
    Policy(
        "ci-secrets-masked",
        "CI/CD variables that carry a key, a token (HEROKU_API_KEY) or a secret value are masked, and protected "
        "in production.",
        "G1, G2, G4",
        "create the variable with masked=True (and protected=True for production)",
        (CI_VARIABLE,),
        check=ci_secrets_masked,
    ),
    Policy(
        "heroku-secrets-sensitive",
        "Heroku secrets live only in sensitive_config_vars, never in the plain config_vars.",
        "H5",
        "move the var to shipyard:herokuSensitiveConfigVars (set with --secret)",
        (HEROKU_APP,),
        check=heroku_secrets_sensitive,
    ),
    Policy(
        "heroku-container-app",
        "Heroku apps run on the container stack and have explicit, valid names.",
        "H1, H2",
        "set stack='container' and an explicit name (shipyard:heroku.app)",
        (HEROKU_APP,),
        check=heroku_container_app,
    ),
    Policy(
        "explicit-names",
        "Names the outside world sees are explicit, never invented by the provider bridge.",
        "H2, G7",
        "pass name= explicitly",
        (HEROKU_FEATURE, HEROKU_PIPELINE, GITLAB_ENVIRONMENT, ECR_REPOSITORY),
        check=explicit_names,
    ),
    Policy(
        "release-push-protected-only",
        "No GitLab runner that takes jobs of unprotected refs (merge requests among them) has a role, its host's "
        "or in fleet mode its workers', that may push to a repository other than a review repository, or sign "
        "with a KMS key.",
        "G11, G8",
        "run merge-request builds on shipyard:reviewRunner, whose role pushes to the review repository only "
        "(tagged shipyard:images=review); keep shipyard:runner protectedOnly; let only the release build "
        "runner's role sign",
        check_stack=release_push_protected_only,
    ),
    Policy(
        "production-protected",
        "Production's Heroku apps are protected against deletion and replacement.",
        "H4, P11",
        "create the app with ResourceOptions(protect=True)",
        check_stack=production_protected,
    ),
)


def check(resources: Sequence[Resource], policies: Sequence[Policy] = POLICIES) -> tuple[list[Violation], int]:
    """Every violation of `policies` among `resources`, and how many checks waited on unknown values."""
    violations: list[Violation] = []
    unknown = 0
    for policy in policies:
        targets: list[Resource | None] = [None] if policy.check_stack is not None else []
        targets += [r for r in resources if policy.check is not None and r.type in policy.types]
        for target in targets:
            try:
                if target is None and policy.check_stack is not None:
                    found = list(policy.check_stack(resources))
                elif target is not None and policy.check is not None:
                    found = [(target, message) for message in policy.check(target)]
            except UnknownValue:
                unknown += 1
                continue
            violations += [Violation(policy, resource, message) for resource, message in found]
    return violations, unknown


# Steps after which a resource is no longer in the stack.
GONE_OPS = frozenset({"delete", "delete-replaced", "discard", "discard-replaced", "remove-pending-replace"})


def resources_of_plan(doc: Mapping[str, Any]) -> list[Resource]:
    """The resources a plan document (offline plan or `pulumi preview --json`) leaves in the stack."""
    found: dict[str, Resource] = {}
    for step in doc.get("steps", []):
        state = step.get("newState")
        if step.get("op") in GONE_OPS or not isinstance(state, Mapping) or step["urn"] in found:
            continue
        found[step["urn"]] = Resource(
            type=state.get("type", ""),
            name=step["urn"].rsplit("::", 1)[-1],
            urn=step["urn"],
            props=state.get("inputs") or {},
            protect=bool(state.get("protect")),
            parent=str(state.get("parent") or ""),
        )
    return list(found.values())


# --- the pack -------------------------------------------------------------------------------------


def _from_sdk(resource: Any) -> Resource:
    # The parent's URN is in the options; a stack policy's resources also link their parent's object.
    parent = resource.opts.parent or getattr(getattr(resource, "parent", None), "urn", None) or ""
    return Resource(
        resource.resource_type, resource.name, resource.urn, resource.props, bool(resource.opts.protect), parent
    )


def pack_policies(policies: Sequence[Policy] = POLICIES) -> list[Any]:
    """The policies as the Pulumi policy SDK's objects, every one MANDATORY."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    def resource_validator(policy: Policy) -> Callable[[Any, Any], None]:
        def validate(args: Any, report_violation: Any) -> None:
            if args.resource_type in policy.types and policy.check is not None:
                for message in policy.check(_from_sdk(args)):
                    report_violation(f"{message}. Fix: {policy.fix} ({policy.guards}).", None)

        return validate

    def stack_validator(policy: Policy) -> Callable[[Any, Any], None]:
        def validate(args: Any, report_violation: Any) -> None:
            assert policy.check_stack is not None
            for resource, message in policy.check_stack([_from_sdk(r) for r in args.resources]):
                report_violation(f"{message}. Fix: {policy.fix} ({policy.guards}).", resource.urn)

        return validate

    built: list[Any] = []
    for policy in policies:
        description = f"{policy.description} Guards {policy.guards}."
        mandatory = EnforcementLevel.MANDATORY
        if policy.check is not None:
            built.append(
                ResourceValidationPolicy(
                    policy.name, description, resource_validator(policy), mandatory, remediation_steps=policy.fix
                )
            )
        else:
            built.append(
                StackValidationPolicy(
                    policy.name, description, stack_validator(policy), mandatory, remediation_steps=policy.fix
                )
            )
    return built
