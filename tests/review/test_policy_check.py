"""`shipyard policy check` over plan documents, and the policy verdict on every `shipyard plan`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli.main import main
from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from tests.conftest import ROOT, stack_document


def policy_check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    code = main(["policy", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, doc: Any, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_the_offline_plans_of_both_stacks_pass(committed_runs: dict[str, Run], capsys: Any, tmp_path: Path) -> None:
    for stack, run in committed_runs.items():
        code, out, _ = policy_check(capsys, write(tmp_path, to_preview_json(run), f"{stack}.json"))
        assert code == 0, out
        assert "no violations" in out


def test_a_hand_made_violating_plan_fails_with_resource_policy_and_fix(
    committed_runs: dict[str, Run], capsys: Any, tmp_path: Path
) -> None:
    doc = copy.deepcopy(to_preview_json(committed_runs["prod"]))
    for step in doc["steps"]:
        state = step["newState"]
        if state["type"] == "aws:ec2/launchTemplate:LaunchTemplate":
            state["inputs"]["metadataOptions"]["httpTokens"] = "optional"
        if state["type"] == "heroku:app/app:App":
            state["protect"] = False
    code, out, _ = policy_check(capsys, write(tmp_path, doc))
    assert code == 1
    assert "policy violation: imdsv2-required (mandatory; guards R6)" in out
    assert "resource: aws:ec2/launchTemplate:LaunchTemplate runner-lt" in out
    assert "fix:      set metadata_options http_tokens='required'" in out
    assert "production app acme-storefront is not protected" in out
    assert out.rstrip().endswith("2 policy violations in 21 resources")


def test_a_preview_document_with_unknown_values_is_checked_as_far_as_it_is_known(capsys: Any, tmp_path: Path) -> None:
    urn = "urn:pulumi:staging::shipyard::shipyard:aws:GitlabRunner$aws:ec2/launchTemplate:LaunchTemplate::runner-lt"
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    step = {
        "op": "create",
        "urn": urn,
        "newState": {"type": "aws:ec2/launchTemplate:LaunchTemplate", "urn": urn, "inputs": {"userData": unknown}},
    }
    code, out, _ = policy_check(capsys, write(tmp_path, {"steps": [step], "changeSummary": {"create": 1}}))
    assert code == 1  # what is known is judged: no encrypted block device mapping, no IMDSv2
    assert "1 checks wait for values known only when `pulumi up` runs" in out


def test_a_file_that_is_not_a_plan_exits_2(capsys: Any, tmp_path: Path) -> None:
    code, _, err = policy_check(capsys, write(tmp_path, {"resources": []}))
    assert code == 2 and "is not a plan document" in err and "Traceback" not in err


def test_the_plan_fails_with_exit_1_when_a_setting_breaks_a_policy(
    capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    # A secret in the plain config vars passes the settings' key rule; the H5 policy catches it.
    doc = stack_document("staging")
    doc["shipyard:heroku"]["configVars"]["STRIPE_SECRET_KEY"] = "sk_live_canary"
    path = tmp_path / "Pulumi.custom.yaml"
    path.write_text(yaml.safe_dump({"config": doc}))
    monkeypatch.chdir(ROOT)
    code = main(["plan", "--stack", "staging", "--config-file", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "acme-storefront-staging" in out  # the plan itself is still shown
    assert "policy violation: heroku-secrets-sensitive" in err
    assert "config var STRIPE_SECRET_KEY looks like a secret" in err
