"""The monthly cost of a plan and of a change (infra/review/cost.py), `shipyard plan --cost` and the
MR note's cost line: figures worked out by hand from infra/facts/aws-prices.yaml (us-east-1:
t3.large $0.0832/h, t3.xlarge $0.1664/h, m7i.large $0.1008/h, gp3 $0.08/GB-month) and
infra/facts/heroku-prices.yaml (standard-2x $50, performance-m $250), and prices the files lack
named, never guessed."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli.main import main
from infra.offline.engine import Run
from infra.offline.plan import to_preview_json
from infra.review.cost import (
    FORMATION,
    REVIEW_SIZE,
    VARIABLE,
    Amount,
    cost_of_plan,
    diff_cost,
    plan_region,
    render_markdown,
)
from infra.review.mr_note import note_body
from tests.conftest import ROOT, run_stack, stack_document

# One t3.large host all month with its 100 GB gp3 root volume: 0.0832 x 730 + 100 x 0.08.
T3_LARGE_HOST = Decimal("60.736") + Decimal("8.00")
# The same host as a t3.xlarge: 0.1664 x 730 + 100 x 0.08.
T3_XLARGE_HOST = Decimal("121.472") + Decimal("8.00")
DYNOS = 3 * Decimal(50) + 1 * Decimal(250)  # web: 3 x standard-2X, worker: 1 x performance-M


def us_east_document() -> dict[str, Any]:
    """The committed staging stack moved to us-east-1 (the region the price file has), released, with
    two process types."""
    doc = stack_document("staging")
    doc["aws:region"] = "us-east-1"
    doc["shipyard:heroku"]["imageReleased"] = True
    doc["shipyard:heroku"]["formation"] = {
        "web": {"size": "standard-2X", "quantity": 3},
        "worker": {"size": "performance-m", "quantity": 1},
    }
    return doc


@pytest.fixture(scope="module")
def us_east() -> dict[str, Any]:
    return to_preview_json(run_stack(us_east_document()))


@pytest.fixture(scope="module")
def us_east_xlarge() -> dict[str, Any]:
    """us_east_document() with the release build runner on a t3.xlarge."""
    doc = us_east_document()
    doc["shipyard:runner"]["instanceType"] = "t3.xlarge"
    return to_preview_json(run_stack(doc))


def amounts(doc: dict[str, Any], region: str | None = None) -> dict[str, Amount | None]:
    return {line.name: line.amount for line in cost_of_plan(doc, region).lines}


def formation_plan(size: str, quantity: int, types: tuple[str, ...] = ("web",)) -> dict[str, Any]:
    """A plan document with a Heroku formation per process type, as `pulumi preview --json` shows it."""
    steps = []
    for process in types:
        urn = f"urn:pulumi:staging::shipyard::heroku:formation/formation:Formation::staging-{process}"
        inputs = {"type": process, "size": size, "quantity": quantity, "appId": "app"}
        steps.append({"op": "create", "urn": urn, "newState": {"type": FORMATION, "urn": urn, "inputs": inputs}})
    return {"steps": steps}


def test_runner_hosts_cost_their_instance_hours_and_root_volumes(us_east: dict[str, Any]) -> None:
    cost = cost_of_plan(us_east)
    assert cost.region == "us-east-1"  # read from the plan's own ARNs
    hosts = {name: amount for name, amount in amounts(us_east).items() if name.endswith("runner-asg")}
    assert hosts == {"runner-asg": Amount.of(T3_LARGE_HOST), "review-runner-asg": Amount.of(T3_LARGE_HOST)}
    assert cost.total == Amount.of(2 * T3_LARGE_HOST + DYNOS) == Amount.of(Decimal("537.472"))
    assert cost.missing == []


def test_dynos_cost_size_times_quantity_per_process_type(us_east: dict[str, Any]) -> None:
    found = amounts(us_east)
    assert found["staging-web"] == Amount.of(Decimal(150))
    assert found["staging-worker"] == Amount.of(Decimal(250))


def test_the_eco_plan_is_one_flat_fee_and_an_unpriced_size_is_named() -> None:
    # Heroku's Eco plan: $5 a month for the account, shared by all its Eco dynos.
    assert cost_of_plan(formation_plan("eco", 1, ("web", "worker"))).total == Amount.of(Decimal(5))
    private = cost_of_plan(formation_plan("Private-S", 2))
    assert [line.amount for line in private.lines] == [None]
    assert private.missing == ["private-s: no price in infra/facts/heroku-prices.yaml"]
    assert private.total == Amount.of(Decimal(0))


def test_a_worker_fleet_costs_bounds_up_to_max_size_of_its_dearest_type(fleet_run: Run) -> None:
    doc = to_preview_json(fleet_run)
    for step in doc["steps"]:
        # The fleet's instance types as a plan shows them; m5.large (a default) has no price, below.
        policy = step["newState"]["inputs"].get("mixedInstancesPolicy")
        if policy:
            policy["launchTemplate"]["overrides"] = [{"instanceType": "m7i.large"}, {"instanceType": "t3.large"}]
    # The stack's region given as a parameter: the price file has us-east-1 only.
    found = amounts(doc, region="us-east-1")
    # 0 workers at minSize 0; at maxSize 10 the dearest, m7i.large: 10 x (0.1008 x 730 + 50 GB x 0.08).
    assert found["runner-workers-asg"] == Amount(Decimal(0), 10 * (Decimal("73.584") + Decimal(4)))
    assert found["review-runner-workers-asg"] == Amount(Decimal(0), Decimal("775.84"))


def test_a_fleet_type_without_a_price_leaves_the_fleet_unpriced_and_named(fleet_run: Run) -> None:
    doc = to_preview_json(fleet_run)
    cost = cost_of_plan(doc, region="us-east-1")
    # m5.large might be the dearest of the fleet's types: no bounds rather than wrong ones.
    assert amounts(doc, region="us-east-1")["runner-workers-asg"] is None
    assert "m5.large: no price in infra/facts/aws-prices.yaml for us-east-1" in cost.missing


def test_the_region_of_a_real_preview_comes_from_its_aws_provider() -> None:
    provider = "urn:pulumi:staging::shipyard::pulumi:providers:aws::default_6_0_0"
    step = {
        "op": "create",
        "urn": provider,
        "newState": {"type": "pulumi:providers:aws", "inputs": {"region": "us-east-1"}},
    }
    assert plan_region({"steps": [step]}) == "us-east-1"
    assert plan_region({"steps": []}) is None


def test_a_larger_runner_instance_changes_the_cost_by_the_hand_computed_delta(
    us_east: dict[str, Any], us_east_xlarge: dict[str, Any]
) -> None:
    diff = diff_cost(us_east, us_east_xlarge)
    changed = {change.key[1]: change.delta for change in diff.lines if change.delta != Amount.of(Decimal(0))}
    assert changed == {"runner-asg": Amount.of(T3_XLARGE_HOST - T3_LARGE_HOST)}  # 0.0832 x 730 = 60.736
    assert diff.delta == Amount.of(Decimal("60.736"))
    assert diff.after.total == Amount.of(T3_LARGE_HOST + T3_XLARGE_HOST + DYNOS)


def test_plan_cost_prints_the_cost_table_of_the_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump({"config": us_east_document()}))
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "70")
    code = main(["plan", "--stack", "staging", "--config-file", str(stack_file), "--cost"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Monthly cost of stack staging (USD; us-east-1; 730 h a month)"
    assert "  runner host runner-asg: $68.74   1 x t3.large x 730 h + 100 GB gp3" in lines
    assert "  dynos staging-web: $150.00   web: 3 x standard-2x" in lines
    assert "total: $537.47" in lines
    assert "14 policies: no violations" in out  # the verdict, as every plan prints it
    assert "offline plan of stack" not in out  # the table instead of the tree
    table = lines[: lines.index("total: $537.47") + 1]
    assert max(map(len, table)) <= 70


def test_the_mr_note_summary_line_carries_the_cost_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], us_east: dict[str, Any], us_east_xlarge: dict[str, Any]
) -> None:
    (tmp_path / "base.json").write_text(json.dumps(us_east))
    (tmp_path / "head.json").write_text(json.dumps(us_east_xlarge))
    argv = ["--stack", "staging", "--plan", str(tmp_path / "head.json"), "--base", str(tmp_path / "base.json")]
    assert main(["mr-note", *argv, "--dry-run"]) == 0
    body = capsys.readouterr().out
    summary = body.splitlines()[3]
    assert summary.endswith("· monthly cost $537.47 → $598.21 (+$60.74)")
    assert "| runner host `runner-asg` (1 x t3.xlarge x 730 h + 100 GB gp3) | $68.74 | $129.47 | +$60.74 |" in body


def test_a_note_on_one_plan_states_its_cost_and_what_has_no_price(committed_runs: dict[str, Run]) -> None:
    body = note_body("staging", to_preview_json(committed_runs["staging"]))
    # eu-west-1 has instance prices but no gp3 price: both hosts are left out, gp3 named once.
    assert "· monthly cost $0.00, 1 without a price" in body.splitlines()[3]
    assert "- not priced: gp3: no price in infra/facts/aws-prices.yaml for eu-west-1" in body
    unchanged = copy.deepcopy(to_preview_json(committed_runs["staging"]))
    assert "(±$0.00)" in note_body("staging", unchanged, base=to_preview_json(committed_runs["staging"]))


def test_a_replaced_runner_host_in_a_real_preview_counts_once(us_east: dict[str, Any]) -> None:
    doc = copy.deepcopy(us_east)
    group = next(step for step in doc["steps"] if step["urn"].endswith("::runner-asg"))
    # `pulumi preview --json` shows a replacement as several steps of one URN.
    doc["steps"] += [{**copy.deepcopy(group), "op": op} for op in ("create-replacement", "replace", "delete-replaced")]
    assert cost_of_plan(doc).total == cost_of_plan(us_east).total


@pytest.fixture(scope="module")
def with_review_apps() -> dict[str, Any]:
    """us_east_document() with review apps: at most 4 at once, each one basic web dyno (the default)."""
    doc = us_east_document()
    doc["shipyard:review"] = {"appPrefix": "acme-shop", "maxApps": 4}
    secrets = {
        "shipyard:herokuApiKey": "HRKU-costDeployKey-0123",
        "shipyard:herokuReviewApiKey": "HRKU-costReview-0123",
    }
    return to_preview_json(run_stack(doc, secrets=secrets))


def review_variable(doc: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """The plan with one review variable's value changed, as a plan of changed settings shows it."""
    changed = copy.deepcopy(doc)
    for step in changed["steps"]:
        if step["newState"]["type"] == VARIABLE and step["newState"]["inputs"].get("key") == key:
            step["newState"]["inputs"]["value"] = value
    return changed


