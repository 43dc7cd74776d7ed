"""`make setup` (scripts/setup_env.py) on machines it has never seen: which Python it takes, how it
gets uv (a stub index on localhost that serves only the files it has, 404 otherwise), and what it
asks uv to do. The setup of a real fresh machine runs in CI (`.ci/run`, scripts/fresh_machine.sh)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import setup_env
from tests.fake_api import serve

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.13.8"


def fake_python(folder: Path, name: str, version: str) -> Path:
    """An executable that answers setup_env's probe like a Python of that version."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {path}\necho {version}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def path_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_setup_takes_a_supported_python_by_name_when_python3_is_too_old(path_with: Path) -> None:
    # Ubuntu 22.04: python3 is 3.10, the python3.11 package adds python3.11.
    fake_python(path_with, "python3", "3.10.12")
    wanted = fake_python(path_with, "python3.11", "3.11.0")
    assert setup_env.choose_python(None) == (str(wanted), "3.11.0")


def test_setup_prefers_python3_when_it_is_supported(path_with: Path) -> None:
    python3 = fake_python(path_with, "python3", "3.13.5")
    fake_python(path_with, "python3.11", "3.11.9")
    assert setup_env.choose_python(None) == (str(python3), "3.13.5")


def test_no_supported_python_is_a_clear_error_naming_what_was_found(path_with: Path) -> None:
    fake_python(path_with, "python3", "3.10.12")
    with pytest.raises(setup_env.SetupError) as error:
        setup_env.choose_python(None)
    assert error.value.code == 2
    assert "python3 is 3.10.12" in str(error.value)
    assert "3.11, 3.12 or 3.13" in str(error.value)
    assert "PYTHON=" in str(error.value)


@pytest.mark.parametrize(("version", "accepted"), [("3.14.0", False), ("3.12.1", True), ("3.9.2", False)])
def test_a_named_python_must_be_a_supported_version(path_with: Path, version: str, accepted: bool) -> None:
    named = fake_python(path_with, "mypython", version)
    if accepted:
        assert setup_env.choose_python(str(named)) == (str(named), version)
    else:
        with pytest.raises(setup_env.SetupError, match=f"is Python {version}"):
            setup_env.choose_python(str(named))


def test_a_named_python_that_does_not_exist_is_a_clear_error(path_with: Path) -> None:
    with pytest.raises(setup_env.SetupError, match=r"PYTHON=python3\.99 does not run here") as error:
        setup_env.choose_python("python3.99")
    assert error.value.code == 2


