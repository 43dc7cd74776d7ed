"""`shipyard policy check`: the policy pack's validators over a plan document, and the verdict that
`shipyard plan` adds to every plan. Every policy is MANDATORY: any violation fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.policies import POLICIES, Violation, check, resources_of_plan


def verdict(doc: Mapping[str, Any]) -> tuple[list[Violation], str]:
    """The violations in a plan document, and the report to print: each violation with its
    resource, policy and fix, then one summary line."""
    resources = resources_of_plan(doc)
    violations, unknown = check(resources)
    lines = []
    for v in violations:
        lines += [
            f"policy violation: {v.policy.name} (mandatory; guards {v.policy.guards})",
            f"  resource: {v.resource.type} {v.resource.name}",
            f"  problem:  {v.message}",
            f"  fix:      {v.policy.fix}",
        ]
    waiting = f"; {unknown} checks wait for values known only when `pulumi up` runs" if unknown else ""
    if violations:
        lines.append(f"{len(violations)} policy violations in {len(resources)} resources{waiting}")
    else:
        lines.append(f"{len(POLICIES)} policies: no violations in {len(resources)} resources{waiting}")
    return violations, "\n".join(lines)
