"""The settings of review apps (`shipyard:review`, `shipyard:herokuReviewApiKey`): build stack only,
names Heroku takes (H1), and a key of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.offline.engine import stack_config
from infra.settings import REVIEW_PREFIX_MAX
from tests.by_path import load_module
from tests.conftest import PROJECT, stack_document
from tests.test_settings import API_KEY, base, parse, problems

REVIEW_KEY = "HRKU-reviewSettingsKey0123456789"
SECRETS = {"shipyard:herokuApiKey", "shipyard:herokuReviewApiKey"}


def review(**overrides: Any) -> dict[str, Any]:
    """The build stack with review apps, their key set as a secret."""
    settings = {"appPrefix": "acme-web", **overrides}
    return base(review=settings, herokuReviewApiKey=REVIEW_KEY)


def test_review_defaults_follow_the_stacks_heroku_settings() -> None:
    settings = parse(
        base(heroku={"team": "acme"}, review={"appPrefix": "acme-web"}, herokuReviewApiKey=REVIEW_KEY), SECRETS
    )
    assert settings.review is not None
    assert (settings.review.auto_stop_in, settings.review.max_apps, settings.review.config_vars) == ("3 days", 5, {})
    assert settings.review.dyno_size == "basic"
    assert (settings.review_region, settings.review_team) == ("eu", "acme")
    assert settings.heroku_review_api_key.get_secret_value() == REVIEW_KEY


def test_review_settings_of_their_own_win() -> None:
    settings = parse(review(region="us", team="acme-review", configVars={"WORKERS": 2, "DEBUG": True}), SECRETS)
    assert (settings.review_region, settings.review_team) == ("us", "acme-review")
    assert settings.review.config_vars == {"WORKERS": "2", "DEBUG": "true"}  # numbers and booleans as text


def test_without_review_nothing_changes() -> None:
    settings = parse(base())
    assert settings.review is None and settings.heroku_review_api_key is None


@pytest.mark.parametrize("prefix", ["a" * (REVIEW_PREFIX_MAX + 1), "Acme", "acme-", "1acme", "acme_web", ""])
def test_a_prefix_heroku_would_refuse_for_some_merge_request_is_refused(prefix: str) -> None:  # guards H1
    found = problems(review(appPrefix=prefix), SECRETS)
    assert any(p.startswith("shipyard:review.appPrefix: must be 1 to 19") and "7 digits" in p for p in found), found


def test_the_longest_prefix_names_a_heroku_app_for_a_seven_digit_iid() -> None:  # guards H1
    module = load_module(Path(__file__).resolve().parent.parent / "ci" / "review_apps.py")
    prefix = parse(review(appPrefix="a" * REVIEW_PREFIX_MAX), SECRETS).review.app_prefix
    assert len(module.review_app_name(prefix, 9_999_999)) == 30


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("autoStopIn", "soon", "a GitLab duration such as `3 days`"),
        ("autoStopIn", "never", "a GitLab duration"),
        ("maxApps", 0, "greater than or equal to 1"),
        ("maxApps", 51, "less than or equal to 50"),
        ("region", "asia", "'us' or 'eu'"),
        ("configVars", {"BAD KEY": "x"}, "letters, digits and underscores"),
        ("dynoSize", "standard-3x", "must be one of eco, basic, standard-1x"),
        ("dynoSize", "private-s", "must be one of eco, basic"),  # review apps run in no Private Space
    ],
)
def test_bad_review_values_are_named(key: str, value: Any, message: str) -> None:
    found = problems(review(**{key: value}), SECRETS)
    assert any(p.startswith(f"shipyard:review.{key}") and message in p for p in found), found


@pytest.mark.parametrize("duration", ["3 days", "1 week", "12 hours", "1 day 12 hours", "90 minutes"])
def test_gitlab_durations_are_taken(duration: str) -> None:
    assert parse(review(autoStopIn=duration), SECRETS).review.auto_stop_in == duration


def test_review_belongs_to_the_build_stack() -> None:
    config = review()
    config = {**config, "shipyard:buildStack": "organization/shipyard/staging"}
    del config["shipyard:registry"]
    found = problems(config, SECRETS)
    assert any(p.startswith("shipyard:review belongs to the build stack") for p in found), found


def test_review_needs_its_own_key() -> None:
    found = problems(base(review={"appPrefix": "acme-web"}))
    assert any(p.startswith("shipyard:review needs shipyard:herokuReviewApiKey") for p in found), found


def test_the_review_key_may_not_be_the_deploy_key() -> None:
    found = problems(base(review={"appPrefix": "acme-web"}, herokuReviewApiKey=API_KEY), SECRETS)
    assert any("herokuReviewApiKey must differ from shipyard:herokuApiKey" in p for p in found), found
    assert not any(API_KEY in p for p in found)


def test_the_review_key_is_a_secret_gitlab_can_mask() -> None:  # guards G2
    plain = problems(review(), {"shipyard:herokuApiKey"})
    assert any(p.startswith("shipyard:herokuReviewApiKey is stored in plain text") for p in plain), plain
    short = problems(base(review={"appPrefix": "acme-web"}, herokuReviewApiKey="short"), SECRETS)
    assert any(p.startswith("shipyard:herokuReviewApiKey must be at least 8 characters") for p in short), short


def test_the_offline_plan_stands_in_a_placeholder_for_a_review_key_not_set_yet() -> None:
    doc = stack_document("staging")
    assert "shipyard:herokuReviewApiKey" not in stack_config(PROJECT, doc, "staging").placeholders
    doc["shipyard:review"] = {"appPrefix": "acme-shop"}
    config = stack_config(PROJECT, doc, "Pulumi.staging.yaml")
    assert "pulumi config set --secret herokuReviewApiKey" in config.placeholders["shipyard:herokuReviewApiKey"]
    assert "shipyard:herokuReviewApiKey" in config.secret_keys


def test_review_config_vars_never_take_a_secret_of_the_stack() -> None:
    database = "postgres://app:Pa55reviewLeak@db.internal/app"
    config = review(configVars={"DATABASE_URL": database, "TOKEN": API_KEY, "APP_ENV": "review"})
    config["shipyard:herokuSensitiveConfigVars"] = {"DATABASE_URL": database}
    found = problems(config, {*SECRETS, "shipyard:herokuSensitiveConfigVars"})
    leak = [p for p in found if p.startswith("shipyard:review.configVars: DATABASE_URL, TOKEN take the value")]
    assert leak, found
    assert not any(database in p or API_KEY in p for p in found)


@pytest.mark.parametrize("size", ["eco", "Standard-2X", "performance-m"])
def test_review_dyno_sizes_heroku_takes_are_kept_as_written(size: str) -> None:
    assert parse(review(dynoSize=size), SECRETS).review.dyno_size == size
