"""Files the product runs as scripts, not as package modules (the release script, the review-app
names, the runner host's helpers, test stubs), loaded by path as the jobs and hosts run them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_module(path: Path) -> ModuleType:
    """A fresh module from the file: no state shared with another load of it."""
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
