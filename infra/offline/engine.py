"""The offline engine: runs the real program on Pulumi's mock monitor, the way Pulumi's language
host runs it (P7), and records every resource the program registers.

Used by `shipyard plan` and by the test harness, so tests and the plan see the same program run.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import copy
import functools
import hashlib
import json
import logging
import os
import runpy
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.settings import SETTINGS, configure

from infra.facts import aws_partition
from infra.settings import NAMESPACE, REQUIRED_SECRET_KEYS, SECRETS_REQUIRED_WITH
from infra.stacks import read_stack_file

SECRET = "[secret]"
ACCOUNT_ID = "123456789012"
PLACEHOLDER_PREFIX = "offline-placeholder"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "shipyard:" + ":".join(parts)))


def _hex(n: int, *parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:n]


# ---------------------------------------------------------------------------------------------
# Project and stack files


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    main: Path

    @classmethod
    def load(cls, root: Path) -> Project:
        doc = yaml.safe_load((root / "Pulumi.yaml").read_text())
        return cls(root=root, name=doc["name"], main=root / doc.get("main", "."))

    def stack_file(self, stack: str) -> Path:
        return self.root / f"Pulumi.{stack}.yaml"


@dataclass
class StackConfig:
    """The flat config map the Pulumi CLI would hand the program, with secrets replaced offline."""

    values: dict[str, str]
    secret_keys: set[str]
    placeholders: dict[str, str]  # key → why a placeholder stands in for it


def _placeholder(key: str) -> str:
    # Deterministic, GitLab-maskable, and obviously not a credential.
    return f"{PLACEHOLDER_PREFIX}-{key.rsplit(':', 1)[-1].replace('.', '-')}"


def _decrypt_offline(value: Any, key: str, found: list[str]) -> Any:
    if isinstance(value, dict) and set(value) == {"secure"}:
        found.append(key)
        return _placeholder(key)
    if isinstance(value, dict):
        return {k: _decrypt_offline(v, f"{key}.{k}", found) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypt_offline(v, f"{key}[{i}]", found) for i, v in enumerate(value)]
    return value


def _as_config_string(value: Any) -> str:
    """Scalars as the CLI passes them (bools lowercase), objects and lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def read_stack_config(
    project: Project, stack: str, config_file: Path | None = None, shown_as: str | None = None
) -> StackConfig:
    """The config map of a stack file: `config_file`, else the stack's file in the project. Errors
    name the file `shown_as`, the path as the user gave it (default: relative to the working
    directory when it lies below it, else absolute)."""
    path = config_file or project.stack_file(stack)
    return stack_config(project, read_stack_file(path, shown_as), path.name)


def stack_config(project: Project, config: Mapping[str, Any], source: str) -> StackConfig:
    """The config map from a stack document's `config:` section (`source` names it in reports)."""
    values: dict[str, str] = {}
    secret_keys: set[str] = set()
    placeholders: dict[str, str] = {}
    for key, raw in config.items():
        full = key if ":" in key else f"{project.name}:{key}"
        found: list[str] = []
        value = _decrypt_offline(raw, full, found)
        if found:
            secret_keys.add(full)
            for k in found:
                placeholders[k] = f"encrypted value in {source}"
        values[full] = _as_config_string(value)
    # Secrets a stack needs even when its file does not hold them yet (set later with --secret).
    needed = [*REQUIRED_SECRET_KEYS, *(k for k, w in SECRETS_REQUIRED_WITH.items() if f"{NAMESPACE}:{w}" in values)]
    for key in sorted(f"{NAMESPACE}:{k}" for k in needed):
        if key not in values:
            values[key] = _placeholder(key)
            secret_keys.add(key)
            placeholders[key] = f"not set in {source} (pulumi config set --secret {key.split(':', 1)[1]})"
    return StackConfig(values, secret_keys, placeholders)


# ---------------------------------------------------------------------------------------------
# Mocks: realistic, deterministic values for what the providers compute

