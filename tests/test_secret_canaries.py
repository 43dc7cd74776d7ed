"""A distinct canary in every secret setting, and proof that none appears anywhere a person or a log
could see it: the plan table, the plan JSON, the launch template's user data, the stack outputs,
warnings, the policy report, the MR note, and the error messages of failing runs.

The secret settings come from the settings model, so a secret added later is covered without a
change here; the provider credentials are written out, so none can drop out of the code's list
unnoticed. A stack output that is a Pulumi secret is shown as "[secret]" wherever outputs are shown."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from infra.cli.main import main
from infra.offline.engine import Project, Run, run_program
from infra.offline.plan import render_diagnostics, render_table, to_preview_json
from infra.review.mr_note import note_body
from infra.review.policy_check import verdict
from infra.settings import SECRET_SETTING_KEYS, Settings, SettingsError, fields_of
from infra.userdata import decode
from tests.conftest import run_stack, stack_document

# The providers' credentials (H9, G1), independent of infra.settings.PROVIDER_SECRET_KEYS.
PROVIDER_CREDENTIALS = ("heroku:apiKey", "gitlab:token", "aws:accessKey", "aws:secretKey", "aws:token")


def test_the_model_marks_the_known_secret_settings_secret() -> None:
    assert {"herokuApiKey", "herokuSensitiveConfigVars"} <= SECRET_SETTING_KEYS


def canaries_for(stack: str) -> dict[str, Any]:
    """One canary per secret setting of the model and per provider credential, all different."""
    shape = fields_of(Settings)
    secrets: dict[str, Any] = {}
    for key in sorted(SECRET_SETTING_KEYS):
        if shape[key][1]:  # a map of secrets, e.g. herokuSensitiveConfigVars
            secrets[f"shipyard:{key}"] = {
                "DATABASE_URL": f"postgres://app:Pa55{stack}Db@db.internal/app",
                "SESSION_SECRET": f"canary-{stack}-session-9f3e",
            }
        else:
            secrets[f"shipyard:{key}"] = f"HRKU-canary-{stack}-{key}-7c1d"
    for key in PROVIDER_CREDENTIALS:
        secrets[key] = f"canary-{stack}-{key.replace(':', '-')}-42ab"
    return secrets


def leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    return [value]


def visible(run: Run) -> str:
    """Everything of a run that a person or a log could see."""
    table = io.StringIO()
    console = Console(file=table, width=250)
    render_table(run, console)
    render_diagnostics(run, console)
    document = to_preview_json(run)
    user_data = [decode(s.raw_inputs["userData"]) for s in run.resources("aws:ec2/launchTemplate:LaunchTemplate")]
    plain_outputs = {k: v for k, v in run.outputs.items() if k not in run.secret_outputs}
    return "\n".join(
        [
            table.getvalue(),
            json.dumps(document),
            *user_data,
            json.dumps(run.shown_outputs),
            json.dumps(plain_outputs, default=str),
            *run.warnings,
            verdict(document)[1],
            note_body(run.stack, document),
        ]
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_secret_setting_is_visible_anywhere(stack: str) -> None:
    secrets = canaries_for(stack)
    run = run_stack(stack_document(stack), stack, secrets=secrets)
    # The canaries really reach the providers (marked secret), so their absence below means something.
    api_key = run.one("gitlab:index/projectVariable:ProjectVariable", key="HEROKU_API_KEY")
    assert api_key.raw_inputs["value"] == secrets["shipyard:herokuApiKey"]
    app = run.one("heroku:app/app:App")
    assert app.raw_inputs["sensitiveConfigVars"] == secrets["shipyard:herokuSensitiveConfigVars"]
    assert run.resources("aws:ec2/launchTemplate:LaunchTemplate")  # user data is part of what is checked

    shown = visible(run)
    for canary in (leaf for value in secrets.values() for leaf in leaves(value)):
        assert canary not in shown, canary
    assert "Pa55" not in shown  # not even the password part of a URL


def test_no_secret_is_visible_in_the_errors_of_failing_runs() -> None:
    secrets = canaries_for("staging")
    # Settings errors next to valid secrets: the message lists problems, never secret values.
    broken = stack_document("staging")
    broken["shipyard:heroku"]["app"] = "Not_A_Valid_Name"
    broken["shipyard:runner"]["instanceTpye"] = "t3.large"
    with pytest.raises(Exception) as settings_error:
        run_stack(broken, "staging", secrets=secrets)
    # A secret GitLab cannot mask: refused by name, its value never quoted (G2).
    unmaskable = {**secrets, "shipyard:herokuApiKey": "canary value with spaces 0xDEAD"}
    with pytest.raises(Exception) as mask_error:
        run_stack(stack_document("staging"), "staging", secrets=unmaskable)
    # A failure inside the deployment (the production stack pointing at a build stack of the same
    # environment, G5) with every secret set.
    prod = stack_document("prod")
    prod["shipyard:environment"] = "staging"
    with pytest.raises(Exception) as wiring_error:
        run_stack(prod, "prod", secrets=canaries_for("prod"))

    messages = [
        str(e.value) + repr(getattr(e.value, "problems", "")) for e in (settings_error, mask_error, wiring_error)
    ]
    assert "shipyard:heroku.app" in messages[0] and "shipyard:herokuApiKey" in messages[1]
    assert "staging" in messages[2]
    values = [*leaves(secrets), *leaves(canaries_for("prod")), "canary value with spaces", "0xDEAD"]
    for message in messages:
        for canary in values:
            assert canary not in message, (canary, message)


@pytest.mark.parametrize("key", PROVIDER_CREDENTIALS)
def test_a_provider_credential_in_plain_text_stops_the_run_without_echoing_it(key: str) -> None:  # guards H9, G1
    doc = stack_document("staging")
    doc[key] = f"canary-plaintext-{key.replace(':', '-')}-5e6f"  # in the stack file, not with --secret
    with pytest.raises(SettingsError) as info:
        run_stack(doc, "staging")
    message = str(info.value)
    assert key in message and "--secret" in message
    assert doc[key] not in message


# --- secret stack outputs ----------------------------------------------------------------------------

SECRET_OUTPUT = "postgres://app:OutputCanary9d2e@db.internal/app"
NESTED_SECRET = "NestedOutputCanary4b7a"
OUTPUTS_PROGRAM = f"""\
import pulumi

