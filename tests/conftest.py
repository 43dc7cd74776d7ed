"""Test harness: runs the real program on the offline engine for a settings document, one fresh
context and event loop per run (P4), and gives tests the recorded resources.

Program-level tests go through `run_stack`, which awaits every outstanding output inside
`run_in_stack` and raises what the program raised. Component tests build one component under
`@pulumi.runtime.test` with the `mocked` fixture and return their Output chain (P2).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.offline.engine import (
    Project,
    RecordingMonitor,
    Run,
    ShipyardMocks,
    StackConfig,
    Step,
    fresh_runtime_state,
    run_program,
    stack_config,
)
from tests.moto_aws import aws, moto_endpoint, shared_service_models  # noqa: F401 - fixtures for the boto3 tests
from tests.runner_userdata.harness import (  # noqa: F401 - the runner host's, for its scripts and user data
    _first_boot,
    _first_boot_expiring,
    booted,
    booted_expiring,
    host,
    signed_release,
    stubs,
)
from tests.staging_plans import StagingPlans, build_staging_plans

ROOT = Path(__file__).resolve().parent.parent
PROJECT = Project.load(ROOT)


def pytest_configure(config: pytest.Config) -> None:
    # Every program run allocates tens of thousands of short-lived objects; at CPython's default
    # threshold (700) the collector keeps walking the heap of the fully imported SDKs. Fewer, later
    # collections cut the suite's time by a quarter (peak memory of a worker stays near 400 MB);
    # nothing here depends on when garbage is collected.
    gc.set_threshold(200_000, 100, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported (the SDKs, moto, the tests) lives to the end: out of the collector's view.
    gc.freeze()


def stack_document(stack: str) -> dict[str, Any]:
    """The `config:` section of a committed stack file."""
    return copy.deepcopy(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


def run_stack(
    doc: dict[str, Any],
    stack: str = "staging",
    secrets: dict[str, Any] | None = None,
    project: Project = PROJECT,
    record: list[Step] | None = None,
) -> Run:
    """Run the program for a settings document; `secrets` are given the way `pulumi up` gives
    decrypted secrets to a program: real values, marked secret."""
    config: StackConfig = stack_config(project, doc, f"test document for {stack}")
    for key, value in (secrets or {}).items():
        config.values[key] = value if isinstance(value, str) else json.dumps(value)
        config.secret_keys.add(key)
        config.placeholders.pop(key, None)
    return run_program(project, stack, config=config, record=record)


@pytest.fixture
def staging_doc() -> dict[str, Any]:
    return stack_document("staging")


@pytest.fixture
def prod_doc() -> dict[str, Any]:
    return stack_document("prod")


@pytest.fixture
def mocked() -> Iterator[RecordingMonitor]:
    """Pulumi mocks for one component test: a fresh event loop and root stack per test (P4)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.settings.ROOT.set(None)
    fresh_runtime_state()
    monitor = RecordingMonitor(ShipyardMocks("eu-west-1", lambda reference: {}))
    pulumi.runtime.set_mocks(monitor.mocks, project="shipyard", stack="test", preview=False, monitor=monitor)
    yield monitor
    pulumi.runtime.settings.SETTINGS.outputs.clear()  # a failed test's tasks are bound to this loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    monitor.close()
    asyncio.set_event_loop(None)


@pytest.fixture(scope="session")
def committed_runs() -> dict[str, Run]:
    """The offline runs of the committed stack files, once per session: read them, never change them."""
    return {stack: run_stack(stack_document(stack), stack) for stack in ("staging", "prod")}


def fleet_document() -> dict[str, Any]:
    """The committed staging stack with both of its runners in fleet mode, the fleets' defaults."""
    doc = stack_document("staging")
    for key in ("shipyard:runner", "shipyard:reviewRunner"):
        doc[key]["mode"] = "fleet"
    return doc


@pytest.fixture(scope="session")
def fleet_run() -> Run:
    """The offline run of fleet_document(), once per session: read it, never change it."""
    return run_stack(fleet_document())


@pytest.fixture(scope="session")
def staging_plans() -> StagingPlans:
    return build_staging_plans()
