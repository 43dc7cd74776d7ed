"""The build stack's CI/CD variables of review apps (`shipyard:review`): scoped to the review
environments, the key masked, unprotected for merge-request pipelines, and never in plain text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.offline.engine import SECRET, Run
from infra.offline.plan import to_preview_json
from infra.review.policy_check import verdict
from tests.conftest import run_stack, stack_document
from tests.test_secret_canaries import visible

VAR = "gitlab:index/projectVariable:ProjectVariable"
REVIEW_KEY = "HRKU-reviewCanary-5d1e9a"
DEPLOY_KEY = "HRKU-deployCanary-3b7c20"
REVIEW_VARIABLES = {
    "HEROKU_REVIEW_API_KEY",
    "SHIPYARD_REVIEW_APP_PREFIX",
    "SHIPYARD_REVIEW_REGION",
    "SHIPYARD_REVIEW_TEAM",
    "SHIPYARD_REVIEW_AUTO_STOP_IN",
    "SHIPYARD_REVIEW_MAX_APPS",
    "SHIPYARD_REVIEW_CONFIG_VARS",
    "SHIPYARD_REVIEW_DYNO_SIZE",
    "SHIPYARD_REVIEW_PIPELINE",
}


@pytest.fixture(scope="module")
def review_run() -> Run:
    """The committed staging stack with review apps, run once: read it, never change it."""
    doc = stack_document("staging")
    doc["shipyard:review"] = {"appPrefix": "acme-shop", "team": "acme-review", "configVars": {"WORKERS": 2}}
    secrets = {"shipyard:herokuApiKey": DEPLOY_KEY, "shipyard:herokuReviewApiKey": REVIEW_KEY}
    return run_stack(doc, "staging", secrets=secrets)


def review_variables(run: Run) -> dict[str, Any]:
    return {s.raw_inputs["key"]: s for s in run.resources(VAR) if s.raw_inputs["key"] in REVIEW_VARIABLES}


def test_the_review_key_is_masked_hidden_unprotected_and_scoped_to_review_environments(review_run: Run) -> None:
    key = review_run.one(VAR, key="HEROKU_REVIEW_API_KEY")  # guards G1, G2, G3
    assert key.raw_inputs["environmentScope"] == "review/*"
    assert key.raw_inputs["masked"] and key.raw_inputs["hidden"]
    assert key.raw_inputs["protected"] is False  # merge-request pipelines run the review jobs
    assert key.raw_inputs["value"] == REVIEW_KEY and key.inputs["value"] == SECRET


def test_review_settings_reach_the_review_jobs_alone(review_run: Run) -> None:
    found = review_variables(review_run)
    assert set(found) == REVIEW_VARIABLES
    assert {s.raw_inputs["environmentScope"] for s in found.values()} == {"review/*"}
    values = {k: s.raw_inputs["value"] for k, s in found.items() if k != "HEROKU_REVIEW_API_KEY"}
    assert values == {
        "SHIPYARD_REVIEW_APP_PREFIX": "acme-shop",
        "SHIPYARD_REVIEW_REGION": "eu",  # the stack's heroku.region
        "SHIPYARD_REVIEW_TEAM": "acme-review",
        "SHIPYARD_REVIEW_AUTO_STOP_IN": "3 days",
        "SHIPYARD_REVIEW_MAX_APPS": "5",
        "SHIPYARD_REVIEW_CONFIG_VARS": json.dumps({"WORKERS": "2"}),
        "SHIPYARD_REVIEW_DYNO_SIZE": "basic",
        # The build stack's Heroku pipeline, which staging's app is coupled to as well.
        "SHIPYARD_REVIEW_PIPELINE": review_run.one("heroku:pipeline/coupling:Coupling").raw_inputs["pipeline"],
    }
    assert review_run.outputs["reviewAppPrefix"] == "acme-shop"


def test_the_deploy_key_stays_with_staging(review_run: Run) -> None:
    deploy = review_run.one(VAR, key="HEROKU_API_KEY")
    assert deploy.raw_inputs["environmentScope"] == "staging"
    assert deploy.raw_inputs["value"] == DEPLOY_KEY


def test_the_plan_shows_the_review_key_as_secret_and_the_policies_pass(review_run: Run) -> None:
    document = to_preview_json(review_run)
    shown = visible(review_run)  # the plan table and JSON, outputs, warnings, policy report, MR note
    assert REVIEW_KEY not in shown and DEPLOY_KEY not in shown
    violations, report = verdict(document)
    assert not violations, report
    key = next(
        r for r in document["steps"] if r.get("newState", {}).get("inputs", {}).get("key") == "HEROKU_REVIEW_API_KEY"
    )
    assert key["newState"]["inputs"]["value"] == SECRET


def test_a_stack_without_review_has_no_review_variables(committed_runs: dict[str, Run]) -> None:
    for run in committed_runs.values():
        assert not review_variables(run)
        assert "reviewAppPrefix" not in run.outputs
