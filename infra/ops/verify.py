"""`shipyard verify`: the live resources of a deployed stack against what the stack says — each
runner host (the stack's runner and, on the build stack, the review runner) in service with IMDSv2
required and its token parameter a SecureString; in fleet mode its workers' group shaped for the
runner to own (minimum 0, scale-in protection, AZRebalance suspended, no scaling policies, IMDSv2)
and their job cache private, encrypted and expiring; the registry's scanning configuration covering the
release and review repositories, each under a lifecycle policy; the image-signing KMS key enabled,
ECC_NIST_P256 and SIGN_VERIFY, signable by the release runner's role alone, its public key the one
the stack hands to CI; (with a GitLab token) the runners online in GitLab and the CI variable
carrying that public key; (with review apps and HEROKU_REVIEW_API_KEY) the review key refused on
the staging and production apps; and (with review apps and the operator's HEROKU_API_KEY) both apps
locked in their team, so that no team member can join them later (an app outside a team is skipped:
no member can join it).

Checks whose outputs a stack does not have (a stack that is not the build stack, or one deployed
before shipyard had them) are skipped with the reason. Reads only: describe, get and list calls,
never the token's value; the Heroku keys go to Heroku's API only and are never printed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.components.signing import KEY_SPEC, KEY_USAGE
from infra.ops.bootstrap import PUBLIC_ACCESS_FLAGS, error_code
from policy.policies import SIGN_ACTION, _allowed, _as_list, _statements, registry_scans

PASS, FAIL, SKIP = "pass", "FAIL", "skip"
# Whoever may create grants on the key can grant kms:Sign to anyone (signing.py leaves it out).
CREATE_GRANT_ACTION = "kms:CreateGrant"
# The unscoped CI variable that carries the signing key's public key (infra/__main__.py).
PUBLIC_KEY_VARIABLE = "SHIPYARD_SIGNING_PUBLIC_KEY"
# Exports only the build stack has (infra/__main__.py, build_exports): with none of them, a stack is
# either not the build stack or a build stack deployed before shipyard had them.
BUILD_EXPORTS = ("registryScanning", "reviewRegistryUrl", "imageSigningKeyArn", "imageSigningPublicKey")
HEROKU_API = "https://api.heroku.com"
HEROKU_ACCEPT = "application/vnd.heroku+json; version=3"
# Heroku's answers to a key that may not read an app: 403 (not a member of it) or 404 (not visible).
REFUSED = (403, 404)
PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.DOTALL)


class VerifyError(Exception):
    """The stack's outputs cannot be read; nothing was checked."""


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # pass | FAIL | skip
    detail: str


@dataclass(frozen=True)
class Runner:
    """One runner of the stack: the prefix of its exports (infra/__main__.py: `<prefix>AsgName`,
    `<prefix>TokenParameter`, `<prefix>Id`) and its name in the table."""

    prefix: str
    label: str

    @property
    def asg(self) -> str:
        return f"{self.prefix}AsgName"

    @property
    def token_parameter(self) -> str:
        return f"{self.prefix}TokenParameter"

    @property
    def id(self) -> str:
        return f"{self.prefix}Id"

    @property
    def workers_asg(self) -> str:
        """In fleet mode: the Auto Scaling group of the runner's ephemeral workers."""
        return f"{self.prefix}WorkersAsgName"

    @property
    def cache_bucket(self) -> str:
        """In fleet mode: the S3 bucket of the workers' shared job cache."""
        return f"{self.prefix}CacheBucket"


# The stack's own runner: the release build runner on the build stack, a deploy runner elsewhere.
RUNNER = Runner("runner", "runner")
REVIEW_RUNNER = Runner("reviewRunner", "review runner")


def stack_outputs(stack: str, path: str | None) -> dict[str, Any]:
    """The stack's outputs from a file, or from the Pulumi CLI with secrets left hidden."""
    try:
        if path:
            with open(path) as handle:
                text = handle.read()
        else:
            command = ["pulumi", "stack", "output", "--json", "--show-secrets=false", "--stack", stack]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise VerifyError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")
            text = done.stdout
    except FileNotFoundError as exc:
        raise VerifyError(f"{exc.filename}: not found (give the outputs with --outputs FILE)") from None
    try:
        outputs = json.loads(text)
    except ValueError as exc:
        raise VerifyError(f"the stack outputs are not JSON ({exc})") from None
    if not isinstance(outputs, dict) or "registryUrl" not in outputs:
        raise VerifyError("these are not the outputs of a shipyard stack: `registryUrl` is missing")
    return outputs


