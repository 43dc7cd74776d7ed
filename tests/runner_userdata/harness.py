"""The runner host's scripts as the tests run them: bash, a temporary root, real gpg and sha256sum,
and stub `aws`, `curl`, `gitlab-runner`, `systemctl`, `dnf`, `rpm`, `uname`, `python3` on PATH that
record every call (see tests/runner_userdata/test_scripts.py). The host, the stubs and the signed
release here are shared by the tests of the host's scripts and of its user data; their fixtures are
registered for the whole suite in tests/conftest.py."""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from infra import facts
from infra.userdata import USERDATA_DIR, RunnerHost
from tests.by_path import load_module
from tests.system_tools import require

STUBS = Path(__file__).resolve().parent / "stubs"
TOKEN = "glrt-t3stT0kenValue_abcdef123"
ROTATED = "glrt-r0tatedByRunner_987654"
NEW = "glrt-newRunnerAfterReplace_42"
RUNNER_ID = 4242  # the runner's id in GitLab's answers
ROTATION_DATES = "  token_obtained_at = 2026-11-30T10:00:00Z\n  token_expires_at = 2026-12-30T10:00:00Z"
HOST = RunnerHost(
    aws_region="eu-west-1",
    token_parameter="/shipyard/staging/gitlab-runner-token",
    token_version=1,
    asg_name="shipyard-staging-runner",
    launch_hook="shipyard-launch",
    terminate_hook="shipyard-terminate",
    gitlab_url="https://gitlab.example.com",
    runner_name="shipyard-staging",
    concurrent=4,
    maximum_timeout=3600,
    privileged=True,
    gitlab_runner_version="19.1.1",
    docker_version="25.0.*",
)
RELEASE = HOST.release
UTC = datetime.UTC
ROTATION_DATETIMES = (datetime.datetime(2026, 11, 30, 10, tzinfo=UTC), datetime.datetime(2026, 12, 30, 10, tzinfo=UTC))
VERIFY_URL = HOST.gitlab_url + facts.load("gitlab-api")["verify"]["path"]
EXPIRES = "2027-02-01T12:30:00.250Z"  # as GitLab writes times
SYSTEM_ID = "s_0a1b2c3d4e5f"  # .runner_system_id, as gitlab-runner writes it on its first start
GITLAB_KEY = RELEASE.signing_key_fingerprint
FIRST_BOOT_ARCH = "x86_64"  # what `uname -m` answers on the hosts of `booted`, as the uname stub does by default


@dataclass
class Stubs:
    bin: Path
    """The stubs as this session runs them: those of stubs/, each `#!/usr/bin/env bash` naming the bash
    that env would find instead, one exec fewer per call."""
    facts: Path
    """$STUB_FACTS: what the fact files say, as the stubs read it, written by stubs/_facts.py from
    infra/facts once per session instead of by a Python start per stub call."""


@pytest.fixture(scope="session")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    """The stubs and what they read, set up once per session."""
    base = tmp_path_factory.mktemp("stubs")
    bash = shutil.which("bash")
    assert bash, "no bash on PATH"
    (base / "bin").mkdir()
    for stub in STUBS.iterdir():
        if stub.is_file() and stub.suffix != ".py":
            text = stub.read_text()
            if text.startswith("#!/usr/bin/env bash\n"):
                text = f"#!{bash}\n" + text.removeprefix("#!/usr/bin/env bash\n")
            (base / "bin" / stub.name).write_text(text)
            (base / "bin" / stub.name).chmod(stat.S_IMODE(stub.stat().st_mode))
    module = load_module(STUBS / "_facts.py")
    (base / "facts").mkdir()
    module.write(base / "facts")
    return Stubs(base / "bin", base / "facts")


def local_copy(root: Path, url: str) -> Path:
    """Where the curl stub looks for URL's content: $STUB_DOWNLOADS/<host>/<path>."""
    parts = urlsplit(url)
    return root / parts.netloc / parts.path.lstrip("/")


