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

from policy.policies import POLICIES, WAITED, Resource, check, pack_policies

BY_NAME = {p.name: p for p in POLICIES}


def one(resources: list[Resource], type_: str, named: str | None = None, **props: Any) -> Resource:
    """The one resource of this type (and, with `named`, this logical name, the URN's last part) whose
    props hold these values. The staging stack has two runners (`runner-…`, `review-runner-…`) and
    two repositories: name the one a test is about."""
    found = [
        r
        for r in resources
        if r.type == type_ and (named is None or r.name == named) and all(r.props.get(k) == v for k, v in props.items())
    ]
    assert len(found) == 1, (type_, named, props, [r.name for r in found])
    return found[0]


def changed(resource: Resource, protect: bool | None = None, **props: Any) -> Resource:
    new_props = copy.deepcopy(dict(resource.props))
    new_props.update(props)
    return dataclasses.replace(resource, props=new_props, protect=resource.protect if protect is None else protect)


def violations(policy: str, *resources: Resource) -> list[str]:
    """The policy's messages for these resources, the same on both paths: `check` over plain values
    (plan documents) and the pack as `pulumi preview` runs it, props wrapped in the SDK's proxies,
    once with each resource's parent as a preview gives it and once without."""
    found, _ = check(list(resources), [BY_NAME[policy]])
    plain = [v.message for v in found]
    assert through_the_pack(policy, resources) == plain
    assert through_the_pack(policy, resources, parents=True) == plain
    return plain


def sdk_props(props: Any) -> Any:
    # What the policy SDK hands a validator: deserialized, every list and map a read-only proxy.
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(dict(props))))


def sdk_options(protect: bool, parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def through_the_pack(name: str, resources: tuple[Resource, ...], parents: bool = False) -> list[str]:
    """The policy's messages as the pack reports them. With `parents`, as `pulumi preview` hands
    resources over: each one's options carry its parent's URN and, in a stack policy, each resource
    links its parent's PolicyResource. Without, the pack must get by without them (the names
    fallback of policy/policies.py `_groups`)."""
    built = {p.name: p for p in pack_policies([BY_NAME[name]])}[name]
    reported: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message.split(". Fix: ")[0])

    if isinstance(built, ResourceValidationPolicy):
        for r in resources:
            options = sdk_options(r.protect, (r.parent or None) if parents else None)
            args = ResourceValidationArgs(r.type, sdk_props(r.props), r.urn, r.name, options, None)
            with contextlib.suppress(UnknownValueError):  # the SDK's way of saying "not known until apply"
                built.validate(args, report)
    else:
        stack = [
            PolicyResource(
                r.type,
                sdk_props(r.props),
                r.urn,
                r.name,
                sdk_options(r.protect, (r.parent or None) if parents else None),
                None,
                None,
                [],
                {},
            )
            for r in resources
        ]
        if parents:  # as the SDK links them: only to a parent that is in the stack too
            by_urn = {linked.urn: linked for linked in stack}
            for linked, r in zip(stack, resources, strict=True):
                linked.parent = by_urn.get(r.parent)
        with contextlib.suppress(UnknownValueError):  # the SDK catches it for stack policies too
            built.validate(StackValidationArgs(stack), report)
    return reported


def advisory_of_the_pack(name: str, resources: tuple[Resource, ...]) -> list[str]:
    """What a stack policy could not judge, as the pack tells the SDK: the parts it names in the
    UnknownValueError that the preview shows as its advisory note (none where it judged everything)."""
    built = {p.name: p for p in pack_policies([BY_NAME[name]])}[name]
    stack = [
        PolicyResource(r.type, sdk_props(r.props), r.urn, r.name, sdk_options(r.protect, None), None, None, [], {})
        for r in resources
    ]
    try:
        built.validate(StackValidationArgs(stack), lambda message, urn=None: None)
    except UnknownValueError as exc:
        assert exc.message.startswith(WAITED), exc.message  # what the SDK prints in its note
        return exc.message.removeprefix(WAITED).split(" | ")
    return []
