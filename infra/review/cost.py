"""The monthly cost of one plan document (`shipyard plan --json` or `pulumi preview --json`) and of a
change between two: runner hosts, worker fleets (as bounds), Heroku dynos and the review apps' cap
(as bounds), priced from the fact files infra/facts/aws-prices.yaml and infra/facts/heroku-prices.yaml.

A price the fact files do not hold is named in the result ("t3.small: no price in
infra/facts/aws-prices.yaml for eu-west-1"), never estimated, and its line is left out of the
totals, which say so. Amounts are Decimals, so hand-computed figures compare exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from infra import facts
from infra.offline.diff import code
from policy.policies import Resource, resources_of_plan

HOURS_PER_MONTH = Decimal(730)  # AWS's own month of instance hours (8,760 h / 12)
AWS, HEROKU = "aws-prices", "heroku-prices"

GROUP = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
FORMATION = "heroku:formation/formation:Formation"
VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
# What the review jobs read of shipyard:review (ci/heroku_release.py): the cap and each app's one web dyno.
REVIEW_CAP, REVIEW_SIZE, REVIEW_PREFIX = (
    "SHIPYARD_REVIEW_MAX_APPS",
    "SHIPYARD_REVIEW_DYNO_SIZE",
    "SHIPYARD_REVIEW_APP_PREFIX",
)
ECO_NOTE = "in the Eco plan"
AWS_PROVIDER = "pulumi:providers:aws"
# arn:PARTITION:SERVICE:REGION:ACCOUNT:… — the region of a regional resource.
ARN_REGION = re.compile(r"\barn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d+):")


@dataclass(frozen=True)
class Amount:
    """A monthly figure, or bounds: `low` and `high` differ for a fleet that scales between them."""

    low: Decimal
    high: Decimal

    @classmethod
    def of(cls, value: Decimal) -> Amount:
        return cls(value, value)

    @property
    def bounds(self) -> bool:
        return self.low != self.high

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.low + other.low, self.high + other.high)

    def __sub__(self, other: Amount) -> Amount:
        return Amount(self.low - other.low, self.high - other.high)


ZERO = Amount.of(Decimal(0))


@dataclass(frozen=True)
class Line:
    """One priced thing of a plan: `amount` is None when a price is missing, and `missing` names it."""

    kind: str  # "runner host", "worker fleet", "dynos"
    name: str  # the resource's name in the plan
    what: str  # how the figure is made, e.g. "1 x t3.large x 730 h + 100 GB gp3"
    amount: Amount | None
    missing: tuple[str, ...] = ()
    note: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name


@dataclass(frozen=True)
class Cost:
    """The monthly cost of one plan, line by line; totals over the lines with every price known."""

    region: str | None
    lines: tuple[Line, ...]

    @property
    def total(self) -> Amount:
        return sum((line.amount for line in self.lines if line.amount is not None), ZERO)

    @property
    def missing(self) -> list[str]:
        return list(dict.fromkeys(m for line in self.lines for m in line.missing))


@dataclass(frozen=True)
class LineChange:
    key: tuple[str, str]
    before: Line | None
    after: Line | None

    @property
    def delta(self) -> Amount | None:
        """After - before; None when either side has a missing price."""
        old = ZERO if self.before is None else self.before.amount
        new = ZERO if self.after is None else self.after.amount
        return None if old is None or new is None else new - old


@dataclass(frozen=True)
class CostDiff:
    before: Cost
    after: Cost
    lines: tuple[LineChange, ...] = field(default=())

    @property
    def delta(self) -> Amount:
        return self.after.total - self.before.total

    @property
    def missing(self) -> list[str]:
        return list(dict.fromkeys([*self.before.missing, *self.after.missing]))


# ---------------------------------------------------------------------------------------------
# Prices


def _aws_hourly(instance_type: str, region: str) -> Decimal | None:
    prices = facts.load(AWS)["on_demand_hourly"].get(region, {}).get("prices", {})
    return Decimal(str(prices[instance_type])) if instance_type in prices else None


def _gp3_gb_month(region: str) -> Decimal | None:
    price = facts.load(AWS)["ebs"]["gp3_per_gb_month"].get(region)
    return Decimal(str(price["price"])) if price else None


def _no_price(what: str, name: str, region: str | None = None) -> str:
    where = f" for {region}" if region else ""
    return f"{what}: no price in {facts.shown(name)}{where}"


def plan_region(doc: Mapping[str, Any]) -> str | None:
    """The AWS region of a plan: the aws provider's `region` (`pulumi preview --json`), else the one
    region its ARNs name (`shipyard plan --json`); None when neither says, or ARNs name several."""
    for step in doc.get("steps", []):
        state = step.get("newState") or {}
        if str(state.get("type", "")).startswith(AWS_PROVIDER):
            region = (state.get("inputs") or {}).get("region")
            if isinstance(region, str) and region:
                return region
    found = set(ARN_REGION.findall(repr([[s.get("newState") for s in doc.get("steps", [])], doc.get("outputs")])))
    return found.pop() if len(found) == 1 else None


# ---------------------------------------------------------------------------------------------
# Lines


def _root_gb(template: Mapping[str, Any]) -> int:
    """The gp3 GB of a launch template: each instance it launches gets these volumes (the root one)."""
    return sum(
        int(m.get("ebs", {}).get("volumeSize") or 0)
        for m in template.get("blockDeviceMappings") or []
        if m.get("ebs", {}).get("volumeType") == "gp3"
    )


def _host_cost(instance_type: str, gb: int, region: str | None) -> tuple[Decimal | None, list[str]]:
    """One instance running all month with its gp3 volume, or None and what has no price."""
    if region is None:
        return None, [f"{instance_type}: the plan names no AWS region; give the stack's aws:region"]
    hourly, gb_month = _aws_hourly(instance_type, region), _gp3_gb_month(region) if gb else Decimal(0)
    missing = [_no_price(instance_type, AWS, region)] if hourly is None else []
    missing += [_no_price("gp3", AWS, region)] if gb_month is None else []
    if hourly is None or gb_month is None:
        return None, missing
    return hourly * HOURS_PER_MONTH + gb * gb_month, []


def _group_line(group: Resource, template: Resource, region: str | None) -> Line:
    name, inputs, lt = group.name, group.props, template.props
    gb = _root_gb(lt)
    disk = f" + {gb} GB gp3" if gb else ""
    policy = inputs.get("mixedInstancesPolicy")
    if not policy:
        count = int(inputs.get("desiredCapacity") or inputs.get("minSize") or 0)
        instance_type = str(lt.get("instanceType"))
        each, missing = _host_cost(instance_type, gb, region)
        what = f"{count} x {instance_type} x {HOURS_PER_MONTH} h{disk}"
        return Line("runner host", name, what, None if each is None else Amount.of(count * each), tuple(missing))
    types = [str(o.get("instanceType")) for o in policy.get("launchTemplate", {}).get("overrides") or []]
    low_n, high_n = int(inputs.get("minSize") or 0), int(inputs.get("maxSize") or 0)
    priced = {t: _host_cost(t, gb, region) for t in types}
    unpriced = tuple(dict.fromkeys(m for _, ms in priced.values() for m in ms))
    what = f"{low_n} to {high_n} x the dearest of {', '.join(types)} x {HOURS_PER_MONTH} h{disk} each"
    # The bounds: the fewest workers at the cheapest type, the most at the dearest. One type without a
    # price might be the dearest, so then there are no bounds at all.
    costs = [c for c, _ in priced.values() if c is not None]
    if unpriced or not costs:
        return Line("worker fleet", name, what, None, unpriced or (f"{name}: no instance types",))
    note = "bounds, at on-demand prices; Spot workers cost less"
    return Line("worker fleet", name, what, Amount(low_n * min(costs), high_n * max(costs)), note=note)


def _dyno_monthly(size: str) -> Decimal | None:
    monthly = facts.load(HEROKU)["dyno_monthly"].get(size)
    return None if monthly is None else Decimal(str(monthly))


def _dynos_line(formation: Resource) -> Line:
    name, inputs = formation.name, formation.props
    size, quantity = str(inputs.get("size", "")).lower(), int(inputs.get("quantity") or 0)
    what = f"{inputs.get('type', name)}: {quantity} x {size}"
    if size == "eco":  # paid once for the account, by the plan's "Eco plan" line
        return Line("dynos", name, what, ZERO, note=ECO_NOTE)
    monthly = _dyno_monthly(size)
    if monthly is None:
        return Line("dynos", name, what, None, (_no_price(size, HEROKU),))
    return Line("dynos", name, what, Amount.of(quantity * monthly))


def _review_line(variables: Mapping[str, Any]) -> Line | None:
    """The review apps as bounds: none while no merge request has one, up to the cap, each app one web
    dyno of the review size. None when the plan provisions no review apps."""
    if REVIEW_CAP not in variables:
        return None
    name = f"{variables.get(REVIEW_PREFIX, 'review')}-mr-*"
    cap, size = str(variables[REVIEW_CAP]), str(variables.get(REVIEW_SIZE) or "").lower()
    what = f"0 to {cap} apps x web: 1 x {size or 'a size the plan does not show'}"
    unshown = [key for key, known in ((REVIEW_CAP, cap.isdigit()), (REVIEW_SIZE, bool(size))) if not known]
    if unshown:  # a secret or unknown value, or a build stack from before shipyard provisioned the size
        return Line("review apps", name, what, None, (f"{name}: the plan does not show {' or '.join(unshown)}",))
    if size == "eco":
        return Line("review apps", name, what, ZERO, note=ECO_NOTE)
    monthly = _dyno_monthly(size)
    if monthly is None:
        return Line("review apps", name, what, None, (_no_price(size, HEROKU),))
    note = "bounds: no app while no merge request has one, shipyard:review.maxApps at most"
    return Line("review apps", name, what, Amount(Decimal(0), int(cap) * monthly), note=note)


def cost_of_plan(doc: Mapping[str, Any], region: str | None = None) -> Cost:
    """The monthly cost of what a plan leaves running. `region` is the stack's aws:region; without
    it, the plan's own (plan_region)."""
    region = region or plan_region(doc)
    # What the plan leaves in place, once each (a real preview's replacement has several steps).
    live = resources_of_plan(doc)
    templates = {r.parent: r for r in live if r.type == LAUNCH_TEMPLATE}
    lines: list[Line] = []
    variables: dict[str, Any] = {}
    for resource in live:
        if resource.type == GROUP:
            # A runner host's or a fleet's group and its launch template are children of one component.
            template = templates.get(resource.parent)
            if template is None:
                missing = (f"{resource.name}: no launch template in the plan",)
                lines.append(Line("runner host", resource.name, "", None, missing))
            else:
                lines.append(_group_line(resource, template, region))
        elif resource.type == FORMATION:
            lines.append(_dynos_line(resource))
        elif resource.type == VARIABLE:
            variables[str(resource.props.get("key"))] = resource.props.get("value")
    review = _review_line(variables)
    lines += [review] if review else []
    if any(line.note == ECO_NOTE for line in lines):
        # One flat fee for the account, however many Eco dynos share its 1000 hours.
        fee = Amount.of(Decimal(str(facts.load(HEROKU)["eco_plan_monthly"])))
        lines.append(Line("dynos", "Eco plan", "1000 dyno hours a month for every Eco dyno of the account", fee))
    return Cost(region, tuple(sorted(lines, key=lambda line: line.key)))


