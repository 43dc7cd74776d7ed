"""Programs from the distribution that some tests run for real (cloud-init's schema check, gpg).
`make setup` cannot install them: where one is missing those tests are skipped with the command
that installs it, except under CI (`CI` set), where `.ci/run` installs them and a missing one is a
broken job."""

from __future__ import annotations

import os
import shutil

import pytest


def require(program: str, package: str, purpose: str) -> str:
    """The path of `program`; otherwise the test fails under CI and is skipped elsewhere."""
    found = shutil.which(program)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{program} is missing: .ci/run installs Debian's {package} for {purpose}")
    pytest.skip(f"{program} is not installed here (apt-get install {package}); CI runs {purpose}")