# NIST P-256 (SEC 2, section 2.4.2): the curve of an ECC_NIST_P256 KMS key.
_P256_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_P256_A = _P256_P - 3
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
# DER SubjectPublicKeyInfo header of an uncompressed P-256 point (RFC 5480): what KMS GetPublicKey returns.
_P256_SPKI_HEADER = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def _p256_add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    if p is None or q is None:
        return p or q
    if p[0] == q[0] and (p[1] + q[1]) % _P256_P == 0:
        return None
    if p == q:
        slope = (3 * p[0] * p[0] + _P256_A) * pow(2 * p[1], -1, _P256_P)
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P256_P)
    x = (slope * slope - p[0] - q[0]) % _P256_P
    return x, (slope * (p[0] - x) - p[1]) % _P256_P


def p256_public_key_der(seed: str) -> bytes:
    """A real P-256 public key (DER SubjectPublicKeyInfo), derived deterministically from `seed`."""
    scalar = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % (_P256_N - 1) + 1
    point: tuple[int, int] | None = None
    addend: tuple[int, int] | None = _P256_G
    while scalar:
        if scalar & 1:
            point = _p256_add(point, addend)
        addend = _p256_add(addend, addend)
        scalar >>= 1
    assert point is not None  # the scalar is in [1, n - 1]: never the point at infinity
    return _P256_SPKI_HEADER + b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def pem(der: bytes, label: str = "PUBLIC KEY") -> str:
    """PEM as Go's pem.EncodeToMemory writes it (the provider's public_key_pem): 64-column lines."""
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"


