"""The fleet settings of a runner (`mode`, `fleet`, its idle policies): defaults, and every mistake
named by its key, all at once. Pure settings: no program runs."""

from __future__ import annotations

import json
import zoneinfo
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from infra.settings import FleetSettings, IdlePolicy, SettingsError, parse_settings
from tests.conftest import stack_document
from tests.test_settings import API_KEY, base, parse, problems

PROTECTED = {"instanceType": "t3.small", "protectedOnly": True}


def fleet_runner(key: str = "runner", **fleet: Any) -> dict[str, Any]:
    """Settings with `key` a fleet-mode runner of the build stack whose fleet has these keys."""
    runners: dict[str, Any] = {"runner": {**PROTECTED, "mode": "fleet", "fleet": fleet}}
    if key == "reviewRunner":
        runners = {"runner": PROTECTED, "reviewRunner": {"instanceType": "t3.small", "mode": "fleet", "fleet": fleet}}
    return base(**runners)


def test_runners_are_hosts_without_a_fleet_by_default() -> None:
    settings = parse(base(runner=PROTECTED, reviewRunner={"instanceType": "t3.small"}))
    for runner in (settings.runner, settings.review_runner):
        assert (runner.mode, runner.fleet) == ("host", None)


def test_fleet_mode_without_a_fleet_gets_the_fleet_defaults() -> None:
    fleet = parse(base(runner={**PROTECTED, "mode": "fleet"})).runner.fleet
    assert fleet == FleetSettings()
    assert fleet.instance_types == ["m7i.large", "m6i.large", "m5.large"]
    assert (fleet.max_instances, fleet.on_demand_base, fleet.spot) == (10, 0, True)
    assert (fleet.disk_gb, fleet.cache_days, fleet.idle) == (50, 14, [])


def test_an_idle_policy_defaults_to_always_utc_and_twenty_minutes() -> None:
    fleet = parse(fleet_runner(idle=[{"idleCount": 2}])).runner.fleet
    assert fleet.idle == [IdlePolicy(idleCount=2)]
    assert (fleet.idle[0].periods, fleet.idle[0].timezone, fleet.idle[0].idle_time) == (["* * * * *"], "UTC", "20m")


def test_a_full_fleet_is_read_by_its_keys() -> None:
    policy = {"periods": ["*/5 8-18 * * mon-fri"], "timezone": "Europe/Berlin", "idleCount": 3, "idleTime": "1h30m"}
    config = fleet_runner(
        "reviewRunner",
        instanceTypes=["c7i.xlarge"],
        maxInstances=20,
        onDemandBase=2,
        spot=False,
        diskGb=80,
        idle=[policy],
        cacheDays=30,
    )
    fleet = parse(config).review_runner.fleet
    assert fleet.model_dump(by_alias=True) == {
        "instanceTypes": ["c7i.xlarge"],
        "maxInstances": 20,
        "onDemandBase": 2,
        "spot": False,
        "diskGb": 80,
        "idle": [policy],
        "cacheDays": 30,
    }


def test_a_graviton_fleet_may_serve_a_deploy_runner() -> None:  # guards R22: only the build stack builds
    config = base(
        registry=None,
        buildStack="acme/shipyard/staging",
        runner={"instanceType": "t3.small", "mode": "fleet", "fleet": {"instanceTypes": ["m7g.large", "c7g.large"]}},
    )
    assert parse(config).runner.fleet.instance_types == ["m7g.large", "c7g.large"]


def test_a_graviton_manager_may_run_a_build_fleet() -> None:  # guards R22: the workers build, not the manager
    assert parse(base(runner={**PROTECTED, "instanceType": "t4g.small", "mode": "fleet"})).runner.mode == "fleet"


