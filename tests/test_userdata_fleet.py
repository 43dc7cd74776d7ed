"""A fleet manager's user data (R15): the cloud-config cloud-init accepts, and the config.toml that
bootstrap.sh writes from it, run for real against the stubs of tests/runner_userdata: the
docker-autoscaler executor with the pinned fleeting plugin installed before the service starts, only
keys the autoscaler fact file documents, the token in config.toml alone. A host renders as before."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import facts
from infra.userdata import AUTOSCALER_FACTS, USERDATA_DIR, FleetHost, RunnerHost, render_cloud_config
from tests.runner_userdata.harness import (
    GITLAB_KEY,
    HOST,
    TOKEN,
    Host,
    Result,
    SignedRelease,
    Stubs,
    abandoned,
    hook_calls,
)
from tests.test_userdata import cloud_init_schema

POLICIES = [
    {"periods": ["* 7-19 * * mon-fri"], "timezone": "Europe/Berlin", "idle_count": 2, "idle_time": "30m"},
    {"periods": ["* * * * sat", "* * * * sun"], "timezone": "UTC", "idle_count": 0, "idle_time": "20m"},
]
FLEET = FleetHost(
    asg_name="shipyard-staging-runner-workers",
    region="eu-west-1",
    cache_bucket="shipyard-staging-runner-cache",
    max_instances=10,
    policies=POLICIES,
)
MANAGER = replace(HOST, fleet=FLEET)
PLUGIN = "registry.gitlab.com/gitlab-org/fleeting/plugins/aws:1.1.0"  # the fact file's repository and tag


def written(host: RunnerHost) -> dict[str, str]:
    """The files of the host's cloud-config, by path."""
    return {f["path"]: f["content"] for f in yaml.safe_load(render_cloud_config(host))["write_files"]}


def runner_env(host: RunnerHost) -> dict[str, str]:
    return dict(line.split("=", 1) for line in host.env_file().splitlines() if "=" in line and line[0].isupper())


def as_written_by(host: Host, runner: RunnerHost) -> Host:
    """`host` with the runner.env and config template of `runner`'s user data, pinning the test key."""
    files = written(runner)
    etc = host.root / "etc/shipyard"
    (etc / "runner.env").write_text(files["/etc/shipyard/runner.env"].replace(GITLAB_KEY, host.fingerprint))
    (etc / "config.toml.tmpl").write_text(files["/etc/shipyard/config.toml.tmpl"])
    return host


@pytest.fixture(scope="session")
def _manager_boot(
    tmp_path_factory: pytest.TempPathFactory, signed_release: SignedRelease, stubs: Stubs
) -> tuple[Host, Result]:
    host = as_written_by(Host(tmp_path_factory.mktemp("fleet-manager"), signed_release, stubs), MANAGER)
    return host, host.run("bootstrap.sh")


@pytest.fixture
def manager(_manager_boot: tuple[Host, Result]) -> tuple[Host, Result, dict[str, Any]]:
    """A fleet manager after its first bootstrap, that run's result, and its config.toml as TOML."""
    host, result = _manager_boot
    assert result.code == 0, result.output
    return host, result, tomllib.loads(host.config.read_text())


def test_a_fleet_managers_cloud_config_passes_cloud_inits_own_schema(tmp_path: Path) -> None:
    path = tmp_path / "user-data.yaml"
    path.write_text(render_cloud_config(MANAGER))
    result = cloud_init_schema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_fleet_manager_gets_the_fleet_template_and_a_host_the_host_one() -> None:
    assert written(MANAGER)["/etc/shipyard/config.toml.tmpl"] == (USERDATA_DIR / "config-fleet.toml.tmpl").read_text()
    assert written(HOST)["/etc/shipyard/config.toml.tmpl"] == (USERDATA_DIR / "config.toml.tmpl").read_text()
    env = runner_env(MANAGER)
    assert env["EXECUTOR"] == "docker-autoscaler" and env["FLEET_ASG_NAME"] == FLEET.asg_name
    assert env["FLEET_PLUGIN"] == PLUGIN
    # A host's runner.env has no line it did not have before fleets: its launch template only
    # changes with the scripts.
    assert not [key for key in runner_env(HOST) if key == "EXECUTOR" or key.startswith("FLEET_")]
    assert runner_env(MANAGER).items() >= runner_env(HOST).items()