class ShipyardMocks(pulumi.runtime.Mocks):
    """Provider-computed outputs (camelCase, P5) filled the way AWS, Heroku and GitLab fill them."""

    def __init__(self, region: str, stack_outputs: Callable[[str], dict[str, Any]]) -> None:
        self.region = region
        # ARNs carry the region's partition (arn:aws-cn:… in China), as AWS answers them (P9).
        self.partition, self.dns_suffix = aws_partition(region)
        self.stack_outputs = stack_outputs

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        name = str(inputs.get("name") or args.name)
        typ = args.typ
        if typ == "pulumi:pulumi:StackReference":
            return args.resource_id, {"name": args.resource_id, "outputs": self.stack_outputs(str(args.resource_id))}
        if args.custom is False:  # components have no provider state
            return f"{args.name}_id", {}
        if typ == "aws:ecr/repository:Repository":
            return name, {
                **inputs,
                "arn": self._arn("ecr", f"repository/{name}"),
                "registryId": ACCOUNT_ID,
                "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{self.region}.{self.dns_suffix}/{name}",
            }
        if typ in ("aws:ecr/lifecyclePolicy:LifecyclePolicy", "aws:ecr/repositoryPolicy:RepositoryPolicy"):
            return str(inputs.get("repository")), {**inputs, "registryId": ACCOUNT_ID}
        if typ == "heroku:app/app:App":
            app_id = _uuid("app", name)
            host = f"{name}-{_hex(12, 'app', name)}.herokuapp.com"
            all_vars = {**inputs.get("configVars", {}), **inputs.get("sensitiveConfigVars", {})}
            return app_id, {
                **inputs,
                "uuid": app_id,
                "herokuHostname": host,
                "webUrl": f"https://{host}/",
                "gitUrl": f"https://git.heroku.com/{name}.git",
                "allConfigVars": all_vars,
            }
        if typ == "heroku:app/feature:Feature":
            return f"{inputs.get('appId')}:{name}", inputs
        if typ == "heroku:formation/formation:Formation":
            return _uuid("formation", str(inputs.get("appId")), str(inputs.get("type"))), inputs
        if typ == "aws:ssm/parameter:Parameter":
            return name, {**inputs, "arn": self._arn("ssm", f"parameter{name}"), "version": 1, "tier": "Standard"}
        if typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            auto = inputs.get("name") or f"{args.name}-{_hex(7, typ, args.name)}"
            kind = "role" if typ.endswith("Role") else "instance-profile"
            return auto, {**inputs, "name": auto, "arn": f"arn:{self.partition}:iam::{ACCOUNT_ID}:{kind}/{auto}"}
        if typ == "aws:ec2/securityGroup:SecurityGroup":
            sg = f"sg-{_hex(17, args.name)}"
            return sg, {**inputs, "arn": self._arn("ec2", f"security-group/{sg}")}
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            lt = f"lt-{_hex(17, args.name)}"
            return lt, {**inputs, "arn": self._arn("ec2", f"launch-template/{lt}"), "latestVersion": 1}
        if typ == "aws:autoscaling/group:Group":
            arn = self._arn("autoscaling", f"autoScalingGroup:{_uuid('asg', name)}:autoScalingGroupName/{name}")
            return name, {**inputs, "arn": arn}
        if typ == "aws:s3/bucket:Bucket":
            bucket = str(inputs.get("bucket"))
            return bucket, {**inputs, "arn": f"arn:{self.partition}:s3:::{bucket}", "region": self.region}
        if typ.startswith("heroku:"):
            return _uuid(typ, args.name, name), inputs
        if typ == "gitlab:index/projectEnvironment:ProjectEnvironment":
            # An adopted environment keeps its own id, `<project>:<environment id>`, as the import gives it.
            env_id = int(_hex(6, "env", name), 16) % 100000
            if args.resource_id:
                env_id = int(str(args.resource_id).rsplit(":", 1)[1])
            return f"{inputs.get('project')}:{env_id}", {**inputs, "environmentId": env_id, "state": "available"}
        if typ == "gitlab:index/projectVariable:ProjectVariable":
            return f"{inputs.get('project')}:{inputs.get('key')}:{inputs.get('environmentScope', '*')}", inputs
        if typ == "aws:kms/key:Key":
            key_id = _uuid("kms-key", self.region, args.name)
            return key_id, {
                **inputs,
                "arn": self._arn("kms", f"key/{key_id}"),
                "keyId": key_id,
                "isEnabled": True,
                "multiRegion": False,
            }
        if typ == "aws:kms/alias:Alias":
            target = str(inputs.get("targetKeyId"))
            return name, {**inputs, "arn": self._arn("kms", name), "targetKeyArn": self._arn("kms", f"key/{target}")}
        if typ == "gitlab:index/userRunner:UserRunner":
            runner_id = int(_hex(6, "runner", args.name), 16) % 10_000_000
            return str(runner_id), {**inputs, "token": f"glrt-{_hex(20, 'token', args.name)}"}
        return f"{args.name}-{_hex(8, typ, args.name)}", inputs

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        answer = self._answer(args.token, args.args)
        if answer is None:
            raise NotImplementedError(f"the offline plan has no answer for {args.token}")
        return answer, []

    def _answer(self, token: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        vpc = f"vpc-{_hex(17, 'default-vpc', self.region)}"
        if token == "heroku:team/getTeam:getTeam":
            team = str(inputs.get("name"))
            return {"id": _uuid("team", team), "name": team, "default": False, "type": "team"}
        if token == "gitlab:index/getProject:getProject":
            path = str(inputs.get("pathWithNamespace") or inputs.get("id"))
            return {"id": str(int(_hex(6, "project", path), 16) % 10_000_000), "pathWithNamespace": path}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:{self.partition}:iam::{ACCOUNT_ID}:user/offline"
            return {"accountId": ACCOUNT_ID, "arn": arn, "userId": "AIDAOFFLINE", "id": ACCOUNT_ID}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": self.partition, "dnsSuffix": self.dns_suffix, "id": self.partition}
        if token == "aws:kms/getAlias:getAlias":
            key = _uuid("kms", str(inputs.get("name")))
            return {
                "arn": self._arn("kms", str(inputs.get("name"))),
                "name": inputs.get("name"),
                "targetKeyId": key,
                "targetKeyArn": self._arn("kms", f"key/{key}"),
                "id": self._arn("kms", str(inputs.get("name"))),
            }
        if token == "aws:kms/getPublicKey:getPublicKey":
            # GetPublicKey answers with the key's ARN whatever identifier it was given; the provider
            # sets the PEM from the DER key (terraform-provider-aws kms/public_key_data_source.go).
            key_arn = str(inputs.get("keyId"))
            der = p256_public_key_der(key_arn)
            return {
                "id": key_arn,
                "arn": key_arn,
                "keyId": key_arn,
                "customerMasterKeySpec": "ECC_NIST_P256",
                "keyUsage": "SIGN_VERIFY",
                "publicKey": base64.b64encode(der).decode(),
                "publicKeyPem": pem(der),
                "signingAlgorithms": ["ECDSA_SHA_256"],
                "encryptionAlgorithms": [],
            }
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": vpc, "cidrBlock": "172.31.0.0/16", "default": True, "arn": self._arn("ec2", f"vpc/{vpc}")}
        if token == "aws:ec2/getSubnets:getSubnets":
            return {"ids": [f"subnet-{_hex(17, vpc, az)}" for az in "abc"], "id": self.region}
        if token == "aws:ec2/getSubnet:getSubnet":
            return {"id": inputs.get("id"), "vpcId": f"vpc-{_hex(17, 'subnet-vpc', str(inputs.get('id')))}"}
        return None


# ---------------------------------------------------------------------------------------------
# Recording monitor


def _is_secret(value: Any) -> bool:
    """Whether a wire value is, or holds, a secret: the engine keeps such a property secret."""
    if isinstance(value, dict):
        return value.get(rpc._special_sig_key) == rpc._special_secret_sig or any(map(_is_secret, value.values()))
    return isinstance(value, list) and any(map(_is_secret, value))


def _walk(value: Any, secret: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return secret(value.get("value"))
        if sig == rpc._special_resource_sig:
            return value.get("urn")
        if sig == rpc._special_output_value_sig:
            inner = value.get("value", rpc.UNKNOWN)
            return secret(inner) if value.get("secret") else _walk(inner, secret)
        return {k: _walk(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, secret) for v in value]
    if value == rpc.UNKNOWN:
        return "[unknown]"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire carries every number as a double
    return value


def redact(value: Any) -> Any:
    """A property value as a person may see it: secrets become "[secret]", references their URN."""
    return _walk(value, lambda _: SECRET)


def reveal(value: Any) -> Any:
    """A property value as the provider receives it: secrets unwrapped."""
    return _walk(value, lambda inner: _walk(inner, lambda x: x))


def _wrap_secret(value: Any) -> dict[str, Any]:
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


@dataclass
class Step:
    op: str
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    protect: bool
    delete_before_replace: bool
    dependencies: list[str]
    inputs: dict[str, Any]  # redacted: safe to show
    custom_timeouts: dict[str, str]  # "create", "update", "delete" → a duration such as "1h30m"
    import_id: str  # the ID of an existing resource the engine adopts, or ""
    raw_inputs: dict[str, Any] = field(repr=False)  # the values the provider would receive
    ignore_changes: list[str] = field(default_factory=list)  # inputs whose changes the engine ignores


def _timeouts(request: Any) -> dict[str, str]:
    timeouts = getattr(request, "customTimeouts", None)
    return {k: v for k in ("create", "update", "delete") if (v := getattr(timeouts, k, ""))}


class RecordingMonitor(mocks.MockMonitor):
    """The mock monitor, keeping each registration's options and marking secret outputs the way
    the engine does (secret inputs and the provider's additional secret outputs stay secret)."""

    def __init__(self, mocks_: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks_)
        self.steps: list[Step] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_secret_outputs: set[str] = set()
        self._thread_loops: list[asyncio.AbstractEventLoop] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """URNs as the engine makes them: a child's type is qualified by its parent's whole
        qualified type, except under the root stack (the mock qualifies by the stack's type)."""
        if parent:
            qualified = parent.split("::")[2]
            if qualified != "pulumi:pulumi:Stack":
                type_ = f"{qualified}${type_}"
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def _thread_loop(self) -> None:
        """The SDK calls the monitor from worker threads, each needing an event loop of its own;
        create it here so that `close()` can close it when the run ends, not the garbage collector."""
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._thread_loops.append(loop)

    def close(self) -> None:
        for loop in self._thread_loops:
            loop.close()
        self._thread_loops.clear()

    def Invoke(self, request: Any) -> Any:
        self._thread_loop()
        return super().Invoke(request)

    def _record(self, op: str, request: Any, urn: str, props: Any) -> dict[str, Any]:
        wire = json_format.MessageToDict(props, preserving_proto_field_name=True)
        raw = reveal(wire)
        self.steps.append(
            Step(
                op=op,
                urn=urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                custom=getattr(request, "custom", True) if op == "create" else True,
                protect=bool(getattr(request, "protect", False)),
                delete_before_replace=bool(getattr(request, "deleteBeforeReplace", False)),
                dependencies=list(getattr(request, "dependencies", [])),
                inputs=redact(wire),
                custom_timeouts=_timeouts(request),
                import_id=getattr(request, "importId", ""),
                raw_inputs=raw,
                ignore_changes=list(getattr(request, "ignoreChanges", [])),
            )
        )
        return wire

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            self._record("create", request, urn, request.object)
            return resource_pb2.RegisterResourceResponse(urn=urn)
        self._thread_loop()
        wire = self._record("create", request, urn, request.object)
        inputs = self.steps[-1].raw_inputs
        resource_id, state = self.mocks.new_resource(
            mocks.MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=inputs,
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
            )
        )
        secret = {k for k, v in wire.items() if _is_secret(v)} | set(request.additionalSecretOutputs)
        state = {k: _wrap_secret(v) if k in secret else v for k, v in state.items()}
        obj = mocks._sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, resource_id or "", state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id or "", object=obj)

    def ReadResource(self, request: Any) -> Any:
        self._thread_loop()
        response = super().ReadResource(request)
        self._record("read", request, response.urn, request.properties)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if "::pulumi:pulumi:Stack::" in request.urn:
            wire = json_format.MessageToDict(request.outputs, preserving_proto_field_name=True)
            self.stack_outputs = reveal(wire)
            self.stack_secret_outputs = {k for k, v in wire.items() if _is_secret(v)}
        return super().RegisterResourceOutputs(request)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# ---------------------------------------------------------------------------------------------
