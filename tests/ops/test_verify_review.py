"""`shipyard verify` with review apps: the review jobs' Heroku key is refused on the staging and
production apps, asked of a local fake of Heroku's Platform API that lets the key read some apps."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from infra.ops.verify import FAIL, HEROKU_ACCEPT, PASS, SKIP, Check, review_key_checks
from tests.fake_api import serve

REVIEW_KEY = "HRKU-verifyReviewCanary-8e41"
OUTPUTS = {"herokuAppName": "acme-shop-staging", "reviewAppPrefix": "acme-shop"}
STAGING, PRODUCTION = "review key refused on the staging app", "review key refused on the production app"


class FakeHeroku:
    """Answers GET /apps/<name>: 200 for the apps the key may read, 403 for others, 401 for other keys."""

    def __init__(self) -> None:
        self.readable: set[str] = set()
        self.requests: list[tuple[str, str, Message]] = []

    def answer(self, method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, headers))
        if headers.get("Authorization") != f"Bearer {REVIEW_KEY}":
            return 401, {"id": "unauthorized", "message": "Invalid credentials provided."}
        app = path.removeprefix("/apps/")
        if method == "GET" and app in self.readable:
            return 200, {"name": app}
        return 403, {"id": "forbidden", "message": "You do not have access to the app."}


@pytest.fixture(scope="module")
def heroku() -> Iterator[tuple[FakeHeroku, str]]:
    fake = FakeHeroku()
    with serve(fake.answer) as url:
        yield fake, url


@pytest.fixture
def fake(heroku: tuple[FakeHeroku, str]) -> Iterator[FakeHeroku]:
    heroku[0].readable.clear()
    heroku[0].requests.clear()
    yield heroku[0]


def rows(checks: list[Check]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.result, c.detail) for c in checks}


def test_a_key_refused_on_both_apps_passes(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=heroku[1]))
    assert found[STAGING] == (PASS, "Heroku refuses the review key on acme-shop-staging (HTTP 403)")
    assert found[PRODUCTION] == (PASS, "Heroku refuses the review key on acme-shop (HTTP 403)")
    # What Heroku was asked: a read of each app, version 3, with the key.
    assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/apps/acme-shop-staging"), ("GET", "/apps/acme-shop")]
    assert {h.get("Accept") for _, _, h in fake.requests} == {HEROKU_ACCEPT}


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
    assert all("HTTP 401" in c.detail and "HRKU-revokedKey" not in c.detail for c in checks)


def test_the_key_never_appears_in_the_results(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    fake.readable.update({"acme-shop", "acme-shop-staging"})
    for check in review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api=heroku[1]):
        assert REVIEW_KEY not in check.detail


def test_an_unreachable_api_fails_with_the_reason() -> None:
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, "acme-shop", api="http://127.0.0.1:9", timeout=2))
    assert found[STAGING][0] == FAIL and "cannot reach the Heroku API" in found[STAGING][1]


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
    checks = review_key_checks(outputs, key, production, api="http://127.0.0.1:9")
    assert [c.result for c in checks] == [SKIP, SKIP]
    assert all(c.detail.startswith(reason) for c, reason in zip(checks, reasons, strict=True))


def test_without_the_production_app_its_row_is_skipped(heroku: tuple[FakeHeroku, str], fake: FakeHeroku) -> None:
    found = rows(review_key_checks(OUTPUTS, REVIEW_KEY, None, api=heroku[1]))
    assert found[STAGING][0] == PASS
    assert found[PRODUCTION] == (SKIP, "the production app is not known: pass --production-app NAME")
