"""The cost of the committed stacks in their own region, eu-west-1, from infra/facts/aws-prices.yaml:
t3.large $0.0912/h there (skypilot-org/skypilot-catalog@001367d2:catalogs/v7/aws/vms.csv, row
"t3.large,...,0.0912,...,eu-west-1,euw1-az1"), and no gp3 price for eu-west-1 (listed under
`missing:`). So a committed runner host is priced by its hours only once its volume is out of the
plan, and with its volume it is named as lacking gp3, never estimated. Plans come from the
session's `committed_runs`, so no program run is added here."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from infra import facts
from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from infra.review.cost import AWS, LAUNCH_TEMPLATE, Amount, cost_of_plan

RUNNER_HOSTS = ("review-runner-asg", "runner-asg")
# One t3.large all month in eu-west-1: 0.0912 $/h x 730 h = 66.576 (hand-computed, from the fact
# file's eu-west-1 t3.large price). Its 100 GB gp3 root volume would add 100 x the eu-west-1 gp3
# price, which no stored source gives: see test_a_committed_runner_host_names_gp3_as_its_missing_price.
T3_LARGE_EU_WEST_1_HOURS = Decimal("66.576")


def no_price(what: str, region: str) -> str:
    """The message cost.py gives for a price the fact file lacks."""
    return f"{what}: no price in infra/facts/aws-prices.yaml for {region}"


@pytest.fixture(scope="module")
def staging(committed_runs: dict[str, Run]) -> dict[str, Any]:
    """The committed staging stack's plan (eu-west-1, two t3.large runner hosts with 100 GB gp3)."""
    return to_preview_json(committed_runs["staging"])


def without_volumes(doc: dict[str, Any]) -> dict[str, Any]:
    """The plan with its launch templates' volumes taken out: what the hosts cost by their hours."""
    doc = copy.deepcopy(doc)
    for step in doc["steps"]:
        state = step.get("newState") or {}
        if state.get("type") == LAUNCH_TEMPLATE:
            state["inputs"]["blockDeviceMappings"] = []
    return doc


def test_every_us_east_1_instance_type_has_a_sourced_eu_west_1_price() -> None:
    on_demand = facts.load(AWS)["on_demand_hourly"]
    assert set(on_demand["eu-west-1"]["prices"]) == set(on_demand["us-east-1"]["prices"])
    assert "on_demand_hourly" not in facts.load(AWS)["missing"]


def test_the_committed_runner_hosts_cost_their_hours_at_the_eu_west_1_price(staging: dict[str, Any]) -> None:
    cost = cost_of_plan(without_volumes(staging))
    assert cost.region == "eu-west-1"  # the plan's own, from its ARNs
    hosts = {line.name: (line.amount, line.what) for line in cost.lines if line.kind == "runner host"}
    line = (Amount.of(T3_LARGE_EU_WEST_1_HOURS), "1 x t3.large x 730 h")
    assert hosts == {name: line for name in RUNNER_HOSTS}
    assert cost.missing == []
    assert cost.total == Amount.of(2 * T3_LARGE_EU_WEST_1_HOURS) == Amount.of(Decimal("133.152"))


def test_a_committed_runner_host_names_gp3_as_its_missing_price(staging: dict[str, Any]) -> None:
    cost = cost_of_plan(staging)
    assert {line.name: line.amount for line in cost.lines if line.kind == "runner host"} == dict.fromkeys(RUNNER_HOSTS)
    assert cost.missing == [no_price("gp3", "eu-west-1")]  # t3.large has its price; the volume has none
    assert cost.total == Amount.of(Decimal(0))  # left out, not estimated


def test_a_region_without_prices_names_the_instance_type_and_gp3(staging: dict[str, Any]) -> None:
    cost = cost_of_plan(staging, region="eu-central-1")
    assert cost.region == "eu-central-1"
    assert cost.missing == [no_price("t3.large", "eu-central-1"), no_price("gp3", "eu-central-1")]
    assert cost.total == Amount.of(Decimal(0))
