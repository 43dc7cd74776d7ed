"""`redact_credentials`: a copy of a plan document without the credentials the policy pack finds in
plain text, which keeps every policy violation of the original."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from infra.review.policy_check import verdict
from infra.review.redaction import REDACTED, redact_credentials
from tests.staging_plans import CANARY_KEY_HEAD, PLAIN_CONFIG_CREDENTIALS, StagingPlans

RUNNER_TOKEN = "glrt-leakedRunnerToken0123"
ACCESS_KEY_ID = "AKIAABCDEFGHIJKLMNOP"
PERSONAL_TOKEN = "glpat-leakedPersonal1234567"
APP = "heroku:app/app:App"
LEAKS = (RUNNER_TOKEN, ACCESS_KEY_ID, PERSONAL_TOKEN, "plain-but-named", *PLAIN_CONFIG_CREDENTIALS.values())


def state(doc: dict[str, Any], name: str, type_: str | None = None) -> dict[str, Any]:
    (found,) = [
        s["newState"]
        for s in doc["steps"]
        if s["urn"].rsplit("::", 1)[-1] == name and type_ in (None, s["newState"]["type"])
    ]
    return found


def leaky(plans: StagingPlans) -> dict[str, Any]:
    """The merge request's plan (credentials in plain config vars) with more credentials where the
    policies look and where they do not."""
    doc = copy.deepcopy(plans.changed)
    lt = state(doc, "runner-lt")
    lt["inputs"]["userData"] = base64.b64encode(f"#!/bin/bash\nTOKEN={RUNNER_TOKEN}\n".encode()).decode()
    policy = json.loads(state(doc, "runner-least-privilege")["inputs"]["policy"])
    policy["Statement"].append(
        {
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:userid": ACCESS_KEY_ID}},
        }
    )
    state(doc, "runner-least-privilege")["inputs"]["policy"] = json.dumps(policy)
    variable = state(doc, "staging-ecr-cache-tag-all")
    variable["inputs"].update(key="DEPLOY_TOKEN", value="plain-but-named")
    state(doc, "staging-heroku-app-name")["outputs"] = {"value": PERSONAL_TOKEN}  # a preview's new state
    doc["outputs"]["leakedUrl"] = f"https://gitlab.example/api?private_token={PERSONAL_TOKEN}"
    return doc


def test_no_credential_is_left_and_every_violation_is_kept(staging_plans: StagingPlans) -> None:  # guards H5, R1, G1
    doc = leaky(staging_plans)
    original = json.dumps(doc, sort_keys=True)

    redacted = redact_credentials(doc)

    text = json.dumps(redacted)
    assert [leak for leak in LEAKS if leak in text] == []
    assert json.dumps(doc, sort_keys=True) == original  # a copy: the document itself is untouched
    before, after = verdict(doc)[0], verdict(redacted)[0]
    assert [(v.policy.name, v.resource.name) for v in after] == [(v.policy.name, v.resource.name) for v in before]
    assert {v.policy.name for v in before} >= {
        "heroku-secrets-sensitive",
        "no-credential-in-user-data",
        "iam-least-privilege",
        "ci-secrets-masked",
    }
    assert redact_credentials(redacted) == redacted


def test_only_the_credential_goes_from_a_longer_text(staging_plans: StagingPlans) -> None:
    redacted = redact_credentials(leaky(staging_plans))

    policy = json.loads(state(redacted, "runner-least-privilege")["inputs"]["policy"])  # still a policy document
    assert policy["Statement"][-1]["Condition"] == {"StringEquals": {"aws:userid": REDACTED}}
    assert redacted["outputs"]["leakedUrl"] == f"https://gitlab.example/api?private_token={REDACTED}"
    assert state(redacted, "runner-lt")["inputs"]["userData"] == REDACTED  # encoded: judged whole
    app = state(redacted, "staging", APP)["inputs"]
    assert {key: app["configVars"][key] for key in PLAIN_CONFIG_CREDENTIALS} == dict.fromkeys(
        PLAIN_CONFIG_CREDENTIALS, REDACTED
    )
    assert app["configVars"]["FEATURE_FLAGS"] == "checkout-v2"


def test_secrets_and_a_clean_plan_are_left_as_they_are(staging_plans: StagingPlans) -> None:
    assert redact_credentials(staging_plans.base) == staging_plans.base
    redacted = redact_credentials(staging_plans.changed)
    assert state(redacted, "staging", APP)["inputs"]["sensitiveConfigVars"] == "[secret]"
    assert state(redacted, "staging-heroku-api-key")["inputs"]["value"] == "[secret]"
    assert CANARY_KEY_HEAD not in json.dumps(redacted)
