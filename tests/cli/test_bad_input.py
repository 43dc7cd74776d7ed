"""Realistic mistakes in a stack file, end to end: `shipyard plan` exits 2, names the key and what is
allowed, prints no traceback, and plans nothing (not one resource is registered)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli.main import main
from infra.offline import engine
from tests.conftest import ROOT
from tests.test_settings import MISTAKES, base

# The stack file route refuses any secret written in plain text before looking at its value, so the
# mistakes about the API key's value are checked at the settings level only (tests/test_settings.py).
STACK_FILE_MISTAKES = [m for m in MISTAKES if m[1] != "shipyard:herokuApiKey"]


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The type of every resource the program registers during the test."""
    types: list[str] = []
    original = engine.RecordingMonitor.RegisterResource

    def record(self: Any, request: Any) -> Any:
        types.append(request.type)
        return original(self, request)

    monkeypatch.setattr(engine.RecordingMonitor, "RegisterResource", record)
    return types


def stack_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    config = {k: v for k, v in config.items() if k != "shipyard:herokuApiKey"}  # absent: a placeholder
    path = tmp_path / "Pulumi.mistake.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def test_there_are_at_least_thirty_mistakes() -> None:
    assert len(STACK_FILE_MISTAKES) >= 30


@pytest.mark.parametrize(
    ("override", "key", "allowed"), STACK_FILE_MISTAKES, ids=[m[1] + ":" + m[2] for m in STACK_FILE_MISTAKES]
)
def test_each_mistake_exits_2_naming_the_key_and_plans_nothing(
    override: dict[str, Any],
    key: str,
    allowed: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    registered: list[str],
) -> None:
    config = base(**override)
    if isinstance(override.get("heroku"), str):
        config["shipyard:heroku"] = override["heroku"]  # a scalar where a map belongs
    monkeypatch.chdir(ROOT)
    code = main(["plan", "--stack", "staging", "--config-file", str(stack_file(tmp_path, config))])
    out, err = capsys.readouterr()
    assert code == 2
    assert any(key in line and allowed in line for line in err.splitlines()), err
    assert "Traceback" not in err + out
    assert out == ""
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_the_same_stack_file_without_the_mistake_plans_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    # The probe above sees registrations when there are any: an empty list there means something.
    monkeypatch.chdir(ROOT)
    code = main(["plan", "--stack", "staging", "--config-file", str(stack_file(tmp_path, base()))])
    assert code == 0, capsys.readouterr().err
    assert "heroku:app/app:App" in registered


# --- input people really get wrong, end to end -------------------------------------------------------


def plan(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(args: list[str], capsys: pytest.CaptureFixture[str], registered: list[str]) -> str:
    """stderr of a plan that exits 2 with no traceback, printing and planning nothing."""
    code, out, err = plan(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err + out
    assert out == ""
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []
    return err


def test_an_unknown_instance_type_is_refused_with_real_types_close_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    monkeypatch.chdir(ROOT)
    config = base(runner={"instanceType": "t3.hugee", "protectedOnly": True})
    err = refused(["-s", "staging", "--config-file", str(stack_file(tmp_path, config))], capsys, registered)
    assert "  - shipyard:runner.instanceType: 't3.hugee' is not an EC2 instance type that pulumi-aws" in err
    assert "did you mean t3.large, t3.xlarge or t3.2xlarge?" in err


def test_config_vars_written_as_numbers_and_booleans_reach_heroku_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `pulumi config set --path heroku.configVars.WEB_CONCURRENCY 3` and `… DEBUG true` write these.
    monkeypatch.chdir(ROOT)
    config = base(heroku={"configVars": {"WEB_CONCURRENCY": 3, "DEBUG": True}})
    code, out, err = plan(["-s", "staging", "--json", "--config-file", str(stack_file(tmp_path, config))], capsys)
    assert code == 0, err
    (app,) = [s for s in json.loads(out)["steps"] if s["newState"]["type"] == "heroku:app/app:App"]
    assert app["newState"]["inputs"]["configVars"] == {"WEB_CONCURRENCY": "3", "DEBUG": "true"}


def test_a_config_var_list_is_refused_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    monkeypatch.chdir(ROOT)
    config = base(heroku={"configVars": {"ALLOWED_HOSTS": ["a.example", "b.example"]}})
    err = refused(["-s", "staging", "--config-file", str(stack_file(tmp_path, config))], capsys, registered)
    assert (
        "  - shipyard:heroku.configVars.ALLOWED_HOSTS: must be a string, number or true/false (Heroku stores text), "
        "not a list\n"
    ) in err


def test_a_utf16_stack_file_is_refused_by_the_path_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.win.yaml").write_text(yaml.safe_dump({"config": base()}), encoding="utf-16")
    monkeypatch.chdir(tmp_path)
    err = refused(["-s", "win", "--config-file", "stacks/Pulumi.win.yaml"], capsys, registered)
    assert "  - stacks/Pulumi.win.yaml is UTF-16 text (it starts with a byte-order mark); save it as UTF-8" in err


def test_a_stack_file_outside_the_working_directory_is_named_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "Pulumi.win.yaml").write_text(yaml.safe_dump({"config": base()}), encoding="utf-16")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    monkeypatch.chdir(tmp_path / "project")
    err = refused(["-s", "win", "--config-file", "../outside/Pulumi.win.yaml"], capsys, registered)
    assert "  - ../outside/Pulumi.win.yaml is UTF-16 text" in err
    assert str(tmp_path) not in err


def test_a_stack_file_that_cannot_be_read_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    # A regular file whose read fails, for root too (chmod 000 does not stop root).
    monkeypatch.chdir(ROOT)
    err = refused(["-s", "staging", "--config-file", "/proc/self/mem"], capsys, registered)
    assert "mem cannot be read: Input/output error\n" in err


@pytest.mark.parametrize("given", ["../elsewhere/Pulumi.gone.yaml", "stacks/"])
def test_a_missing_or_directory_config_file_is_refused_by_the_path_given(
    given: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    registered: list[str],
) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    monkeypatch.chdir(tmp_path)
    err = refused(["-s", "gone", "--config-file", given], capsys, registered)
    assert given in err and str(tmp_path) not in err


# --- mistakes between stack files, in a project of their own ---------------------------------------------


def project(tmp_path: Path, **changes: dict[str, Any]) -> Path:
    """A project with the committed staging and prod stack files, `stack={key: value}` changes made
    (a new stack starts as a copy of prod); the program is this repository's."""
    doc: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.yaml").write_text(yaml.safe_dump({**doc, "main": str(ROOT / doc["main"])}))
    stacks: dict[str, dict[str, Any]] = {
        stack: yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) for stack in ("staging", "prod")
    }
    for stack, settings in changes.items():
        stacks.setdefault(stack, yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text()))["config"].update(settings)
    for stack, stack_doc in stacks.items():
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(stack_doc))
    return tmp_path