pulumi.export("plainUrl", "https://probe.example.test/")
pulumi.export("databaseUrl", pulumi.Output.secret({SECRET_OUTPUT!r}))
pulumi.export("connection", {{"host": "db.internal", "password": pulumi.Output.secret({NESTED_SECRET!r})}})
"""


@pytest.fixture
def outputs_project(tmp_path: Path) -> Path:
    """A project whose program exports secrets, run by the same engine as shipyard's own program."""
    (tmp_path / "Pulumi.yaml").write_text("name: outputs-probe\nruntime: python\nmain: __main__.py\n")
    (tmp_path / "__main__.py").write_text(OUTPUTS_PROGRAM)
    (tmp_path / "Pulumi.probe.yaml").write_text("config: {}\n")
    return tmp_path


def test_secret_stack_outputs_are_shown_only_as_secret(
    outputs_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_program(Project.load(outputs_project), "probe")
    # The raw values really are outputs of the run, so their absence below means something.
    assert run.outputs["databaseUrl"] == SECRET_OUTPUT
    assert run.outputs["connection"]["password"] == NESTED_SECRET
    assert run.secret_outputs == {"databaseUrl", "connection"}
    assert run.shown_outputs == {
        "plainUrl": "https://probe.example.test/",
        "databaseUrl": "[secret]",
        "connection": "[secret]",
    }

    monkeypatch.chdir(outputs_project)
    assert main(["plan", "--stack", "probe"]) == 0
    table = capsys.readouterr()
    assert main(["plan", "--stack", "probe", "--json"]) == 0
    document = capsys.readouterr()
    assert json.loads(document.out)["outputs"] == run.shown_outputs
    assert re.search(r"databaseUrl\s.*\[secret\]", table.out), table.out
    assert "https://probe.example.test/" in table.out  # a plain output is shown as it is
    for shown in (table.out, table.err, document.out, document.err):
        assert "OutputCanary9d2e" not in shown and NESTED_SECRET not in shown