def pem_der(text: Any) -> bytes | None:
    """The DER bytes of a PEM public key (`-----BEGIN PUBLIC KEY-----`), None if `text` is not one."""
    found = PEM_PUBLIC_KEY.search(text) if isinstance(text, str) else None
    if found is None:
        return None
    try:
        return base64.b64decode("".join(found.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def fingerprint(der: bytes) -> str:
    return f"SHA-256 {hashlib.sha256(der).hexdigest()[:16]}"


def _repository(url: Any) -> str:
    return str(url).split("/", 1)[-1]


def _principals(statement: Mapping[str, Any]) -> list[str]:
    """Every principal a key-policy statement names, `*` for anyone; a `NotPrincipal` (everyone but
    those listed) counts as `*`."""
    if "NotPrincipal" in statement:
        return ["*"]
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, Mapping):
        return [
            str(value) if kind == "AWS" or value == "*" else f"{kind} {value}"
            for kind, values in principal.items()
            for value in _as_list(values)
        ]
    return [f"the principal {principal!r}"]


def _who(principal: str) -> str:
    if principal == "*":
        return "any principal (*)"
    if principal.endswith(":root") or principal.isdigit():
        return f"the account {principal} (any IAM principal it allows)"
    return principal


class Verify:
    def __init__(self, session: boto3.Session, region: str, outputs: Mapping[str, Any]) -> None:
        self.outputs = outputs
        self.autoscaling = session.client("autoscaling", region_name=region)
        self.ec2 = session.client("ec2", region_name=region)
        self.ssm = session.client("ssm", region_name=region)
        self.ecr = session.client("ecr", region_name=region)
        self.kms = session.client("kms", region_name=region)
        self.s3 = session.client("s3", region_name=region)
        self.checks: list[Check] = []
        self._groups: dict[str, dict[str, Any] | None] = {}

    def check(self, name: str, probe: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = probe()
        except ClientError as error:
            ok, detail = False, f"{error_code(error)}: {error.response.get('Error', {}).get('Message', '')}"
        self.checks.append(Check(name, PASS if ok else FAIL, detail))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, SKIP, why))

    def _absent(self, output: str, what: str, setting: str | None = None) -> str:
        """Why a check of the build stack's `what` is skipped: its output is not there."""
        if setting and any(self.outputs.get(name) for name in BUILD_EXPORTS):
            return f"no {output} output: this build stack has no {what} ({setting} is not set)"
        article = "an" if what[0] in "aeiou" else "a"
        return f"no {output} output: not the build stack, or a build stack deployed before it had {article} {what}"

    def run(self, gitlab: tuple[str, str] | None) -> list[Check]:
        self.checks, self._groups = [], {}
        for runner in (RUNNER, REVIEW_RUNNER):
            self._runner(runner)
        repository = _repository(self.outputs["registryUrl"])
        self.check("registry scans on push", lambda: self._scan_on_push(repository))
        self.check("registry has a lifecycle policy", lambda: self._lifecycle(repository))
        review_names = ("review repository scanned on push", "review repository has a lifecycle policy")
        if self.outputs.get("reviewRegistryUrl"):
            review = _repository(self.outputs["reviewRegistryUrl"])
            self.check(review_names[0], lambda: self._scan_on_push(review))
            self.check(review_names[1], lambda: self._lifecycle(review))
        else:
            for name in review_names:
                self.skip(name, self._absent("reviewRegistryUrl", "review repository"))
        key = str(self.outputs.get("imageSigningKeyArn") or "")
        public_keys: dict[str, bytes] = {}  # the key's public key, read once a round
        key_names = (
            f"signing key enabled, {KEY_SPEC}, {KEY_USAGE}",
            "only the release runner may sign",
            "signing key's public key in the outputs",
        )
        if key:
            self.check(key_names[0], lambda: self._signing_key(key))
            self.check(key_names[1], lambda: self._sign_policy(key))
            self.check(key_names[2], lambda: self._public_key(key, public_keys))
        else:
            for name in key_names:
                self.skip(name, self._absent("imageSigningKeyArn", "image-signing key"))
        for runner in (RUNNER, REVIEW_RUNNER):
            self._online_row(runner, gitlab)
        variable = "signing key's public key in the CI variable"
        if not key:
            self.skip(variable, self._absent("imageSigningKeyArn", "image-signing key"))
        elif gitlab is None:
            self.skip(variable, "no GITLAB_TOKEN in the environment")
        elif not self.outputs.get("gitlabProject"):
            self.skip(variable, "no gitlabProject output: the GitLab project is not known")
        else:
            self.check(variable, lambda: self._ci_public_key(*gitlab, key, public_keys))
        return self.checks

    def _absent_runner(self, runner: Runner, output: str) -> str:
        if runner is RUNNER:
            return "this stack has no runner"
        return self._absent(output, "review runner", "shipyard:reviewRunner")

    def _runner(self, runner: Runner) -> None:
        """The same three checks for every runner host of the stack."""
        names = (
            f"{runner.label} instance in service",
            f"{runner.label} requires IMDSv2",
            f"{runner.label} token is a SecureString",
        )
        if not self.outputs.get(runner.asg):
            for name in names:
                self.skip(name, self._absent_runner(runner, runner.asg))
            return
        instance: dict[str, Any] = {}
        self.check(names[0], lambda: self._in_service(runner, instance))
        self.check(names[1], lambda: self._imdsv2(instance))
        self.check(names[2], lambda: self._token_parameter(runner))
        if self.outputs.get(runner.workers_asg):
            self._fleet(runner, in_service=bool(instance))

    # --- fleet mode: the manager above, its workers here (R15) ------------------------------------

    def _fleet(self, runner: Runner, in_service: bool) -> None:
        workers = str(self.outputs[runner.workers_asg])
        self.check(f"{runner.label} workers: group shape", lambda: self._worker_group(workers))
        self.check(f"{runner.label} workers require IMDSv2", lambda: self._worker_imdsv2(workers))
        bucket = self.outputs.get(runner.cache_bucket)
        name = f"{runner.label} job cache private, encrypted, expiring"
        if bucket:
            self.check(name, lambda: self._cache_bucket(str(bucket)))
        else:
            self.checks.append(Check(name, FAIL, f"no {runner.cache_bucket} output: the workers' cache is not known"))
        # The manager completes its launch only once `gitlab-runner fleeting install` has put the
        # plugin in place (runner_userdata/bootstrap.sh abandons a host without it).
        plugin = f"{runner.label} fleeting plugin installed"
        if in_service:
            self.checks.append(Check(plugin, PASS, "the manager in service passed its launch check, plugin included"))
        else:
            self.checks.append(Check(plugin, FAIL, "no manager in service: nothing has installed the plugin"))

    def _group(self, name: str) -> dict[str, Any] | None:
        """An Auto Scaling group as AWS describes it, asked once per round of checks (several read it)."""
        if name not in self._groups:
            found = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
            self._groups[name] = found[0] if found else None
        return self._groups[name]

    def _worker_group(self, name: str) -> tuple[bool, str]:
        group = self._group(name)
        if group is None:
            return False, f"no Auto Scaling group {name}"
        problems = []
        if group.get("MinSize") != 0:
            problems.append(f"MinSize {group.get('MinSize')}, not 0: workers cannot scale to zero")
        if not group.get("NewInstancesProtectedFromScaleIn"):
            problems.append("new instances are not protected from scale-in: AWS may end a worker mid-job")
        suspended = {p.get("ProcessName") for p in group.get("SuspendedProcesses", [])}
        if "AZRebalance" not in suspended:
            problems.append("AZRebalance is not suspended: AWS may end a worker mid-job to rebalance zones")
        policies = self.autoscaling.describe_policies(AutoScalingGroupName=name).get("ScalingPolicies", [])
        if policies:
            names = ", ".join(str(p.get("PolicyName")) for p in policies)
            problems.append(f"scaling policies ({names}) compete with the runner for the desired capacity")
        if problems:
            return False, f"{name}: " + "; ".join(problems) + " (R15)"
        serving = sum(1 for i in group.get("Instances", []) if i.get("LifecycleState") == "InService")
        return True, f"{name}: 0 to {group.get('MaxSize')} workers, {serving} now, scale-in protected, AZRebalance off"

    def _worker_imdsv2(self, name: str) -> tuple[bool, str]:
        group = self._group(name)
        if group is None:
            return False, f"no Auto Scaling group {name}"
        mixed = group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
        template = group.get("LaunchTemplate") or mixed
        if not template:
            return False, f"{name} has no launch template"
        return self._imdsv2({"LaunchTemplate": template, "group": group})

    def _cache_bucket(self, bucket: str) -> tuple[bool, str]:
        problems = []
        try:
            block = self.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except ClientError as error:
            if error_code(error) != "NoSuchPublicAccessBlockConfiguration":
                raise
            block = {}
        if not all(block.get(flag) for flag in PUBLIC_ACCESS_FLAGS):
            problems.append("public access is not blocked on all four settings")
        try:
            self.s3.get_bucket_encryption(Bucket=bucket)
        except ClientError as error:
            if error_code(error) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            problems.append("no default encryption")
        try:
            rules = self.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except ClientError as error:
            if error_code(error) != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        days = [
            r["Expiration"]["Days"] for r in rules if r.get("Status") == "Enabled" and "Days" in r.get("Expiration", {})
        ]
        if not days:
            problems.append("no lifecycle rule expires cached objects")
        if problems:
            return False, f"{bucket}: " + "; ".join(problems)
        return True, f"{bucket}: public access blocked, encrypted, objects expire after {min(days)} days"

    def _online_row(self, runner: Runner, gitlab: tuple[str, str] | None) -> None:
        name = f"{runner.label} online in GitLab"
        if not self.outputs.get(runner.id):
            self.skip(name, self._absent_runner(runner, runner.id))
        elif gitlab is None:
            self.skip(name, "no GITLAB_TOKEN in the environment")
        else:
            self.check(name, lambda: self._online(runner, *gitlab))

    def _in_service(self, runner: Runner, found: dict[str, Any]) -> tuple[bool, str]:
        name = self.outputs[runner.asg]
        group = self._group(name)
        if group is None:
            return False, f"no Auto Scaling group {name}"
        instances = group.get("Instances", [])
        serving = [i for i in instances if i.get("LifecycleState") == "InService"]
        if len(serving) != 1:
            states = ", ".join(f"{i['InstanceId']} {i.get('LifecycleState')}" for i in instances) or "none"
            return False, f"{len(serving)} instances InService in {name}, expected 1 (instances: {states})"
        found.update(serving[0], group=group)
        return True, f"{serving[0]['InstanceId']} in {name}"

    def _imdsv2(self, instance: dict[str, Any]) -> tuple[bool, str]:
        if not instance:
            return False, "no instance in service to check"
        template = instance.get("LaunchTemplate") or instance["group"].get("LaunchTemplate")
        if not template:
            return False, "the instance has no launch template"
        version = str(template.get("Version", "$Default"))
        data = self.ec2.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=[version]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        tokens = data.get("MetadataOptions", {}).get("HttpTokens", "optional")
        where = f"{template['LaunchTemplateId']} version {version}"
        if tokens != "required":
            return False, f"launch template {where} lets the host use IMDSv1 (HttpTokens {tokens}) (R6)"
        return True, f"launch template {where}: HttpTokens required"

    def _token_parameter(self, runner: Runner) -> tuple[bool, str]:
        name = self.outputs.get(runner.token_parameter)
        if not name:
            return False, f"no {runner.token_parameter} output: the host's token parameter is not known"
        found = self.ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
        if not found:
            return False, f"parameter {name} does not exist: the host cannot read its token"
        kind = found[0]["Type"]
        if kind != "SecureString":
            return False, f"parameter {name} is a {kind}: the token is stored unencrypted (R1)"
        return True, f"{name} is a SecureString"

    def _scan_on_push(self, repository: str) -> tuple[bool, str]:
        try:
            self.ecr.describe_repositories(repositoryNames=[repository])
        except ClientError as error:
            if error_code(error) == "RepositoryNotFoundException":
                return False, f"repository {repository} does not exist"
            raise
        # The registry's scanning configuration decides what is scanned; the repository's own
        # scanOnPush is deprecated and not what shipyard sets (R21).
        found = self.ecr.get_registry_scanning_configuration().get("scanningConfiguration", {})
        scan_type = found.get("scanType", "BASIC")
        if registry_scans(scan_type, found.get("rules", []), repository):
            return True, f"{repository} is scanned by the registry's {scan_type.lower()} scanning"
        return False, (
            f"the registry's {scan_type.lower()} scanning configuration does not scan images pushed to "
            f"{repository} (R21)"
        )

    def _lifecycle(self, repository: str) -> tuple[bool, str]:
        try:
            self.ecr.get_lifecycle_policy(repositoryName=repository)
        except ClientError as error:
            if error_code(error) in ("LifecyclePolicyNotFoundException", "RepositoryNotFoundException"):
                return False, f"repository {repository} has no lifecycle policy: images pile up"
            raise
        return True, f"{repository} has a lifecycle policy"

    def _signing_key(self, key: str) -> tuple[bool, str]:
        meta = self.kms.describe_key(KeyId=key)["KeyMetadata"]
        state = meta.get("KeyState") or ("Enabled" if meta.get("Enabled") else "Disabled")
        spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec")
        usage = meta.get("KeyUsage")
        problems = []
        if state != "Enabled":
            problems.append(f"it is {state}: KMS signs nothing with it")
        if spec != KEY_SPEC:
            problems.append(f"its KeySpec is {spec}, not {KEY_SPEC}")
        if usage != KEY_USAGE:
            problems.append(f"its KeyUsage is {usage}, not {KEY_USAGE}")
        if problems:
            if spec != KEY_SPEC or usage != KEY_USAGE:
                problems.append("KeySpec and KeyUsage are fixed at creation: the key must be replaced")
            return False, f"signing key {key}: " + "; ".join(problems)
        return True, f"{key}: Enabled, {spec}, {usage}"

    def _sign_policy(self, key: str) -> tuple[bool, str]:
        """The key policy's Allow statements, and the key's grants, against the release runner's role:
        no one else may kms:Sign, and no one may kms:CreateGrant (which can hand kms:Sign out).
        Strict by design: conditions and Deny statements are not weighed, so a statement that allows
        another principal fails even where a condition or a Deny would narrow it."""
        # The jobs' role signs: the workers' in fleet mode (R15); a stack deployed before that output
        # existed ran its jobs on the host, whose role is runnerRoleArn.
        signer = str(self.outputs.get("runnerJobRoleArn") or self.outputs.get("runnerRoleArn") or "") or None
        text = self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
        try:
            document = json.loads(text)
        except ValueError:
            return False, f"the key policy of {key} is not JSON"
        others: list[str] = []
        signs: list[str] = []
        for statement in _statements(document):
            sid = str(statement.get("Sid") or "a statement without Sid")
            for action in _allowed(statement, (SIGN_ACTION, CREATE_GRANT_ACTION)):
                for principal in _principals(statement):
                    if action == SIGN_ACTION and principal == signer:
                        signs.append(sid)
                    else:
                        others.append(f"the key policy lets {_who(principal)} {action} ({sid})")
        for page in self.kms.get_paginator("list_grants").paginate(KeyId=key):
            for grant in page.get("Grants", []):
                grantee = grant.get("GranteePrincipal") or grant.get("GranteeServicePrincipal") or "?"
                for operation in ("Sign", "CreateGrant"):
                    if operation in grant.get("Operations", []) and not (operation == "Sign" and grantee == signer):
                        others.append(f"grant {grant.get('GrantId')} lets {grantee} kms:{operation}")
        only = f"only the release runner's role {signer}" if signer else "no principal (no release runner here)"
        if others:
            return False, "; ".join(others) + f": {only} may sign (G11)"
        if signer and not signs:
            return False, f"the key policy does not let the release runner's role {signer} sign: releases go unsigned"
        where = f" ({', '.join(signs)})" if signs else ""
        return True, f"{only} may {SIGN_ACTION}{where}; no grant hands it out"

    def _live_public_key(self, key: str, cache: dict[str, bytes]) -> bytes:
        if key not in cache:
            cache[key] = bytes(self.kms.get_public_key(KeyId=key)["PublicKey"])
        return cache[key]

    def _compare(self, key: str, cache: dict[str, bytes], pem: Any, where: str) -> tuple[bool, str]:
        try:
            live = self._live_public_key(key, cache)
        except ClientError as error:
            if error_code(error) == "UnsupportedOperationException":
                return False, f"KMS has no public key for {key}: not an asymmetric key ({error_code(error)})"
            raise
        carried = pem_der(pem)
        if carried is None:
            return False, f"{where} is not a PEM public key: cosign verify cannot use it"
        if carried != live:
            return False, (
                f"{where} ({fingerprint(carried)}) is not the public key of {key} ({fingerprint(live)}): "
                "cosign verify would refuse every release signature"
            )
        return True, f"{where} is the public key of the signing key ({fingerprint(live)})"

    def _public_key(self, key: str, cache: dict[str, bytes]) -> tuple[bool, str]:
        return self._compare(key, cache, self.outputs.get("imageSigningPublicKey"), "imageSigningPublicKey")

    def _ci_public_key(self, url: str, token: str, key: str, cache: dict[str, bytes]) -> tuple[bool, str]:
        import gitlab

        project = str(self.outputs["gitlabProject"])
        client = gitlab.Gitlab(url=url, private_token=token, timeout=30)
        try:  # the unscoped variable, as infra/__main__.py creates it
            found = client.projects.get(project, lazy=True).variables.get(
                PUBLIC_KEY_VARIABLE, filter={"environment_scope": "*"}
            )
        except gitlab.exceptions.GitlabError as error:
            return False, f"GitLab at {url} answered {error.response_code} for {PUBLIC_KEY_VARIABLE} of {project}"
        return self._compare(key, cache, getattr(found, "value", None), f"{PUBLIC_KEY_VARIABLE} in {project}")

    def _online(self, runner: Runner, url: str, token: str) -> tuple[bool, str]:
        import gitlab

        runner_id = int(self.outputs[runner.id])
        try:
            found = gitlab.Gitlab(url=url, private_token=token, timeout=30).runners.get(runner_id)
        except gitlab.exceptions.GitlabError as error:
            return False, f"GitLab at {url} answered {error.response_code} for runner {runner_id}"
        status = getattr(found, "status", "unknown")
        if status != "online":
            return False, f"{runner.label} {runner_id} is {status} in GitLab: its host has not contacted GitLab lately"
        return True, f"{runner.label} {runner_id} is online"


