"""Values the policy pack flags as credentials, hidden in everything people read: the plan table,
the plan document, `plan diff` and the MR note. What counts as a credential is the policy pack's
own finding (`policy.policies.credentials`), so the two never disagree; the policies still flag a
REDACTED value where plain text is a mistake, so a redacted document keeps its violations."""

from __future__ import annotations

import copy
from typing import Any

from policy.policies import REDACTED, Credential, Resource, credentials

__all__ = ["REDACTED", "redact_credentials"]


def redact_credentials(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a plan document (`shipyard plan --json` or `pulumi preview --json` shape) in which
    every input value that a policy flags as a credential is REDACTED: in every step's new and old
    state (inputs and outputs) and in the stack outputs. Values shown as "[secret]" stay as they are;
    a credential inside a longer text (an IAM policy document) is replaced there, and the rest stays
    readable."""
    redacted = copy.deepcopy(document)
    for step in redacted.get("steps") or ():
        for state in (step.get("newState"), step.get("oldState")) if isinstance(step, dict) else ():
            if isinstance(state, dict):
                for field in ("inputs", "outputs"):
                    _redact(state.get(field), str(state.get("type") or ""))
    _redact(redacted.get("outputs"), "pulumi:pulumi:Stack")
    return redacted


def _redact(values: Any, type_token: str) -> None:
    """Replace, in place, every credential the policies find in one resource's values."""
    if not isinstance(values, dict):
        return
    found = list(credentials(Resource(type=type_token, name="", urn="", props=values)))
    for credential in found:
        _replace(values, credential)


def _replace(values: dict[str, Any], credential: Credential) -> None:
    *parents, last = credential.path
    container: Any = values
    for key in parents:
        container = container[key]
    value = container[last]
    if credential.whole or not isinstance(value, str):
        container[last] = REDACTED
    else:
        container[last] = value.replace(credential.found, REDACTED)
