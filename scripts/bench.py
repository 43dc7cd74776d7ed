"""`make bench`: what people wait for, measured. The offline plan of each stack against the floor
of importing exactly the SDK modules the program touches, and the test suite's wall time."""

from __future__ import annotations

import ast
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("pulumi", "pulumi_aws", "pulumi_gitlab", "pulumiverse_heroku")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BIN = Path(sys.executable).parent


def sdk_modules() -> list[str]:
    """The SDK modules the Pulumi program imports (infra/, without the CLI), read from its source."""
    found: set[str] = set()
    for path in (ROOT / "infra").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "infra").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] in SDKS)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in SDKS:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if importlib.util.find_spec(sub) is not None else node.module)
    return sorted(found)


def median_seconds(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    modules = sdk_modules()
    floor = median_seconds([sys.executable, "-c", f"import {', '.join(modules)}"])
    table = Table(title=f"offline plan vs. import floor (median of {RUNS} runs)", title_justify="left")
    for column in ("stack", "plan s", "import floor s", "ratio"):
        table.add_column(column, justify="right" if column != "stack" else "left")
    for stack in sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")):
        plan = median_seconds([str(BIN / "shipyard"), "plan", "--stack", stack, "--json"])
        table.add_row(stack, f"{plan:.2f}", f"{floor:.2f}", f"{plan / floor:.2f}x")
    console = Console()
    console.print(f"import floor: import {', '.join(modules)}", highlight=False)
    console.print(table)
    start = time.perf_counter()
    subprocess.run([str(BIN / "pytest"), "-q"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    console.print(f"test suite wall time: {time.perf_counter() - start:.1f} s", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
