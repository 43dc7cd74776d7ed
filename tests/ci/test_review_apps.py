"""ci/review_apps.py: the review app of a merge request has a valid, unique Heroku name (H1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.settings import HEROKU_APP_NAME, REVIEW_PREFIX_MAX
from tests.by_path import load_module

SCRIPT = Path(__file__).resolve().parents[2] / "ci" / "review_apps.py"
# H1 as the settings hold it, and the longest prefix they allow.
H1 = HEROKU_APP_NAME


# The module as the review jobs embed it: by file, not as part of a package.
review_app_name = load_module(SCRIPT).review_app_name


def test_the_name_is_the_prefix_and_the_merge_request_iid() -> None:
    assert review_app_name("acme-shop", 42) == "acme-shop-mr-42"


@pytest.mark.parametrize(
    ("prefix", "iid"),
    [("a" * REVIEW_PREFIX_MAX, 9_999_999), ("s" + "9" * (REVIEW_PREFIX_MAX - 1), 1), ("a", 1), ("a1-b2", 123)],
)
def test_every_name_the_settings_allow_is_a_heroku_app_name(prefix: str, iid: int) -> None:  # guards H1
    # The settings allow prefixes up to 19 characters: `-mr-` and a 7-digit IID make 30.
    assert H1.fullmatch(review_app_name(prefix, iid))


@pytest.mark.parametrize(
    ("prefix", "iid", "message"),
    [
        ("a" * (REVIEW_PREFIX_MAX + 1), 9_999_999, f"the prefix may have at most {REVIEW_PREFIX_MAX} characters"),
        ("a" * 25, 12_345, "the prefix may have at most 21 characters"),
        ("a" * 19, 10_000_000, "is 31 characters; Heroku allows 30"),
        ("Shop", 1, "lowercase letters, digits and hyphens"),
        ("shop-", 1, "not ending with a hyphen"),
        ("1shop", 1, "starting with a letter"),
        ("shop_app", 1, "lowercase letters"),
        ("", 1, "starting with a letter"),
        ("shop", 0, "from 1"),
        ("shop", -3, "from 1"),
    ],
)
def test_a_name_heroku_would_refuse_is_a_clear_error(prefix: str, iid: int, message: str) -> None:  # guards H1
    with pytest.raises(ValueError, match=re.escape(message)):
        review_app_name(prefix, iid)