F = "shipyard:runner.fleet"
ELEVEN_TYPES = [
    f"{family}.large" for family in ("m5", "m5a", "m5n", "m6i", "m6a", "m7i", "m7a", "c5", "c6i", "c7i", "r6i")
]
# (settings, key the message must name, a phrase saying what is allowed)
MISTAKES = [
    (fleet_runner(onDemandBase=11), f"{F}.onDemandBase (11) exceeds {F}.maxInstances (10)", "raise maxInstances"),
    (fleet_runner(maxInstances=3, onDemandBase=4), f"{F}.onDemandBase (4) exceeds {F}.maxInstances (3)", "lower"),
    (fleet_runner(instanceTypes=["m7i.large", "m7g.large"]), f"{F}.instanceTypes:", "one architecture"),
    (fleet_runner(instanceTypes=["m7i.large", "m7i.large"]), f"{F}.instanceTypes:", "more than once"),
    (fleet_runner(instanceTypes=["m7i.larg"]), f"{F}.instanceTypes[0]:", "did you mean m7i.large"),
    (fleet_runner(instanceTypes=[]), f"{F}.instanceTypes:", "at least 1"),
    (fleet_runner(instanceTypes=ELEVEN_TYPES), f"{F}.instanceTypes:", "at most 10"),
    (fleet_runner(instanceTypes=["m7g.large"]), f"{F}.instanceTypes[0] m7g.large is a Graviton", "R22"),
    (fleet_runner("reviewRunner", instanceTypes=["c7g.large"]), "shipyard:reviewRunner.fleet.instanceTypes[0]", "R22"),
    (fleet_runner(maxInstances=0), f"{F}.maxInstances:", "greater than or equal to 1"),
    (fleet_runner(maxInstances=101), f"{F}.maxInstances:", "less than or equal to 100"),
    (fleet_runner(onDemandBase=-1), f"{F}.onDemandBase:", "greater than or equal to 0"),
    (fleet_runner(diskGb=8), f"{F}.diskGb:", "20"),
    (fleet_runner(cacheDays=0), f"{F}.cacheDays:", "1"),
    (fleet_runner(cacheDays=366), f"{F}.cacheDays:", "365"),
    (fleet_runner(spotty=True), f"{F}.spotty is not a known setting", "did you mean `spot`"),
    (fleet_runner(idle=[{"idleCount": 1, "timezone": "Europe/Berln"}]), f"{F}.idle[0].timezone:", "Europe/Berlin"),
    (fleet_runner(idle=[{"idleCount": 1, "timezone": "../etc/passwd"}]), f"{F}.idle[0].timezone:", "IANA"),
    (fleet_runner(idle=[{"idleCount": 11}]), f"{F}.idle[0].idleCount (11) exceeds {F}.maxInstances (10)", "one job"),
    (fleet_runner(idle=[{"idleCount": -1}]), f"{F}.idle[0].idleCount:", "greater than or equal to 0"),
    (fleet_runner(idle=[{"timezone": "UTC"}]), f"{F}.idle[0].idleCount is required", ""),
    (fleet_runner(idle=[{"idleCount": 1, "periods": ["8-18 * * mon-fri"]}]), f"{F}.idle[0].periods[0]:", "5-field"),
    (fleet_runner(idle=[{"idleCount": 1, "periods": ["@hourly"]}]), f"{F}.idle[0].periods[0]:", "5-field"),
    (fleet_runner(idle=[{"idleCount": 1, "periods": ["* * * * * *"]}]), f"{F}.idle[0].periods[0]:", "5-field"),
    (fleet_runner(idle=[{"idleCount": 1, "periods": ["* 8-18 * * mon-fri;"]}]), f"{F}.idle[0].periods[0]", "5-field"),
    (fleet_runner(idle=[{"idleCount": 1, "periods": []}]), f"{F}.idle[0].periods:", "at least 1"),
    (fleet_runner(idle=[{"idleCount": 1, "idleTime": "20"}]), f"{F}.idle[0].idleTime:", "20m, 1h30m or 90s"),
    (fleet_runner(idle=[{"idleCount": 1, "idleTime": ""}]), f"{F}.idle[0].idleTime:", "20m, 1h30m or 90s"),
    (fleet_runner(idle=[{"idleCount": 1, "idleTime": "20 minutes"}]), f"{F}.idle[0].idleTime:", "duration"),
    (fleet_runner(idle=[{"idleCount": 1, "idleTime": "30m1h"}]), f"{F}.idle[0].idleTime:", "duration"),
    (fleet_runner(idle=[{"idleCount": 1, "idleTme": "20m"}]), f"{F}.idle[0].idleTme", "did you mean `idleTime`"),
    (base(runner={**PROTECTED, "fleet": {}}), f"{F} is set but shipyard:runner.mode is host", "mode to fleet"),
    (base(runner={**PROTECTED, "mode": "host", "fleet": {"maxInstances": 2}}), f"{F} is set", "remove"),
    (base(runner={**PROTECTED, "mode": "autoscaler"}), "shipyard:runner.mode:", "'host' or 'fleet'"),
]


@pytest.mark.parametrize(("config", "key", "allowed"), MISTAKES, ids=[f"{m[1]}:{m[2]}" for m in MISTAKES])
def test_each_fleet_mistake_names_the_key_and_what_is_allowed(config: dict[str, Any], key: str, allowed: str) -> None:
    found = problems(config)
    assert any(p.startswith(key) and allowed in p for p in found), found