def diff_cost(base: Mapping[str, Any], head: Mapping[str, Any], region: str | None = None) -> CostDiff:
    """Per line, before → after; lines only one side has are added or removed."""
    before, after = cost_of_plan(base, region), cost_of_plan(head, region)
    old, new = {line.key: line for line in before.lines}, {line.key: line for line in after.lines}
    keys = sorted({*old, *new})
    return CostDiff(before, after, tuple(LineChange(key, old.get(key), new.get(key)) for key in keys))


# ---------------------------------------------------------------------------------------------
# Text


def _figures(amount: Amount, sign: Callable[[Decimal], str]) -> str:
    """One figure, or bounds as "low to high", each as `sign` marks it."""

    def one(value: Decimal) -> str:
        return f"{sign(value)}${abs(value):,.2f}"

    return f"{one(amount.low)} to {one(amount.high)}" if amount.bounds else one(amount.low)


def money(amount: Amount | None) -> str:
    """A figure as "$68.74", bounds as "$0.00 to $1,459.20", a missing price as "no price"."""
    return "no price" if amount is None else _figures(amount, lambda v: "-" if v < 0 else "")


def signed(amount: Amount | None) -> str:
    """A change: "+$60.74", "-$8.00", "±$0.00"; bounds as "+$0.00 to +$120.00"."""
    if amount is None:
        return "unknown"
    return _figures(amount, lambda v: "+" if v > 0 else "-" if v < 0 else "±")