def test_review_apps_cost_bounds_up_to_the_cap_of_one_dyno_each(with_review_apps: dict[str, Any]) -> None:
    cost = cost_of_plan(with_review_apps)
    line = next(line for line in cost.lines if line.kind == "review apps")
    # None while no merge request has an app; at the cap, 4 apps x 1 basic dyno x $7.
    assert (line.name, line.what, line.amount) == (
        "acme-shop-mr-*",
        "0 to 4 apps x web: 1 x basic",
        Amount(Decimal(0), Decimal(28)),
    )
    assert cost.total == Amount(2 * T3_LARGE_HOST + DYNOS, 2 * T3_LARGE_HOST + DYNOS + 28)


def test_a_larger_review_cap_and_dyno_size_change_the_cost_by_hand(with_review_apps: dict[str, Any]) -> None:
    after = review_variable(
        review_variable(with_review_apps, "SHIPYARD_REVIEW_MAX_APPS", "6"), REVIEW_SIZE, "standard-1X"
    )
    diff = diff_cost(with_review_apps, after)
    # 6 x standard-1X at $25 = $150 at most, from 4 x basic at $7 = $28.
    assert diff.delta == Amount(Decimal(0), Decimal(150 - 28))
    assert (
        "| review apps `acme-shop-mr-*` (0 to 6 apps x web: 1 x standard-1x) | $0.00 to $28.00 | $0.00 to $150.00 |"
        in (render_markdown(diff))
    )