def heroku(stack: str, app: str) -> dict[str, Any]:
    return {**yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["shipyard:heroku"], "app": app}


def test_two_stacks_with_one_heroku_app_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    monkeypatch.chdir(project(tmp_path, prod={"shipyard:heroku": heroku("prod", "acme-storefront-staging")}))
    for stack in ("prod", "staging"):  # either stack's plan says it
        err = refused(["-s", stack], capsys, registered)
        assert "  - shipyard:heroku.app 'acme-storefront-staging' is the app of stacks prod and staging" in err


def test_two_stacks_for_one_environment_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    monkeypatch.chdir(project(tmp_path, qa={"shipyard:heroku": heroku("prod", "acme-storefront-qa")}))
    err = refused(["-s", "qa"], capsys, registered)
    assert (
        "  - shipyard:environment 'production' of GitLab project acme/storefront is claimed by stacks prod and qa"
    ) in err


def test_two_registry_owners_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    backoffice = {
        "shipyard:gitlabProject": "acme/backoffice",
        "shipyard:heroku": heroku("prod", "acme-backoffice"),
        "shipyard:registry": {"name": "acme/backoffice"},
    }
    monkeypatch.chdir(project(tmp_path, backoffice=backoffice))
    err = refused(["-s", "staging"], capsys, registered)
    assert "  - shipyard:registry is set in stacks backoffice and staging: one stack, the build stack" in err


def test_a_build_stack_typo_is_refused_with_the_stack_it_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    monkeypatch.chdir(project(tmp_path, prod={"shipyard:buildStack": "organization/shipyard/stagin"}))
    err = refused(["-s", "prod"], capsys, registered)
    assert (
        "  - shipyard:buildStack of stack prod names stack 'stagin', which has no Pulumi.stagin.yaml here; "
        "did you mean organization/shipyard/staging?"
    ) in err
    assert plan(["-s", "staging", "--json"], capsys)[0] == 0  # prod's mistake is prod's


def test_settings_and_cross_stack_mistakes_are_listed_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], registered: list[str]
) -> None:
    prod = {
        "shipyard:heroku": {**heroku("prod", "acme-storefront-staging"), "regoin": "eu"},
        "shipyard:buildStack": "organization/shipyard/stagin",
        "shipyard:runner": {"instanceType": "t3.hugee"},
    }
    monkeypatch.chdir(project(tmp_path, prod=prod))
    err = refused(["-s", "prod"], capsys, registered)
    assert "(4 problems)" in err
    for key in ("heroku.regoin", "runner.instanceType", "heroku.app", "buildStack"):
        assert f"  - shipyard:{key}" in err, key
