"""What `shipyard plan` prints for people: a tree that fits the terminal, plain when piped, whole
values on request, secrets hidden in every form, and the next step last.

The command runs end to end, except that the program's run is the session's run of the committed
stack file (`committed_runs`): running the program again would test nothing more here."""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from infra.cli.main import main
from infra.offline import engine
from infra.offline.engine import Run
from infra.offline.plan import render_plan, to_preview_json
from infra.review.redaction import REDACTED
from tests.conftest import ROOT, run_stack, stack_document
from tests.test_secret_canaries import canaries_for, leaves

Plan = Callable[..., tuple[int, str, str]]
ANSI = re.compile(r"\x1b\[")


def use_runs(monkeypatch: pytest.MonkeyPatch, runs: dict[str, Run]) -> None:
    monkeypatch.setattr(engine, "run_program", lambda project, stack, **_: runs[stack])


@pytest.fixture
def plan(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, committed_runs: dict[str, Run]) -> Plan:
    """`shipyard plan ARGS` at a terminal width, stdout piped (captured): exit code, stdout, stderr."""
    use_runs(monkeypatch, committed_runs)
    monkeypatch.chdir(ROOT)

    def run(*argv: str, columns: int = 100) -> tuple[int, str, str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        code = main(["plan", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def heads(out: str) -> list[tuple[int, str, str]]:
    """The resource lines of a plan: (indent, type, name)."""
    found = []
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in ("+", ">"):
            found.append((len(line) - len(line.lstrip()), words[1], words[2]))
    return found


@pytest.mark.parametrize("columns", [80, 120, 200])
def test_the_plan_fits_the_width_with_every_type_and_name_whole(
    plan: Plan, columns: int, committed_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # piped, the plan is plain even where rich would force colours
    code, out, _ = plan("-s", "staging", columns=columns)
    assert code == 0
    lines = out.splitlines()
    assert max(map(len, lines)) <= columns, max(lines, key=len)
    assert not ANSI.search(out)
    shown = {(typ, name) for _, typ, name in heads(out)}
    for step in committed_runs["staging"].steps:
        package, _, member = step.type.split(":")
        # The short type keeps the package and the member whole: aws:ecr/repository:Repository is aws:ecr:Repository.
        assert any(t.startswith(f"{package}:") and t.endswith(f":{member}") and n == step.name for t, n in shown), step
    assert {"aws:ec2:LaunchTemplate", "gitlab:index:ProjectVariable", "heroku:app:App"} <= {t for t, _ in shown}
    for key in stack_document("staging")["shipyard:heroku"]["configVars"]:
        assert re.search(rf"(^|\s){key}=", out), key
    # Values are shortened to the room the terminal has, not to a fixed length.
    description = committed_runs["staging"].one("aws:kms/key:Key").inputs["description"]
    assert len(description) > 80 and (f"description={description}\n" in out) == (columns >= 120)


def test_every_key_of_a_map_stays_in_view_when_its_values_are_cut(committed_runs: dict[str, Run]) -> None:
    # New config vars used to drop out of a value cut at 70 characters.
    document = to_preview_json(committed_runs["staging"])
    app = next(s for s in document["steps"] if s["newState"]["type"] == "heroku:app/app:App")
    config_vars = {f"FEATURE_{i}_ENABLED_FOR_THE_CHECKOUT": "a long value " * 10 for i in range(12)}
    app["newState"]["inputs"]["configVars"] = config_vars
    text = io.StringIO()
    cut = render_plan(document, Console(file=text, width=80))
    lines = text.getvalue().splitlines()
    assert cut and max(map(len, lines)) <= 80
    for key in config_vars:
        assert f"{key}=a long value" in text.getvalue()


def test_a_name_too_long_for_the_line_of_its_type_gets_a_line_of_its_own(committed_runs: dict[str, Run]) -> None:
    document = to_preview_json(committed_runs["staging"])
    step = next(
        s
        for s in document["steps"]
        if s["newState"]["type"] == "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
    )
    name = "registry-scanning-of-every-repository-of-the-storefront"
    step["urn"] = step["newState"]["urn"] = step["urn"].rsplit("::", 1)[0] + "::" + name
    text = io.StringIO()
    render_plan(document, Console(file=text, width=80))
    lines = text.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[lines.index("    + aws:ecr:RegistryScanningConfiguration") + 1] == f"      {name}"


def test_each_resource_sits_under_its_component(plan: Plan, committed_runs: dict[str, Run]) -> None:
    _, out, _ = plan("-s", "prod")
    by_name = {s.urn: s.name for s in committed_runs["prod"].steps}
    parents = {(s.type.split(":")[-1], s.name): by_name.get(s.parent) for s in committed_runs["prod"].steps}
    lines = heads(out)
    assert len(lines) == len(parents)
    for i, (indent, typ, name) in enumerate(lines):
        above = [n for d, _, n in lines[:i] if d < indent]
        # The nearest resource above it and less indented is its parent.
        assert (above[-1] if above else None) == parents[(typ.split(":")[-1], name)], (typ, name)
    assert any(indent > 2 and typ == "aws:ec2:LaunchTemplate" for indent, typ, _ in lines)


def test_show_prints_the_complete_inputs_of_one_resource(plan: Plan, committed_runs: dict[str, Run]) -> None:
    key = committed_runs["staging"].one("aws:kms/key:Key")
    assert len(key.inputs["policy"]) > 200  # longer than any line of the plan at 200 columns
    code, out, _ = plan("-s", "staging", "--show", "aws:kms/key:Key::image-signing", columns=80)
    assert code == 0
    assert key.inputs["policy"] in out and key.urn in out
    assert heads(out) == [(0, "aws:kms:Key", "image-signing")]  # not the component of the same name


def test_show_by_name_prints_every_resource_of_that_name(plan: Plan) -> None:
    code, out, _ = plan("-s", "staging", "--show", "registry")
    assert code == 0
    assert [(typ, name) for _, typ, name in heads(out)] == [
        ("shipyard:aws:Registry", "registry"),
        ("aws:ecr:Repository", "registry"),
    ]
    assert "imageTagMutability: IMMUTABLE_WITH_EXCLUSION" in out


def test_show_of_an_unknown_name_exits_2_suggesting_names(plan: Plan) -> None:
    code, out, err = plan("-s", "staging", "--show", "runer-lt")
    assert code == 2 and out == ""
    assert "no resource runer-lt in stack staging; did you mean runner-lt" in err
    assert "review-runner-token" in err  # the names there are
    assert "Traceback" not in err


def test_full_prints_every_input_of_every_resource_whole(plan: Plan, committed_runs: dict[str, Run]) -> None:
    code, out, _ = plan("-s", "staging", "--full", columns=80)
    assert code == 0
    for lt in committed_runs["staging"].resources("aws:ec2/launchTemplate:LaunchTemplate"):
        assert f"userData: {lt.inputs['userData']}\n" in out
    # A value of several lines keeps them: the PEM public key line by line, each under the one before.
    pem = committed_runs["staging"].one(
        "gitlab:index/projectVariable:ProjectVariable", key="SHIPYARD_SIGNING_PUBLIC_KEY"
    )
    first, *rest = pem.inputs["value"].splitlines()
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == first)
    indent = lines[at][: -len(first)]
    assert lines[at + 1 : at + 1 + len(rest)] == [indent + line for line in rest]
    assert out.splitlines()[-1].startswith("next: pulumi up -s staging ")


def test_full_does_not_go_with_json(plan: Plan) -> None:
    code, out, err = plan("-s", "staging", "--json", "--full")
    assert code == 2 and out == "" and "--full" in err


@pytest.fixture(scope="module")
def canary_run() -> Run:
    """Staging with a distinct canary in every secret setting, as `pulumi up` would hand them over."""
    return run_stack(stack_document("staging"), "staging", secrets=canaries_for("staging"))


@pytest.mark.parametrize(
    "form", [(), ("--full",), ("--json",), ("--show", "staging-heroku-api-key"), ("--show", "staging")]
)
def test_secrets_are_secret_in_every_form(
    form: tuple[str, ...], canary_run: Run, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runs(monkeypatch, {"staging": canary_run})
    monkeypatch.chdir(ROOT)
    code = main(["plan", "-s", "staging", *form])
    out, err = capsys.readouterr()
    assert code == 0
    for canary in (leaf for value in canaries_for("staging").values() for leaf in leaves(value)):
        assert canary not in out + err
    assert "[secret]" in out  # the HEROKU_API_KEY variable and the app's sensitive config vars


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_last_line_is_the_next_step(plan: Plan, stack: str) -> None:
    _, narrow, _ = plan("-s", stack, columns=80)
    _, wide, _ = plan("-s", stack, columns=200)
    assert narrow.splitlines()[-1] == f"next: pulumi up -s {stack} --policy-pack policy"
    # shipyard is not on PATH: the command is the environment's script, as it is named from here.
    assert narrow.splitlines()[-2] == f"the same plan as JSON: .venv/bin/shipyard plan -s {stack} --json"
    assert wide.splitlines()[-1].startswith(f"next: pulumi up -s {stack} --policy-pack policy ")
    assert wide.splitlines()[-1].endswith(f".venv/bin/shipyard plan -s {stack} --json)")


def test_the_next_step_plans_the_same_file_from_where_the_user_is(plan: Plan, monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT / "infra")
    _, out, _ = plan("-s", "staging", "--config-file", "../Pulumi.staging.yaml", columns=200)
    # pulumi -C runs in the project, so the file is named from there; shipyard takes it as given.
    assert out.splitlines()[-1] == (
        "next: pulumi up -C .. -s staging --config-file Pulumi.staging.yaml --policy-pack policy   "
        "(the same plan as JSON: ../.venv/bin/shipyard plan -s staging --config-file ../Pulumi.staging.yaml --json)"
    )


def test_with_policy_violations_the_next_step_is_to_fix_them(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, committed_runs: dict[str, Run]
) -> None:
    run = copy.deepcopy(committed_runs["staging"])
    runner_lt = next(s for s in run.steps if s.name == "runner-lt")
    runner_lt.inputs["metadataOptions"]["httpTokens"] = "optional"
    use_runs(monkeypatch, {"staging": run})
    monkeypatch.chdir(ROOT)
    code = main(["plan", "-s", "staging"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "policy violation" in err and "pulumi up" not in out
    assert out.splitlines()[-1] == "next: fix the policy violation, then: .venv/bin/shipyard plan -s staging"


def test_a_terminal_gets_colours(plan: Plan, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    # The plain output of the tests above is plain because stdout is piped, not by accident.
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    plan("-s", "prod")
    assert ANSI.search(terminal.getvalue())


def test_what_looks_like_a_credential_is_redacted_in_the_plan_and_its_json(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, committed_runs: dict[str, Run]
) -> None:
    run = copy.deepcopy(committed_runs["staging"])
    run.one("heroku:app/app:App").inputs["configVars"]["DATABASE_PASSWORD"] = "hunter2-in-plain-text"
    use_runs(monkeypatch, {"staging": run})
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "200")
    outputs = []
    for form in ((), ("--json",), ("--full",), ("--show", "staging")):
        code = main(["plan", "-s", "staging", *form])
        outputs.append(capsys.readouterr().out)
        assert code == 1  # the policies judge the plan as it is: a password in plain text
    for out in outputs:
        assert "hunter2-in-plain-text" not in out
    assert f"DATABASE_PASSWORD={REDACTED}" in outputs[0]  # the key stays in view
    assert json.loads(outputs[1])["steps"] and REDACTED in outputs[1]


def test_a_missing_config_file_is_named_as_given(plan: Plan, tmp_path: Path) -> None:
    for given in (str(tmp_path / "nowhere" / "Pulumi.qa.yaml"), "settings/Pulumi.qa.yaml"):
        code, out, err = plan("-s", "qa", "--config-file", given)
        assert code == 2 and out == ""
        assert err == f"shipyard plan: --config-file {given}: no such file\n"


def test_an_unknown_stack_lists_the_stacks_and_the_closest(plan: Plan) -> None:
    code, _, err = plan("-s", "stagign")
    assert code == 2
    assert (
        err == "shipyard plan: no stack file Pulumi.stagign.yaml (stacks here: prod, staging); did you mean staging?\n"
    )
