"""`shipyard plan`: the table, the `pulumi preview --json` shape, exit codes, and secrets refused in
plain text or shown only as placeholders (the canaries across everything visible are in
tests/test_secret_canaries.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli.main import main
from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from tests.conftest import ROOT, run_stack

SHIPYARD = Path(sys.executable).with_name("shipyard")
CANARY_KEY = "HRKU-canaryApiKey7f3a9c"


def plan(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(ROOT)
    code = main(["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_stack(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "Pulumi.custom.yaml"
    path.write_text(yaml.safe_dump({"config": doc}))
    return path


def test_plan_lists_every_resource_and_the_outputs(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = plan(capsys, monkeypatch, "--stack", "staging")
    assert code == 0
    for name in ("aws:ecr:Repository", "heroku:app:App", "heroku:pipeline:Coupling"):
        assert name in out
    assert "acme-storefront-staging" in out and "stack=container" in out
    assert "registryUrl" in out and "herokuAppUrl" in out
    assert "placeholder: shipyard:herokuApiKey" in out  # the absent secret is reported


def test_json_has_the_preview_shape(capsys: Any, monkeypatch: Any) -> None:
    code, out, _ = plan(capsys, monkeypatch, "--stack", "prod", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["changeSummary"] == {"create": len(doc["steps"]) - 1, "read": 1}
    for step in doc["steps"]:
        assert step["op"] in ("create", "read")
        state = step["newState"]
        assert set(state) == {"type", "urn", "parent", "custom", "protect", "deleteBeforeReplace", "inputs"}
        assert state["urn"] == step["urn"] and step["urn"].startswith("urn:pulumi:prod::shipyard::")
    app = next(s for s in doc["steps"] if s["newState"]["type"] == "heroku:app/app:App")["newState"]
    assert app["protect"] is True and app["inputs"]["stack"] == "container"
    assert app["deleteBeforeReplace"] is True  # a named app: the diff says it is gone before its replacement (H4)
    assert app["parent"].endswith("shipyard:heroku:Environment::production")
    assert doc["outputs"]["registryUrl"].endswith(".amazonaws.com/acme/storefront")


def test_unknown_key_exits_2_naming_the_key_without_traceback(capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
    doc["shipyard:registry"]["keepImgaes"] = 5
    doc["shipyard:heroku"]["region"] = "europe"
    path = write_stack(tmp_path, doc)
    code, out, err = plan(capsys, monkeypatch, "--stack", "staging", "--config-file", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"shipyard plan: stack staging ({path}): ")  # the file as the user named it
    assert "shipyard:registry.keepImgaes" in err and "keepImages" in err
    assert "shipyard:heroku.region" in err
    assert "Traceback" not in err


def test_missing_stack_file_exits_2_and_lists_the_stacks(capsys: Any, monkeypatch: Any) -> None:
    code, _, err = plan(capsys, monkeypatch, "--stack", "qa")
    assert code == 2 and "Pulumi.qa.yaml" in err and "prod" in err and "staging" in err


def test_secret_given_in_plain_text_is_refused_and_never_echoed(capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
    doc["shipyard:herokuApiKey"] = CANARY_KEY
    doc["heroku:apiKey"] = CANARY_KEY
    code, out, err = plan(capsys, monkeypatch, "--stack", "staging", "--config-file", str(write_stack(tmp_path, doc)))
    assert code == 2
    assert "shipyard:herokuApiKey" in err and "heroku:apiKey" in err and "--secret" in err
    assert CANARY_KEY not in out + err


def test_encrypted_secrets_become_reported_placeholders(capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
    doc["shipyard:herokuApiKey"] = {"secure": "v1:c2VjcmV0Y2lwaGVydGV4dA=="}
    doc["shipyard:herokuSensitiveConfigVars"] = {"DATABASE_URL": {"secure": "v1:ZGJjaXBoZXJ0ZXh0"}}
    code, out, err = plan(
        capsys, monkeypatch, "--stack", "staging", "--json", "--config-file", str(write_stack(tmp_path, doc))
    )
    assert code == 0
    placeholders = json.loads(out)["diagnostics"]["placeholders"]
    assert set(placeholders) == {"shipyard:herokuApiKey", "shipyard:herokuSensitiveConfigVars.DATABASE_URL"}
    assert "offline-placeholder" not in out  # the placeholders are secrets too: never shown
    assert "placeholder: shipyard:herokuApiKey" in err


def test_console_script_runs_the_program_as_the_language_host_does(tmp_path: Path) -> None:
    # guards P7: the console script has neither the repository root nor the cwd on sys.path, like
    # Pulumi's language host; the program must import from the project installed in .venv.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(SHIPYARD), "plan", "--stack", "prod", "--json"],
        cwd=ROOT / "infra",
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["herokuAppName"] == "acme-storefront"


def test_invalid_settings_exit_2_naming_the_key_without_a_traceback(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    # In process: the console script above hands main()'s return value to sys.exit.
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    del doc["shipyard:buildStack"]
    code, out, err = plan(capsys, monkeypatch, "--stack", "prod", "--config-file", str(write_stack(tmp_path, doc)))
    assert code == 2 and out == ""
    assert "shipyard:buildStack is required" in err and "Traceback" not in err


def test_json_plan_is_the_same_every_time_and_urns_have_the_engines_shape(staging_doc: dict[str, Any]) -> None:
    first, second = (to_preview_json(run_stack(staging_doc, "staging")) for _ in range(2))
    assert first == second  # plans are diffed between commits
    urns = [s["urn"] for s in first["steps"]]
    assert "urn:pulumi:staging::shipyard::shipyard:aws:Registry::registry" in urns
    assert "urn:pulumi:staging::shipyard::shipyard:aws:Registry$aws:ecr/repository:Repository::registry" in urns
    assert not [u for u in urns if "pulumi:pulumi:Stack$" in u]


def test_broken_yaml_exits_2_with_the_line_and_no_traceback(capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text("config:\n  shipyard:environment: staging\n   shipyard:heroku: [\n")
    code, out, err = plan(capsys, monkeypatch, "--stack", "broken", "--config-file", str(path))
    assert code == 2 and out == ""
    assert "Pulumi.broken.yaml is not valid YAML at line" in err and "Traceback" not in err


def test_outside_the_repository_exits_2(capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--stack", "staging"]) == 2
    assert "Pulumi.yaml" in capsys.readouterr().err


def test_base_shows_what_would_change_against_an_earlier_plan_replacements_first(
    capsys: Any, monkeypatch: Any, tmp_path: Path, committed_runs: dict[str, Run]
) -> None:
    # guards P11: the offline plan of a merge request says `replace` before anyone merges
    base = tmp_path / "prod.json"
    base.write_text(json.dumps(to_preview_json(committed_runs["prod"])))
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    doc["shipyard:heroku"]["region"] = "us"

    code, out, err = plan(
        capsys, monkeypatch, "--stack", "prod", "--config-file", str(write_stack(tmp_path, doc)), "--base", str(base)
    )

    assert code == 0, err
    assert out.startswith("resources: 0 added, 0 removed, ") and "1 replaced" in out.splitlines()[0]
    assert out.index("read first:") < out.index("replaces the Heroku app acme-storefront") < out.index("changed:")
    assert "  +- heroku:app/app:App  production [delete-replace, protected]\n" in out
    assert "policies" in err and "offline plan of stack" not in out  # the verdict on stderr, no creation table


def test_base_that_is_not_a_plan_exits_2(capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text('{"resources": []}')
    code, out, err = plan(capsys, monkeypatch, "--stack", "staging", "--base", str(tmp_path / "old.json"))
    assert code == 2 and out == ""
    assert err.startswith("shipyard plan: --base ") and "is not a plan document" in err and "Traceback" not in err


def test_a_plan_document_is_a_copy_that_never_changes_the_run(committed_runs: dict[str, Run]) -> None:
    # Renderers and the redaction edit documents; the session's runs are shared by every test.
    run = committed_runs["staging"]
    document = to_preview_json(run)
    app = next(s for s in document["steps"] if s["newState"]["type"] == "heroku:app/app:App")
    app["newState"]["inputs"]["configVars"]["ADDED_BY_A_RENDERER"] = "x"
    app["newState"]["inputs"]["name"] = "changed"
    inputs = run.one("heroku:app/app:App").inputs
    assert "ADDED_BY_A_RENDERER" not in inputs["configVars"] and inputs["name"] != "changed"