# --- review apps: a key that cannot reach staging or production, now or later ----------------------

# Platform API paths (infra/facts/heroku-registry.yaml, platform_api.endpoints app_info and
# team_app_info; tests/ops/test_verify_review.py routes its fake by those facts).
APP_INFO = "/apps/{app}"
TEAM_APP_INFO = "/teams/apps/{app}"
# The review jobs' key, and the operator's, which may read the apps' team settings.
REVIEW_KEY_VARIABLE = "HEROKU_REVIEW_API_KEY"
OPERATOR_KEY_VARIABLE = "HEROKU_API_KEY"
NO_REVIEW_APPS = "no reviewAppPrefix output: this stack has no review apps (shipyard:review is not set)"
# A probe of one app with one key: (result, detail).
AppProbe = Callable[[str, str], tuple[str, str]]


def review_key_checks(
    outputs: Mapping[str, Any],
    review_key: str | None,
    production_app: str | None,
    api: str = HEROKU_API,
    timeout: float = 15,
) -> list[Check]:
    """The review jobs' Heroku key refused on this stack's (staging) app and on production's: review
    jobs run the code of any merge request, so their key must belong to a team member without access
    to either. Sends the key to Heroku only, never prints it."""

    def probe(app: str, key: str) -> tuple[str, str]:
        ok, detail = _review_key_refused(app, key, api, timeout)
        return (PASS if ok else FAIL), detail

    return _app_checks(
        "review key refused on the {} app", outputs, production_app, review_key, REVIEW_KEY_VARIABLE, probe
    )


