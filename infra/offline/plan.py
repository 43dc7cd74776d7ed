"""`shipyard plan`: the offline plan of one stack, as a table or as `pulumi preview --json`."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.offline.engine import Run

# The inputs worth a glance per resource type; everything is in --json.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:ecr/repository:Repository": (
        "name", "imageTagMutability", "imageScanningConfiguration", "encryptionConfigurations",
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ("repository",),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("repository",),
    "heroku:app/app:App": ("name", "stack", "region", "organization", "configVars", "sensitiveConfigVars"),
    "heroku:app/feature:Feature": ("name", "enabled"),
    "heroku:pipeline/pipeline:Pipeline": ("name", "owner"),
    "heroku:pipeline/coupling:Coupling": ("stage", "pipeline"),
    "heroku:formation/formation:Formation": ("type", "size", "quantity"),
    "gitlab:index/projectEnvironment:ProjectEnvironment": ("name", "tier", "stopBeforeDestroy"),
    "gitlab:index/projectVariable:ProjectVariable": (
        "key", "environmentScope", "value", "masked", "hidden", "protected",
    ),
    "pulumi:pulumi:StackReference": ("name",),
    "gitlab:index/userRunner:UserRunner": ("runnerType", "accessLevel", "locked", "tagLists", "maximumTimeout"),
    "aws:ssm/parameter:Parameter": ("name", "type", "valueWo", "valueWoVersion"),
    "aws:iam/role:Role": ("description",),
    "aws:iam/rolePolicy:RolePolicy": ("role",),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("policyArn",),
    "aws:iam/instanceProfile:InstanceProfile": ("role",),
    "aws:ec2/securityGroup:SecurityGroup": ("ingress", "egress"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("instanceType", "imageId", "metadataOptions", "blockDeviceMappings"),
    "aws:autoscaling/group:Group": ("name", "minSize", "maxSize", "desiredCapacity"),
}  # fmt: skip


def _compact(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_preview_json(run: Run) -> dict[str, Any]:
    """The plan in the shape of `pulumi preview --json`; secret values are "[secret]"."""
    steps = [
        {
            "op": s.op,
            "urn": s.urn,
            "newState": {
                "type": s.type,
                "urn": s.urn,
                "parent": s.parent,
                "custom": s.custom,
                "protect": s.protect,
                # As in the engine's state: a replacement of this resource deletes it first (P11).
                "deleteBeforeReplace": s.delete_before_replace,
                "inputs": s.inputs,
            },
        }
        for s in run.steps
    ]
    return {
        "steps": steps,
        "changeSummary": dict(Counter(s.op for s in run.steps)),
        "outputs": run.shown_outputs,
        "diagnostics": {"placeholders": run.placeholders, "warnings": run.warnings},
    }


def render_table(run: Run, console: Console) -> None:
    table = Table(title=f"offline plan of stack {run.stack}", title_justify="left", show_lines=False)
    table.add_column("op")
    table.add_column("type")
    table.add_column("name")
    table.add_column("key settings", overflow="fold")
    for s in run.steps:
        keys = KEY_INPUTS.get(s.type, tuple(s.inputs)[:4])
        settings = "  ".join(f"{k}={_compact(s.inputs[k])}" for k in keys if k in s.inputs)
        if s.protect:
            settings = "[protected]  " + settings
        table.add_row(s.op, s.type, s.name, settings)
    console.print(table, markup=False)

    counts = Counter(s.op for s in run.steps)
    console.print(
        "resources: " + ", ".join(f"{n} to {op}" for op, n in sorted(counts.items())), markup=False, highlight=False
    )
    outputs = Table(title="outputs", title_justify="left")
    outputs.add_column("name")
    outputs.add_column("value", overflow="fold")
    for key, value in sorted(run.shown_outputs.items()):
        outputs.add_row(key, _compact(value, 200))
    console.print(outputs, markup=False)
    render_diagnostics(run, console)


def render_diagnostics(run: Run, console: Console) -> None:
    for key, why in sorted(run.placeholders.items()):
        console.print(f"placeholder: {key}: {why}", markup=False, highlight=False)
    for warning in run.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)
