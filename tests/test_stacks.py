"""Rules between the stack files of one repository (infra/stacks.py), and stack files that cannot be
read. No program runs here: these are the files and the rules alone."""

from __future__ import annotations

import copy
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.offline.engine import run_program
from infra.settings import SettingsError, parse_settings
from infra.stacks import cross_stack_problems, problems_of_stack, read_stack_file
from tests.conftest import PROJECT, ROOT, stack_document


def project(tmp_path: Path, **stacks: dict[str, Any]) -> Path:
    """A project folder with these stack files (`config:` sections), beside a copy of Pulumi.yaml."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for stack, config in stacks.items():
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def committed(**changes: Any) -> dict[str, dict[str, Any]]:
    """The committed staging and prod stacks, with `stack={key: value}` changes to their settings."""
    stacks = {"staging": stack_document("staging"), "prod": stack_document("prod")}
    for stack, settings in changes.items():
        stacks.setdefault(stack, {}).update(copy.deepcopy(settings))
        for key in [k for k, v in settings.items() if v is None]:  # None: the key removed
            del stacks[stack][key]
    return stacks


def with_app(doc: dict[str, Any], app: str) -> dict[str, Any]:
    return {**doc["shipyard:heroku"], "app": app}


def test_the_committed_stack_files_break_no_rule_between_stacks() -> None:
    assert cross_stack_problems(ROOT) == []


def test_two_stacks_with_one_heroku_app_are_refused(tmp_path: Path) -> None:  # guards H1
    stacks = committed(prod={"shipyard:heroku": with_app(stack_document("prod"), "acme-storefront-staging")})
    assert cross_stack_problems(project(tmp_path, **stacks)) == [
        "shipyard:heroku.app 'acme-storefront-staging' is the app of stacks prod and staging: each stack needs its "
        "own Heroku app (H1)"
    ]


def test_two_stacks_for_one_gitlab_environment_are_refused(tmp_path: Path) -> None:  # guards G5
    qa = {**stack_document("prod"), "shipyard:heroku": with_app(stack_document("prod"), "acme-storefront-qa")}
    assert cross_stack_problems(project(tmp_path, **committed(qa=qa))) == [
        "shipyard:environment 'production' of GitLab project acme/storefront is claimed by stacks prod and qa: a "
        "GitLab environment and its variables belong to one stack, and the second one's `pulumi up` fails (G5)"
    ]


def test_the_same_environment_of_another_gitlab_project_is_another_environment(tmp_path: Path) -> None:
    other = {**stack_document("prod"), "shipyard:gitlabProject": "acme/backoffice"}
    other["shipyard:heroku"] = with_app(other, "acme-backoffice")
    assert cross_stack_problems(project(tmp_path, **committed(backoffice=other))) == []


def test_gitlab_project_paths_are_compared_whatever_their_case(tmp_path: Path) -> None:  # GitLab ignores it
    qa = {**stack_document("prod"), "shipyard:gitlabProject": "Acme/Storefront"}
    qa["shipyard:heroku"] = with_app(qa, "acme-storefront-qa")
    found = cross_stack_problems(project(tmp_path, **committed(qa=qa)))
    assert len(found) == 1 and "of GitLab project acme/storefront is claimed by stacks prod and qa" in found[0], found


def test_two_registry_owners_are_refused(tmp_path: Path) -> None:  # guards G5
    build = {
        **stack_document("staging"),
        "shipyard:gitlabProject": "acme/backoffice",
        "shipyard:registry": {"name": "acme/backoffice"},
    }
    build["shipyard:heroku"] = with_app(build, "acme-backoffice-staging")
    assert cross_stack_problems(project(tmp_path, **committed(backoffice=build))) == [
        "shipyard:registry is set in stacks backoffice and staging: one stack, the build stack, owns the registry "
        "and the unscoped CI/CD variables, and the others name it in shipyard:buildStack (G5)"
    ]


def test_a_build_stack_typo_suggests_the_stack_it_meant(tmp_path: Path) -> None:
    stacks = committed(prod={"shipyard:buildStack": "organization/shipyard/stagign"})
    assert cross_stack_problems(project(tmp_path, **stacks)) == [
        "shipyard:buildStack of stack prod names stack 'stagign', which has no Pulumi.stagign.yaml here; did you "
        "mean organization/shipyard/staging?"
    ]


def test_a_build_stack_far_from_every_stack_lists_the_stacks(tmp_path: Path) -> None:
    stacks = committed(prod={"shipyard:buildStack": "organization/shipyard/build"})
    found = cross_stack_problems(project(tmp_path, **stacks))
    assert found == [
        "shipyard:buildStack of stack prod names stack 'build', which has no Pulumi.build.yaml here; stacks here: "
        "prod and staging"
    ]


def test_the_build_stack_must_own_the_registry(tmp_path: Path) -> None:
    qa = {**stack_document("prod"), "shipyard:environment": "staging", "shipyard:gitlabProject": "acme/qa"}
    qa["shipyard:heroku"] = with_app(qa, "acme-qa")
    stacks = committed(qa=qa, prod={"shipyard:buildStack": "organization/shipyard/qa"})
    assert cross_stack_problems(project(tmp_path, **stacks)) == [
        "shipyard:buildStack of stack prod names stack 'qa', which does not own the registry (no "
        "shipyard:registry); the build stack here is staging"
    ]


def test_a_build_stack_of_another_project_is_not_looked_for_here(tmp_path: Path) -> None:
    # A stack reference outside this project: its stack file cannot be here (the offline plan uses placeholders).
    stacks = committed(prod={"shipyard:buildStack": "acme/delivery/build"})
    assert cross_stack_problems(project(tmp_path, **stacks)) == []


SECURE = {"secure": "v1:AAAABBBB"}


def test_secret_values_are_never_compared(tmp_path: Path) -> None:
    staging, prod = stack_document("staging"), stack_document("prod")
    staging["shipyard:heroku"]["app"] = prod["shipyard:heroku"]["app"] = SECURE
    staging["shipyard:environment"] = prod["shipyard:environment"] = SECURE
    prod["shipyard:buildStack"] = SECURE
    assert cross_stack_problems(project(tmp_path, staging=staging, prod=prod)) == []


def test_a_secret_registry_still_owns_the_registry(tmp_path: Path) -> None:
    stacks = committed(prod={"shipyard:registry": SECURE, "shipyard:buildStack": None})
    found = cross_stack_problems(project(tmp_path, **stacks))
    assert [p.split(":", 2)[1] for p in found] == ["registry is set in stacks prod and staging"], found


def test_the_running_stacks_secrets_are_never_compared(tmp_path: Path) -> None:
    # `pulumi config set --secret --path heroku.app …` makes the whole `shipyard:heroku` a secret.
    root = project(tmp_path, **committed())
    prod = stack_document("prod")
    prod["shipyard:heroku"]["app"] = "acme-storefront-staging"
    flat = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in prod.items()}
    flat["shipyard:herokuApiKey"] = "HRKU-stacksTestKey0123456789"
    secret = {"shipyard:herokuApiKey", "shipyard:heroku"}
    assert parse_settings(flat, secret, "prod", project_dir=root).heroku.app == "acme-storefront-staging"
    with pytest.raises(SettingsError) as info:
        parse_settings(flat, {"shipyard:herokuApiKey"}, "prod", project_dir=root)
    assert info.value.problems[0].startswith("shipyard:heroku.app 'acme-storefront-staging' is the app of stacks")


def test_keys_without_the_namespace_are_the_projects(tmp_path: Path) -> None:
    # A key without a namespace belongs to the project's, for the Pulumi CLI as for the offline plan.
    prod = {k.removeprefix("shipyard:"): v for k, v in stack_document("prod").items()}
    prod["heroku"] = with_app(stack_document("prod"), "acme-storefront-staging")
    found = cross_stack_problems(project(tmp_path, staging=stack_document("staging"), prod=prod))
    assert found and found[0].startswith("shipyard:heroku.app 'acme-storefront-staging'"), found


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    prod = {
        "shipyard:environment": "staging",
        "shipyard:heroku": with_app(stack_document("prod"), "acme-storefront-staging"),
        "shipyard:registry": {"name": "acme/other"},
        "shipyard:buildStack": "organization/shipyard/stagin",
    }
    found = cross_stack_problems(project(tmp_path, **committed(prod=prod)))
    starts = ["shipyard:heroku.app", "shipyard:environment", "shipyard:registry", "shipyard:buildStack"]
    assert [p.split(" ", 1)[0] for p in found] == starts, found


def test_a_stack_file_that_cannot_be_read_is_reported_not_raised(tmp_path: Path) -> None:
    root = project(tmp_path, **committed())
    (root / "Pulumi.broken.yaml").write_bytes("config: {}\n".encode("utf-16"))
    assert cross_stack_problems(root) == [
        "Pulumi.broken.yaml is UTF-16 text (it starts with a byte-order mark); save it as UTF-8"
    ]
    assert problems_of_stack(root, "prod", {}) == []  # another stack's file does not stop this one


# --- the program's view: its own settings against the other stack files --------------------------------


def settings(stack: str) -> dict[str, Any]:
    """A committed stack's settings by short key, as the program holds them."""
    return {k.removeprefix("shipyard:"): v for k, v in stack_document(stack).items() if k.startswith("shipyard:")}