def app_lock_checks(
    outputs: Mapping[str, Any],
    operator_key: str | None,
    production_app: str | None,
    api: str = HEROKU_API,
    timeout: float = 15,
) -> list[Check]:
    """The staging and production apps locked in their team: a refusal of the review key today does
    not stop its member from `heroku apps:join`-ing an unlocked team app tomorrow. Asked with the
    operator's key (HEROKU_API_KEY), sent to Heroku only, never printed."""

    def probe(app: str, key: str) -> tuple[str, str]:
        return _app_locked(app, key, api, timeout)

    return _app_checks("{} app locked", outputs, production_app, operator_key, OPERATOR_KEY_VARIABLE, probe)


def _app_checks(
    name: str,
    outputs: Mapping[str, Any],
    production_app: str | None,
    key: str | None,
    variable: str,
    probe: AppProbe,
) -> list[Check]:
    """One row per app (staging, production), each skipped with the reason when the stack has no
    review apps, the key is not in the environment or the app is not known."""
    apps = (("staging", outputs.get("herokuAppName")), ("production", production_app))
    names = [name.format(environment) for environment, _ in apps]
    if not outputs.get("reviewAppPrefix"):
        return [Check(row, SKIP, NO_REVIEW_APPS) for row in names]
    if not key:
        return [Check(row, SKIP, f"no {variable} in the environment") for row in names]
    checks = []
    for row, (environment, app) in zip(names, apps, strict=True):
        if not app:
            where = "pass --production-app NAME" if environment == "production" else "no herokuAppName output"
            checks.append(Check(row, SKIP, f"the {environment} app is not known: {where}"))
            continue
        result, detail = probe(str(app), key)
        checks.append(Check(row, result, detail))
    return checks


