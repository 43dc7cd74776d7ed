"""The runner host's scripts, run for real: bash, a temporary root, and stub `aws`, `curl`,
`gitlab-runner`, `systemctl`, `dnf`, `rpm` on PATH that record every call."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.userdata import USERDATA_DIR, RunnerHost

STUBS = Path(__file__).resolve().parent / "stubs"
TOKEN = "glrt-t3stT0kenValue_abcdef123"
ROTATED = "glrt-r0tatedByRunner_987654"
HOST = RunnerHost(
    aws_region="eu-west-1",
    token_parameter="/shipyard/staging/gitlab-runner-token",
    token_version=1,
    asg_name="shipyard-staging-runner",
    launch_hook="shipyard-launch",
    terminate_hook="shipyard-terminate",
    gitlab_url="https://gitlab.example.com",
    runner_name="shipyard-staging",
    concurrent=4,
    maximum_timeout=3600,
    privileged=True,
    gitlab_runner_version="19.1.1",
    docker_version="25.0.*",
)


@dataclass
class Result:
    code: int
    output: str  # stdout and stderr
    calls: list[str]


class Host:
    """A temporary root laid out as cloud-init leaves the instance, and a way to run a script."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.state = tmp / "stub-state"
        self.log = tmp / "calls.log"
        (self.root / "etc/shipyard").mkdir(parents=True)
        self.state.mkdir()
        (self.root / "etc/shipyard/runner.env").write_text(HOST.env_file())
        (self.root / "etc/shipyard/config.toml.tmpl").write_text((USERDATA_DIR / "config.toml.tmpl").read_text())
        (self.root / "etc/machine-id").write_text("0" * 32)  # as baked into an AMI
        self.env = {
            "PATH": f"{STUBS}:{os.environ['PATH']}",
            "SHIPYARD_ROOT": str(self.root),
            "SHIPYARD_LIB": str(USERDATA_DIR / "lib.sh"),
            "SHIPYARD_STOP": str(STUBS / "shipyard-stop"),
            "STUB_LOG": str(self.log),
            "STUB_STATE": str(self.state),
            "STUB_TOKEN": TOKEN,
            "HEARTBEAT_SECONDS": "0.1",
        }

    @property
    def config(self) -> Path:
        return self.root / "etc/gitlab-runner/config.toml"

    def run(self, script: str, **env: str) -> Result:
        self.log.write_text("")
        proc = subprocess.run(
            ["bash", str(USERDATA_DIR / script)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Result(proc.returncode, proc.stdout + proc.stderr, self.log.read_text().splitlines())

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {
            str(p.relative_to(self.root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def hook_calls(result: Result) -> list[str]:
    return [c for c in result.calls if c.startswith("aws autoscaling complete-lifecycle-action")]


def test_bootstrap_puts_the_token_in_config_toml_and_nowhere_else(host: Host) -> None:  # guards R1
    result = host.run("bootstrap.sh")
    assert result.code == 0, result.output
    config = host.config.read_text()
    assert f'token = "{TOKEN}"' in config
    assert 'url = "https://gitlab.example.com"' in config and "concurrent = 4" in config
    assert "privileged = true" in config and 'name = "shipyard-staging-i-0123456789abcdef0"' in config
    assert stat.S_IMODE(host.config.stat().st_mode) == 0o600
    assert TOKEN not in result.output
    assert not [c for c in result.calls if TOKEN in c]  # no command ever gets it as an argument
    for path, (content, _) in host.snapshot().items():
        assert path == "etc/gitlab-runner/config.toml" or TOKEN.encode() not in content, path


def test_bootstrap_reads_the_token_with_decryption_and_completes_the_launch_hook(host: Host) -> None:
    result = host.run("bootstrap.sh")  # guards R8
    assert any(
        c.startswith("aws ssm get-parameter --name /shipyard/staging/gitlab-runner-token --with-decryption")
        for c in result.calls
    )
    (hook,) = hook_calls(result)
    assert "--lifecycle-hook-name shipyard-launch" in hook and hook.endswith("--lifecycle-action-result CONTINUE")
    assert "--auto-scaling-group-name shipyard-staging-runner" in hook
    verify = result.calls.index("gitlab-runner verify")
    assert verify < result.calls.index(hook)


def test_config_exists_before_gitlab_runner_is_installed_and_started(host: Host) -> None:  # guards R5
    result = host.run("bootstrap.sh")
    install = next(i for i, c in enumerate(result.calls) if c.startswith("dnf install") and "gitlab-runner_amd64" in c)
    assert result.calls[install + 1] == "dnf saw config.toml"
    assert "dnf install -y -q docker-25.0.*" in result.calls  # guards R12
    assert any("/v19.1.1/rpm/gitlab-runner_amd64.rpm" in c for c in result.calls if c.startswith("curl"))


def test_machine_id_is_regenerated_once_per_instance(host: Host) -> None:  # guards R4
    host.run("bootstrap.sh")
    first = (host.root / "etc/machine-id").read_text()
    assert first != "0" * 32
    host.run("bootstrap.sh")
    assert (host.root / "etc/machine-id").read_text() == first


def test_graceful_stop_is_configured_for_the_longest_job(host: Host) -> None:  # guards R7
    host.run("bootstrap.sh")
    dropin = (host.root / "etc/systemd/system/gitlab-runner.service.d/shipyard.conf").read_text()
    assert "KillSignal=SIGQUIT" in dropin and "TimeoutStopSec=3900" in dropin


def test_missing_parameter_abandons_the_instance(host: Host) -> None:  # guards R8
    result = host.run("bootstrap.sh", STUB_SSM_MISSING="1")
    assert result.code != 0
    (hook,) = hook_calls(result)
    assert hook.endswith("--lifecycle-action-result ABANDON")
    assert not host.config.exists()
    assert "gitlab-runner verify" not in result.calls


def test_failing_verify_abandons_the_instance_without_leaking_the_token(host: Host) -> None:  # guards R8
    result = host.run("bootstrap.sh", STUB_VERIFY_RC="1")
    assert result.code != 0
    (hook,) = hook_calls(result)
    assert hook.endswith("--lifecycle-action-result ABANDON")
    assert TOKEN not in result.output


def test_a_second_run_changes_nothing(host: Host) -> None:
    assert host.run("bootstrap.sh").code == 0
    before = host.snapshot()
    second = host.run("bootstrap.sh")
    assert second.code == 0, second.output
    assert host.snapshot() == before
    assert not [c for c in second.calls if c.startswith("dnf install")]


def test_a_rotated_token_survives_a_reboot(host: Host) -> None:  # guards R16
    host.run("bootstrap.sh")
    host.config.write_text(host.config.read_text().replace(TOKEN, ROTATED))
    assert host.run("bootstrap.sh").code == 0
    assert f'token = "{ROTATED}"' in host.config.read_text()


def test_a_new_token_in_the_parameter_replaces_the_old_one(host: Host) -> None:
    host.run("bootstrap.sh")
    host.config.write_text(host.config.read_text().replace(TOKEN, ROTATED))
    new = "glrt-newRunnerAfterReplace_42"
    assert host.run("bootstrap.sh", STUB_TOKEN=new, STUB_TOKEN_VERSION="2").code == 0
    assert f'token = "{new}"' in host.config.read_text()


def test_a_parameter_without_a_runner_token_abandons(host: Host) -> None:
    result = host.run("bootstrap.sh", STUB_TOKEN="not-a-runner-token")
    assert result.code != 0
    assert hook_calls(result)[0].endswith("ABANDON")


def test_stop_drains_then_unregisters_this_manager_then_completes_the_hook(host: Host) -> None:  # guards R3, R7
    result = host.run("stop.sh")
    assert result.code == 0, result.output
    stop = result.calls.index("systemctl stop gitlab-runner")
    unregister = result.calls.index("gitlab-runner unregister --all-runners")
    (hook,) = hook_calls(result)
    assert stop < unregister < result.calls.index(hook)
    assert "--lifecycle-hook-name shipyard-terminate" in hook and hook.endswith("CONTINUE")
    assert not [c for c in result.calls if "DELETE" in c or "/runners" in c]


def test_lifecycle_watch_starts_the_stop_when_the_group_terminates_the_host(host: Host) -> None:
    result = host.run("lifecycle-watch.sh", STUB_LIFECYCLE_STATE="Terminated", WATCH_INTERVAL="0.1")
    assert result.code == 0
    assert result.calls[-1] == "shipyard-stop"


def test_lifecycle_watch_stays_quiet_once_the_host_has_stopped(host: Host) -> None:
    assert host.run("stop.sh").code == 0
    host.log.write_text("")
    watch = subprocess.Popen(
        ["bash", str(USERDATA_DIR / "lifecycle-watch.sh")],
        env={**host.env, "STUB_LIFECYCLE_STATE": "Terminated", "WATCH_INTERVAL": "0.05"},
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            watch.wait(timeout=1)
    finally:
        watch.kill()
        watch.wait()
    assert "shipyard-stop" not in host.log.read_text().splitlines()


def test_docker_prune_clears_old_data_and_more_when_the_disk_fills(host: Host) -> None:  # guards R11
    calm = host.run("docker-prune.sh", PRUNE_URGENT_PERCENT="101")
    assert "docker system prune --all --force --filter until=72h" in calm.calls
    assert "docker builder prune --force --filter until=72h" in calm.calls
    urgent = host.run("docker-prune.sh", PRUNE_URGENT_PERCENT="0")
    assert "docker system prune --all --force --filter until=1h" in urgent.calls


def test_no_script_traces_its_commands() -> None:  # guards R1
    for script in USERDATA_DIR.glob("*.sh"):
        for line in script.read_text().splitlines():
            assert not line.strip().startswith("set -") or "x" not in line.split()[1], f"{script.name}: {line}"
