"""The resources of both committed stacks' offline plans, as the policies see them."""

from __future__ import annotations

import pytest

from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from policy.policies import Resource, resources_of_plan


@pytest.fixture
def plans(committed_runs: dict[str, Run]) -> dict[str, list[Resource]]:
    return {stack: resources_of_plan(to_preview_json(run)) for stack, run in committed_runs.items()}
