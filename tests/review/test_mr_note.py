"""`shipyard mr-note` against a local fake of GitLab's REST API: one note per stack and user,
created once and then edited, replacements that lose data before the folded table (P11), cut to
size, never a secret, a credential or the token, clear exit codes, and `--dry-run`, which prints
the note without GitLab."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from infra.cli.main import main
from infra.offline.diff import show
from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from infra.review.mr_note import VARIABLES, marker, note_body
from infra.review.redaction import REDACTED, redact_credentials
from tests.fake_api import serve
from tests.offline.test_diff import as_preview, prod_moved_to_us, staging_registry_renamed
from tests.staging_plans import CANARIES, PLAIN_CONFIG_CREDENTIALS, StagingPlans

SHIPYARD = Path(sys.executable).with_name("shipyard")
TOKEN = "glpat-canaryToken0123456789"
PROJECT, MR = "4242", "17"
ME = {"id": 7, "username": "shipyard-bot"}
SOMEONE_ELSE = {"id": 99, "username": "reviewer"}
# The release build runner's role policy (staging also has the review runner's).
RELEASE_RUNNER_POLICY = "aws:iam/rolePolicy:RolePolicy::runner-least-privilege"
NOTES = re.compile(rf"/api/v4/projects/{PROJECT}/merge_requests/{MR}/notes(?:/(?P<note>\d+))?")


@dataclass
class Request:
    method: str
    path: str
    body: Any
    token: str | None


@dataclass
class FakeGitLab:
    """The four endpoints python-gitlab calls for a note, with GitLab's own rule that a user may
    edit only their own notes; every request is recorded."""

    url: str = ""
    notes: list[dict[str, Any]] = field(default_factory=list)  # newest first, as GitLab lists them
    requests: list[Request] = field(default_factory=list)
    fail_with: int | None = None

    def note(self, body: str, author: dict[str, Any] = ME) -> dict[str, Any]:
        note = {"id": 100 + len(self.notes), "body": body, "author": author, "system": False}
        self.notes.insert(0, note)
        return note

    def answer(self, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        self.requests.append(Request(method, path, body, token))
        if self.fail_with:
            return self.fail_with, {"message": f"{self.fail_with} Forbidden"}
        if token != TOKEN:
            return 401, {"message": "401 Unauthorized"}
        if (method, path) == ("GET", "/api/v4/user"):
            return 200, ME
        match = NOTES.fullmatch(path)
        if match is None:
            return 404, {"message": "404 Not found"}
        if method == "GET" and not match["note"]:
            return 200, self.notes
        if method == "POST" and not match["note"]:
            return 201, self.note(body["body"])
        found = [n for n in self.notes if str(n["id"]) == match["note"]]
        if method == "PUT" and found:
            if found[0]["author"]["id"] != ME["id"]:
                return 403, {"message": "403 Forbidden"}
            found[0]["body"] = body["body"]
            return 200, found[0]
        return 404, {"message": "404 Not found"}

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]


@pytest.fixture
def gitlab_api() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        return fake.answer(method, path, body, headers.get("PRIVATE-TOKEN"))

    with serve(answer) as url:
        fake.url = url
        yield fake


@pytest.fixture
def ci_env(monkeypatch: pytest.MonkeyPatch, gitlab_api: FakeGitLab) -> dict[str, str]:
    """A merge-request pipeline's variables, and nothing inherited from a real CI job or proxy."""
    for names in VARIABLES.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    env = {
        "CI_SERVER_URL": gitlab_api.url,
        "SHIPYARD_NOTE_TOKEN": TOKEN,
        "CI_MERGE_REQUEST_PROJECT_ID": PROJECT,
        "CI_MERGE_REQUEST_IID": MR,
        "CI_PIPELINE_URL": f"{gitlab_api.url}/acme/storefront/-/pipelines/555",
        "CI_COMMIT_SHORT_SHA": "0ddba11",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def plan_files(tmp_path: Path, staging_plans: StagingPlans) -> dict[str, Path]:
    files = {"base": tmp_path / "base.json", "changed": tmp_path / "changed.json"}
    files["base"].write_text(json.dumps(staging_plans.base))
    files["changed"].write_text(json.dumps(staging_plans.changed))
    return files


def mr_note(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["mr-note", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_first_run_creates_a_note_with_marker_counts_first_and_folded_details(
    gitlab_api: FakeGitLab,
    ci_env: dict[str, str],
    plan_files: dict[str, Path],
    staging_plans: StagingPlans,
    capsys: Any,
) -> None:
    code, out, err = mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])

    assert code == 0, err
    (post,) = gitlab_api.calls("POST")
    assert out == f"created note {gitlab_api.notes[0]['id']}\n"
    body = post.body["body"]
    counts = f"**{staging_plans.base['changeSummary']['create']} to create**"
    assert body.startswith(marker("staging") + "\n### Plan of stack `staging`\n\n" + counts)
    assert body.index(counts) < body.index("<details><summary>")
    assert "| create | `heroku:app/app:App` | `staging` |" in body and body.rstrip().endswith("</details>")
    assert ci_env["CI_PIPELINE_URL"] in body and "`0ddba11`" in body
    assert {r.token for r in gitlab_api.requests} == {TOKEN}
    assert not gitlab_api.calls("PUT")


def test_second_run_edits_the_same_note_instead_of_adding_one(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any
) -> None:
    assert mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])[0] == 0
    note_id = gitlab_api.notes[0]["id"]

    code, out, _ = mr_note(capsys, "--stack", "staging", "--plan", plan_files["changed"])

    assert code == 0 and out == f"updated note {note_id}\n"
    assert len(gitlab_api.calls("POST")) == 1 and len(gitlab_api.notes) == 1
    (put,) = gitlab_api.calls("PUT")
    assert put.path.endswith(f"/notes/{note_id}")
    assert "`staging-preboot`" in gitlab_api.notes[0]["body"]  # the feature only the changed plan has


