"""shipyard's guardrails as plain validators over one resource (or one stack) at a time.

They run in three places: the policy pack (`policy/__main__.py`) during a real `pulumi preview` or
`pulumi up`, `shipyard policy check` over a plan document (the offline plan's or
`pulumi preview --json`'s), and the tests. Importing this module starts nothing (P3); the
`pulumi_policy` SDK is imported only when the pack is built.

Properties use the engine's camelCase input names, as all three places see them.

Values not known yet. A preview does not know the outputs of resources it has not created (a new
role's ARN, a document built from one): plan documents carry the engine's sentinel strings
(UNKNOWNS) in their place, and the policy SDK hands the pack proxies that raise its
UnknownValueError when one is read (pulumi_policy 1.21.0, proxy.py `unknown_checking_proxy`), which
the SDK turns into an ADVISORY "can't run policy during preview" note: the whole check passes. The
pack therefore unwraps the proxies (`_plain`), so both places see the same sentinels, and every
check judges one part at a time (a resource, a rule, a statement): what is known is judged, and only
the part that is not known waits (`Waits`, counted by `check`). A per-resource check that waits is
run again by `pulumi up` before the resource is created, with the value known. Stack checks run
after the preview and again at the end of `pulumi up`, on the outputs of what it created: there a
violation fails the update, but only once the resources exist. So the stack check that guards who
may push release images (G11) waits in the preview where a value that could grant a push or a
signature is not known yet, names it in the advisory note, and leaves the judgement before anything
is created to the offline plan (`shipyard plan`), which knows every value (`release_push_protected_only`).
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

    def __init__(self, path: str, sentinel: str = UNKNOWN) -> None:
        super().__init__(path)
        self.path = path
        self.sentinel = sentinel
        """The engine's sentinel for the value's kind: the pack passes it on to the SDK."""


class Waits(str):
    """A check's message that it cannot judge one part (a rule, a statement, a repository) because
    a value is not known yet. `check` counts it instead of reporting a violation; the pack tells the
    SDK, which shows it as an advisory note. The rest of the check still judges what is known."""


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


def holds_unknown(value: Any) -> bool:
    """The value is not known, or holds a part (an element, a nested value) that is not."""
    return any(unknown(leaf) for _, leaf in _leaves(value))


def _plain(value: Any) -> Any:
    """A value as the policy SDK hands it (read-only proxies that raise on an unknown element), as
    plain dicts and lists that show unknowns as the engine's sentinels, as plan documents do. The
    proxies keep their contents under the key `__target`, which the SDK itself reads to pass
    unknowns through (pulumi_policy 1.21.0, deserialize.py `_serialize_property`)."""
    if type(value).__module__ == "pulumi_policy.proxy":
        value = value["__target"]
    if isinstance(value, Mapping):
        return {key: _plain(value[key]) for key in value}
    if is_list(value):
        return [_plain(value[index]) for index in range(len(value))]
    return value


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
            raise UnknownValue(".".join(map(str, path)), value)
    return value


def items(value: Any) -> list[Any]:
    """A list property as a list: absent is empty; UnknownValue where the list or an element is not
    known yet."""
    if unknown(value) or (is_list(value) and any(unknown(v) for v in value)):
        raise UnknownValue("a list", value if unknown(value) else UNKNOWN)
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


def _group_rule(rule: Any) -> list[str]:
    """One inline ingress rule of a security group, judged on its own."""
    found = []
    for cidr in _open([*items(get(rule, "cidrBlocks")), *items(get(rule, "ipv6CidrBlocks"))]):
        found.append(f"ingress from {cidr} on ports {get(rule, 'fromPort')}-{get(rule, 'toPort')}")
    groups = [*items(get(rule, "securityGroups")), *(["itself"] if true(get(rule, "self")) else [])]
    return found + list(_from_groups(rule, "protocol", groups))


def no_open_ingress(resource: Resource) -> Iterator[str]:
    """Each rule on its own: a rule that names a group not created yet (the manager's, in a fleet's
    first preview) waits, and an open rule beside it is still reported."""
    props = resource.props
    if resource.type == SECURITY_GROUP:
        for index, rule in enumerate(items(get(props, "ingress"))):
            try:
                yield from _group_rule(rule)
            except UnknownValue as exc:
                yield Waits(f"ingress rule {index}: {exc.path} is not known yet")
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
    """The statements of a known document (a JSON string or an object), as mappings; a statement
    not known yet stays its sentinel string, for the caller to judge. UnknownValue where the
    document or its list of statements is not known."""
    if document is None or document == SECRET:
        return []
    if unknown(document):
        raise UnknownValue("the policy document", document)
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    statements = get(document, "Statement")
    statements = [statements] if isinstance(statements, Mapping) else statements
    return [s for s in _as_list(statements) if isinstance(s, Mapping) or unknown(s)]


def _sid(statement: Any) -> str:
    sid = statement.get("Sid") if isinstance(statement, Mapping) else None
    return str(sid) if sid and not unknown(sid) else "a statement"


def _unknown_keys(statement: Any, keys: Sequence[str]) -> str:
    """Which of `keys` a statement holds but does not know yet, as a message names them ("" for
    none); "the whole statement" for a statement that is itself not known."""
    if unknown(statement):
        return "the whole statement"
    return ", ".join(key for key in keys if key in statement and holds_unknown(statement[key]))


def _as_list(value: Any) -> list[Any]:
    return list(value) if is_list(value) else [value] if value is not None else []


def iam_least_privilege(resource: Resource) -> Iterator[str]:
    props = resource.props
    documents = [props.get("policy")] if resource.type != IAM_ROLE else [
        p.get("policy") if isinstance(p, Mapping) else p for p in _as_list(get(props, "inlinePolicies"))
    ]  # fmt: skip
    for index, document in enumerate(documents):
        try:
            statements = _statements(document)
        except UnknownValue:
            yield Waits(f"policy document {index} is not known yet")
            continue
        for statement in statements:
            # A statement judged without its unknown parts could pass by their absence: it waits.
            waiting = _unknown_keys(statement, ("Effect", "Action", "NotAction", "Resource", "NotResource"))
            if waiting:
                yield Waits(f"{_sid(statement)}: {waiting} not known yet")
                continue
            if statement.get("Effect") != "Allow":
                continue
            sid = _sid(statement)
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


def _scans(configuration: Resource, repository: str) -> bool | None:
    """Whether one scanning configuration scans a repository's pushes; None where it is not known yet."""
    try:
        return registry_scans(get(configuration.props, "scanType"), get(configuration.props, "rules"), repository)
    except UnknownValue:
        return None


