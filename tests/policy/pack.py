"""Shared by the policy tests: resources from the offline plans, variants of them, and each policy
called both ways a plan is judged: `check` over plain values (plan documents) and the pack as
`pulumi preview --policy-pack` runs it, with the properties wrapped in the policy SDK's proxies."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policy.policies import POLICIES, Resource, check, pack_policies

BY_NAME = {p.name: p for p in POLICIES}


def one(resources: list[Resource], type_: str, **props: Any) -> Resource:
    found = [r for r in resources if r.type == type_ and all(r.props.get(k) == v for k, v in props.items())]
    assert len(found) == 1, (type_, props, [r.name for r in found])
    return found[0]


def changed(resource: Resource, protect: bool | None = None, **props: Any) -> Resource:
    new_props = copy.deepcopy(dict(resource.props))
    new_props.update(props)
    return dataclasses.replace(resource, props=new_props, protect=resource.protect if protect is None else protect)


def violations(policy: str, *resources: Resource) -> list[str]:
    """The policy's messages for these resources, the same on both paths: `check` over plain values
    (plan documents) and the pack as `pulumi preview` runs it, props wrapped in the SDK's proxies."""
    found, _ = check(list(resources), [BY_NAME[policy]])
    plain = [v.message for v in found]
    assert through_the_pack(policy, resources) == plain
    return plain


def sdk_props(props: Any) -> Any:
    # What the policy SDK hands a validator: deserialized, every list and map a read-only proxy.
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(dict(props))))


def sdk_options(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def through_the_pack(name: str, resources: tuple[Resource, ...]) -> list[str]:
    built = {p.name: p for p in pack_policies([BY_NAME[name]])}[name]
    reported: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message.split(". Fix: ")[0])

    if isinstance(built, ResourceValidationPolicy):
        for r in resources:
            args = ResourceValidationArgs(r.type, sdk_props(r.props), r.urn, r.name, sdk_options(r.protect), None)
            with contextlib.suppress(UnknownValueError):  # the SDK's way of saying "not known until apply"
                built.validate(args, report)
    else:
        stack = [
            PolicyResource(r.type, sdk_props(r.props), r.urn, r.name, sdk_options(r.protect), None, None, [], {})
            for r in resources
        ]
        built.validate(StackValidationArgs(stack), report)
    return reported
