"""`make setup`: from a fresh machine to `.venv`, exactly as `uv.lock` pins it.

Needs nothing but the distribution's Python (3.11, 3.12 or 3.13) and the package registry: no pip,
no python3-venv, no uv, nothing installed outside the repository, no download of Python itself.

1. picks a Python: `--python` if given, else the first of python3, python3.13, python3.12,
   python3.11 on PATH whose version shipyard supports (Ubuntu 22.04's python3 is 3.10; its
   python3.11 package is found by name);
2. puts the uv release of `scripts/uv-release.json` in `.tools/uv-VERSION/uv`: the wheel for this
   CPU from PyPI, its sha256 checked before anything is unpacked;
3. lets that uv create `.venv` from `uv.lock` (`uv sync --frozen`) with that Python, Python
   downloads off. `.venv/.shipyard-setup.json` records what the environment was made from, so a
   second run only asks uv to confirm it (a few milliseconds) and prints nothing.

Written for any Python 3.8 or later, so that an older python3 still gets a clear message.
Exit codes: 0 ready, 1 a download or install failed, 2 no usable Python or a bad --python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ((3, 11), (3, 12), (3, 13))
CANDIDATES = ("python3", "python3.13", "python3.12", "python3.11", "python")
# `platform.machine()` spellings of the two CPUs uv-release.json has wheels for.
MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
PROBE = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"


class SetupError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(f"setup: {message}", file=sys.stderr, flush=True)


def supported_text() -> str:
    names = [f"{major}.{minor}" for major, minor in SUPPORTED]
    return ", ".join(names[:-1]) + " or " + names[-1]


def probe(command: str) -> tuple[str, str] | None:
    """(executable, version) of a Python command, or None when it cannot run."""
    found = shutil.which(command)
    if found is None:
        return None
    try:
        answer = subprocess.run([found, "-c", PROBE], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = answer.stdout.split()
    return (lines[0], lines[1]) if len(lines) == 2 else None


def is_supported(version: str) -> bool:
    return tuple(int(part) for part in version.split(".")[:2]) in SUPPORTED


def choose_python(requested: str | None) -> tuple[str, str]:
    if requested:
        found = probe(requested)
        if found is None:
            raise SetupError(2, f"PYTHON={requested} does not run here; give a Python {supported_text()}")
        if not is_supported(found[1]):
            raise SetupError(2, f"PYTHON={requested} is Python {found[1]}; shipyard needs {supported_text()}")
        return found
    seen = []
    for command in CANDIDATES:
        found = probe(command)
        if found is None:
            continue
        if is_supported(found[1]):
            return found
        seen.append(f"{command} is {found[1]}")
    raise SetupError(
        2,
        f"no Python {supported_text()} on PATH ({'; '.join(seen) or 'no python3 at all'}). Install one from the "
        "distribution (e.g. `sudo apt install python3.11` on Ubuntu 22.04) or name one: "
        "make setup PYTHON=/path/to/python",
    )


def download(url: str, size: int, into: Path, label: str) -> None:
    """Fetch url into the file `into`, showing progress on stderr."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    say(f"downloading {label} ({size / 1e6:.1f} MB) from {url.split('/')[2]}")
    try:
        with urllib.request.urlopen(url, timeout=60) as answer, open(into, "wb") as out:
            done, shown = 0, 0
            while True:
                chunk = answer.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                percent = min(100, done * 100 // max(size, 1))
                if tty:
                    print(f"\r  {percent:3d}%", end="", file=sys.stderr, flush=True)
                elif percent >= shown + 25:
                    shown = percent - percent % 25
                    print(f"  {shown}%", file=sys.stderr, flush=True)
            if tty:
                print(file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SetupError(
            1,
            f"could not download {url}: {reason}. The first setup needs PyPI (pypi.org, files.pythonhosted.org); "
            "behind a proxy, set HTTPS_PROXY",
        ) from None
    say(f"downloaded {label} in {time.monotonic() - started:.1f} s")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def uv_version(uv: Path) -> str | None:
    try:
        answer = subprocess.run([str(uv), "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = answer.stdout.split()
    return parts[1] if len(parts) >= 2 and parts[0] == "uv" else None


def ensure_uv(pin: dict, tools: Path) -> Path:
    """The pinned uv in tools/, installed from its verified wheel when missing."""
    version = pin["version"]
    uv = tools / f"uv-{version}" / "uv"
    if uv.exists() and uv_version(uv) == version:
        return uv
    machine = MACHINES.get(platform.machine().lower())
    wheel = pin["wheels"].get(machine or "")
    if wheel is None:
        raise SetupError(
            1,
            f"no uv {version} wheel for this CPU ({platform.machine()}) in scripts/uv-release.json: "
            f"it lists {', '.join(sorted(pin['wheels']))}",
        )
    uv.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=uv.parent) as scratch:
        archive = Path(scratch) / wheel["file"]
        download(wheel["url"], int(wheel["size"]), archive, f"uv {version}")
        actual = sha256_of(archive)
        if actual != wheel["sha256"]:
            raise SetupError(
                1,
                f"{wheel['file']} has sha256 {actual}, not the pinned {wheel['sha256']}: refusing to install it",
            )
        member = f"uv-{version}.data/scripts/uv"
        try:
            unpacked = Path(scratch) / "uv"
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source, open(unpacked, "wb") as out:
                shutil.copyfileobj(source, out)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise SetupError(1, f"{wheel['file']} holds no {member}: {exc}") from None
        os.chmod(unpacked, 0o755)
        os.replace(unpacked, uv)
    if uv_version(uv) != version:
        raise SetupError(1, f"{uv} does not run on this machine (`{uv} --version` failed)")
    say(f"uv {version} installed in {uv.parent}")
    return uv


def sync(uv: Path, version: str, python: tuple[str, str], venv: Path) -> None:
    """Make venv match uv.lock; quiet when the record says it already does."""
    record_file = venv / ".shipyard-setup.json"
    wanted = {
        "uv": version,
        "python": python[0],
        "python_version": python[1],
        "uv.lock": sha256_of(ROOT / "uv.lock"),
        "pyproject.toml": sha256_of(ROOT / "pyproject.toml"),
    }
    try:
        recorded = json.loads(record_file.read_text())
    except (OSError, ValueError):
        recorded = None
    ready = recorded == wanted and (venv / "bin" / "python").exists()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_PROJECT_ENVIRONMENT=str(venv))
    env.setdefault("UV_LINK_MODE", "copy")  # the cache in HOME is often another file system: no hardlink warnings
    # The machine's own certificate store, as for the download of uv itself: behind a TLS-inspecting
    # proxy, uv's built-in roots would refuse every package.
    env.setdefault("UV_SYSTEM_CERTS", "1")
    command = [str(uv), "sync", "--frozen", "--python", python[0]]
    if ready:
        command.append("--quiet")
    else:
        say(f"creating {venv.name} from uv.lock with Python {python[1]} ({python[0]}); a first run downloads packages")
        command.append("--compile-bytecode")
    started = time.monotonic()
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    if code != 0:
        raise SetupError(
            1,
            f"`uv sync` failed (exit {code}); uv says why above. The first setup needs PyPI (pypi.org, "
            "files.pythonhosted.org)",
        )
    if not ready:
        record_file.write_text(json.dumps(wanted, indent=2) + "\n")
        say(f"{venv.name} is ready ({time.monotonic() - started:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="the Python to build .venv with (default: the first supported one on PATH)")
    parser.add_argument("--pin", default=str(ROOT / "scripts" / "uv-release.json"), help="the uv release to install")
    parser.add_argument("--tools", default=str(ROOT / ".tools"), help="where uv is kept")
    parser.add_argument("--venv", default=str(ROOT / ".venv"), help="the environment to create")
    args = parser.parse_args(argv)
    try:
        pin = json.loads(Path(args.pin).read_text())
        python = choose_python(args.python)
        uv = ensure_uv(pin, Path(args.tools).resolve())
        sync(uv, pin["version"], python, Path(args.venv).resolve())
    except SetupError as exc:
        say(str(exc))
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
