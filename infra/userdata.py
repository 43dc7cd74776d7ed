"""Renders the runner host's user data from the real files in runner_userdata/: the cloud-config
template filled with the scripts and the host's settings, gzipped and base64-encoded for a launch
template (R9). Holds names and numbers only; the token is read from SSM on the host (R1)."""

from __future__ import annotations

import base64
import gzip
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

USERDATA_DIR = Path(__file__).resolve().parent.parent / "runner_userdata"
# EC2 refuses launch-template user data over 16 KB (decoded); cloud-init reads gzip (R9).
MAX_USER_DATA_BYTES = 16 * 1024


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

    def env_file(self) -> str:
        lines = []
        for key, value in asdict(self).items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            lines.append(f"{key.upper()}={shlex.quote(text)}")
        return "\n".join(lines) + "\n"


def _fill(node: Any, host: RunnerHost) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, host) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, host) for v in node]
    if node == "@runner-env":
        return host.env_file()
    if isinstance(node, str) and node.startswith("@file "):
        return (USERDATA_DIR / node.removeprefix("@file ")).read_text()
    return node


class _Dumper(yaml.SafeDumper):
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
