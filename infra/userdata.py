"""Renders the runner host's user data from the real files in runner_userdata/: the cloud-config
template filled with the scripts and the host's settings, gzipped and base64-encoded for a launch
template (R9). Holds names and numbers only; the token is read from SSM on the host (R1). What the
host downloads comes from the gitlab-runner release's fact file (R17); a fleet manager's fleeting
plugin from infra/facts/gitlab-runner-autoscaler.yaml (R15)."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from infra import facts

USERDATA_DIR = Path(__file__).resolve().parent.parent / "runner_userdata"
# EC2 refuses launch-template user data over 16 KB (decoded); cloud-init reads gzip (R9).
MAX_USER_DATA_BYTES = 16 * 1024
# The config.toml template each executor's host writes; the bootstrap fills either the same way.
CONFIG_TEMPLATES = {"docker": "config.toml.tmpl", "docker-autoscaler": "config-fleet.toml.tmpl"}
AUTOSCALER_FACTS = "gitlab-runner-autoscaler"
IDLE_POLICY_KEYS = ("periods", "timezone", "idle_count", "idle_time")


@dataclass(frozen=True)
class RunnerRelease:
    """A gitlab-runner release as its fact file lists it: the files the host downloads, by the names
    GitLab publishes them under, and the key their checksums are signed with (R17)."""

    version: str
    downloads: str
    """Base URL of the release's files; every other field is a path under it, or the key's URL."""
    rpms: Mapping[str, str]
    """RPM per `uname -m` (x86_64, aarch64): GitLab names RPMs by RPM arch since 18.9.0."""
    helper_images_rpm: str
    checksums: str
    signature: str
    signing_key_url: str
    signing_key_fingerprint: str

    @classmethod
    def of(cls, version: str) -> RunnerRelease:
        """The release of infra/facts/gitlab-runner/<version>.yaml; FactError if it has none or the
        file names a download that its own file list does not."""
        name = f"gitlab-runner/{version}"
        doc = facts.load(name)
        key = doc["signing_key"]
        release = cls(
            version=version,
            downloads=doc["downloads"].rstrip("/"),
            rpms=dict(doc["rpm"]),
            helper_images_rpm=doc["helper_images_rpm"],
            checksums=doc["checksums"],
            signature=doc["signature"],
            signing_key_url=key["url"],
            signing_key_fingerprint=str(key["fingerprint"]).replace(" ", "").upper(),
        )
        problems = [f"version is {doc.get('version')!r}"] if str(doc.get("version")) != version else []
        listed = set(doc["files"])
        downloads = (*release.rpms.values(), release.helper_images_rpm, release.checksums, release.signature)
        problems += [f"{path} is not one of its files" for path in downloads if path not in listed]
        problems += [
            f"rpm arch {arch!r} is not a `uname -m`" for arch in release.rpms if not re.fullmatch(r"\w+", arch)
        ]
        if not re.fullmatch(r"[0-9A-F]{40}", release.signing_key_fingerprint):
            problems.append("signing_key.fingerprint is not 40 hex digits")
        if problems:
            raise facts.FactError(f"{name}.yaml: {'; '.join(problems)}")
        return release

    def env(self) -> dict[str, str]:
        """runner.env lines: the bootstrap picks GITLAB_RUNNER_RPM_<uname -m> and hard-codes no name."""
        return {
            "GITLAB_RUNNER_DOWNLOADS": self.downloads,
            **{f"GITLAB_RUNNER_RPM_{arch.upper()}": path for arch, path in sorted(self.rpms.items())},
            "GITLAB_RUNNER_HELPER_IMAGES_RPM": self.helper_images_rpm,
            "GITLAB_RUNNER_CHECKSUMS": self.checksums,
            "GITLAB_RUNNER_SIGNATURE": self.signature,
            "GITLAB_RUNNER_SIGNING_KEY_URL": self.signing_key_url,
            "GITLAB_RUNNER_SIGNING_FINGERPRINT": self.signing_key_fingerprint,
        }


def fleeting_plugin() -> str:
    """The AWS fleeting plugin as `[runners.autoscaler] plugin` names it: its OCI repository at the
    version the autoscaler fact file pins. An exact version pins both what `gitlab-runner fleeting
    install` fetches and what the runner runs (fleeting.md, "plugin_reference" in the facts)."""
    plugin = facts.load(AUTOSCALER_FACTS)["plugin"]
    return f"{plugin['oci_repository']}:{plugin['oci_tag']}"


@dataclass(frozen=True)
class FleetHost:
    """What a fleet manager (executor docker-autoscaler) reads from runner.env besides a host's
    values: the worker group it scales, the S3 cache and the idle policies (R15)."""

    asg_name: str
    """The workers' Auto Scaling group: `[runners.autoscaler.plugin_config] name`."""
    region: str
    """The group's and the cache bucket's region."""
    cache_bucket: str
    max_instances: int
    policies: list[dict[str, Any]] = field(default_factory=list)
    """Idle policies, each with the keys of IDLE_POLICY_KEYS as config.toml spells them:
    periods (cron strings), timezone, idle_count, idle_time (a Go duration)."""
    plugin: str = field(default_factory=fleeting_plugin)

    def __post_init__(self) -> None:
        for policy in self.policies:
            if set(policy) != set(IDLE_POLICY_KEYS):
                raise ValueError(f"an idle policy has the keys {sorted(policy)}; expected {list(IDLE_POLICY_KEYS)}")

    def policies_toml(self) -> str:
        """One `[[runners.autoscaler.policy]]` per idle policy, for the bootstrap to put in
        config.toml; JSON strings and arrays of strings are TOML's basic strings and arrays."""
        tables = []
        for policy in self.policies:
            lines = ["  [[runners.autoscaler.policy]]"]
            lines += [f"    {key} = {json.dumps(policy[key])}" for key in IDLE_POLICY_KEYS]
            tables.append("\n".join(lines))
        return "\n".join(tables)

    def env(self) -> dict[str, str]:
        _, dns_suffix = facts.aws_partition(self.region)
        return {
            "FLEET_PLUGIN": self.plugin,
            "FLEET_ASG_NAME": self.asg_name,
            "FLEET_MAX_INSTANCES": str(self.max_instances),
            "FLEET_REGION": self.region,
            "FLEET_CACHE_BUCKET": self.cache_bucket,
            # The bucket's own regional endpoint (s3.amazonaws.com is us-east-1's).
            "FLEET_CACHE_SERVER": f"s3.{self.region}.{dns_suffix}",
            "FLEET_POLICIES": self.policies_toml(),
        }


