"""The test harness itself: mock tests that cannot pass silently (P2), a fresh event loop for
every program run (P4)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from tests.conftest import run_stack, stack_document

TESTS = Path(__file__).resolve().parent


def mock_tests() -> list[tuple[str, ast.FunctionDef]]:
    """Every test function that builds resources on the `mocked` fixture."""
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and "mocked" in [a.arg for a in node.args.args]:
                found.append((f"{path.relative_to(TESTS)}::{node.name}", node))
    return found


def test_there_are_mock_tests_to_check() -> None:
    assert len(mock_tests()) > 20


@pytest.mark.parametrize(("name", "node"), mock_tests(), ids=[n for n, _ in mock_tests()])
def test_every_mock_test_is_decorated_and_returns_its_output_chain(name: str, node: ast.FunctionDef) -> None:
    # guards P2: without the decorator, or without returning the Output, the checks never run.
    decorators = [ast.unparse(d) for d in node.decorator_list]
    inner = [n for n in ast.walk(node) if isinstance(n, ast.FunctionDef) and n is not node]
    if "pulumi.runtime.test" in decorators:
        assert any(isinstance(stmt, ast.Return) and stmt.value is not None for stmt in node.body), name
    else:
        # A test that expects a failure wraps the decorated builder itself.
        assert any("pulumi.runtime.test" in [ast.unparse(d) for d in f.decorator_list] for f in inner), name


def test_program_runs_get_their_own_event_loop_and_leave_none_behind() -> None:  # guards P4
    loops = []
    original = asyncio.new_event_loop

    def recording_new_event_loop() -> asyncio.AbstractEventLoop:
        loop = original()
        loops.append(loop)
        return loop

    doc = stack_document("staging")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "new_event_loop", recording_new_event_loop)
        run_stack(doc, "staging")
        run_stack(doc, "staging")
    assert len({id(loop) for loop in loops}) == len(loops) >= 2
    assert all(loop.is_closed() for loop in loops)
