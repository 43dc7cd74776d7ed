"""`shipyard verify`: the live resources of a deployed stack against what the stack says — the
runner host in service with IMDSv2 required, its token parameter a SecureString, the registry's
scanning configuration covering the repository under a lifecycle policy, and (with a GitLab token)
the runner online in GitLab.

Reads only: describe and get calls, never the token's value.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from policy.policies import registry_scans

PASS, FAIL, SKIP = "pass", "FAIL", "skip"


class VerifyError(Exception):
    """The stack's outputs cannot be read; nothing was checked."""


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # pass | FAIL | skip
    detail: str


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


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class Verify:
    def __init__(self, session: boto3.Session, region: str, outputs: Mapping[str, Any]) -> None:
        self.outputs = outputs
        self.autoscaling = session.client("autoscaling", region_name=region)
        self.ec2 = session.client("ec2", region_name=region)
        self.ssm = session.client("ssm", region_name=region)
        self.ecr = session.client("ecr", region_name=region)
        self.checks: list[Check] = []

    def check(self, name: str, probe: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = probe()
        except ClientError as error:
            ok, detail = False, f"{_code(error)}: {error.response.get('Error', {}).get('Message', '')}"
        self.checks.append(Check(name, PASS if ok else FAIL, detail))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, SKIP, why))

    def run(self, gitlab: tuple[str, str] | None) -> list[Check]:
        self.checks = []
        if self.outputs.get("runnerAsgName"):
            instance: dict[str, Any] = {}
            self.check("runner instance in service", lambda: self._in_service(instance))
            self.check("runner requires IMDSv2", lambda: self._imdsv2(instance))
            self.check("runner token is a SecureString", self._token_parameter)
        else:
            for name in ("runner instance in service", "runner requires IMDSv2", "runner token is a SecureString"):
                self.skip(name, "this stack has no runner")
        repository = str(self.outputs["registryUrl"]).split("/", 1)[-1]
        self.check("registry scans on push", lambda: self._scan_on_push(repository))
        self.check("registry has a lifecycle policy", lambda: self._lifecycle(repository))
        if not self.outputs.get("runnerId"):
            self.skip("runner online in GitLab", "this stack has no runner")
        elif gitlab is None:
            self.skip("runner online in GitLab", "no GITLAB_TOKEN in the environment")
        else:
            self.check("runner online in GitLab", lambda: self._online(*gitlab))
        return self.checks

    def _in_service(self, found: dict[str, Any]) -> tuple[bool, str]:
        name = self.outputs["runnerAsgName"]
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not groups:
            return False, f"no Auto Scaling group {name}"
        instances = groups[0].get("Instances", [])
        serving = [i for i in instances if i.get("LifecycleState") == "InService"]
        if len(serving) != 1:
            states = ", ".join(f"{i['InstanceId']} {i.get('LifecycleState')}" for i in instances) or "none"
            return False, f"{len(serving)} instances InService in {name}, expected 1 (instances: {states})"
        found.update(serving[0], group=groups[0])
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

    def _token_parameter(self) -> tuple[bool, str]:
        name = self.outputs.get("runnerTokenParameter", "")
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
            if _code(error) == "RepositoryNotFoundException":
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
            if _code(error) in ("LifecyclePolicyNotFoundException", "RepositoryNotFoundException"):
                return False, f"repository {repository} has no lifecycle policy: images pile up"
            raise
        return True, f"{repository} has a lifecycle policy"

    def _online(self, url: str, token: str) -> tuple[bool, str]:
        import gitlab

        runner_id = int(self.outputs["runnerId"])
        try:
            runner = gitlab.Gitlab(url=url, private_token=token, timeout=30).runners.get(runner_id)
        except gitlab.exceptions.GitlabError as error:
            return False, f"GitLab at {url} answered {error.response_code} for runner {runner_id}"
        status = getattr(runner, "status", "unknown")
        if status != "online":
            return False, f"runner {runner_id} is {status} in GitLab: its host has not contacted GitLab lately"
        return True, f"runner {runner_id} is online"
