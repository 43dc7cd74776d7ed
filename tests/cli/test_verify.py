"""`shipyard verify` against moto's server: a healthy deployed stack passes; each broken variant
(IMDSv1 allowed, a String token parameter, a registry that does not scan the repository, no
instance) fails with its own message. The GitLab check runs against a local fake of GitLab's
runners API."""

from __future__ import annotations

import json
import re
import time
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from infra.cli.main import main
from tests.conftest import ROOT
from tests.fake_api import serve
from tests.moto_aws import REGION, Aws

PARAMETER = "/shipyard/staging/gitlab-runner-token"
ASG = "shipyard-staging-runner"
REPOSITORY = "acme/storefront"
TOKEN = "glpat-verifyCanary0123456789"


def deploy(aws: Aws, tokens: str = "required", parameter_type: str = "SecureString", scan: bool = True,
           instances: int = 1) -> dict[str, Any]:  # fmt: skip
    """What `pulumi up` leaves behind for the staging stack, with one thing optionally broken."""
    ecr: Any = aws.client("ecr")
    repo = ecr.create_repository(repositoryName=REPOSITORY)
    if scan:  # what the build stack's registry scanning configuration sets (R21)
        rule = {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [{"filter": REPOSITORY, "filterType": "WILDCARD"}],
        }
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[rule])
    expire = {"rulePriority": 1, "description": "Expire untagged images after one day", "action": {"type": "expire"}}
    expire["selection"] = {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    }
    ecr.put_lifecycle_policy(repositoryName=REPOSITORY, lifecyclePolicyText=json.dumps({"rules": [expire]}))
    ssm: Any = aws.client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value="glrt-notReadByVerify", Type=parameter_type)
    ec2: Any = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName="runner-lt",
        LaunchTemplateData={
            "ImageId": "ami-12c6146b",
            "InstanceType": "t3.large",
            "MetadataOptions": {"HttpTokens": tokens, "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
        },
    )["LaunchTemplate"]
    autoscaling: Any = aws.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=ASG,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        MinSize=instances,
        MaxSize=1,
        DesiredCapacity=instances,
        AvailabilityZones=[f"{REGION}a"],
    )
    return {
        "environment": "staging",
        "registryUrl": repo["repository"]["repositoryUri"],
        "runnerAsgName": ASG,
        "runnerTokenParameter": PARAMETER,
        "runnerId": "4242",
        "herokuApiKey": "[secret]",
    }


def verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, outputs: dict[str, Any]) -> tuple[int, str, str]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["verify", "--stack", "staging", "--outputs", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def flat(out: str) -> str:
    """The table's text with borders and wrapping gone, so a wrapped detail reads as one sentence."""
    return re.sub(r"[│┃|\s]+", " ", out)


def line(out: str, check: str) -> str:
    return next(row for row in out.splitlines() if check in row)


def test_a_healthy_stack_passes_every_check(aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)  # aws:region comes from Pulumi.staging.yaml
    code, out, err = verify(capsys, tmp_path, deploy(aws))
    assert code == 0, out + err
    for check in ("runner instance in service", "runner requires IMDSv2", "runner token is a SecureString",
                  "registry scans on push", "registry has a lifecycle policy"):  # fmt: skip
        assert " pass " in line(out, check), line(out, check)
    assert "no GITLAB_TOKEN" in line(out, "runner online in GitLab")
    assert "every check passed" in out


@pytest.mark.parametrize(
    ("broken", "check", "message"),
    [
        ({"tokens": "optional"}, "runner requires IMDSv2", "lets the host use IMDSv1 (HttpTokens optional)"),  # R6
        ({"parameter_type": "String"}, "runner token is a SecureString", "is a String: the token is stored"),  # R1
        ({"scan": False}, "registry scans on push", "basic scanning configuration does not scan images pushed to"),
        ({"instances": 0}, "runner instance in service", "0 instances InService"),
    ],
)
def test_each_broken_resource_fails_with_its_own_message(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, broken: dict[str, Any], check: str, message: str
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    code, out, _ = verify(capsys, tmp_path, deploy(aws, **broken))
    assert code == 1
    assert " FAIL " in line(out, check), out
    assert message in flat(out), out
    failed = [row for row in out.splitlines() if " FAIL " in row]
    expected = 2 if broken == {"instances": 0} else 1  # no instance: its IMDS setting cannot be read either
    assert len(failed) == expected, failed


@pytest.mark.parametrize(("status", "code"), [("online", 0), ("offline", 1)])
def test_the_runner_is_checked_online_in_gitlab(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, status: str, code: int
) -> None:
    seen: list[tuple[str, str | None]] = []

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        seen.append((path, headers.get("PRIVATE-TOKEN")))
        if headers.get("PRIVATE-TOKEN") != TOKEN:  # as GitLab answers a missing or wrong token
            return 401, {"message": "401 Unauthorized"}
        if path == "/api/v4/runners/4242":
            return 200, {"id": 4242, "status": status, "paused": False, "runner_type": "project_type"}
        return 404, {"message": "404 Not found"}

    with serve(answer) as url:
        stack = tmp_path / "Pulumi.staging.yaml"
        # `gitlabUrl` without its namespace, as `pulumi config set gitlabUrl` writes it.
        stack.write_text(f"config:\n  aws:region: {REGION}\n  gitlabUrl: {url}\n")
        (tmp_path / "Pulumi.yaml").write_text("name: shipyard\nruntime: python\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        result, out, err = verify(capsys, tmp_path, deploy(aws))
    assert result == code, out + err
    assert seen == [("/api/v4/runners/4242", TOKEN)]
    expected = " pass " if status == "online" else " FAIL "
    assert expected in line(out, "runner online in GitLab")
    assert TOKEN not in out + err


def test_unreadable_outputs_exit_2(capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT)
    code = main(["verify", "--stack", "staging", "--outputs", str(tmp_path / "missing.json")])
    _, err = capsys.readouterr()
    assert code == 2 and "not found" in err and "Traceback" not in err
    (tmp_path / "other.json").write_text(json.dumps({"bucket": "x"}))
    code = main(["verify", "--stack", "staging", "--outputs", str(tmp_path / "other.json")])
    assert code == 2 and "`registryUrl` is missing" in capsys.readouterr().err


def test_verify_waits_for_a_host_that_is_still_coming_up(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, instances=0)  # as during an instance refresh: no host in service yet
    autoscaling: Any = aws.client("autoscaling")
    waits: list[float] = []

    real_sleep = time.sleep

    def host_comes_up(seconds: float) -> None:  # the pause between two rounds of checks
        if seconds != 5:  # anyone else's sleep (time.sleep is process-wide)
            return real_sleep(seconds)
        waits.append(seconds)
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=ASG, MinSize=1, DesiredCapacity=1)
        return None

    monkeypatch.setattr("infra.cli.main.time.sleep", host_comes_up)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["verify", "--stack", "staging", "--outputs", str(path), "--wait", "60", "--interval", "5"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert waits == [5]
    assert "not yet: runner instance in service, runner requires IMDSv2; checking again in 5 s" in err
    assert "every check passed" in out


@pytest.mark.parametrize(
    ("scan_type", "frequency", "pattern", "passes"),
    [
        ("ENHANCED", "CONTINUOUS_SCAN", "acme/*", True),
        ("ENHANCED", "SCAN_ON_PUSH", "storefront", True),  # no wildcard: names that contain it
        ("BASIC", "SCAN_ON_PUSH", "acme/checkout*", False),  # another repository
        ("BASIC", "MANUAL", REPOSITORY, False),  # scans nothing by itself
    ],
)
def test_the_registry_scanning_configuration_decides(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any, scan_type: str, frequency: str, pattern: str, passes: bool
) -> None:  # guards R21
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, scan=False)
    ecr: Any = aws.client("ecr")
    rule = {"scanFrequency": frequency, "repositoryFilters": [{"filter": pattern, "filterType": "WILDCARD"}]}
    ecr.put_registry_scanning_configuration(scanType=scan_type, rules=[rule])
    code, out, _ = verify(capsys, tmp_path, outputs)
    assert code == (0 if passes else 1), out
    assert (" pass " if passes else " FAIL ") in line(out, "registry scans on push")
    assert f"{scan_type.lower()} scanning" in flat(out)


def test_the_deprecated_repository_flag_alone_does_not_count(
    aws: Aws, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:  # guards R21
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    outputs = deploy(aws, scan=False)
    ecr: Any = aws.client("ecr")
    ecr.put_image_scanning_configuration(repositoryName=REPOSITORY, imageScanningConfiguration={"scanOnPush": True})
    code, out, _ = verify(capsys, tmp_path, outputs)
    assert code == 1
    assert " FAIL " in line(out, "registry scans on push")
