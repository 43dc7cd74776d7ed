"""`shipyard plan diff`: added, removed, changed and replaced resources between real offline plans
(and a `pulumi preview --json` shaped document), old → new values by input path around their first
difference, replacements that lose data listed first (P11), secrets only ever "[secret]",
credentials in plain text only ever redacted, and exit codes for files that are not plans."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.cli.main import main
from infra.offline.diff import (
    ABSENT,
    MARKDOWN_HEADER,
    SECRET_SIG_KEY,
    Change,
    ChangedResource,
    diff_plans,
    render_markdown,
    render_text,
    show,
    show_change,
    warnings,
)
from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from infra.review.redaction import REDACTED
from tests.conftest import run_stack, stack_document
from tests.staging_plans import CANARIES, CANARY_DB, StagingPlans

SHIPYARD = Path(sys.executable).with_name("shipyard")
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
APP = "heroku:app/app:App"
USER_RUNNER = "gitlab:index/userRunner:UserRunner"
ASG = "aws:autoscaling/group:Group"
ECR = "aws:ecr/repository:Repository"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
KMS_KEY = "aws:kms/key:Key"
# Pulumi's secret signature value (sdk rpc._special_secret_sig).
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


# Staging builds with two runners (`runner-…`, the release build runner, and `review-runner-…`) into
# two repositories (`registry`, `registry-review`): where a type occurs twice, name the resource.


def changes_of(diff: Any, typ: str, name: str | None = None) -> dict[str, Change]:
    (resource,) = [c for c in diff.changed if c.resource.type == typ and name in (None, c.resource.name)]
    return {c.path: c for c in resource.inputs}


def step(doc: dict[str, Any], typ: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        s for s in doc["steps"] if s["newState"]["type"] == typ and name in (None, s["urn"].rsplit("::", 1)[-1])
    ]
    return found


def lines_of(text: str, typ: str, name: str) -> list[str]:
    """The input lines `render_text` shows under one changed resource."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split(" [")[0].endswith(f" {typ}  {name}"))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("      "):
            break
        block.append(line)
    return block


def test_changed_settings_show_each_changed_input_path_with_old_and_new_values(staging_plans: StagingPlans) -> None:
    diff = diff_plans(staging_plans.base, staging_plans.changed)

    assert [(r.type, r.name) for r in diff.added] == [("heroku:app/feature:Feature", "staging-preboot")]
    assert diff.removed == []
    lt = changes_of(diff, LAUNCH_TEMPLATE)
    assert (lt["instanceType"].old, lt["instanceType"].new) == ("t3.large", "t3.xlarge")
    assert "userData" in lt  # the new concurrency is rendered into the host's user data
    tags = changes_of(diff, USER_RUNNER)
    assert list(tags) == ["tagLists[2]"] and (tags["tagLists[2]"].old, tags["tagLists[2]"].new) == ("build", "large")
    app = changes_of(diff, APP)
    assert app["configVars.FEATURE_FLAGS"].old is ABSENT and app["configVars.FEATURE_FLAGS"].new == "checkout-v2"
    assert app["sensitiveConfigVars"].new == "[secret]"
    outputs = {o.path: (o.old, o.new) for o in diff.outputs}
    assert outputs == {"runnerTags": (["shipyard", "docker", "build"], ["shipyard", "docker", "large"])}

    text = render_text(diff)
    assert text.startswith("resources: 1 added, 0 removed, 3 changed; outputs: 1 changed\n")
    assert '      instanceType: "t3.large" → "t3.xlarge"' in text
    assert '      configVars.FEATURE_FLAGS: (absent) → "checkout-v2"' in text
    assert "  + heroku:app/feature:Feature  staging-preboot" in text
    markdown = render_markdown(diff)
    assert (
        '| changed | `aws:ec2/launchTemplate:LaunchTemplate` | `runner-lt` | `instanceType`: `"t3.large"` →' in markdown
    )
    assert "| added | `heroku:app/feature:Feature` | `staging-preboot` | |" in markdown


def test_long_values_are_shown_around_their_first_difference(staging_plans: StagingPlans) -> None:
    old_user_data = step(staging_plans.base, LAUNCH_TEMPLATE, "runner-lt")["newState"]["inputs"]["userData"]
    new_user_data = step(staging_plans.changed, LAUNCH_TEMPLATE, "runner-lt")["newState"]["inputs"]["userData"]
    text = render_text(diff_plans(staging_plans.base, staging_plans.changed))
    line = next(line for line in lines_of(text, LAUNCH_TEMPLATE, "runner-lt") if "userData" in line)
    assert len(old_user_data) > 1000
    old, new = line.split(": ", 1)[1].split(" → ")
    assert old != new and old_user_data[100:140] not in line
    assert len(line) < 170 and 2 <= line.count("…") <= 4
    first = next(i for i, (a, b) in enumerate(zip(old_user_data, new_user_data, strict=False)) if a != b)
    assert old_user_data[first : first + 10] in old and new_user_data[first : first + 10] in new


def test_removing_the_runner_removes_its_resources_and_outputs(staging_plans: StagingPlans) -> None:
    diff = diff_plans(staging_plans.base, staging_plans.no_runner)

    removed = {r.type for r in diff.removed}
    assert {"aws:autoscaling/group:Group", LAUNCH_TEMPLATE, USER_RUNNER, "aws:ssm/parameter:Parameter"} <= removed
    assert "shipyard:aws:GitlabRunner" in removed
    # Only the release build runner's resources: the review runner (`review-runner-…`) stays.
    assert all(r.name == "runner" or r.name.startswith("runner-") for r in diff.removed)
    assert diff.added == []
    # The one change: the signing key's policy loses the statement that let the release build
    # runner's role sign. With no release build runner nobody may sign (SigningKeyArgs), and the
    # review runner's role is never given that statement (G11).
    assert [(c.resource.type, c.resource.name) for c in diff.changed] == [(KMS_KEY, "image-signing")]
    key_policy = changes_of(diff, KMS_KEY, "image-signing")["policy"]
    old_sids, new_sids = ([s["Sid"] for s in json.loads(p)["Statement"]] for p in (key_policy.old, key_policy.new))
    assert old_sids == ["AccountAdministersTheKey", "ReleaseBuildRunnerSigns"]
    assert new_sids == ["AccountAdministersTheKey"]
    gone = {o.path for o in diff.outputs if o.new is ABSENT}
    assert {"runnerAsgName", "runnerId", "runnerTags", "runnerTokenParameter"} <= gone
    assert not any(path.startswith("reviewRunner") for path in gone)
    keys = [(r.type, r.urn) for r in diff.removed]
    assert keys == sorted(keys)  # by type, then URN: the same order on every run
    assert "  - gitlab:index/userRunner:UserRunner  runner" in render_text(diff)


def test_swapping_base_and_head_swaps_added_and_removed_and_old_and_new(staging_plans: StagingPlans) -> None:
    forward = diff_plans(staging_plans.base, staging_plans.changed)
    backward = diff_plans(staging_plans.changed, staging_plans.base)
    assert backward.removed == forward.added and backward.added == forward.removed
    assert [(c.path, c.new, c.old) for c in changes_of(backward, LAUNCH_TEMPLATE).values()] == [
        (c.path, c.old, c.new) for c in changes_of(forward, LAUNCH_TEMPLATE).values()
    ]


def test_identical_plans_say_there_are_no_changes(staging_plans: StagingPlans) -> None:
    diff = diff_plans(staging_plans.base, copy.deepcopy(staging_plans.base))
    assert diff.empty
    assert render_text(diff).startswith("no changes")
    assert render_markdown(diff).startswith("**no changes") and "|" not in render_markdown(diff)


def test_a_changed_secret_shows_only_as_secret_in_text_and_markdown(staging_plans: StagingPlans) -> None:
    # The API key and the database URL changed between the plans; neither value may show.
    diff = diff_plans(staging_plans.base, staging_plans.changed)
    shown = render_text(diff) + render_markdown(diff)
    for canary in CANARIES:
        assert canary not in shown
    assert 'sensitiveConfigVars: (absent) → "[secret]"' in shown


def test_a_value_still_carrying_the_secret_signature_is_shown_as_secret(staging_plans: StagingPlans) -> None:
    head = copy.deepcopy(staging_plans.base)
    wrapped = {SECRET_SIG_KEY: SECRET_SIG, "value": {"DATABASE_URL": CANARY_DB}}
    step(head, APP)["newState"]["inputs"]["sensitiveConfigVars"] = wrapped
    head["outputs"]["databaseUrl"] = wrapped

    diff = diff_plans(staging_plans.base, head)
    assert changes_of(diff, APP)["sensitiveConfigVars"].new == "[secret]"
    assert [(o.path, o.new) for o in diff.outputs] == [("databaseUrl", "[secret]")]
    assert CANARY_DB not in render_text(diff) + render_markdown(diff)


def test_a_changed_credential_shows_as_a_change_of_redacted_values(staging_plans: StagingPlans) -> None:
    # guards H5: a token in the plain config vars is flagged by the policy pack; the diff says that it
    # changed, and never what it was or is.
    old, new = "HRKU-canaryOldHook01234", "HRKU-canaryNewHook56789"
    base, head = copy.deepcopy(staging_plans.base), copy.deepcopy(staging_plans.base)
    step(base, APP)["newState"]["inputs"]["configVars"]["LEGACY_DEPLOY_HOOK"] = old
    step(head, APP)["newState"]["inputs"]["configVars"]["LEGACY_DEPLOY_HOOK"] = new
    head["outputs"]["deployHook"] = f"https://hooks.example/deploy?key={new}"

    diff = diff_plans(base, head)

    hook = changes_of(diff, APP)["configVars.LEGACY_DEPLOY_HOOK"]
    assert (hook.old, hook.new) == (REDACTED, REDACTED)
    assert [(o.path, o.new) for o in diff.outputs] == [("deployHook", f"https://hooks.example/deploy?key={REDACTED}")]
    shown = render_text(diff) + render_markdown(diff) + render_text(diff, full=True) + render_markdown(diff, full=True)
    assert old not in shown and new not in shown
    assert f'configVars.LEGACY_DEPLOY_HOOK: "{REDACTED}" → "{REDACTED}"' in render_text(diff)


def test_protect_change_is_shown(staging_plans: StagingPlans) -> None:
    head = copy.deepcopy(staging_plans.base)
    step(head, APP)["newState"]["protect"] = True
    (changed,) = diff_plans(staging_plans.base, head).changed
    assert changed.resource.type == APP and changed.protect == (False, True) and changed.inputs == []
    assert "protect (resource option): false → true" in render_text(diff_plans(staging_plans.base, head))


def preview_document(base: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """HEAD's offline plan in the shape `pulumi preview --json` writes when BASE is deployed: a
    provider step, unchanged resources as `same`, the release build runner's launch template replaced
    delete-before-create (its delete-replaced step first, still carrying the old state), its ASG
    deleted, diagnostics as a list, and the stack outputs on the stack resource only."""
    old = {s["urn"]: s["newState"] for s in base["steps"]}
    steps: list[dict[str, Any]] = [
        {
            "op": "create",
            "urn": "urn:pulumi:staging::shipyard::pulumi:providers:aws::default_7_51_1",
            "newState": {"type": "pulumi:providers:aws", "inputs": {"region": "eu-west-1", "version": "7.51.1"}},
        }
    ]
    for s in head["steps"]:
        state = dict(s["newState"])
        if state["type"] == "pulumi:pulumi:Stack":
            state["outputs"] = head["outputs"]
        name = s["urn"].rsplit("::", 1)[-1]
        if state["type"] == LAUNCH_TEMPLATE and name == "runner-lt":
            steps.append(
                {"op": "delete-replaced", "urn": s["urn"], "oldState": old[s["urn"]], "newState": old[s["urn"]]}
            )
            steps += [{"op": op, "urn": s["urn"], "newState": state} for op in ("replace", "create-replacement")]
        elif state["type"] == "aws:autoscaling/group:Group" and name == "runner-asg":
            steps.append({"op": "delete", "urn": s["urn"], "oldState": old[s["urn"]]})
        elif s["urn"] not in old:
            steps.append({"op": "create", "urn": s["urn"], "newState": state})
        else:
            op = "same" if old[s["urn"]] == state else "update"
            steps.append({"op": op, "urn": s["urn"], "oldState": old[s["urn"]], "newState": state})
    return {
        "steps": steps,
        "changeSummary": {"create": 1, "update": 2, "replace": 1, "delete": 1, "same": 22},
        "diagnostics": [{"urn": steps[1]["urn"], "message": "formation is not applied", "severity": "warning"}],
        "duration": 4200000000,
    }


def test_a_pulumi_preview_document_is_read_by_its_resulting_state(staging_plans: StagingPlans) -> None:
    preview = preview_document(staging_plans.base, staging_plans.changed)
    diff = diff_plans(staging_plans.base, preview)
    expected = diff_plans(staging_plans.base, staging_plans.changed)

    assert diff.added == expected.added  # the provider step is not a resource change
    assert [(r.type, r.name) for r in diff.removed] == [("aws:autoscaling/group:Group", "runner-asg")]
    assert changes_of(diff, LAUNCH_TEMPLATE, "runner-lt")["instanceType"].new == "t3.xlarge"  # the replacement's state
    assert [(c.resource, c.inputs, c.protect) for c in diff.changed] == [
        (c.resource, c.inputs, c.protect) for c in expected.changed
    ]
    assert diff.outputs == expected.outputs
    # guards P11: the preview's own replace steps count even where the facts see only an update
    (template,) = [c for c in diff.changed if c.resource.type == LAUNCH_TEMPLATE]  # the review runner's is `same`
    assert template.resource.name == "runner-lt"
    assert template.replacement is not None and template.op == "delete-replace"  # delete-replaced came first


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", "diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_diff_command_prints_text_or_markdown(
    staging_plans: StagingPlans, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = tmp_path / "base.json", tmp_path / "head.json"
    base.write_text(json.dumps(staging_plans.base))
    head.write_text(json.dumps(staging_plans.no_runner))
    code, out, _ = run_cli(capsys, str(base), str(head))
    assert code == 0 and out == render_text(diff_plans(staging_plans.base, staging_plans.no_runner))
    code, out, _ = run_cli(capsys, str(base), str(head), "--format", "markdown")
    assert (
        code == 0 and out.startswith("**resources: 0 added,") and "| removed | `aws:autoscaling/group:Group` |" in out
    )
    code, out, _ = run_cli(capsys, str(base), str(base))
    assert code == 0 and out.startswith("no changes")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ('{"steps": [', "is not valid JSON (line 1, column 12"),
        ('{"resources": []}', "is not a plan document: it needs a `steps` list"),
        ('{"steps": [{"op": "create"}]}', "is not a plan document"),
        ('{"steps": [{"op": "create", "urn": "runner-lt"}]}', "is not a plan document"),
    ],
)
def test_a_file_that_is_not_a_plan_exits_2_with_one_line(
    staging_plans: StagingPlans, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(staging_plans.base))
    if content is not None:
        bad.write_text(content)
    code, out, err = run_cli(capsys, str(good), str(bad))
    assert code == 2 and out == ""
    assert err.startswith(f"shipyard plan diff: {bad}") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_plan_diff_console_script_exit_codes(staging_plans: StagingPlans, tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps(staging_plans.base))
    (tmp_path / "head.json").write_text(json.dumps(staging_plans.changed))
    ok = subprocess.run(
        [str(SHIPYARD), "plan", "diff", "base.json", "head.json", "--format", "markdown"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "`instanceType`" in ok.stdout and not any(canary in ok.stdout for canary in CANARIES)
    missing = subprocess.run(
        [str(SHIPYARD), "plan", "diff", "base.json", "missing.json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert missing.stderr == "shipyard plan diff: missing.json: no such file\n"


# ---------------------------------------------------------------------------------------------
# Replacements (P11): real offline plans of merge requests that change replace-on-change inputs.
# Each head plan is one program run per test process; copy a document before changing it.


@functools.cache
def prod_moved_to_us() -> dict[str, Any]:
    """Production after a merge request that moves the Heroku app to the US region (H4)."""
    doc = stack_document("prod")
    doc["shipyard:heroku"]["region"] = "us"
    return to_preview_json(run_stack(doc, "prod"))


@functools.cache
def staging_registry_renamed() -> dict[str, Any]:
    """Staging after a merge request that renames the release ECR repository (acme/storefront →
    acme/shop). The review repository is named after it (`<name>-review`, shipyard:registry), so it is
    renamed too."""
    doc = stack_document("staging")
    doc["shipyard:registry"]["name"] = "acme/shop"
    return to_preview_json(run_stack(doc, "staging"))


def with_longer_terminate_hook(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan with a terminate hook that waits longer, as a hook derived from a setting would (R19)."""
    head = copy.deepcopy(plan)
    hooks = step(head, ASG)["newState"]["inputs"]["initialLifecycleHooks"]
    hooks[-1]["heartbeatTimeout"] += 600
    return head


def changed_of(diff: Any, typ: str, name: str | None = None) -> ChangedResource:
    (found,) = [c for c in diff.changed if c.resource.type == typ and name in (None, c.resource.name)]
    return found


def test_a_change_of_a_replace_on_change_input_is_marked_replace_not_changed(committed_runs: dict[str, Run]) -> None:
    # guards P11: renaming the repository deletes it and creates another
    diff = diff_plans(to_preview_json(committed_runs["staging"]), staging_registry_renamed())

    repository = changed_of(diff, ECR, "registry")
    assert repository.op == "replace" and repository.replacement is not None
    assert repository.replacement.reasons == ("name",) and not repository.replacement.protected
    # The review repository's name follows the release one's (`<name>-review`): it is replaced too.
    review = changed_of(diff, ECR, "registry-review")
    assert review.op == "replace" and review.replacement is not None and review.replacement.reasons == ("name",)
    # Both runners' policies name the release repository (the review runner pulls its layer cache):
    # updates, not replacements.
    assert changed_of(diff, ROLE_POLICY, "runner-least-privilege").op == "changed"
    assert changed_of(diff, ROLE_POLICY, "review-runner-least-privilege").op == "changed"
    text = render_text(diff)
    # Each repository and the lifecycle policy that names it: four replacements.
    assert "4 replaced" in text.splitlines()[0]
    assert "  +- aws:ecr/repository:Repository  registry [replace]\n" in text
    assert '      name: "acme/storefront" → "acme/shop"  (forces replacement)\n' in text
    assert "  +- aws:ecr/repository:Repository  registry-review [replace]\n" in text
    assert '      name: "acme/storefront-review" → "acme/shop-review"  (forces replacement)\n' in text
    markdown = render_markdown(diff)
    assert "| replace | `aws:ecr/repository:Repository` | `registry` |" in markdown
    assert '`name`: `"acme/storefront"` → `"acme/shop"` **(replaces)**' in markdown
    assert "replaces the ECR repository `acme/storefront`: its images are deleted" in markdown


def test_a_protected_delete_before_replace_says_how_pulumi_up_will_refuse_it(committed_runs: dict[str, Run]) -> None:
    # guards P11, H4: production's app is protected and deleted before its replacement exists
    diff = diff_plans(to_preview_json(committed_runs["prod"]), prod_moved_to_us())

    app = changed_of(diff, APP)
    assert app.op == "delete-replace" and app.replacement is not None and app.replacement.protected
    assert app.replacement.reasons == ("region",)
    unprotect = f"`pulumi state unprotect '{app.resource.urn}'`"
    text, markdown = render_text(diff), render_markdown(diff)
    assert "  +- heroku:app/app:App  production [delete-replace, protected]\n" in text
    for shown in (text, markdown):
        assert f"`pulumi up` refuses to replace it until {unprotect}" in shown
        assert "It is deleted before its replacement is created" in shown
    assert "| delete-replace | `heroku:app/app:App` | `production` | protected: `pulumi up` refuses" in markdown


def test_replacements_that_lose_data_are_listed_first_in_words(committed_runs: dict[str, Run]) -> None:
    # guards P11, R19: the app (its URL, releases, add-ons) before the group, whatever the table order
    head = with_longer_terminate_hook(prod_moved_to_us())
    diff = diff_plans(to_preview_json(committed_runs["prod"]), head)

    assert [c.resource.type for c in diff.changed if c.replacement] == [ASG, APP]  # table order: by type
    first = warnings(diff)
    assert first[0].startswith("replaces the Heroku app acme-storefront: its URL and name are released")
    assert first[1].startswith("replaces the Auto Scaling group shipyard-prod-runner (forced by initialLifecycle")
    text = render_text(diff)
    assert text.index("read first:") < text.index("replaces the Heroku app") < text.index("replaces the Auto")
    assert text.index("replaces the Auto") < text.index("changed:")
    markdown = render_markdown(diff)
    assert (
        markdown.index("**Read first:**") < markdown.index("replaces the Heroku app") < markdown.index(MARKDOWN_HEADER)
    )


def test_a_long_value_changed_after_character_60_shows_the_difference(committed_runs: dict[str, Run]) -> None:
    # The runner's policy names the repository far into a long JSON string: cut at 60 characters,
    # old and new would look the same.
    diff = diff_plans(to_preview_json(committed_runs["staging"]), staging_registry_renamed())
    policy = changes_of(diff, ROLE_POLICY, "runner-least-privilege")["policy"]
    old_text, new_text = show(policy.old, None), show(policy.new, None)
    first = next(i for i, (a, b) in enumerate(zip(old_text, new_text, strict=False)) if a != b)
    assert first > 60 and show(policy.old)[:59] == show(policy.new)[:59]

    old, new = show_change(policy.old, policy.new)
    assert old != new and "acme/storefront" in old and "acme/shop" in new
    assert old.startswith("…") and len(old) <= 62
    lines = lines_of(render_text(diff), ROLE_POLICY, "runner-least-privilege")
    line = next(line for line in lines if line.startswith("      policy: "))
    assert line == f"      policy: {old} → {new}"
    assert f"`policy`: `{old}` → `{new}`" in render_markdown(diff)


def test_full_shows_changed_values_whole(
    committed_runs: dict[str, Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = to_preview_json(committed_runs["staging"]), staging_registry_renamed()
    policy = changes_of(diff_plans(base, head), ROLE_POLICY, "runner-least-privilege")["policy"]
    whole = show(policy.new, None)
    assert len(whole) > 200 and whole not in render_text(diff_plans(base, head))
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "head.json").write_text(json.dumps(head))

    code, out, _ = run_cli(capsys, str(tmp_path / "base.json"), str(tmp_path / "head.json"), "--full")
    assert code == 0 and f"      policy: {show(policy.old, None)} → {whole}\n" in out
    code, out, _ = run_cli(
        capsys, str(tmp_path / "base.json"), str(tmp_path / "head.json"), "--full", "--format", "markdown"
    )
    assert code == 0 and f"`{whole}`" in out


def as_preview(base: dict[str, Any], head: dict[str, Any], reasons: dict[str, list[str]]) -> dict[str, Any]:
    """HEAD in the shape `pulumi preview --json` writes when BASE is deployed: the types in `reasons`
    replaced with those replaceReasons (delete-before-replace ones deleted first), the rest same,
    update or create."""
    old = {s["urn"]: s["newState"] for s in base["steps"]}
    steps: list[dict[str, Any]] = []
    for s in head["steps"]:
        state, urn = s["newState"], s["urn"]
        if state["type"] in reasons:
            replace = ["replace", "create-replacement"]
            ops = ["delete-replaced", *replace] if state.get("deleteBeforeReplace") else [*replace, "delete-replaced"]
            steps += [
                {
                    "op": op,
                    "urn": urn,
                    "oldState": old[urn],
                    "newState": state,
                    "replaceReasons": reasons[state["type"]],
                }
                for op in ops
            ]
        else:
            op = "create" if urn not in old else "same" if old[urn] == state else "update"
            steps.append({"op": op, "urn": urn, "oldState": old.get(urn), "newState": state})
    return {"steps": steps, "changeSummary": {"replace": len(reasons)}, "outputs": head["outputs"]}


def test_a_real_preview_replacement_is_read_from_its_steps_and_reasons(committed_runs: dict[str, Run]) -> None:
    # guards P11: replaceReasons the fact table does not know still mark the resource replaced
    base = to_preview_json(committed_runs["prod"])
    preview = as_preview(base, prod_moved_to_us(), {APP: ["region"], LAUNCH_TEMPLATE: ["imageId"]})

    diff = diff_plans(base, preview)
    app, template = changed_of(diff, APP), changed_of(diff, LAUNCH_TEMPLATE)
    assert app.op == "delete-replace" and app.replacement is not None and app.replacement.reasons == ("region",)
    assert template.op == "replace" and template.replacement is not None
    assert template.replacement.reasons == ("imageId",)
    assert "replaces the Heroku app acme-storefront" in warnings(diff)[0]


def test_a_type_missing_from_the_facts_is_reported_not_passed_over(committed_runs: dict[str, Run]) -> None:
    # guards P11: a resource type nobody looked up is said to be unknown, in the output
    base, head = to_preview_json(committed_runs["staging"]), copy.deepcopy(to_preview_json(committed_runs["staging"]))
    urn = "urn:pulumi:staging::shipyard::aws:sns/topic:Topic::alerts"
    topic = {"type": "aws:sns/topic:Topic", "urn": urn, "custom": True, "protect": False}
    base = copy.deepcopy(base)
    base["steps"].append({"op": "create", "urn": urn, "newState": {**topic, "inputs": {"name": "old"}}})
    head["steps"].append({"op": "create", "urn": urn, "newState": {**topic, "inputs": {"name": "new"}}})

    text = render_text(diff_plans(base, head))
    assert "cannot tell whether aws:sns/topic:Topic alerts is replaced: aws:sns/topic:Topic is not in " in text
    assert "infra/facts/replace-on-change.yaml" in text