def _heroku_get(api: str, template: str, app: str, key: str, timeout: float) -> tuple[int, bytes]:
    """GET one app's resource with `key`: the status and body, error statuses included (their body
    is not needed). Raises OSError when the API cannot be reached."""
    request = urllib.request.Request(
        api + template.format(app=urllib.parse.quote(app, safe="")),
        headers={"Accept": HEROKU_ACCEPT, "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def _unreachable(api: str, error: OSError) -> str:
    return f"cannot reach the Heroku API at {api}: {getattr(error, 'reason', error)}"


def _review_key_refused(app: str, key: str, api: str, timeout: float) -> tuple[bool, str]:
    try:
        status, _ = _heroku_get(api, APP_INFO, app, key, timeout)
    except OSError as error:  # URLError, a timeout, a refused connection
        return False, _unreachable(api, error)
    if status in REFUSED:
        return True, f"Heroku refuses the review key on {app} (HTTP {status})"
    if status == 200:
        return False, f"the review key can read {app}: it belongs to a member with access to staging/production"
    if status == 401:
        return False, (
            f"Heroku does not accept {REVIEW_KEY_VARIABLE} (HTTP 401): it is revoked, expired or mistyped; "
            "make a long-lived one as the review member with `heroku authorizations:create` (H9)"
        )
    return False, f"Heroku answered HTTP {status} for {app}: neither a refusal nor access"


def _app_locked(app: str, key: str, api: str, timeout: float) -> tuple[str, str]:
    """PASS for a locked team app, SKIP for an app outside any team (no member can join it), FAIL for
    an unlocked team app and for an app the operator's key cannot find: a mistyped name must not
    pass for a refused review key (404 there) and a skipped lock at once."""
    try:
        status, body = _heroku_get(api, APP_INFO, app, key, timeout)
        if status == 200 and isinstance(_json_field(body, "team"), dict):
            status, body = _heroku_get(api, TEAM_APP_INFO, app, key, timeout)
        elif status == 200:
            return SKIP, (
                f"{app} is not a team app (no `team` in Heroku's answer): no team member can join an app "
                "outside a team; only its collaborators reach it, and the review-key check covers those"
            )
    except OSError as error:
        return FAIL, _unreachable(api, error)
    if status == 401:
        return FAIL, (
            f"Heroku does not accept {OPERATOR_KEY_VARIABLE} (HTTP 401): it is revoked, expired or "
            "mistyped, so the lock is unknown"
        )
    if status == 404:
        return FAIL, (
            f"Heroku has no app {app} that {OPERATOR_KEY_VARIABLE} can see (HTTP 404): check the name "
            "(herokuAppName, --production-app), or use the key of one of its team's admins"
        )
    if status != 200:
        return FAIL, f"Heroku answered HTTP {status} to {OPERATOR_KEY_VARIABLE} for app {app}: the lock is unknown"
    locked = _json_field(body, "locked")
    if locked is True:
        return PASS, f"{app} is locked: only team admins and members given access to it can join it"
    if locked is False:
        return FAIL, (
            f"{app} is a team app and not locked: any member of its team, the review key's included, "
            f"can `heroku apps:join` it; lock it as an admin: `heroku apps:lock --app {app}`"
        )
    return FAIL, f"Heroku's answer for team app {app} has no `locked` true or false ({locked!r}): the lock is unknown"


def _json_field(body: bytes, field: str) -> Any:
    """A field of a JSON object, None when the body is not one or lacks it."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get(field) if isinstance(document, dict) else None