def ecr_scan_on_push(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    """Per repository: scanned by a known configuration passes; otherwise one not known yet could
    scan it, so the repository waits (a requirement, not a grant: `pulumi up` judges it with the
    value); with none, a violation."""
    # The repository's own scanOnPush is deprecated (PutImageScanningConfiguration, R21): only the
    # registry-level configuration in the same plan counts.
    configurations = [r for r in resources if r.type == ECR_SCANNING]
    for repository in (r for r in resources if r.type == ECR_REPOSITORY):
        name = repository.props.get("name")
        verdicts = [_scans(c, str(name)) for c in configurations] if not unknown(name) else [None]
        if True in verdicts:
            continue
        if None in verdicts:
            yield repository, Waits(f"whether repository {repository.name} is scanned is not known yet")
        else:
            yield repository, f"no registry scanning configuration scans the images pushed to repository {name}"


def ecr_lifecycle(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    """Per repository, as `ecr_scan_on_push`: a lifecycle policy whose repository is not known yet
    may be the one, so the repositories it could cover wait instead of failing."""
    named = [r.props.get("repository") for r in resources if r.type == ECR_LIFECYCLE]
    covered, pending = {n for n in named if not unknown(n)}, any(unknown(n) for n in named)
    for repository in (r for r in resources if r.type == ECR_REPOSITORY):
        name = repository.props.get("name")
        if name in covered and not unknown(name):
            continue
        if pending or unknown(name):
            yield repository, Waits(f"whether repository {repository.name} has a lifecycle policy is not known yet")
        else:
            yield repository, f"repository {name} has no lifecycle policy: images pile up"


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
    """Each policy document on the group's roles, as the resource holds it (a sentinel where the
    document, or the list of a role's inline policies, is not known yet)."""
    for resource in group:
        if resource.type in (IAM_ROLE_POLICY, IAM_POLICY):
            yield resource, resource.props.get("policy")
        elif resource.type == IAM_ROLE:
            inline = resource.props.get("inlinePolicies")
            for policy in [inline] if unknown(inline) else _as_list(inline):
                yield resource, policy.get("policy") if isinstance(policy, Mapping) else policy


def _principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    return [str(p) for p in _as_list(principal.get("AWS"))] if isinstance(principal, Mapping) else []


def _unprotected(runner: Resource) -> str:
    level = runner.props.get("accessLevel")
    shown = "not known yet" if unknown(level) else level
    return f"runner {runner.name} takes jobs of unprotected refs (accessLevel {shown})"


def _unprotected_runners(resources: Sequence[Resource]) -> list[tuple[Resource, list[Resource]]]:
    """Each runner that takes jobs of unprotected refs (merge requests among them), with the resources
    of its component: its role, the role's policies, the instance profile. A runner whose access
    level is not known yet counts as unprotected (fails closed)."""
    found = []
    for group in _groups(resources).values():
        for runner in (r for r in group if r.type == GITLAB_RUNNER):
            if runner.props.get("accessLevel") != PROTECTED_ACCESS_LEVEL:
                found.append((runner, group))
    return found


# How the pack's advisory note starts: the parts a check could not judge follow, " | " between them.
WAITED = "not known during this preview: "
# What a part this preview cannot judge tells the reader (G11). `pulumi up` judges it at its end,
# once the resources exist; the offline plan judges it before, with every value known.
NOT_KNOWN_FIX = (
    "this preview cannot judge it; `shipyard plan` judges the same program with every value known, "
    "and `pulumi up` judges it again once the resources exist"
)


@dataclass(frozen=True)
class Grant:
    """What one identity-policy statement may let a role do, as far as it is known: `pushes` and
    `signs` are certain; `may_push` and `may_sign` name the unknown parts that could grant it."""

    pushes: tuple[str, ...] = ()
    where: tuple[str, ...] = ()
    signs: bool = False
    may_push: str = ""
    may_sign: str = ""


def _grant(statement: Any, review: set[Any]) -> Grant:
    """Judge one statement on its own. An unknown Effect may be Allow; unknown actions (Action,
    NotAction, or the whole statement) may be push or sign actions; an unknown resource may be a
    release repository. An unknown part that cannot change the verdict (the resource of a statement
    whose known actions push nothing, a Sid, a Condition) is no finding."""
    if unknown(statement):
        return Grant(may_push="the whole statement", may_sign="the whole statement")
    effect = statement.get("Effect")
    if not unknown(effect) and effect != "Allow":
        return Grant()
    action_key = "NotAction" if "NotAction" in statement else "Action"
    actions_unknown = holds_unknown(statement.get(action_key))
    known = {
        **statement,
        "Effect": "Allow",
        action_key: [a for a in _as_list(statement.get(action_key)) if not unknown(a)],
    }
    pushes = () if actions_unknown and action_key == "NotAction" else tuple(_allowed(known, ECR_PUSH_ACTIONS))
    signs = not (actions_unknown and action_key == "NotAction") and bool(_allowed(known, (SIGN_ACTION,)))
    if "NotResource" in statement:
        where, resources_unknown = ["*"], False
    else:
        targets = _as_list(statement.get("Resource"))
        where = [str(t) for t in targets if not unknown(t) and not _is_review_repository(str(t), review)]
        resources_unknown = holds_unknown(statement.get("Resource"))
    if unknown(effect):  # nothing is certain, everything it would grant is possible
        unknown_push = "Effect" if (pushes or actions_unknown) and (where or resources_unknown) else ""
        return Grant(may_push=unknown_push, may_sign="Effect" if signs or actions_unknown else "")
    may_push = [action_key] if actions_unknown and (where or resources_unknown) else []
    may_push += ["Resource"] if resources_unknown and (pushes or actions_unknown) and not where else []
    return Grant(
        pushes=pushes if where else (),
        where=tuple(where) if pushes else (),
        signs=signs,
        may_push=", ".join(may_push) if not (pushes and where) else "",
        may_sign=action_key if actions_unknown and not signs else "",
    )


def _document_findings(who: str, resource: Resource, document: Any, review: set[Any]) -> Iterator[str]:
    try:
        statements = _statements(document)
    except UnknownValue:
        yield Waits(
            f"{who}, and the document of its role policy {resource.name} is not known yet: it may push to a "
            f"release repository or sign; {NOT_KNOWN_FIX}"
        )
        return
    for statement in statements:
        sid, grant = _sid(statement), _grant(statement, review)
        if grant.pushes:
            yield (
                f"{who}, but its role may push ({', '.join(grant.pushes)}) to {', '.join(grant.where)} ({sid}): "
                "only review repositories take its images"
            )
        if grant.signs:
            yield f"{who}, but its role may sign with KMS ({sid})"
        part = grant.may_push if grant.may_push and not grant.pushes else grant.may_sign if not grant.signs else ""
        if part:
            subject = f"a statement in {resource.name}" if unknown(statement) else f"{part} of {sid} in {resource.name}"
            may = " or ".join(
                [*(["push to a release repository"] if grant.may_push else []), *(["sign"] if grant.may_sign else [])]
            )
            yield Waits(f"{who}, and {subject} is not known yet: its role may {may}; {NOT_KNOWN_FIX}")


def _role_findings(runner: Resource, group: Sequence[Resource], review: set[Any]) -> Iterator[tuple[Resource, str]]:
    who = _unprotected(runner)
    for resource in group:
        if resource.type == IAM_ROLE_POLICY_ATTACHMENT:
            arn = resource.props.get("policyArn")
            managed = str(arn).rsplit("/", 1)[-1]
            if unknown(arn):
                yield (
                    resource,
                    Waits(
                        f"{who}, and the policy {resource.name} attaches to its role is not known yet: it may push "
                        f"or sign; {NOT_KNOWN_FIX}"
                    ),
                )
            elif managed in PUSHING_MANAGED_POLICIES:
                yield resource, f"{who}, but its role has {managed}, which may push to every repository"
    for resource, document in _role_documents(group):
        for message in _document_findings(who, resource, document, review):
            yield resource, message


def _key_findings(resources: Sequence[Resource], refused: Mapping[str, Resource]) -> Iterator[tuple[Resource, str]]:
    """Key policies that let anyone, or the role (by name) of a runner in `refused`, sign. A key
    policy, or a statement's Effect, Action or Principal, not known yet may let anyone sign: a
    violation that says so. Refused roles are known by name: a role's own name (explicit or the
    bridge's auto-name) is known in a preview, even where its id is not."""
    for key in (r for r in resources if r.type == KMS_KEY):
        try:
            statements = _statements(key.props.get("policy"))
        except UnknownValue:
            yield (
                key,
                Waits(f"the policy of KMS key {key.name} is not known yet: it may let anyone sign; {NOT_KNOWN_FIX}"),
            )
            continue
        for statement in statements:
            sid = _sid(statement)
            waiting = _unknown_keys(statement, ("Effect", "Action", "NotAction", "Principal", "NotPrincipal"))
            if waiting:
                known = dict(statement) if isinstance(statement, Mapping) else {}
                could_sign = unknown(statement) or holds_unknown(known.get("Action", known.get("NotAction")))
                could_sign = could_sign or bool(_allowed({**known, "Effect": "Allow"}, (SIGN_ACTION,)))
                if could_sign:
                    yield (
                        key,
                        Waits(
                            f"{waiting} of {sid} in KMS key {key.name} is not known yet: it may let anyone sign; "
                            + NOT_KNOWN_FIX
                        ),
                    )
                continue
            if not _allowed(statement, (SIGN_ACTION,)):
                continue
            for principal in ["*"] if "NotPrincipal" in statement else _principals(statement):
                runner = refused.get(principal.rsplit("/", 1)[-1])
                if principal == "*":
                    yield key, f"KMS key {key.name} lets any principal sign ({sid})"
                elif runner is not None:
                    level = runner.props.get("accessLevel")
                    yield (
                        key,
                        (
                            f"KMS key {key.name} lets the role of runner {runner.name} sign ({sid}), a runner that "
                            f"takes jobs of unprotected refs (accessLevel {level})"
                        ),
                    )


def _review_repositories(resources: Sequence[Resource]) -> set[Any]:
    """The names of the repositories marked for review images; one whose name or mark is not known
    yet is not among them (it counts as a release repository: fails closed)."""
    review = set()
    for r in resources:
        if r.type != ECR_REPOSITORY:
            continue
        tags, name = r.props.get("tags"), r.props.get("name")
        if isinstance(tags, Mapping) and tags.get(IMAGES_TAG) == REVIEW_IMAGES and not unknown(name):
            review.add(name)
    return review


def release_push_protected_only(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    """Whoever can push a tag a protected pipeline releases decides what production runs (G11): a
    runner that also takes merge-request jobs may push only to repositories marked for review images,
    and neither its roles' policies (its host's, and in fleet mode its workers', where the jobs run)
    nor any key policy may let it sign. Fails closed: a repository without the review mark counts as
    a release repository, a wildcard as every repository.

    Judged statement by statement, so a value not known yet hides only its own statement: a known
    grant beside it is still a violation. Where that value could itself grant the push or the
    signature (a whole document, a statement, its Effect or Action, a key statement's Principal, an
    attached policy's ARN, or the Resource of a statement that pushes), the part waits (`Waits`) with
    a message that names it, and the preview shows it as Pulumi's advisory note. Failing the preview
    instead would stop every first `pulumi up` of a stack with a review runner: its documents are
    built with `Output.apply` from ARNs of resources created in the same run, so a real preview
    knows none of them, as a whole. `pulumi up` judges them at its end with their values, failing
    the update after the resources exist (pulumi/pulumi deployment_executor.go runs the stack
    analysis after the steps); before anything is created, the offline plan judges them
    (`shipyard plan`, which the merge request's pipeline runs and which exits 1 on a violation):
    the same program and settings with every value known. An unknown that cannot grant either (the
    Resource of a statement whose actions push nothing, as a runner's SSM or autoscaling statements)
    is no finding at all."""
    review = _review_repositories(resources)
    refused: dict[str, Resource] = {}  # role name → the unprotected runner whose role it is
    for runner, group in _unprotected_runners(resources):
        yield from _role_findings(runner, group, review)
        for resource in group:
            role = (
                resource.props.get("role")
                if resource.type in (IAM_ROLE_POLICY, IAM_INSTANCE_PROFILE)
                else resource.props.get("name")
                if resource.type == IAM_ROLE
                else None
            )
            if isinstance(role, str) and not unknown(role):
                refused[role] = runner
    yield from _key_findings(resources, refused)


def _is_review_repository(arn: str, review: set[Any]) -> bool:
    found = ECR_REPOSITORY_ARN.match(arn)
    return found is not None and found.group(1) in review


def production_protected(resources: Sequence[Resource]) -> Iterator[tuple[Resource, str]]:
    """A stack is production by a known tier or stage; one not known yet makes its unprotected apps
    wait (protection is an option, always known: the verdict only waits for the stage)."""
    marks = [
        r.props.get("tier") if r.type == GITLAB_ENVIRONMENT else r.props.get("stage")
        for r in resources
        if r.type in (GITLAB_ENVIRONMENT, HEROKU_COUPLING)
    ]
    production, pending = "production" in marks, any(unknown(m) for m in marks)
    for app in (r for r in resources if r.type == HEROKU_APP and not r.protect):
        name = app.props.get("name")
        if production:
            yield app, f"production app {app.name if unknown(name) else name} is not protected"
        elif pending:
            yield app, Waits(f"whether app {app.name} is production's is not known yet")


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
    """Every violation of `policies` among `resources`, and how many checks waited on unknown values:
    a resource check that stopped on one (UnknownValue), and each part a check could not judge
    (`Waits`), a stack check's among them; the rest of that check is still judged."""
    violations: list[Violation] = []
    unknown = 0
    for policy in policies:
        targets: list[Resource | None] = [None] if policy.check_stack is not None else []
        targets += [r for r in resources if policy.check is not None and r.type in policy.types]
        for target in targets:
            found: list[tuple[Resource, str]] = []
            try:  # item by item: what a check reported before it stopped on an unknown value stands
                if target is None and policy.check_stack is not None:
                    for item in policy.check_stack(resources):
                        found.append(item)
                elif target is not None and policy.check is not None:
                    for message in policy.check(target):
                        found.append((target, message))
            except UnknownValue:
                unknown += 1
            unknown += sum(isinstance(message, Waits) for _, message in found)
            violations += [Violation(policy, r, message) for r, message in found if not isinstance(message, Waits)]
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
    # The props as plain values, unknowns as the engine's sentinels (`_plain`): read through the
    # SDK's proxies, one unknown would stop the whole check.
    parent = resource.opts.parent or getattr(getattr(resource, "parent", None), "urn", None) or ""
    return Resource(
        resource.resource_type, resource.name, resource.urn, _plain(resource.props), bool(resource.opts.protect), parent
    )


def pack_policies(policies: Sequence[Policy] = POLICIES) -> list[Any]:
    """The policies as the Pulumi policy SDK's objects, every one MANDATORY."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy
    from pulumi_policy.proxy import UnknownValueError

    def report(policy: Policy, found: Iterable[tuple[str | None, str]], report_violation: Any) -> None:
        """Report every violation; then, if a part waited, tell the SDK as its own proxies would,
        so the preview shows its advisory "can't run policy during preview" note."""
        waits: list[str] = []
        try:
            for urn, message in found:
                if isinstance(message, Waits):
                    waits.append(message)
                else:
                    report_violation(f"{message}. Fix: {policy.fix} ({policy.guards}).", urn)
        except UnknownValue as exc:
            raise UnknownValueError(exc.sentinel, [exc.path]) from exc
        if waits:
            # The SDK prints the error's message in its advisory note: the parts, not a property path.
            error = UnknownValueError(UNKNOWN, [])
            error.message = WAITED + " | ".join(waits)
            raise error

    def resource_validator(policy: Policy) -> Callable[[Any, Any], None]:
        def validate(args: Any, report_violation: Any) -> None:
            if args.resource_type in policy.types and policy.check is not None:
                report(policy, ((None, m) for m in policy.check(_from_sdk(args))), report_violation)

        return validate

    def stack_validator(policy: Policy) -> Callable[[Any, Any], None]:
        def validate(args: Any, report_violation: Any) -> None:
            assert policy.check_stack is not None
            found = policy.check_stack([_from_sdk(r) for r in args.resources])
            report(policy, ((r.urn, m) for r, m in found), report_violation)

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