def test_eco_review_apps_share_the_eco_plan_and_an_unpriced_review_size_is_named(
    with_review_apps: dict[str, Any],
) -> None:
    eco = cost_of_plan(review_variable(with_review_apps, REVIEW_SIZE, "eco"))
    assert {line.name: line.amount for line in eco.lines if line.kind in ("review apps", "dynos")}["Eco plan"] == (
        Amount.of(Decimal(5))
    )
    unpriced = cost_of_plan(review_variable(with_review_apps, REVIEW_SIZE, "shield-m"))
    assert "shield-m: no price in infra/facts/heroku-prices.yaml" in unpriced.missing


def test_a_stack_without_review_apps_has_no_review_line(us_east: dict[str, Any]) -> None:
    assert [line for line in cost_of_plan(us_east).lines if line.kind == "review apps"] == []


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"SHIPYARD_REVIEW_MAX_APPS": "[secret]"}, "SHIPYARD_REVIEW_MAX_APPS"),
        ({REVIEW_SIZE: None}, REVIEW_SIZE),  # a build stack from before shipyard provisioned the size
    ],
    ids=["cap not shown", "no size"],
)
def test_review_apps_the_plan_does_not_show_whole_are_named_not_guessed(
    with_review_apps: dict[str, Any], changes: dict[str, str | None], missing: str
) -> None:
    doc = with_review_apps
    for key, value in changes.items():
        doc = review_variable(doc, key, value) if value is not None else without_variable(doc, key)
    cost = cost_of_plan(doc)
    [line] = [line for line in cost.lines if line.kind == "review apps"]
    assert line.amount is None
    assert cost.missing == [f"acme-shop-mr-*: the plan does not show {missing}"]


def without_variable(doc: dict[str, Any], key: str) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    changed["steps"] = [
        s
        for s in changed["steps"]
        if not (s["newState"]["type"] == VARIABLE and s["newState"]["inputs"].get("key") == key)
    ]
    return changed