def test_the_plugin_is_the_one_the_autoscaler_facts_pin() -> None:
    plugin = facts.load(AUTOSCALER_FACTS)["plugin"]
    assert FLEET.plugin == f"{plugin['oci_repository']}:{plugin['oci_tag']}" == PLUGIN


def test_a_fleet_makes_the_host_a_docker_autoscaler_manager() -> None:
    assert (HOST.executor, MANAGER.executor) == ("docker", "docker-autoscaler")
    with pytest.raises(ValueError, match="an idle policy has the keys"):
        replace(FLEET, policies=[{"periods": ["* * * * *"], "idleCount": 1}])


def test_the_managers_config_toml_runs_each_job_on_a_worker_of_its_own(
    manager: tuple[Host, Result, dict[str, Any]],
) -> None:  # guards R15
    _, _, config = manager
    (runner,) = config["runners"]
    assert runner["executor"] == "docker-autoscaler" and runner["token"] == TOKEN
    assert config["concurrent"] == HOST.concurrent  # jobs at once across the fleet
    autoscaler = runner["autoscaler"]
    assert autoscaler["plugin"] == PLUGIN
    assert (autoscaler["capacity_per_instance"], autoscaler["max_use_count"]) == (1, 1)
    assert autoscaler["max_instances"] == 10
    assert autoscaler["plugin_config"] == {"name": "shipyard-staging-runner-workers"}
    assert autoscaler["connector_config"] == {"username": "ec2-user", "use_external_addr": False}
    assert autoscaler["policy"] == POLICIES
    assert runner["docker"]["privileged"] is True  # the build runner's jobs run Docker-in-Docker, on the worker


def test_the_managers_cache_is_the_s3_bucket_with_its_instance_profile(
    manager: tuple[Host, Result, dict[str, Any]],
) -> None:
    _, _, config = manager
    cache = config["runners"][0]["cache"]
    assert (cache["Type"], cache["Shared"]) == ("s3", True)
    assert cache["s3"] == {
        "ServerAddress": "s3.eu-west-1.amazonaws.com",
        "BucketName": "shipyard-staging-runner-cache",
        "BucketLocation": "eu-west-1",
        "AuthenticationType": "iam",
    }  # no AccessKey, no SecretKey


def documented_keys() -> dict[str, set[str]]:
    """The keys the autoscaler fact file documents, by config.toml table as the file names it:
    `runners_autoscaler_policy` for [[runners.autoscaler.policy]]. A key is one described by a
    mapping (type, meaning, line) that the docs list, not a note such as `region_from`."""
    doc = facts.load(AUTOSCALER_FACTS)
    if not isinstance(doc.get("config"), dict):
        pytest.fail(f"{facts.shown(AUTOSCALER_FACTS)} has no `config:` of documented config.toml keys by table")
    return {
        table: {key for key, fact in keys.items() if isinstance(fact, dict) and fact.get("documented", True)}
        for table, keys in doc["config"].items()
        if isinstance(keys, dict)
    }


def tables(node: dict[str, Any], path: str = "") -> dict[str, set[str]]:
    """Each table of a parsed config.toml (an array of tables once) and its keys that are values."""
    found: dict[str, set[str]] = {path: set()}
    for key, value in node.items():
        entries = value if isinstance(value, list) and value and isinstance(value[0], dict) else [value]
        for entry in entries:
            if isinstance(entry, dict):
                for table, keys in tables(entry, f"{path}.{key}".lstrip(".")).items():
                    found[table] = found.get(table, set()) | keys
            else:
                found[path].add(key)
    return found


def test_every_key_of_both_config_tomls_is_one_the_facts_document(
    manager: tuple[Host, Result, dict[str, Any]], booted_host_config: dict[str, Any]
) -> None:
    # The fact file documents the executor's tables; the top level and the [[runners]] entry's own
    # keys (name, url, token and its dates) are those a host has always written.
    documented = documented_keys()
    host = tables(booted_host_config)
    for config in (manager[2], booted_host_config):
        for table, keys in tables(config).items():
            section = table.replace(".", "_")
            if table in ("", "runners"):
                assert keys <= host[table] | documented.get(section, set()), table
            else:
                assert section in documented, f"[{table}] is not in {facts.shown(AUTOSCALER_FACTS)}"
                assert keys <= documented[section], (table, keys - documented[section])