@pytest.mark.parametrize("good", [["0 8 1 jan *"], ["*/10 6-20 * * 1-5", "0,30 * * * sat,sun"], ["? * * * *"]])
def test_cron_periods_of_five_fields_are_accepted(good: list[str]) -> None:
    assert parse(fleet_runner(idle=[{"idleCount": 0, "periods": good}])).runner.fleet.idle[0].periods == good


@pytest.mark.parametrize("duration", ["20m", "1h30m", "90s", "1h", "2h0m30s", "0s"])
def test_go_durations_are_accepted_as_idle_time(duration: str) -> None:
    assert parse(fleet_runner(idle=[{"idleCount": 0, "idleTime": duration}])).runner.fleet.idle[0].idle_time == duration


def test_idle_count_and_on_demand_base_may_equal_max_instances() -> None:
    fleet = parse(fleet_runner(maxInstances=4, onDemandBase=4, idle=[{"idleCount": 4}])).runner.fleet
    assert (fleet.on_demand_base, fleet.idle[0].idle_count) == (4, 4)


def test_every_fleet_problem_is_reported_at_once() -> None:
    config = fleet_runner(
        instanceTypes=["m7i.large", "m7g.large"],
        onDemandBase=12,
        idle=[{"idleCount": 1}, {"idleCount": 12, "timezone": "Mars/Olympus", "periods": ["daily"], "idleTime": "x"}],
    )
    config["shipyard:reviewRunner"] = {"instanceType": "t3.small", "fleet": {}}
    found = problems(config)
    for start in (
        f"{F}.instanceTypes: must all be of one architecture",
        f"{F}.instanceTypes[1] m7g.large is a Graviton",
        f"{F}.onDemandBase (12) exceeds",
        f"{F}.idle[1].idleCount (12) exceeds",
        f"{F}.idle[1].timezone:",
        f"{F}.idle[1].periods[0]:",
        f"{F}.idle[1].idleTime:",
        "shipyard:reviewRunner.fleet is set but shipyard:reviewRunner.mode is host",
    ):
        assert any(p.startswith(start) for p in found), (start, found)
    assert not any("idle[0]" in p for p in found), found


@pytest.mark.skipif(bool(find_spec("tzdata")), reason="the tzdata package is a time zone database")
def test_a_machine_without_a_time_zone_database_is_told_so(tmp_path: Path) -> None:
    zoneinfo.reset_tzpath(to=[str(tmp_path)])  # an empty folder, as on a machine without tzdata
    try:
        found = problems(fleet_runner(idle=[{"idleCount": 1, "timezone": "Pacific/Chatham"}]))
    finally:
        zoneinfo.reset_tzpath()
    assert any(p.startswith(f"{F}.idle[0].timezone: ") and "install the system's tzdata" in p for p in found), found


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_committed_host_mode_stacks_still_validate(stack: str) -> None:
    settings = parse({**stack_document(stack), "shipyard:herokuApiKey": API_KEY})
    assert settings.runner is not None
    assert all(r is None or (r.mode, r.fleet) == ("host", None) for r in (settings.runner, settings.review_runner))


@pytest.mark.parametrize(
    ("stack", "key", "room"),
    [
        ("Staging_EU", "runner", None),  # capitals and underscores: no S3 bucket name
        ("customer-facing-staging", "runner", 28),  # 23 characters fit the release runner's cache …
        ("customer-facing-staging-eu-west", "reviewRunner", 21),  # … 31 fit neither
    ],
)
def test_a_stack_name_s3_refuses_in_the_cache_bucket_name_is_refused_in_fleet_mode(
    stack: str, key: str, room: int | None
) -> None:
    # S3 names must be lowercase, 63 characters at most; AWS would refuse the bucket at apply time.
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fleet_runner(key).items()}
    if room is not None and len(stack) <= room:
        parse_settings(config, {"shipyard:herokuApiKey"}, stack)
        return
    with pytest.raises(SettingsError) as info:
        parse_settings(config, {"shipyard:herokuApiKey"}, stack)
    [problem] = [p for p in info.value.problems if "job cache bucket" in p]
    assert problem.startswith(f"shipyard:{key}.mode fleet: the job cache bucket of stack {stack!r}")
    review = "review-" if key == "reviewRunner" else ""  # the name runner.py gives (settings.runner_name)
    assert f"would be named shipyard-{stack}-{review}runner-cache-<account id>, which S3 refuses" in problem
    assert "lowercase letters, digits and hyphens, 63 characters at most" in problem
    if room is not None:
        assert f"at most {room} of those characters" in problem


def test_host_mode_takes_any_stack_name() -> None:
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in base(runner=PROTECTED).items()}
    runner = parse_settings(config, {"shipyard:herokuApiKey"}, "Customer_Facing_Staging_EU_West_1").runner
    assert runner is not None and runner.mode == "host"
