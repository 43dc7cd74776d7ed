"""`shipyard plan`: the offline plan of one stack, as a `pulumi preview --json` document or as text
for people.

The text is a tree: each resource under the component that is its parent, on a line of its own
with the operation's sign as `pulumi preview` marks it (`+` create, `>` read), its short type and
its name, and its key settings on the lines beneath. A short type is the form `pulumi preview`
displays, the type token without the member path of its module:
`aws:ec2/launchTemplate:LaunchTemplate` is `aws:ec2:LaunchTemplate`,
`gitlab:index/projectVariable:ProjectVariable` is `gitlab:index:ProjectVariable`, and component
types such as `shipyard:aws:GitlabRunner` are short already.

Every line fits the console's width. Types and names are never cut; settings wrap between one
setting and the next, never inside one; a value too long for a line is shortened to end in
"...", and a map (configVars, metadataOptions) shows every key even when its values are shortened.
`--full` and `--show NAME` print inputs whole, as YAML, whatever the width. Secrets are "[secret]"
in the document already; the caller hands the renderers a document whose credentials are
redacted."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from rich.console import Console
from rich.text import Text

from infra.offline.engine import Run

# The inputs worth a glance per resource type; --show, --full and --json have them all.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:ecr/repository:Repository": (
        "name", "imageTagMutability", "imageScanningConfiguration", "encryptionConfigurations", "forceDelete",
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ("repository",),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("repository",),
    "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration": ("scanType", "rules"),
    "aws:kms/key:Key": ("keyUsage", "customerMasterKeySpec", "deletionWindowInDays", "description"),
    "aws:kms/alias:Alias": ("name", "targetKeyId"),
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
    "aws:autoscaling/group:Group": (
        "name", "minSize", "maxSize", "desiredCapacity", "protectFromScaleIn", "suspendedProcesses",
        "mixedInstancesPolicy",
    ),
}  # fmt: skip

SIGNS = {"create": "+", "read": ">"}  # as `pulumi preview` marks its steps
CUT = "..."  # the end of a shortened value; ASCII, so piped output stays plain
SEPARATOR = "  "  # between two settings on a line
PROTECTED = "[protected]"
STYLES = {"+": "green", ">": "cyan"}


def short_type(token: str) -> str:
    """The type as `pulumi preview` displays it: `aws:ec2/launchTemplate:LaunchTemplate` is
    `aws:ec2:LaunchTemplate`."""
    parts = token.split(":")
    if len(parts) != 3:
        return token
    package, module, member = parts
    return f"{package}:{module.split('/')[0]}:{member}"


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def stack_of(document: Mapping[str, Any]) -> str:
    """The stack a plan document is of, from its URNs (`urn:pulumi:STACK::PROJECT::TYPE::NAME`)."""
    steps = document["steps"]
    return steps[0]["urn"].split("::", 1)[0].removeprefix("urn:pulumi:") if steps else ""


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
                "inputs": copy.deepcopy(s.inputs),  # a document of its own: changing it never changes the run
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


# ---------------------------------------------------------------------------------------------
# Values on one line, shortened to fit


def _one_line(value: Any) -> str:
    if isinstance(value, str):
        return value.replace("\r", "").replace("\n", "\\n")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _setting(key: str, value: Any, room: int) -> tuple[str, bool]:
    """`key=value` in at most `room` characters (the key whole), and whether the value was cut."""
    text = f"{key}={_one_line(value)}"
    if len(text) <= room:
        return text, False
    return text[: max(room - len(CUT), len(key) + 1)] + CUT, True


def _fill(items: list[str], indent: int, width: int, hanging: int = 0) -> list[str]:
    """Items on as few lines as fit the width, broken only between two items; lines after the
    first are indented `hanging` more."""
    lines: list[str] = []
    line = ""
    for item in items:
        here = indent + (hanging if lines else 0)
        if line and here + len(line) + len(SEPARATOR) + len(item) > width:
            lines.append(" " * here + line)
            line = ""
        line = f"{line}{SEPARATOR}{item}" if line else item
    if line:
        lines.append(" " * (indent + (hanging if lines else 0)) + line)
    return lines


def _settings_lines(inputs: Mapping[str, Any], keys: Iterable[str], indent: int, width: int) -> tuple[list[str], bool]:
    """The key settings beneath a resource, and whether any value was cut. A map gets lines of its
    own, one `KEY=value` per entry, so a key added to it is never out of view."""
    room = max(width - indent, 20)
    lines: list[str] = []
    plain: list[str] = []
    cut = False
    for key in keys:
        if key not in inputs:
            continue
        value = inputs[key]
        if isinstance(value, dict) and value:
            lines += _fill(plain, indent, width)
            plain = []
            entries = []
            for k, v in sorted(value.items()):
                entry, shortened = _setting(k, v, room - 2)
                entries.append(entry)
                cut |= shortened
            # The map's further lines sit deeper than its name.
            lines += _fill([f"{key}:", *entries], indent, width, hanging=2)
        else:
            item, shortened = _setting(key, value, room)
            plain.append(item)
            cut |= shortened
    lines += _fill(plain, indent, width)
    return lines, cut


# ---------------------------------------------------------------------------------------------
# The tree


def tree(document: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The document's steps in plan order, each with its depth under its parent component."""
    steps = document["steps"]
    urns = {s["urn"] for s in steps}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    roots: list[dict[str, Any]] = []
    for step in steps:
        parent = step["newState"].get("parent", "")
        (children[parent] if parent in urns else roots).append(step)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def visit(step: dict[str, Any], depth: int) -> None:
        ordered.append((depth, step))
        for child in children[step["urn"]]:
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return ordered


