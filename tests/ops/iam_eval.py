"""A small model of how AWS IAM decides whether a web identity token may assume a role: the
trust policy's statements, their principal and action, and the condition operators shipyard's
trust policies use (String*, with ForAnyValue/ForAllValues and IfExists). Anything else raises,
so an operator nobody modelled cannot make a test pass by accident.

The request carries only the condition keys IAM fills from the token (`<provider>:aud`,
`<provider>:sub`, per infra/facts/gitlab-oidc.yaml): a condition on any other claim finds no key.
Sources: IAM JSON policy elements: Condition operators (string operators, `*` and `?` in
StringLike), Condition with multiple keys or values (AND across keys, OR across values), and
single-valued vs multivalued context keys (ForAllValues is true for a missing key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

STRING_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}


class Unsupported(ValueError):
    """A policy element this model does not evaluate."""


def request_context(provider: str, claims: Mapping[str, Any], keys: Iterable[str]) -> dict[str, list[str]]:
    """The condition keys IAM fills from a token's claims; keys compare case-insensitively."""
    return {f"{provider}:{key}".lower(): [str(claims[key])] for key in keys if key in claims}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str) -> re.Pattern[str]:
    """StringLike: `*` any run of characters (none included), `?` exactly one; case-sensitive."""
    if "${" in pattern:
        raise Unsupported(f"policy variables are not modelled: {pattern!r}")
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


def _matches(base: str, value: str, pattern: str) -> bool:
    if base in ("StringEquals", "StringNotEquals"):
        return value == pattern
    return _wildcard(pattern).fullmatch(value) is not None


def condition_holds(operator: str, key: str, patterns: Any, context: Mapping[str, list[str]]) -> bool:
    """One operator on one key, against the request's values for that key."""
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise Unsupported(f"operator {operator}")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in STRING_OPERATORS:
        raise Unsupported(f"operator {operator}")
    negated = "Not" in base
    patterns = [str(p) for p in _as_list(patterns)]
    values = context.get(key.lower())
    if values is None:
        # A missing key: only IfExists, a negated operator, or ForAllValues (vacuously) hold.
        return if_exists or qualifier == "ForAllValues" or (negated and qualifier == "")

    def one(value: str) -> bool:
        hit = any(_matches(base, value, p) for p in patterns)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def _principal_matches(statement: Mapping[str, Any], principal: str) -> bool:
    if "NotPrincipal" in statement:
        raise Unsupported("NotPrincipal")
    found = statement.get("Principal")
    if found == "*":
        return True
    if not isinstance(found, dict):
        raise Unsupported(f"principal {found!r}")
    return any(p == "*" or p == principal for p in _as_list(found.get("Federated", [])))


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        raise Unsupported("NotAction")
    # Action names compare case-insensitively, with wildcards.
    return any(_wildcard(a.lower()).fullmatch(action.lower()) for a in _as_list(statement.get("Action", [])))


def statement_applies(
    statement: Mapping[str, Any], principal: str, action: str, context: Mapping[str, list[str]]
) -> bool:
    if not (_principal_matches(statement, principal) and _action_matches(statement, action)):
        return False
    # Every operator, every key within it (AND); the values of one key are alternatives (OR).
    return all(
        condition_holds(operator, key, patterns, context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, patterns in keys.items()
    )


def allows(
    policy: Mapping[str, Any],
    principal: str,
    context: Mapping[str, list[str]],
    action: str = "sts:AssumeRoleWithWebIdentity",
) -> bool:
    """Whether the trust policy lets `principal` (the provider the token's issuer names) do `action`:
    an explicit Deny wins, otherwise an Allow is needed."""
    allowed = False
    for statement in _as_list(policy["Statement"]):
        if not statement_applies(statement, principal, action, context):
            continue
        if statement["Effect"] == "Deny":
            return False
        if statement["Effect"] != "Allow":
            raise Unsupported(f"effect {statement['Effect']!r}")
        allowed = True
    return allowed
