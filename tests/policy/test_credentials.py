"""`credentials`: where the policy pack finds a credential stored in plain text, the one finding the
policies and the review output's redaction share; and the policies' verdict on values the review
output has already redacted."""

from __future__ import annotations

import base64
import gzip

from policy.policies import REDACTED, SECRET, Resource, credentials
from tests.policy.pack import changed, one, violations

APP = "heroku:app/app:App"
CI_VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
PARAMETER = "aws:ssm/parameter:Parameter"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def found(resource: Resource) -> list[tuple[tuple[str | int, ...], str, bool, bool]]:
    return [(c.path, c.found, c.by_name, c.whole) for c in credentials(resource)]


def test_credentials_by_name_by_shape_and_inside_a_longer_text() -> None:  # guards H5, R1
    app = Resource(
        APP,
        "staging",
        "urn:app",
        {
            "name": "acme-storefront-staging",
            "configVars": {
                "API_TOKEN": "plain-value",  # by its name
                "HOOK": "Bearer HRKU-leakedHerokuKey0123",  # a config var is judged whole
                "DATABASE_URL": "postgres://app:pw@db/app",
                "SESSION_SECRET": SECRET,  # already hidden: not a plain credential
                "LOG_LEVEL": "info",
            },
            "tags": ["team", "glpat-leakedPersonal1234567"],
            "policy": '{"Condition": {"StringEquals": {"aws:username": "AKIAABCDEFGHIJKLMNOP"}}}',
        },
    )
    assert found(app) == [
        (("configVars", "API_TOKEN"), "plain-value", True, True),
        (("configVars", "HOOK"), "HRKU-leakedHerokuKey0123", False, True),
        (("configVars", "DATABASE_URL"), "postgres://app:pw@", False, True),
        (("tags", 1), "glpat-leakedPersonal1234567", False, True),
        (("policy",), "AKIAABCDEFGHIJKLMNOP", False, False),  # only the key id goes; the document stays
    ]


def test_the_committed_stacks_hold_no_credential_in_plain_text(plans: dict[str, list[Resource]]) -> None:
    # The public key, the ECR URLs, the policy documents and the user data of both stacks: none looks
    # like a credential, so the review output shows them as they are.
    assert [(r.name, c.path) for stack in plans.values() for r in stack for c in credentials(r)] == []


def test_a_redacted_plain_config_var_is_still_a_credential_in_plain_text(
    plans: dict[str, list[Resource]],
) -> None:  # guards H5
    app = one(plans["staging"], APP)
    redacted = changed(app, configVars={"LEGACY_HOOK": REDACTED, "API_TOKEN": REDACTED, "LOG_LEVEL": "info"})
    assert violations("heroku-secrets-sensitive", redacted) == [
        "config var API_TOKEN looks like a secret and is stored in plain text",
        "config var LEGACY_HOOK holds a credential in plain text (redacted in this document)",
    ]


def test_redacted_user_data_is_still_a_credential_in_user_data(plans: dict[str, list[Resource]]) -> None:  # guards R1
    template = one(plans["staging"], LAUNCH_TEMPLATE, named="runner-lt")
    assert violations("no-credential-in-user-data", changed(template, userData=REDACTED)) == [
        "the user data holds a credential (redacted in this document)"
    ]
    gzipped = base64.b64encode(gzip.compress(b"TOKEN=glrt-leakedRunnerToken01\n")).decode()
    assert [c.path for c in credentials(changed(template, userData=gzipped))] == [("userData",)]


def test_a_token_under_a_plain_name_must_be_a_secure_string_and_masked(
    plans: dict[str, list[Resource]],
) -> None:  # guards R1, G1
    parameter = Resource(PARAMETER, "p", "urn:p", {"name": "/shipyard/staging/hook", "type": "String"})
    for value in ("glrt-leakedRunnerToken01", f"url?key={REDACTED}"):
        assert violations("secret-parameter-is-secure-string", changed(parameter, value=value)) == [
            "parameter /shipyard/staging/hook holds a secret but is a String, readable without decryption"
        ]
    assert violations("secret-parameter-is-secure-string", changed(parameter, value="eu-west-1")) == []
    variable = one(plans["staging"], CI_VARIABLE, key="ECR_CACHE_TAG")
    leaky = changed(variable, value="glpat-leakedPersonal1234567")
    assert violations("ci-secrets-masked", leaky) == ["ECR_CACHE_TAG (*) is not masked: it shows in job logs"]
    assert violations("ci-secrets-masked", changed(leaky, masked=True)) == []
