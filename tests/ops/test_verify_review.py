"""`shipyard verify` with review apps: the review jobs' Heroku key is refused on the staging and
production apps, and both apps are locked in their team, asked of a local fake of Heroku's Platform
API that routes by the endpoints of infra/facts/heroku-registry.yaml (any other path answers 404, as
Heroku's does) and lets the review key read some apps."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from infra import facts
from infra.ops.verify import FAIL, HEROKU_ACCEPT, PASS, SKIP, Check, app_lock_checks, review_key_checks
from tests.fake_api import serve

HEROKU = facts.load("heroku-registry")["platform_api"]
ERRORS = HEROKU["errors"]
REVIEW_KEY = "HRKU-verifyReviewCanary-8e41"
OPERATOR_KEY = "HRKU-verifyOperatorCanary-51c7"
OUTPUTS = {"herokuAppName": "acme-shop-staging", "reviewAppPrefix": "acme-shop"}
STAGING, PRODUCTION = "review key refused on the staging app", "review key refused on the production app"
STAGING_LOCKED, PRODUCTION_LOCKED = "staging app locked", "production app locked"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def route(endpoint: str) -> re.Pattern[str]:
    """`GET /teams/apps/{app}` → a pattern of "METHOD path" with the app as a group."""
    method, path = HEROKU["endpoints"][endpoint].split()
    return re.compile(re.escape(f"{method} {path}").replace(re.escape("{app}"), "(?P<app>[^/]+)"))


ROUTES = {name: route(name) for name in ("app_info", "team_app_info")}


def path(endpoint: str, app: str) -> str:
    return HEROKU["endpoints"][endpoint].split()[1].format(app=app)


def error(name: str) -> tuple[int, dict[str, str]]:
    found = ERRORS[name]
    return found["status"], {"id": found["id"], "message": found["message"]}


class FakeHeroku:
    """The review key reads the apps in `readable` (200) and is refused on the others (403); the
    operator's key reads every app but those in `missing` (404), each with its `team` (None outside a
    team). Team apps (`teams`: name → locked) answer their `locked` at the team endpoint to the
    operator's key (403 to the review key), other apps 404 there. `forced` answers (endpoint, app)
    with a given status and body instead; any other key gets 401."""

    def __init__(self) -> None:
        self.readable: set[str] = set()
        self.teams: dict[str, Any] = {}
        self.missing: set[str] = set()
        self.forced: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, Message]] = []

    def answer(self, method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, headers))
        routed = [(name, found) for name, pattern in ROUTES.items() if (found := pattern.fullmatch(f"{method} {path}"))]
        if not routed:
            return 404, {"id": "not_found", "message": "The requested API endpoint was not found."}
        endpoint, found = routed[0]
        app = urllib.parse.unquote(found["app"])
        if (endpoint, app) in self.forced:
            return self.forced[endpoint, app]
        key = headers.get("Authorization")
        if key not in (f"Bearer {REVIEW_KEY}", f"Bearer {OPERATOR_KEY}"):
            return error("unauthorized")
        if endpoint == "team_app_info":
            if key != f"Bearer {OPERATOR_KEY}":
                return error("forbidden")
            return (200, {"name": app, "locked": self.teams[app]}) if app in self.teams else error("app_not_found")
        if key == f"Bearer {OPERATOR_KEY}" and app in self.missing:
            return error("app_not_found")
        if key == f"Bearer {OPERATOR_KEY}" or app in self.readable:
            return 200, {"name": app, "team": {"name": "acme"} if app in self.teams else None}
        return error("forbidden")


@pytest.fixture(scope="module")
def heroku() -> Iterator[tuple[FakeHeroku, str]]:
    fake = FakeHeroku()
    with serve(fake.answer) as url:
        yield fake, url


@pytest.fixture
def fake(heroku: tuple[FakeHeroku, str]) -> Iterator[FakeHeroku]:
    for state in (heroku[0].readable, heroku[0].teams, heroku[0].missing, heroku[0].forced, heroku[0].requests):
        state.clear()
    yield heroku[0]


def rows(checks: list[Check]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.result, c.detail) for c in checks}


def test_a_key_refused_on_both_apps_passes(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=heroku[1]))
    assert found[STAGING] == (PASS, "Heroku refuses the review key on acme-shop-staging (HTTP 403)")
    assert found[PRODUCTION] == (PASS, "Heroku refuses the review key on acme-shop (HTTP 403)")
    # What Heroku was asked: a read of each app, version 3, with the key.
    asked = [("GET", path("app_info", app)) for app in ("acme-shop-staging", "acme-shop")]
    assert [(m, p) for m, p, _ in fake.requests] == asked
    assert {h.get("Accept") for _, _, h in fake.requests} == {HEROKU_ACCEPT}
    assert {h.get("Authorization") for _, _, h in fake.requests} == {f"Bearer {REVIEW_KEY}"}


def test_a_key_that_reads_production_fails_and_names_the_app(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.readable.add("acme-shop")
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=heroku[1]))
    assert found[STAGING][0] == PASS
    assert found[PRODUCTION] == (
        FAIL,
        "the review key can read acme-shop: it belongs to a member with access to staging/production",
    )


def test_a_key_that_reads_staging_fails(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.readable.add("acme-shop-staging")
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=heroku[1]))
    assert found[STAGING][0] == FAIL and "can read acme-shop-staging" in found[STAGING][1]


def test_a_key_heroku_does_not_accept_fails_without_showing_it(
    heroku: tuple[FakeHeroku, str], fake: FakeHeroku
) -> None:
    checks = review_key_checks(OUTPUTS, "HRKU-revokedKey-0000", "acme-shop", api=heroku[1])
    assert {c.result for c in checks} == {FAIL}
    assert all("HEROKU_REVIEW_API_KEY (HTTP 401)" in c.detail and "HRKU-revokedKey" not in c.detail for c in checks)


def test_the_key_never_appears_in_the_results(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.readable.update({"acme-shop", "acme-shop-staging"})
    for check in review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=heroku[1]):
        assert REVIEW_KEY not in check.detail


# Heroku's answers on the staging app other than 403, each through its own branch of _review_key_refused
# (None: no answer, the API is unreachable); production's answer stays 403.
OTHER_ANSWERS = {
    "404 is a refusal": (error("app_not_found"), PASS, "Heroku refuses the review key on acme-shop-staging (HTTP 404)"),
    "200 is access": (
        (200, {"name": "acme-shop-staging"}),
        FAIL,
        "the review key can read acme-shop-staging: it belongs to a member with access to staging/production",
    ),
    "401 names the key": (
        error("unauthorized"),
        FAIL,
        "Heroku does not accept HEROKU_REVIEW_API_KEY (HTTP 401): it is revoked, expired or mistyped; make a "
        "long-lived one as the review member with `heroku authorizations:create` (H9)",
    ),
    "500 is neither": (
        (500, {"id": "internal_server_error", "message": "Internal server error."}),
        FAIL,
        "Heroku answered HTTP 500 for acme-shop-staging: neither a refusal nor access",
    ),
    "unreachable": (None, FAIL, f"cannot reach the Heroku API at {UNREACHABLE}: "),
}


@pytest.mark.parametrize(("answer", "result", "detail"), OTHER_ANSWERS.values(), ids=OTHER_ANSWERS.keys())
def test_the_review_check_reads_every_other_answer(
    heroku: tuple[FakeHeroku, str], fake: FakeHeroku, answer: tuple[int, Any] | None, result: str, detail: str
) -> None:
    if answer is not None:
        fake.forced["app_info", "acme-shop-staging"] = answer
    api = heroku[1] if answer is not None else UNREACHABLE
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=api, timeout=2))
    assert found[STAGING][0] == result
    # The unreachable reason is the operating system's words: only its start is ours.
    assert found[STAGING][1] == detail if answer is not None else found[STAGING][1].startswith(detail)
    assert found[PRODUCTION][0] == (PASS if answer is not None else FAIL)
    assert all(REVIEW_KEY not in d for _, d in found.values())


@pytest.mark.parametrize(
    ("outputs", "key", "production", "reasons"),
    [
        ({"herokuAppName": "acme-shop-staging"}, REVIEW_KEY, "acme-shop", ["no reviewAppPrefix output"] * 2),
        (OUTPUTS, None, "acme-shop", ["no HEROKU_REVIEW_API_KEY in the environment"] * 2),
    ],
)
def test_rows_without_what_they_need_are_skipped_with_the_reason(
    outputs: dict[str, str], key: str | None, production: str, reasons: list[str]
) -> None:
    checks = review_key_checks(outputs, key, production, api=UNREACHABLE)
    assert [c.result for c in checks] == [SKIP, SKIP]
    assert all(c.detail.startswith(reason) for c, reason in zip(checks, reasons, strict=True))


def test_without_the_production_app_its_row_is_skipped(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, None, api=heroku[1]))
    assert found[STAGING][0] == PASS
    assert found[PRODUCTION] == (SKIP, "the production app is not known: pass --production-app NAME")


# --- the apps locked in their team --------------------------------------------------------------


def lock_rows(
    api: str, key: str | None = OPERATOR_KEY, outputs: dict[str, str] = OUTPUTS
) -> dict[str, tuple[str, str]]:
    """The lock rows, each checked not to show either key."""
    checks = app_lock_checks(outputs, key, "acme-shop", api=api, timeout=2)
    assert [c.name for c in checks] == [STAGING_LOCKED, PRODUCTION_LOCKED]
    for check in checks:
        assert OPERATOR_KEY not in check.detail and REVIEW_KEY not in check.detail
        assert key is None or key not in check.detail
    return rows(checks)


def test_locked_team_apps_pass(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.teams.update({"acme-shop-staging": True, "acme-shop": True})
    found = lock_rows(heroku[1])
    assert found[STAGING_LOCKED] == (
        PASS,
        "acme-shop-staging is locked: only team admins and members given access to it can join it",
    )
    assert found[PRODUCTION_LOCKED][0] == PASS
    # What Heroku was asked: each app, then its team settings (the facts' endpoints), version 3, with
    # the operator's key.
    asked = [("GET", path(e, app)) for app in ("acme-shop-staging", "acme-shop") for e in ("app_info", "team_app_info")]
    assert [(m, p) for m, p, _ in fake.requests] == asked
    assert {h.get("Accept") for _, _, h in fake.requests} == {HEROKU_ACCEPT}
    assert {h.get("Authorization") for _, _, h in fake.requests} == {f"Bearer {OPERATOR_KEY}"}


def test_an_unlocked_team_app_fails_with_the_command_that_locks_it(
    heroku: tuple[FakeHeroku, str], fake: FakeHeroku
) -> None:
    fake.teams.update({"acme-shop-staging": True, "acme-shop": False})
    found = lock_rows(heroku[1])
    assert found[STAGING_LOCKED][0] == PASS
    assert found[PRODUCTION_LOCKED] == (
        FAIL,
        "acme-shop is a team app and not locked: any member of its team, the review key's included, can "
        "`heroku apps:join` it; lock it as an admin: `heroku apps:lock --app acme-shop`",
    )


def test_an_app_outside_any_team_is_skipped_and_says_why(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.teams["acme-shop"] = True  # staging is not a team app: Heroku's answer has no team
    found = lock_rows(heroku[1])
    assert found[PRODUCTION_LOCKED][0] == PASS
    assert found[STAGING_LOCKED] == (
        SKIP,
        "acme-shop-staging is not a team app (no `team` in Heroku's answer): no team member can join an app "
        "outside a team; only its collaborators reach it, and the review-key check covers those",
    )
    assert ("GET", path("team_app_info", "acme-shop-staging")) not in [(m, p) for m, p, _ in fake.requests]


def test_a_mistyped_app_fails_rather_than_passing_the_key_and_skipping_the_lock(
    heroku: tuple[FakeHeroku, str], fake: FakeHeroku
) -> None:
    # The review key's 404 on a name that does not exist counts as refused; the lock row must fail.
    fake.teams["acme-shop-staging"] = True
    fake.missing.add("acme-shp")
    found = rows(app_lock_checks(OUTPUTS, OPERATOR_KEY, "acme-shp", api=heroku[1]))
    assert found[PRODUCTION_LOCKED] == (
        FAIL,
        "Heroku has no app acme-shp that HEROKU_API_KEY can see (HTTP 404): check the name (herokuAppName, "
        "--production-app), or use the key of one of its team's admins",
    )


def test_an_operator_key_heroku_does_not_accept_fails_naming_it(
    heroku: tuple[FakeHeroku, str], fake: FakeHeroku
) -> None:
    fake.teams.update({"acme-shop-staging": True, "acme-shop": True})
    found = lock_rows(heroku[1], key="HRKU-revokedOperatorKey-0000")
    detail = (
        "Heroku does not accept HEROKU_API_KEY (HTTP 401): it is revoked, expired or mistyped, so the lock is unknown"
    )
    assert found == {STAGING_LOCKED: (FAIL, detail), PRODUCTION_LOCKED: (FAIL, detail)}


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (error("forbidden"), "Heroku answered HTTP 403 to HEROKU_API_KEY for app acme-shop: the lock is unknown"),
        (
            (500, "Internal server error"),
            "Heroku answered HTTP 500 to HEROKU_API_KEY for app acme-shop: the lock is unknown",
        ),
        (
            (200, {"name": "acme-shop"}),
            "Heroku's answer for team app acme-shop has no `locked` true or false (None): the lock is unknown",
        ),
        (
            (200, {"name": "acme-shop", "locked": "false"}),
            "Heroku's answer for team app acme-shop has no `locked` true or false ('false'): the lock is unknown",
        ),
    ],
    ids=["403", "500", "no locked", "locked not a boolean"],
)
def test_any_other_team_answer_fails_naming_it(
    heroku: tuple[FakeHeroku, str], fake: FakeHeroku, answer: tuple[int, Any], detail: str
) -> None:
    fake.teams.update({"acme-shop-staging": True, "acme-shop": True})
    fake.forced["team_app_info", "acme-shop"] = answer
    found = lock_rows(heroku[1])
    assert found[STAGING_LOCKED][0] == PASS
    assert found[PRODUCTION_LOCKED] == (FAIL, detail)


def test_an_unreachable_api_fails_the_lock_rows() -> None:
    found = lock_rows(UNREACHABLE)
    assert {result for result, _ in found.values()} == {FAIL}
    assert all(detail.startswith(f"cannot reach the Heroku API at {UNREACHABLE}: ") for _, detail in found.values())


@pytest.mark.parametrize(
    ("outputs", "key", "reason"),
    [
        ({"herokuAppName": "acme-shop-staging"}, OPERATOR_KEY, "no reviewAppPrefix output"),
        (OUTPUTS, None, "no HEROKU_API_KEY in the environment"),
    ],
    ids=["no review apps", "no operator key"],
)
def test_lock_rows_without_what_they_need_are_skipped_with_the_reason(
    outputs: dict[str, str], key: str | None, reason: str
) -> None:
    found = lock_rows(UNREACHABLE, key=key, outputs=outputs)
    assert {result for result, _ in found.values()} == {SKIP}
    assert all(detail.startswith(reason) for _, detail in found.values())


def test_without_the_production_app_its_lock_row_is_skipped(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.teams["acme-shop-staging"] = True
    found = rows(app_lock_checks(OUTPUTS, OPERATOR_KEY, None, api=heroku[1]))
    assert found[STAGING_LOCKED][0] == PASS
    assert found[PRODUCTION_LOCKED] == (SKIP, "the production app is not known: pass --production-app NAME")