def test_a_stack_sees_only_the_problems_it_is_part_of(tmp_path: Path) -> None:
    qa = {**stack_document("prod"), "shipyard:heroku": with_app(stack_document("prod"), "acme-storefront-qa")}
    qa["shipyard:buildStack"] = "organization/shipyard/stagin"
    root = project(tmp_path, **committed(qa=qa))
    assert problems_of_stack(root, "staging", settings("staging")) == []
    # prod shares qa's environment, not its typo.
    assert [p.split(" ", 1)[0] for p in problems_of_stack(root, "prod", settings("prod"))] == ["shipyard:environment"]


def test_the_running_stacks_settings_stand_in_for_its_file(tmp_path: Path) -> None:
    root = project(tmp_path, **committed())
    prod = settings("prod")
    prod["heroku"]["app"] = "acme-storefront-staging"
    assert problems_of_stack(root, "prod", prod) == [
        "shipyard:heroku.app 'acme-storefront-staging' is the app of stacks prod and staging: each stack needs its "
        "own Heroku app (H1)"
    ]


# --- stack files that cannot be read ------------------------------------------------------------------


def refusal(path: Path, shown_as: str | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        read_stack_file(path, shown_as)
    assert len(info.value.problems) == 1
    return info.value.problems[0]


def test_a_utf16_stack_file_is_named_and_the_fix_given(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.win.yaml"
    path.write_text("config:\n  aws:region: eu-west-1\n", encoding="utf-16")
    assert refusal(path, "../x/Pulumi.win.yaml") == (
        "../x/Pulumi.win.yaml is UTF-16 text (it starts with a byte-order mark); save it as UTF-8"
    )


def test_utf16_without_a_byte_order_mark_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.win.yaml"
    path.write_text("config:\n  aws:region: eu-west-1\n", encoding="utf-16-le")
    assert refusal(path, "Pulumi.win.yaml") == "Pulumi.win.yaml holds NUL bytes, as UTF-16 text does; save it as UTF-8"


def test_a_latin1_stack_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.old.yaml"
    path.write_text("config:\n  shipyard:heroku:\n    configVars:\n      GREETING: café\n", encoding="latin-1")
    assert refusal(path, "Pulumi.old.yaml") == "Pulumi.old.yaml is not UTF-8 text (line 4); save it as UTF-8"


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bom.yaml"
    path.write_text("config:\n  aws:region: eu-west-1\n", encoding="utf-8-sig")
    assert read_stack_file(path) == {"aws:region": "eu-west-1"}


def test_a_directory_is_not_a_stack_file(tmp_path: Path) -> None:  # fails as root too, unlike chmod 000
    assert refusal(tmp_path, "stacks/") == "stacks/ is a directory, not a stack file"


def test_an_unreadable_stack_file_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root, who may run the tests: the refusal the system would give, given.
    def denied(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert refusal(tmp_path / "Pulumi.locked.yaml", "Pulumi.locked.yaml") == (
        "Pulumi.locked.yaml cannot be read: Permission denied"
    )


def test_the_offline_plan_names_a_stack_file_as_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.win.yaml"
    path.write_text("config: {}\n", encoding="utf-16")
    with pytest.raises(SettingsError) as info:
        run_program(PROJECT, "win", config_file=path, shown_as="../x/Pulumi.win.yaml")
    assert info.value.problems == [
        "../x/Pulumi.win.yaml is UTF-16 text (it starts with a byte-order mark); save it as UTF-8"
    ]


def test_a_missing_stack_file_keeps_the_path_given(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nope.yaml", "../x/nope.yaml") == "../x/nope.yaml: no such file"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("config: [a, b\n", "Pulumi.bad.yaml is not valid YAML at line 2: "),  # then the parser's words
        ("- config\n", "Pulumi.bad.yaml is not a stack file: it must be a YAML map with a `config:` map of settings"),
        ("just text\n", "Pulumi.bad.yaml is not a stack file: it must be a YAML map with a `config:` map of settings"),
        ("config: [a]\n", "Pulumi.bad.yaml: `config:` must be a map of settings"),
    ],
)
def test_a_file_that_is_no_stack_file_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text)
    found = refusal(path, "Pulumi.bad.yaml")
    assert found.startswith(problem) if problem.endswith(": ") else found == problem


def test_without_the_path_given_a_file_below_the_working_directory_is_named_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "stacks").mkdir()
    path = tmp_path / "stacks" / "Pulumi.bad.yaml"
    path.write_text("- config\n")
    monkeypatch.chdir(tmp_path)
    assert refusal(path).startswith("stacks/Pulumi.bad.yaml is not a stack file")
    monkeypatch.chdir(tmp_path / "stacks")
    assert refusal(tmp_path / "Pulumi.yaml").startswith(f"{tmp_path / 'Pulumi.yaml'}: no such file")