# Running the program


@dataclass
class Run:
    stack: str
    steps: list[Step]
    outputs: dict[str, Any]  # raw values
    secret_outputs: set[str]
    warnings: list[str]
    placeholders: dict[str, str]

    @property
    def shown_outputs(self) -> dict[str, Any]:
        return {k: SECRET if k in self.secret_outputs else redact(v) for k, v in self.outputs.items()}

    def resources(self, typ: str | None = None) -> list[Step]:
        return [s for s in self.steps if typ is None or s.type == typ]

    def one(self, typ: str, **inputs: Any) -> Step:
        return find_one(self.steps, typ, **inputs)


def find_one(steps: list[Step], typ: str, **inputs: Any) -> Step:
    """The single recorded resource of a type whose inputs have these values."""
    found = [s for s in steps if s.type == typ and all(s.raw_inputs.get(k) == v for k, v in inputs.items())]
    if len(found) != 1:
        raise LookupError(f"expected one {typ} with {inputs}, found {len(found)}")
    return found[0]


@functools.lru_cache(maxsize=8)
def _referenced_outputs(project: Project, stack: str, stack_file: bytes, seen: tuple[str, ...]) -> dict[str, Any]:
    """The outputs of a stack that another one references, by its program run; the same stack file
    gives the same outputs, so a process that plans several stacks runs each referenced one once."""
    # A thread of its own: the referenced run needs its own context and event loop, and this call
    # comes from inside the referencing run's monitor.
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(run_program, project, stack, None, None, seen).result()
    return {k: _wrap_secret(v) if k in run.secret_outputs else v for k, v in run.outputs.items()}