def test_a_note_by_another_user_with_the_same_marker_is_not_edited(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any
) -> None:
    theirs = gitlab_api.note(f"quoting the bot:\n{marker('staging')}\nold plan", author=SOMEONE_ELSE)
    before = dict(theirs)

    code, out, _ = mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])

    assert code == 0 and out.startswith("created note ")
    assert not gitlab_api.calls("PUT") and theirs == before


def test_the_note_of_another_stack_is_left_alone(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any
) -> None:
    prod = gitlab_api.note(f"{marker('prod')}\n### Plan of stack `prod`")
    staging_eu = gitlab_api.note(f"{marker('staging-eu')}\n### Plan of stack `staging-eu`")
    ours = gitlab_api.note(f"{marker('staging')}\n### Plan of stack `staging`\n\nstale")

    code, out, _ = mr_note(capsys, "--stack", "staging", "--plan", plan_files["changed"])

    assert code == 0 and out == f"updated note {ours['id']}\n"
    assert [r.path.rsplit("/", 1)[-1] for r in gitlab_api.calls("PUT")] == [str(ours["id"])]
    assert prod["body"].endswith("`prod`") and staging_eu["body"].endswith("`staging-eu`")
    assert not gitlab_api.calls("POST")


def test_of_two_own_notes_for_the_stack_the_older_one_is_edited(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any
) -> None:
    older = gitlab_api.note(f"{marker('staging')}\nfirst")
    newer = gitlab_api.note(f"{marker('staging')}\nduplicate from a concurrent pipeline")

    code, out, _ = mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])

    assert code == 0 and out == f"updated note {older['id']}\n"
    assert newer["body"].endswith("duplicate from a concurrent pipeline") and not gitlab_api.calls("POST")


def test_falls_back_to_gitlab_token_and_ci_project_id(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("SHIPYARD_NOTE_TOKEN")
    monkeypatch.delenv("CI_MERGE_REQUEST_PROJECT_ID")
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("CI_PROJECT_ID", PROJECT)

    assert mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])[0] == 0
    assert len(gitlab_api.calls("POST")) == 1 and {r.token for r in gitlab_api.requests} == {TOKEN}


def test_no_secret_value_reaches_gitlab(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any
) -> None:
    # The diff note shows values; the API key and the database URL changed between the plans.
    code, _, err = mr_note(capsys, "--stack", "staging", "--plan", plan_files["changed"], "--base", plan_files["base"])

    assert code == 0, err
    (post,) = gitlab_api.calls("POST")
    assert '`sensitiveConfigVars`: `(absent)` → `"[secret]"`' in post.body["body"]
    sent = json.dumps([r.body for r in gitlab_api.requests])
    for canary in CANARIES:
        assert canary not in sent


