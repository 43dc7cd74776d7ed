"""`make bench`: what people wait for, measured. The offline plan of each stack against the floor
of importing exactly the SDK modules the program touches, and the test suite's wall time."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("pulumi", "pulumi_aws", "pulumi_gitlab", "pulumiverse_heroku")
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
BIN = Path(sys.executable).parent


def sdk_modules() -> list[str]:
    """The SDK modules the Pulumi program (infra/, without the CLI) touches: for every SDK name
    its source uses (`ec2.LaunchTemplate`, `gitlab.UserRunner`, `get_partition_output`), the module
    that defines it. The SDKs load those lazily, so importing the packages alone would cost less
    than any program that creates a resource from them."""
    found: set[str] = set()

    def defining_module(path: str) -> str:
        module, _, attr = path.rpartition(".")
        obj = getattr(importlib.import_module(module), attr)
        return obj.__name__ if inspect.ismodule(obj) else obj.__module__

    for source in (ROOT / "infra").rglob("*.py"):
        # The program only: not the command and its rooms (offline engine, review, operations).
        if {"cli", "offline", "review", "ops"} & set(source.relative_to(ROOT / "infra").parts):
            continue
        tree = ast.parse(source.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in SDKS:
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in SDKS:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                target = f"{aliases[node.value.id]}.{node.attr}"
            elif isinstance(node, ast.Name) and node.id in aliases:
                target = aliases[node.id]
            else:
                continue
            try:
                found.add(defining_module(target))
            except (AttributeError, ImportError, ValueError):
                found.add(target.rsplit(".", 1)[0])
    return sorted(m for m in found if m.split(".")[0] in SDKS)


def median_seconds(commands: dict[str, list[str]]) -> dict[str, float]:
    """Median wall time of each command over RUNS rounds, the commands taking turns in every round so
    that a machine getting slower or faster meanwhile weighs on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def fleet_variant(folder: str) -> str:
    """Pulumi.staging.yaml with both runners in fleet mode (their fleets' defaults, one idle policy)."""
    import yaml

    document = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())
    for key in ("shipyard:runner", "shipyard:reviewRunner"):
        idle = [{"periods": ["* 8-18 * * mon-fri"], "timezone": "Europe/Berlin", "idleCount": 1, "idleTime": "30m"}]
        document["config"][key].update(mode="fleet", instanceType="t3.small", fleet={"idle": idle})
    path = Path(folder) / "Pulumi.staging-fleet.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    modules = sdk_modules()
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    commands = {"": [sys.executable, "-c", f"import {', '.join(modules)}"]}
    commands.update({stack: [str(BIN / "shipyard"), "plan", "--stack", stack, "--json"] for stack in stacks})
    # The build stack with both its runners in fleet mode: a manager and a worker fleet each.
    fleet_file = fleet_variant(tempfile.mkdtemp(prefix="shipyard-bench-"))
    commands["staging, fleet mode"] = [*commands["staging"], "--config-file", fleet_file]
    stacks.append("staging, fleet mode")
    medians = median_seconds(commands)
    floor = medians[""]
    table = Table(title=f"offline plan vs. import floor (median of {RUNS} runs)", title_justify="left")
    for column in ("stack", "plan s", "import floor s", "ratio"):
        table.add_column(column, justify="right" if column != "stack" else "left")
    for stack in stacks:
        plan = medians[stack]
        table.add_row(stack, f"{plan:.2f}", f"{floor:.2f}", f"{plan / floor:.2f}x")
    console = Console()
    console.print(
        f"import floor: {len(modules)} SDK modules the program uses, e.g. {', '.join(modules[-4:])}", highlight=False
    )
    console.print(table)
    start = time.perf_counter()
    # As `make test` runs it: one worker per core.
    subprocess.run([str(BIN / "pytest"), "-q", "-n", "auto"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    console.print(f"test suite wall time: {time.perf_counter() - start:.1f} s", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
