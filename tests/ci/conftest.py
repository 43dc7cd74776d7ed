"""The two CI files as parsed YAML, once per test module: shipyard's own pipeline and the
application's delivery template."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ci.gitlab import load
from tests.ci.matrix import OWN, TEMPLATE


@pytest.fixture(scope="module")
def own() -> dict[str, Any]:
    return load(OWN)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(TEMPLATE)