def _reference_outputs(project: Project, config: StackConfig, seen: tuple[str, ...]) -> Callable[[str], Any]:
    """Outputs for a StackReference: the offline plan of that stack if its file is here (so the
    wiring is real), placeholders for the build stack's exports otherwise."""
    from infra import wiring

    def outputs(reference: str) -> dict[str, Any]:
        parts = reference.split("/")
        stack = parts[-1]
        if len(parts) == 3 and parts[1] == project.name and project.stack_file(stack).exists() and stack not in seen:
            return copy.deepcopy(_referenced_outputs(project, stack, project.stack_file(stack).read_bytes(), seen))
        config.placeholders[f"stack reference {reference}"] = "outputs are placeholders (stack file not here)"
        placeholder = {k: f"{PLACEHOLDER_PREFIX}-{k}" for k in wiring.BUILD_STACK_OUTPUTS}
        placeholder[wiring.GITLAB_PROJECT] = config.values.get(f"{NAMESPACE}:gitlabProject", "")
        return placeholder

    return outputs


def run_program(
    project: Project,
    stack: str,
    config: StackConfig | None = None,
    config_file: Path | None = None,
    seen: tuple[str, ...] = (),
    record: list[Step] | None = None,
    shown_as: str | None = None,
) -> Run:
    """Run the program for one stack on the mock engine, in a fresh context and event loop (P4).

    Raises SettingsError for invalid settings, a stack file that cannot be read (named `shown_as`,
    the path as the user gave it; see read_stack_config) and mistakes between this stack and the
    project's other stack files (infra/stacks.py); any other program failure propagates as it would
    under `pulumi up`. `record`, when given, receives every registration, even of a failed run.
    """
    config = config or read_stack_config(project, stack, config_file, shown_as)
    return contextvars.Context().run(_run, project, stack, config, (*seen, stack), record)


