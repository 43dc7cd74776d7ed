"""The runner's user data: real files rendered into a cloud-config that cloud-init accepts, small
enough for EC2, stable across runs, and free of any secret."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra import facts
from infra.offline.engine import Step
from infra.userdata import MAX_USER_DATA_BYTES, USERDATA_DIR, RunnerRelease, decode, encode, render_cloud_config
from tests.conftest import ROOT, run_stack
from tests.runner_userdata.harness import HOST, STUBS
from tests.system_tools import require

CANARY_KEY = "HRKU-userDataCanary0000"


def cloud_init_schema(path: Path) -> subprocess.CompletedProcess[str]:
    cloud_init = require("cloud-init", "cloud-init", "its schema check of the user data")
    return subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True)


def test_rendered_cloud_config_passes_cloud_inits_own_schema(tmp_path: Path) -> None:
    path = tmp_path / "user-data.yaml"
    path.write_text(render_cloud_config(HOST))
    result = cloud_init_schema(path)
    assert result.returncode == 0, result.stdout + result.stderr
    # "Valid cloud-config: …" (cloud-init 22, Debian 12) or "Valid schema …" (cloud-init 25, Debian 13)
    assert result.stdout.startswith("Valid "), result.stdout


def test_a_missing_cloud_init_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # CI sets CI=true and installs cloud-init: there a missing one is a broken job, not a reason to skip.
    def outcome() -> BaseException:
        try:
            cloud_init_schema(tmp_path / "user-data.yaml")
        except BaseException as stopped:  # pytest's fail and skip are not Exceptions
            return stopped
        raise AssertionError("cloud_init_schema ran without cloud-init")

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    failed = outcome()
    assert isinstance(failed, pytest.fail.Exception) and "cloud-init is missing" in str(failed)
    monkeypatch.delenv("CI")
    skipped = outcome()
    assert isinstance(skipped, pytest.skip.Exception)
    assert "cloud-init is not installed here (apt-get install cloud-init)" in str(skipped)


def test_cloud_init_schema_check_rejects_a_broken_config(tmp_path: Path) -> None:
    path = tmp_path / "user-data.yaml"
    path.write_text("#cloud-config\nwrite_files: {path: 42}\nruncmd: 7\n")
    assert cloud_init_schema(path).returncode != 0  # the check above can fail


def test_every_file_is_written_as_it_is_in_runner_userdata() -> None:
    doc = yaml.safe_load(render_cloud_config(HOST))
    written = {f["path"]: f for f in doc["write_files"]}
    assert written["/usr/local/sbin/shipyard-bootstrap"]["content"] == (USERDATA_DIR / "bootstrap.sh").read_text()
    assert written["/usr/local/sbin/shipyard-bootstrap"]["permissions"] == "0755"
    assert written["/etc/shipyard/config.toml.tmpl"]["permissions"] == "0600"
    assert "TOKEN_PARAMETER=/shipyard/staging/gitlab-runner-token" in written["/etc/shipyard/runner.env"]["content"]
    assert ["/usr/local/sbin/shipyard-bootstrap"] in doc["runcmd"]
    assert not [f for f in doc["write_files"] if str(f["content"]).startswith("@")]
    # guards R18: the rotated token also reaches the parameter between boots.
    assert written["/usr/local/sbin/shipyard-token-sync"]["content"] == (USERDATA_DIR / "token-sync.sh").read_text()
    assert ["systemctl", "enable", "--now", "shipyard-token-sync.timer"] in doc["runcmd"]
    # guards R18: the bootstrap reads GitLab's token expiry with this, next to lib.sh (LIB_DIR).
    answer = written["/usr/local/lib/shipyard/verify-answer.py"]
    assert answer["content"] == (USERDATA_DIR / "verify-answer.py").read_text()
    assert "/usr/local/lib/shipyard/lib.sh" in written


def test_the_host_downloads_what_the_release_facts_list_and_pins_gitlabs_key() -> None:  # guards R17
    env = dict(
        line.split("=", 1) for line in yaml.safe_load(render_cloud_config(HOST))["write_files"][0]["content"].split()
    )
    release = facts.load("gitlab-runner/19.1.1")
    assert env["GITLAB_RUNNER_DOWNLOADS"] == release["downloads"]
    assert env["GITLAB_RUNNER_RPM_X86_64"] == "rpm/gitlab-runner_x86_64.rpm" == release["rpm"]["x86_64"]
    assert env["GITLAB_RUNNER_RPM_AARCH64"] == "rpm/gitlab-runner_aarch64.rpm" == release["rpm"]["aarch64"]
    assert env["GITLAB_RUNNER_SIGNING_KEY_URL"] == release["signing_key"]["url"]
    # The fingerprint GitLab's docs give; the tests' hosts pin their throwaway key's instead.
    assert env["GITLAB_RUNNER_SIGNING_FINGERPRINT"] == "931DA69CFA3AFEBBC97DAA8C6C57C29C6BA75A4E"
    for name in ("GITLAB_RUNNER_HELPER_IMAGES_RPM", "GITLAB_RUNNER_CHECKSUMS", "GITLAB_RUNNER_SIGNATURE"):
        assert env[name] in release["files"]


def test_a_version_without_a_fact_file_or_with_an_unlisted_download_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # guards R17
    with pytest.raises(facts.FactError, match=r"no fact file infra/facts/gitlab-runner/18\.8\.0\.yaml"):
        RunnerRelease.of("18.8.0")
    doc = yaml.safe_load(facts.path_of("gitlab-runner/19.1.1").read_text())
    doc["rpm"]["x86_64"] = "rpm/gitlab-runner_amd64.rpm"
    (tmp_path / "gitlab-runner").mkdir()
    (tmp_path / "gitlab-runner/19.1.1.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(facts, "FACTS_DIR", tmp_path)
    facts.load.cache_clear()
    try:
        with pytest.raises(facts.FactError, match=r"rpm/gitlab-runner_amd64.rpm is not one of its files"):
            RunnerRelease.of("19.1.1")
    finally:
        facts.load.cache_clear()


def test_encoding_is_gzip_base64_and_stable_across_runs() -> None:
    # A timestamp in the gzip header would change the launch template, and replace the host, on every up.
    first, second = encode(render_cloud_config(HOST)), encode(render_cloud_config(HOST))
    assert first == second
    assert base64.b64decode(first)[:2] == b"\x1f\x8b"
    assert decode(first) == render_cloud_config(HOST)
    assert len(base64.b64decode(first)) <= MAX_USER_DATA_BYTES  # guards R9


def test_oversized_user_data_is_refused() -> None:  # guards R9
    with pytest.raises(ValueError, match="16384"):
        encode(base64.b64encode(os.urandom(20_000)).decode())


def test_plan_user_data_decodes_to_valid_cloud_config_without_any_secret(
    staging_doc: dict, tmp_path: Path
) -> None:  # guards R1
    run = run_stack(staging_doc, "staging", secrets={"shipyard:herokuApiKey": CANARY_KEY})

    def by_name(typ: str) -> dict[str, Step]:
        return {step.urn.rsplit("::", 1)[1]: step for step in run.resources(typ)}

    # The build stack has two runners, the release build runner and the review runner: each has its
    # own token parameter and launch template, and no host's user data may hold either token.
    parameters = by_name("aws:ssm/parameter:Parameter")
    templates = by_name("aws:ec2/launchTemplate:LaunchTemplate")
    runners = ("runner", "review-runner")
    assert sorted(parameters) == sorted(f"{runner}-token" for runner in runners)
    assert sorted(templates) == sorted(f"{runner}-lt" for runner in runners)
    tokens = []
    for parameter in parameters.values():
        inputs = parameter.raw_inputs
        token: str = inputs["valueWo"] if "valueWo" in inputs else inputs["value"]  # write-only or not
        assert token.startswith("glrt-")
        tokens.append(token)
    texts = {}
    for runner in runners:
        lt = templates[f"{runner}-lt"]
        text = decode(lt.inputs["userData"])  # what the plan JSON shows
        for secret in (*tokens, CANARY_KEY, "offline-placeholder"):
            assert secret not in text, runner
            assert secret not in json.dumps(lt.inputs), runner
            # nor in what reaches EC2, where a secret shown as [secret] in the plan is still plain
            assert secret not in json.dumps(lt.raw_inputs, default=str), runner
        assert not re.search(r"glrt-[A-Za-z0-9_-]{8,}|HRKU-[A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{16}", text), runner
        # The host reads its own runner's token, by the parameter's name only.
        assert f"TOKEN_PARAMETER={parameters[f'{runner}-token'].raw_inputs['name']}\n" in text, runner
        texts[runner] = text
    for runner, text in texts.items():
        path = tmp_path / f"plan-user-data-{runner}.yaml"
        path.write_text(text)
        assert cloud_init_schema(path).returncode == 0, runner


def test_every_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")
    stubs = [
        p
        for folder in (STUBS, ROOT / "tests" / "ci" / "stubs")
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix != ".py"
    ]
    # The host's scripts, the tests' stubs, and CI's: every shell script of the repository.
    scripts = [*USERDATA_DIR.glob("*.sh"), *stubs, ROOT / ".ci" / "run", *(ROOT / "scripts").glob("*.sh")]
    result = subprocess.run(
        [str(shellcheck), "-x", "-P", "SCRIPTDIR", *map(str, scripts)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
