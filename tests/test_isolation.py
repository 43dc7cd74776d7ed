"""Program runs leave nothing behind: a failed run, in a test or in `shipyard plan` (which runs
two programs in one process for prod), never reaches into the next one, whatever the order."""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime.settings import SETTINGS
from pulumi_aws import ssm

from infra.offline import engine
from infra.offline.engine import Project, RecordingMonitor, StackConfig, run_program
from infra.settings import SettingsError
from tests.conftest import run_stack, stack_document

FAILING_PROGRAM = """\
import pulumi


def fail(_: str) -> str:
    raise ValueError("this program fails inside an apply")


pulumi.export("late", pulumi.Output.from_input("x").apply(fail))
"""


@pytest.fixture
def failing_project(tmp_path: Path) -> Project:
    (tmp_path / "Pulumi.yaml").write_text("name: failing\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(FAILING_PROGRAM)
    return Project.load(tmp_path)


def run_failing(project: Project) -> None:
    with pytest.raises(ValueError, match="fails inside an apply"):
        run_program(project, "dev", config=StackConfig({}, set(), {}))


def test_failing_and_passing_programs_run_back_to_back(failing_project: Project) -> None:  # guards P4
    run_failing(failing_project)
    assert run_stack(stack_document("staging"), "staging").one("heroku:app/app:App").raw_inputs["stack"] == "container"
    run_failing(failing_project)
    run_failing(failing_project)
    # prod runs staging's program too, through its stack reference, in the same process
    prod = run_stack(stack_document("prod"), "prod")
    assert prod.one("heroku:app/app:App").protect


def test_a_settings_error_leaves_nothing_for_the_next_run() -> None:  # guards P4
    doc = stack_document("staging")
    doc["shipyard:heroku"]["app"] = "Not A Valid Name"
    with pytest.raises(SettingsError):
        run_stack(doc, "staging")
    assert run_stack(stack_document("staging"), "staging").outputs["herokuAppName"] == "acme-storefront-staging"


def test_a_failed_mock_test_leaves_nothing_for_the_next_program_run(
    mocked: RecordingMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:  # guards P4
    # As in a process where no program has run yet: a context that never set the SDK's set of
    # tracked outputs falls back to this test's set, which the failure below leaves tasks in.
    outputs = type(SETTINGS).__dict__["outputs"]
    monkeypatch.setattr(outputs, "_ContextProperty__default", SETTINGS.outputs)

    @pulumi.runtime.test
    def build() -> pulumi.Output:
        late = pulumi.Output.from_input("x").apply(lambda _: str(int("not a number")))
        return ssm.Parameter("failing", name="/shipyard/test/failing", type="String", value=late).arn

    with pytest.raises(ValueError):
        build()
    assert run_stack(stack_document("staging"), "staging").outputs["environment"] == "staging"


async def _never_started() -> None:
    """A step the SDK scheduled that the run ended before."""


def test_tasks_a_run_leaves_scheduled_are_ended_before_its_loop_closes() -> None:  # guards P4
    # A task closed before its first step leaves a coroutine that was never awaited: the garbage
    # collector reports it later, in whichever test happens to be running.
    def leftovers(finish: bool) -> list[str]:
        loop = asyncio.new_event_loop()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            task = loop.create_task(_never_started())
            if finish:
                engine._finish_tasks(loop)
            loop.close()
            del loop, task
            gc.collect()
        return [str(w.message) for w in caught if "was never awaited" in str(w.message)]

    assert leftovers(finish=False) != []  # what happened before
    assert leftovers(finish=True) == []


def test_a_failed_run_ends_what_it_left_scheduled(failing_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[asyncio.AbstractEventLoop] = []
    finish = engine._finish_tasks

    def spy(loop: asyncio.AbstractEventLoop) -> None:
        ended.append(loop)
        finish(loop)

    monkeypatch.setattr(engine, "_finish_tasks", spy)
    run_failing(failing_project)
    assert len(ended) == 1