def sources() -> str:
    """Where the prices come from, for the foot of a cost table."""
    aws, heroku = facts.load(AWS), facts.load(HEROKU)
    on_demand = ", ".join(f"{r} {v['date']}" for r, v in aws["on_demand_hourly"].items())
    gp3 = ", ".join(f"{r} {v['date']}" for r, v in aws["ebs"]["gp3_per_gb_month"].items())
    dated = ", ".join(f"{s['date']}" for s in heroku["sources"] if s.get("date"))
    return f"prices: {facts.shown(AWS)} (EC2 on-demand {on_demand}; gp3 {gp3}), {facts.shown(HEROKU)} ({dated})"


def _excluded(lines: Iterable[Line]) -> str:
    names = list(dict.fromkeys(line.name for line in lines if line.amount is None))
    return f" (leaves out {', '.join(names)}: no price)" if names else ""


def render_cost(cost: Cost, stack: str) -> list[str]:
    """The cost of one plan as plain lines, before the caller wraps them to the console's width."""
    lines = [f"Monthly cost of stack {stack} (USD; {cost.region or 'region unknown'}; {HOURS_PER_MONTH} h a month)"]
    if not cost.lines:
        lines.append("  nothing priced: the plan has no runner host, worker fleet, dynos or review apps")
    for line in cost.lines:
        bounds = f"  ({line.note})" if line.note else ""
        lines.append(f"  {line.kind} {line.name}: {money(line.amount)}   {line.what}{bounds}")
    total = cost.total
    priced = "total of what has a price" if cost.missing else "total"
    lines.append(f"{priced}: {money(total)}{' (bounds)' if total.bounds else ''}{_excluded(cost.lines)}")
    lines += [f"not priced: {m}" for m in cost.missing]
    lines.append(sources())
    return lines


