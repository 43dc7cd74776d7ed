"""Real offline plans of the staging stack, shared by the `plan diff` and `mr-note` tests: one
program run each, for the whole session (the fixture is registered in tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.offline.plan import to_preview_json

CANARY_KEY_BASE = "HRKU-canaryA1b2c3d4e5"
CANARY_KEY_HEAD = "HRKU-canaryB9z8y7x6w5"
CANARY_DB = "postgres://canary:Pa55wordCanary@db.internal/app"
CANARIES = (CANARY_KEY_BASE, CANARY_KEY_HEAD, CANARY_DB, "Pa55wordCanary")
# Credentials a merge request puts in the plain config vars, which the policy pack flags (H5): one
# by its token shape under a harmless name, one by its name with a harmless-looking value. No
# review output may repeat them.
PLAIN_CONFIG_CREDENTIALS = {
    "LEGACY_DEPLOY_HOOK": "HRKU-canaryPlainHook0123",
    "API_TOKEN": "canary-plain-api-value",
}


@dataclass(frozen=True)
class StagingPlans:
    """Shared by every test of the session: copy a document before changing it."""

    base: dict[str, Any]  # Pulumi.staging.yaml as committed
    changed: dict[str, Any]  # a merge request that edits the runner, the app and a secret, and leaks credentials
    no_runner: dict[str, Any]  # a merge request that removes `shipyard:runner`


def build_staging_plans() -> StagingPlans:
    from tests.conftest import run_stack, stack_document

    base = run_stack(stack_document("staging"), "staging", secrets={"shipyard:herokuApiKey": CANARY_KEY_BASE})

    changed = stack_document("staging")
    changed["shipyard:runner"].update(instanceType="t3.xlarge", tags=["shipyard", "docker", "large"], concurrent=6)
    changed["shipyard:heroku"]["configVars"]["FEATURE_FLAGS"] = "checkout-v2"
    changed["shipyard:heroku"]["configVars"].update(PLAIN_CONFIG_CREDENTIALS)
    changed["shipyard:heroku"]["features"] = ["preboot"]
    secrets = {
        "shipyard:herokuApiKey": CANARY_KEY_HEAD,
        "shipyard:herokuSensitiveConfigVars": {"DATABASE_URL": CANARY_DB},
    }

    no_runner = stack_document("staging")
    del no_runner["shipyard:runner"]

    return StagingPlans(
        base=to_preview_json(base),
        changed=to_preview_json(run_stack(changed, "staging", secrets=secrets)),
        no_runner=to_preview_json(run_stack(no_runner, "staging")),
    )
