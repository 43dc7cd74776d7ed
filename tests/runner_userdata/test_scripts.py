"""The runner host's scripts, run for real: bash, a temporary root, real gpg and sha256sum, and stub
`aws`, `curl`, `gitlab-runner`, `systemctl`, `dnf`, `rpm`, `uname`, `python3` on PATH that record
every call. The curl stub serves only what the gitlab-runner fact file lists (404 otherwise) and
answers GitLab's runner API only as infra/facts/gitlab-api.yaml describes it; the aws stub keeps SSM
parameters as the service does. The stubs are bash, reading what the fact files say from a folder
written once per session (stubs/_facts.py), so that no stub call starts Python."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

from infra import facts
from infra.userdata import USERDATA_DIR
from tests.runner_userdata.harness import (
    EXPIRES,
    FIRST_BOOT_ARCH,
    GITLAB_KEY,
    HOST,
    NEW,
    ROTATED,
    ROTATION_DATES,
    ROTATION_DATETIMES,
    RUNNER_ID,
    SYSTEM_ID,
    TOKEN,
    UTC,
    VERIFY_URL,
    Booted,
    Host,
    Result,
    SignedRelease,
    Stubs,
    abandoned,
    downloads,
    gitlab_api,
    hook_calls,
)


def test_bootstrap_puts_the_token_in_config_toml_and_nowhere_else(booted: Booted) -> None:  # guards R1
    host, result = booted.host, booted.first
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
    assert not list(host.tmp.iterdir())  # the downloads are cleaned up


def test_a_token_that_expires_gets_gitlabs_dates_in_config_toml(booted_expiring: Booted) -> None:  # guards R18
    # gitlab-runner rotates only a token whose [[runners]] entry has token_expires_at (nextRunnerToReset).
    # Before the run GitLab was set to answer EXPIRES, and gitlab-runner's system_id file written.
    host, result = booted_expiring.host, booted_expiring.first
    api = facts.load("gitlab-api")
    assert re.fullmatch(api["system_id_pattern"], SYSTEM_ID)
    assert (host.root / "etc/gitlab-runner" / api["system_id_file"]).read_text() == SYSTEM_ID
    assert result.code == 0, result.output
    entry = host.runner_entry()
    assert entry["token"] == TOKEN and entry["id"] == RUNNER_ID
    assert entry["token_expires_at"] == datetime.datetime(2027, 2, 1, 12, 30, tzinfo=UTC)
    assert booted_expiring.started <= entry["token_obtained_at"] <= booted_expiring.finished
    assert stat.S_IMODE(host.config.stat().st_mode) == 0o600
    assert "shipyard: the runner token expires at 2027-02-01T12:30:00Z" in result.output
    # guards R1: the body went to curl as a 0600 file, the answer to python3 on stdin; no argument,
    # no log line, no file left holds the token.
    (call,) = [c for c in result.calls if gitlab_api(c)]
    assert call.startswith("curl ") and " --data @" in call and call.endswith(f" {VERIFY_URL}")
    assert host.verify_requests() == [f"mode=600 keys=system_id,token system_id={SYSTEM_ID}"]
    assert [c for c in result.calls if c.startswith("python3 ")] == [f"python3 {USERDATA_DIR}/verify-answer.py"]
    assert not [c for c in result.calls if TOKEN in c] and TOKEN not in result.output
    for path, (content, _) in host.snapshot().items():
        assert path == "etc/gitlab-runner/config.toml" or TOKEN.encode() not in content, path
    assert not list(host.tmp.iterdir())


def test_a_token_without_expiry_gets_no_dates(booted: Booted) -> None:  # guards R18
    host, result = booted.host, booted.first  # GitLab answers token_expires_at: null, as with expiry off
    assert result.code == 0, result.output
    entry = host.runner_entry()
    assert entry["id"] == RUNNER_ID
    assert "token_obtained_at" not in entry and "token_expires_at" not in entry
    assert "shipyard: GitLab sets no expiry on the runner token" in result.output
    assert host.verify_requests() == ["mode=600 keys=token system_id=-"]  # no system_id before gitlab-runner made one


def test_gitlab_not_answering_the_expiry_leaves_the_dates_out_and_boots(host: Host) -> None:
    # guards R18, R8: the runner works without the dates, only it does not rotate; each boot asks again.
    host.expire_tokens_at(EXPIRES)
    for env, failure in (
        ({"STUB_GITLAB_STATUS": "503"}, "HTTP 503, curl exit 0"),
        ({"STUB_GITLAB_UNREACHABLE": "1"}, "HTTP 000, curl exit 7"),
    ):
        result = host.run("bootstrap.sh", **env)
        assert result.code == 0, result.output
        assert f"shipyard: POST {VERIFY_URL}: {failure}; no token expiry in config.toml" in result.output
        assert [c for c in result.calls if gitlab_api(c)]
        entry = host.runner_entry()
        assert entry["token"] == TOKEN and "token_expires_at" not in entry
        assert hook_calls(result)[0].endswith("CONTINUE")
        assert not list(host.tmp.iterdir())


def test_bootstrap_reads_the_token_with_decryption_and_completes_the_launch_hook(booted: Booted) -> None:
    result = booted.first  # guards R8
    assert any(
        c.startswith("aws ssm get-parameter --name /shipyard/staging/gitlab-runner-token --with-decryption")
        for c in result.calls
    )
    (hook,) = hook_calls(result)
    assert "--lifecycle-hook-name shipyard-launch" in hook and hook.endswith("--lifecycle-action-result CONTINUE")
    assert "--auto-scaling-group-name shipyard-staging-runner" in hook
    verify = result.calls.index("gitlab-runner verify")
    assert verify < result.calls.index(hook)


def test_config_exists_before_gitlab_runner_is_installed_and_started(booted: Booted) -> None:  # guards R5
    result = booted.first
    install = next(i for i, c in enumerate(result.calls) if c.startswith("dnf install") and "gitlab-runner_" in c)
    assert result.calls[install + 1] == "dnf saw config.toml"
    assert "dnf install -y -q docker-25.0.*" in result.calls  # guards R12
    assert install < result.calls.index("systemctl enable --now gitlab-runner")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_bootstrap_downloads_and_installs_the_rpm_gitlab_publishes_for_the_arch(
    request: pytest.FixtureRequest, arch: str
) -> None:
    # guards R17: since 18.9.0 the RPMs are named by RPM arch; gitlab-runner_amd64.rpm is a 404.
    if arch == FIRST_BOOT_ARCH:  # that run is the session's first boot, `booted`
        booted: Booted = request.getfixturevalue("booted")
        host, result = booted.host, booted.first
    else:
        host = request.getfixturevalue("host")
        result = host.run("bootstrap.sh", STUB_ARCH=arch)
    assert result.code == 0, result.output
    base = "https://s3.dualstack.us-east-1.amazonaws.com/gitlab-runner-downloads/v19.1.1"
    assert downloads(result) == [
        "https://packages.gitlab.com/runner/gitlab-runner/gpgkey/runner-gitlab-runner-49F16C5CC3A0F81F.pub.gpg",
        f"{base}/release.sha256",
        f"{base}/release.sha256.asc",
        f"{base}/rpm/gitlab-runner-helper-images.rpm",
        f"{base}/rpm/gitlab-runner_{arch}.rpm",
    ]
    (install,) = [c for c in result.calls if c.startswith("dnf install") and ".rpm" in c]
    assert install.endswith(f"/rpm/gitlab-runner-helper-images.rpm {install.split()[-1]}")
    assert install.split()[-1].endswith(f"/rpm/gitlab-runner_{arch}.rpm")
    assert (host.state / "gitlab-runner-version").read_text().strip() == "19.1.1"
    assert hook_calls(result)[0].endswith("CONTINUE")


def test_a_release_file_that_gitlab_does_not_publish_abandons_naming_it(host: Host) -> None:
    # guards R17: the old Debian-style name, as the bootstrap used to ask for it, is a 404.
    host.pin(GITLAB_RUNNER_RPM_X86_64="rpm/gitlab-runner_amd64.rpm")
    result = host.run("bootstrap.sh")
    assert abandoned(result), result.output
    assert "shipyard: rpm/gitlab-runner_amd64.rpm: cannot download" in result.output
    assert "curl: (22) The requested URL returned error: 404" in result.output
    assert not [c for c in result.calls if c.startswith("dnf install") and ".rpm" in c]
    assert "gitlab-runner verify" not in result.calls


def test_an_arch_without_an_rpm_in_the_facts_abandons(host: Host) -> None:  # guards R17
    result = host.run("bootstrap.sh", STUB_ARCH="riscv64")
    assert abandoned(result)
    assert "shipyard: gitlab-runner 19.1.1 has no rpm for riscv64 in its release facts" in result.output


def test_a_tampered_rpm_abandons_naming_it(host: Host) -> None:  # guards R17
    rpm = host.release_file("rpm/gitlab-runner_x86_64.rpm")
    rpm.write_bytes(rpm.read_bytes() + b"# and something else\n")
    result = host.run("bootstrap.sh")
    assert abandoned(result)
    assert "shipyard: rpm/gitlab-runner_x86_64.rpm: checksum mismatch" in result.output
    assert not [c for c in result.calls if c.startswith("dnf install") and ".rpm" in c]


def test_checksums_changed_after_signing_are_a_bad_signature(host: Host) -> None:  # guards R17
    # What someone who can write to the bucket would do: a new rpm and its sum, without GitLab's key.
    rpm = host.release_file("rpm/gitlab-runner_x86_64.rpm")
    sums = host.release_file("release.sha256")
    old = hashlib.sha256(rpm.read_bytes()).hexdigest()
    rpm.write_bytes(b"Name: gitlab-runner\nVersion: 19.1.1\nArch: x86_64\n# backdoor\n")
    sums.write_text(sums.read_text().replace(old, hashlib.sha256(rpm.read_bytes()).hexdigest()))
    result = host.run("bootstrap.sh")
    assert abandoned(result)
    assert "shipyard: release.sha256.asc: bad signature" in result.output
    assert "rpm/gitlab-runner_x86_64.rpm" not in " ".join(downloads(result))  # nothing fetched past the check


def test_a_signing_key_other_than_the_pinned_one_abandons(host: Host, signed_release: SignedRelease) -> None:
    # guards R17: the runner.env of the user data, GitLab's fingerprint; the key served is another one.
    host.pin(GITLAB_KEY)
    result = host.run("bootstrap.sh")
    assert abandoned(result)
    key = "runner-gitlab-runner-49F16C5CC3A0F81F.pub.gpg"
    assert f"shipyard: {key}: fingerprint {signed_release.fingerprint} is not the pinned {GITLAB_KEY}" in result.output
    assert not [c for c in result.calls if c.startswith("dnf install") and ".rpm" in c]


def test_machine_id_is_regenerated_once_per_instance(booted: Booted) -> None:  # guards R4
    host = booted.host  # its etc/machine-id was the AMI's, "0" * 32, before its first boot
    first = (host.root / "etc/machine-id").read_text()
    assert first != "0" * 32
    host.run("bootstrap.sh")
    assert (host.root / "etc/machine-id").read_text() == first


def test_graceful_stop_is_configured_for_the_longest_job(booted: Booted) -> None:  # guards R7
    host = booted.host
    dropin = (host.root / "etc/systemd/system/gitlab-runner.service.d/shipyard.conf").read_text()
    assert "KillSignal=SIGQUIT" in dropin and "TimeoutStopSec=3900" in dropin


def test_missing_parameter_abandons_the_instance(host: Host) -> None:  # guards R8
    host.delete_parameter()
    result = host.run("bootstrap.sh")
    assert abandoned(result)
    assert "An error occurred (ParameterNotFound) when calling the GetParameter operation" in result.output
    assert not host.config.exists()
    assert "gitlab-runner verify" not in result.calls


def test_failing_verify_abandons_the_instance_without_leaking_the_token(host: Host) -> None:  # guards R8
    result = host.run("bootstrap.sh", STUB_VERIFY_RC="1")
    assert abandoned(result)
    assert TOKEN not in result.output
    assert "replace the runner" not in result.output  # not a rejected token: no recovery advice


def test_a_rejected_token_says_how_to_recover_and_waits_before_abandoning(host: Host) -> None:  # guards R18
    host.reject(TOKEN)
    result = host.run("bootstrap.sh", TOKEN_POLLS="3")
    assert abandoned(result)
    # GitLab's 403 to the bootstrap's own runners/verify call, before gitlab-runner is even installed.
    assert f"shipyard: POST {VERIFY_URL}: 403, GitLab does not accept the runner token" in result.output
    assert "gitlab-runner verify" not in result.calls and not host.config.exists()  # guards R5
    assert "shipyard: GitLab rejects the runner token in /shipyard/staging/gitlab-runner-token (version 1)" in (
        result.output
    )
    assert "replace the runner: pulumi up --replace <the stack's gitlab:index/userRunner:UserRunner URN>" in (
        result.output
    )
    polls = [c for c in result.calls if c.endswith("--query Parameter.Version --output text")]
    assert len(polls) == 3 and not [c for c in polls if "--with-decryption" in c]
    assert result.calls.index(polls[-1]) < result.calls.index(hook_calls(result)[0])
    assert TOKEN not in result.output


def test_gitlab_runner_verify_rejecting_a_token_whose_dates_are_kept_takes_the_same_path(
    booted_expiring: Booted,
) -> None:
    # guards R18: a token with known dates is not asked about again, so only `gitlab-runner verify`
    # sees that GitLab has since revoked it.
    host = booted_expiring.host
    assert booted_expiring.first.code == 0
    host.reject(TOKEN)
    result = host.run("bootstrap.sh", TOKEN_POLLS="1")
    assert abandoned(result)
    assert not [c for c in result.calls if gitlab_api(c)]
    assert "is not valid" in result.output  # gitlab-runner's own answer, shown
    assert "replace the runner: pulumi up --replace" in result.output and TOKEN not in result.output


def test_a_new_token_during_the_wait_is_used_without_a_new_host(host: Host, tmp_path: Path) -> None:  # guards R18
    host.reject(TOKEN)
    stderr = tmp_path / "bootstrap.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            ["bash", str(USERDATA_DIR / "bootstrap.sh")],
            env={**host.env, "TOKEN_POLLS": "100"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 10
            while "replace the runner" not in stderr.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            host.set_parameter(NEW, 2)  # pulumi up --replace: a new runner, its token in the parameter
            assert proc.wait(timeout=10) == 0, stderr.read_text()
        finally:
            proc.kill()
    assert f'token = "{NEW}"' in host.config.read_text()
    assert hook_calls(Result(0, "", host.log.read_text().splitlines()))[-1].endswith("CONTINUE")


def test_a_second_run_changes_nothing(booted: Booted) -> None:
    host = booted.host
    assert booted.first.code == 0
    before = host.snapshot()
    second = host.run("bootstrap.sh")
    assert second.code == 0, second.output
    assert host.snapshot() == before
    assert not [c for c in second.calls if c.startswith("dnf install")]
    assert not downloads(second)


def test_a_rotated_token_is_written_back_to_ssm_and_never_an_argument(booted: Booted) -> None:  # guards R18
    host = booted.host
    assert booted.first.code == 0
    host.rotate()
    result = host.run("token-sync.sh")
    assert result.code == 0, result.output
    assert host.parameter() == (ROTATED, 2)
    (put,) = [c for c in result.calls if c.startswith("aws ssm put-parameter")]
    assert put.startswith("aws ssm put-parameter --cli-input-json file://")
    assert (host.state / "put-request-mode").read_text().strip() == "600"
    assert "is now /shipyard/staging/gitlab-runner-token version 2" in result.output
    for secret in (ROTATED, TOKEN):
        assert not [c for c in result.calls if secret in c]
        assert secret not in result.output
    for path, (content, _) in host.snapshot().items():
        assert path == "etc/gitlab-runner/config.toml" or ROTATED.encode() not in content, path
    assert (host.root / "var/lib/shipyard/token-version").read_text().strip() == "2"
    again = host.run("token-sync.sh")
    assert again.code == 0 and not [c for c in again.calls if "put-parameter" in c]


def test_a_rotated_token_survives_a_reboot_and_reaches_the_parameter(booted_expiring: Booted) -> None:
    # guards R16, R18
    host = booted_expiring.host
    host.rotate()
    host.expire_tokens_at("2027-06-30T00:00:00Z")  # what GitLab would say if asked again: it must not be
    result = host.run("bootstrap.sh")
    assert result.code == 0, result.output
    assert f'token = "{ROTATED}"\n{ROTATION_DATES}\n' in host.config.read_text()  # and when to rotate next
    entry = host.runner_entry()
    assert (entry["token_obtained_at"], entry["token_expires_at"]) == ROTATION_DATETIMES
    assert entry["id"] == RUNNER_ID
    assert not [c for c in result.calls if gitlab_api(c)] and len(host.verify_requests()) == 1
    assert host.parameter() == (ROTATED, 2)
    put = next(i for i, c in enumerate(result.calls) if c.startswith("aws ssm put-parameter"))
    assert put < result.calls.index("gitlab-runner verify")
    assert not [c for c in result.calls if ROTATED in c] and ROTATED not in result.output


def test_a_replacement_host_reads_the_token_the_old_one_rotated(
    booted: Booted, tmp_path: Path, signed_release: SignedRelease, stubs: Stubs
) -> None:
    # guards R18: rotated on the old host, which then stops; the new host must not get the old token.
    host = booted.host
    host.reject(TOKEN)  # GitLab invalidates the old token once it has rotated
    host.rotate()
    stop = host.run("stop.sh")
    assert stop.code == 0, stop.output
    put = next(i for i, c in enumerate(stop.calls) if c.startswith("aws ssm put-parameter"))
    assert stop.calls.index("systemctl stop gitlab-runner") < put
    assert put < stop.calls.index("gitlab-runner unregister --all-runners")
    (tmp_path / "replacement").mkdir()
    replacement = Host(tmp_path / "replacement", signed_release, stubs, ssm=host.ssm)
    replacement.reject(TOKEN)
    result = replacement.run("bootstrap.sh")
    assert result.code == 0, result.output
    assert f'token = "{ROTATED}"' in replacement.config.read_text()
    assert hook_calls(result)[0].endswith("CONTINUE")


def test_a_new_runner_from_pulumi_is_not_overwritten_by_a_hosts_older_token(booted: Booted) -> None:
    host = booted.host
    host.rotate()
    host.set_parameter(NEW, 2)  # pulumi up replaced the runner meanwhile
    sync = host.run("token-sync.sh")
    assert sync.code == 0
    assert not [c for c in sync.calls if "put-parameter" in c]
    assert host.parameter() == (NEW, 2)
    assert host.run("bootstrap.sh").code == 0
    assert f'token = "{NEW}"' in host.config.read_text()


def test_a_failed_write_back_at_boot_keeps_the_rotated_token(booted: Booted) -> None:  # guards R16
    host = booted.host
    host.rotate()
    result = host.run("bootstrap.sh", STUB_SSM_PUT_DENIED="1")
    assert result.code == 0, result.output
    assert "AccessDeniedException" in result.output and "shipyard-token-sync retries" in result.output
    assert f'token = "{ROTATED}"' in host.config.read_text()
    assert host.parameter() == (TOKEN, 1)
    assert host.run("token-sync.sh").code == 0
    assert host.parameter() == (ROTATED, 2)


def test_a_parameter_without_a_runner_token_abandons(host: Host) -> None:
    host.set_parameter("not-a-runner-token", 1)
    result = host.run("bootstrap.sh")
    assert abandoned(result)


def test_stop_drains_then_unregisters_this_manager_then_completes_the_hook(host: Host) -> None:  # guards R3, R7
    result = host.run("stop.sh")
    assert result.code == 0, result.output
    stop = result.calls.index("systemctl stop gitlab-runner")
    unregister = result.calls.index("gitlab-runner unregister --all-runners")
    (hook,) = hook_calls(result)
    assert stop < unregister < result.calls.index(hook)
    assert "--lifecycle-hook-name shipyard-terminate" in hook and hook.endswith("CONTINUE")
    assert not [c for c in result.calls if "DELETE" in c or "/runners" in c]


def test_stop_heartbeats_the_terminate_hook_while_jobs_drain(host: Host) -> None:  # guards R7
    result = host.run("stop.sh", STUB_STOP_SECONDS="0.2")  # 4 heartbeat intervals (0.05 s)
    assert result.code == 0, result.output
    beats = [c for c in result.calls if c.startswith("aws autoscaling record-lifecycle-action-heartbeat")]
    assert len(beats) >= 2
    for beat in beats:
        assert "--lifecycle-hook-name shipyard-terminate" in beat and "shipyard-launch" not in beat
        assert "--instance-id i-0123456789abcdef0" in beat
    assert result.calls.index(beats[-1]) < result.calls.index("gitlab-runner unregister --all-runners")


def test_lifecycle_watch_starts_the_stop_when_the_group_terminates_the_host(host: Host) -> None:
    result = host.run("lifecycle-watch.sh", STUB_LIFECYCLE_STATE="Terminated", WATCH_INTERVAL="0.1")
    assert result.code == 0
    assert result.calls[-1] == "shipyard-stop"


def test_lifecycle_watch_stays_quiet_once_the_host_has_stopped(host: Host) -> None:
    assert host.run("stop.sh").code == 0
    host.log.write_text("")
    watch = subprocess.Popen(
        ["bash", str(USERDATA_DIR / "lifecycle-watch.sh")],
        env={**host.env, "STUB_LIFECYCLE_STATE": "Terminated", "WATCH_INTERVAL": "0.02"},
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            watch.wait(timeout=0.4)  # some 20 checks of the target state
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


def test_the_curl_stub_answers_gitlabs_runner_api_only_as_the_facts_say(host: Host) -> None:
    # The stub the expiry tests rely on: 200 for the token in SSM, 403 for another, 404 elsewhere.
    def verify(token: str, url: str = VERIFY_URL, *headers: str) -> tuple[str, str]:
        body = host.tmp / "body.json"
        body.write_text(json.dumps({"token": token}))
        answer = host.tmp / "answer.json"
        args = [*(headers or ("-H", "Content-Type: application/json")), "--data", f"@{body}", "-o", str(answer)]
        curl = subprocess.run(
            [str(host.stubs / "curl"), *args, "-w", "%{http_code}", url], env=host.env, capture_output=True, text=True
        )
        assert curl.returncode == 0, curl.stderr
        return curl.stdout, answer.read_text()

    host.expire_tokens_at(EXPIRES)
    assert verify(TOKEN) == ("200", json.dumps({"id": RUNNER_ID, "token": TOKEN, "token_expires_at": EXPIRES}))
    assert verify(ROTATED)[0] == "403"
    assert verify(TOKEN, f"{HOST.gitlab_url}/api/v4/runners")[0] == "404"
    assert verify(TOKEN, VERIFY_URL, "-H", "Accept: application/json")[0] == "400"  # a form, not JSON
    inline = subprocess.run(
        [str(host.stubs / "curl"), "--data", json.dumps({"token": TOKEN}), VERIFY_URL],
        env=host.env,
        capture_output=True,
    )
    assert inline.returncode != 0  # a body on the command line is refused, not answered
    body = host.tmp / "nested.json"  # nor one the stub cannot read as a flat JSON object
    body.write_text(json.dumps({"token": TOKEN, "system_id": {"id": SYSTEM_ID}}))
    nested = subprocess.run(
        [str(host.stubs / "curl"), "-H", "Content-Type: application/json", "--data", f"@{body}", VERIFY_URL],
        env=host.env,
        capture_output=True,
        text=True,
    )
    assert nested.returncode != 0 and "not a JSON object of plain values" in nested.stderr


def test_the_aws_stub_keeps_parameters_as_ssm_does(host: Host) -> None:
    # The stub the token tests rely on answers as the service: not found, no silent overwrite, versions.
    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(host.stubs / "aws"), *args], env=host.env, capture_output=True, text=True)

    get = ("ssm", "get-parameter", "--name", "/x", "--with-decryption")
    missing = aws(*get, "--query", "[Parameter.Value,Parameter.Version]", "--output", "text")
    assert missing.returncode == 254 and "(ParameterNotFound) when calling the GetParameter operation" in missing.stderr
    request = host.tmp / "request.json"
    request.write_text('{"Name": "/x", "Type": "SecureString", "Value": "one"}')
    assert aws("ssm", "put-parameter", "--cli-input-json", f"file://{request}").returncode == 0
    again = aws("ssm", "put-parameter", "--cli-input-json", f"file://{request}")
    assert again.returncode == 254 and "ParameterAlreadyExists" in again.stderr
    request.write_text('{"Name": "/x", "Type": "SecureString", "Overwrite": true, "Value": "two"}')
    put = aws("ssm", "put-parameter", "--cli-input-json", f"file://{request}", "--query", "Version", "--output", "text")
    assert put.stdout == "2\n"
    read = aws(*get, "--query", "[Parameter.Value,Parameter.Version]", "--output", "text")
    assert read.stdout == "two\t2\n"
    encrypted = aws(
        "ssm", "get-parameter", "--name", "/x", "--query", "[Parameter.Value,Parameter.Version]", "--output", "text"
    )
    assert "two" not in encrypted.stdout
    # A request the stub cannot read as a flat JSON object (here an escape) is refused, and changes nothing.
    request.write_text(json.dumps({"Name": "/x", "Type": "SecureString", "Overwrite": True, "Value": 'th"ree'}))
    unread = aws("ssm", "put-parameter", "--cli-input-json", f"file://{request}")
    assert unread.returncode == 252 and "Error parsing parameter 'cli-input-json'" in unread.stderr
    assert aws(*get, "--query", "[Parameter.Value,Parameter.Version]", "--output", "text").stdout == "two\t2\n"