def _label(line: Line) -> str:
    return f"{line.kind} {code(line.name)} ({line.what})"


def _notes(cost: Cost, missing: list[str]) -> str:
    notes = [f"- not priced: {m}" for m in missing]
    notes += [f"- {line.kind} {code(line.name)}: {line.note}" for line in cost.lines if line.note]
    return "\n".join([*notes, f"- {sources()}"]) + "\n"


def render_markdown_plan(cost: Cost) -> str:
    """The cost section of a note on one plan: a table of its lines and their total."""
    rows = ["| item | per month |", "|---|---|"]
    rows += [f"| {_label(line)} | {money(line.amount)} |" for line in cost.lines]
    rows.append(f"| **total**{_excluded(cost.lines)} | **{money(cost.total)}** |")
    return "\n".join(rows) + "\n\n" + _notes(cost, cost.missing)


def render_markdown(diff: CostDiff) -> str:
    """The cost section of a merge-request note: a table of lines before → after with the change."""
    rows = ["| item | before | after | change |", "|---|---|---|---|"]
    for change in diff.lines:
        line = change.after or change.before
        assert line is not None  # a change has one side at least
        before = money(change.before.amount) if change.before else "—"
        after = money(change.after.amount) if change.after else "—"
        rows.append(f"| {_label(line)} | {before} | {after} | {signed(change.delta)} |")
    rows.append(
        f"| **total**{_excluded([*diff.before.lines, *diff.after.lines])} | {money(diff.before.total)} | "
        f"{money(diff.after.total)} | **{signed(diff.delta)}** |"
    )
    return "\n".join(rows) + "\n\n" + _notes(diff.after, diff.missing)