def fresh_runtime_state() -> None:
    """Give the SDK an empty set of tracked outputs. MockSettings does not replace it, and the SDK
    hands a context that never set it the last set assigned anywhere (its ContextVar default moves
    with every first assignment), so a failed run's tasks, bound to a closed loop, would reach the
    next run's final wait ("Event loop is closed")."""
    SETTINGS.outputs = set()


def _finish_tasks(loop: asyncio.AbstractEventLoop, rounds: int = 20) -> None:
    """Cancel what a run left scheduled and let it end, before the loop closes: a program that failed
    leaves the SDK's registrations half done, and a task closed before its first step leaves a
    coroutine that was never awaited, which the garbage collector reports later, anywhere. A
    cancelled task may schedule another, hence the rounds."""
    for _ in range(rounds):
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _run(project: Project, stack: str, config: StackConfig, seen: tuple[str, ...], record: list[Step] | None) -> Run:
    region = config.values.get("aws:region", "us-east-1")
    monitor = RecordingMonitor(ShipyardMocks(region, _reference_outputs(project, config, seen)))
    if record is not None:
        monitor.steps = record
    logger = logging.getLogger(f"shipyard.offline.{stack}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    collect = _Collect()
    logger.handlers = [collect]
    fresh_runtime_state()
    configure(
        mocks.MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
            engine=mocks.MockEngine(logger),
            project=project.name,
            stack=stack,
            dry_run=False,
            organization="organization",
            callbacks=None,
        )
    )
    pulumi.runtime.set_all_config(config.values, sorted(config.secret_keys))
    pulumi.runtime.settings.ROOT.set(None)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    cwd = os.getcwd()
    os.chdir(project.root)  # the language host runs the program from the project directory (P7)
    try:
        main = str(project.main)

        def program() -> None:
            runpy.run_path(main, run_name="__main__")

        loop.run_until_complete(pulumi.runtime.run_in_stack(program))
    finally:
        os.chdir(cwd)
        _finish_tasks(loop)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        monitor.close()
        asyncio.set_event_loop(None)
        SETTINGS.outputs.clear()  # a failed run's tasks, bound to the closed loop, go with it
    warnings = [r.getMessage() for r in collect.records if r.levelno >= logging.WARNING]
    # Registrations arrive in whatever order the SDK's threads finish; a plan is read and diffed,
    # so give it one order: the stack, then each resource before its children.
    steps = sorted(monitor.steps, key=lambda s: (s.type != "pulumi:pulumi:Stack", s.urn.replace("$", "~")))
    return Run(stack, steps, monitor.stack_outputs, monitor.stack_secret_outputs, warnings, config.placeholders)