def test_diff_note_counts_changes_first_and_lists_changed_inputs(staging_plans: StagingPlans) -> None:
    body = note_body("staging", staging_plans.changed, base=staging_plans.base)
    counts = "**resources: 1 added, 0 removed, 3 changed; outputs: 1 changed**"
    assert body.startswith(
        marker("staging") + "\n### Plan changes of stack `staging` against the base plan\n\n" + counts
    )
    assert body.index(counts) < body.index("<details><summary>Changes (5)</summary>")
    assert '`instanceType`: `"t3.large"` → `"t3.xlarge"`' in body
    same = note_body("staging", staging_plans.base, base=copy.deepcopy(staging_plans.base))
    assert "**no changes" in same and "<details>" not in same


def huge_plan(resources: int) -> dict[str, Any]:
    """A plan of thousands of resources, as a big stack would have."""
    steps = [
        {
            "op": "create",
            "urn": f"urn:pulumi:staging::shipyard::shipyard:aws:Fleet$aws:ec2/instance:Instance::worker-{i:05d}",
            "newState": {"type": "aws:ec2/instance:Instance", "inputs": {"instanceType": "t3.micro", "index": i}},
        }
        for i in range(resources)
    ]
    return {"steps": steps, "changeSummary": {"create": resources}, "outputs": {}}


@pytest.mark.parametrize("with_base", [False, True], ids=["plan", "diff"])
def test_a_huge_plan_is_cut_under_the_limit_saying_how_many_rows_were_left_out(with_base: bool) -> None:
    plan = huge_plan(5000)
    base: dict[str, Any] | None = {"steps": [], "outputs": {}} if with_base else None

    body = note_body("staging", plan, base=base, limit=60_000)

    assert len(body) <= 60_000
    shown = len(re.findall(r"^\| (create|added) \|", body, flags=re.MULTILINE))
    (cut,) = re.findall(
        r"^… (\d+) more (?:resources|changes) not shown; the full plan is in the job's artifacts\.$",
        body,
        flags=re.MULTILINE,
    )
    assert shown > 100 and shown + int(cut) == 5000
    assert body.startswith(marker("staging")) and body.rstrip().endswith("</details>")
    small = note_body("staging", huge_plan(50), base=base, limit=60_000)
    assert "not shown" not in small and len(re.findall(r"^\| (create|added) \|", small, flags=re.MULTILINE)) == 50


def test_missing_ci_variables_exit_2_naming_all_of_them_and_make_no_request(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any, monkeypatch: Any
) -> None:
    for name in ("CI_SERVER_URL", "SHIPYARD_NOTE_TOKEN", "CI_MERGE_REQUEST_IID"):
        monkeypatch.delenv(name)

    code, out, err = mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    for name in ("CI_SERVER_URL", "SHIPYARD_NOTE_TOKEN or GITLAB_TOKEN", "CI_MERGE_REQUEST_IID"):
        assert name in err
    assert "CI_MERGE_REQUEST_PROJECT_ID" not in err  # that one is set
    assert gitlab_api.requests == []


def test_an_unreadable_plan_exits_2_and_makes_no_request(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    broken = tmp_path / "plan.json"
    broken.write_text("{not json")
    code, _, err = mr_note(capsys, "--stack", "staging", "--plan", broken)
    assert code == 2 and f"{broken} is not valid JSON" in err and "Traceback" not in err
    assert gitlab_api.requests == []


@pytest.mark.parametrize("status", [401, 403])
def test_gitlab_refusal_exits_1_with_its_answer_and_never_the_token(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any, status: int
) -> None:
    gitlab_api.fail_with = status

    code, out, err = mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])

    assert code == 1 and out == ""
    assert f"({status}: {status} Forbidden)" in err and "SHIPYARD_NOTE_TOKEN" in err
    assert err.count("\n") == 1 and "Traceback" not in err and TOKEN not in err


