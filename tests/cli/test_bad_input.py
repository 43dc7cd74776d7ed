"""Realistic mistakes in a stack file, end to end: `shipyard plan` exits 2, names the key and what is
allowed, prints no traceback, and plans nothing (not one resource is registered)."""

from __future__ import annotations

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
