"""`shipyard --version`: the installed package's version, on stdout, exit 0."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from infra.cli.main import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0 and err == ""
    assert out == f"shipyard {version('shipyard')}\n"
    assert re.fullmatch(r"shipyard \d+\.\d+\.\d+\S*\n", out)