@dataclass(frozen=True)
class RunnerHost:
    """What the host's scripts read from /etc/shipyard/runner.env."""

    aws_region: str
    token_parameter: str
    token_version: int
    """The parameter's version: a new token changes the user data, so new hosts roll out."""
    asg_name: str
    launch_hook: str
    terminate_hook: str
    gitlab_url: str
    runner_name: str
    concurrent: int
    maximum_timeout: int
    privileged: bool
    gitlab_runner_version: str
    docker_version: str
    fleet: FleetHost | None = None
    """The worker fleet this host manages, or None: its jobs run on the host itself."""

    @property
    def executor(self) -> Literal["docker", "docker-autoscaler"]:
        """docker: jobs run on this host. docker-autoscaler: this host is a fleet manager, and each
        job runs on a worker of `fleet`'s Auto Scaling group (R15)."""
        return "docker" if self.fleet is None else "docker-autoscaler"

    @property
    def release(self) -> RunnerRelease:
        return RunnerRelease.of(self.gitlab_runner_version)

    def env_file(self) -> str:
        host = {key: value for key, value in asdict(self).items() if key != "fleet"}
        values = {key.upper(): value for key, value in host.items()} | self.release.env()
        if self.fleet is not None:  # a host's runner.env stays as it was before fleets
            values |= {"EXECUTOR": self.executor} | self.fleet.env()
        lines = []
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            lines.append(f"{key}={shlex.quote(text)}")
        return "\n".join(lines) + "\n"


def _fill(node: Any, host: RunnerHost) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, host) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, host) for v in node]
    if node == "@runner-env":
        return host.env_file()
    if node == "@config-template":
        return (USERDATA_DIR / CONFIG_TEMPLATES[host.executor]).read_text()
    if isinstance(node, str) and node.startswith("@file "):
        return (USERDATA_DIR / node.removeprefix("@file ")).read_text()
    return node


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Multi-line strings as literal blocks, so the user data reads like the files it came from."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def render_cloud_config(host: RunnerHost) -> str:
    template = yaml.safe_load((USERDATA_DIR / "cloud-config.yaml").read_text())
    body = yaml.dump(_fill(template, host), Dumper=_Dumper, sort_keys=False, width=1000)
    return "#cloud-config\n" + body


def encode(cloud_config: str) -> str:
    """gzip (with a fixed timestamp, so the same input gives the same launch template) + base64."""
    raw = gzip.compress(cloud_config.encode(), mtime=0)
    if len(raw) > MAX_USER_DATA_BYTES:
        raise ValueError(f"runner user data is {len(raw)} bytes gzipped; EC2 allows {MAX_USER_DATA_BYTES} (R9)")
    return base64.b64encode(raw).decode()


def decode(user_data: str) -> str:
    return gzip.decompress(base64.b64decode(user_data)).decode()


def user_data(host: RunnerHost) -> str:
    return encode(render_cloud_config(host))