@pytest.fixture
def booted_host_config(tmp_path: Path, signed_release: SignedRelease, stubs: Stubs) -> dict[str, Any]:
    """A host's config.toml, as bootstrap.sh writes it from its user data."""
    host = as_written_by(Host(tmp_path, signed_release, stubs), HOST)
    result = host.run("bootstrap.sh")
    assert result.code == 0, result.output
    assert "fleeting" not in " ".join(result.calls)
    return tomllib.loads(host.config.read_text())


def test_the_token_is_in_the_managers_config_toml_and_nowhere_else(
    manager: tuple[Host, Result, dict[str, Any]],
) -> None:  # guards R1
    host, result, _ = manager
    assert TOKEN not in result.output
    assert not [c for c in result.calls if TOKEN in c]
    for path, (content, _) in host.snapshot().items():
        assert path == "etc/gitlab-runner/config.toml" or TOKEN.encode() not in content, path


def test_the_plugin_is_installed_after_config_toml_and_before_the_service_starts(
    manager: tuple[Host, Result, dict[str, Any]],
) -> None:  # guards R15, R5
    host, result, _ = manager
    plugins = host.root / "var/lib/shipyard/fleeting-plugins"
    install = result.calls.index(f"gitlab-runner fleeting -c {host.config} install")
    runner_rpm = next(i for i, c in enumerate(result.calls) if c.startswith("dnf install") and "gitlab-runner_" in c)
    assert result.calls[runner_rpm + 1] == "dnf saw config.toml"
    assert runner_rpm < install < result.calls.index("systemctl restart gitlab-runner")
    assert install < result.calls.index("systemctl enable --now gitlab-runner")
    path = plugins / "registry.gitlab.com/gitlab-org/fleeting/plugins/aws/1.1.0/plugin"
    assert path.is_file()  # where FLEETING_PLUGIN_PATH, set by the bootstrap, told `fleeting install`
    # The service looks for the plugin where it was installed, and the AWS plugin reads its region
    # from the environment only.
    dropin = (host.root / "etc/systemd/system/gitlab-runner.service.d/shipyard.conf").read_text()
    assert f"Environment=AWS_REGION=eu-west-1 FLEETING_PLUGIN_PATH={plugins}\n" in dropin
    assert hook_calls(result)[0].endswith("CONTINUE")


def test_a_plugin_that_does_not_install_abandons_naming_it(
    tmp_path: Path, signed_release: SignedRelease, stubs: Stubs
) -> None:  # guards R15, R8
    host = as_written_by(Host(tmp_path, signed_release, stubs), MANAGER)
    result = host.run("bootstrap.sh", STUB_FLEETING_ERROR="registry.gitlab.com: connection refused")
    assert abandoned(result), result.output
    assert f"shipyard: fleeting plugin {PLUGIN}: gitlab-runner fleeting install failed (exit 1)" in result.output
    assert not [c for c in result.calls if c.endswith(" gitlab-runner") and c.startswith("systemctl")]
    assert "gitlab-runner verify" not in result.calls


def test_a_fleet_without_idle_policies_has_no_policy_table(
    tmp_path: Path, signed_release: SignedRelease, stubs: Stubs
) -> None:  # no warm workers: every job waits for its worker to start
    host = as_written_by(Host(tmp_path, signed_release, stubs), replace(MANAGER, fleet=replace(FLEET, policies=[])))
    result = host.run("bootstrap.sh")
    assert result.code == 0, result.output
    autoscaler = host.runner_entry()["autoscaler"]
    assert "policy" not in autoscaler and autoscaler["max_instances"] == 10


def test_a_second_run_leaves_the_installed_plugin_and_the_service_as_they_are(
    tmp_path: Path, signed_release: SignedRelease, stubs: Stubs
) -> None:
    host = as_written_by(Host(tmp_path, signed_release, stubs), MANAGER)
    assert host.run("bootstrap.sh").code == 0
    before = host.snapshot()
    second = host.run("bootstrap.sh")
    assert second.code == 0, second.output
    assert host.snapshot() == before
    assert f"gitlab-runner fleeting -c {host.config} install" in second.calls
    assert "plugin:" not in second.output  # `fleeting install` skips a plugin it finds installed
    assert "systemctl restart gitlab-runner" not in second.calls