def _head(depth: int, step: Mapping[str, Any], name_column: int, width: int) -> list[Text]:
    """The resource's line: sign, short type and name, the name aligned at `name_column` when that
    fits, or whole on the next line when even the type and the name alone do not."""
    sign = SIGNS.get(step["op"], step["op"])
    name = resource_name(step["urn"])
    line = Text("  " * depth)
    line.append(sign, style=STYLES.get(sign, ""))
    line.append(f" {short_type(step['newState']['type'])}")
    if len(line) + len(SEPARATOR) + len(name) > width:
        return [line, Text(" " * (2 * depth + len(sign) + 1) + name, style="bold")]
    aligned = len(line) + len(SEPARATOR) <= name_column and name_column + len(name) <= width
    line.append(" " * (name_column - len(line)) if aligned else SEPARATOR)
    line.append(name, style="bold")
    return [line]


def _name_column(ordered: list[tuple[int, dict[str, Any]]], width: int) -> int:
    lefts = [len(f"{'  ' * d}+ {short_type(s['newState']['type'])}") for d, s in ordered]
    longest_name = max((len(resource_name(s["urn"])) for _, s in ordered), default=0)
    return max(min(max(lefts, default=0) + len(SEPARATOR), width - longest_name), 0)


class _YamlDumper(yaml.SafeDumper):
    """YAML as people read it: multi-line strings as blocks, long lines never folded."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_YamlDumper.add_representer(str, _represent_str)


def whole(value: Any, indent: int) -> list[str]:
    """A value whole, as YAML, every line indented."""
    text = yaml.dump(value, Dumper=_YamlDumper, sort_keys=True, allow_unicode=True, width=sys.maxsize)
    return [" " * indent + line for line in text.rstrip("\n").splitlines()]


def _print(console: Console, line: Text | str) -> None:
    # Lines are laid out already: rich must neither wrap nor crop them (a whole value stays whole).
    console.print(line, soft_wrap=True, markup=False, highlight=False, emoji=False)


def render_plan(document: Mapping[str, Any], console: Console, *, full: bool = False) -> bool:
    """The plan of a stack as text, in the console's width: the resource tree, the stack's
    outputs, the diagnostics. With `full`, every input and output whole. Returns whether any
    value was shortened."""
    width = console.width
    ordered = tree(document)
    name_column = _name_column(ordered, width)
    counts = Counter(step["op"] for step in document["steps"])
    summary = ", ".join(f"{n} to {op} ({SIGNS.get(op, op)})" for op, n in sorted(counts.items()))
    _print(console, Text(f"offline plan of stack {stack_of(document)}: {summary}", style="bold"))
    cut = False
    for depth, step in ordered:
        lines, shortened = _resource(depth, step, name_column, width, full=full)
        for line in lines:
            _print(console, line)
        cut |= shortened
    cut |= _render_outputs(document.get("outputs", {}), console, full=full)
    diagnostics = document.get("diagnostics", {})
    for line in diagnostic_lines(diagnostics.get("placeholders", {}), diagnostics.get("warnings", []), width):
        _print(console, line)
    return cut


def _resource(
    depth: int, step: Mapping[str, Any], name_column: int, width: int, *, full: bool
) -> tuple[list[Text | str], bool]:
    """A resource's lines in the tree, and whether a value was shortened: its head line, then its
    key settings (with `full`, every input whole)."""
    state = step["newState"]
    lines: list[Text | str] = list(_head(depth, step, name_column, width))
    indent = 2 * depth + 4
    settings: list[str] = []
    if state.get("protect"):
        if len(lines[-1]) + len(SEPARATOR) + len(PROTECTED) <= width:
            lines[-1] = Text.assemble(lines[-1], SEPARATOR, (PROTECTED, "yellow"))
        else:
            settings.append(" " * indent + PROTECTED)
    inputs = state.get("inputs") or {}
    if full:
        return [*lines, *settings, *(whole(inputs, indent) if inputs else [])], False
    keys = KEY_INPUTS.get(state["type"], tuple(inputs)[:4])
    key_settings, cut = _settings_lines(inputs, keys, indent, width)
    return [*lines, *settings, *key_settings], cut


def _render_outputs(outputs: Mapping[str, Any], console: Console, *, full: bool) -> bool:
    if not outputs:
        return False
    width = console.width
    _print(console, Text("outputs:", style="bold"))
    column = 2 + max(map(len, outputs)) + len(SEPARATOR)
    cut = False
    for key, value in sorted(outputs.items()):
        text = _one_line(value)
        if full or column + len(text) <= width:
            _print(console, f"{'  ' + key:<{column}}{text}")
            continue
        # Too long beside its name: the value on a line of its own, shortened only if it must be.
        _print(console, f"  {key}")
        room = max(width - 4, 20)
        if len(text) > room:
            text, cut = text[: room - len(CUT)] + CUT, True
        _print(console, f"    {text}")
    return cut


def diagnostic_lines(placeholders: Mapping[str, str], warnings: Iterable[str], width: int) -> list[str]:
    lines = [f"placeholder: {key}: {why}" for key, why in sorted(placeholders.items())]
    lines += [f"warning: {warning}" for warning in warnings]
    return [wrapped for line in lines for wrapped in wrap(line, width)]


def wrap(text: str, width: int) -> list[str]:
    """Lines of text in the width, broken between words only; a continuation line is indented two
    more spaces than the line it continues."""
    wrapped: list[str] = []
    for line in text.splitlines():
        lead = line[: len(line) - len(line.lstrip())]
        wrapped += textwrap.wrap(
            line,
            width,
            subsequent_indent=lead + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        ) or [line]
    return wrapped


def render_diagnostics(run: Run, console: Console) -> None:
    for line in diagnostic_lines(run.placeholders, run.warnings, console.width):
        _print(console, line)


def render_table(run: Run, console: Console) -> None:
    """The plan of a run as `shipyard plan` prints it: credentials redacted, then rendered."""
    from infra.review.redaction import redact_credentials

    render_plan(redact_credentials(to_preview_json(run)), console)


# ---------------------------------------------------------------------------------------------
# One resource whole


def matching(document: Mapping[str, Any], wanted: str) -> list[dict[str, Any]]:
    """The steps whose resource is named `wanted`, or whose URN or `short type::name` ends in it."""
    found = []
    for step in document["steps"]:
        urn, name = step["urn"], resource_name(step["urn"])
        short = f"{short_type(step['newState']['type'])}::{name}"
        if wanted == name or ("::" in wanted and (urn.endswith(wanted) or short.endswith(wanted))):
            found.append(step)
    return found


def render_resources(steps: Iterable[Mapping[str, Any]], console: Console) -> None:
    """Each resource with its URN and its complete inputs."""
    for i, step in enumerate(steps):
        state = step["newState"]
        if i:
            _print(console, "")
        (line,) = _head(0, step, name_column=0, width=sys.maxsize)
        if state.get("protect"):
            line.append(SEPARATOR)
            line.append(PROTECTED, style="yellow")
        _print(console, line)
        _print(console, f"  urn: {step['urn']}")
        for text in whole({"inputs": state.get("inputs", {})}, 2):
            _print(console, text)