def uv_wheel(version: str = VERSION) -> bytes:
    """A wheel laid out like uv's: the binary under uv-VERSION.data/scripts/uv."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as wheel:
        info = zipfile.ZipInfo(f"uv-{version}.data/scripts/uv")
        wheel.writestr(info, f'#!/bin/sh\necho "uv {version} (stub)"\n')
        wheel.writestr(f"uv-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return data.getvalue()


class Index:
    """A package index on localhost (tests/fake_api.serve): the files it holds, 404 for anything
    else; it counts requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self.base = ""

    def answer(self, method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        self.requests.append(path)
        found = self.files.get(path) if method == "GET" else None
        return (200, found) if found is not None else (404, "Not Found")

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def index() -> Iterator[Index]:
    served = Index({"/packages/uv.whl": uv_wheel()})
    with serve(served.answer) as base:
        served.base = base
        yield served


def pin_for(index: Index, path: str = "/packages/uv.whl", sha256: str | None = None) -> dict:
    body = index.files.get(path, b"")
    machine = setup_env.MACHINES[os.uname().machine.lower()]
    wheel = {
        "file": f"uv-{VERSION}-py3-none-stub.whl",
        "url": index.url(path),
        "sha256": sha256 or hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    return {"version": VERSION, "wheels": {machine: wheel}}


def test_uv_is_installed_from_its_checked_wheel_once(index: Index, tmp_path: Path) -> None:
    uv = setup_env.ensure_uv(pin_for(index), tmp_path / "tools")
    assert uv == tmp_path / "tools" / f"uv-{VERSION}" / "uv"
    assert subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.startswith(
        f"uv {VERSION}"
    )
    assert setup_env.ensure_uv(pin_for(index), tmp_path / "tools") == uv
    assert index.requests == ["/packages/uv.whl"]  # the second setup downloads nothing


def test_a_wheel_with_another_checksum_is_refused_and_nothing_is_installed(index: Index, tmp_path: Path) -> None:
    with pytest.raises(setup_env.SetupError, match="not the pinned") as error:
        setup_env.ensure_uv(pin_for(index, sha256="0" * 64), tmp_path / "tools")
    assert error.value.code == 1
    assert list((tmp_path / "tools").rglob("*")) == [tmp_path / "tools" / f"uv-{VERSION}"]


def test_a_missing_wheel_names_the_url_and_what_setup_needs(index: Index, tmp_path: Path) -> None:
    pin = pin_for(index, path="/packages/gone.whl")
    with pytest.raises(setup_env.SetupError) as error:
        setup_env.ensure_uv(pin, tmp_path / "tools")
    assert error.value.code == 1
    message = str(error.value)
    assert index.url("/packages/gone.whl") in message
    assert "Not Found" in message
    assert "PyPI" in message


def test_progress_is_shown_while_uv_downloads(index: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_env.ensure_uv(pin_for(index), tmp_path / "tools")
    err = capsys.readouterr().err
    assert f"downloading uv {VERSION}" in err
    assert "100%" in err
    assert f"uv {VERSION} installed" in err


def recording_uv(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in uv that records its arguments and environment, and creates the venv's python."""
    log = tmp_path / "uv-calls.jsonl"
    uv = tmp_path / "uv"
    uv.write_text(
        f"#!{sys.executable}\n"
        "import json, os, pathlib, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'env': dict(os.environ)}}) + '\\n')\n"
        "venv = pathlib.Path(os.environ['UV_PROJECT_ENVIRONMENT'])\n"
        "(venv / 'bin').mkdir(parents=True, exist_ok=True)\n"
        "(venv / 'bin' / 'python').write_text('')\n"
    )
    uv.chmod(0o755)
    return uv, log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_setup_syncs_the_lock_with_the_chosen_python_and_never_downloads_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "uv.lock").write_text("lock 1\n")
    (root / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(setup_env, "ROOT", root)
    monkeypatch.setenv("VIRTUAL_ENV", "/somewhere/else")
    uv, log = recording_uv(tmp_path)
    python = ("/usr/bin/python3", "3.11.2")

    setup_env.sync(uv, VERSION, python, root / ".venv")
    first = calls(log)[-1]
    assert first["argv"][:4] == ["sync", "--frozen", "--python", "/usr/bin/python3"]
    assert "--compile-bytecode" in first["argv"] and "--quiet" not in first["argv"]
    assert first["env"]["UV_PYTHON_DOWNLOADS"] == "never"  # no download of Python itself
    assert first["env"]["UV_PROJECT_ENVIRONMENT"] == str(root / ".venv")
    assert "VIRTUAL_ENV" not in first["env"]  # another activated venv must not take over
    assert "creating .venv" in capsys.readouterr().err

    # A second run with nothing changed: uv only confirms, quietly; setup prints nothing.
    setup_env.sync(uv, VERSION, python, root / ".venv")
    assert "--quiet" in calls(log)[-1]["argv"]
    assert capsys.readouterr().err == ""

    # A changed lock file installs again, with progress.
    (root / "uv.lock").write_text("lock 2\n")
    setup_env.sync(uv, VERSION, python, root / ".venv")
    assert "--quiet" not in calls(log)[-1]["argv"]
    # So does another Python.
    setup_env.sync(uv, VERSION, ("/usr/bin/python3.12", "3.12.3"), root / ".venv")
    assert "--quiet" not in calls(log)[-1]["argv"]


def test_a_failing_uv_sync_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "uv.lock").write_text("lock\n")
    (root / "pyproject.toml").write_text("[project]\n")
    monkeypatch.setattr(setup_env, "ROOT", root)
    uv = tmp_path / "uv"
    uv.write_text("#!/bin/sh\nexit 2\n")
    uv.chmod(0o755)
    with pytest.raises(setup_env.SetupError, match=r"`uv sync` failed \(exit 2\)") as error:
        setup_env.sync(uv, VERSION, ("/usr/bin/python3", "3.11.2"), root / ".venv")
    assert error.value.code == 1
    assert not (root / ".venv" / ".shipyard-setup.json").exists()


def test_the_pinned_uv_release_names_real_pypi_files() -> None:
    pin = json.loads((ROOT / "scripts" / "uv-release.json").read_text())
    assert set(pin["wheels"]) == {"x86_64", "aarch64"}
    for machine, wheel in pin["wheels"].items():
        assert wheel["file"].startswith(f"uv-{pin['version']}-py3-none-")
        assert machine in wheel["file"] and wheel["file"].endswith(".whl")
        assert wheel["url"].startswith("https://files.pythonhosted.org/packages/")
        assert wheel["url"].endswith("/" + wheel["file"])
        assert re.fullmatch(r"[0-9a-f]{64}", wheel["sha256"]), wheel["sha256"]
    # The uv that made uv.lock reads it: the lock's format belongs to that release.
    lock = (ROOT / "uv.lock").read_text()
    assert lock.startswith("version = 1\n")


def test_pulumi_runs_the_same_environment_the_tests_use() -> None:
    """Pulumi's pip toolchain runs `<virtualenv>/bin/python` as it is when the folder exists, and
    lists the program's packages with `python -m pip list`: both must work in setup's .venv."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    options = project["runtime"]["options"]
    assert options["toolchain"] == "pip"
    assert (ROOT / options["virtualenv"]).resolve() == Path(sys.prefix).resolve()
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    names = {package["name"].lower().replace("_", "-") for package in json.loads(listed.stdout)}
    assert {"pulumi", "pulumi-aws", "pulumi-gitlab", "pulumiverse-heroku", "shipyard"} <= names


def test_make_help_lists_every_target_with_a_description() -> None:
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()[1:]
    for target in phony:
        line = next((line for line in out.splitlines() if line.split()[:1] == [target]), None)
        assert line is not None, f"make help does not list {target}"
        assert len(line.split()) > 2, f"make help gives {target} no description"