def test_unreachable_gitlab_exits_1_without_traceback(
    ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any, monkeypatch: Any
) -> None:
    with socket.socket() as closed:  # a port nobody listens on once the socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("CI_SERVER_URL", f"http://127.0.0.1:{port}")
    code, _, err = mr_note(capsys, "--stack", "staging", "--plan", plan_files["base"])
    assert code == 1 and "cannot reach GitLab" in err and "Traceback" not in err and TOKEN not in err


def test_console_script_posts_the_note(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path]
) -> None:
    result = subprocess.run(
        [str(SHIPYARD), "mr-note", "--stack", "staging", "--plan", "changed.json"],
        cwd=plan_files["changed"].parent,
        env=dict(os.environ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"created note {gitlab_api.notes[0]['id']}\n"
    assert gitlab_api.notes[0]["body"].startswith(marker("staging"))


def test_the_note_shows_the_policy_verdict_before_the_details(staging_plans: StagingPlans) -> None:
    clean = note_body("staging", staging_plans.base)
    assert "Policy pack: no violations." in clean
    broken = copy.deepcopy(staging_plans.base)
    for step in broken["steps"]:
        if step["newState"]["type"] == "aws:ec2/securityGroup:SecurityGroup":
            step["newState"]["inputs"]["ingress"] = [
                {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
            ]
    body = note_body("staging", broken)
    # Staging has two runners, each with its security group: the open ingress is in both, and the
    # note counts and names each violation.
    assert "**Policy pack: 2 violations** (mandatory: this cannot be deployed)" in body
    for group in ("runner-sg", "review-runner-sg"):
        assert f"`no-ingress-from-anywhere` on `aws:ec2/securityGroup:SecurityGroup` `{group}`" in body
    assert body.count("ingress from 0.0.0.0/0 on ports 22-22") == 2
    assert body.index("Policy pack") < body.index("<details>")


def test_the_note_lists_a_data_losing_replacement_before_the_folded_table(committed_runs: dict[str, Run]) -> None:
    # guards P11, H4: moving production's app replaces it; reviewers read that before any table
    base = to_preview_json(committed_runs["prod"])
    urn = "urn:pulumi:prod::shipyard::shipyard:heroku:Environment$heroku:app/app:App::production"

    body = note_body("prod", prod_moved_to_us(), base=base)

    sentence = "- replaces the Heroku app `acme-storefront`: its URL and name are released"
    assert sentence in body and "1 replaced" in body
    assert body.index("**Read first:**") < body.index(sentence) < body.index("<details>")
    assert f"`pulumi state unprotect '{urn}'`" in body
    assert "| delete-replace | `heroku:app/app:App` | `production` |" in body


def test_a_preview_alone_announces_its_replacements_before_the_table(committed_runs: dict[str, Run]) -> None:
    # guards P11: the MR preview of a real stack is one `pulumi preview --json` document, no base
    preview = as_preview(
        to_preview_json(committed_runs["prod"]), prod_moved_to_us(), {"heroku:app/app:App": ["region"]}
    )

    body = note_body("prod", preview)

    sentence = "- replaces the Heroku app `acme-storefront`: its URL"
    assert sentence in body and "(forced by `region`)" in body
    assert body.index(sentence) < body.index("<details>")
    clean = note_body("prod", to_preview_json(committed_runs["prod"]))  # an offline plan creates everything
    assert "Read first" not in clean


def test_full_values_still_fit_the_size_cap_saying_what_was_left_out(committed_runs: dict[str, Run]) -> None:
    base, head = to_preview_json(committed_runs["staging"]), staging_registry_renamed()
    policy = next(s for s in head["steps"] if s["urn"].endswith(RELEASE_RUNNER_POLICY))
    whole = show(policy["newState"]["inputs"]["policy"], None)

    assert whole in note_body("staging", head, base=base, full=True)
    assert whole not in note_body("staging", head, base=base)
    small = note_body("staging", head, base=base, full=True, limit=2500)
    assert len(small) <= 2500 and re.search(r"^… \d+ more changes not shown", small, flags=re.MULTILINE)
    assert "replaces the ECR repository `acme/storefront`" in small  # what to read first is never cut


def test_console_script_full_flag_reaches_the_note(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], tmp_path: Path, committed_runs: dict[str, Run], capsys: Any
) -> None:
    (tmp_path / "base.json").write_text(json.dumps(to_preview_json(committed_runs["staging"])))
    (tmp_path / "head.json").write_text(json.dumps(staging_registry_renamed()))

    code, _, err = mr_note(
        capsys, "--stack", "staging", "--plan", tmp_path / "head.json", "--base", tmp_path / "base.json", "--full"
    )

    assert code == 0, err
    (post,) = gitlab_api.calls("POST")
    assert '`"acme/storefront"` → `"acme/shop"` **(replaces)**' in post.body["body"]
    policy = next(s for s in staging_registry_renamed()["steps"] if s["urn"].endswith(RELEASE_RUNNER_POLICY))
    assert show(policy["newState"]["inputs"]["policy"], None) in post.body["body"]


def refuse_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dry run opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_note_it_would_post_without_gitlab_variables_or_network(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any, monkeypatch: Any
) -> None:
    argv = ("--stack", "staging", "--plan", plan_files["changed"], "--base", plan_files["base"])
    assert mr_note(capsys, *argv)[0] == 0
    (posted,) = [r.body["body"] for r in gitlab_api.calls("POST")]
    for names in VARIABLES.values():  # the pipeline's URL and commit stay: the note names them
        for name in names:
            monkeypatch.delenv(name, raising=False)
    requests = len(gitlab_api.requests)
    refuse_connections(monkeypatch)

    code, out, err = mr_note(capsys, *argv, "--dry-run")

    assert (code, err) == (0, "") and out == posted
    assert len(gitlab_api.requests) == requests


def test_dry_run_still_refuses_a_file_that_is_not_a_plan(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    refuse_connections(monkeypatch)
    broken = tmp_path / "plan.json"
    broken.write_text('{"resources": []}')

    code, out, err = mr_note(capsys, "--stack", "staging", "--plan", broken, "--dry-run")

    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"shipyard mr-note: {broken} is not a plan document: it needs a `steps` list")
    assert err.count("\n") == 1


def test_a_credential_the_policy_pack_flags_is_named_but_never_repeated(
    gitlab_api: FakeGitLab, ci_env: dict[str, str], plan_files: dict[str, Path], capsys: Any, tmp_path: Path
) -> None:
    # guards H5: mr-note repeated, in the note, a credential-looking config value that the policy
    # pack had just flagged. The merge request's plan puts a token-shaped value and a value under a
    # secret-looking name in the plain config vars.
    base, head = plan_files["base"], plan_files["changed"]
    notes = {"plan": ("--plan", head), "diff": ("--plan", head, "--base", base)}
    shown: dict[str, str] = {}
    for kind, argv in notes.items():
        assert mr_note(capsys, "--stack", "staging", *argv)[0] == 0
        shown[f"{kind} note, posted"] = gitlab_api.notes[0]["body"]
        code, shown[f"{kind} note, dry run"], _ = mr_note(capsys, "--stack", "staging", *argv, "--dry-run")
        assert code == 0
    for form in ("text", "markdown"):
        code, shown[f"plan diff, {form}"], _ = run_main(capsys, "plan", "diff", base, head, "--format", form)
        assert code == 0

    for where, text in shown.items():
        for value in PLAIN_CONFIG_CREDENTIALS.values():
            assert value not in text, f"the {where} repeats {value}"
    for key in PLAIN_CONFIG_CREDENTIALS:  # the diff still shows that they were added; the note, why that fails
        assert f'configVars.{key}: (absent) → "{REDACTED}"' in shown["plan diff, text"]
        assert f'`configVars.{key}`: `(absent)` → `"{REDACTED}"`' in shown["plan diff, markdown"]
        for where in ("plan note, posted", "diff note, posted"):
            assert f"`heroku-secrets-sensitive` on `heroku:app/app:App` `staging`: config var {key}" in shown[where]

    # `shipyard policy check` flags both, in the plan and in the plan with its credentials redacted.
    redacted = tmp_path / "redacted.json"
    redacted.write_text(json.dumps(redact_credentials(json.loads(head.read_text()))))
    for path in (head, redacted):
        code, out, _ = run_main(capsys, "policy", "check", path)
        assert code == 1
        assert "config var API_TOKEN looks like a secret and is stored in plain text" in out
        assert "config var LEGACY_DEPLOY_HOOK holds a credential in plain text" in out