def rpm_header(name: str, arch: str = "noarch") -> bytes:
    """A stand-in rpm: what the dnf stub reads to know what it installs."""
    return f"Name: {name}\nVersion: {RELEASE.version}\nArch: {arch}\n".encode()


@dataclass
class SignedRelease:
    downloads: Path
    fingerprint: str
    """Of the throwaway key that signed this release's release.sha256, in place of GitLab's."""


@pytest.fixture(scope="session")
def signed_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRelease]:
    """The release's files as GitLab publishes them, with stand-in packages: a real release.sha256
    over them in upstream's format ("<sha256>\\t<path>", every file of the release, not only those a
    host installs), signed with a key generated here, and that key at the signing key's URL."""
    base = tmp_path_factory.mktemp("release")
    gnupg = base / "gnupg"
    gnupg.mkdir(mode=0o700)
    program = require("gpg", "gnupg", "the runner host's signature checks")
    gpg = [program, "--homedir", str(gnupg), "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "shipyard test <release@shipyard.invalid>", "ed25519", "sign", "never"])
    listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    try:
        files = {
            RELEASE.helper_images_rpm: rpm_header("gitlab-runner-helper-images"),
            **{path: rpm_header("gitlab-runner", arch) for arch, path in RELEASE.rpms.items()},
            "deb/gitlab-runner_amd64.deb": b"a deb the host never downloads\n",
        }
        assert set(files) <= set(facts.load(f"gitlab-runner/{RELEASE.version}")["files"])
        downloads = base / "downloads"
        for path, content in files.items():
            target = local_copy(downloads, f"{RELEASE.downloads}/{path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        sums = local_copy(downloads, f"{RELEASE.downloads}/{RELEASE.checksums}")
        sums.write_text("".join(f"{hashlib.sha256(c).hexdigest()}\t{p}\n" for p, c in sorted(files.items())))
        signature = local_copy(downloads, f"{RELEASE.downloads}/{RELEASE.signature}")
        subprocess.run([*gpg, "--armor", "--detach-sign", "--output", str(signature), str(sums)], check=True)
        key = local_copy(downloads, RELEASE.signing_key_url)
        key.parent.mkdir(parents=True)
        key.write_bytes(subprocess.run([*gpg, "--armor", "--export", fingerprint], capture_output=True).stdout)
        published = {p: p.read_bytes() for p in downloads.rglob("*") if p.is_file()}
        yield SignedRelease(downloads, fingerprint)
        # The hosts serve these files until a test changes one (Host.release_file gives that test its own copy).
        assert {p: p.read_bytes() for p in downloads.rglob("*") if p.is_file()} == published
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"])


@dataclass
class Result:
    code: int
    output: str  # stdout and stderr
    calls: list[str]


class Host:
    """A temporary root laid out as cloud-init leaves the instance, the SSM parameter as pulumi up
    leaves it (version 1), the release's downloads, and a way to run a script."""

    def __init__(self, tmp: Path, release: SignedRelease, stubs: Stubs, ssm: Path | None = None) -> None:
        self.release = release
        self.stubs = stubs.bin
        self.downloads = release.downloads  # shared by the hosts until `release_file` gives this one its own
        self._place(tmp, ssm)
        (self.root / "etc/shipyard").mkdir(parents=True)
        for folder in (self.state, self.tmp, self.ssm):
            folder.mkdir(exist_ok=True)
        # The only place the pinned fingerprint is not the fact file's: this test host's runner.env,
        # so that the throwaway key can stand in for GitLab's. The user data always carries the fact
        # file's (tests/test_userdata.py); `pin(GITLAB_KEY)` puts it back.
        self.fingerprint = release.fingerprint
        self.pin()
        (self.root / "etc/shipyard/config.toml.tmpl").write_text((USERDATA_DIR / "config.toml.tmpl").read_text())
        (self.root / "etc/machine-id").write_text("0" * 32)  # as baked into an AMI
        if ssm is None:
            self.set_parameter(TOKEN, 1)
        self.env = {
            "PATH": f"{stubs.bin}:{os.environ['PATH']}",
            "SHIPYARD_LIB": str(USERDATA_DIR / "lib.sh"),
            "SHIPYARD_STOP": str(stubs.bin / "shipyard-stop"),
            "STUB_FACTS": str(stubs.facts),
            "STUB_PYTHON": sys.executable,
            "STUB_RUNNER_ID": str(RUNNER_ID),
            "HEARTBEAT_SECONDS": "0.05",
            "TOKEN_POLL_SECONDS": "0.05",
            **self._paths(),
        }

    def _place(self, tmp: Path, ssm: Path | None) -> None:
        self.base = tmp
        self.root = tmp / "root"
        self.state = tmp / "stub-state"
        self.log = tmp / "calls.log"
        self.tmp = tmp / "tmp"
        self.ssm = ssm or tmp / "ssm"
        if self.downloads != self.release.downloads:
            self.downloads = tmp / "downloads"

    def _paths(self) -> dict[str, str]:
        return {
            "SHIPYARD_ROOT": str(self.root),
            "STUB_LOG": str(self.log),
            "STUB_STATE": str(self.state),
            "STUB_SSM": str(self.ssm),
            "STUB_DOWNLOADS": str(self.downloads),
            "TMPDIR": str(self.tmp),
        }

    def copy(self, tmp: Path) -> Host:
        """This host as it is now, in `tmp`: its root, the stubs' state, its SSM parameters (its own
        copy, unless this host shares another's) and its downloads (its own copy, if it has one)."""
        shutil.copytree(self.base, tmp, symlinks=True, dirs_exist_ok=True)
        other = copy.copy(self)
        other._place(tmp, None if self.ssm == self.base / "ssm" else self.ssm)
        other.env = {**self.env, **other._paths()}
        return other

    def pin(self, fingerprint: str | None = None, **env: str) -> None:
        """Write runner.env pinning `fingerprint` (the test key's by default), `env` in place of its values."""
        lines = HOST.env_file().replace(GITLAB_KEY, fingerprint or self.fingerprint).splitlines()
        for key, value in env.items():
            lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
        (self.root / "etc/shipyard/runner.env").write_text("\n".join(lines) + "\n")

    @property
    def config(self) -> Path:
        return self.root / "etc/gitlab-runner/config.toml"

    def release_file(self, path: str) -> Path:
        """A file of the release as this host downloads it, to change: the host's own copy of the downloads."""
        if self.downloads == self.release.downloads:
            self.downloads = self.base / "downloads"
            shutil.copytree(self.release.downloads, self.downloads)
            self.env["STUB_DOWNLOADS"] = str(self.downloads)
        return local_copy(self.downloads, f"{RELEASE.downloads}/{path}")

    def _parameter(self) -> Path:
        return self.ssm / HOST.token_parameter.replace("/", "%")

    def set_parameter(self, value: str, version: int) -> None:
        """As pulumi up writes it: a new runner's token, a new version."""
        self._parameter().mkdir(exist_ok=True)
        (self._parameter() / "value").write_text(value)
        (self._parameter() / "version").write_text(f"{version}\n")

    def parameter(self) -> tuple[str, int]:
        return (self._parameter() / "value").read_text(), int((self._parameter() / "version").read_text())

    def delete_parameter(self) -> None:
        shutil.rmtree(self._parameter())

    def rotate(self, new: str = ROTATED) -> None:
        """What gitlab-runner does when it rotates its token: the new one and its dates, in config.toml
        only (common/reset_token.go)."""
        lines = [line for line in self.config.read_text().splitlines() if " token_" not in line]
        old = next(line for line in lines if line.strip().startswith("token = "))
        self.config.write_text("\n".join(lines).replace(old, f'  token = "{new}"\n{ROTATION_DATES}') + "\n")

    def reject(self, *tokens: str) -> None:
        """GitLab no longer accepts these tokens (revoked, expired, runner deleted)."""
        (self.state / "rejected-tokens").write_text("".join(f"{t}\n" for t in tokens))

    def expire_tokens_at(self, value: str | None) -> None:
        """What GitLab answers as token_expires_at from now on: an RFC 3339 time, or None for null
        (token expiry off, as without this call)."""
        (self.state / "token-expires-at").write_text(json.dumps(value))

    def runner_entry(self) -> dict:
        """config.toml's [[runners]] entry, as gitlab-runner's TOML parser reads it."""
        (entry,) = tomllib.loads(self.config.read_text())["runners"]
        return entry

    def verify_requests(self) -> list[str]:
        """What the GitLab stub saw of each runners/verify call: the body file's mode, its keys, system_id."""
        requests = self.state / "verify-requests"
        return requests.read_text().splitlines() if requests.exists() else []

    def run(self, script: str, **env: str) -> Result:
        self.log.write_text("")
        proc = subprocess.run(
            ["bash", str(USERDATA_DIR / script)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Result(proc.returncode, proc.stdout + proc.stderr, self.log.read_text().splitlines())

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {
            str(p.relative_to(self.root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def host(tmp_path: Path, signed_release: SignedRelease, stubs: Stubs) -> Host:
    return Host(tmp_path, signed_release, stubs)


@dataclass
class Booted:
    """A host after its first bootstrap, that run's result, and when it ran (UTC; `started` to the second)."""

    host: Host
    first: Result
    started: datetime.datetime
    finished: datetime.datetime

    @classmethod
    def boot(cls, host: Host, **env: str) -> Booted:
        started = datetime.datetime.now(UTC).replace(microsecond=0)
        result = host.run("bootstrap.sh", **env)
        return cls(host, result, started, datetime.datetime.now(UTC))

    def copy(self, tmp: Path) -> Booted:
        """The host as this run left it, in `tmp`, for a test of its own."""
        return replace(self, host=self.host.copy(tmp), first=replace(self.first, calls=list(self.first.calls)))


@pytest.fixture(scope="session")
def _first_boot(tmp_path_factory: pytest.TempPathFactory, signed_release: SignedRelease, stubs: Stubs) -> Booted:
    return Booted.boot(Host(tmp_path_factory.mktemp("first-boot"), signed_release, stubs), STUB_ARCH=FIRST_BOOT_ARCH)


@pytest.fixture(scope="session")
def _first_boot_expiring(
    tmp_path_factory: pytest.TempPathFactory, signed_release: SignedRelease, stubs: Stubs
) -> Booted:
    host = Host(tmp_path_factory.mktemp("first-boot-expiring"), signed_release, stubs)
    host.expire_tokens_at(EXPIRES)
    (host.root / "etc/gitlab-runner").mkdir(parents=True)
    (host.root / "etc/gitlab-runner" / facts.load("gitlab-api")["system_id_file"]).write_text(SYSTEM_ID)
    return Booted.boot(host)


@pytest.fixture
def booted(tmp_path: Path, _first_boot: Booted) -> Booted:
    """`host` after `host.run("bootstrap.sh", STUB_ARCH=FIRST_BOOT_ARCH)` (the uname stub's answer
    anyway), and that run's result: one run per session, and each test its own copy of the host it
    left (root, stub state, SSM parameter)."""
    return _first_boot.copy(tmp_path)


@pytest.fixture
def booted_expiring(tmp_path: Path, _first_boot_expiring: Booted) -> Booted:
    """As `booted`, for a host whose gitlab-runner had made its system_id (SYSTEM_ID) and a GitLab
    answering token_expires_at = EXPIRES (`host.expire_tokens_at(EXPIRES)`) before the run."""
    return _first_boot_expiring.copy(tmp_path)


def hook_calls(result: Result) -> list[str]:
    return [c for c in result.calls if c.startswith("aws autoscaling complete-lifecycle-action")]


def abandoned(result: Result) -> bool:
    hooks = hook_calls(result)
    return result.code != 0 and len(hooks) == 1 and hooks[0].endswith("--lifecycle-action-result ABANDON")


def downloads(result: Result) -> list[str]:
    return [c.split()[-1] for c in result.calls if c.startswith("curl") and not gitlab_api(c) and "169.254" not in c]


def gitlab_api(call: str) -> bool:
    return call.startswith("curl") and call.split()[-1].startswith(f"{HOST.gitlab_url}/api/v4/")
