"""runner_userdata/verify-answer.py: GitLab's answer to runners/verify becomes the [[runners]] lines
that `gitlab-runner register` writes (R18). In process: the bootstrap tests run it on the host's path."""

from __future__ import annotations

import ast
import datetime
import io
import json
import sys
import tomllib
from types import ModuleType

import pytest

from infra import facts
from infra.userdata import USERDATA_DIR
from tests.by_path import load_module

SCRIPT = USERDATA_DIR / "verify-answer.py"
NOW = datetime.datetime(2026, 11, 30, 17, 5, 9, 123456, tzinfo=datetime.UTC)
TOKEN = "glrt-t3stT0kenValue_abcdef123"


def load() -> ModuleType:
    return load_module(SCRIPT)


verify_answer = load()


def entry(answer: object) -> dict:
    """The [[runners]] entry the printed lines make, as gitlab-runner's TOML parser reads them."""
    (runner,) = tomllib.loads("[[runners]]\n" + "\n".join(verify_answer.runner_lines(answer, NOW)))["runners"]
    return runner


@pytest.mark.parametrize(
    ("expires", "expected"),
    [
        ("2027-02-01T12:30:00.250Z", datetime.datetime(2027, 2, 1, 12, 30, tzinfo=datetime.UTC)),  # GitLab's form
        ("2027-02-01T14:30:00+02:00", datetime.datetime(2027, 2, 1, 12, 30, tzinfo=datetime.UTC)),
    ],
)
def test_an_expiry_gives_both_dates_in_utc_to_the_second(expires: str, expected: datetime.datetime) -> None:
    # guards R18: gitlab-runner resets at token_obtained_at + 0.75 * (token_expires_at - token_obtained_at).
    runner = entry({"id": 4242, "token": TOKEN, "token_expires_at": expires})
    assert runner == {
        "id": 4242,
        "token_obtained_at": NOW.replace(microsecond=0),
        "token_expires_at": expected,
    }
    assert set(runner) == set(facts.load("gitlab-api")["config_keys"])


@pytest.mark.parametrize(
    "answer",
    [
        {"id": 4242, "token": TOKEN, "token_expires_at": None},  # token expiry off
        {"id": 4242, "token": TOKEN},
        {"id": 4242, "token": TOKEN, "token_expires_at": facts.load("gitlab-api")["verify"]["zero_time"]},
    ],
    ids=["null", "absent", "zero-time"],
)
def test_no_expiry_gives_no_dates(answer: dict) -> None:  # guards R18: nothing to rotate
    assert entry(answer) == {"id": 4242}


@pytest.mark.parametrize("runner_id", [0, True, "4242", None])
def test_an_id_that_is_not_a_positive_integer_is_left_out(runner_id: object) -> None:
    assert "id" not in entry({"id": runner_id, "token_expires_at": None})


@pytest.mark.parametrize("answer", [200, {"token_expires_at": "next week"}, {"token_expires_at": 1.5e9}])
def test_an_unreadable_answer_is_refused(answer: object) -> None:
    # 200 is the legacy plain-text answer (network/gitlab.go retries without JSON for it).
    with pytest.raises(ValueError):
        verify_answer.runner_lines(answer, NOW)


def test_the_answer_is_read_from_stdin_and_the_token_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # guards R1
    for text, code in ((json.dumps({"id": 1, "token": TOKEN, "token_expires_at": "x"}), 1), (f'{{"t": "{TOKEN}', 1)):
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        assert verify_answer.main() == code
        out, err = capsys.readouterr()
        assert TOKEN not in out + err and err.startswith("GitLab's answer to runners/verify: ")


def test_it_stays_readable_by_amazon_linux_2023s_python_3_9() -> None:
    ast.parse(SCRIPT.read_text(), feature_version=(3, 9))
